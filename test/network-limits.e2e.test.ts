/**
 * Every network wait of the source has a limit: a host that accepts TCP and never answers, and
 * a COPY whose bytes stop mid-stream (a proxy in front of the real PostgreSQL that stops
 * forwarding) each end the run with exit 75 and a hint naming host:port. The limits are
 * scaled generously; nothing here measures time beyond "it ended, with 75".
 */
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, runCli, tempDir, writeConfig } from './helpers/env.js';
import { tripsJob } from './helpers/trips-job.js';

const tmp = tempDir('ns-limits-');
let dbUrl: string;
const servers: Server[] = [];
const sockets = new Set<Socket>();

beforeAll(async () => {
  dbUrl = await freshDatabase();
});
afterAll(async () => {
  for (const s of sockets) s.destroy();
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  tmp.cleanup();
});

async function listen(server: Server): Promise<number> {
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  return typeof address === 'object' && address ? address.port : 0;
}

/** Accepts every connection and never sends a byte. */
function silentListener(): Promise<number> {
  return listen(
    createServer((socket) => {
      sockets.add(socket);
      socket.on('error', () => undefined);
    }),
  );
}

/**
 * A TCP proxy to the test database. While `stall` is on, a connection that has received more
 * than `afterBytes` from the server gets nothing more: the bytes are read and dropped, the
 * sockets stay open, as when a NAT or a firewall forgets the flow.
 */
async function stallingProxy(afterBytes: number): Promise<{ port: number; setStall(on: boolean): void }> {
  const target = new URL(dbUrl);
  let stall = true;
  const port = await listen(
    createServer((client) => {
      const upstream = tcpConnect(Number(target.port), target.hostname);
      for (const s of [client, upstream]) {
        sockets.add(s);
        s.on('error', () => undefined);
        s.on('close', () => {
          client.destroy();
          upstream.destroy();
        });
      }
      let received = 0;
      upstream.on('data', (chunk: Buffer) => {
        received += chunk.length;
        if (stall && received > afterBytes) return;
        client.write(chunk);
      });
      client.on('data', (chunk: Buffer) => upstream.write(chunk));
    }),
  );
  return { port, setStall: (on) => (stall = on) };
}

function jobConfig(name: string, source: Record<string, unknown>) {
  const dir = join(tmp.dir, name);
  return writeConfig(
    tmp.dir,
    {
      job: name,
      source: { table: 'public.nothing', cursor: 'ts', key: ['id'], ...source },
      stage: { url: pathToFileURL(join(dir, 'stage')).href },
      warehouse: { table: 'a.t', duckdb: { path: join(dir, 'w.duckdb') } },
      temp_dir: join(dir, 'tmp'),
      log: { format: 'json' },
    },
    `${name}.yaml`,
  );
}

/** Generous: the limits below are 2 s; a run that hangs is killed here and fails the test. */
const HANG_LIMIT_MS = 60_000;

describe('connect timeout', () => {
  it('a listener that accepts and never answers: run and check exit 75 naming host:port', async () => {
    const port = await silentListener();
    const config = jobConfig('silent', {
      url: `postgres://exporter:not-a-real-password@127.0.0.1:${port}/app`,
      connect_timeout: '2s',
    });
    const run = await runCli(['run', '--config', config], {}, { timeoutMs: HANG_LIMIT_MS });
    expect(run.signal, 'killed by the test: the run hung').toBeNull();
    expect(run.code, run.stdout.slice(-1500)).toBe(75);
    const error = run.summary?.error as { message: string; hint: string };
    expect(error.message).toContain(
      `cannot connect to PostgreSQL at 127.0.0.1:${port}/app: no answer within 2 s`,
    );
    expect(error.hint).toContain('NetworkPolicy');
    expect(error.hint).toContain('security group');
    console.log(`run: exit ${run.code}: ${error.message}\n  hint: ${error.hint}`);

    const check = await runCli(['check', '--config', config], {}, { timeoutMs: HANG_LIMIT_MS });
    expect(check.signal).toBeNull();
    expect(check.code, check.stdout).toBe(75);
    expect(check.stdout).toContain(`127.0.0.1:${port}/app: no answer within 2 s`);
  });

  it("honours the URL's connect_timeout when source.connect_timeout is not set", async () => {
    const port = await silentListener();
    const config = jobConfig('silent-url', {
      url: `postgres://exporter@127.0.0.1:${port}/app?connect_timeout=2`,
    });
    const run = await runCli(['run', '--config', config], {}, { timeoutMs: HANG_LIMIT_MS });
    expect(run.signal).toBeNull();
    expect(run.code).toBe(75);
    expect(JSON.stringify(run.summary?.error)).toContain('no answer within 2 s');
  });

  it('refuses a libpq parameter it cannot honour with exit 2, before connecting', async () => {
    const config = jobConfig('refused', { url: `${dbUrl}?target_session_attrs=read-write` });
    const run = await runCli(['run', '--config', config]);
    expect(run.code).toBe(2);
    expect(run.stderr + run.stdout).toContain('the URL parameter target_session_attrs is refused');
    console.log(`refused parameter: exit ${run.code}: ${(run.stderr + run.stdout).trim().split('\n')[0]}`);
  });
});

describe('stall timeout', () => {
  it('a COPY whose bytes stop mid-stream exits 75; the next run, with the network back, loads every row', async () => {
    const proxy = await stallingProxy(1024 * 1024);
    const via = new URL(dbUrl);
    via.port = String(proxy.port);
    const job = await tripsJob({
      dbUrl,
      root: tmp.dir,
      rows: 40_000,
      stage: (dir) => ({ url: pathToFileURL(join(dir, 'stage')).href }),
    });
    const config = { ...job.config, source: { ...job.config.source, url: via.href, stall_timeout: '2s' } };
    const path = writeConfig(tmp.dir, config, 'stall.yaml');
    const stalled = await runCli(['run', '--config', path], {}, { timeoutMs: HANG_LIMIT_MS });
    expect(stalled.signal, 'killed by the test: the run hung').toBeNull();
    expect(stalled.code, stalled.stdout.slice(-1500)).toBe(75);
    const error = stalled.summary?.error as { message: string; hint: string };
    expect(error.message).toContain(`PostgreSQL at 127.0.0.1:${proxy.port} received no bytes for 2 s`);
    expect(error.hint).toContain('NetworkPolicy');
    console.log(`stall: exit ${stalled.code}: ${error.message}\n  hint: ${error.hint}`);

    proxy.setStall(false);
    const after = await runCli(['run', '--config', path], {}, { timeoutMs: HANG_LIMIT_MS });
    expect(after.code, after.stdout.slice(-1500)).toBe(0);
    expect(await job.facts()).toEqual(await job.sourceFacts());
  });

  it('time the run itself pauses reading does not count as a stall', async () => {
    const job = await tripsJob({
      dbUrl,
      root: tmp.dir,
      rows: 5_000,
      stage: (dir) => ({ url: pathToFileURL(join(dir, 'stage')).href }),
      overrides: {},
    });
    const config = { ...job.config, source: { ...job.config.source, stall_timeout: '1s' } };
    const path = writeConfig(tmp.dir, config, 'paused.yaml');
    // The mid-copy failpoint holds the COPY's reading for 3 s, as a full upload queue would.
    const r = await runCli(['run', '--config', path], { NIGHTSHIFT_FAILPOINTS: 'mid-copy=sleep:3000' });
    expect(r.code, r.stdout.slice(-1500)).toBe(0);
    expect(await job.facts()).toEqual(await job.sourceFacts());
  });
});
