/**
 * Contract tests of the Redshift warehouse: the real @aws-sdk/client-redshift-data, pointed
 * through its documented `endpoint` option at a local server that answers as the Redshift Data
 * API does (test/helpers/redshift-data-server.ts) and runs the statements on PostgreSQL with the
 * database user's own grants. They pin the exact SQL and parameters sent (COPY options, the
 * manifest, the one-transaction batch), the manifest written through a real ObjectStore,
 * statement polling and cancelling, idempotent retries, and the exit code of each failure.
 */
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RedshiftData } from '@aws-sdk/client-redshift-data';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createWarehouse } from '../src/backends.js';
import { type Config, configSchema } from '../src/config/schema.js';
import { dataPrefix } from '../src/core/layout.js';
import { LocalStore } from '../src/store/local/index.js';
import { type RedshiftOptions, RedshiftWarehouse } from '../src/warehouse/redshift/index.js';
import { clientToken } from '../src/warehouse/redshift/sql.js';
import type { LoadRequest, StagedFile } from '../src/warehouse/warehouse.js';
import { freshDatabase, tempDir } from './helpers/env.js';
import { FakeRedshiftData } from './helpers/redshift-data-server.js';
import { until } from './helpers/time.js';
import {
  failure,
  stageParts,
  TRIP_COLUMNS,
  type Trip,
  trips,
  tripsLoadRequest,
  tripWindow,
} from './helpers/warehouse-fixtures.js';
import { warehouseSuite } from './helpers/warehouse-suite.js';

const REGION = 'us-east-1';
const ACCOUNT = '123456789012';
const COPY_ROLE = `arn:aws:iam::${ACCOUNT}:role/redshift-copy`;
const BLIND_ROLE = `arn:aws:iam::${ACCOUNT}:role/redshift-no-bucket`;
const SECRET = `arn:aws:secretsmanager:${REGION}:${ACCOUNT}:secret:redshift/loader-AbCdEf`;
const LOADER = 'IAMR:nightshift-loader';

const tmp = tempDir('ns-redshift-');
const stageDir = join(tmp.dir, 'stage');

/** The local stage as an S3 store would address it: objects at s3://bucket/prefix/<key>. */
class S3AddressedStage extends LocalStore {
  override urlOf(key: string): string {
    return `s3://bucket/prefix/${key}`;
  }
}
const store = new S3AddressedStage(pathToFileURL(stageDir).href);

let server: FakeRedshiftData;
let counter = 0;

beforeAll(async () => {
  server = new FakeRedshiftData({
    pgUrl: await freshDatabase(),
    region: REGION,
    account: ACCOUNT,
    workgroup: 'analytics',
    database: 'dev',
    principals: {
      AKIDLOADER: { arn: `arn:aws:sts::${ACCOUNT}:assumed-role/nightshift-loader/pod-1` },
      AKIDNOBATCH: {
        arn: `arn:aws:sts::${ACCOUNT}:assumed-role/nightshift-reader/pod-2`,
        deny: ['BatchExecuteStatement'],
      },
    },
    secrets: { [SECRET]: 'loader_secret' },
    roles: { [COPY_ROLE]: { buckets: ['bucket'] }, [BLIND_ROLE]: { buckets: [] } },
    buckets: [
      { url: 's3://bucket/prefix/', dir: stageDir },
      { url: 's3://eu-bucket/prefix/', dir: stageDir, region: 'eu-west-1' },
    ],
    // Small pages, so that every result with more rows than this is read across NextToken.
    pageSize: 3,
  });
  await server.start();
  // The minimal grants of docs/warehouse-redshift.md: USAGE and CREATE on the schema (TEMP on the database is
  // PUBLIC's by default).
  await server.admin('CREATE SCHEMA raw');
  for (const user of [LOADER, 'loader_secret']) {
    await server.admin(`CREATE ROLE "${user}"`);
    await server.admin(`GRANT USAGE, CREATE ON SCHEMA raw TO "${user}"`);
  }
});

afterAll(async () => {
  await server?.stop();
  tmp.cleanup();
});

// A fault a test set up but did not meet (a load cancelled before its COPY started) must not
// hold the next test's statement.
afterEach(() => server?.clearFaults());

function client(accessKey = 'AKIDLOADER', region = REGION): RedshiftData {
  return new RedshiftData({
    region,
    endpoint: server.url,
    credentials: { accessKeyId: accessKey, secretAccessKey: 'not-checked' },
    maxAttempts: 3,
  });
}

function warehouse(overrides: Partial<RedshiftOptions> = {}, accessKey?: string, region?: string) {
  return new RedshiftWarehouse(
    client(accessKey, region),
    {
      workgroup: 'analytics',
      database: 'dev',
      schema: 'public',
      iamRole: COPY_ROLE,
      region: REGION,
      statementTimeoutMs: 600_000,
      poll: { initialMs: 10, maxMs: 40 },
      cancelWaitMs: 2_000,
      ...overrides,
    },
    store,
  );
}

