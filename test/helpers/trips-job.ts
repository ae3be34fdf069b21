/**
 * A job the end-to-end tests run with the built CLI: its own `trips` table in the test database,
 * its own warehouse file and temp dir, and a config file naming the stage the test gives.
 */
import { join } from 'node:path';
import { expect } from 'vitest';
import { TRIPS_DDL, TRIPS_INSERT } from '../../src/demo/trips.js';
import { tableFacts } from './duck.js';
import { type CliResult, runCli, sql, writeConfig } from './env.js';

export interface TripsJobOptions {
  dbUrl: string;
  /** The folder the job's files go under (a folder per job is made below it). */
  root: string;
  /** Rows inserted before the first run (trip ids 1..rows). */
  rows: number;
  /** The `stage` section, given the job's own folder. */
  stage: (dir: string, job: string) => Record<string, unknown>;
  /** The job's name, given its number. */
  name?: (n: number) => string;
  /** Top-level config keys set over the defaults. */
  overrides?: Record<string, unknown>;
  /** The environment each run gets unless a run is given its own. */
  env?: () => Record<string, string | undefined>;
}

export interface TripsJob {
  table: string;
  config: {
    job: string;
    source: Record<string, unknown>;
    stage: Record<string, unknown>;
    warehouse: Record<string, unknown>;
    [key: string]: unknown;
  };
  configPath: string;
  dir: string;
  warehousePath: string;
  insert: (first: number, last: number) => Promise<unknown>;
  run: (
    args?: string[],
    env?: Record<string, string | undefined>,
    options?: { onSpawn?: (pid: number) => void },
  ) => Promise<CliResult>;
  /** Rows, distinct keys and the sum of fare_usd in the warehouse table. */
  facts: () => Promise<{ rows: number; keys: number; sum: string }>;
  /** The same facts of the source table. */
  sourceFacts: () => Promise<{ rows: number; keys: number; sum: string }>;
}

let jobs = 0;

export async function tripsJob(options: TripsJobOptions): Promise<TripsJob> {
  const { dbUrl } = options;
  const n = ++jobs;
  const table = `trips_${n}`;
  const job = options.name?.(n) ?? `orders${n}`;
  await sql(dbUrl, TRIPS_DDL.replaceAll('trips', table));
  const insert = (first: number, last: number) =>
    sql(dbUrl, TRIPS_INSERT.replace('INSERT INTO trips', `INSERT INTO ${table}`), [first, last]);
  if (options.rows > 0) await insert(1, options.rows);
  const dir = join(options.root, `job${n}`);
  const warehousePath = join(dir, 'warehouse.duckdb');
  const config: TripsJob['config'] = {
    job,
    source: { url: dbUrl, table: `public.${table}`, cursor: 'updated_at', key: ['trip_id'] },
    stage: options.stage(dir, job),
    warehouse: { table: 'analytics.trips', mode: 'append', duckdb: { path: warehousePath } },
    temp_dir: join(dir, 'tmp'),
    log: { format: 'json' },
    ...options.overrides,
  };
  const configPath = writeConfig(options.root, config, `job${n}.yaml`);
  return {
    table,
    config,
    configPath,
    dir,
    warehousePath,
    insert,
    run: (args = ['run'], env = options.env?.() ?? {}, runOptions = {}) =>
      runCli([...args, '--config', configPath], env, runOptions),
    facts: () => tableFacts(warehousePath, 'analytics.trips', 'trip_id', 'fare_usd'),
    sourceFacts: async () => {
      const [r] = await sql<{ rows: string; s: string }>(
        dbUrl,
        `SELECT count(*) AS rows, sum(fare_usd)::text AS s FROM ${table}`,
      );
      return { rows: Number(r.rows), keys: Number(r.rows), sum: r.s ?? '0' };
    },
  };
}

/**
 * Two runs of the job started at the same moment, `rounds` times, new rows between rounds: each
 * round exactly one loads, the other exits 4 (lease held) or finds nothing new, and the warehouse
 * matches the source after each. At least one round must be decided by the lease.
 */
export async function raceRounds(
  job: TripsJob,
  rounds: number,
  firstRows: number,
  label: string,
): Promise<void> {
  let conflicts = 0;
  for (let round = 0; round < rounds; round++) {
    if (round > 0) await job.insert(firstRows + (round - 1) * 500 + 1, firstRows + round * 500);
    const results = await Promise.all([job.run(), job.run()]);
    const loaded = results.filter((r) => r.code === 0 && r.summary?.status === 'succeeded');
    const other = results.find((r) => !loaded.includes(r));
    expect(loaded, results.map((r) => r.stdout.slice(-400)).join('\n---\n')).toHaveLength(1);
    expect(
      other?.code === 4 || (other?.code === 0 && other.summary?.status === 'no_new_rows'),
      other?.stdout.slice(-600),
    ).toBe(true);
    if (other?.code === 4) conflicts++;
    expect(await job.facts()).toEqual(await job.sourceFacts());
  }
  console.log(
    `${label} race: ${rounds} rounds, ${conflicts} decided by the lease (exit 4), the rest by arrival`,
  );
  expect(conflicts).toBeGreaterThan(0);
}

/**
 * With faults in place, a run exits 75 (transient) and fails; once `clearFaults` removed them, the
 * next run loads every row once.
 */
export async function failsThenRecovers(job: TripsJob, clearFaults: () => void): Promise<void> {
  try {
    const failed = await job.run();
    expect(failed.code, failed.stdout.slice(-1500)).toBe(75);
    expect(failed.summary).toMatchObject({ status: 'failed' });
  } finally {
    clearFaults();
  }
  const after = await job.run();
  expect(after.code).toBe(0);
  expect(await job.facts()).toEqual(await job.sourceFacts());
}
