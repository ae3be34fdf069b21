/**
 * Secrets in the configuration: connection URLs read strictly (a misread URL is refused and
 * quoted nowhere), secrets registered from every place they come from, and redaction that
 * changes only the inside of string values, so output of any secret still parses.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadConfig, redactedConfig } from '../src/config/load.js';
import { hideUrlPassword, parsePgUrl } from '../src/config/pg-url.js';
import { REDACTED, Redactor } from '../src/config/redact.js';
import type { NightshiftError } from '../src/errors.js';
import { resolveTarget } from '../src/source/connection.js';
import { tempDir } from './helpers/env.js';

const tmp = tempDir('ns-redact-');
afterAll(() => tmp.cleanup());

const PASSWORD = 'K7@/:%#?&=+ Zöñ9q';

/** Every 4-character piece of `secret` that occurs in `text`. */
function pieces(text: string, secret: string): string[] {
  const found: string[] = [];
  for (let i = 0; i + 4 <= secret.length; i++) {
    const piece = secret.slice(i, i + 4);
    if (text.includes(piece)) found.push(piece);
  }
  return found;
}

function configWith(source: Record<string, unknown>, env: Record<string, string> = {}) {
  const path = join(tmp.dir, `c${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(
    path,
    JSON.stringify({
      job: 'attest',
      source: { table: 't', cursor: 'ts', key: ['id'], ...source },
      stage: { url: 'file:///tmp/latest-results' },
      warehouse: { table: 'a.t', duckdb: { path: '/tmp/w.duckdb' } },
    }),
  );
  const redactor = new Redactor();
  const loaded = loadConfig({ path, env, redactor });
  return { ...loaded, redactor };
}

function loadError(source: Record<string, unknown>, env: Record<string, string> = {}): NightshiftError {
  try {
    configWith(source, env);
  } catch (err) {
    return err as NightshiftError;
  }
  throw new Error('expected a config error');
}

describe('connection URLs', () => {
  it.each([
    ['an unencoded / and @', 'postgres://exporter:p@ss/w:rd%1@127.0.0.1:5432/db'],
    ['an unencoded ?', 'postgres://exporter:pa?ss@db/app'],
    ['an unencoded #', 'postgres://exporter:1234#ss@db/app'],
    ['a bare %', 'postgres://exporter:ab%zz@db/app'],
  ])('%s is refused with the fix and no part of the URL', (_, url) => {
    const err = loadError({ url });
    expect(err.code).toBe('config');
    expect(err.message).toContain('URL-encode the password, or set source.password');
    const password = url.slice(url.indexOf(':', 12) + 1, url.lastIndexOf('@'));
    expect(pieces(err.message + (err.hint ?? ''), password)).toEqual([]);
  });

  it('reads an encoded password and the libpq parameters; the source keys win', () => {
    const url = `postgres://exporter:${encodeURIComponent(PASSWORD)}@db.internal:6432/app?sslmode=require&connect_timeout=7&application_name=etl&options=-c%20search_path%3Dapp`;
    expect(parsePgUrl(url)).toMatchObject({
      user: 'exporter',
      password: PASSWORD,
      host: 'db.internal',
      port: 6432,
    });
    const { config } = configWith({ url, host: 'other', password: 'from-the-key' });
    const target = resolveTarget(config.source);
    expect(target).toMatchObject({
      host: 'other',
      port: 6432,
      database: 'app',
      user: 'exporter',
      password: 'from-the-key',
      sslMode: 'require',
      options: '-c search_path=app',
      applicationName: 'etl',
      connectTimeoutMs: 7000,
    });
    expect(target.ssl).toMatchObject({ rejectUnauthorized: false });
    expect(resolveTarget({ ...config.source, connect_timeout: 1500 }).connectTimeoutMs).toBe(1500);
  });

  it('turns keepalives and keepalives_idle into TCP keepalive (30 s idle unless told)', () => {
    const at = (query: string) =>
      resolveTarget(configWith({ url: `postgres://u@h/db${query}` }).config.source).keepAliveIdleMs;
    expect(at('')).toBe(30_000);
    expect(at('?keepalives_idle=7')).toBe(7000);
    expect(at('?keepalives=0')).toBeUndefined();
  });

  it('refuses libpq parameters it cannot honour, by name', () => {
    for (const [query, expected] of [
      ['target_session_attrs=read-write', 'target_session_attrs is refused'],
      ['ssl=true', 'use sslmode=require'],
      ['sslmode=allow', 'sslmode=allow is refused'],
      ['connecttimeout=5', 'connecttimeout is refused: it is not a libpq connection parameter'],
    ]) {
      const err = loadError({ url: `postgres://u:secret-password@h/db?${query}` });
      expect(err.message).toContain(expected);
      expect(err.message).not.toContain('secret-password');
    }
  });

  it('needs a URL or a host', () => {
    expect(loadError({}).message).toContain('give source.url, or source.host');
    const { config } = configWith({ host: 'db', user: 'u', password: PASSWORD, database: 'app' });
    expect(resolveTarget(config.source)).toMatchObject({
      host: 'db',
      password: PASSWORD,
      connectTimeoutMs: 30_000,
    });
  });

  it('hides a password of any length where it stands', () => {
    expect(hideUrlPassword('postgres://u:a@h/db', REDACTED)).toBe(`postgres://u:${REDACTED}@h/db`);
    expect(hideUrlPassword('postgres://u:p@ss@h/db', REDACTED)).toBe(`postgres://u:${REDACTED}@h/db`);
    expect(hideUrlPassword('postgres://u@h/db?password=0000', REDACTED)).toBe(
      `postgres://u@h/db?password=${REDACTED}`,
    );
  });
});