/** Stages parts (one per trips array) under the job's layout, with their real sizes. */
async function stage(parts: Trip[][]): Promise<{ runId: string; files: StagedFile[] }> {
  const staged = await stageParts(stageDir, 'trips', parts);
  return {
    runId: staged.runId,
    files: staged.files.map((f) => ({ ...f, bytes: statSync(join(stageDir, f.key)).size })),
  };
}

/** A fresh table name and a request builder for it. */
function job() {
  const table = `raw.trips_${++counter}`;
  const request = (
    staged: { runId: string; files: StagedFile[] },
    more: Partial<LoadRequest> = {},
  ): LoadRequest => tripsLoadRequest(table, staged, more);
  const rows = () =>
    server.admin(
      `SELECT trip_id AS id, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS updated, CAST(fare_usd AS text) AS fare, region, CAST(payload AS text) AS payload, ride_id AS ride, CAST(tags AS text) AS tags FROM ${table} ORDER BY 1`,
    );
  const exists = async () => (await server.admin('SELECT to_regclass($1) AS t', [table]))[0].t !== null;
  return { table, sql: `"raw"."trips_${counter}"`, request, rows, exists };
}

const requestsSince = (from: number, op?: string) =>
  server.requests.slice(from).filter((r) => op === undefined || r.op === op);

/** The shared Warehouse suite, against the same server, stage and warehouse as the cases below. */
let suiteCounter = 0;
warehouseSuite('Redshift warehouse contract', {
  warehouse: async () => warehouse(),
  table: () => `raw.suite_trips_${++suiteCounter}`,
  stage,
  count: async (table) =>
    (await server.admin('SELECT to_regclass($1) AS t', [table]))[0].t === null
      ? 0
      : Number((await server.admin(`SELECT count(*) AS n FROM ${table}`))[0].n),
  rows: async (table) =>
    (
      await server.admin(
        `SELECT trip_id AS id, CAST(fare_usd AS text) AS fare FROM ${table} ORDER BY trip_id`,
      )
    ).map((r) => [String(r.id), String(r.fare)]),
  stall: () => {
    // The COPY waits inside its transaction until the load cancels it.
    server.holdStatement(/^COPY/);
    return () =>
      server.batches().some((b) => b.subs.some((s) => s.sql.startsWith('COPY') && s.status === 'STARTED'));
  },
  cannot: {
    'session count mismatch': 'the Data API takes a load as one batch: the warehouse has no begin()',
  },
});

describe('Redshift warehouse contract: loads', () => {
  it('append creates the table and loads exactly the manifest in one batch transaction', async () => {
    const j = job();
    const staged = await stage([trips(1, 2), trips(3, 3)]);
    const from = server.requests.length;
    const wh = warehouse();
    const result = await wh.load(j.request(staged));
    await wh.close();
    const batch = server.batches().at(-1);
    expect(result).toEqual({ rowsLoaded: 3, rowsReplaced: 0, loadId: batch?.id });

    const staging = `"nightshift_staging_${staged.runId.toLowerCase().replace(/[^a-z0-9]/g, '_')}"`;
    const manifestKey = `${dataPrefix('trips', staged.runId)}_redshift.manifest`;
    const submitted = requestsSince(from, 'BatchExecuteStatement');
    expect(submitted).toHaveLength(1);
    expect(submitted[0].body.Sqls).toEqual([
      'SET statement_timeout TO 600000',
      `CREATE TABLE ${j.sql} ("trip_id" BIGINT, "updated_at" TIMESTAMPTZ, "fare_usd" DECIMAL(10,2), "region" VARCHAR(65535), "payload" SUPER, "ride_id" VARCHAR(36), "tags" SUPER)`,
      `CREATE TEMP TABLE ${staging} ("trip_id" BIGINT, "updated_at" TIMESTAMPTZ, "fare_usd" DECIMAL(10,2), "region" VARCHAR(65535), "payload" VARCHAR(65535), "ride_id" VARBYTE(16), "tags" SUPER)`,
      [
        `COPY ${staging}`,
        `FROM 's3://bucket/prefix/${manifestKey}'`,
        `IAM_ROLE '${COPY_ROLE}'`,
        'FORMAT AS PARQUET',
        'MANIFEST',
        'SERIALIZETOJSON',
        'STATUPDATE OFF',
      ].join('\n'),
      'SELECT pg_last_copy_count() AS rows_loaded, 1 / (CASE WHEN pg_last_copy_count() = CAST(:expected_rows AS BIGINT) THEN 1 ELSE 0 END) AS rows_match',
      `INSERT INTO ${j.sql} ("trip_id", "updated_at", "fare_usd", "region", "payload", "ride_id", "tags") SELECT s."trip_id", s."updated_at", s."fare_usd", s."region", JSON_PARSE(s."payload"), ${uuidText('s."ride_id"')}, s."tags" FROM ${staging} AS s`,
    ]);
    expect(submitted[0].body).toMatchObject({
      WorkgroupName: 'analytics',
      Database: 'dev',
      Parameters: [{ name: 'expected_rows', value: '3' }],
      StatementName: 'nightshift-load',
    });
    expect(submitted[0].body.ClientToken).toMatch(
      /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
    );
    expect(submitted[0].body).not.toHaveProperty('SecretArn');

    // The manifest lists exactly the run's files, mandatory, with their sizes.
    expect(JSON.parse(readFileSync(join(stageDir, manifestKey), 'utf8'))).toEqual({
      entries: staged.files.map((f) => ({
        url: `s3://bucket/prefix/${f.key}`,
        mandatory: true,
        meta: { content_length: statSync(join(stageDir, f.key)).size },
      })),
    });
    // The columns were read first; the count comes from the check statement, in the same session.
    const describe = requestsSince(from, 'ExecuteStatement')[0].body;
    expect(describe.Sql).toBe(
      'SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale FROM svv_columns WHERE table_schema = :schema AND table_name = :table ORDER BY ordinal_position',
    );
    expect(describe.Parameters).toEqual([
      { name: 'schema', value: 'raw' },
      { name: 'table', value: `trips_${counter}` },
    ]);
    expect(requestsSince(from, 'GetStatementResult').at(-1)?.body.Id).toBe(`${batch?.id}:5`);
    expect(requestsSince(from, 'DescribeStatement').length).toBeGreaterThan(2);
    expect(batch?.subs.map((s) => s.resultRows)).toEqual([0, 0, 0, 3, 1, 3]);

    expect(await j.rows()).toEqual([
      {
        id: '1',
        updated: '2024-05-01 00:01:00',
        fare: '11.00',
        region: 'us',
        payload: '{"app": "v0", "surge": 1}',
        ride: '00000000-0000-4000-8000-000000000001',
        tags: '["shared"]',
      },
      {
        id: '2',
        updated: '2024-05-01 00:02:00',
        fare: '12.00',
        region: 'ap',
        payload: '{"app": "v0", "surge": 2}',
        ride: '00000000-0000-4000-8000-000000000002',
        tags: '[]',
      },
      {
        id: '3',
        updated: '2024-05-01 00:03:00',
        fare: '13.00',
        region: 'eu',
        payload: '{"app": "v0", "surge": 0}',
        ride: '00000000-0000-4000-8000-000000000003',
        tags: '["shared"]',
      },
    ]);
  });
});

