/**
 * Reading a PostgreSQL connection URL (`postgres://user:password@host:port/db?param=value`) the
 * way libpq does, strictly: a URL that cannot be read unambiguously is refused, never guessed at.
 * An unencoded `/`, `#` or `?` in a password makes a URL that parses into the wrong host, so any
 * `@` after the host, a fragment or a broken `%` escape refuses it. Nothing a parse error says
 * quotes the URL: its password could be any part of it.
 */

/** The parts of a connection URL; absent parts were not in it. */
export interface PgUrlParts {
  /** Host name, IP address, or a Unix socket directory (`?host=/var/run/postgresql`). */
  readonly host?: string;
  readonly port?: number;
  readonly database?: string;
  readonly user?: string;
  /** The password, percent-decoded. */
  readonly password?: string;
  /** The password exactly as written in the URL, for hiding it where it stands. */
  readonly rawPassword?: string;
  /** The libpq query parameters other than the ones above, percent-decoded. */
  readonly params: Readonly<Record<string, string>>;
}

/** A URL that cannot be read. The message names what is wrong and never quotes the URL. */
export class PgUrlError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PgUrlError';
  }
}

/** The fix for a URL that does not parse: the usual cause is a password with `@ / : % # ?`. */
export const URL_FIX = 'URL-encode the password, or set source.password';

/** libpq parameters nightshift honours (see docs: time limits, secrets). */
export const HONOURED_PARAMS = [
  'host',
  'port',
  'dbname',
  'user',
  'password',
  'connect_timeout',
  'application_name',
  'fallback_application_name',
  'options',
  'sslmode',
  'sslrootcert',
  'sslcert',
  'sslkey',
  'keepalives',
  'keepalives_idle',
  'client_encoding',
] as const;

/** libpq parameters that exist but have no equivalent here: refused by name, never ignored. */
const REFUSED_PARAMS = new Set([
  'hostaddr',
  'passfile',
  'require_auth',
  'channel_binding',
  'keepalives_interval',
  'keepalives_count',
  'tcp_user_timeout',
  'replication',
  'gssencmode',
  'requiressl',
  'sslnegotiation',
  'sslcompression',
  'sslpassword',
  'sslcertmode',
  'sslcrl',
  'sslcrldir',
  'sslsni',
  'sslkeylogfile',
  'requirepeer',
  'ssl_min_protocol_version',
  'ssl_max_protocol_version',
  'krbsrvname',
  'gsslib',
  'gssdelegation',
  'service',
  'target_session_attrs',
  'load_balance_hosts',
  'ssl',
]);

const SSL_MODES = ['disable', 'prefer', 'require', 'verify-ca', 'verify-full'];

function unreadable(why: string): PgUrlError {
  return new PgUrlError(`cannot be read as a connection URL (${why}): ${URL_FIX}`);
}

function decode(text: string, what: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw unreadable(`a "%" in ${what} is not followed by two hex digits`);
  }
}

/** Parses a `postgres://` or `postgresql://` URL. Throws PgUrlError. */
export function parsePgUrl(url: string): PgUrlParts {
  const scheme = /^postgres(?:ql)?:\/\//i.exec(url);
  if (!scheme) throw new PgUrlError('expected a postgres:// connection URL');
  if (url.includes('#')) throw unreadable('it holds a "#"');
  const rest = url.slice(scheme[0].length);
  const authorityEnd = rest.search(/[/?]/);
  const authority = authorityEnd < 0 ? rest : rest.slice(0, authorityEnd);
  const tail = authorityEnd < 0 ? '' : rest.slice(authorityEnd);
  if (tail.includes('@')) throw unreadable('an "@" follows the host');
  const at = authority.lastIndexOf('@');
  const userinfo = at < 0 ? undefined : authority.slice(0, at);
  const hostspec = at < 0 ? authority : authority.slice(at + 1);
  const parts: {
    -readonly [K in keyof PgUrlParts]: PgUrlParts[K];
  } = { params: {} };
  if (userinfo !== undefined) {
    const colon = userinfo.indexOf(':');
    const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
    if (user) parts.user = decode(user, 'the user name');
    if (colon >= 0) {
      parts.rawPassword = userinfo.slice(colon + 1);
      parts.password = decode(parts.rawPassword, 'the password');
    }
  }
  Object.assign(parts, parseHostspec(hostspec));
  const queryAt = tail.indexOf('?');
  const path = queryAt < 0 ? tail : tail.slice(0, queryAt);
  if (path.length > 1) parts.database = decode(path.slice(1), 'the database name');
  if (queryAt >= 0) applyParams(parts, tail.slice(queryAt + 1));
  return parts;
}

