/**
 * The core run end to end, as a user runs it: the built CLI as a process, a real PostgreSQL,
 * a local stage, a DuckDB warehouse file.
 */
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { duckQuery, tableFacts } from './helpers/duck.js';
import { freshDatabase, jsonLines, runCli, sql, tempDir, writeConfig } from './helpers/env.js';
import { tripsJob } from './helpers/trips-job.js';

let dbUrl: string;
const tmp = tempDir('ns-e2e-');

beforeAll(async () => {
  dbUrl = await freshDatabase();
});
afterAll(() => tmp.cleanup());

/** A job with its own table, stage and warehouse file. */
async function newJob(overrides: Record<string, unknown> = {}, rows = 1000) {
  const job = await tripsJob({
    dbUrl,
    root: tmp.dir,
    rows,
    name: (n) => `job-${n}`,
    stage: (dir) => ({ url: pathToFileURL(join(dir, 'stage')).href }),
    overrides,
  });
  const stageDir = join(job.dir, 'stage', job.config.job);
  return {
    ...job,
    stageDir,
    checkpoint: () => {
      const path = join(stageDir, 'state', 'checkpoint.json');
      return existsSync(path) ? JSON.parse(readFileSync(path, 'utf8')) : undefined;
    },
  };
}

describe('nightshift run', () => {
  it('loads the first window, then only new rows, then nothing when nothing is new', async () => {
    const job = await newJob({}, 3000);
    const first = await job.run();
    expect(first.code, first.stderr + first.stdout).toBe(0);
    expect(first.summary).toMatchObject({
      msg: 'run summary',
      job: job.config.job,
      status: 'succeeded',
      exit_code: 0,
      rows_source: 3000,
      rows_written: 3000,
      rows_loaded: 3000,
      files: 1,
    });
    for (const field of ['run_id', 'window', 'bytes', 'duration_ms'])
      expect(first.summary).toHaveProperty(field);
    expect(String(first.summary?.run_id)).toMatch(/^\d{8}T\d{6}Z-[0-9a-f]{6}$/);
    expect(await job.facts()).toEqual(await job.sourceFacts());
    const cp1 = job.checkpoint();
    expect(cp1.watermark).toEqual(['2023-01-01 06:00:00+00', '3000']);

    await job.insert(3001, 3500);
    const second = await job.run();
    expect(second.code, second.stderr).toBe(0);
    expect(second.summary).toMatchObject({ status: 'succeeded', rows_source: 500, rows_loaded: 500 });
    expect(second.summary?.checkpoint).toEqual({
      before: cp1.watermark,
      after: ['2023-01-01 06:50:00+00', '3500'],
    });
    expect(await job.facts()).toEqual(await job.sourceFacts());

    const third = await job.run();
    expect(third.code).toBe(0);
    expect(third.summary).toMatchObject({ status: 'no_new_rows', rows_loaded: null, files: 0 });
    expect(job.checkpoint()).toEqual({ ...job.checkpoint(), watermark: ['2023-01-01 06:50:00+00', '3500'] });
    expect(job.checkpoint().run_id).toBe(second.summary?.run_id);
    expect(await job.facts()).toEqual(await job.sourceFacts());
  });

  it('writes the object layout: timestamped data paths, a manifest with sha256, state files', async () => {
    const job = await newJob({}, 200);
    const r = await job.run();
    expect(r.code, r.stderr).toBe(0);
    const runId = String(r.summary?.run_id);
    const day = `${runId.slice(0, 4)}-${runId.slice(4, 6)}-${runId.slice(6, 8)}`;
    const dataDir = join(job.stageDir, 'data', `dt=${day}`, `run=${runId}`);
    expect(readdirSync(dataDir)).toEqual(['part-00000.parquet']);
    const manifest = JSON.parse(readFileSync(join(job.stageDir, 'runs', `${runId}.json`), 'utf8'));
    expect(manifest.files).toHaveLength(1);
    expect(manifest.files[0]).toMatchObject({
      rows: 200,
      key: `${job.config.job}/data/dt=${day}/run=${runId}/part-00000.parquet`,
    });
    expect(manifest.files[0].sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(manifest.summary).toMatchObject({ run_id: runId, status: 'succeeded' });
    expect(manifest.columns.find((c: { name: string }) => c.name === 'fare_usd').parquet).toBe(
      'INT64 DECIMAL(10,2)',
    );
    // The table holds the source's columns and nothing else: the dt=/run= folders of the stage
    // are not read back as columns.
    const columns = (sql: string) =>
      duckQuery(job.warehousePath, sql).then((rows) => rows.map((r) => r.name));
    expect(
      await columns(
        "SELECT column_name AS name FROM information_schema.columns WHERE table_name = 'trips' ORDER BY ordinal_position",
      ),
    ).toEqual(manifest.columns.map((c: { name: string }) => c.name));
    const lease = JSON.parse(readFileSync(join(job.stageDir, 'state', 'lease.json'), 'utf8'));
    expect(lease).toMatchObject({ released: true, run_id: runId });
    // The temp dir holds nothing once the run is over.
    expect(readdirSync(job.config.temp_dir as string)).toEqual([]);
  });

  for (const mode of ['append', 'merge', 'replace'] as const) {
    it(`loads the same window twice in ${mode} mode without duplicates`, async () => {
      const job = await newJob(
        { warehouse: { table: 'analytics.trips', mode, duckdb: { path: join(tmp.dir, `${mode}.duckdb`) } } },
        800,
      );
      const warehousePath = join(tmp.dir, `${mode}.duckdb`);
      const facts = () => tableFacts(warehousePath, 'analytics.trips', 'trip_id', 'fare_usd');
      expect((await job.run()).code).toBe(0);
      // A rerun of the same window: as after a crash between the load and the checkpoint commit.
      const checkpoint = join(job.stageDir, 'state', 'checkpoint.json');
      if (existsSync(checkpoint))
        writeFileSync(checkpoint, JSON.stringify({ ...job.checkpoint(), watermark: null }));
      const again = await job.run();
      expect(again.code, again.stderr).toBe(0);
      expect(again.summary?.rows_loaded).toBe(800);
      expect(again.summary?.rows_replaced).toBe(800);
      expect(await facts()).toEqual(await job.sourceFacts());
    });
  }

  it('merge mode upserts updated rows on the key', async () => {
    const job = await newJob(
      {
        warehouse: {
          table: 'analytics.trips',
          mode: 'merge',
          duckdb: { path: join(tmp.dir, 'upsert.duckdb') },
        },
      },
      500,
    );
    expect((await job.run()).code).toBe(0);
    await sql(
      dbUrl,
      `UPDATE ${job.table} SET fare_usd = 1.23, updated_at = updated_at + interval '1 day' WHERE trip_id <= 10`,
    );
    const r = await job.run();
    expect(r.summary).toMatchObject({ rows_loaded: 10, rows_replaced: 10 });
    const facts = await tableFacts(join(tmp.dir, 'upsert.duckdb'), 'analytics.trips', 'trip_id', 'fare_usd');
    expect(facts).toEqual(await job.sourceFacts());
  });

  it('creates the DuckDB file in the configured storage format; an existing file keeps its own', async () => {
    const storageVersion = (path: string) =>
      duckQuery(path, "SELECT tags['storage_version'] AS v FROM duckdb_databases() WHERE NOT internal").then(
        (rows) => rows.map((r) => r.v),
      );
    const fresh = await newJob({}, 100);
    expect((await fresh.run()).code).toBe(0);
    expect(await storageVersion(fresh.warehousePath)).toEqual(['v1.3.0+']);

    const old = join(tmp.dir, 'old-format.duckdb');
    const job = await newJob(
      { warehouse: { table: 'analytics.trips', duckdb: { path: old, storage_version: 'v1.0.0' } } },
      300,
    );
    expect((await job.run()).code).toBe(0);
    expect(await storageVersion(old)).toEqual(['v1.0.0+']);
    // The next run, with the default setting, appends to the file without upgrading it.
    await job.insert(301, 400);
    writeConfig(
      tmp.dir,
      { ...job.config, warehouse: { table: 'analytics.trips', duckdb: { path: old } } },
      basename(job.configPath),
    );
    const next = await job.run();
    expect(next.code, next.stderr).toBe(0);
    expect(await storageVersion(old)).toEqual(['v1.0.0+']);
    expect(await tableFacts(old, 'analytics.trips', 'trip_id', 'fare_usd')).toEqual(await job.sourceFacts());
  });

  it('checkpoints the DuckDB file within the load: killed right after it, no WAL is left', async () => {
    const job = await newJob({}, 200);
    const killed = await job.run(['run'], { NIGHTSHIFT_FAILPOINTS: 'after-load' });
    expect(killed.signal).toBe('SIGKILL');
    // Without the checkpoint the committed rows would be in the WAL until the file closed.
    const wal = `${job.warehousePath}.wal`;
    expect(existsSync(wal) ? statSync(wal).size : 0).toBe(0);
    expect(await duckQuery(job.warehousePath, 'SELECT count(*)::INT AS n FROM analytics.trips')).toEqual([
      { n: 200 },
    ]);
  });

  it('backfills explicit windows, repeatably, without touching the checkpoint', async () => {
    const job = await newJob({}, 1200); // rows every 6 s from 2023-01-01 01:00:06
    const args = [
      'backfill',
      '--from',
      '2023-01-01T01:00:00Z',
      '--to',
      '2023-01-01T02:00:00Z',
      '--step',
      '20m',
    ];
    const r = await job.run(args);
    expect(r.code, r.stderr).toBe(0);
    const lines = jsonLines(r.stdout);
    expect(lines.some((l) => l.msg === 'nightshift backfill starting')).toBe(true);
    const summaries = lines.filter((l) => l.msg === 'run summary');
    expect(summaries.map((s) => s.rows_loaded)).toEqual([199, 200, 200]);
    expect(summaries.every((s) => s.command === 'backfill')).toBe(true);
    // Last, one total over the windows.
    expect(r.summary).toMatchObject({
      msg: 'backfill summary',
      status: 'succeeded',
      exit_code: 0,
      windows_planned: 3,
      windows_succeeded: 3,
      windows_failed: 0,
      windows_not_run: 0,
      rows_loaded: 599,
      run_ids: summaries.map((s) => s.run_id),
    });
    expect(job.checkpoint()?.watermark ?? null).toBeNull();
    const again = await job.run(args);
    expect(again.code).toBe(0);
    const facts = await job.facts();
    expect(facts).toMatchObject({ rows: 599, keys: 599 });
  });

  it('backfill refuses arguments that cannot work before it reaches the database or takes the lease', async () => {
    const job = await newJob({}, 10);
    // A source nobody answers on: an argument error must not wait for it, nor write a lease.
    const nowhere = { NIGHTSHIFT_SOURCE_URL: 'postgres://nobody@127.0.0.1:9/none' };
    const cases: [string[], string][] = [
      [['--from', '2024-02-01', '--to', '2024-01-01'], '--from must be before --to'],
      [['--from', '2024-01-01', '--to', '2024-02-01', '--step', '1x'], 'is not a duration'],
      [['--from', '100', '--to', '2024-02-01'], 'must both be integers or both dates or times'],
      [['--from', '1', '--to', '100', '--step', '1d'], 'must be a positive integer'],
    ];
    for (const [args, message] of cases) {
      const r = await job.run(['backfill', ...args], nowhere);
      expect(r.code, `${args.join(' ')}: ${r.stdout.slice(-600)}`).toBe(2);
      expect(r.summary).toMatchObject({ msg: 'backfill summary', exit_code: 2, windows_planned: 0 });
      expect(JSON.stringify(r.summary?.error)).toContain(message);
      expect(existsSync(job.stageDir)).toBe(false); // no lease was written, nor anything else
    }
  });

  it('plan prints the next window and moves nothing', async () => {
    const job = await newJob({}, 300);
    const r = await runCli(['plan', '--config', job.configPath]);
    expect(r.code, r.stderr).toBe(0);
    const report = JSON.parse(r.stdout);
    expect(report.rows).toBe(300);
    expect(report.window.upper).toEqual(['2023-01-01 01:30:00+00', '300']);
    expect(report.objects.data).toMatch(
      /\/data\/dt=\d{4}-\d{2}-\d{2}\/run=\d{8}T\d{6}Z-[0-9a-f]{6}\/part-00000\.parquet$/,
    );
    expect(report.copy).toMatch(/^COPY \(SELECT .* TO STDOUT \(FORMAT binary\)$/);
    expect(existsSync(job.stageDir)).toBe(false);
    expect(existsSync(job.warehousePath)).toBe(false);
  });

  it('exits 3 and keeps the checkpoint when a window has fewer rows than validation.min_rows', async () => {
    const job = await newJob({ validation: { min_rows: 5000 } }, 100);
    const r = await job.run();
    expect(r.code).toBe(3);
    expect(r.summary).toMatchObject({ status: 'validation_failed', exit_code: 3, rows_loaded: null });
    expect(JSON.stringify(r.summary?.error)).toContain('validation.min_rows');
    expect(job.checkpoint().watermark).toBeNull();
    // The load was rolled back: the warehouse holds no table (the file may exist, empty).
    if (existsSync(job.warehousePath)) {
      expect(await duckQuery(job.warehousePath, 'SELECT table_name FROM information_schema.tables')).toEqual(
        [],
      );
    }
  });

  it('exits 3 before moving data when a window has more rows than validation.max_rows', async () => {
    const job = await newJob({ validation: { max_rows: 10 } }, 100);
    const r = await job.run();
    expect(r.code).toBe(3);
    expect(r.summary).toMatchObject({ status: 'validation_failed', rows_written: 0, files: 0 });
    expect(existsSync(join(job.stageDir, 'data'))).toBe(false);
  });

  it('drains a backlog over several runs with max_rows_per_run', async () => {
    const job = await newJob({}, 1000);
    const cfg = { ...job.config, source: { ...job.config.source, max_rows_per_run: 400 } };
    const path = writeConfig(tmp.dir, cfg, 'maxrows.yaml');
    const loaded: unknown[] = [];
    for (let i = 0; i < 4; i++) {
      const r = await runCli(['run', '--config', path]);
      expect(r.code).toBe(0);
      loaded.push(r.summary?.rows_loaded);
    }
    expect(loaded).toEqual([400, 400, 200, null]);
    expect(await job.facts()).toEqual(await job.sourceFacts());
  });

  it('exits 4 while another run holds the lease', async () => {
    const job = await newJob({}, 10);
    expect((await job.run()).code).toBe(0);
    const leasePath = join(job.stageDir, 'state', 'lease.json');
    const held = {
      ...JSON.parse(readFileSync(leasePath, 'utf8')),
      released: false,
      run_id: 'other',
      expires_at: new Date(Date.now() + 60_000).toISOString(),
    };
    writeFileSync(leasePath, JSON.stringify(held));
    const r = await job.run();
    expect(r.code).toBe(4);
    expect(r.summary).toMatchObject({ status: 'lease_held', exit_code: 4 });
    expect(r.stdout).toContain('run other');
  });

  it('writes the summary to the termination log when the file exists', async () => {
    const job = await newJob({}, 10);
    const log = join(tmp.dir, 'termination-log');
    writeFileSync(log, '');
    const r = await job.run(['run'], { NIGHTSHIFT_TERMINATION_LOG: log });
    expect(r.code).toBe(0);
    const written = JSON.parse(readFileSync(log, 'utf8'));
    expect(written).toMatchObject({ msg: 'run summary', status: 'succeeded', rows_loaded: 10 });
    expect(Buffer.byteLength(readFileSync(log))).toBeLessThanOrEqual(4096);
  });

  it('never prints the database password', async () => {
    const job = await newJob({}, 10);
    const password = new URL(dbUrl).password;
    const url = new URL(dbUrl);
    url.password = '';
    const cfg = {
      ...job.config,
      source: {
        ...job.config.source,
        url: url.href.replace('postgres://postgres@', 'postgres://postgres:${PGPASSWORD}@'),
      },
    };
    const path = writeConfig(tmp.dir, cfg, 'secret.yaml');
    const ok = await runCli(['run', '--config', path], { PGPASSWORD: password });
    expect(ok.code, ok.stderr).toBe(0);
    const bad = await runCli(['run', '--config', path, '--log-level', 'debug'], {
      PGPASSWORD: `${password}x`,
    });
    expect(bad.code).toBe(5);
    for (const out of [ok.stdout, ok.stderr, bad.stdout, bad.stderr]) expect(out).not.toContain(password);
  });
});

describe('configuration errors exit 2 and name the fix', () => {
  const cases: [string, unknown, RegExp][] = [
    ['an unknown key', { job: 'x', sorce: {} }, /unknown key sorce/],
    [
      'a missing cursor',
      {
        job: 'x',
        source: { url: 'postgres://h/db', table: 't' },
        stage: { url: 'file:///tmp/x' },
        warehouse: { table: 't', duckdb: { path: '/tmp/x.duckdb' } },
      },
      /source\.cursor/,
    ],
    [
      'a wrong type',
      {
        job: 'x',
        source: { url: 'postgres://h/db', table: 't', cursor: 'c', key: ['k'], max_rows_per_run: 'many' },
        stage: { url: 'file:///tmp/x' },
        warehouse: { table: 't', duckdb: { path: '/tmp/x.duckdb' } },
      },
      /source\.max_rows_per_run: .*expected number/,
    ],
    [
      'a DuckDB storage version that is not a version',
      {
        job: 'x',
        source: { url: 'postgres://h/db', table: 't', cursor: 'c', key: ['k'] },
        stage: { url: 'file:///tmp/x' },
        warehouse: { table: 't', duckdb: { path: '/tmp/x.duckdb', storage_version: '1.3' } },
      },
      /warehouse\.duckdb\.storage_version: a DuckDB version such as v1\.3\.0, or latest/,
    ],
    [
      'a bad stage URL',
      {
        job: 'x',
        source: { url: 'postgres://h/db', table: 't', cursor: 'c', key: ['k'] },
        stage: { url: 'ftp://nope' },
        warehouse: { table: 't', duckdb: { path: '/tmp/x.duckdb' } },
      },
      /stage\.url: .*file:\/\/\/.*NIGHTSHIFT_STAGE_URL/,
    ],
  ];
  for (const [what, config, message] of cases) {
    it(`rejects ${what}`, async () => {
      const path = writeConfig(tmp.dir, config, `bad-${what.replaceAll(' ', '-')}.yaml`);
      const r = await runCli(['run', '--config', path]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(message);
      // JSON logs (stdout is not a terminal): an error line with its severity, then the summary.
      const lines = jsonLines(r.stdout);
      expect(lines).toHaveLength(2);
      expect(lines[0]).toMatchObject({ severity: 'ERROR', err: { code: 'config' } });
      expect(String(lines[0].msg)).toMatch(message);
      expect(r.summary).toMatchObject({
        msg: 'run summary',
        severity: 'ERROR',
        command: 'run',
        status: 'config_error',
        exit_code: 2,
        error: { code: 'config' },
      });
    });
  }

  it('rejects malformed YAML with the line', async () => {
    const path = writeConfig(tmp.dir, 'job: x\nsource:\n  url: [unclosed\n', 'malformed.yaml');
    const r = await runCli(['run', '--config', path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/not valid YAML at line \d/);
  });

  it('names a missing environment variable', async () => {
    const path = writeConfig(
      tmp.dir,
      { job: 'x', source: { url: 'postgres://u:${NOPE_PASSWORD}@h/db' } },
      'envvar.yaml',
    );
    const r = await runCli(['run', '--config', path]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('source.url: environment variable NOPE_PASSWORD is not set');
  });

  it('names a column the source does not have', async () => {
    const job = await newJob({}, 5);
    const cfg = { ...job.config, source: { ...job.config.source, cursor: 'no_such_column' } };
    const r = await runCli(['run', '--config', writeConfig(tmp.dir, cfg, 'nocol.yaml')]);
    expect(r.code).toBe(2);
    expect(r.summary?.error).toMatchObject({ code: 'config' });
    expect(JSON.stringify(r.summary)).toContain('source.cursor: column no_such_column is not in the source');
  });

  it('a temp_dir that cannot be created or written exits 2 with the mount fix, as check does', async () => {
    const job = await newJob({}, 5);
    const file = join(tmp.dir, `not-a-dir-${job.config.job}`);
    writeFileSync(file, 'x');
    // Root may write anywhere, so the path runs into a file instead of a permission.
    const cfg = { ...job.config, temp_dir: join(file, 'tmp') };
    const r = await runCli(['run', '--config', writeConfig(tmp.dir, cfg, 'bad-temp.yaml')]);
    expect(r.code, r.stdout.slice(-600)).toBe(2);
    expect(r.summary?.error).toMatchObject({ code: 'config' });
    expect(JSON.stringify(r.summary?.error)).toContain('is not writable');
    expect(JSON.stringify(r.summary?.error)).toContain('emptyDir');
    expect(job.checkpoint()?.watermark ?? null).toBeNull();
  });

  it('rejects an unknown command and unknown flags', async () => {
    expect((await runCli(['fly'])).code).toBe(2);
    const r = await runCli(['run', '--frobnicate']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("Unknown option '--frobnicate'");
    expect(r.summary).toMatchObject({ status: 'config_error', exit_code: 2, command: 'run' });
    // Asked for readable logs, a usage error stays one readable line on stderr.
    const pretty = await runCli(['run', '--frobnicate', '--log-format', 'pretty']);
    expect(pretty.code).toBe(2);
    expect(pretty.stdout).toBe('');
    expect(pretty.stderr).toContain("Unknown option '--frobnicate'");
  });
});

describe('the command line', () => {
  it('answers --version and --help for every command', async () => {
    const v = await runCli(['--version']);
    expect(v.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    expect((await runCli(['-v'])).stdout).toBe(v.stdout);
    for (const command of ['run', 'plan', 'backfill', 'check', 'whoami', 'iam', 'demo', 'config']) {
      const h = await runCli([command, '--help']);
      expect(h.code).toBe(0);
      expect(h.stdout).toContain(`nightshift ${command}`);
      // Every command's help shows how it is called and what its exit codes mean.
      expect(h.stdout, command).toMatch(/Examples?:\n {2}(\S+=\S+ )?nightshift /);
      expect(h.stdout, command).toContain('Exit codes:');
      expect((await runCli(['help', command])).stdout).toBe(h.stdout);
    }
    const main = await runCli(['--help']);
    expect(main.stdout).toContain('Exit codes');
    expect(main.stdout).toContain('Examples:');
    const unknown = await runCli(['help', 'nope']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('no help for "nope"');
  });
});