describe('Redshift warehouse contract: modes', () => {
  it('append replaces the window: a rerun of the window leaves each row once, with the new values', async () => {
    const j = job();
    const wh = warehouse();
    await wh.load(j.request(await stage([trips(1, 3)])));
    const from = server.requests.length;
    const result = await wh.load(j.request(await stage([trips(2, 4, 50)]), { window: tripWindow(2, 4) }));
    await wh.close();
    expect(result).toMatchObject({ rowsLoaded: 3, rowsReplaced: 2 });
    const body = requestsSince(from, 'BatchExecuteStatement')[0].body;
    const sqls = body.Sqls as string[];
    // The table exists: no CREATE TABLE, and the window's rows are deleted before the insert.
    expect(sqls.some((q) => q.startsWith('CREATE TABLE'))).toBe(false);
    expect(sqls[4]).toBe(
      `DELETE FROM ${j.sql} WHERE (("updated_at" > CAST(:w1 AS TIMESTAMPTZ)) OR ("updated_at" = CAST(:w1 AS TIMESTAMPTZ) AND "trip_id" > CAST(:w2 AS BIGINT))) AND (("updated_at" < CAST(:w3 AS TIMESTAMPTZ)) OR ("updated_at" = CAST(:w3 AS TIMESTAMPTZ) AND "trip_id" <= CAST(:w4 AS BIGINT)))`,
    );
    expect(body.Parameters).toEqual([
      { name: 'expected_rows', value: '3' },
      { name: 'w1', value: '2024-05-01 00:01:00.000+00:00' },
      { name: 'w2', value: '1' },
      { name: 'w3', value: '2024-05-01 00:04:00.000+00:00' },
      { name: 'w4', value: '4' },
    ]);
    expect((await j.rows()).map((r) => [r.id, r.fare])).toEqual([
      ['1', '11.00'],
      ['2', '12.50'],
      ['3', '13.50'],
      ['4', '14.50'],
    ]);
  });

  it('merge replaces the rows of the keys in the files and keeps the others', async () => {
    const j = job();
    const wh = warehouse();
    await wh.load(j.request(await stage([trips(1, 4)]), { mode: 'merge' }));
    const from = server.requests.length;
    const result = await wh.load(j.request(await stage([trips(3, 5, 70)]), { mode: 'merge' }));
    await wh.close();
    expect(result).toMatchObject({ rowsLoaded: 3, rowsReplaced: 2 });
    const sqls = requestsSince(from, 'BatchExecuteStatement')[0].body.Sqls as string[];
    const staging = sqls[1].slice('CREATE TEMP TABLE '.length, sqls[1].indexOf(' ('));
    expect(sqls[4]).toBe(
      `DELETE FROM ${j.sql} USING (SELECT DISTINCT s."trip_id" AS "trip_id" FROM ${staging} AS s) AS k WHERE ${j.sql}."trip_id" = k."trip_id"`,
    );
    expect((await j.rows()).map((r) => [r.id, r.fare])).toEqual([
      ['1', '11.00'],
      ['2', '12.00'],
      ['3', '13.70'],
      ['4', '14.70'],
      ['5', '15.70'],
    ]);
  });

  it('replace deletes every row and loads the files', async () => {
    const j = job();
    const wh = warehouse();
    await wh.load(j.request(await stage([trips(1, 4)])));
    const from = server.requests.length;
    const result = await wh.load(j.request(await stage([trips(7, 8)]), { mode: 'replace' }));
    await wh.close();
    expect(result).toMatchObject({ rowsLoaded: 2, rowsReplaced: 4 });
    expect((requestsSince(from, 'BatchExecuteStatement')[0].body.Sqls as string[])[4]).toBe(
      `DELETE FROM ${j.sql}`,
    );
    expect((await j.rows()).map((r) => r.id)).toEqual(['7', '8']);
  });

  it('a window with no files empties the window: no manifest, no COPY, no count check', async () => {
    const j = job();
    const wh = warehouse();
    await wh.load(j.request(await stage([trips(1, 4)]), { window: tripWindow(1, 4) }));
    const from = server.requests.length;
    const empty = { runId: (await stage([[]])).runId, files: [] };
    const result = await wh.load(j.request(empty, { window: tripWindow(2, 3) }));
    await wh.close();
    expect(result).toMatchObject({ rowsLoaded: 0, rowsReplaced: 2 });
    const body = requestsSince(from, 'BatchExecuteStatement')[0].body;
    expect((body.Sqls as string[]).map((q) => q.split(' ')[0])).toEqual([
      'SET',
      'CREATE',
      'DELETE',
      'INSERT',
    ]);
    expect((body.Parameters as { name: string }[]).map((p) => p.name)).toEqual(['w1', 'w2', 'w3', 'w4']);
    expect((await j.rows()).map((r) => r.id)).toEqual(['1', '4']);
  });

  it('loads into an existing table with only SELECT, INSERT and DELETE on it, converting to its own column types', async () => {
    const j = job();
    await server.admin(
      `CREATE TABLE ${j.sql} (trip_id BIGINT, updated_at TIMESTAMPTZ, fare_usd DECIMAL(12,3), region VARCHAR(8), payload VARCHAR(1000), ride_id CHAR(36), tags SUPER, note VARCHAR(20) DEFAULT 'kept')`,
    );
    await server.admin(`GRANT SELECT, INSERT, DELETE ON ${j.sql} TO "${LOADER}"`);
    const wh = warehouse();
    const staged = await stage([trips(1, 3)]);
    const from = server.requests.length;
    await wh.load(j.request(staged));
    await wh.close();
    const sqls = requestsSince(from, 'BatchExecuteStatement')[0].body.Sqls as string[];
    // JSON into a VARCHAR column stays text; the UUID is formatted for the CHAR column.
    expect(sqls.at(-1)).toContain(`s."region", s."payload", ${uuidText('s."ride_id"')}, s."tags" FROM`);
    // The window bounds are cast to the table's own types (its columns were read across pages).
    expect(sqls[4]).toContain('CAST(:w2 AS BIGINT)');
    expect(requestsSince(from, 'GetStatementResult').filter((r) => r.body.NextToken).length).toBeGreaterThan(
      1,
    );
    const rows = await server.admin(
      `SELECT trip_id, CAST(fare_usd AS text) AS fare, payload, ride_id, note FROM ${j.sql} ORDER BY 1`,
    );
    expect(rows[1]).toEqual({
      trip_id: '2',
      fare: '12.000',
      payload: '{"surge":2,"app":"v0"}',
      ride_id: '00000000-0000-4000-8000-000000000002',
      note: 'kept',
    });
  });
});

