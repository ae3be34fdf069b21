/**
 * Where the source connects and how long it waits: the connection URL and the `source.host`,
 * `port`, `database`, `user`, `password` keys merged (the keys win), the libpq URL parameters
 * nightshift honours turned into `pg` settings, and a deadline over the whole connect (TCP, TLS,
 * authentication, session setup), so a host that accepts and never answers fails in
 * `connect_timeout` with exit 75, not when the pod's deadline kills it.
 */
import { readFileSync } from 'node:fs';
import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import { PgUrlError, type PgUrlParts, parsePgUrl } from '../config/pg-url.js';
import type { SourceConfig } from '../config/schema.js';
import { configError, type NightshiftError, toNightshiftError, transientError } from '../errors.js';
import { pgSocket } from './copy-out.js';

/** libpq's and PostgreSQL's own default port. */
const DEFAULT_PORT = 5432;
const DEFAULT_CONNECT_TIMEOUT_MS = 30_000;
/** Idle time before the first TCP keepalive probe; the kernel's settings pace the rest. */
const DEFAULT_KEEPALIVE_IDLE_MS = 30_000;

/** Everything a connection needs, resolved from the configuration. */
export interface PgTarget {
  /** Host, IP or socket directory; undefined leaves it to `pg` (PGHOST, else localhost). */
  readonly host: string | undefined;
  readonly port: number | undefined;
  readonly database: string | undefined;
  readonly user: string | undefined;
  /** Undefined leaves it to `pg` (PGPASSWORD). */
  readonly password: string | undefined;
  /** libpq's sslmode, when the URL gives one; otherwise `pg` reads PGSSLMODE. */
  readonly sslMode: string | undefined;
  /** The TLS settings of the first attempt (`prefer` falls back to none). */
  readonly ssl: ConnectionOptions | false | undefined;
  /** The startup `options` (`-c search_path=app`). */
  readonly options: string | undefined;
  readonly applicationName: string;
  /** 0: no limit. */
  readonly connectTimeoutMs: number;
  /** undefined: no keepalive. */
  readonly keepAliveIdleMs: number | undefined;
}

/** The connection parts of the URL; a URL that does not parse is a config error that quotes none of it. */
function urlParts(url: string | undefined): PgUrlParts {
  if (!url) return { params: {} };
  try {
    return parsePgUrl(url);
  } catch (err) {
    if (err instanceof PgUrlError) throw configError(`source.url: ${err.message}`);
    throw err;
  }
}

/** Merges the URL with the `source.*` keys; the keys win. */
export function resolveTarget(config: SourceConfig): PgTarget {
  const url = urlParts(config.url);
  const p = url.params;
  const urlTimeout = p.connect_timeout === undefined ? undefined : Number(p.connect_timeout);
  return {
    host: config.host ?? url.host,
    port: config.port ?? url.port,
    database: config.database ?? url.database,
    user: config.user ?? url.user,
    password: config.password ?? url.password,
    sslMode: p.sslmode,
    ssl: sslOptions(p),
    options: p.options,
    applicationName:
      config.application_name ?? p.application_name ?? p.fallback_application_name ?? 'nightshift',
    connectTimeoutMs:
      config.connect_timeout ??
      // libpq reads a connect_timeout below 2 s as 2 s, and 0 as no limit.
      (urlTimeout === undefined
        ? DEFAULT_CONNECT_TIMEOUT_MS
        : urlTimeout === 0
          ? 0
          : Math.max(2, urlTimeout) * 1000),
    keepAliveIdleMs:
      p.keepalives === '0'
        ? undefined
        : p.keepalives_idle
          ? Math.max(1, Number(p.keepalives_idle)) * 1000
          : DEFAULT_KEEPALIVE_IDLE_MS,
  };
}

/** libpq's sslmode and certificate files, as Node TLS options. */
function sslOptions(p: Readonly<Record<string, string>>): ConnectionOptions | false | undefined {
  const mode = p.sslmode;
  if (mode === undefined && !p.sslrootcert && !p.sslcert) return undefined;
  if (mode === 'disable') return false;
  const files: ConnectionOptions = {};
  if (p.sslrootcert && p.sslrootcert !== 'system') files.ca = readCert(p.sslrootcert, 'sslrootcert');
  if (p.sslcert) files.cert = readCert(p.sslcert, 'sslcert');
  if (p.sslkey) files.key = readCert(p.sslkey, 'sslkey');
  // libpq: require with a root certificate verifies the chain, as verify-ca does.
  const effective = mode === 'require' && files.ca ? 'verify-ca' : (mode ?? 'prefer');
  switch (effective) {
    case 'verify-full':
      return { ...files, rejectUnauthorized: true };
    case 'verify-ca':
      return { ...files, rejectUnauthorized: true, checkServerIdentity: () => undefined };
    default:
      // prefer, require: encrypted, the certificate not checked (libpq's meaning).
      return { ...files, rejectUnauthorized: false };
  }
}

function readCert(path: string, param: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw configError(`source.url: cannot read ${param} ${path}: ${(err as Error).message}`, {
      cause: err,
      hint: 'mount the certificate at that path, or change the URL parameter',
    });
  }
}

/** `host:port`, for messages. */
export function targetAddress(target: PgTarget): string {
  const host = target.host ?? 'localhost';
  return host.startsWith('/')
    ? `${host}/.s.PGSQL.${target.port ?? DEFAULT_PORT}`
    : `${host}:${target.port ?? DEFAULT_PORT}`;
}

