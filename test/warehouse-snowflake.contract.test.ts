/**
 * Contract tests of the Snowflake warehouse: the real snowflake-sdk, pointed through its
 * documented `accessUrl` option at a local server that speaks the connector protocol
 * (test/helpers/snowflake-server.ts) and runs the statements on DuckDB. They pin the exact SQL
 * sent (COPY options, FILES chunks, transaction boundaries), the per-file COPY results, retries,
 * failures with rollback, and the exit codes.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { redactor } from '../src/config/redact.js';
import { TRIPS_DDL, TRIPS_INSERT } from '../src/demo/trips.js';
import { type SnowflakeOptions, SnowflakeWarehouse } from '../src/warehouse/snowflake/index.js';
import type { LoadRequest, StagedFile } from '../src/warehouse/warehouse.js';
import { freshDatabase, runCli, sql, tempDir, writeConfig } from './helpers/env.js';
import { FakeSnowflake } from './helpers/snowflake-server.js';
import { scaled } from './helpers/time.js';
import {
  cloneParts,
  failure,
  keyPair,
  stageParts,
  TRIP_COLUMNS,
  trips,
  tripsLoadRequest,
  tripWindow,
} from './helpers/warehouse-fixtures.js';
import { warehouseSuite } from './helpers/warehouse-suite.js';

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
  ): LoadRequest => tripsLoadRequest(`raw.${table}`, staged, more);
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

const JOB_DIR = /trips\/data\/dt=\d{4}-\d{2}-\d{2}\/run=[0-9TZ]+-[0-9a-f]{6}\//;

/** The shared Warehouse suite, against the same server, stage and warehouse options as the cases below. */
let suiteCounter = 0;
const exists = async (table: string) =>
  (
    await server.query(
      `SELECT count(*)::INT AS n FROM information_schema.tables WHERE table_schema = 'RAW' AND table_name = '${table.split('.')[1].toUpperCase()}'`,
    )
  )[0].n === 1;
warehouseSuite('Snowflake warehouse contract', {
  warehouse: async () => new SnowflakeWarehouse(options()),
  table: () => `raw.suite_${++suiteCounter}`,
  stage: (parts) => stageParts(stageDir, 'trips', parts),
  count: async (table) =>
    (await exists(table))
      ? Number(
          (
            await server.query(`SELECT count(*)::INT AS n FROM "RAW"."${table.split('.')[1].toUpperCase()}"`)
          )[0].n,
        )
      : 0,
  rows: async (table) =>
    (
      await server.query(
        `SELECT CAST("TRIP_ID" AS VARCHAR) AS id, CAST("FARE_USD" AS VARCHAR) AS fare FROM "RAW"."${table.split('.')[1].toUpperCase()}" ORDER BY "TRIP_ID"`,
      )
    ).map((r) => [String(r.id), String(r.fare)]),
  stall: () => {
    // The COPY is held long enough for the suite to stop the load once the server has taken it.
    server.inject({ match: /^COPY INTO/, delayMs: scaled(5_000) });
    const before = server.pendingFaults;
    return () => server.pendingFaults < before;
  },
  cannot: {
    'session count mismatch':
      'a Snowflake load is one COPY of the whole file list: the warehouse has no begin()',
  },
});

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
      `ALTER SESSION SET TIMEZONE = 'UTC' ABORT_DETACHED_QUERY = TRUE LOCK_TIMEOUT = 600 STATEMENT_TIMEOUT_IN_SECONDS = 7200 QUERY_TAG = 'nightshift job=trips run=${staged.runId}'`,
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