describe('Redshift warehouse contract: authentication and targets', () => {
  it('Secrets Manager: the secret names the database user, and the Data API gets the secret ARN', async () => {
    const j = job();
    const from = server.requests.length;
    const wh = warehouse({ secretArn: SECRET });
    await wh.load(j.request(await stage([trips(1, 2)])));
    await wh.close();
    for (const r of requestsSince(from).filter((q) => q.op.includes('Execute'))) {
      expect(r.body).toMatchObject({ WorkgroupName: 'analytics', Database: 'dev', SecretArn: SECRET });
    }
    const [owner] = await server.admin(
      'SELECT tableowner FROM pg_tables WHERE schemaname = $1 AND tablename = $2',
      ['raw', j.table.slice(4)],
    );
    expect(owner.tableowner).toBe('loader_secret');
  });

  it('a provisioned cluster as a named database user', async () => {
    const cluster = new FakeRedshiftData({
      ...server.options,
      pgUrl: await freshDatabase(),
      workgroup: undefined,
      cluster: 'analytics-prod',
    });
    await cluster.start();
    try {
      await cluster.admin('CREATE ROLE etl');
      await cluster.admin('GRANT CREATE ON SCHEMA public TO etl');
      const wh = new RedshiftWarehouse(
        new RedshiftData({
          region: REGION,
          endpoint: cluster.url,
          credentials: { accessKeyId: 'AKIDLOADER', secretAccessKey: 'x' },
        }),
        {
          cluster: 'analytics-prod',
          dbUser: 'etl',
          database: 'dev',
          schema: 'public',
          iamRole: 'default',
          statementTimeoutMs: 60_000,
          poll: { initialMs: 10, maxMs: 40 },
        },
        store,
      );
      const staged = await stage([trips(1, 2)]);
      const result = await wh.load({
        job: 'trips',
        runId: staged.runId,
        table: 'Trips',
        mode: 'append',
        files: staged.files,
        columns: TRIP_COLUMNS,
        window: tripWindow(1, 2),
        key: ['trip_id'],
        expectedRows: 2,
      });
      await wh.close();
      expect(result.rowsLoaded).toBe(2);
      const batch = cluster.requests.find((r) => r.op === 'BatchExecuteStatement')?.body ?? {};
      expect(batch).toMatchObject({ ClusterIdentifier: 'analytics-prod', DbUser: 'etl', Database: 'dev' });
      expect(batch).not.toHaveProperty('WorkgroupName');
      expect((batch.Sqls as string[])[3]).toContain('IAM_ROLE default\n');
      const [row] = await cluster.admin(
        `SELECT count(*) AS n, max(tableowner) AS owner FROM pg_tables WHERE tablename = 'trips'`,
      );
      expect(row).toEqual({ n: '1', owner: 'etl' });
    } finally {
      await cluster.stop();
    }
  });
});

