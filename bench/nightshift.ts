/** nightshift itself in the bench: one `nightshift run` per call, and the check of what it wrote. */
import { mkdirSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DuckDBInstance } from '@duckdb/node-api';
import pg from 'pg';
import { stringify } from 'yaml';
import { runMeasured } from './child.js';

const log = (text: string) => process.stderr.write(`${text}\n`);

export interface RunFigures {
  ms: number;
  summary: Record<string, unknown>;
}

/**
 * One `nightshift run` into a fresh local stage and DuckDB file under `dir`. `sequential` writes
 * one part, so the DuckDB load starts only after the export: its `export` timing (which ends when
 * the last part is staged) is the stage-only figure, and its `load` timing what DuckDB's own insert
 * costs.
 */
export async function nightshiftRun(
  cli: string,
  url: string,
  table: string,
  dir: string,
  sequential: boolean,
): Promise<RunFigures> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const config = join(dir, 'nightshift.yaml');
  writeFileSync(
    config,
    stringify({
      job: 'trips',
      source: { url, table: `public.${table}`, cursor: 'updated_at', key: ['trip_id'] },
      stage: { url: pathToFileURL(join(dir, 'stage')).href },
      warehouse: { table: 'trips', mode: 'append', duckdb: { path: join(dir, 'warehouse.duckdb') } },
      temp_dir: join(dir, 'tmp'),
      log: { format: 'json', progress: 'off' },
      ...(sequential ? { parquet: { part_size_mb: 100_000 } } : {}),
    }),
  );
  const run = await runMeasured(process.execPath, [cli, 'run', '--config', config]);
  const lines = run.stdout.trim().split('\n');
  return { ms: run.ms, summary: JSON.parse(lines[lines.length - 1]) as Record<string, unknown> };
}

export interface Verified {
  ok: boolean;
  oursBytes: number;
  duckBytes: number;
}

/**
 * Checks the staged files and the warehouse of the run in `dir` against PostgreSQL (count and
 * sums), and writes the same rows with DuckDB's own zstd Parquet writer for the size comparison.
 */
export async function verify(url: string, table: string, dir: string): Promise<Verified> {
  const files: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      if (e.isDirectory()) walk(join(d, e.name));
      else if (e.name.endsWith('.parquet')) files.push(join(d, e.name));
    }
  };
  walk(join(dir, 'stage'));
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const facts = `count(*)::text AS n, sum(fare_usd)::text AS fare, sum(trip_id)::text AS ids, sum(rider_id)::text AS riders`;
  const [source] = (await client.query(`SELECT ${facts} FROM ${table}`)).rows as Record<string, string>[];
  await client.end();
  const duck = await DuckDBInstance.create(':memory:');
  const con = await duck.connect();
  const list = `[${files.map((f) => `'${f}'`).join(', ')}]`;
  const read = async (from: string) => {
    const r = await con.runAndReadAll(`SELECT ${facts} FROM ${from}`);
    return r.getRowObjectsJson()[0] as Record<string, string>;
  };
  const staged = await read(`read_parquet(${list})`);
  await con.run(`ATTACH '${join(dir, 'warehouse.duckdb')}' AS wh (READ_ONLY)`);
  const loaded = await read('wh.trips');
  const duckFile = join(dir, 'duckdb-zstd.parquet');
  await con.run(
    `COPY (SELECT * FROM read_parquet(${list})) TO '${duckFile}' (FORMAT parquet, COMPRESSION zstd)`,
  );
  con.closeSync();
  duck.closeSync();
  const same = (a: Record<string, string>) => JSON.stringify(a) === JSON.stringify(source);
  if (!same(staged) || !same(loaded))
    log(
      `MISMATCH source ${JSON.stringify(source)} staged ${JSON.stringify(staged)} loaded ${JSON.stringify(loaded)}`,
    );
  return {
    ok: same(staged) && same(loaded),
    oursBytes: files.reduce((n, f) => n + statSync(f).size, 0),
    duckBytes: statSync(duckFile).size,
  };
}
