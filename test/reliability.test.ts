/**
 * The promise users care about most: after any failure, the next run leaves the warehouse with
 * every source row exactly once. Runs are killed (SIGKILL) at each stage boundary through
 * failpoints and at random moments from outside, started two and five at a time, paused past
 * their lease, cut off from PostgreSQL mid-COPY, and run fifty times against live writers; after
 * each, the warehouse is compared with the source: count, distinct keys, sum of a numeric column.
 * Each scenario adds its figures to a report (NIGHTSHIFT_RELIABILITY_REPORT) docs/reliability.md quotes.
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateBucketCommand, GetObjectCommand, ListObjectsV2Command, S3Client } from '@aws-sdk/client-s3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../src/demo/embedded.js';
import { TRIPS_DDL, TRIPS_INSERT } from '../src/demo/trips.js';
import { AwsIdentityServer } from './helpers/aws-identity-server.js';
import { duckQuery } from './helpers/duck.js';
import { type CliResult, freshDatabase, runCli, spawnCli, sql, tempDir, writeConfig } from './helpers/env.js';
import { GcpServer } from './helpers/gcp-server.js';
import { MOTO_KEYS, MOTO_REGION, MotoServer } from './helpers/moto.js';
import { FakeRedshiftData } from './helpers/redshift-data-server.js';
import { type Fault as S3Fault, S3Proxy } from './helpers/s3-proxy.js';
import { FakeSnowflake, type Fault } from './helpers/snowflake-server.js';
import { scaled } from './helpers/time.js';
import { missingTool } from './helpers/tools.js';
import { keyPair } from './helpers/warehouse-fixtures.js';

const tmp = tempDir('ns-reliability-');
const motoMissing = await missingTool('moto_server');
let dbUrl: string;
let jobs = 0;

interface ReportRow {
  fault: string;
  /** The docs/reliability.md table's row this scenario adds to (default: the fault itself). */
  group?: string;
  runs: number;
  lost: number;
  doubled: number;
}
const report: ReportRow[] = [];

beforeAll(async () => {
  dbUrl = await freshDatabase();
});
afterAll(() => {
  const path = process.env.NIGHTSHIFT_RELIABILITY_REPORT;
  if (path) writeFileSync(path, JSON.stringify(report, null, 2));
  tmp.cleanup();
});

interface Facts {
  rows: number;
  keys: number;
  sum: string;
}

/**
 * Where a job's rows land: a stage and a warehouse that run here. Each target gives the config of
 * job n and reads back the warehouse's facts (count, distinct keys, sum of a numeric column).
 */
interface Target {
  readonly name: string;
  readonly setup?: () => Promise<void>;
  readonly teardown?: () => Promise<void>;
  /** `stage` and `warehouse` config of job n, whose files live under `dir`. */
  config(n: number, dir: string, mode: 'append' | 'merge'): { stage: unknown; warehouse: unknown };
  /** The stage directory of job n, where its runs/ and state/ are. */
  stageDir(n: number, dir: string): string;
  /** The file that holds the object at `path` under that directory (an S3 server keeps its own names). */
  readonly objectFile?: (path: string) => string;
  /** The run manifests under a stage directory, for a stage whose objects are not files. */
  readonly manifests?: (stage: string) => Manifest[] | Promise<Manifest[]>;
  facts(n: number, dir: string): Promise<Facts>;
  /** Environment of the runs (credentials and endpoints). */
  readonly env?: () => Record<string, string>;
  /** Why this target cannot run here (a program missing): its cases are skipped. */
  readonly skip?: string;
}

/** What the tests read of a run manifest. */
interface Manifest {
  run_id: string;
  files: { key: string }[];
}

const NO_ROWS: Facts = { rows: 0, keys: 0, sum: '0.00' };

/** The embedded default: a local stage and a DuckDB file. */
const duckdbTarget: Target = {
  name: 'local stage, DuckDB',
  config: (_n, dir, mode) => ({
    stage: { url: pathToFileURL(join(dir, 'stage')).href },
    warehouse: { table: 'trips', mode, duckdb: { path: join(dir, 'warehouse.duckdb') } },
  }),
  stageDir: (n, dir) => join(dir, 'stage', `rel-${n}`),
  facts: async (_n, dir) => {
    const warehouse = join(dir, 'warehouse.duckdb');
    if (!existsSync(warehouse)) return NO_ROWS;
    const tables = await duckQuery(
      warehouse,
      "SELECT 1 FROM information_schema.tables WHERE table_name = 'trips'",
    );
    if (!tables.length) return NO_ROWS;
    const [r] = await duckQuery(
      warehouse,
      'SELECT count(*) AS rows, count(DISTINCT trip_id) AS keys, coalesce(sum(fare_usd), 0)::varchar AS s FROM trips',
    );
    return { rows: Number(r.rows), keys: Number(r.keys), sum: String(r.s) };
  },
};