describe('Redshift warehouse contract: retries and idempotency', () => {
  it('a BatchExecuteStatement whose response is lost is retried with the same ClientToken: one load', async () => {
    const j = job();
    const staged = await stage([trips(1, 3)]);
    const from = server.requests.length;
    const batches = server.batches().length;
    server.inject({ op: 'BatchExecuteStatement', lose: true });
    server.inject({ op: 'DescribeStatement', lose: true });
    server.inject({ op: 'GetStatementResult', lose: true });
    const wh = warehouse();
    const result = await wh.load(j.request(staged));
    await wh.close();
    expect(result.rowsLoaded).toBe(3);
    const submits = requestsSince(from, 'BatchExecuteStatement');
    expect(submits).toHaveLength(2);
    expect(submits[1].body.ClientToken).toBe(submits[0].body.ClientToken);
    expect(server.batches().length - batches).toBe(1);
    expect((await j.rows()).map((r) => r.id)).toEqual(['1', '2', '3']);
  });

  it('the same load submitted again (a retried run step) gets the first statement back, not a second load', async () => {
    const j = job();
    const staged = await stage([trips(1, 3)]);
    const request = j.request(staged);
    const batches = server.batches().length;
    const wh = warehouse();
    const first = await wh.load(request);
    const second = await wh.load(request);
    await wh.close();
    expect(second).toEqual(first);
    expect(server.batches().length - batches).toBe(1);
    const files = staged.files.map((f) => `s3://bucket/prefix/${f.key}:${f.bytes}`);
    expect(server.batches().at(-1)?.clientToken).toBe(
      clientToken('nightshift-load', 'trips', staged.runId, j.sql, 'append', '3', ...files),
    );
    expect((await j.rows()).map((r) => r.id)).toEqual(['1', '2', '3']);
  });

  it('throttling is retried by the SDK; when it persists the run exits 75', async () => {
    const j = job();
    const staged = await stage([trips(1, 2)]);
    server.inject({
      op: 'BatchExecuteStatement',
      error: { type: 'ThrottlingException', status: 400, message: 'Rate exceeded' },
    });
    const wh = warehouse();
    expect((await wh.load(j.request(staged))).rowsLoaded).toBe(2);
    server.inject({
      op: 'ExecuteStatement',
      times: 3,
      error: { type: 'ThrottlingException', status: 400, message: 'Rate exceeded' },
    });
    const err = await failure(wh.load(j.request(await stage([trips(3, 4)]), { window: tripWindow(3, 4) })));
    await wh.close();
    expect(err.exitCode).toBe(75);
    expect(err.message).toContain('ThrottlingException: Rate exceeded');
  });

  it('5xx answers while polling are retried; a Data API that keeps failing exits 75', async () => {
    const j = job();
    server.inject({
      op: 'DescribeStatement',
      times: 2,
      error: { type: 'InternalServerException', status: 500, message: 'Internal server error' },
    });
    const wh = warehouse();
    expect((await wh.load(j.request(await stage([trips(1, 2)])))).rowsLoaded).toBe(2);
    server.inject({
      op: 'DescribeStatement',
      times: 100,
      error: { type: 'InternalServerException', status: 500, message: 'Internal server error' },
    });
    const err = await failure(wh.load(j.request(await stage([trips(1, 2)]))));
    server.clearFaults();
    await wh.close();
    expect(err.exitCode).toBe(75);
    expect(err.message).toContain('InternalServerException');
  });
});

