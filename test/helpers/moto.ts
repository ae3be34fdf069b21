/**
 * moto_server (Python moto 5.2) as a second, third-party S3 for the tests: it enforces
 * `If-None-Match: *` and `If-Match` on PutObject and CompleteMultipartUpload itself, and answers
 * as it believes S3 does, which our own proxy (test/helpers/s3-proxy.ts) is checked against.
 * Started by the tests on a free port of 127.0.0.1 and stopped after; absent, its tests are
 * skipped with a notice (test/helpers/tools.ts).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { childOutcome } from './env.js';
import { LIMITS, until } from './time.js';

/** What the SDK signs with; moto accepts any key unless told to enforce IAM. */
export const MOTO_KEYS = {
  accessKeyId: 'AKIAMOTOTEST00000001',
  secretAccessKey: 'moto-test-secret-not-a-real-one',
} as const;
export const MOTO_REGION = 'us-east-1';

/** A free TCP port of 127.0.0.1 (free when asked: the server binding it next may still lose a race). */
async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** One HTTP request to moto; resolves with the status, or undefined when nothing answers. */
function status(url: string, method = 'GET'): Promise<number | undefined> {
  return new Promise((resolve) => {
    const req = request(url, { method }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('error', () => resolve(undefined));
    req.end();
  });
}

/**
 * moto_server's own app, served one request at a time. moto_server serves each request on its own
 * thread (werkzeug's threaded=True), and moto 5.2's PutObject reads the object to check If-Match
 * or If-None-Match and then writes it with no lock between (moto/s3/responses.py): two
 * conditional writes at once can both pass, which S3 never allows. In turn they are checked and
 * written as S3 does, atomically, so the race cases test our client and not moto's threads.
 * Without threads werkzeug answers HTTP/1.0 and closes each connection, so none waits on another.
 */
const SERIAL_MOTO = [
  'import sys',
  'from werkzeug.serving import run_simple',
  'from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app',
  'run_simple(sys.argv[1], int(sys.argv[2]), DomainDispatcherApplication(create_backend_app), threaded=False)',
].join('\n');

export class MotoServer {
  private constructor(
    /** `http://127.0.0.1:PORT`. */
    readonly url: string,
    private readonly child: ChildProcess,
    private readonly exited: Promise<unknown>,
  ) {}

  /** Starts moto_server's app on a free port of 127.0.0.1, one request at a time, and waits until it answers. */
  static async start(env: NodeJS.ProcessEnv = {}): Promise<MotoServer> {
    for (let attempt = 1; ; attempt++) {
      const port = await freePort();
      const child = spawn('python3', ['-c', SERIAL_MOTO, '127.0.0.1', String(port)], {
        env: { ...process.env, ...env },
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      const outcome = childOutcome(child);
      let ended = false;
      void outcome.then(() => {
        ended = true;
      });
      const url = `http://127.0.0.1:${port}`;
      try {
        await until(async () => ended || (await status(`${url}/moto-api/`)) !== undefined, {
          what: `moto_server on port ${port} to answer`,
          timeoutMs: LIMITS.startup,
        });
      } catch (err) {
        child.kill('SIGKILL');
        throw err;
      }
      if (!ended) return new MotoServer(url, child, outcome);
      const r = await outcome;
      // Another process took the port between our look and moto's bind: take another one.
      if (attempt >= 3 || !/address already in use/i.test(r.stderr))
        throw new Error(`moto_server exited with ${r.code ?? r.signal}: ${r.stderr.slice(-2000)}`);
    }
  }

  /** Forgets every bucket and object (moto's own reset endpoint). */
  async reset(): Promise<void> {
    await status(`${this.url}/moto-api/reset`, 'POST');
  }

  /** Stops the server and waits for it to exit. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGTERM');
    await this.exited;
  }
}
