/**
 * The peers, measured in the same rounds as nightshift so that the comparison holds on a noisy
 * machine. Each runs in child processes of its own, so its peak RSS is its own.
 */
import { spawnSync } from 'node:child_process';
import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { runMeasured } from './child.js';

/** One peer's figures for one round. */
export interface PeerFigures {
  /** Wall time for the whole table (scaled from the slice for a peer that reads one). */
  ms: number;
  /** Peak RSS of its biggest process. */
  peakRssMb: number;
  /** Parquet bytes for the whole table (scaled likewise). */
  bytes: number;
  /** Its steps, each in ms, as measured. */
  steps: Record<string, number>;
}

/** Rows of the slice peer (b) reads; its time and size are scaled to the table. */
export const SLICE_ROWS = 500_000;

/**
 * Peer (a), what users script by hand: `psql \copy (...) TO file (format csv, header)`, then
 * DuckDB with its default settings reading the CSV and writing Parquet with zstd. Undefined
 * without psql.
 */
export async function csvThenDuckdb(
  url: string,
  table: string,
  dir: string,
  node: string,
): Promise<PeerFigures | undefined> {
  if (spawnSync('psql', ['--version']).status !== 0) return undefined;
  const csv = join(dir, 'peer-a.csv');
  const parquet = join(dir, 'peer-a.parquet');
  try {
    const copy = await runMeasured('psql', [
      url,
      '-q',
      '-c',
      `\\copy (select * from ${table}) to '${csv}' (format csv, header)`,
    ]);
    const duck = await runMeasured(process.execPath, [node, csv, parquet]);
    return {
      ms: copy.ms + duck.ms,
      peakRssMb: Math.max(copy.peakRssMb, duck.peakRssMb),
      bytes: statSync(parquet).size,
      steps: { psql_csv: copy.ms, duckdb: duck.ms },
    };
  } finally {
    rmSync(csv, { force: true });
    rmSync(parquet, { force: true });
  }
}

/**
 * Peer (b), the stack of the original design card: pg with pg-cursor into parquetjs-lite, on the
 * first SLICE_ROWS rows, its time and size scaled to `rows`. Its memory is the slice's: the stack
 * holds one cursor batch and one parquetjs row group, so it does not grow with the rows.
 */
export async function pgCursorParquetjs(
  url: string,
  table: string,
  rows: number,
  dir: string,
  node: string,
): Promise<PeerFigures> {
  const parquet = join(dir, 'peer-b.parquet');
  const slice = Math.min(rows, SLICE_ROWS);
  try {
    const run = await runMeasured(process.execPath, [node, url, table, String(slice), parquet]);
    const scale = rows / slice;
    return {
      ms: run.ms * scale,
      peakRssMb: run.peakRssMb,
      bytes: statSync(parquet).size * scale,
      steps: { slice: run.ms },
    };
  } finally {
    rmSync(parquet, { force: true });
  }
}