describe('Snowflake warehouse contract: modes', () => {
  it('append replaces the window: a second load of the same window leaves each row once', async () => {
    const j = job();
    try {
      await j.warehouse.load(
        j.request(await stageParts(stageDir, 'trips', [trips(1, 5)]), { window: tripWindow(1, 5) }),
      );
      const from = server.statements.length;
      const again = await stageParts(stageDir, 'trips', [trips(3, 5, 7)]);
      const result = await j.warehouse.load(j.request(again, { window: tripWindow(3, 5) }));
      expect(result).toMatchObject({ rowsLoaded: 3, rowsReplaced: 3 });
      const del = server.executed(/^DELETE/).at(-1);
      expect(sqlSince(from)).toContain(
        `DELETE FROM ${j.table} WHERE (("UPDATED_AT" > CAST(:1 AS TIMESTAMP_LTZ)) OR ("UPDATED_AT" = CAST(:1 AS TIMESTAMP_LTZ) AND "TRIP_ID" > CAST(:2 AS NUMBER(19,0)))) AND (("UPDATED_AT" < CAST(:3 AS TIMESTAMP_LTZ)) OR ("UPDATED_AT" = CAST(:3 AS TIMESTAMP_LTZ) AND "TRIP_ID" <= CAST(:4 AS NUMBER(19,0))))`,
      );
      expect(del?.binds).toEqual([
        '2024-05-01T00:02:00.000+00:00',
        '2',
        '2024-05-01T00:05:00.000+00:00',
        '5',
      ]);
      const rows = await j.rows();
      expect(rows.map((r) => [r.id, r.fare])).toEqual([
        ['1', '11.00'],
        ['2', '12.00'],
        ['3', '13.07'],
        ['4', '14.07'],
        ['5', '15.07'],
      ]);
    } finally {
      await j.warehouse.close();
    }
  });

  it('merge deletes the keys present in the files, then inserts, in one transaction', async () => {
    const j = job();
    try {
      await j.warehouse.load(
        j.request(await stageParts(stageDir, 'trips', [trips(1, 4)]), { mode: 'merge' }),
      );
      const from = server.statements.length;
      const update = await stageParts(stageDir, 'trips', [[...trips(2, 2, 9), ...trips(6, 6, 9)]]);
      const result = await j.warehouse.load(j.request(update, { mode: 'merge' }));
      expect(result).toMatchObject({ rowsLoaded: 2, rowsReplaced: 1 });
      const sql = sqlSince(from);
      const staging = `"ANALYTICS"."RAW"."NIGHTSHIFT_STAGING_${update.runId.replace(/[^A-Za-z0-9]/g, '_')}"`;
      expect(sql.slice(sql.indexOf('BEGIN TRANSACTION'))).toEqual([
        'BEGIN TRANSACTION',
        expect.stringMatching(/^COPY INTO /),
        `DELETE FROM ${j.table} USING (SELECT DISTINCT s."trip_id" AS "TRIP_ID" FROM ${staging} AS s) AS k WHERE ${j.table}."TRIP_ID" = k."TRIP_ID"`,
        expect.stringMatching(/^INSERT INTO /),
        'COMMIT',
        `DROP TABLE IF EXISTS ${staging}`,
      ]);
      expect((await j.rows()).map((r) => [r.id, r.fare])).toEqual([
        ['1', '11.00'],
        ['2', '12.09'],
        ['3', '13.00'],
        ['4', '14.00'],
        ['6', '16.09'],
      ]);
    } finally {
      await j.warehouse.close();
    }
  });

  it('replace deletes every row and inserts the export in one transaction', async () => {
    const j = job();
    try {
      await j.warehouse.load(
        j.request(await stageParts(stageDir, 'trips', [trips(1, 4)]), { mode: 'replace' }),
      );
      const result = await j.warehouse.load(
        j.request(await stageParts(stageDir, 'trips', [trips(7, 8)]), { mode: 'replace' }),
      );
      expect(result).toMatchObject({ rowsLoaded: 2, rowsReplaced: 4 });
      expect(server.executed(/^DELETE/).at(-1)?.sql).toBe(`DELETE FROM ${j.table}`);
      expect((await j.rows()).map((r) => r.id)).toEqual(['7', '8']);
    } finally {
      await j.warehouse.close();
    }
  });

  it('loads into an existing table whose columns differ in case, converting only what the column needs', async () => {
    const j = job();
    await server.createTable(`"ANALYTICS"."RAW"."TRIPS_${j.n}"`, [
      { name: 'TRIP_ID', type: 'NUMBER(38,0)' },
      { name: 'UPDATED_AT', type: 'TIMESTAMP_LTZ(9)' },
      { name: 'FARE_USD', type: 'NUMBER(12,2)' },
      { name: 'REGION', type: 'VARCHAR(16)' },
      { name: 'PAYLOAD', type: 'VARCHAR' },
      { name: 'RIDE_ID', type: 'BINARY(16)' },
      { name: 'TAGS', type: 'ARRAY' },
      { name: 'LOADED_BY', type: 'VARCHAR' },
    ]);
    try {
      const staged = await stageParts(stageDir, 'trips', [trips(1, 2)]);
      await j.warehouse.load(j.request(staged));
      const insert = server.executed(/^INSERT/).at(-1)?.sql ?? '';
      expect(insert).toContain(
        'SELECT s."trip_id", s."updated_at", s."fare_usd", s."region", s."payload", s."ride_id", s."tags" FROM',
      );
      expect(server.executed(/^CREATE TABLE/).filter((s) => s.sql.includes(`TRIPS_${j.n}"`))).toEqual([]);
      const [row] = await server.query(
        `SELECT "PAYLOAD" AS p, hex("RIDE_ID") AS r FROM "RAW"."TRIPS_${j.n}" ORDER BY "TRIP_ID" LIMIT 1`,
      );
      expect(row).toEqual({ p: '{"surge":1,"app":"v0"}', r: '00000000000040008000000000000001' });
    } finally {
      await j.warehouse.close();
    }
  });

  it('names at most 1,000 files per COPY and sums the per-file rows of every chunk', async () => {
    const j = job();
    const one = await stageParts(stageDir, 'trips', [trips(1, 1)]);
    const many = cloneParts(stageDir, 'trips', one.files[0], 1001);
    try {
      // The same trip 1,001 times: merge on nothing would duplicate, so load them as a replace.
      const result = await j.warehouse.load(j.request(many, { mode: 'replace' }));
      expect(result.rowsLoaded).toBe(1001);
    } finally {
      await j.warehouse.close();
    }
    const copies = server.executed(/^COPY INTO/).slice(-2);
    const names = (sql: string) => [...sql.matchAll(/'(part-\d+\.parquet)'/g)].map((m) => m[1]);
    expect(names(copies[0].sql)).toHaveLength(1000);
    expect(names(copies[0].sql)[0]).toBe('part-00000.parquet');
    expect(names(copies[1].sql)).toEqual(['part-01000.parquet']);
    const sql = sqlSince(server.statements.indexOf(copies[0]) - 1);
    expect(sql[0]).toBe('BEGIN TRANSACTION');
    expect(sql.filter((s) => s === 'COMMIT')).toHaveLength(1);
  });

  it('loads a window with no rows (an empty part) and commits nothing new', async () => {
    const j = job();
    try {
      const empty = await stageParts(stageDir, 'trips', [[]]);
      const result = await j.warehouse.load(j.request(empty, { mode: 'replace' }));
      expect(result).toMatchObject({ rowsLoaded: 0, rowsReplaced: 0 });
    } finally {
      await j.warehouse.close();
    }
  });
});

