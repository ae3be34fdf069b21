/**
 * The Snowflake cases of the contract suite, against a real account. Runs when these are set
 * (skipped otherwise):
 *
 *   NIGHTSHIFT_TEST_SNOWFLAKE_ACCOUNT           myorg-myaccount
 *   NIGHTSHIFT_TEST_SNOWFLAKE_USER              a user with an RSA public key set
 *   NIGHTSHIFT_TEST_SNOWFLAKE_PRIVATE_KEY_PATH  its private key (PKCS#8 PEM, unencrypted)
 *   NIGHTSHIFT_TEST_SNOWFLAKE_WAREHOUSE, _DATABASE, optional _SCHEMA (PUBLIC) and _ROLE
 *
 * The role needs CREATE STAGE and CREATE TABLE on the schema. The files are PUT to a named
 * internal stage the suite creates (NIGHTSHIFT_LIVE_STAGE): COPY reads a named internal stage
 * exactly as it reads an external one, so the load path under test is the same; the storage
 * integration itself is the S3/GCS setup docs/warehouse-snowflake.md describes.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { Connection } from 'snowflake-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NightshiftError } from '../src/errors.js';
import { type SnowflakeOptions, SnowflakeWarehouse } from '../src/warehouse/snowflake/index.js';
import type { StagedFile } from '../src/warehouse/warehouse.js';
import { tempDir } from './helpers/env.js';
import { stageParts, trips, tripsLoadRequest, tripWindow } from './helpers/warehouse-fixtures.js';

const env = process.env;
const credentials = !!(
  env.NIGHTSHIFT_TEST_SNOWFLAKE_ACCOUNT &&
  env.NIGHTSHIFT_TEST_SNOWFLAKE_USER &&
  env.NIGHTSHIFT_TEST_SNOWFLAKE_PRIVATE_KEY_PATH &&
  env.NIGHTSHIFT_TEST_SNOWFLAKE_WAREHOUSE &&
  env.NIGHTSHIFT_TEST_SNOWFLAKE_DATABASE
);
const STAGE = 'NIGHTSHIFT_LIVE_STAGE';
const suffix = Math.random().toString(16).slice(2, 8).toUpperCase();

describe.skipIf(!credentials)('Snowflake warehouse live', () => {
  // Collected even when skipped: make the temp dir only when the suite will run.
  const tmp = credentials ? tempDir('ns-snowflake-live-') : { dir: '', cleanup: () => undefined };
  const stageDir = join(tmp.dir, 'stage');
  if (credentials) mkdirSync(stageDir, { recursive: true });
  let admin: Connection;
  const tables: string[] = [];

  const options = (): SnowflakeOptions => ({
    account: env.NIGHTSHIFT_TEST_SNOWFLAKE_ACCOUNT as string,
    user: env.NIGHTSHIFT_TEST_SNOWFLAKE_USER,
    role: env.NIGHTSHIFT_TEST_SNOWFLAKE_ROLE,
    warehouse: env.NIGHTSHIFT_TEST_SNOWFLAKE_WAREHOUSE as string,
    database: env.NIGHTSHIFT_TEST_SNOWFLAKE_DATABASE as string,
    schema: env.NIGHTSHIFT_TEST_SNOWFLAKE_SCHEMA ?? 'PUBLIC',
    authenticator: 'SNOWFLAKE_JWT',
    private_key_path: env.NIGHTSHIFT_TEST_SNOWFLAKE_PRIVATE_KEY_PATH,
    stage: STAGE,
    lock_timeout: 600_000,
    statement_timeout: 600_000,
    job: 'trips',
  });

  function exec(sqlText: string): Promise<Record<string, unknown>[]> {
    return new Promise((resolve, reject) =>
      admin.execute({
        sqlText,
        complete: (err, _s, rows) => (err ? reject(err) : resolve((rows ?? []) as Record<string, unknown>[])),
      }),
    );
  }

  /** Stages parts locally, then PUTs them to the same keys on the internal stage. */
  async function stage(parts: ReturnType<typeof trips>[]): Promise<{ runId: string; files: StagedFile[] }> {
    const staged = await stageParts(stageDir, 'trips', parts);
    for (const file of staged.files) {
      const dir = file.key.slice(0, file.key.lastIndexOf('/'));
      await exec(
        `PUT 'file://${join(stageDir, file.key)}' '@${STAGE}/${dir}' AUTO_COMPRESS = FALSE OVERWRITE = TRUE`,
      );
    }
    return staged;
  }

  const request = tripsLoadRequest;

  const table = (name: string) => {
    const t = `NIGHTSHIFT_LIVE_${name}_${suffix}`;
    tables.push(t);
    return t;
  };

  beforeAll(async () => {
    process.env.SNOWFLAKE_DISABLE_PLATFORM_DETECTION ??= 'true';
    const mod = (await import('snowflake-sdk')) as unknown as { default: typeof import('snowflake-sdk') };
    const { readFileSync } = await import('node:fs');
    const o = options();
    admin = mod.default.createConnection({
      account: o.account,
      username: o.user,
      role: o.role,
      warehouse: o.warehouse,
      database: o.database,
      schema: o.schema,
      authenticator: 'SNOWFLAKE_JWT',
      privateKey: readFileSync(o.private_key_path as string, 'utf8'),
    });
    await new Promise<void>((resolve, reject) => admin.connect((err) => (err ? reject(err) : resolve())));
    await exec(`CREATE STAGE IF NOT EXISTS ${STAGE}`);
  });

  afterAll(async () => {
    for (const t of tables) await exec(`DROP TABLE IF EXISTS ${t}`).catch(() => undefined);
    await new Promise<void>((resolve) => admin?.destroy(() => resolve()));
    tmp.cleanup();
  });

  it('append creates the table, and a second load of the window leaves each row once', async () => {
    const t = table('APPEND');
    const warehouse = new SnowflakeWarehouse(options());
    try {
      const first = await warehouse.load(request(t, await stage([trips(1, 3)])));
      expect(first).toMatchObject({ rowsLoaded: 3, rowsReplaced: 0 });
      const second = await warehouse.load(
        request(t, await stage([trips(2, 3, 5)]), { window: tripWindow(2, 3) }),
      );
      expect(second).toMatchObject({ rowsLoaded: 2, rowsReplaced: 2 });
      expect(await warehouse.countWindow(t, tripWindow(1, 3))).toBe(3);
      const rows = await exec(
        `SELECT TRIP_ID, TO_VARCHAR(FARE_USD) AS FARE, PAYLOAD:app::VARCHAR AS APP, RIDE_ID, TO_VARCHAR(UPDATED_AT, 'YYYY-MM-DD"T"HH24:MI:SS.FF3TZH:TZM') AS UPDATED FROM ${t} ORDER BY 1`,
      );
      expect(rows).toEqual([
        {
          TRIP_ID: 1,
          FARE: '11.00',
          APP: 'v0',
          RIDE_ID: '00000000-0000-4000-8000-000000000001',
          UPDATED: '2024-05-01T00:01:00.000+00:00',
        },
        {
          TRIP_ID: 2,
          FARE: '12.05',
          APP: 'v5',
          RIDE_ID: '00000000-0000-4000-8000-000000000002',
          UPDATED: '2024-05-01T00:02:00.000+00:00',
        },
        {
          TRIP_ID: 3,
          FARE: '13.05',
          APP: 'v5',
          RIDE_ID: '00000000-0000-4000-8000-000000000003',
          UPDATED: '2024-05-01T00:03:00.000+00:00',
        },
      ]);
    } finally {
      await warehouse.close();
    }
  });

  it('merge replaces the keys in the files; replace replaces the table', async () => {
    const t = table('MERGE');
    const warehouse = new SnowflakeWarehouse(options());
    try {
      await warehouse.load(request(t, await stage([trips(1, 4)]), { mode: 'merge' }));
      const merged = await warehouse.load(
        request(t, await stage([[...trips(2, 2, 9), ...trips(6, 6, 9)]]), { mode: 'merge' }),
      );
      expect(merged).toMatchObject({ rowsLoaded: 2, rowsReplaced: 1 });
      expect(await exec(`SELECT COUNT(*) AS N FROM ${t}`)).toEqual([{ N: 5 }]);
      const replaced = await warehouse.load(request(t, await stage([trips(7, 8)]), { mode: 'replace' }));
      expect(replaced).toMatchObject({ rowsLoaded: 2, rowsReplaced: 5 });
    } finally {
      await warehouse.close();
    }
  });

  it('a count that differs from the files fails the load (exit 3) and leaves the table as it was', async () => {
    const t = table('COUNT');
    const warehouse = new SnowflakeWarehouse(options());
    try {
      await warehouse.load(request(t, await stage([trips(1, 3)])));
      const staged = await stage([trips(1, 3, 1)]);
      const lying = { ...staged, files: staged.files.map((f) => ({ ...f, rows: 4 })) };
      const err = await warehouse.load(request(t, lying)).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NightshiftError);
      expect((err as NightshiftError).exitCode).toBe(3);
      expect(await exec(`SELECT TO_VARCHAR(SUM(FARE_USD)) AS S FROM ${t}`)).toEqual([{ S: '36.00' }]);
    } finally {
      await warehouse.close();
    }
  });

  it('a file that is not on the stage is named (exit 2)', async () => {
    const t = table('MISSING');
    const warehouse = new SnowflakeWarehouse(options());
    try {
      const staged = await stage([trips(1, 1)]);
      const missing = {
        ...staged,
        files: [
          ...staged.files,
          { ...staged.files[0], key: staged.files[0].key.replace('part-00000', 'part-00009') },
        ],
      };
      const err = await warehouse.load(request(t, missing, { expectedRows: 2 })).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(NightshiftError);
      expect([2, 3]).toContain((err as NightshiftError).exitCode);
    } finally {
      await warehouse.close();
    }
  });
});
