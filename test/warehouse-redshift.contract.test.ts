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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NightshiftError } from '../src/errors.js';
import { dataPrefix } from '../src/run/layout.js';
import { LocalStore } from '../src/store/local.js';
import { type RedshiftOptions, RedshiftWarehouse } from '../src/warehouse/redshift.js';
import { clientToken } from '../src/warehouse/redshift-sql.js';
import type { LoadRequest, StagedFile } from '../src/warehouse/warehouse.js';
import { freshDatabase, tempDir } from './helpers/env.js';
import { FakeRedshiftData } from './helpers/redshift-data-server.js';
import { stageParts, TRIP_COLUMNS, type Trip, trips, tripWindow } from './helpers/snowflake-fixtures.js';

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
  // The minimal grants of the README: USAGE and CREATE on the schema (TEMP on the database is
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
  ): LoadRequest => ({
    job: 'trips',
    runId: staged.runId,
    table,
    mode: 'append',
    files: staged.files,
    columns: TRIP_COLUMNS,
    window: tripWindow(1, 3),
    key: ['trip_id'],
    expectedRows: staged.files.reduce((n, f) => n + f.rows, 0),
    ...more,
  });
  const rows = () =>
    server.admin(
      `SELECT trip_id AS id, to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') AS updated, CAST(fare_usd AS text) AS fare, region, CAST(payload AS text) AS payload, ride_id AS ride, CAST(tags AS text) AS tags FROM ${table} ORDER BY 1`,
    );
  const exists = async () => (await server.admin('SELECT to_regclass($1) AS t', [table]))[0].t !== null;
  return { table, sql: `"raw"."trips_${counter}"`, request, rows, exists };
}

async function failure(promise: Promise<unknown>): Promise<NightshiftError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(NightshiftError);
    return err as NightshiftError;
  }
  throw new Error('expected the load to fail');
}

const requestsSince = (from: number, op?: string) =>
  server.requests.slice(from).filter((r) => op === undefined || r.op === op);

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

export { clientToken };