describe('Snowflake warehouse contract: COPY results', () => {
  it.each([
    [
      'LOAD_FAILED',
      { status: 'LOAD_FAILED' as const, rowsLoaded: 0, firstError: "Numeric value 'x' is not recognized" },
      /ended LOAD_FAILED with 0 of 2 rows: Numeric value 'x' is not recognized/,
    ],
    [
      'PARTIALLY_LOADED',
      { status: 'PARTIALLY_LOADED' as const, rowsLoaded: 1, firstError: 'bad row' },
      /ended PARTIALLY_LOADED with 1 of 2 rows/,
    ],
    ['LOADED with fewer rows', { status: 'LOADED' as const, rowsLoaded: 1 }, /ended LOADED with 1 of 2 rows/],
  ])('a file reported %s fails the load (exit 3) and rolls it back', async (_name, outcome, message) => {
    const j = job();
    try {
      await j.warehouse.load(
        j.request(await stageParts(stageDir, 'trips', [trips(1, 3)]), { window: tripWindow(1, 3) }),
      );
      const before = await j.rows();
      const from = server.statements.length;
      server.inject({ match: /^COPY INTO/, copy: outcome });
      const err = await failure(
        j.warehouse.load(
          j.request(await stageParts(stageDir, 'trips', [trips(1, 2)]), { window: tripWindow(1, 2) }),
        ),
      );
      expect(err.exitCode).toBe(3);
      expect(err.message).toMatch(message);
      const sql = sqlSince(from);
      expect(sql).toContain('ROLLBACK');
      expect(sql).not.toContain('COMMIT');
      expect(sql.some((s) => s.startsWith('DELETE') || s.startsWith('INSERT'))).toBe(false);
      expect(await j.rows()).toEqual(before);
    } finally {
      await j.warehouse.close();
    }
  });

  it('"Copy executed with 0 files processed" when files were expected fails the load (exit 3)', async () => {
    const j = job();
    try {
      server.inject({ match: /^COPY INTO/, copy: 'zero-files' });
      const err = await failure(
        j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 2)]))),
      );
      expect(err.exitCode).toBe(3);
      expect(err.message).toContain(
        'COPY processed 0 of 1 files (2 rows): "Copy executed with 0 files processed."',
      );
      expect(err.hint).toMatch(/stage points at stage.url/);
      expect(server.statements.at(-2)?.sql).toBe('ROLLBACK');
      expect(await server.query(`SELECT count(*)::INT AS n FROM "RAW"."TRIPS_${j.n}"`)).toEqual([{ n: 0 }]);
    } finally {
      await j.warehouse.close();
    }
  });

  it('the 0-files answer for files that hold no rows is not an error', async () => {
    const j = job();
    try {
      server.inject({ match: /^COPY INTO/, copy: 'zero-files' });
      const result = await j.warehouse.load(
        j.request(await stageParts(stageDir, 'trips', [[]]), { mode: 'replace' }),
      );
      expect(result.rowsLoaded).toBe(0);
    } finally {
      await j.warehouse.close();
    }
  });

  it('files the manifest counts differently from what COPY loaded fail the load (exit 3)', async () => {
    const j = job();
    try {
      const staged = await stageParts(stageDir, 'trips', [trips(1, 3)]);
      const lying = { ...staged, files: staged.files.map((f) => ({ ...f, rows: 4 })) };
      const err = await failure(j.warehouse.load(j.request(lying)));
      expect(err.exitCode).toBe(3);
      expect(err.message).toMatch(/ended LOADED with 3 of 4 rows/);
      expect(await server.query(`SELECT count(*)::INT AS n FROM "RAW"."TRIPS_${j.n}"`)).toEqual([{ n: 0 }]);
    } finally {
      await j.warehouse.close();
    }
  });

  it('a file missing from the stage is named, with the stage to check (exit 2)', async () => {
    const j = job();
    try {
      const staged = await stageParts(stageDir, 'trips', [trips(1, 1)]);
      const missing = {
        ...staged,
        files: [
          ...staged.files,
          { ...staged.files[0], key: staged.files[0].key.replace('part-00000', 'part-00009') },
        ],
      };
      const err = await failure(j.warehouse.load(j.request(missing, { expectedRows: 2 })));
      expect(err.exitCode).toBe(2);
      expect(err.message).toMatch(
        /Remote file 's3:\/\/bucket\/prefix\/trips\/data\/.*part-00009.parquet' was not found/,
      );
      expect(err.hint).toContain('"ANALYTICS"."RAW"."NIGHTSHIFT_STAGE" must point at stage.url');
    } finally {
      await j.warehouse.close();
    }
  });
});

