/** The shared Warehouse suite on embedded DuckDB: a real DuckDB file in a temp dir, over a local stage. */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { NightshiftError } from '../src/errors.js';
import { LocalStore } from '../src/store/local/index.js';
import { DuckDbWarehouse } from '../src/warehouse/duckdb/index.js';
import { tempDir } from './helpers/env.js';
import { stageParts, trips, tripsLoadRequest } from './helpers/warehouse-fixtures.js';
import { type WarehouseTarget, warehouseSuite } from './helpers/warehouse-suite.js';

const tmp = tempDir('ns-duckdb-suite-');
const stageDir = join(tmp.dir, 'stage');
const store = new LocalStore(pathToFileURL(stageDir).href);
let counter = 0;
let current: DuckDbWarehouse | undefined;

/** Reads through the warehouse under test: a second DuckDB instance on its file would be refused. */
async function query(sql: string): Promise<Record<string, unknown>[]> {
  if (!current) throw new Error('no DuckDB warehouse is open');
  return current.query(sql);
}

async function exists(table: string): Promise<boolean> {
  const [schema, name] = table.split('.');
  const [row] = await query(
    `SELECT count(*) AS n FROM information_schema.tables WHERE table_schema = '${schema}' AND table_name = '${name}'`,
  );
  return Number(row.n) > 0;
}

const duckdbTarget: WarehouseTarget = {
  warehouse: async () => {
    current = new DuckDbWarehouse(
      {
        path: join(tmp.dir, 'warehouse.duckdb'),
        memoryLimitMb: 256,
        threads: 1,
        tempDir: join(tmp.dir, 'tmp'),
      },
      store,
    );
    return current;
  },
  table: () => `raw.trips_${++counter}`,
  stage: (parts) => stageParts(stageDir, 'trips', parts),
  count: async (table) =>
    (await exists(table)) ? Number((await query(`SELECT count(*) AS n FROM ${table}`))[0].n) : 0,
  rows: async (table) =>
    (
      await query(`SELECT trip_id::VARCHAR AS id, fare_usd::VARCHAR AS fare FROM ${table} ORDER BY trip_id`)
    ).map((r) => [String(r.id), String(r.fare)]),
  cannot: {
    // An abort interrupts the DuckDB statement running at that moment: a load from a local stage
    // is one in-process INSERT with no point a test can hold it at, so stopping it mid-statement
    // would take a timing. A stop before or between statements is shown below instead.
    SIGTERM: 'the in-process INSERT cannot be held mid-statement without a timing',
  },
};
afterAll(() => tmp.cleanup());

warehouseSuite('duckdb', duckdbTarget);

describe('DuckDB: a stop between statements', () => {
  // An interrupt reaches only a running statement; a stop that came before the load or between
  // its statements must still end it before COMMIT, with nothing loaded.
  it('a load whose signal has already fired loads nothing and ends terminated (exit 143)', async () => {
    const wh = (await duckdbTarget.warehouse()) as DuckDbWarehouse;
    try {
      const table = duckdbTarget.table();
      const staged = await duckdbTarget.stage([trips(1, 3)]);
      const stop = new AbortController();
      stop.abort();
      const err = await wh.load(tripsLoadRequest(table, staged, { signal: stop.signal })).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(NightshiftError);
      expect((err as NightshiftError).exitCode).toBe(143);
      expect(await duckdbTarget.count(table)).toBe(0);
    } finally {
      await wh.close();
    }
  });

  it('a stop after the parts were added and before the commit rolls them back', async () => {
    const wh = (await duckdbTarget.warehouse()) as DuckDbWarehouse;
    try {
      const table = duckdbTarget.table();
      const staged = await duckdbTarget.stage([trips(1, 3)]);
      const stop = new AbortController();
      const { files, expectedRows, ...plan } = tripsLoadRequest(table, staged, { signal: stop.signal });
      const session = await wh.begin(plan);
      await session.add(files);
      stop.abort();
      const err = await session.commit(expectedRows).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect((err as NightshiftError).code).toBe('terminated');
      expect(await duckdbTarget.count(table)).toBe(0);
    } finally {
      await wh.close();
    }
  });
});
