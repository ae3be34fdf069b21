/**
 * The embedded PostgreSQL of the demo, the bench and the tests: a process that uses it keeps its
 * own exit code. (The package hooks `beforeExit` with process.exit(0), and `exit` with a call
 * that throws; left in place, a failing demo or test run would exit 0 and a passing one 1.) A
 * signal stops the server: at once when nothing else handles it, after the run when the demo's
 * run does (the package's own signal hooks stopped it under the run, and the demo crashed).
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CLI, childOutcome, runProgram, tempDir } from './helpers/env.js';
import { LIMITS } from './helpers/time.js';

/** Whether something listens on the loopback port. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

const portOf = (text: string) => Number(/127\.0\.0\.1:(\d+)/.exec(text)?.[1]);

const embedded = pathToFileURL(join(import.meta.dirname, '..', 'dist', 'src', 'demo', 'embedded.js')).href;

describe('the embedded PostgreSQL', () => {
  const run = (exitCode: number) => {
    const script = `
      const { startEmbeddedPostgres } = await import(${JSON.stringify(embedded)});
      const server = await startEmbeddedPostgres();
      await server.stop();
      process.exitCode = ${exitCode};
    `;
    return runProgram(process.execPath, ['--input-type=module', '-e', script], {
      timeoutMs: LIMITS.startup,
    });
  };

  it('starts and stops, and the process that used it exits with its own failure code', async () => {
    const r = await run(3);
    expect(r.code, r.stderr).toBe(3);
  });

  it('a process that used it and succeeded exits 0, with nothing on stderr', async () => {
    const r = await run(0);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('stop() returns when the server already ended on its own (Ctrl-C reaches it too)', async () => {
    const script = `
      const { readFileSync } = await import('node:fs');
      const pg = (await import('pg')).default;
      const { startEmbeddedPostgres } = await import(${JSON.stringify(embedded)});
      const server = await startEmbeddedPostgres();
      const client = new pg.Client({ connectionString: server.url });
      client.on('error', () => {});
      await client.connect();
      const dir = (await client.query('SHOW data_directory')).rows[0].data_directory;
      const pid = Number(readFileSync(dir + '/postmaster.pid', 'utf8').split('\\n')[0]);
      process.kill(pid, 'SIGINT');
      while (true) {
        try { process.kill(pid, 0); } catch { break; }
        await new Promise((r) => setTimeout(r, 50));
      }
      // The event loop has nothing else to wait for: a stop() that never settles exits 0 here.
      await server.stop();
      process.exitCode = 7;
    `;
    const r = await runProgram(process.execPath, ['--input-type=module', '-e', script], {
      timeoutMs: LIMITS.startup,
      cwd: join(import.meta.dirname, '..'),
    });
    expect(r.code, r.stderr).toBe(7);
  });

  it('a signal nobody handles stops the server and ends the process as the signal does', async () => {
    const script = `
      const { startEmbeddedPostgres } = await import(${JSON.stringify(embedded)});
      const server = await startEmbeddedPostgres();
      console.log(server.url);
      setInterval(() => {}, 1000);
    `;
    const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const done = childOutcome(child);
    let out = '';
    await new Promise<void>((resolve) =>
      child.stdout?.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('\n')) resolve();
      }),
    );
    const port = portOf(out);
    expect(await listening(port)).toBe(true);
    child.kill('SIGTERM');
    const r = await done;
    expect(r.code).toBe(143);
    expect(r.stderr).toBe('');
    expect(await listening(port)).toBe(false);
  });

  it('Ctrl-C during the demo (SIGINT to its process group, server included): the run stops cleanly, exit 143, no server left', async () => {
    const tmp = tempDir('ns-demo-int-');
    try {
      const child = spawn(
        process.execPath,
        [CLI, 'demo', '--rows', '1500000', '--log-format', 'json', '--dir', tmp.dir],
        {
          env: { PATH: process.env.PATH, HOME: process.env.HOME, TZ: 'UTC' },
          stdio: ['ignore', 'pipe', 'pipe'],
          detached: true,
        },
      );
      const done = childOutcome(child);
      let out = '';
      await new Promise<void>((resolve) =>
        child.stdout?.on('data', (d: Buffer) => {
          out += d.toString();
          if (out.includes('"msg":"COPY"') || out.includes('nightshift run starting')) resolve();
        }),
      );
      await new Promise((resolve) => setTimeout(resolve, 300));
      const port = portOf(out);
      process.kill(-(child.pid as number), 'SIGINT');
      const r = await done;
      expect(r.code, r.stdout.slice(-1500) + r.stderr).toBe(143);
      expect(r.stderr).not.toMatch(/Unhandled|node:events/);
      expect(r.summary).toMatchObject({ status: 'terminated', exit_code: 143 });
      expect(r.stdout).toContain('stopped by SIGINT');
      expect(await listening(port)).toBe(false);
    } finally {
      tmp.cleanup();
    }
  });
});
