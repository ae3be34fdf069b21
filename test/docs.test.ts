/**
 * The docs say what the code does: the configuration reference and every key in
 * docs/configuration.md, and the exit code contract in README.md.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configKeys } from '../src/config/keys.js';
import { configReference } from '../src/config/reference.js';
import { EXIT_CODES } from '../src/errors.js';

const root = join(import.meta.dirname, '..');
const read = (path: string) => readFileSync(join(root, path), 'utf8');
const readme = read('README.md');
const configuration = read('docs/configuration.md');

describe('docs/configuration.md', () => {
  it('holds the generated configuration reference (npm run docs regenerates it)', () => {
    expect(configuration).toContain(configReference());
  });

  it('documents every configuration key', () => {
    for (const key of configKeys()) expect(configuration).toContain(`\`${key.path}\``);
  });

  it('maps every key to a distinct environment variable', () => {
    const envs = configKeys().flatMap((k) => (k.env ? [k.env] : []));
    expect(new Set(envs).size).toBe(envs.length);
  });
});

describe('README.md', () => {
  it('gives the exit code table of src/errors.ts', () => {
    for (const entry of Object.values(EXIT_CODES)) {
      expect(readme).toContain(
        `| ${entry.exit} | ${entry.meaning} | ${entry.exit === 0 ? '-' : entry.retry ? 'yes' : 'no'} |`,
      );
    }
  });
});