describe('Redshift warehouse contract: failures', () => {
  it('a statement that fails rolls the whole batch back and surfaces the Redshift error text: a serialization conflict exits 75', async () => {
    const j = job();
    const wh = warehouse();
    await wh.load(j.request(await stage([trips(1, 3)])));
    const conflict =
      'ERROR: 1023 DETAIL: Serializable isolation violation on table - 100012, transactions forming the cycle are: 8331, 8402 (pid:1073774898)';
    server.failStatement(/^INSERT/, conflict);
    const err = await failure(
      wh.load(j.request(await stage([trips(2, 3, 90)]), { window: tripWindow(2, 3) })),
    );
    await wh.close();
    expect(err.exitCode).toBe(75);
    expect(err.message).toBe(`Redshift could not insert into ${j.sql}: ${conflict}`);
    expect(err.hint).toMatch(/next run retries/);
    // The DELETE before the failing INSERT was rolled back with it.
    expect((await j.rows()).map((r) => [r.id, r.fare])).toEqual([
      ['1', '11.00'],
      ['2', '12.00'],
      ['3', '13.00'],
    ]);
    const batch = server.batches().at(-1);
    expect(batch?.subs.map((s) => s.status)).toEqual([
      'FINISHED',
      'FINISHED',
      'FINISHED',
      'FINISHED',
      'FINISHED',
      'FAILED',
    ]);
  });

  it('COPY loading another count than the files hold fails the check and rolls back, the new table too (exit 3)', async () => {
    const j = job();
    const wh = warehouse();
    const staged = await stage([trips(1, 3)]);
    const err = await failure(wh.load(j.request(staged, { expectedRows: 4 })));
    await wh.close();
    expect(err.exitCode).toBe(3);
    expect(err.message).toBe(
      "Redshift's COPY loaded 3 rows from 1 files but the files hold 4; the load was rolled back",
    );
    expect(server.batches().at(-1)?.subs[4]).toMatchObject({
      status: 'FAILED',
      error: 'ERROR: divide by zero',
    });
    expect(await j.exists()).toBe(false);
  });

  it('an IAM role not associated with the workgroup: exit 5, with what to associate', async () => {
    const j = job();
    const other = `arn:aws:iam::${ACCOUNT}:role/not-associated`;
    const wh = warehouse({ iamRole: other });
    const err = await failure(wh.load(j.request(await stage([trips(1, 2)]))));
    await wh.close();
    expect(err.exitCode).toBe(5);
    expect(err.message).toContain(
      `ERROR: User arn:aws:redshift-serverless:${REGION}:${ACCOUNT}:dbuser:analytics/${LOADER} is not authorized to assume IAM Role ${other}`,
    );
    expect(err.hint).toContain(`associate the role ${other} with the workgroup's namespace`);
    expect(await j.exists()).toBe(false);
  });

  it('a COPY role that may not read the bucket: exit 5, naming the S3 permissions', async () => {
    const j = job();
    const wh = warehouse({ iamRole: BLIND_ROLE });
    const err = await failure(wh.load(j.request(await stage([trips(1, 2)]))));
    await wh.close();
    expect(err.exitCode).toBe(5);
    expect(err.message).toContain('S3ServiceException:Access Denied,Status 403');
    expect(err.hint).toContain('s3:GetObject');
  });

  it('a stage bucket in another Region: exit 2, saying COPY reads only from the same Region', async () => {
    const j = job();
    class EuStage extends LocalStore {
      override urlOf(key: string): string {
        return `s3://eu-bucket/prefix/${key}`;
      }
    }
    const wh = new RedshiftWarehouse(
      client(),
      {
        workgroup: 'analytics',
        database: 'dev',
        schema: 'public',
        iamRole: COPY_ROLE,
        region: REGION,
        statementTimeoutMs: 60_000,
        poll: { initialMs: 10, maxMs: 40 },
      },
      new EuStage(pathToFileURL(stageDir).href),
    );
    const err = await failure(wh.load(j.request(await stage([trips(1, 2)]))));
    await wh.close();
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain('in a different region from this cluster');
    expect(err.hint).toContain(`Region of the workgroup analytics (${REGION})`);
  });

  it('a missing grant on an existing table: exit 5, naming the privilege', async () => {
    const j = job();
    await server.admin(
      `CREATE TABLE ${j.sql} (trip_id BIGINT, updated_at TIMESTAMPTZ, fare_usd DECIMAL(10,2), region VARCHAR(10), payload SUPER, ride_id VARCHAR(36), tags SUPER)`,
    );
    await server.admin(`GRANT SELECT, INSERT ON ${j.sql} TO "${LOADER}"`);
    const wh = warehouse();
    const err = await failure(wh.load(j.request(await stage([trips(1, 2)]))));
    await wh.close();
    expect(err.exitCode).toBe(5);
    expect(err.message).toBe(
      `Redshift could not delete the replaced rows of ${j.sql}: ERROR: permission denied for relation trips_${counter}`,
    );
    expect(err.hint).toContain(`SELECT and DELETE on ${j.sql}`);
  });

  it('no CREATE on the schema for a new table: exit 5', async () => {
    await server.admin('CREATE SCHEMA IF NOT EXISTS locked');
    await server.admin(`GRANT USAGE ON SCHEMA locked TO "${LOADER}"`);
    const j = job();
    const wh = warehouse();
    const err = await failure(wh.load(j.request(await stage([trips(1, 2)]), { table: 'locked.trips' })));
    await wh.close();
    expect(err.exitCode).toBe(5);
    expect(err.message).toContain('ERROR: permission denied for schema locked');
    expect(err.hint).toContain('USAGE and CREATE on schema "locked"');
  });

  it('a table the user cannot see is not loaded into as if it were new: exit 2 with the grant to give', async () => {
    const j = job();
    await server.admin(`CREATE TABLE ${j.sql} (trip_id BIGINT)`);
    const wh = warehouse();
    const err = await failure(wh.load(j.request(await stage([trips(1, 2)]))));
    await wh.close();
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain(`relation "trips_${counter}" already exists`);
    expect(err.hint).toContain('cannot see its columns');
  });

  it("a table another session creates while this load's CREATE TABLE waits (a killed run's load still running) is loaded into", async () => {
    const j = job();
    const killed = await stage([trips(1, 2)]);
    const rerun = await stage([trips(1, 3)]);
    // The killed run's batch has run its CREATE TABLE and is held, uncommitted, before its staging table.
    const held = server.holdStatement(/^CREATE TEMP TABLE/);
    const first = warehouse();
    const firstLoad = first.load(j.request(killed));
    const batchesOf = (runId: string) =>
      server
        .batches()
        .filter((b) => b.subs.some((s) => s.sql.includes(runId.toLowerCase().replace(/[^a-z0-9]/g, '_'))));
    const subOf = (runId: string, kind: RegExp) => batchesOf(runId)[0]?.subs.find((s) => kind.test(s.sql));
    await until(() => subOf(killed.runId, /^CREATE TABLE/)?.status === 'FINISHED');
    const second = warehouse();
    const from = server.requests.length;
    const secondLoad = second.load(j.request(rerun));
    // The rerun's CREATE TABLE waits for the killed run's catalog row; then the killed run commits.
    await until(
      async () =>
        (await server.admin("SELECT 1 FROM pg_stat_activity WHERE wait_event_type = 'Lock'")).length > 0,
    );
    held.release();
    expect(await firstLoad).toMatchObject({ rowsLoaded: 2 });
    expect(await secondLoad).toMatchObject({ rowsLoaded: 3, rowsReplaced: 2 });
    await Promise.all([first.close(), second.close()]);
    const batches = requestsSince(from, 'BatchExecuteStatement');
    expect(batches).toHaveLength(2);
    const failed = batchesOf(rerun.runId).find((b) => b.status === 'FAILED');
    expect(failed?.error).toMatch(
      /duplicate key value violates unique constraint "pg_type_typname_nsp_index"/,
    );
    expect((await j.rows()).map((r) => r.id)).toEqual(['1', '2', '3']);
  });

  it('the Data API refusing the runner (AccessDeniedException): exit 5, listing the IAM actions', async () => {
    const j = job();
    const wh = warehouse({}, 'AKIDNOBATCH');
    const err = await failure(wh.load(j.request(await stage([trips(1, 2)]))));
    await wh.close();
    expect(err.exitCode).toBe(5);
    expect(err.message).toContain('is not authorized to perform: redshift-data:BatchExecuteStatement');
    expect(err.hint).toContain('redshift-serverless:GetCredentials');
  });

  it('unknown AWS credentials: exit 5', async () => {
    const wh = warehouse({}, 'AKIDUNKNOWN');
    const err = await failure(wh.load(job().request(await stage([trips(1, 2)]))));
    await wh.close();
    expect(err.exitCode).toBe(5);
    expect(err.message).toContain('The security token included in the request is invalid.');
  });

  it('a client in the wrong Region does not find the workgroup: exit 2, pointing at the Region', async () => {
    const wh = warehouse({ region: 'eu-west-1' }, 'AKIDLOADER', 'eu-west-1');
    const err = await failure(wh.load(job().request(await stage([trips(1, 2)]))));
    await wh.close();
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain('Workgroup analytics not found.');
    expect(err.hint).toContain('Region eu-west-1');
  });

  it('a load still running at the deadline is cancelled (exit 75) and rolls back', async () => {
    const j = job();
    server.holdStatement(/^COPY/);
    const from = server.requests.length;
    const wh = warehouse({ statementTimeoutMs: 400 });
    // The COPY is held until cancelled: a load that did not cancel it would never end.
    const err = await failure(wh.load(j.request(await stage([trips(1, 2)]))));
    await wh.close();
    expect(err.exitCode).toBe(75);
    expect(err.message).toMatch(
      /^Redshift did not load 1 files into .* within 0.4 s; statement [0-9a-f-]+ was cancelled/,
    );
    const batch = server.batches().at(-1);
    expect(requestsSince(from, 'CancelStatement').map((r) => r.body.Id)).toEqual([batch?.id]);
    await batch?.done;
    expect(batch?.status).toBe('ABORTED');
    expect(await j.exists()).toBe(false);
  });

  it('SIGTERM cancels the running load and reports it stopped (exit 143)', async () => {
    const j = job();
    server.holdStatement(/^COPY/);
    const stop = new AbortController();
    const wh = warehouse();
    const staged = await stage([trips(1, 2)]);
    setTimeout(() => stop.abort(), 300);
    const err = await failure(wh.load(j.request(staged, { signal: stop.signal })));
    await wh.close();
    expect(err.exitCode).toBe(143);
    expect(err.message).toMatch(/stopped by SIGTERM while Redshift ran statement .*; it was cancelled/);
    expect(server.batches().at(-1)?.status).toBe('ABORTED');
    expect(await j.exists()).toBe(false);
  });

  it('a statement that ends ABORTED by someone else exits 75', async () => {
    const j = job();
    server.holdStatement(/^COPY/);
    const wh = warehouse();
    const before = server.batches().length;
    const pending = failure(wh.load(j.request(await stage([trips(1, 2)]))));
    while (!server.batches()[before]?.subs[3].startedAt) await new Promise((r) => setTimeout(r, 20));
    const admin = client();
    await admin.cancelStatement({ Id: server.batches()[before].id });
    admin.destroy();
    const err = await pending;
    await wh.close();
    expect(err.exitCode).toBe(75);
    expect(err.message).toMatch(/was cancelled$/);
  });
});

