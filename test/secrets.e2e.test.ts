/**
 * Secrets end to end, with the built CLI, a real PostgreSQL and DuckDB: a role whose password
 * holds `@/:%#?&=+`, a space and non-ASCII connects by every way a password can be given, and
 * no output (logs, errors, summary, manifest, termination log, config, check, plan, whoami, iam)
 * holds any 4-character piece of it. Secrets too short to replace by value (`0000`, `test`, `a`)
 * and one with `@/:%` leave every summary and manifest parseable and every name and path intact.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  type CliResult,
  freshDatabase,
  jsonLines,
  runCli,
  sql,
  tempDir,
  writeConfig,
} from './helpers/env.js';
import { type TripsJob, tripsJob } from './helpers/trips-job.js';

const tmp = tempDir('ns-secrets-');
let dbUrl: string;
let roles = 0;

beforeAll(async () => {
  dbUrl = await freshDatabase();
});
afterAll(() => tmp.cleanup());

const PASSWORD = 'K7@/:%#?&=+ Zöñ9q';

/** Every 4-character piece of `secret` found in `text`. */
function pieces(text: string, secret: string): string[] {
  const found = new Set<string>();
  for (let i = 0; i + 4 <= secret.length; i++) {
    const piece = secret.slice(i, i + 4);
    if (text.includes(piece)) found.add(piece);
  }
  return [...found];
}

/** A login role with `password`, and the test database's URL without a password, as that role. */
async function role(password: string): Promise<{ name: string; url: URL }> {
  const name = `secret_role_${++roles}`;
  await sql(dbUrl, `CREATE ROLE ${name} LOGIN PASSWORD ${pg.escapeLiteral(password)}`);
  const url = new URL(dbUrl);
  url.username = name;
  url.password = '';
  return { name, url };
}

/** Every JSON file under `dir` (manifests, checkpoint, lease), as text. */
function jsonFiles(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.json'))
    .map((e) => readFileSync(join(e.parentPath, e.name), 'utf8'));
}

async function jobFor(
  roleName: string,
  source: Record<string, unknown>,
  options: { rows?: number; name?: string; stageDir?: string } = {},
): Promise<TripsJob & { configPath: string; termination: string }> {
  const job = await tripsJob({
    dbUrl,
    root: tmp.dir,
    rows: options.rows ?? 2000,
    name: options.name ? () => options.name as string : undefined,
    stage: (dir) => ({ url: pathToFileURL(join(dir, options.stageDir ?? 'stage')).href }),
  });
  await sql(dbUrl, `GRANT SELECT ON ${job.table} TO ${roleName}`);
  const config = { ...job.config, source: { ...job.config.source, url: undefined, ...source } };
  const configPath = writeConfig(tmp.dir, config, `${job.config.job}-${roles}.yaml`);
  const termination = join(job.dir, 'termination-log');
  return { ...job, configPath, termination };
}

/** Runs a command of the job; the termination log is created first, as Kubernetes does. */
async function cli(
  command: string,
  job: { configPath: string; termination: string; dir: string },
  env: Record<string, string>,
  extra: string[] = [],
): Promise<CliResult> {
  mkdirSync(job.dir, { recursive: true });
  writeFileSync(job.termination, '');
  return runCli([command, '--config', job.configPath, ...extra], {
    ...env,
    NIGHTSHIFT_TERMINATION_LOG: job.termination,
  });
}

function errorOf(r: CliResult): string {
  return (r.summary?.error as { message?: string } | undefined)?.message ?? '(no error in the summary)';
}

function outputsOf(r: CliResult, job: { termination: string }): string[] {
  return [r.stdout, r.stderr, existsSync(job.termination) ? readFileSync(job.termination, 'utf8') : ''];
}