/** A local stage and Snowflake, through its contract server (statements run on DuckDB there). */
function snowflakeTarget(): Target & { inject(fault: Fault): void } {
  const stageDir = join(tmp.dir, 'sf-stage');
  const keys = keyPair(tmp.dir);
  let server: FakeSnowflake | undefined;
  return {
    name: 'local stage, Snowflake (contract server)',
    setup: async () => {
      mkdirSync(stageDir, { recursive: true });
      server = new FakeSnowflake({
        account: 'MYORG-NIGHTSHIFT',
        database: 'ANALYTICS',
        users: { LOADER_SVC: { publicKey: keys.publicKey, roles: ['LOADER'] } },
        stages: { 'ANALYTICS.RAW.NIGHTSHIFT_STAGE': { dir: stageDir, url: 's3://bucket/prefix/' } },
        asyncAfterMs: 300,
      });
      await server.start();
    },
    teardown: async () => server?.stop(),
    inject: (fault) => server?.inject(fault),
    config: (n, _dir, mode) => ({
      stage: { url: pathToFileURL(stageDir).href },
      warehouse: {
        type: 'snowflake',
        table: `raw.trips_r${n}`,
        mode,
        snowflake: {
          account: 'myorg-nightshift',
          user: 'loader_svc',
          role: 'loader',
          warehouse: 'load_wh',
          database: 'analytics',
          schema: 'raw',
          private_key_path: keys.privateKeyPath,
          stage: 'nightshift_stage',
          access_url: server?.url,
        },
      },
    }),
    stageDir: (n) => join(stageDir, `rel-${n}`),
    facts: async (n) => {
      const table = `"RAW"."TRIPS_R${n}"`;
      const exists = await server?.query(
        `SELECT 1 FROM information_schema.tables WHERE table_schema = 'RAW' AND table_name = 'TRIPS_R${n}'`,
      );
      if (!exists?.length) return NO_ROWS;
      const [r] =
        (await server?.query(
          `SELECT count(*)::INT AS rows, count(DISTINCT "TRIP_ID")::INT AS keys, coalesce(sum("FARE_USD"), 0)::VARCHAR AS s FROM ${table}`,
        )) ?? [];
      return { rows: Number(r?.rows), keys: Number(r?.keys), sum: String(r?.s) };
    },
  };
}

/** An S3 stage: s3rver behind the proxy that enforces S3's conditional writes and checksums. */
function s3Stage() {
  let proxy: S3Proxy | undefined;
  let sts: AwsIdentityServer | undefined;
  const prefix = 'rel';
  return {
    setup: async () => {
      [proxy, sts] = await Promise.all([S3Proxy.start('nightshift-rel'), AwsIdentityServer.start()]);
      sts.addUser('AKIDLOADER', 'reliability-secret-key', 'nightshift-loader');
    },
    teardown: async () => {
      await Promise.all([proxy?.close(), sts?.close()]);
    },
    /** Makes the next matching S3 requests fail as S3 does under load. */
    inject(fault: S3Fault): void {
      proxy?.faults.push(fault);
    },
    objectFileOf(key: string): string {
      if (!proxy) throw new Error('S3 stage not started');
      return proxy.objectFile(key);
    },
    stage: () => ({
      url: `s3://nightshift-rel/${prefix}`,
      s3: { force_path_style: true, request_checksum: 'when_required', part_size_mb: 5 },
    }),
    stageDir: (n: number) => `${prefix}/rel-${n}`,
    env: (): Record<string, string> => ({
      AWS_ACCESS_KEY_ID: 'AKIDLOADER',
      AWS_SECRET_ACCESS_KEY: 'reliability-secret-key',
      AWS_REGION: 'us-east-1',
      AWS_ENDPOINT_URL_S3: proxy?.url ?? '',
      AWS_ENDPOINT_URL_STS: sts?.url ?? '',
      AWS_EC2_METADATA_DISABLED: 'true',
    }),
  };
}

/** An S3 stage and DuckDB (which reads the parts it downloads). */
function s3DuckdbTarget(s3 = s3Stage()): Target {
  return {
    name: 'S3 stage, DuckDB',
    setup: s3.setup,
    teardown: s3.teardown,
    config: (_n, dir, mode) => ({
      stage: s3.stage(),
      warehouse: { table: 'trips', mode, duckdb: { path: join(dir, 'warehouse.duckdb') } },
    }),
    stageDir: s3.stageDir,
    objectFile: (path) => s3.objectFileOf(path),
    facts: duckdbTarget.facts,
    env: s3.env,
  };
}