describe('Snowflake warehouse contract: retries and failures', () => {
  it('a COPY whose response is lost is retried with the same requestId and runs once', async () => {
    const j = job();
    try {
      server.inject({ match: /^COPY INTO/, dropResponse: true });
      const staged = await stageParts(stageDir, 'trips', [trips(1, 3)]);
      const result = await j.warehouse.load(j.request(staged));
      expect(result.rowsLoaded).toBe(3);
    } finally {
      await j.warehouse.close();
    }
    const copy = server.executed(/^COPY INTO/).at(-1);
    const posts = server.requests.filter(
      (r) => r.path === '/queries/v1/query-request' && r.query.get('requestId') === copy?.requestId,
    );
    expect(posts).toHaveLength(2);
    expect(posts[1].query.get('retryCount')).toBe('1');
    expect(server.statements.filter((s) => s.requestId === copy?.requestId)).toHaveLength(1);
    expect(
      await server.query(
        `SELECT count(*)::INT AS n, count(DISTINCT "TRIP_ID")::INT AS k FROM "RAW"."TRIPS_${j.n}"`,
      ),
    ).toEqual([{ n: 3, k: 3 }]);
  });

  it('a COMMIT whose response is lost is retried without committing twice', async () => {
    const j = job();
    try {
      server.inject({ match: /^COMMIT$/, dropResponse: true });
      const result = await j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 2)])));
      expect(result.rowsLoaded).toBe(2);
    } finally {
      await j.warehouse.close();
    }
    expect(await server.query(`SELECT count(*)::INT AS n FROM "RAW"."TRIPS_${j.n}"`)).toEqual([{ n: 2 }]);
  });

  it('throttling (HTTP 429, then 503) is retried by the SDK with the same requestId, and the COPY runs once', async () => {
    const j = job();
    try {
      server.inject({ match: /^COPY INTO/, httpStatus: 429 });
      server.inject({ match: /^COPY INTO/, httpStatus: 503 });
      const result = await j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 2)])));
      expect(result.rowsLoaded).toBe(2);
    } finally {
      await j.warehouse.close();
    }
    const copy = server.executed(/^COPY INTO/).at(-1);
    const posts = server.requests.filter((r) => r.query.get('requestId') === copy?.requestId);
    expect(posts.map((p) => p.query.get('retryCount'))).toEqual([null, '1', '2']);
    expect(server.statements.filter((s) => s.requestId === copy?.requestId)).toHaveLength(1);
  });

  it('a statement that fails rolls the transaction back and leaves the table as it was (a type mismatch is exit 2)', async () => {
    const j = job();
    try {
      await j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 3)])));
      const before = await j.rows();
      const from = server.statements.length;
      server.inject({
        match: /^INSERT INTO/,
        error: { code: '100038', sqlState: '22018', message: "Numeric value 'abc' is not recognized" },
      });
      const err = await failure(
        j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 3, 5)]))),
      );
      expect(err.exitCode).toBe(2);
      expect(err.message).toBe(
        `Snowflake could not insert into ${j.table}: a value does not fit the table: Numeric value 'abc' is not recognized`,
      );
      const sql = sqlSince(from);
      expect(sql.slice(sql.indexOf('BEGIN TRANSACTION'))).toEqual([
        'BEGIN TRANSACTION',
        expect.stringMatching(/^COPY INTO/),
        expect.stringMatching(/^DELETE FROM/),
        'ROLLBACK',
        expect.stringMatching(/^DROP TABLE IF EXISTS/),
      ]);
      expect(await j.rows()).toEqual(before);
    } finally {
      await j.warehouse.close();
    }
  });

  it('a lock wait timeout is transient (exit 75) and rolls back', async () => {
    const j = job();
    try {
      server.inject({
        match: /^DELETE FROM/,
        error: {
          code: '000625',
          sqlState: '57014',
          message: `Statement '01b2' has locked table 'TRIPS' in transaction 1716 and this lock has not yet been released. Your statement '01b3' was aborted because the number of waiters for this lock exceeds the 20 statements limit.`,
        },
      });
      await server.createTable(`"ANALYTICS"."RAW"."TRIPS_${j.n}"`, [
        { name: 'TRIP_ID', type: 'NUMBER(19,0)' },
        { name: 'UPDATED_AT', type: 'TIMESTAMP_LTZ(6)' },
        { name: 'FARE_USD', type: 'NUMBER(10,2)' },
        { name: 'REGION', type: 'VARCHAR' },
        { name: 'PAYLOAD', type: 'VARIANT' },
        { name: 'RIDE_ID', type: 'VARCHAR(36)' },
        { name: 'TAGS', type: 'ARRAY' },
      ]);
      const err = await failure(
        j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 2)]))),
      );
      expect(err.exitCode).toBe(75);
      expect(err.message).toMatch(/waited too long for a lock on "ANALYTICS"."RAW"."TRIPS_\d+"/);
      expect(err.hint).toMatch(/lock_timeout/);
      expect(server.statements.at(-2)?.sql).toBe('ROLLBACK');
    } finally {
      await j.warehouse.close();
    }
  });

  it('a statement cancelled by its timeout is transient (exit 75)', async () => {
    const j = job();
    try {
      server.inject({
        match: /^COPY INTO/,
        error: {
          code: '000630',
          sqlState: '57014',
          message:
            'Statement reached its statement or warehouse timeout of 7,200 second(s) and was canceled.',
        },
      });
      const err = await failure(
        j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 2)]))),
      );
      expect(err.exitCode).toBe(75);
    } finally {
      await j.warehouse.close();
    }
  });

  it('a long COPY is answered "in progress" and polled until its result arrives', async () => {
    const j = job();
    try {
      server.inject({ match: /^COPY INTO/, delayMs: 1200 });
      const result = await j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 2)])));
      expect(result.rowsLoaded).toBe(2);
    } finally {
      await j.warehouse.close();
    }
    const copy = server.executed(/^COPY INTO/).at(-1);
    const polls = server.requests.filter(
      (r) => r.method === 'GET' && r.path === `/queries/${copy?.queryId}/result`,
    );
    expect(polls.length).toBeGreaterThanOrEqual(1);
  });

  it('SIGTERM during the COPY cancels it, rolls back, and reports terminated (exit 143)', async () => {
    const j = job();
    const controller = new AbortController();
    try {
      server.inject({ match: /^COPY INTO/, delayMs: 1500 });
      const load = j.warehouse.load(
        j.request(await stageParts(stageDir, 'trips', [trips(1, 2)]), { signal: controller.signal }),
      );
      setTimeout(() => controller.abort(), 400);
      const err = await failure(load);
      expect(err.exitCode).toBe(143);
      expect(server.requests.some((r) => r.path.endsWith('/abort-request'))).toBe(true);
      await new Promise((r) => setTimeout(r, 1500));
      expect(await server.query(`SELECT count(*)::INT AS n FROM "RAW"."TRIPS_${j.n}"`)).toEqual([{ n: 0 }]);
      expect(server.statements.some((s) => s.sql === 'ROLLBACK')).toBe(true);
      expect(
        server.executed(/^COMMIT$/).filter((s) => s.sessionId === server.statements.at(-1)?.sessionId),
      ).toEqual([]);
    } finally {
      await j.warehouse.close();
    }
  });
});