describe('Redshift warehouse contract: wiring', () => {
  it('createWarehouse builds it from warehouse.redshift: the endpoint and Region, the default credential chain', async () => {
    const base = configSchema.parse({
      job: 'trips',
      source: { url: 'postgres://u@h/db', table: 'trips', cursor: 'updated_at', key: ['trip_id'] },
      stage: { url: 'file:///tmp/unused' },
      warehouse: { type: 'duckdb', table: 'x', duckdb: { path: '/tmp/unused.duckdb' } },
    });
    const redshift = configSchema.shape.warehouse.shape.redshift.unwrap().parse({
      workgroup: 'analytics',
      database: 'dev',
      iam_role: COPY_ROLE,
      region: REGION,
      endpoint: server.url,
      statement_timeout: '10m',
    });
    // The s3:// stage URL is accepted once the S3 store is in; the warehouse only needs the URLs.
    const config = {
      ...base,
      stage: { url: 's3://bucket/prefix' },
      warehouse: { type: 'redshift', table: 'raw.wired', mode: 'append', redshift },
    } as Config;
    const saved = { id: process.env.AWS_ACCESS_KEY_ID, secret: process.env.AWS_SECRET_ACCESS_KEY };
    process.env.AWS_ACCESS_KEY_ID = 'AKIDLOADER';
    process.env.AWS_SECRET_ACCESS_KEY = 'not-checked';
    try {
      const wh = await createWarehouse(config, store);
      expect(wh.kind).toBe('redshift');
      const staged = await stage([trips(1, 2)]);
      const from = server.requests.length;
      const result = await wh.load({
        job: 'trips',
        runId: staged.runId,
        table: 'raw.wired',
        mode: 'append',
        files: staged.files,
        columns: TRIP_COLUMNS,
        window: tripWindow(1, 2),
        key: ['trip_id'],
        expectedRows: 2,
      });
      await wh.close();
      expect(result.rowsLoaded).toBe(2);
      const batch = requestsSince(from, 'BatchExecuteStatement')[0];
      expect(batch.accessKey).toBe('AKIDLOADER');
      expect((batch.body.Sqls as string[])[0]).toBe('SET statement_timeout TO 600000');
    } finally {
      process.env.AWS_ACCESS_KEY_ID = saved.id;
      process.env.AWS_SECRET_ACCESS_KEY = saved.secret;
      if (saved.id === undefined) delete process.env.AWS_ACCESS_KEY_ID;
      if (saved.secret === undefined) delete process.env.AWS_SECRET_ACCESS_KEY;
    }
  });
});

/** The UUID text expression the INSERT uses for a 16-byte staging column. */
function uuidText(col: string): string {
  const hex = `LOWER(TO_HEX(${col}))`;
  return [
    [1, 8],
    [9, 4],
    [13, 4],
    [17, 4],
    [21, 12],
  ]
    .map(([f, l]) => `SUBSTRING(${hex}, ${f}, ${l})`)
    .join(" || '-' || ");
}
