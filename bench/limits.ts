/**
 * The bench's table and what PostgreSQL alone, and plain clients, take to produce it: the yardsticks
 * every other figure is divided by.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import pg from 'pg';
import { TRIPS_DDL, TRIPS_INSERT } from '../src/demo/trips.js';
import { copyOut, pgSocket } from '../src/source/copy-out.js';

const log = (text: string) => process.stderr.write(`${text}\n`);

/** Builds `table` with `rows` rows of ../shared/bench/trips.sql, unless it is already there. */
export async function ensureTable(url: string, table: string, rows: number): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query('CREATE TABLE IF NOT EXISTS bench_tables (name text PRIMARY KEY, rows bigint)');
    const meta = await client.query<{ rows: string }>('SELECT rows FROM bench_tables WHERE name = $1', [
      table,
    ]);
    if (Number(meta.rows[0]?.rows) === rows) {
      log(`reusing ${table} (${rows.toLocaleString('en-US')} rows)`);
      return;
    }
    log(
      `building ${table} with ${rows.toLocaleString('en-US')} rows (the generator of ../shared/bench/trips.sql)...`,
    );
    await client.query(`DROP TABLE IF EXISTS ${table}`);
    const ddl = TRIPS_DDL.replace(/CREATE INDEX[^;]*;/, '').replace('trips', table);
    await client.query(ddl);
    const insert = TRIPS_INSERT.replace('INSERT INTO trips', `INSERT INTO ${table}`);
    const step = 1_000_000;
    for (let first = 1; first <= rows; first += step) {
      await client.query(insert, [first, Math.min(rows, first + step - 1)]);
    }
    await client.query(`CREATE INDEX ${table}_updated_at ON ${table} (updated_at, trip_id)`);
    await client.query(`VACUUM ANALYZE ${table}`);
    await client.query(
      'INSERT INTO bench_tables VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET rows = $2',
      [table, rows],
    );
  } finally {
    await client.end();
  }
}

/**
 * PostgreSQL alone: the server runs `COPY ... TO '/dev/null' (FORMAT binary)` itself, so no client
 * and no socket take part. Needs a superuser (or pg_write_server_files), which the embedded server's
 * user is; undefined for a server where the bench's user is neither.
 */
export async function serverCopy(url: string, table: string): Promise<number | undefined> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const started = performance.now();
    await client.query(`COPY (SELECT * FROM ${table}) TO '/dev/null' (FORMAT binary)`);
    return performance.now() - started;
  } catch (err) {
    if ((err as { code?: string }).code !== '42501') throw err;
    log('no server limit: the bench user may not COPY to a server file (needs pg_write_server_files)');
    return undefined;
  } finally {
    await client.end();
  }
}

/** A client: psql's \copy of the whole table in binary to /dev/null; undefined without psql. */
export function psqlCopy(url: string, table: string): number | undefined {
  if (spawnSync('psql', ['--version']).status !== 0) return undefined;
  const started = performance.now();
  execFileSync('psql', [url, '-q', '-c', `\\copy (select * from ${table}) to '/dev/null' (format binary)`]);
  return performance.now() - started;
}

/** Node reading the same COPY with nightshift's COPY reader and discarding it. */
export async function nodeCopy(url: string, table: string): Promise<number> {
  const client = new pg.Client({ connectionString: url, stream: pgSocket });
  await client.connect();
  const started = performance.now();
  await copyOut(client, `COPY (SELECT * FROM ${table}) TO STDOUT (FORMAT binary)`, () => undefined);
  const ms = performance.now() - started;
  await client.end();
  return ms;
}
