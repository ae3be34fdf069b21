/**
 * Peer (b), run by the bench in a child process of its own: the stack of the original design card,
 * `pg` reading rows as objects through `pg-cursor` and `parquetjs-lite` writing them, on the
 * first `slice` rows of the table (the bench scales its time to the whole table). Values go in as
 * pg parses them; numeric is written as DOUBLE and timestamps as milliseconds, as that stack does.
 *
 *   node dist/bench/peer-pg-cursor.js <postgres url> <table> <slice rows> <out.parquet>
 */
import { statSync } from 'node:fs';
import parquet from 'parquetjs-lite';
import pg from 'pg';
import Cursor from 'pg-cursor';
import { reportOwnPeak } from './child.js';

const [url, table, slice, out] = process.argv.slice(2);
/** Rows per cursor read, as such jobs usually fetch. */
const BATCH = 10_000;

const field = (type: string) => ({ type, optional: true, compression: 'SNAPPY' });
const schema = new parquet.ParquetSchema({
  trip_id: field('INT64'),
  rider_id: field('INT64'),
  started_at: field('TIMESTAMP_MILLIS'),
  ended_at: field('TIMESTAMP_MILLIS'),
  distance_km: field('DOUBLE'),
  fare_usd: field('DOUBLE'),
  region: field('UTF8'),
  status: field('UTF8'),
  driver_name: field('UTF8'),
  payload: field('JSON'),
  is_shared: field('BOOLEAN'),
  updated_at: field('TIMESTAMP_MILLIS'),
});

const started = performance.now();
const client = new pg.Client({ connectionString: url });
await client.connect();
const writer = await parquet.ParquetWriter.openFile(schema, out);
const cursor = client.query(new Cursor(`SELECT * FROM ${table} WHERE trip_id <= $1`, [Number(slice)]));
let rows = 0;
for (;;) {
  const batch = await cursor.read(BATCH);
  if (batch.length === 0) break;
  for (const row of batch) await writer.appendRow(row);
  rows += batch.length;
}
await cursor.close();
await writer.close();
await client.end();
reportOwnPeak({ ms: performance.now() - started, rows, bytes: statSync(out).size });
