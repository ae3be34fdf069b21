/** The shared Warehouse suite on embedded DuckDB: a real DuckDB file in a temp dir, over a local stage. */
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { LocalStore } from '../src/store/local/index.js';
import { DuckDbWarehouse } from '../src/warehouse/duckdb/index.js';
import { tempDir } from './helpers/env.js';
import { stageParts } from './helpers/warehouse-fixtures.js';
import { warehouseSuite } from './helpers/warehouse-suite.js';

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

warehouseSuite('duckdb', {
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
    // An abort interrupts the DuckDB statement running at that moment, and only that: a load from
    // a local stage is one in-process INSERT with no point a test can hold it at, so stopping it
    // mid-statement would take a timing. (An abort while no statement runs is not seen by the load:
    // the run checks its signal itself before it loads.)
    SIGTERM: 'the in-process INSERT cannot be held mid-statement without a timing',
  },
  teardown: async () => tmp.cleanup(),
});