describe('Snowflake warehouse contract: identity and permissions', () => {
  it('a role without DELETE on the table is a permission error (exit 5) naming the privilege', async () => {
    const owner = job();
    try {
      await owner.warehouse.load(owner.request(await stageParts(stageDir, 'trips', [trips(1, 2)])));
    } finally {
      await owner.warehouse.close();
    }
    const reader = new SnowflakeWarehouse(
      options({ user: 'reader_svc', role: 'READER', private_key_path: readerKeys.privateKeyPath }),
    );
    try {
      const err = await failure(
        reader.load(owner.request(await stageParts(stageDir, 'trips', [trips(1, 2)]))),
      );
      expect(err.exitCode).toBe(5);
      expect(err.message).toContain(`Insufficient privileges to operate on table 'TRIPS_${owner.n}'`);
      expect(err.hint).toContain(`the role READER needs DELETE on ${owner.table}`);
    } finally {
      await reader.close();
    }
  });

  it('a stage the role cannot use is a permission error (exit 5) naming USAGE on the stage', async () => {
    const j = job({ stage: 'other_stage' });
    try {
      const err = await failure(
        j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 1)]))),
      );
      expect(err.exitCode).toBe(5);
      expect(err.message).toContain("Stage 'ANALYTICS.RAW.OTHER_STAGE' does not exist or not authorized.");
      expect(err.hint).toContain('USAGE on stage "ANALYTICS"."RAW"."OTHER_STAGE"');
    } finally {
      await j.warehouse.close();
    }
  });

  it('a stage whose integration cannot read the bucket says what to check (exit 5)', async () => {
    const j = job();
    try {
      server.inject({
        match: /^COPY INTO/,
        error: {
          code: '091003',
          sqlState: '22000',
          message:
            'Failure using stage area. Cause: [Access Denied (Status Code: 403; Error Code: AccessDenied)]',
        },
      });
      const err = await failure(
        j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 1)]))),
      );
      expect(err.exitCode).toBe(5);
      expect(err.message).toContain('Snowflake cannot read the stage "ANALYTICS"."RAW"."NIGHTSHIFT_STAGE"');
      expect(err.hint).toMatch(/storage integration.*trust policy/);
    } finally {
      await j.warehouse.close();
    }
  });

  it('a warehouse the role cannot use is exit 5 with the GRANT to run', async () => {
    const j = job();
    try {
      server.inject({
        match: /^COPY INTO/,
        error: {
          code: '000606',
          sqlState: '57P03',
          message:
            "No active warehouse selected in the current session.  Select an active warehouse with the 'use warehouse' command.",
        },
      });
      const err = await failure(
        j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 1)]))),
      );
      expect(err.exitCode).toBe(5);
      expect(err.hint).toBe(
        'GRANT USAGE ON WAREHOUSE LOAD_WH TO ROLE LOADER, and check warehouse.snowflake.warehouse',
      );
    } finally {
      await j.warehouse.close();
    }
  });

  it("a key that is not the user's is refused at login (exit 5) with the key to check", async () => {
    const j = job({ private_key_path: otherKeys.privateKeyPath });
    try {
      const err = await failure(
        j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 1)]))),
      );
      expect(err.exitCode).toBe(5);
      expect(err.message).toBe('Snowflake refused the login of loader_svc: JWT token is invalid.');
      expect(err.hint).toContain('ALTER USER loader_svc SET RSA_PUBLIC_KEY');
    } finally {
      await j.warehouse.close();
    }
  });

  it('a wrong account is refused (exit 5) with the account to check', async () => {
    const j = job({ account: 'myorg-typo' });
    try {
      const err = await failure(
        j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 1)]))),
      );
      expect(err.exitCode).toBe(5);
      expect(err.message).toMatch(/refused the login \(HTTP 403\)/);
      expect(err.hint).toContain('check warehouse.snowflake.account (myorg-typo)');
    } finally {
      await j.warehouse.close();
    }
  });

  it('a role not granted to the user is refused (exit 5) with the GRANT to run', async () => {
    const j = job({ role: 'SYSADMIN' });
    try {
      const err = await failure(
        j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 1)]))),
      );
      expect(err.exitCode).toBe(5);
      expect(err.hint).toBe('GRANT ROLE SYSADMIN TO USER loader_svc, or fix warehouse.snowflake.role');
    } finally {
      await j.warehouse.close();
    }
  });

  it('a missing key file is a configuration error (exit 2)', async () => {
    const j = job({ private_key_path: join(tmp.dir, 'no-such-key.p8') });
    const err = await failure(
      j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 1)]))),
    );
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(/cannot read warehouse.snowflake.private_key_path .*no-such-key.p8/);
  });

  it('an encrypted key logs in with its passphrase, and neither appears in errors', async () => {
    const j = job({
      user: 'locked_svc',
      private_key_path: encrypted.privateKeyPath,
      private_key_passphrase: passphrase,
    });
    try {
      const result = await j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 1)])));
      expect(result.rowsLoaded).toBe(1);
    } finally {
      await j.warehouse.close();
    }
    const wrong = job({
      user: 'locked_svc',
      private_key_path: encrypted.privateKeyPath,
      private_key_passphrase: 'wrong passphrase',
    });
    const err = await failure(
      wrong.warehouse.load(wrong.request(await stageParts(stageDir, 'trips', [trips(1, 1)]))),
    );
    const text = JSON.stringify({ message: err.message, hint: err.hint, cause: String(err.cause) });
    expect(text).not.toContain('wrong passphrase');
    expect(text).not.toContain('PRIVATE KEY');
    const pem = (await import('node:fs')).readFileSync(encrypted.privateKeyPath, 'utf8');
    expect(redactor.redact(pem)).not.toContain(pem.split('\n')[1]);
  });

  it('WORKLOAD_IDENTITY logs in with the OIDC token read from its file, and no user or key', async () => {
    process.env.SNOWFLAKE_WIF_ALLOWED_HOST_SUFFIXES = '127.0.0.1';
    const j = job({
      authenticator: 'WORKLOAD_IDENTITY',
      user: undefined,
      private_key_path: undefined,
      workload_identity_provider: 'OIDC',
      token_path: tokenPath,
    });
    try {
      const result = await j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 2)])));
      expect(result.rowsLoaded).toBe(2);
    } finally {
      await j.warehouse.close();
    }
    expect(server.logins.at(-1)).toMatchObject({
      AUTHENTICATOR: 'WORKLOAD_IDENTITY',
      PROVIDER: 'OIDC',
      TOKEN: oidcToken,
    });
    expect(redactor.redact(`token ${oidcToken}`)).not.toContain(oidcToken);
  });

  it.each([503, 429])('a login answered HTTP %i is transient (exit 75)', async (status) => {
    const j = job();
    server.loginStatus = status;
    try {
      const err = await failure(
        j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 1)]))),
      );
      expect(err.exitCode).toBe(75);
      expect(err.message).toMatch(new RegExp(`^Snowflake login failed with HTTP ${status}`));
    } finally {
      server.loginStatus = undefined;
      await j.warehouse.close();
    }
  });

  it('a Snowflake that cannot be reached at login is transient (exit 75)', async () => {
    const down = new FakeSnowflake({ account: 'X', database: 'ANALYTICS', users: {}, stages: {} });
    await down.start();
    const url = down.url;
    await down.stop();
    const j = job({ access_url: url });
    const err = await failure(
      j.warehouse.load(j.request(await stageParts(stageDir, 'trips', [trips(1, 1)]))),
    );
    expect(err.exitCode).toBe(75);
    expect(err.message).toMatch(/^cannot reach Snowflake at 127\.0\.0\.1:\d+/);
  });
});