/** The parts of the connection that name things (never the password). */
export function describeSource(config: SourceConfig): { user: string; host: string; database: string } {
  let target: PgTarget;
  try {
    target = resolveTarget(config);
  } catch {
    return { user: 'the connecting user', host: 'the database host', database: 'the database' };
  }
  return {
    user: target.user || 'the connecting user',
    host: targetAddress(target),
    database: target.database || target.user || 'postgres',
  };
}

/** pg's error when the server answers the TLS request with "no". */
function serverHasNoTls(err: unknown): boolean {
  return /does not support SSL/i.test((err as Error | undefined)?.message ?? '');
}

/** Node's codes for a certificate that does not verify (OpenSSL's X509 errors, a wrong host name). */
const TLS_VERIFY_CODES =
  /^(ERR_TLS_CERT_ALTNAME_INVALID|UNABLE_TO_|SELF_SIGNED_CERT|DEPTH_ZERO_SELF_SIGNED_CERT|CERT_)/;

/** What to check when the network, not PostgreSQL, is in the way. */
function networkHint(address: string): string {
  return `check that ${address} is the database and is reachable from where nightshift runs: a NetworkPolicy without egress to it, a security group or firewall that drops the packets, or a wrong host or port all look like this`;
}

/**
 * Opens a connection and runs `prepare` (the session settings) on it, all within the connect
 * timeout. sslmode=prefer tries TLS and falls back to a plain connection when the server has
 * no TLS, as libpq does.
 */
export async function openConnection(
  config: SourceConfig,
  purpose: string,
  prepare: (client: pg.Client) => Promise<void>,
): Promise<pg.Client> {
  const target = resolveTarget(config);
  const deadline = target.connectTimeoutMs ? Date.now() + target.connectTimeoutMs : undefined;
  try {
    return await attempt(config, target, purpose, target.ssl, deadline, prepare);
  } catch (err) {
    const plainFallback = target.sslMode === 'prefer' && serverHasNoTls((err as Error).cause);
    if (!plainFallback) throw err;
    return attempt(config, target, purpose, false, deadline, prepare);
  }
}

async function attempt(
  config: SourceConfig,
  target: PgTarget,
  purpose: string,
  ssl: PgTarget['ssl'],
  deadline: number | undefined,
  prepare: (client: pg.Client) => Promise<void>,
): Promise<pg.Client> {
  const client = new pg.Client({
    host: target.host,
    port: target.port,
    database: target.database,
    user: target.user,
    password: target.password,
    ...(ssl === undefined ? {} : { ssl }),
    options: target.options,
    application_name: `${target.applicationName} (${purpose})`,
    statement_timeout: config.statement_timeout || undefined,
    keepAlive: target.keepAliveIdleMs !== undefined,
    keepAliveInitialDelayMillis: target.keepAliveIdleMs,
    stream: pgSocket,
  });
  // An idle connection that dies must not crash the process: errors surface on the next query.
  client.on('error', () => undefined);
  let timedOut = false;
  const timer =
    deadline === undefined
      ? undefined
      : setTimeout(
          () => {
            timedOut = true;
            destroySocket(client);
          },
          Math.max(0, deadline - Date.now()),
        );
  try {
    await client.connect();
    await prepare(client);
    return client;
  } catch (err) {
    await client.end().catch(() => undefined);
    throw connectError(err, target, timedOut);
  } finally {
    clearTimeout(timer);
  }
}

function destroySocket(client: pg.Client): void {
  const connection = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection;
  connection?.stream?.destroy();
}

function connectError(err: unknown, target: PgTarget, timedOut: boolean): NightshiftError {
  const address = targetAddress(target);
  const where = `PostgreSQL at ${address}${target.database ? `/${target.database}` : ''}`;
  if (timedOut) {
    return transientError(
      `cannot connect to ${where}: no answer within ${target.connectTimeoutMs / 1000} s (source.connect_timeout)`,
      { cause: err, hint: networkHint(address) },
    );
  }
  if (serverHasNoTls(err)) {
    return configError(
      `cannot connect to ${where}: the server does not support TLS, and sslmode ${target.sslMode ?? '(PGSSLMODE)'} requires it`,
      {
        cause: err,
        hint: 'turn on ssl in the server, or use sslmode=prefer (TLS when the server offers it) or disable',
      },
    );
  }
  const code = (err as { code?: unknown })?.code;
  if (typeof code === 'string' && TLS_VERIFY_CODES.test(code)) {
    return configError(
      `cannot connect to ${where}: its TLS certificate does not verify: ${(err as Error).message}`,
      {
        cause: err,
        hint: `give the server's CA as sslrootcert=/path/ca.crt in source.url (verify-full also checks that ${target.host ?? 'the host'} is a name in the certificate), or use sslmode=require to encrypt without checking`,
      },
    );
  }
  const e = toNightshiftError(err);
  e.message = `cannot connect to ${where}: ${e.message}`;
  if (e.code === 'transient' && !e.hint) {
    return transientError(e.message, { cause: e.cause ?? err, hint: networkHint(address) });
  }
  return e;
}

/** The error for a COPY that received nothing for `stall_timeout`. */
export function stallError(config: SourceConfig, cause: unknown): NightshiftError {
  const address = targetAddress(resolveTarget(config));
  return transientError(
    `the COPY from PostgreSQL at ${address} received no bytes for ${config.stall_timeout / 1000} s (source.stall_timeout)`,
    {
      cause,
      hint: `the connection went silent mid-stream: ${networkHint(address)}. A server that scans a large table for long between matching rows looks the same: then raise source.stall_timeout`,
    },
  );
}