function parseHostspec(hostspec: string): { host?: string; port?: number } {
  if (hostspec.includes(',')) throw new PgUrlError('names several hosts; give one host');
  const bracket = /^\[([^\]]*)\](?::(.*))?$/.exec(hostspec);
  const [host, port] = bracket
    ? [bracket[1], bracket[2]]
    : hostspec.includes(':')
      ? [hostspec.slice(0, hostspec.lastIndexOf(':')), hostspec.slice(hostspec.lastIndexOf(':') + 1)]
      : [hostspec, undefined];
  if (host.includes(':') && !bracket) throw unreadable('more than one ":" after the user name');
  const out: { host?: string; port?: number } = {};
  if (host) out.host = decode(host, 'the host');
  if (port) out.port = parsePort(port);
  return out;
}

function parsePort(text: string): number {
  const port = /^\d{1,5}$/.test(text) ? Number(text) : Number.NaN;
  if (!(port >= 1 && port <= 65535)) throw unreadable('the port is not a number from 1 to 65535');
  return port;
}

function applyParams(parts: { -readonly [K in keyof PgUrlParts]: PgUrlParts[K] }, query: string): void {
  const params: Record<string, string> = {};
  for (const pair of query.split('&')) {
    if (!pair) continue;
    const eq = pair.indexOf('=');
    const name = decode(eq < 0 ? pair : pair.slice(0, eq), 'a parameter name');
    const value = decode(eq < 0 ? '' : pair.slice(eq + 1), 'a parameter value');
    checkParam(name, value);
    if (name === 'host') parts.host = value;
    else if (name === 'port') parts.port = parsePort(value);
    else if (name === 'dbname') parts.database = value;
    else if (name === 'user') parts.user = value;
    else if (name === 'password') {
      parts.password = value;
      parts.rawPassword = value;
    } else params[name] = value;
  }
  parts.params = params;
}

/** Refuses parameters nightshift cannot honour, and values it cannot honour, by name. */
function checkParam(name: string, value: string): void {
  const honoured = (HONOURED_PARAMS as readonly string[]).includes(name);
  if (!honoured) {
    // A name that is not a plain word is likely a piece of a misread password: never print it.
    if (!/^[a-z_]{1,40}$/.test(name)) throw unreadable('a query parameter name is not a libpq parameter');
    const why = REFUSED_PARAMS.has(name)
      ? name === 'ssl'
        ? 'use sslmode=require (or verify-full) instead'
        : 'nightshift cannot honour it'
      : 'it is not a libpq connection parameter';
    throw new PgUrlError(
      `the URL parameter ${name} is refused: ${why}; the parameters honoured are ${HONOURED_PARAMS.join(', ')}`,
    );
  }
  if (name === 'sslmode' && !SSL_MODES.includes(value)) {
    throw new PgUrlError(
      `sslmode=${value.slice(0, 20)} is refused: use one of ${SSL_MODES.join(', ')} (allow is not supported)`,
    );
  }
  if (name === 'client_encoding' && !/^(utf-?8|unicode)$/i.test(value)) {
    throw new PgUrlError('client_encoding is refused: nightshift reads UTF8 only; drop the parameter');
  }
  if ((name === 'connect_timeout' || name === 'keepalives_idle') && !/^\d+$/.test(value)) {
    throw new PgUrlError(`${name} must be a whole number of seconds`);
  }
  if (name === 'keepalives' && value !== '0' && value !== '1') {
    throw new PgUrlError('keepalives must be 0 or 1');
  }
}

/**
 * The URL with its password replaced, for printing: by position, so a password of any length
 * or content is hidden whole. A URL that cannot be read is hidden entirely.
 */
export function hideUrlPassword(url: string, mask: string): string {
  let parts: PgUrlParts;
  try {
    parts = parsePgUrl(url);
  } catch {
    return mask;
  }
  let out = url;
  if (parts.rawPassword !== undefined && parts.rawPassword !== '') {
    const scheme = /^postgres(?:ql)?:\/\//i.exec(out)?.[0] ?? '';
    const rest = out.slice(scheme.length);
    const end = rest.search(/[/?]/);
    const authority = end < 0 ? rest : rest.slice(0, end);
    const at = authority.lastIndexOf('@');
    if (at >= 0) {
      const colon = authority.indexOf(':');
      if (colon >= 0 && colon < at) {
        out = `${scheme}${authority.slice(0, colon + 1)}${mask}${authority.slice(at)}${end < 0 ? '' : rest.slice(end)}`;
      }
    }
    out = out.replace(/([?&]password=)[^&]*/g, `$1${mask}`);
  }
  return out;
}
