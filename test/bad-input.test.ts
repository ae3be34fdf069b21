/**
 * Garbage in: each bad input gives the contract's exit code and a message that says what to do,
 * and writes nothing to the warehouse or the checkpoint. Also: a non-UTC TZ and DST boundaries,
 * and secrets planted in the config and environment that no failure path may print.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { duckQuery } from './helpers/duck.js';
import { freshDatabase, runCli, sql, tempDir, writeConfig } from './helpers/env.js';

const tmp = tempDir('ns-bad-');
let dbUrl: string;
let n = 0;

beforeAll(async () => {
  dbUrl = await freshDatabase();
});
afterAll(() => tmp.cleanup());

function job(table: string, extra: Record<string, unknown> = {}, url = dbUrl) {
  const name = `bad${++n}`;
  const dir = join(tmp.dir, name);
  const config = {
    job: name,
    source: { url, table, cursor: 'ts', key: ['id'] },
    stage: { url: pathToFileURL(join(dir, 'stage')).href },
    warehouse: { table, duckdb: { path: join(dir, 'w.duckdb') } },
    temp_dir: join(dir, 'tmp'),
    log: { format: 'json' },
    ...extra,
  };
  return {
    dir,
    warehouse: join(dir, 'w.duckdb'),
    stage: join(dir, 'stage', name),
    configPath: writeConfig(tmp.dir, config, `${name}.yaml`),
    nothingWritten() {
      const checkpoint = join(dir, 'stage', name, 'state', 'checkpoint.json');
      const watermark = existsSync(checkpoint)
        ? JSON.parse(readFileSync(checkpoint, 'utf8')).watermark
        : null;
      expect(watermark).toBeNull();
      expect(existsSync(join(dir, 'w.duckdb'))).toBe(false);
    },
  };
}

describe('bad input', () => {
  it('no configuration at all exits 2 and says how to give one', async () => {
    const r = await runCli(['run']);
    expect(r.code).toBe(2);
    expect(r.stderr + r.stdout).toContain('job: required');
    expect(r.stderr + r.stdout).toContain('pass --config /path/to/nightshift.yaml or set NIGHTSHIFT_CONFIG');
  });

  it('a cursor column with NULLs exits 2 and names the fix', async () => {
    await sql(dbUrl, 'CREATE TABLE nullable (id int PRIMARY KEY, ts timestamptz)');
    await sql(dbUrl, "INSERT INTO nullable VALUES (1, '2024-01-01'), (2, NULL)");
    const j = job('nullable');
    const r = await runCli(['run', '--config', j.configPath]);
    expect(r.code).toBe(2);
    expect(JSON.stringify(r.summary?.error)).toContain('source.cursor: column ts holds NULLs');
    j.nothingWritten();
  });

  it('a missing table exits 2', async () => {
    const j = job('no_such_table');
    const r = await runCli(['run', '--config', j.configPath]);
    expect(r.code).toBe(2);
    expect(JSON.stringify(r.summary?.error)).toContain('no_such_table');
    j.nothingWritten();
  });

  it('a window with zero rows exits 0 and loads nothing', async () => {
    await sql(dbUrl, 'CREATE TABLE empty_t (id int PRIMARY KEY, ts timestamptz NOT NULL)');
    const j = job('empty_t');
    const r = await runCli(['run', '--config', j.configPath]);
    expect(r.code).toBe(0);
    expect(r.summary).toMatchObject({ status: 'no_new_rows', rows_loaded: null, files: 0 });
    j.nothingWritten();
  });

  it('an unreachable database exits 75; wrong credentials exit 5', async () => {
    const down = job('x', {}, 'postgres://postgres:secret@127.0.0.1:1/postgres');
    const r1 = await runCli(['run', '--config', down.configPath]);
    expect(r1.code).toBe(75);
    const url = new URL(dbUrl);
    url.password = 'wrong-password';
    const denied = job('x', {}, url.href);
    const r2 = await runCli(['run', '--config', denied.configPath]);
    expect(r2.code).toBe(5);
    expect(JSON.stringify(r2.summary?.error)).toContain('cannot connect to PostgreSQL');
  });
});

describe('time zones', () => {
  it('a non-UTC TZ and DST boundaries change no timestamp', async () => {
    await sql(
      dbUrl,
      'CREATE TABLE dst (id int PRIMARY KEY, ts timestamptz NOT NULL, local_ts timestamp, d date)',
    );
    // Around the 2024 US and EU transitions, and a leap day.
    await sql(
      dbUrl,
      `INSERT INTO dst SELECT g, t, t AT TIME ZONE 'America/New_York', (t AT TIME ZONE 'America/New_York')::date
       FROM (SELECT g, timestamptz '2024-03-10 06:30:00+00' + g * interval '17 minutes' AS t FROM generate_series(1, 300) g) x
       UNION ALL SELECT 1000 + g, t, t AT TIME ZONE 'Europe/Berlin', t::date
       FROM (SELECT g, timestamptz '2024-10-27 00:00:00+00' + g * interval '13 minutes' AS t FROM generate_series(1, 300) g) y
       UNION ALL SELECT 5000, '2024-02-29 23:59:59.999999+00', '2024-02-29 23:59:59.999999', '2024-02-29'`,
    );
    const j = job('dst');
    for (const tz of ['America/New_York', 'Europe/Berlin']) {
      const r = await runCli(['run', '--config', j.configPath], { TZ: tz, PGTZ: tz });
      expect(r.code, r.stdout.slice(-500)).toBe(0);
    }
    const pg = await sql<{ id: number; ts: string; local_ts: string; d: string }>(
      dbUrl,
      `SELECT id, (extract(epoch from ts) * 1000000)::bigint::text AS ts,
              (extract(epoch from local_ts) * 1000000)::bigint::text AS local_ts, (d - date '1970-01-01')::text AS d
       FROM dst ORDER BY id`,
    );
    const loaded = await duckQuery(
      j.warehouse,
      `SELECT id, epoch_us(ts)::varchar AS ts, epoch_us(local_ts)::varchar AS local_ts,
              (d - DATE '1970-01-01')::varchar AS d FROM dst ORDER BY id`,
    );
    expect(loaded).toEqual(pg);
  });
});

describe('secrets', () => {
  it('no failure path prints the password, the private key or the token', async () => {
    const password = `pw-${Math.random().toString(36).slice(2)}-Secret!`;
    const token = `tok_${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
    const key = `-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC${Math.random().toString(36).slice(2)}\n-----END PRIVATE KEY-----`;
    const keyFile = join(tmp.dir, 'key.pem');
    writeFileSync(keyFile, key);
    await sql(dbUrl, `CREATE ROLE leaky LOGIN PASSWORD '${password}'`);
    await sql(dbUrl, 'CREATE TABLE secret_t (id int PRIMARY KEY, ts timestamptz NOT NULL)');
    await sql(dbUrl, "INSERT INTO secret_t VALUES (1, '2024-01-01')");
    const url = new URL(dbUrl);
    url.username = 'leaky';
    url.password = '';
    const base = url.href.replace('leaky@', 'leaky:${DB_PASSWORD}@');
    const env = { DB_PASSWORD: password, AWS_SESSION_TOKEN: token, APP_PRIVATE_KEY: key };
    const outputs: string[] = [];
    const collect = (dir: string) => {
      if (!existsSync(dir)) return;
      for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
        if (e.isFile() && e.name.endsWith('.json'))
          outputs.push(readFileSync(join(e.parentPath, e.name), 'utf8'));
      }
    };
    const termination = join(tmp.dir, 'termination-log');
    // 1. permission denied on the table (exit 5), with the key read from a file into the config.
    const denied = job(
      'secret_t',
      {
        source: {
          url: base,
          table: 'secret_t',
          cursor: 'ts',
          key: ['id'],
          application_name: '${file:' + keyFile + '}',
        },
      },
      base,
    );
    writeFileSync(termination, '');
    let r = await runCli(['run', '--config', denied.configPath, '--log-level', 'debug'], {
      ...env,
      NIGHTSHIFT_TERMINATION_LOG: termination,
    });
    expect(r.code).toBe(5);
    outputs.push(r.stdout, r.stderr, readFileSync(termination, 'utf8'));
    collect(denied.dir);
    // 2. a config error naming the secret key (exit 2).
    const bad = writeConfig(
      tmp.dir,
      { job: 'x', source: { url: base, table: 't', cursor: 42 } },
      'secret-bad.yaml',
    );
    r = await runCli(['run', '--config', bad], env);
    expect(r.code).toBe(2);
    outputs.push(r.stdout, r.stderr);
    // 3. wrong password (exit 5), and `config` printing the effective configuration.
    r = await runCli(['run', '--config', denied.configPath], { ...env, DB_PASSWORD: `${password}x` });
    expect(r.code).toBe(5);
    outputs.push(r.stdout, r.stderr);
    r = await runCli(['config', '--config', denied.configPath], env);
    expect(r.code).toBe(0);
    outputs.push(r.stdout, r.stderr);
    // 4. a successful run's manifest and summary, once the role may read.
    await sql(dbUrl, 'GRANT SELECT ON secret_t TO leaky');
    writeFileSync(termination, '');
    r = await runCli(['run', '--config', denied.configPath], {
      ...env,
      NIGHTSHIFT_TERMINATION_LOG: termination,
    });
    expect(r.code, r.stdout.slice(-400)).toBe(0);
    outputs.push(r.stdout, r.stderr, readFileSync(termination, 'utf8'));
    collect(denied.dir);
    const all = outputs.join('\n');
    expect(all.length).toBeGreaterThan(1000);
    for (const secret of [password, token, key, key.split('\n')[1]]) expect(all).not.toContain(secret);
  });
});