/**
 * An S3 stage on moto_server, a third-party S3 that enforces conditional writes itself (not our
 * proxy's reading of the documentation), and DuckDB.
 */
function motoDuckdbTarget(): Target {
  let moto: MotoServer | undefined;
  let sts: AwsIdentityServer | undefined;
  const bucket = 'nightshift-rel';
  const s3 = () =>
    new S3Client({
      endpoint: moto?.url,
      region: MOTO_REGION,
      forcePathStyle: true,
      credentials: MOTO_KEYS,
    });
  return {
    name: 'S3 stage on moto_server, DuckDB',
    skip: motoMissing,
    setup: async () => {
      [moto, sts] = await Promise.all([MotoServer.start(), AwsIdentityServer.start()]);
      sts.addUser(MOTO_KEYS.accessKeyId, MOTO_KEYS.secretAccessKey, 'nightshift-loader');
      const client = s3();
      await client.send(new CreateBucketCommand({ Bucket: bucket }));
      client.destroy();
    },
    teardown: async () => {
      await Promise.all([moto?.stop(), sts?.close()]);
    },
    config: (_n, dir, mode) => ({
      stage: { url: `s3://${bucket}/rel`, s3: { force_path_style: true, part_size_mb: 5 } },
      warehouse: { table: 'trips', mode, duckdb: { path: join(dir, 'warehouse.duckdb') } },
    }),
    stageDir: (n) => `rel/rel-${n}`,
    manifests: async (stage) => {
      const client = s3();
      try {
        const listed = await client.send(
          new ListObjectsV2Command({ Bucket: bucket, Prefix: `${stage}/runs/` }),
        );
        const keys = (listed.Contents ?? []).map((o) => o.Key ?? '').filter((k) => k.endsWith('.json'));
        return Promise.all(
          keys.map(async (Key) => {
            const got = await client.send(new GetObjectCommand({ Bucket: bucket, Key }));
            return JSON.parse(await (got.Body?.transformToString() ?? '{}')) as Manifest;
          }),
        );
      } finally {
        client.destroy();
      }
    },
    facts: duckdbTarget.facts,
    env: (): Record<string, string> => ({
      AWS_ACCESS_KEY_ID: MOTO_KEYS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: MOTO_KEYS.secretAccessKey,
      AWS_REGION: MOTO_REGION,
      AWS_ENDPOINT_URL_S3: moto?.url ?? '',
      AWS_ENDPOINT_URL_STS: sts?.url ?? '',
      AWS_EC2_METADATA_DISABLED: 'true',
    }),
  };
}

/** A Cloud Storage stage (the contract server, GKE Workload Identity) and DuckDB. */
function gcsDuckdbTarget(): Target & { inject: GcpServer['failNext']; clearFaults(): void } {
  let server: GcpServer | undefined;
  const bucket = 'nightshift-rel';
  return {
    name: 'Cloud Storage stage, DuckDB',
    setup: async () => {
      server = await GcpServer.start();
      server.createBucket(bucket);
      server.metadata = { email: 'nightshift@acme-data.iam.gserviceaccount.com', project: 'acme-data' };
    },
    teardown: async () => server?.close(),
    inject: (n, kind, filter) => server?.failNext(n, kind, filter),
    clearFaults: () => server?.clearFaults(),
    config: (_n, dir, mode) => ({
      stage: { url: `gs://${bucket}/rel`, gcs: { api_endpoint: server?.url, chunk_size_mb: 1 } },
      warehouse: { table: 'trips', mode, duckdb: { path: join(dir, 'warehouse.duckdb') } },
    }),
    stageDir: (n) => `rel/rel-${n}`,
    manifests: (stage) =>
      (server?.objectsOf(bucket) ?? [])
        .filter((o) => o.name.startsWith(`${stage}/runs/`) && o.name.endsWith('.json'))
        .map((o) => JSON.parse(o.data.toString('utf8')) as Manifest),
    facts: duckdbTarget.facts,
    env: (): Record<string, string> => ({
      GCE_METADATA_HOST: server?.host ?? '',
      KUBERNETES_SERVICE_HOST: '10.0.0.1',
    }),
  };
}

