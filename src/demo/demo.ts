/**
 * `nightshift demo`: the real `run` path end to end with nothing to install: an embedded
 * PostgreSQL with a trips table, a local stage, and a DuckDB warehouse file. Runs once, shows
 * what landed, then inserts and updates rows and runs again to show that only those move.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { runtimeSettings } from '../config/runtime.js';
import { type Config, configSchema } from '../config/schema.js';
import { terminationSignal } from '../core/abort.js';
import { createLogger, isPretty, writeRawLine } from '../log.js';
import { executeRun } from '../run/pipeline.js';
import type { RunSummary } from '../run/summary.js';
import type { Backends } from '../warehouse/warehouse.js';
import { startEmbeddedPostgres } from './embedded.js';
import { fillTrips } from './trips.js';

export interface DemoOptions {
  rows: number;
  dir: string;
  overrides: Record<string, unknown>;
}

const say = (text = '') => process.stdout.write(`${text}\n`);

function table(rows: Record<string, unknown>[]): string {
  if (!rows.length) return '  (no rows)';
  const cols = Object.keys(rows[0]);
  const cells = rows.map((r) => cols.map((c) => String(r[c] ?? '')));
  const width = cols.map((c, i) => Math.max(c.length, ...cells.map((row) => row[i].length)));
  const line = (values: string[]) =>
    `  ${values.map((v, i) => (i === 0 ? v.padEnd(width[i]) : v.padStart(width[i]))).join('  ')}`;
  return [line(cols), line(width.map((w) => '-'.repeat(w))), ...cells.map(line)].join('\n');
}

function demoConfig(url: string, dir: string, overrides: Record<string, unknown>): Config {
  const log: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(overrides)) if (key.startsWith('log.')) log[key.slice(4)] = value;
  return configSchema.parse({
    job: 'trips',
    source: { url, table: 'public.trips', cursor: 'updated_at', key: ['trip_id'] },
    stage: { url: pathToFileURL(join(dir, 'stage')).href },
    warehouse: {
      type: 'duckdb',
      table: 'analytics.trips',
      mode: 'merge',
      duckdb: { path: join(dir, 'warehouse.duckdb') },
    },
    temp_dir: join(dir, 'tmp'),
    // The demo is for people: readable lines unless --log-format says otherwise.
    log: { format: 'pretty', ...log },
  });
}

const REGION_REPORT = `
SELECT region, count(*) AS trips, sum(fare_usd) AS fare_usd, round(avg(distance_km), 2) AS avg_km,
       max(updated_at)::varchar AS newest_update
FROM analytics.trips GROUP BY region ORDER BY region`;

export async function runDemo(options: DemoOptions, backends: Backends): Promise<number> {
  const started = Date.now();
  const dir = resolve(options.dir);
  await rm(join(dir, 'stage'), { recursive: true, force: true });
  await rm(join(dir, 'warehouse.duckdb'), { force: true });
  await rm(join(dir, 'warehouse.duckdb.wal'), { force: true });
  await mkdir(join(dir, 'tmp'), { recursive: true });

  say(
    `Starting an embedded PostgreSQL and filling trips with ${options.rows.toLocaleString('en-US')} rows...`,
  );
  const server = await startEmbeddedPostgres({ settings: { fsync: 'off', synchronous_commit: 'off' } });
  const client = new pg.Client({ connectionString: server.url });
  // A server stopped under it (Ctrl-C outside a run) fails its next query instead of the process.
  client.on('error', () => undefined);
  try {
    await client.connect();
    await fillTrips(client, 1, options.rows);
    const config = demoConfig(server.url, dir, options.overrides);
    const log = createLogger({ level: config.log.level, format: config.log.format });
    const pretty = isPretty(config.log.format);
    const run = async (title: string): Promise<RunSummary> => {
      say();
      say(`== ${title}: nightshift run`);
      // Ctrl-C stops the run as it stops any run (exit 143); the server is stopped below.
      const term = terminationSignal(log);
      try {
        const [summary] = await executeRun(
          {
            config,
            log,
            signal: term.signal,
            runtime: runtimeSettings(),
            backends,
            progress: pretty && process.stderr.isTTY ? 'tty' : 'off',
            onSummary: (_s, line) => writeRawLine(line),
          },
          { kind: 'incremental' },
        );
        return summary;
      } finally {
        term.dispose();
      }
    };

    const first = await run('First run');
    if (first.exit_code !== 0) return first.exit_code;
    // What landed, read back through the same backends the run used.
    const report = async () => {
      const store = await backends.createStore(config);
      const warehouse = await backends.createWarehouse(config, store);
      try {
        if (!warehouse.select) throw new Error(`warehouse.type ${config.warehouse.type} cannot be queried`);
        return await warehouse.select(REGION_REPORT);
      } finally {
        await warehouse.close();
        await store.close?.();
      }
    };
    say();
    say(`Loaded into ${join(dir, 'warehouse.duckdb')} (table analytics.trips), per region:`);
    say(table(await report()));

    const added = Math.max(1000, Math.floor(options.rows / 10));
    const updated = Math.min(1000, options.rows);
    say();
    say(
      `Inserting ${added.toLocaleString('en-US')} new trips and updating the fare of ${updated.toLocaleString('en-US')} old ones...`,
    );
    await fillTrips(client, options.rows + 1, options.rows + added);
    await client.query(
      `UPDATE trips SET fare_usd = fare_usd + 1, updated_at = (SELECT max(updated_at) FROM trips) + interval '1 second'
       WHERE trip_id <= $1`,
      [updated],
    );
    const second = await run('Second run');
    if (second.exit_code !== 0) return second.exit_code;
    say();
    say(
      `The second run moved ${second.rows_loaded?.toLocaleString('en-US')} rows (the ${added.toLocaleString('en-US')} new and ${updated.toLocaleString('en-US')} updated ones), not the whole table:`,
    );
    const after = await report();
    say(table(after));
    const inWarehouse = after.reduce((n, r) => n + Number(r.trips), 0);
    const inSource = Number((await client.query<{ n: string }>('SELECT count(*) AS n FROM trips')).rows[0].n);
    say();
    say(
      `Source rows: ${inSource.toLocaleString('en-US')}, warehouse rows: ${inWarehouse.toLocaleString('en-US')}: ${inSource === inWarehouse ? 'equal, no row lost or doubled' : 'DIFFERENT'}`,
    );
    say(
      `Stage: ${join(dir, 'stage')} (data files, run manifests, checkpoint). Demo took ${((Date.now() - started) / 1000).toFixed(1)} s.`,
    );
    return inSource === inWarehouse ? 0 : 3;
  } finally {
    await client.end().catch(() => undefined);
    await server.stop();
  }
}
