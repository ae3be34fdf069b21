/**
 * The embedded PostgreSQL of the demo, the bench and the tests: a process that uses it keeps its
 * own exit code. (The package hooks `beforeExit` with process.exit(0); left in place, a failing
 * demo or test run would exit 0.)
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const embedded = pathToFileURL(join(import.meta.dirname, '..', 'dist', 'src', 'demo', 'embedded.js')).href;

describe('the embedded PostgreSQL', () => {
  it('starts and stops, and the process that used it exits with its own code', () => {
    const script = `
      const { startEmbeddedPostgres } = await import(${JSON.stringify(embedded)});
      const server = await startEmbeddedPostgres();
      await server.stop();
      process.exitCode = 3;
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 120_000,
    });
    expect(r.status, r.stderr).toBe(3);
  });
});