describe('registering secrets', () => {
  it('every ${VAR} and ${file:} value used in a secret key, whatever the variable is called', () => {
    // In a URL the variable holds the encoded password; source.password takes it as it is.
    const file = join(tmp.dir, 'pw');
    writeFileSync(file, `${PASSWORD}-file\n`);
    const { config, redactor } = configWith(
      { url: 'postgres://u:${APP_DB_LOGIN}@h/db', password: `\${file:${file}}` },
      { APP_DB_LOGIN: encodeURIComponent(`${PASSWORD}-env`) },
    );
    const shown = JSON.stringify(redactedConfig(config, redactor));
    const text = redactor.redact(
      `${PASSWORD}-env ${encodeURIComponent(`${PASSWORD}-env`)} ${PASSWORD}-file ${encodeURIComponent(`${PASSWORD}-file`)}`,
    );
    for (const out of [shown, text]) expect(pieces(out, PASSWORD)).toEqual([]);
    expect(shown).toContain(`postgres://u:${REDACTED}@h/db`);
  });

  it('an environment override of a secret stays a string: NIGHTSHIFT_SOURCE_PASSWORD=0000', () => {
    const { config, redactor } = configWith(
      { url: 'postgres://u@h/db' },
      { NIGHTSHIFT_SOURCE_PASSWORD: '0000' },
    );
    expect(config.source.password).toBe('0000');
    expect(redactedConfig(config, redactor).source.password).toBe(REDACTED);
    expect(redactor.shortSecretWarning()).toContain('source.password');
    expect(redactor.shortSecretWarning()).not.toContain('0000');
  });
});

describe('redaction never corrupts output', () => {
  const redactor = new Redactor();
  for (const secret of ['0000', 'test', 'a', 'p@ss/w:rd%1']) redactor.add(secret, 'x');
  redactor.add(PASSWORD, 'source.password');

  it('leaves numbers, keys, names and paths alone and keeps JSON valid', () => {
    const summary = {
      msg: 'run summary',
      job: 'attest',
      rows_source: 20000,
      test: 'a',
      stage: 'file:///tmp/latest-results/attest',
      files: ['part-00000.parquet'],
      error: { message: `auth failed for p@ss/w:rd%1 and ${PASSWORD}` },
    };
    const line = `${JSON.stringify(summary)}\n`;
    const out = redactor.redactJson(line);
    const parsed = JSON.parse(out);
    expect(parsed).toEqual({ ...summary, error: { message: `auth failed for ${REDACTED} and ${REDACTED}` } });
    expect(out.endsWith('\n')).toBe(true);
    expect(JSON.stringify(redactor.redactValue(summary))).toBe(JSON.stringify(parsed));
  });

  it('redacts each string literal of text that is not one JSON value', () => {
    const out = redactor.redactJson('{"a":"p@ss/w:rd%1"} {"b":20000}');
    expect(out).toBe(`{"a":"${REDACTED}"} {"b":20000}`);
  });

  it('hides URL passwords in any string, whatever their length', () => {
    expect(redactor.redact('postgres://u:0000@h/db')).toBe(`postgres://u:${REDACTED}@h/db`);
    expect(redactor.redact('http://localhost:9000/bucket')).toBe('http://localhost:9000/bucket');
  });
});