/** An S3 stage and Redshift through its contract server (statements run on PostgreSQL there). */
function redshiftTarget(): Target {
  const s3 = s3Stage();
  const role = 'arn:aws:iam::123456789012:role/redshift-copy';
  let server: FakeRedshiftData | undefined;
  const admin = async (text: string) => (await server?.admin(text)) ?? [];
  return {
    name: 'S3 stage, Redshift (contract server)',
    setup: async () => {
      await s3.setup();
      server = new FakeRedshiftData({
        pgUrl: await freshDatabase(),
        region: 'us-east-1',
        account: '123456789012',
        workgroup: 'analytics',
        database: 'dev',
        principals: {
          AKIDLOADER: { arn: 'arn:aws:sts::123456789012:assumed-role/nightshift-reliability/pod' },
        },
        roles: { [role]: { buckets: ['nightshift-rel'] } },
        buckets: [{ url: 's3://nightshift-rel/', dir: '', objectPath: (key) => s3.objectFileOf(key) }],
      });
      await server.start();
      await admin('CREATE SCHEMA raw');
      // Roles belong to the whole test server (other files make their own): a name of this suite's own.
      await admin(
        `DO $$ BEGIN CREATE ROLE "IAMR:nightshift-reliability"; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
      );
      await admin('GRANT USAGE, CREATE ON SCHEMA raw TO "IAMR:nightshift-reliability"');
    },
    teardown: async () => {
      await server?.stop();
      await s3.teardown();
    },
    config: (n, _dir, mode) => ({
      stage: s3.stage(),
      warehouse: {
        type: 'redshift',
        table: `raw.trips_r${n}`,
        mode,
        redshift: {
          workgroup: 'analytics',
          database: 'dev',
          iam_role: role,
          region: 'us-east-1',
          endpoint: server?.url,
        },
      },
    }),
    stageDir: s3.stageDir,
    objectFile: (path) => s3.objectFileOf(path),
    facts: async (n) => {
      const [exists] = await admin(`SELECT to_regclass('raw.trips_r${n}') IS NOT NULL AS e`);
      if (!exists?.e) return NO_ROWS;
      const [r] = await admin(
        `SELECT count(*) AS rows, count(DISTINCT trip_id) AS keys, coalesce(sum(fare_usd), 0)::text AS s FROM raw.trips_r${n}`,
      );
      return { rows: Number(r?.rows), keys: Number(r?.keys), sum: String(r?.s) };
    },
    env: s3.env,
  };
}

/** The run manifests of a job's stage, wherever its objects are kept. */
async function manifests(stage: string, target: Target): Promise<Manifest[]> {
  if (target.manifests) return await target.manifests(stage);
  const runsDir = target.objectFile ? dirname(target.objectFile(`${stage}/runs/x`)) : join(stage, 'runs');
  if (!existsSync(runsDir)) return [];
  return readdirSync(runsDir)
    .filter((name) => name.endsWith(target.objectFile ? '.json._S3rver_object' : '.json'))
    .map((name) => JSON.parse(readFileSync(join(runsDir, name), 'utf8')));
}

/** A job over its own copy of the trips table, with a short lease so killed holders expire fast. */
async function tripsJob(
  rows: number,
  mode: 'append' | 'merge',
  extra: Record<string, unknown> = {},
  target: Target = duckdbTarget,
  db = dbUrl,
) {
  const n = ++jobs;
  const table = `trips_r${n}`;
  await sql(db, TRIPS_DDL.replaceAll('trips', table));
  const insert = (first: number, last: number) =>
    sql(db, TRIPS_INSERT.replace('INSERT INTO trips', `INSERT INTO ${table}`), [first, last]);
  await insert(1, rows);
  const dir = join(tmp.dir, `job${n}`);
  const config = writeConfig(
    tmp.dir,
    {
      job: `rel-${n}`,
      source: { url: db, table, cursor: 'updated_at', key: ['trip_id'] },
      ...target.config(n, dir, mode),
      temp_dir: join(dir, 'tmp'),
      parquet: { part_size_mb: 1, row_group_mb: 1, page_kb: 64 },
      lease: { ttl: '2s' },
      log: { format: 'json', level: 'info' },
      ...extra,
    },
    `rel${n}.yaml`,
  );
  const facts = async (): Promise<{ source: Facts; warehouse: Facts }> => {
    const [s] = await sql<{ rows: string; s: string }>(
      db,
      `SELECT count(*) AS rows, coalesce(sum(fare_usd), 0)::text AS s FROM ${table}`,
    );
    const w = await target.facts(n, dir);
    return { source: { rows: Number(s.rows), keys: Number(s.rows), sum: s.s }, warehouse: w };
  };
  return {
    table,
    config,
    dir,
    stage: target.stageDir(n, dir),
    insert,
    facts,
    // An update moves rows to the newest cursor value, as `updated_at = now()` would.
    update: (ids: number) =>
      sql(
        db,
        `UPDATE ${table} SET fare_usd = fare_usd + 1, updated_at = (SELECT max(updated_at) FROM ${table}) + interval '1 millisecond' WHERE trip_id <= $1`,
        [ids],
      ),
    env: () => target.env?.() ?? {},
    run: (env: Record<string, string> = {}) =>
      runCli(['run', '--config', config], { ...target.env?.(), ...env }),
  };
}

type Job = Awaited<ReturnType<typeof tripsJob>>;

/** Runs until one succeeds (waiting out a dead holder's lease); returns how many runs it took. */
async function runUntilSuccess(job: Job, limit = 8): Promise<number> {
  for (let attempt = 1; attempt <= limit; attempt++) {
    const r = await job.run();
    if (r.code === 0) return attempt;
    expect([4, 75], `attempt ${attempt}: ${r.stdout.slice(-800)}${r.stderr}`).toContain(r.code);
    await sleep(1200);
  }
  throw new Error(`no run succeeded in ${limit} attempts`);
}

/** Compares warehouse and source; records the scenario in the report. */
async function expectExact(job: Job, fault: string, runs: number, group?: string): Promise<void> {
  const { source, warehouse } = await job.facts();
  report.push({
    fault,
    group,
    runs,
    lost: Math.max(0, source.rows - warehouse.keys),
    doubled: warehouse.rows - warehouse.keys + Math.max(0, warehouse.keys - source.rows),
  });
  expect(warehouse, fault).toEqual(source);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function spawnRun(
  config: string,
  env: Record<string, string> = {},
): { child: ChildProcess; done: Promise<CliResult> } {
  return spawnCli(['run', '--config', config], env);
}

const KILL_POINTS = [
  'after-lease',
  'after-snapshot',
  'mid-copy',
  'after-part-staged',
  'after-manifest',
  'before-load',
  'load-submitted',
  'after-load',
  'before-commit',
  'after-commit',
];

const snowflake = snowflakeTarget();
const TARGETS = [
  duckdbTarget,
  snowflake,
  s3DuckdbTarget(),
  motoDuckdbTarget(),
  gcsDuckdbTarget(),
  redshiftTarget(),
];

for (const target of TARGETS) {
  describe.skipIf(!!target.skip)(
    `killed at each stage boundary, the next runs load every row exactly once: ${target.name}`,
    () => {
      beforeAll(async () => target.setup?.());
      afterAll(async () => target.teardown?.());
      for (const mode of ['append', 'merge'] as const) {
        for (const point of KILL_POINTS) {
          it(`${mode}: SIGKILL ${point}`, async () => {
            const job = await tripsJob(60_000, mode, {}, target);
            const killed = await job.run({ NIGHTSHIFT_FAILPOINTS: point });
            expect(killed.signal, killed.stdout.slice(-500)).toBe('SIGKILL');
            // The source moves on while the run is dead.
            await job.insert(60_001, 61_000);
            if (mode === 'merge') await job.update(500);
            const runs = await runUntilSuccess(job);
            const where = target === duckdbTarget ? '' : `, ${target.name}`;
            await expectExact(
              job,
              `SIGKILL ${point} (${mode}${where})`,
              runs + 1,
              `SIGKILL at each of the ${KILL_POINTS.length} stage boundaries, append and merge, rows inserted and updated before the rerun: ${target.name}`,
            );
            // Files of the killed run are never loaded: the loads name their own run's files.
            const loaded = await manifests(job.stage, target);
            expect(loaded.length).toBeGreaterThan(0);
            for (const manifest of loaded) {
              for (const f of manifest.files) expect(f.key).toContain(`run=${manifest.run_id}/`);
            }
          });
        }
      }
    },
  );
}

describe('killed at random moments from outside', () => {
  it('kill -9 at random times, ten times over, then one clean run', async () => {
    const job = await tripsJob(120_000, 'merge');
    let runs = 0;
    let random = 7;
    for (let i = 0; i < 10; i++) {
      random = (random * 48271) % 2147483647;
      const { child, done } = spawnRun(job.config);
      await sleep(100 + (random % 1500));
      child.kill('SIGKILL');
      await done;
      runs++;
      await job.insert(120_001 + i * 100, 120_000 + (i + 1) * 100);
      await job.update(10 * (i + 1));
      await sleep(2100); // the killed holder's lease expires
    }
    runs += await runUntilSuccess(job);
    await expectExact(job, '`kill -9` from outside at random moments, ten times, writers in between', runs);
  });
});

describe('overlapping runs', () => {
  for (const n of [2, 5]) {
    it(`${n} runs started at once: one works, the rest exit 4`, async () => {
      const job = await tripsJob(20_000, 'append');
      // Each holds its lease a moment, so the starts surely overlap.
      const started = Array.from({ length: n }, () =>
        spawnRun(job.config, { NIGHTSHIFT_FAILPOINTS: 'after-lease=sleep:1500' }),
      );
      const results = await Promise.all(started.map((s) => s.done));
      const codes = results.map((r) => r.code).sort();
      expect(codes).toEqual([0, ...Array(n - 1).fill(4)]);
      await expectExact(
        job,
        `${n} runs at once`,
        n,
        'two and five runs started at once (one works, the rest exit 4)',
      );
    });
  }

  it('a holder killed while holding the lease is taken over after expiry', async () => {
    const job = await tripsJob(10_000, 'append');
    const killed = await job.run({ NIGHTSHIFT_FAILPOINTS: 'after-snapshot' });
    expect(killed.signal).toBe('SIGKILL');
    const early = await job.run();
    expect(early.code).toBe(4);
    expect(JSON.stringify(early.summary?.error)).toContain('another run holds the lease');
    await sleep(2200);
    const late = await job.run();
    expect(late.code, late.stdout.slice(-500)).toBe(0);
    await expectExact(
      job,
      'a holder killed while holding the lease (exit 4 until it expires, then taken over)',
      3,
    );
  });

  it('a run paused past its lease neither loads nor commits once another run took over', async () => {
    const job = await tripsJob(10_000, 'merge');
    // Paused before its export, so it holds no DuckDB file (whose own lock would fence it anyway).
    const paused = spawnRun(job.config, { NIGHTSHIFT_FAILPOINTS: 'after-snapshot=sleep:1000' });
    // Freeze the first run in its pause, past its lease, and let a second run do the work.
    await sleep(700);
    paused.child.kill('SIGSTOP');
    await sleep(2500);
    await job.update(100);
    const second = await job.run();
    expect(second.code, second.stdout.slice(-800)).toBe(0);
    paused.child.kill('SIGCONT');
    const first = await paused.done;
    expect(first.code, first.stdout.slice(-800)).toBe(4);
    expect(first.summary?.rows_loaded).toBeNull();
    const checkpoint = JSON.parse(readFileSync(join(job.stage, 'state', 'checkpoint.json'), 'utf8'));
    expect(checkpoint.run_id).toBe(second.summary?.run_id);
    await expectExact(
      job,
      'a run frozen past its lease while another takes over (it neither loads nor commits, exit 4)',
      2,
    );
  });
});

describe('transient faults', () => {
  it('PostgreSQL cutting the export connection mid-COPY exits 75; the next run finishes', async () => {
    const job = await tripsJob(60_000, 'append');
    const run = spawnRun(job.config, { NIGHTSHIFT_FAILPOINTS: 'mid-copy=sleep:1500' });
    await sleep(700);
    await sql(
      dbUrl,
      "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'nightshift (export)' AND datname = current_database()",
    );
    const cut = await run.done;
    expect(cut.code, cut.stdout.slice(-600)).toBe(75);
    expect(cut.summary?.status).toBe('failed');
    const runs = await runUntilSuccess(job);
    await expectExact(
      job,
      'PostgreSQL cutting the export connection mid-COPY (exit 75, the next run finishes)',
      runs + 1,
    );
  });
});

describe('transient faults: PostgreSQL restarted', () => {
  it('PostgreSQL restarted mid-COPY exits 75; the next run finishes', async () => {
    // Outside the suite's private temp dir: the postgres OS user must reach it when tests run as root.
    const dataDir = await mkdtemp(join(tmpdir(), 'nightshift-pg-restart-'));
    const first = await startEmbeddedPostgres({ dataDir });
    const port = Number(new URL(first.url).port);
    let server = first;
    try {
      const job = await tripsJob(60_000, 'append', {}, duckdbTarget, first.url);
      const run = spawnRun(job.config, { NIGHTSHIFT_FAILPOINTS: 'mid-copy=sleep:3000' });
      await sleep(1200);
      await server.stop(); // a fast shutdown: every session is cut, as in a failover or restart
      server = await startEmbeddedPostgres({ dataDir, port });
      const cut = await run.done;
      expect(cut.code, cut.stdout.slice(-600)).toBe(75);
      await job.insert(60_001, 60_500);
      const runs = await runUntilSuccess(job);
      await expectExact(job, 'PostgreSQL restarted mid-COPY (exit 75, the next run finishes)', runs + 1);
    } finally {
      await server.stop();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});

describe('transient faults: S3', () => {
  const s3 = s3Stage();
  const target = s3DuckdbTarget(s3);
  beforeAll(async () => target.setup?.());
  afterAll(async () => target.teardown?.());
  it('S3 answering 500, 503 SlowDown, resetting connections and losing responses: retried through; past the retries exit 75, and the next run finishes', async () => {
    // A lease long enough to outlast the retries of its own renewals.
    const job = await tripsJob(60_000, 'append', { lease: { ttl: '30s' } }, target);
    // Fewer failures than the SDK's attempts on each request: the run goes through. The lease and
    // checkpoint writes lose their first answer: the retried conditional write finds its own bytes.
    const state = (name: string) => (r: { key: string }) => r.key.endsWith(`state/${name}.json`);
    s3.inject({ action: 's3:PutObject', kind: 'lost', times: 1, match: state('lease') });
    s3.inject({ action: 's3:PutObject', kind: 'SlowDown', times: 2 });
    s3.inject({ action: 's3:GetObject', kind: 'InternalError', times: 2 });
    s3.inject({ action: 's3:PutObject', kind: 'reset', times: 1 });
    s3.inject({ action: 's3:PutObject', kind: 'lost', times: 2, match: state('checkpoint') });
    const through = await job.run();
    expect(through.code, through.stdout.slice(-600)).toBe(0);
    await job.insert(60_001, 61_000);
    // A part file refused on every attempt the SDK makes: exit 75 mid-export, nothing committed.
    s3.inject({ action: 's3:PutObject', kind: 'SlowDown', times: 5, match: (r) => r.key.includes('/data/') });
    const throttled = await job.run();
    expect(throttled.code, throttled.stdout.slice(-600)).toBe(75);
    await job.insert(61_001, 61_500);
    const runs = await runUntilSuccess(job);
    await expectExact(
      job,
      'S3 answering 500, 503 SlowDown, resetting connections and losing responses (retried; past the retries exit 75)',
      runs + 2,
    );
  });
});

describe('transient faults: Cloud Storage', () => {
  const target = gcsDuckdbTarget();
  beforeAll(async () => target.setup?.());
  afterAll(async () => target.teardown?.());
  it('Cloud Storage answering 503 and 429, resetting connections and losing responses: retried through; past the retries exit 75, and the next run finishes', async () => {
    const job = await tripsJob(60_000, 'append', { lease: { ttl: '30s' } }, target);
    // The lease and checkpoint writes lose their answers: the retry meets 412, and the state
    // writer finds its own bytes there.
    target.inject(1, 'lost', { method: 'POST', path: 'state%2Flease.json' });
    target.inject(2, 'http503', { method: 'POST' });
    target.inject(2, 'http429', { method: 'GET' });
    target.inject(1, 'reset', { method: 'PUT' });
    target.inject(2, 'lost', { method: 'POST', path: 'state%2Fcheckpoint.json' });
    const through = await job.run();
    target.clearFaults();
    expect(through.code, through.stdout.slice(-600)).toBe(0);
    await job.insert(60_001, 61_000);
    // Part files refused on every attempt: exit 75 mid-export, nothing committed.
    target.inject(1000, 'http503', { path: '%2Fdata%2F' });
    const failed = await job.run();
    target.clearFaults();
    expect(failed.code, failed.stdout.slice(-600)).toBe(75);
    await job.insert(61_001, 61_500);
    const runs = await runUntilSuccess(job);
    await expectExact(
      job,
      'Cloud Storage answering 503 and 429, resetting connections and losing responses (retried; past the retries exit 75)',
      runs + 2,
    );
  });
});

describe('transient faults: a slow warehouse', () => {
  beforeAll(async () => snowflake.setup?.());
  afterAll(async () => snowflake.teardown?.());
  it('Snowflake cutting the COPY at its statement timeout, then a lock wait timing out: exit 75 each; the next run finishes', async () => {
    const job = await tripsJob(30_000, 'merge', {}, snowflake);
    await job.run(); // the table exists; the faults hit a merge into it
    await job.update(300);
    snowflake.inject({
      match: /^COPY INTO/,
      delayMs: 1500,
      error: {
        code: '000630',
        sqlState: '57014',
        message: 'Statement reached its statement or warehouse timeout of 1 second(s) and was canceled.',
      },
    });
    const slow = await job.run();
    expect(slow.code, slow.stdout.slice(-600)).toBe(75);
    snowflake.inject({
      match: /^DELETE FROM/,
      delayMs: 1000,
      error: {
        code: '000625',
        sqlState: '57014',
        message: 'Statement aborted because the lock wait timeout of 1 seconds was exceeded.',
      },
    });
    const locked = await job.run();
    expect(locked.code, locked.stdout.slice(-600)).toBe(75);
    const runs = await runUntilSuccess(job);
    await expectExact(
      job,
      'a slow warehouse: Snowflake cutting the COPY at its statement timeout, then a lock wait timing out (exit 75 each)',
      runs + 3,
    );
  });
});

describe('a moving source', () => {
  it(
    'fifty runs against concurrent inserts, updates and late commits; then an exact comparison',
    async () => {
      const table = 'moving';
      await sql(
        dbUrl,
        `CREATE TABLE ${table} (id bigint PRIMARY KEY, amount numeric(12,2) NOT NULL, updated_at timestamptz NOT NULL DEFAULT clock_timestamp())`,
      );
      const dir = join(tmp.dir, 'moving');
      const warehouse = join(dir, 'warehouse.duckdb');
      const config = writeConfig(
        tmp.dir,
        {
          job: 'moving',
          source: { url: dbUrl, table, cursor: 'updated_at', key: ['id'], lag: '1500ms' },
          stage: { url: pathToFileURL(join(dir, 'stage')).href },
          warehouse: { table: 'moving', mode: 'merge', duckdb: { path: warehouse } },
          temp_dir: join(dir, 'tmp'),
          log: { format: 'json' },
        },
        'moving.yaml',
      );
      let stop = false;
      let nextId = 1;
      // Writers: inserts, updates, and transactions that stay open (late commits within the lag).
      const writer = async () => {
        while (!stop) {
          const first = nextId;
          nextId += 50;
          await sql(
            dbUrl,
            `INSERT INTO ${table} (id, amount) SELECT g, (g % 1000) / 10.0 FROM generate_series($1::bigint, $2::bigint) g`,
            [first, first + 49],
          );
          await sql(
            dbUrl,
            `UPDATE ${table} SET amount = amount + 1, updated_at = clock_timestamp() WHERE id IN (SELECT id FROM ${table} ORDER BY random() LIMIT 20)`,
          );
          await sleep(20);
        }
      };
      const lateWriter = async () => {
        while (!stop) {
          const id = nextId;
          nextId += 1;
          // updated_at is taken at insert; the commit lands up to 600 ms later, inside the lag.
          await sql(
            dbUrl,
            `BEGIN; INSERT INTO ${table} (id, amount) VALUES (${id}, 1.50); SELECT pg_sleep(0.6); COMMIT;`,
          );
        }
      };
      const writers = [writer(), writer(), lateWriter()];
      let runs = 0;
      for (let i = 0; i < 50; i++) {
        const r = await runCli(['run', '--config', config]);
        expect(r.code, r.stdout.slice(-600) + r.stderr).toBe(0);
        runs++;
      }
      stop = true;
      await Promise.all(writers);
      await sleep(1600); // past the lag: the last commits are now eligible
      for (;;) {
        const r = await runCli(['run', '--config', config]);
        runs++;
        if (r.summary?.status === 'no_new_rows') break;
        expect(r.code).toBe(0);
      }
      const [s] = await sql<{ rows: string; sum: string }>(
        dbUrl,
        `SELECT count(*) AS rows, sum(amount)::text AS sum FROM ${table}`,
      );
      const [w] = await duckQuery(
        warehouse,
        'SELECT count(*) AS rows, count(DISTINCT id) AS keys, sum(amount)::varchar AS sum FROM moving',
      );
      report.push({
        fault:
          'fifty incremental runs against concurrent inserts, updates and commits arriving late within the lag',
        runs,
        lost: Math.max(0, Number(s.rows) - Number(w.keys)),
        doubled: Number(w.rows) - Number(w.keys),
      });
      expect({ rows: Number(w.rows), keys: Number(w.keys), sum: String(w.sum) }).toEqual({
        rows: Number(s.rows),
        keys: Number(s.rows),
        sum: s.sum,
      });
      // Every row's latest version arrived, not just the right totals.
      const latest = await sql<{ id: string; amount: string }>(
        dbUrl,
        `SELECT id::text, amount::text FROM ${table} ORDER BY id`,
      );
      const loaded = await duckQuery(
        warehouse,
        'SELECT id::varchar AS id, amount::varchar AS amount FROM moving ORDER BY id',
      );
      expect(loaded).toEqual(latest);
    },
    scaled(600_000),
  );
});
