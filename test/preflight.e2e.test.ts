/**
 * `nightshift check`, `whoami` and `iam` as a user runs them: the built CLI as a process against a
 * real PostgreSQL, a local stage and a DuckDB file. The grants `iam` prints are applied to a fresh
 * role and a real run must work with exactly those.
 */
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TRIPS_DDL, TRIPS_INSERT } from '../src/demo/trips.js';
import { freshDatabase, runCli, sql, tempDir, writeConfig } from './helpers/env.js';

let dbUrl: string;
const tmp = tempDir('ns-preflight-');
let n = 0;

beforeAll(async () => {
  dbUrl = await freshDatabase();
});
afterAll(() => tmp.cleanup());

async function job(overrides: Record<string, unknown> = {}, url?: string) {
  const i = ++n;
  const table = `trips_${i}`;
  await sql(dbUrl, TRIPS_DDL.replaceAll('trips', table));
  await sql(dbUrl, TRIPS_INSERT.replace('INSERT INTO trips', `INSERT INTO ${table}`), [1, 500]);
  const dir = join(tmp.dir, `job${i}`);
  const config = {
    job: `job-${i}`,
    source: { url: url ?? dbUrl, table: `public.${table}`, cursor: 'updated_at', key: ['trip_id'] },
    stage: { url: pathToFileURL(join(dir, 'stage')).href },
    warehouse: { table: 'analytics.trips', duckdb: { path: join(dir, 'warehouse.duckdb') } },
    temp_dir: tmp.dir,
    log: { format: 'json' },
    ...overrides,
  };
  const path = writeConfig(tmp.dir, config, `job${i}.yaml`);
  return { table, dir, config, path, cli: (cmd: string) => runCli([cmd, '--config', path]) };
}

/** A login role with no privileges at all; returns the URL that connects as it. */
async function bareRole(): Promise<{ role: string; url: string; password: string }> {
  const role = `reader_${++n}`;
  const password = `pw-${role}-Secret`;
  await sql(dbUrl, `CREATE ROLE ${role} LOGIN PASSWORD '${password}'`);
  await sql(dbUrl, `REVOKE ALL ON SCHEMA public FROM PUBLIC`);
  const url = new URL(dbUrl);
  url.username = role;
  url.password = password;
  return { role, url: url.href, password };
}

const lineOf = (stdout: string, name: string) =>
  stdout.split('\n').find((l) => new RegExp(`^(ok|skip|FAIL)\\s+${name}\\s`).test(l)) ?? '';

