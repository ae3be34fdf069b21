/**
 * Contract tests of the Snowflake warehouse: the real snowflake-sdk, pointed through its
 * documented `accessUrl` option at a local server that speaks the connector protocol
 * (test/helpers/snowflake-server.ts) and runs the statements on DuckDB. They pin the exact SQL
 * sent (COPY options, FILES chunks, transaction boundaries), the per-file COPY results, retries,
 * failures with rollback, and the exit codes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { redactor } from '../src/config/redact.js';
import { NightshiftError } from '../src/errors.js';
import { type SnowflakeOptions, SnowflakeWarehouse } from '../src/warehouse/snowflake.js';
import type { LoadRequest, StagedFile } from '../src/warehouse/warehouse.js';
import { tempDir } from './helpers/env.js';
import {
  cloneParts,
  keyPair,
  stageParts,
  TRIP_COLUMNS,
  trips,
  tripWindow,
} from './helpers/snowflake-fixtures.js';
import { FakeSnowflake } from './helpers/snowflake-server.js';

const tmp = tempDir('ns-snowflake-');
const stageDir = join(tmp.dir, 'stage');
const keys = keyPair(tmp.dir);
const readerKeys = keyPair(tmp.dir);
const otherKeys = keyPair(tmp.dir);
const passphrase = 'correct horse battery staple';
const encrypted = keyPair(tmp.dir, passphrase);
const oidcToken = 'eyJhbGciOiJSUzI1NiJ9.oidc-token-for-tests.signature';
const tokenPath = join(tmp.dir, 'oidc-token');
writeFileSync(tokenPath, `${oidcToken}\n`);
mkdirSync(stageDir, { recursive: true });

let server: FakeSnowflake;
let jobCounter = 0;

function fake(): FakeSnowflake {
  return new FakeSnowflake({
    account: 'MYORG-NIGHTSHIFT',
    database: 'ANALYTICS',
    users: {
      LOADER_SVC: { publicKey: keys.publicKey, roles: ['LOADER'] },
      READER_SVC: { publicKey: readerKeys.publicKey, roles: ['READER'] },
      LOCKED_SVC: { publicKey: encrypted.publicKey, roles: ['LOADER'] },
      WIF_SVC: { oidcTokens: [oidcToken], roles: ['LOADER'] },
    },
    stages: { 'ANALYTICS.RAW.NIGHTSHIFT_STAGE': { dir: stageDir, url: 's3://bucket/prefix/' } },
    asyncAfterMs: 300,
  });
}

beforeAll(async () => {
  server = fake();
  await server.start();
});
afterAll(async () => {
  await server.stop();
  tmp.cleanup();
});

function options(overrides: Partial<SnowflakeOptions> = {}): SnowflakeOptions {
  return {
    account: 'myorg-nightshift',
    user: 'loader_svc',
    role: 'LOADER',
    warehouse: 'LOAD_WH',
    database: 'analytics',
    schema: 'raw',
    authenticator: 'SNOWFLAKE_JWT',
    private_key_path: keys.privateKeyPath,
    stage: 'nightshift_stage',
    access_url: server.url,
    lock_timeout: 600_000,
    statement_timeout: 7_200_000,
    job: 'trips',
    loginRetries: 0,
    ...overrides,
  };
}

/** A fresh job (own table), its warehouse, and a request builder. */
function job(overrides: Partial<SnowflakeOptions> = {}) {
  const n = ++jobCounter;
  const table = `trips_${n}`;
  const warehouse = new SnowflakeWarehouse(options(overrides));
  const request = (
    staged: { runId: string; files: StagedFile[] },
    more: Partial<LoadRequest> = {},
  ): LoadRequest => ({
    job: 'trips',
    runId: staged.runId,
    table: `raw.${table}`,
    mode: 'append',
    files: staged.files,
    columns: TRIP_COLUMNS,
    window: tripWindow(1, 3),
    key: ['trip_id'],
    expectedRows: staged.files.reduce((n, f) => n + f.rows, 0),
    ...more,
  });
  const rows = () =>
    server.query(
      `SELECT "TRIP_ID" AS id, CAST("UPDATED_AT" AS VARCHAR) AS updated, CAST("FARE_USD" AS VARCHAR) AS fare, "REGION" AS region, CAST("PAYLOAD" AS VARCHAR) AS payload, "RIDE_ID" AS ride, CAST("TAGS" AS VARCHAR) AS tags FROM "RAW"."TRIPS_${n}" ORDER BY 1`,
    );
  return { n, table: `"ANALYTICS"."RAW"."TRIPS_${n}"`, warehouse, request, rows };
}

