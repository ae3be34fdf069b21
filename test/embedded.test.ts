/**
 * The embedded PostgreSQL of the demo, the bench and the tests: a process that uses it keeps its
 * own exit code. (The package hooks `beforeExit` with process.exit(0), and `exit` with a call
 * that throws; left in place, a failing demo or test run would exit 0 and a passing one 1.)
 */
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const embedded = pathToFileURL(join(import.meta.dirname, '..', 'dist', 'src', 'demo', 'embedded.js')).href;

describe('the embedded PostgreSQL', () => {
  const run = (exitCode: number) => {
    const script = `
      const { startEmbeddedPostgres } = await import(${JSON.stringify(embedded)});
      const server = await startEmbeddedPostgres();
      await server.stop();
      process.exitCode = ${exitCode};
    `;
    return spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      encoding: 'utf8',
      timeout: 120_000,
    });
  };

  it('starts and stops, and the process that used it exits with its own failure code', () => {
    const r = run(3);
    expect(r.status, r.stderr).toBe(3);
  });

  it('a process that used it and succeeded exits 0, with nothing on stderr', () => {
    const r = run(0);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