describe('nightshift check', () => {
  it('passes every check on a working job, one line each, and leaves nothing behind', async () => {
    const j = await job();
    const r = await j.cli('check');
    expect(r.code, r.stdout + r.stderr).toBe(0);
    for (const name of ['config', 'memory', 'identity', 'source', 'stage', 'warehouse', 'temp space']) {
      expect(lineOf(r.stdout, name), name).toMatch(/^ok /);
    }
    expect(lineOf(r.stdout, 'source')).toContain(`SELECT on public.${j.table}`);
    expect(lineOf(r.stdout, 'source')).toContain('cursor and key (updated_at, trip_id) present');
    expect(lineOf(r.stdout, 'identity')).toContain('uses no cloud identity');
    expect(r.stdout).toContain('all 7 checks passed');
    // The probe object is gone, and no data, checkpoint or lease was written.
    const stage = join(j.dir, 'stage', j.config.job);
    expect(readdirSync(join(stage, 'preflight'))).toEqual([]);
    expect(existsSync(join(stage, 'state'))).toBe(false);
    expect(existsSync(join(stage, 'data'))).toBe(false);
  });

  it('exits 5 and prints the GRANT when the role cannot SELECT the table', async () => {
    const { role, url, password } = await bareRole();
    await sql(dbUrl, `GRANT USAGE ON SCHEMA public TO ${role}`);
    const j = await job({}, url);
    const r = await j.cli('check');
    expect(r.code, r.stdout).toBe(5);
    expect(lineOf(r.stdout, 'source')).toMatch(/^FAIL .*no SELECT privilege on public\.trips_\d+/);
    expect(r.stdout).toContain(`fix: GRANT SELECT ON "public"."${j.table}" TO "${role}";`);
    // The other checks still ran.
    expect(lineOf(r.stdout, 'stage')).toMatch(/^ok /);
    expect(r.stdout + r.stderr).not.toContain(password);
  });

  it('exits 5 without USAGE on the schema, naming it', async () => {
    const { role, url } = await bareRole();
    const j = await job({}, url);
    const r = await j.cli('check');
    expect(r.code).toBe(5);
    expect(r.stdout).toContain(`fix: GRANT USAGE ON SCHEMA "public" TO "${role}";`);
  });

  it('exits 2 when the cursor column is missing, and 2 on an invalid configuration', async () => {
    const j = await job({
      source: { url: dbUrl, table: 'public.trips_1', cursor: 'nope', key: ['trip_id'] },
    });
    const r = await j.cli('check');
    expect(r.code).toBe(2);
    expect(lineOf(r.stdout, 'source')).toContain('source.cursor: column nope is not in the source');
    const bad = writeConfig(tmp.dir, { job: 'x', sorce: {} }, 'bad.yaml');
    const b = await runCli(['check', '--config', bad]);
    expect(b.code).toBe(2);
    expect(lineOf(b.stdout, 'config')).toMatch(/^FAIL .*unknown key sorce/);
    expect(b.stdout).toContain('the other checks need a valid configuration');
  });

  it('exits 75 when the database does not answer', async () => {
    const url = new URL(dbUrl);
    url.port = '1';
    const j = await job({}, url.href);
    const r = await j.cli('check');
    expect(r.code).toBe(75);
    expect(lineOf(r.stdout, 'source')).toMatch(/^FAIL .*cannot connect to PostgreSQL/);
  });

  it('exits 2 when temp_dir is not writable, with the emptyDir fix', async () => {
    const file = join(tmp.dir, 'not-a-dir');
    writeFileSync(file, '');
    const j = await job({ temp_dir: file });
    const r = await j.cli('check');
    expect(r.code).toBe(2);
    expect(lineOf(r.stdout, 'temp space')).toMatch(/^FAIL .*is not writable/);
    expect(r.stdout).toContain('fix: mount a writable volume there (an emptyDir at /tmp');
  });
});

describe('nightshift whoami and iam', () => {
  it('are in --help, each with its own help', async () => {
    const main = await runCli(['--help']);
    for (const command of ['check', 'whoami', 'iam']) {
      expect(main.stdout).toMatch(new RegExp(`^  ${command}\\s`, 'm'));
      const h = await runCli([command, '--help']);
      expect(h.code).toBe(0);
      expect(h.stdout).toContain(`Usage: nightshift ${command}`);
    }
  });

  it('whoami names the database role and says a local stage uses no cloud identity', async () => {
    const j = await job();
    const r = await j.cli('whoami');
    expect(r.code, r.stderr).toBe(0);
    const role = new URL(dbUrl).username;
    expect(r.stdout).toContain(`role ${role}, password from the configuration (never shown)`);
    expect(r.stdout).toMatch(/stage\s+file:\/\//);
    expect(r.stdout).toContain('a file:// stage uses no cloud identity');
    expect(r.stdout).toMatch(/local filesystem as uid \d+/);
    const password = new URL(dbUrl).password;
    if (password) expect(r.stdout).not.toContain(password);
  });

  it('iam prints grants that are enough: a fresh role with exactly them completes a run', async () => {
    const { role, url } = await bareRole();
    const j = await job({}, url);
    const denied = await j.cli('run');
    expect(denied.code).toBe(5);
    const r = await j.cli('iam');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`GRANT SELECT ON "public"."${j.table}" TO "${role}";`);
    expect(r.stdout).toContain(`## stage: stage ${pathToFileURL(join(j.dir, 'stage')).href}`);
    expect(r.stdout).toContain('## warehouse: DuckDB file');
    const block = /```sql\n([\s\S]*?)```/.exec(r.stdout)?.[1] ?? '';
    const statements = block.split('\n').filter((l) => l.trim() && !l.startsWith('--'));
    // CONNECT, USAGE, SELECT, and the read-only default: the run must work with exactly these.
    expect(statements).toHaveLength(4);
    for (const statement of statements) await sql(dbUrl, statement);
    const ok = await j.cli('run');
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.summary).toMatchObject({ rows_loaded: 500 });
  });
});
