/**
 * `npm ci` on a fresh machine refuses a lockfile that lacks any optional dependency, and a
 * registry mirror without other platforms' binaries leaves those out. tools/lock-platforms.mjs
 * puts them back after `npm install`; this test fails when someone forgot to run it.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

interface LockEntry {
  version?: string;
  optionalDependencies?: Record<string, string>;
}

describe('package-lock.json', () => {
  it('has an entry for every optional dependency (run node tools/lock-platforms.mjs after npm install)', () => {
    const lock = JSON.parse(readFileSync(new URL('../package-lock.json', import.meta.url), 'utf8')) as {
      packages: Record<string, LockEntry>;
    };
    const missing: string[] = [];
    for (const [key, entry] of Object.entries(lock.packages)) {
      const base = key === '' ? 'node_modules/' : `${key}/node_modules/`;
      for (const dep of Object.keys(entry.optionalDependencies ?? {})) {
        if (!lock.packages[`${base}${dep}`] && !lock.packages[`node_modules/${dep}`])
          missing.push(`${key} -> ${dep}`);
      }
    }
    expect(missing).toEqual([]);
  });
});
