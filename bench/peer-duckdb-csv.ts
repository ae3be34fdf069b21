/**
 * Peer (a), its second step, run by the bench in a child process of its own: what users script by
 * hand after `psql \copy ... (format csv, header)`, DuckDB with its default settings reading the
 * CSV and writing Parquet with zstd.
 *
 *   node dist/bench/peer-duckdb-csv.js <file.csv> <out.parquet>
 */
import { statSync } from 'node:fs';
import { DuckDBInstance } from '@duckdb/node-api';
import { reportOwnPeak } from './child.js';

const [csv, out] = process.argv.slice(2);
const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;

const started = performance.now();
const db = await DuckDBInstance.create(':memory:');
const con = await db.connect();
await con.run(
  `COPY (SELECT * FROM read_csv(${literal(csv)})) TO ${literal(out)} (FORMAT parquet, COMPRESSION zstd)`,
);
con.closeSync();
db.closeSync();
reportOwnPeak({ ms: performance.now() - started, bytes: statSync(out).size });