describe('Snowflake warehouse contract: long sessions', () => {
  it('renews an expired session token and sends heartbeats during a long load', async () => {
    const slow = new FakeSnowflake({
      account: 'MYORG-NIGHTSHIFT',
      database: 'ANALYTICS',
      users: { LOADER_SVC: { publicKey: keys.publicKey, roles: ['LOADER'] } },
      stages: { 'ANALYTICS.RAW.NIGHTSHIFT_STAGE': { dir: stageDir, url: 's3://bucket/prefix/' } },
      sessionValiditySeconds: 1,
      heartbeatSeconds: 1,
      asyncAfterMs: 200,
    });
    await slow.start();
    const warehouse = new SnowflakeWarehouse(options({ access_url: slow.url }));
    try {
      slow.inject({ match: /^COPY INTO/, delayMs: 2500 });
      const staged = await stageParts(stageDir, 'trips', [trips(1, 2)]);
      const result = await warehouse.load({
        job: 'trips',
        runId: staged.runId,
        table: 'raw.trips_long',
        mode: 'append',
        files: staged.files,
        columns: TRIP_COLUMNS,
        window: tripWindow(1, 2),
        key: ['trip_id'],
        expectedRows: 2,
      });
      expect(result.rowsLoaded).toBe(2);
      expect(slow.requests.some((r) => r.path === '/session/token-request')).toBe(true);
      expect(slow.requests.some((r) => r.path === '/session/heartbeat')).toBe(true);
    } finally {
      await warehouse.close();
      await slow.stop();
    }
  });
});

