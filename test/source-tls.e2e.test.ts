/**
 * libpq's sslmode in source.url is honoured against a real PostgreSQL with TLS on (a server of
 * its own, with a certificate from a throwaway CA) and one with TLS off (the shared test server):
 * prefer falls back, require encrypts without checking, verify-ca and verify-full check against
 * sslrootcert, and a certificate that does not verify is a config error (exit 2), not a retry.
 */
import { execFileSync } from 'node:child_process';
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { SourceConfig } from '../src/config/schema.js';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../src/demo/embedded.js';
import type { NightshiftError } from '../src/errors.js';
import { openConnection } from '../src/source/connection.js';
import { freshDatabase } from './helpers/env.js';

const dir = mkdtempSync(join(tmpdir(), 'ns-tls-'));
let server: EmbeddedPostgres;
let plainUrl: string;

/** A CA and a server certificate for localhost and 127.0.0.1, readable by the server's OS user. */
function certificates(): { cert: string; key: string; ca: string } {
  chmodSync(dir, 0o755);
  const path = (name: string) => join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'pipe' });
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=nightshift-test-ca',
    '-keyout',
    path('ca.key'),
    '-out',
    path('ca.crt'),
  );
  openssl(
    'req',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-subj',
    '/CN=localhost',
    '-keyout',
    path('server.key'),
    '-out',
    path('server.csr'),
  );
  writeFileSync(path('ext.cnf'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(
    'x509',
    '-req',
    '-in',
    path('server.csr'),
    '-CA',
    path('ca.crt'),
    '-CAkey',
    path('ca.key'),
    '-CAcreateserial',
    '-days',
    '2',
    '-extfile',
    path('ext.cnf'),
    '-out',
    path('server.crt'),
  );
  // As root the server runs as the postgres OS user, which must own its key.
  if (process.getuid?.() === 0) {
    const ids = execFileSync('id', ['postgres']).toString();
    const uid = Number(/uid=(\d+)/.exec(ids)?.[1]);
    const gid = Number(/gid=(\d+)/.exec(ids)?.[1]);
    for (const f of ['server.key', 'server.crt']) chownSync(path(f), uid, gid);
  }
  chmodSync(path('server.key'), 0o600);
  return { cert: path('server.crt'), key: path('server.key'), ca: path('ca.crt') };
}

let ca: string;

beforeAll(async () => {
  const files = certificates();
  ca = files.ca;
  server = await startEmbeddedPostgres({
    settings: { ssl: 'on', ssl_cert_file: files.cert, ssl_key_file: files.key },
  });
  plainUrl = await freshDatabase();
});
afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

function source(url: string): SourceConfig {
  return { url, stall_timeout: 60_000, statement_timeout: 0 } as SourceConfig;
}

/** Whether the session is encrypted, or the error it failed with. */
async function connectWith(
  base: string,
  query: string,
  host = '127.0.0.1',
): Promise<boolean | NightshiftError> {
  const url = new URL(base);
  url.hostname = host;
  try {
    const client = await openConnection(source(`${url.href}?${query}`), 'tls test', async () => undefined);
    try {
      const r = await client.query<{ ssl: boolean }>(
        'SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()',
      );
      return r.rows[0].ssl;
    } finally {
      await client.end();
    }
  } catch (err) {
    return err as NightshiftError;
  }
}

describe('sslmode', () => {
  it('against a server with TLS: every mode does what libpq does', async () => {
    const base = server.url;
    expect(await connectWith(base, 'sslmode=disable')).toBe(false);
    expect(await connectWith(base, 'sslmode=prefer')).toBe(true);
    expect(await connectWith(base, 'sslmode=require')).toBe(true);
    for (const host of ['127.0.0.1', 'localhost']) {
      expect(await connectWith(base, `sslmode=verify-ca&sslrootcert=${ca}`, host)).toBe(true);
      expect(await connectWith(base, `sslmode=verify-full&sslrootcert=${ca}`, host)).toBe(true);
    }
    const unverified = await connectWith(base, 'sslmode=verify-full');
    expect(unverified).toMatchObject({
      code: 'config',
      message: expect.stringContaining('TLS certificate does not verify'),
    });
    console.log(
      `verify-full without the CA: exit ${(unverified as NightshiftError).exitCode}: ${(unverified as NightshiftError).message}`,
    );
  });

  it('against a server without TLS: prefer falls back, require is a config error', async () => {
    expect(await connectWith(plainUrl, 'sslmode=prefer')).toBe(false);
    const refused = await connectWith(plainUrl, 'sslmode=require');
    expect(refused).toMatchObject({
      code: 'config',
      message: expect.stringContaining('does not support TLS'),
    });
    console.log(
      `require without TLS: exit ${(refused as NightshiftError).exitCode}: ${(refused as NightshiftError).message}`,
    );
  });
});
