/** The README documents what the code does: every config key, and the exit code contract. */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { configKeys } from '../src/config/keys.js';
import { configReference } from '../src/config/reference.js';
import { EXIT_CODES } from '../src/errors.js';

const readme = readFileSync(new URL('../README.md', import.meta.url), 'utf8');

describe('README', () => {
  it('holds the generated configuration reference (npm run docs regenerates it)', () => {
    expect(readme).toContain(configReference());
  });

  it('documents every configuration key', () => {
    for (const key of configKeys()) expect(readme).toContain(`\`${key.path}\``);
  });

  it('gives the exit code table of src/errors.ts', () => {
    for (const entry of Object.values(EXIT_CODES)) {
      expect(readme).toContain(
        `| ${entry.exit} | ${entry.meaning} | ${entry.exit === 0 ? '-' : entry.retry ? 'yes' : 'no'} |`,
      );
    }
  });

  it('maps every key to a distinct environment variable', () => {
    const envs = configKeys().flatMap((k) => (k.env ? [k.env] : []));
    expect(new Set(envs).size).toBe(envs.length);
  });
});