describe('Snowflake warehouse contract: the CLI end to end', () => {
  it('runs PostgreSQL -> Parquet on the stage -> COPY INTO Snowflake, twice, each row once', async () => {
    const db = await freshDatabase();
    await sql(db, TRIPS_DDL);
    await sql(db, TRIPS_INSERT, [1, 500]);
    const config = {
      job: 'sf-e2e',
      source: { url: db, table: 'public.trips', cursor: 'updated_at', key: ['trip_id'] },
      stage: { url: pathToFileURL(stageDir).href },
      warehouse: {
        type: 'snowflake',
        table: 'raw.e2e_trips',
        mode: 'append',
        snowflake: {
          account: 'myorg-nightshift',
          user: 'loader_svc',
          role: 'loader',
          warehouse: 'load_wh',
          database: 'analytics',
          schema: 'raw',
          private_key_path: keys.privateKeyPath,
          stage: 'nightshift_stage',
          access_url: server.url,
        },
      },
      temp_dir: join(tmp.dir, 'e2e-tmp'),
      log: { format: 'json' },
    };
    const path = writeConfig(tmp.dir, config, 'sf-e2e.yaml');
    const first = await runCli(['run', '--config', path]);
    expect(first.code, first.stderr + first.stdout).toBe(0);
    expect(first.summary).toMatchObject({
      status: 'succeeded',
      rows_source: 500,
      rows_loaded: 500,
      warehouse: { type: 'snowflake' },
    });
    await sql(db, TRIPS_INSERT, [501, 800]);
    const second = await runCli(['run', '--config', path]);
    expect(second.code, second.stderr + second.stdout).toBe(0);
    expect(second.summary).toMatchObject({ rows_source: 300, rows_loaded: 300 });
    const [facts] = await server.query(
      'SELECT count(*)::INT AS n, count(DISTINCT "TRIP_ID")::INT AS k, sum("FARE_USD")::VARCHAR AS s FROM "RAW"."E2E_TRIPS"',
    );
    const [source] = await sql<{ s: string }>(db, 'SELECT sum(fare_usd)::text AS s FROM trips');
    expect(facts).toEqual({ n: 800, k: 800, s: source.s });
    const [row] = await server.query(
      `SELECT CAST("STARTED_AT" AS VARCHAR) AS started, CAST("PAYLOAD" AS VARCHAR) AS payload FROM "RAW"."E2E_TRIPS" WHERE "TRIP_ID" = 7`,
    );
    const [pgRow] = await sql<{ started: string; payload: unknown }>(
      db,
      'SELECT started_at::text AS started, payload FROM trips WHERE trip_id = 7',
      [],
      ["SET TimeZone = 'UTC'"],
    );
    expect(row.started).toBe(pgRow.started);
    expect(JSON.parse(String(row.payload))).toEqual(pgRow.payload);
    const text = first.stdout + first.stderr + second.stdout + second.stderr;
    expect(text).not.toContain('PRIVATE KEY');
  });
});