describe('a password with @/:%#?&=+, a space and non-ASCII', () => {
  it('connects by env, by file, by NIGHTSHIFT_SOURCE_PASSWORD and URL-encoded; no output holds a piece of it', async () => {
    const { name, url } = await role(PASSWORD);
    const file = join(tmp.dir, 'pg-password');
    writeFileSync(file, `${PASSWORD}\n`);
    const host = url.href;
    const withPassword = url.href.replace(`${name}@`, `${name}:\${APP_DB_URL_PW}@`);
    const ways: [string, Record<string, unknown>, Record<string, string>][] = [
      ['env', { url: host, password: '${APP_DB_LOGIN}' }, { APP_DB_LOGIN: PASSWORD }],
      ['file', { url: host, password: `\${file:${file}}` }, {}],
      ['NIGHTSHIFT_SOURCE_PASSWORD', { url: host }, { NIGHTSHIFT_SOURCE_PASSWORD: PASSWORD }],
      ['URL-encoded in the URL', { url: withPassword }, { APP_DB_URL_PW: encodeURIComponent(PASSWORD) }],
      [
        'keys only',
        {
          host: url.hostname,
          port: Number(url.port),
          database: url.pathname.slice(1),
          user: name,
          password: `\${file:${file}}`,
        },
        {},
      ],
    ];
    const outputs: string[] = [];
    for (const [way, source, env] of ways) {
      const job = await jobFor(name, source);
      const r = await cli('run', job, env, ['--log-level', 'debug']);
      expect(r.code, `${way}: ${r.stdout.slice(-1500)}`).toBe(0);
      expect(r.summary).toMatchObject({ status: 'succeeded', rows_loaded: 2000 });
      outputs.push(...outputsOf(r, job), ...jsonFiles(join(job.dir, 'stage')));
      for (const command of ['config', 'check', 'plan', 'whoami', 'iam']) {
        const c = await cli(command, job, env);
        expect(c.code, `${way} ${command}: ${c.stdout}${c.stderr}`).toBe(0);
        outputs.push(c.stdout, c.stderr);
      }
      console.log(`password by ${way}: run exit ${r.code}, config/check/plan/whoami/iam exit 0`);
    }

    // Failure paths: a permission error after connecting (exit 5), a wrong password (exit 5).
    const denied = await jobFor(name, { url: host, password: '${APP_DB_LOGIN}' });
    await sql(dbUrl, `REVOKE SELECT ON ${denied.table} FROM ${name}`);
    const env = { APP_DB_LOGIN: PASSWORD };
    let r = await cli('run', denied, env);
    expect(r.code).toBe(5);
    expect(r.summary?.error).toMatchObject({ hint: expect.stringContaining('nightshift iam') });
    outputs.push(...outputsOf(r, denied));
    console.log(`no SELECT: exit ${r.code}: ${errorOf(r)}`);
    r = await cli('check', denied, env);
    expect(r.code).toBe(5);
    outputs.push(r.stdout, r.stderr);
    r = await cli('run', denied, { APP_DB_LOGIN: `${PASSWORD}x` });
    expect(r.code).toBe(5);
    expect(r.summary?.error).toMatchObject({ hint: expect.stringContaining('source.password') });
    outputs.push(...outputsOf(r, denied));
    console.log(`wrong password: exit ${r.code}: ${errorOf(r)}`);

    const all = outputs.join('\n');
    expect(all.length).toBeGreaterThan(20_000);
    expect(pieces(all, PASSWORD)).toEqual([]);
  });

  it('written unencoded into the URL (read from a file): exit 2, the fix, and no piece of it', async () => {
    const { name, url } = await role(PASSWORD);
    const file = join(tmp.dir, 'pg-url');
    writeFileSync(file, url.href.replace(`${name}@`, `${name}:${PASSWORD}@`));
    const job = await jobFor(name, { url: `\${file:${file}}` });
    const outputs: string[] = [];
    for (const command of ['run', 'config', 'check', 'plan', 'whoami']) {
      const r = await cli(command, job, {});
      expect(r.code, `${command}: ${r.stdout}${r.stderr}`).toBe(2);
      expect(r.stdout + r.stderr).toContain('URL-encode the password, or set source.password');
      outputs.push(r.stdout, r.stderr);
    }
    console.log(`unencoded in the URL: exit 2: ${outputs[1].trim().split('\n').slice(0, 2).join(' ')}`);
    expect(pieces(outputs.join('\n'), PASSWORD)).toEqual([]);
  });
});

describe('short and URL-unsafe secrets never corrupt output', () => {
  for (const secret of ['0000', 'test', 'a', 'p@ss/w:rd%1']) {
    it(`source password ${JSON.stringify(secret)}, AWS_SECRET_ACCESS_KEY=test: summaries and manifests parse, names and paths intact`, async () => {
      const { name, url } = await role(secret);
      const job = await jobFor(
        name,
        { url: url.href, password: secret },
        { rows: 10_000, name: 'attest', stageDir: 'latest-results' },
      );
      const env = { AWS_SECRET_ACCESS_KEY: 'test' };
      const r = await cli('run', job, env);
      expect(r.code, r.stdout.slice(-1500)).toBe(0);
      const lines = jsonLines(r.stdout); // throws on a line that is not JSON
      const stage = pathToFileURL(join(job.dir, 'latest-results')).href;
      for (const summary of [r.summary, JSON.parse(readFileSync(job.termination, 'utf8'))]) {
        expect(summary).toMatchObject({ job: 'attest', rows_source: 10_000, rows_loaded: 10_000, stage });
      }
      const manifests = readdirSync(join(job.dir, 'latest-results', 'attest', 'runs'));
      const manifest = JSON.parse(
        readFileSync(join(job.dir, 'latest-results', 'attest', 'runs', manifests[0]), 'utf8'),
      );
      expect(manifest).toMatchObject({ job: 'attest', rows: 10_000, stage });
      expect(manifest.files[0].key).toMatch(
        /attest\/data\/dt=\d{4}-\d{2}-\d{2}\/run=.*\/part-00000\.parquet$/,
      );
      expect(JSON.stringify(manifest)).not.toContain('[REDACTED]');
      const warnings = lines.filter(
        (l) => l.severity === 'WARNING' && String(l.msg).includes('secrets shorter'),
      );
      if (secret.length < 8) {
        expect(warnings.map((w) => w.msg).join()).toContain('source.password');
        expect(warnings.map((w) => w.msg).join()).toContain('AWS_SECRET_ACCESS_KEY');
      }
      const config = await cli('config', job, env);
      expect(JSON.parse(config.stdout).config.source.password).toBe('[REDACTED]');
      const plan = await cli('plan', job, env);
      expect(JSON.parse(plan.stdout)).toMatchObject({ stage });
      const check = await cli('check', job, env);
      expect(check.code, check.stdout + check.stderr).toBe(0);
      expect(check.stdout).toContain('attest');
      if (secret.length >= 8) {
        const everything = [r.stdout, r.stderr, config.stdout, plan.stdout, check.stdout].join('\n');
        expect(pieces(everything, secret)).toEqual([]);
      }
      console.log(
        `secret ${JSON.stringify(secret)}: run exit ${r.code}, check exit ${check.code}; summary and manifest parse`,
      );
    });
  }
});