/** SQL of the statements run since `from`, one line each. */
function sqlSince(from: number): string[] {
  return server.statements.slice(from).map((s) => s.sql.replace(/\s*\n\s*/g, ' '));
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

const JOB_DIR = /trips\/data\/dt=\d{4}-\d{2}-\d{2}\/run=[0-9TZ]+-[0-9a-f]{6}\//;

describe('Snowflake warehouse contract: loads', () => {
  beforeEach(() => {
    expect(server.openSessions).toBe(0);
  });

  it('append creates the table from the Parquet columns, COPYs into a staging table and inserts in one transaction', async () => {
    const j = job();
    const staged = await stageParts(stageDir, 'trips', [trips(1, 2), trips(3, 3)]);
    const from = server.statements.length;
    try {
      const result = await j.warehouse.load(j.request(staged));
      expect(result).toMatchObject({ rowsLoaded: 3, rowsReplaced: 0 });
      expect(result.loadId).toMatch(/^[0-9a-f-]{36}$/);
    } finally {
      await j.warehouse.close();
    }
    const staging = `"ANALYTICS"."RAW"."NIGHTSHIFT_STAGING_${staged.runId.replace(/[^A-Za-z0-9]/g, '_')}"`;
    const dir = staged.files[0].key.slice(0, staged.files[0].key.lastIndexOf('/') + 1);
    expect(sqlSince(from)).toEqual([
      `ALTER SESSION SET TIMEZONE = 'UTC' LOCK_TIMEOUT = 600 STATEMENT_TIMEOUT_IN_SECONDS = 7200 QUERY_TAG = 'nightshift job=trips run=${staged.runId}'`,
      'SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE FROM "ANALYTICS".INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
      `CREATE TABLE IF NOT EXISTS ${j.table} ("TRIP_ID" NUMBER(19,0), "UPDATED_AT" TIMESTAMP_LTZ(6), "FARE_USD" NUMBER(10,2), "REGION" VARCHAR, "PAYLOAD" VARIANT, "RIDE_ID" VARCHAR(36), "TAGS" ARRAY)`,
      'SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE FROM "ANALYTICS".INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
      `CREATE TEMPORARY TABLE ${staging} ("trip_id" NUMBER(19,0), "updated_at" TIMESTAMP_LTZ(6), "fare_usd" NUMBER(10,2), "region" VARCHAR, "payload" VARCHAR, "ride_id" BINARY(16), "tags" ARRAY)`,
      'BEGIN TRANSACTION',
      `COPY INTO ${staging} FROM @"ANALYTICS"."RAW"."NIGHTSHIFT_STAGE"/${dir} FILES = ('part-00000.parquet', 'part-00001.parquet') FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE BINARY_AS_TEXT = FALSE) MATCH_BY_COLUMN_NAME = CASE_SENSITIVE ON_ERROR = ABORT_STATEMENT FORCE = TRUE`,
      `INSERT INTO ${j.table} ("TRIP_ID", "UPDATED_AT", "FARE_USD", "REGION", "PAYLOAD", "RIDE_ID", "TAGS") SELECT s."trip_id", s."updated_at", s."fare_usd", s."region", PARSE_JSON(s."payload"), SUBSTR(LOWER(HEX_ENCODE(s."ride_id")), 1, 8) || '-' || SUBSTR(LOWER(HEX_ENCODE(s."ride_id")), 9, 4) || '-' || SUBSTR(LOWER(HEX_ENCODE(s."ride_id")), 13, 4) || '-' || SUBSTR(LOWER(HEX_ENCODE(s."ride_id")), 17, 4) || '-' || SUBSTR(LOWER(HEX_ENCODE(s."ride_id")), 21, 12), s."tags" FROM ${staging} AS s`,
      'COMMIT',
      `DROP TABLE IF EXISTS ${staging}`,
    ]);
    expect(dir).toMatch(JOB_DIR);
    expect(server.executed(/INFORMATION_SCHEMA/).at(-1)?.binds).toEqual(['RAW', `TRIPS_${j.n}`]);
    expect(await j.rows()).toEqual([
      {
        id: '1',
        updated: '2024-05-01 00:01:00+00',
        fare: '11.00',
        region: 'us',
        payload: '{"surge":1,"app":"v0"}',
        ride: '00000000-0000-4000-8000-000000000001',
        tags: '["shared"]',
      },
      {
        id: '2',
        updated: '2024-05-01 00:02:00+00',
        fare: '12.00',
        region: 'ap',
        payload: '{"surge":2,"app":"v0"}',
        ride: '00000000-0000-4000-8000-000000000002',
        tags: '[]',
      },
      {
        id: '3',
        updated: '2024-05-01 00:03:00+00',
        fare: '13.00',
        region: 'eu',
        payload: '{"surge":0,"app":"v0"}',
        ride: '00000000-0000-4000-8000-000000000003',
        tags: '["shared"]',
      },
    ]);
    const login = server.logins.at(-1) as Record<string, unknown>;
    expect(login).toMatchObject({ AUTHENTICATOR: 'SNOWFLAKE_JWT', LOGIN_NAME: 'loader_svc' });
  });
});
