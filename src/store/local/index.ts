/**
 * A local directory as an object store (`file:///path`): for `docker run` backfills, the demo,
 * and tests. Writes are atomic (temp file + fsync + rename); create-if-absent uses link(2), which
 * fails when the target exists; compare-and-swap holds a short lock file around read-compare-rename.
 * A lock file is linked into place whole, so an empty or cut-short one is known dead at once.
 */
import { createHash, randomBytes } from 'node:crypto';
import { constants, createReadStream } from 'node:fs';
import {
  copyFile,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
  unlink,
  writeFile,
} from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Config } from '../../config/schema.js';
import { configError, transientError } from '../../errors.js';
import { type AccessNeeds, type Identity, localIdentity } from '../../identity/principal.js';
import {
  type ObjectInfo,
  type ObjectStore,
  PreconditionFailedError,
  type PutFileOptions,
  type PutOptions,
} from '../store.js';

/** A lock of another host older than this is left over from a killed process (the critical section takes ms). */
const STALE_LOCK_MS = 30_000;
const LOCK_WAIT_MS = 10_000;

const md5 = (data: Uint8Array) => createHash('md5').update(data).digest('hex');

/**
 * Who holds a lock file: this host and process. The newline ends it, so a lock file cut short
 * anywhere (a full disk, a crash while it was written) does not read as a shorter pid.
 */
const LOCK_OWNER = `${hostname()} ${process.pid}\n`;
const LOCK_OWNER_RE = /^(\S+) (\d+)\n$/;

type LockState = { state: 'gone' } | { state: 'dead' | 'live'; ino: number };

/**
 * Whether a lock file's holder is gone. A lock file appears whole (it is written aside and
 * linked into place), so one that is empty or cut short was never finished by a live process:
 * dead at once. A whole one is dead when its process of this host no longer runs (a SIGKILL
 * inside the critical section), or, from another host, when it is older than the critical
 * section can take.
 */
async function lockState(lock: string): Promise<LockState> {
  let handle: Awaited<ReturnType<typeof open>>;
  try {
    handle = await open(lock, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { state: 'gone' };
    throw err;
  }
  try {
    const s = await handle.stat();
    const owner = LOCK_OWNER_RE.exec(await handle.readFile('utf8'));
    if (!owner) return { state: 'dead', ino: s.ino };
    const [, host, pid] = owner;
    const live = host === hostname() ? alive(Number(pid)) : Date.now() - s.mtimeMs <= STALE_LOCK_MS;
    return { state: live ? 'live' : 'dead', ino: s.ino };
  } finally {
    await handle.close();
  }
}

/**
 * Removes a dead lock. Racers that all found it dead must not each remove whatever lock is there
 * by then: a late one would remove the fresh lock of the first and both would enter the critical
 * section (two compare-and-swaps winning). So a breaker first takes `<lock>.break` (created whole,
 * like a lock), checks again while holding it that the lock is the same dead file, and only then
 * removes it: the lock can change in between only by a breaker's hand, and there is one.
 */
async function breakStale(lock: string, deadIno: number): Promise<void> {
  const breaker = `${lock}.break`;
  if (!(await takeLock(breaker))) {
    // Another process is breaking it; a breaker killed midway leaves a break lock that dies.
    if ((await lockState(breaker)).state === 'dead') await unlink(breaker).catch(() => undefined);
    return;
  }
  try {
    const now = await lockState(lock);
    if (now.state === 'dead' && now.ino === deadIno) await unlink(lock).catch(() => undefined);
  } finally {
    await unlink(breaker).catch(() => undefined);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

export class LocalStore implements ObjectStore {
  readonly url: string;
  private readonly root: string;

  constructor(url: string) {
    if (!url.startsWith('file://')) throw configError(`stage.url: ${url} is not a file:// URL`);
    try {
      this.root = fileURLToPath(url);
    } catch (err) {
      throw configError(`stage.url: ${url} is not a valid file URL; use file:///absolute/path`, {
        cause: err,
      });
    }
    this.url = pathToFileURL(this.root).href;
  }

  private pathOf(key: string): string {
    if (key.split('/').some((part) => part === '..' || part === ''))
      throw new Error(`invalid object key ${key}`);
    return join(this.root, ...key.split('/'));
  }

  localPath(key: string): string {
    return this.pathOf(key);
  }

  urlOf(key: string): string {
    return pathToFileURL(this.pathOf(key)).href;
  }

  async putFile(key: string, path: string, options: PutFileOptions = {}): Promise<ObjectInfo> {
    options.signal?.throwIfAborted();
    const target = this.pathOf(key);
    await mkdir(dirname(target), { recursive: true });
    const temp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    let moved = false;
    if (options.consume) {
      try {
        await rename(path, temp);
        moved = true;
      } catch {
        // another filesystem: copy instead
      }
    }
    if (!moved) await copyFile(path, temp, constants.COPYFILE_FICLONE);
    try {
      await fsyncFile(temp);
      options.signal?.throwIfAborted();
      await this.commitTemp(temp, target, key, options);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    const s = await stat(target);
    return { key, size: s.size, etag: options.sha256 ?? `${s.size}-${s.mtimeMs}` };
  }

  async put(key: string, body: string | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const data = typeof body === 'string' ? Buffer.from(body) : body;
    const target = this.pathOf(key);
    await mkdir(dirname(target), { recursive: true });
    const temp = `${target}.${randomBytes(6).toString('hex')}.tmp`;
    const handle = await open(temp, 'wx', 0o644);
    try {
      await handle.writeFile(data);
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await this.commitTemp(temp, target, key, options);
    } catch (err) {
      await rm(temp, { force: true });
      throw err;
    }
    return { key, size: data.length, etag: md5(data) };
  }

  /** Moves a fully written temp file into place, honoring the write conditions. */
  private async commitTemp(temp: string, target: string, key: string, options: PutOptions): Promise<void> {
    if (options.ifNoneMatch) {
      try {
        await link(temp, target);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EEXIST')
          throw new PreconditionFailedError(key, { cause: err });
        throw err;
      }
      await unlink(temp);
    } else if (options.ifMatch !== undefined) {
      const expected = options.ifMatch;
      await this.withLock(target, async () => {
        const current = await readFile(target).catch(() => undefined);
        if (!current || md5(current) !== expected) throw new PreconditionFailedError(key);
        await rename(temp, target);
      });
    } else {
      await rename(temp, target);
    }
    await fsyncDir(dirname(target));
  }

  private async withLock<T>(target: string, fn: () => Promise<T>): Promise<T> {
    const lock = `${target}.lock`;
    const deadline = Date.now() + LOCK_WAIT_MS;
    while (!(await takeLock(lock))) {
      if (Date.now() > deadline) {
        throw transientError(`timed out waiting for the lock ${lock}`, {
          hint: `another process holds it; if none is running, delete ${lock}`,
        });
      }
      const holder = await lockState(lock);
      if (holder.state === 'gone') continue;
      if (holder.state === 'dead') {
        await breakStale(lock, holder.ino);
        await this.sweepStale(target);
        continue;
      }
      await new Promise((r) => setTimeout(r, 5 + Math.random() * 20));
    }
    try {
      return await fn();
    } finally {
      await unlink(lock).catch(() => undefined);
    }
  }

  /**
   * Removes what killed lock takers left beside the lock: their `<lock>.<hex>.tmp` owner files,
   * once older than a lock can live (a live taker links and removes its own within ms).
   */
  private async sweepStale(target: string): Promise<void> {
    const dir = dirname(target);
    const base = `${target.slice(dir.length + 1)}.lock.`;
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (!name.startsWith(base) || !name.endsWith('.tmp')) continue;
      const path = join(dir, name);
      const age = await stat(path).then(
        (st) => Date.now() - st.mtimeMs,
        () => 0,
      );
      if (age > STALE_LOCK_MS) await rm(path, { force: true });
    }
  }

  async get(key: string): Promise<{ body: Buffer; info: ObjectInfo } | undefined> {
    try {
      const body = await readFile(this.pathOf(key));
      return { body, info: { key, size: body.length, etag: md5(body) } };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const keys: string[] = [];
    const walk = async (dir: string): Promise<void> => {
      const entries = await readdir(dir, { withFileTypes: true }).catch((err: NodeJS.ErrnoException) => {
        if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return [];
        throw err;
      });
      for (const entry of entries) {
        const full = join(dir, entry.name);
        if (entry.isDirectory()) await walk(full);
        else if (!entry.name.endsWith('.tmp') && !entry.name.includes('.lock')) {
          const key = relative(this.root, full).split(sep).join('/');
          if (key.startsWith(prefix)) keys.push(key);
        }
      }
    };
    const slash = prefix.lastIndexOf('/');
    await walk(slash < 0 ? this.root : this.pathOf(prefix.slice(0, slash)));
    keys.sort();
    for (const key of keys) {
      const s = await stat(this.pathOf(key)).catch(() => undefined);
      if (s) yield { key, size: s.size, etag: `${s.size}-${s.mtimeMs}` };
    }
  }

  async delete(key: string): Promise<void> {
    await rm(this.pathOf(key), { force: true });
  }

  async download(key: string, path: string): Promise<void> {
    await copyFile(this.pathOf(key), path, constants.COPYFILE_FICLONE);
  }

  async identity(): Promise<Identity> {
    return localIdentity('a file:// stage');
  }

  accessNeeded(job: string): AccessNeeds {
    const dir = this.pathOf(job);
    return {
      part: 'stage',
      target: `stage ${this.url}`,
      principal: (process.getuid?.() ?? -1) >= 0 ? `uid ${process.getuid?.()}` : undefined,
      grants: [
        {
          permission: 'write, create directories',
          on: `${dir}/`,
          why: 'part files, manifests, the lease and the checkpoint',
        },
        {
          permission: 'read',
          on: `${dir}/`,
          why: 'the checkpoint and the lease; the warehouse reads part files in place',
        },
        {
          permission: 'delete (rename, unlink)',
          on: `${dir}/state/`,
          why: 'atomic replace of the lease and checkpoint, lock files',
        },
      ],
      documents: [
        {
          title: 'give the pod user the stage directory (a volume, or on the host)',
          language: 'shell',
          text: `mkdir -p ${dir} && chown -R ${process.getuid?.() ?? 65532}:${process.getgid?.() ?? 65532} ${dir} && chmod 0750 ${dir}`,
        },
      ],
    };
  }
}

/**
 * Creates the lock file whole: the owner is written to a file aside and linked into place,
 * which fails when the lock exists. Resolves false when another process holds it.
 */
async function takeLock(lock: string): Promise<boolean> {
  const temp = `${lock}.${randomBytes(6).toString('hex')}.tmp`;
  await writeFile(temp, LOCK_OWNER, { flag: 'wx' });
  try {
    await link(temp, lock);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    await unlink(temp).catch(() => undefined);
  }
}

async function fsyncFile(path: string): Promise<void> {
  const handle = await open(path, 'r+');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

async function fsyncDir(path: string): Promise<void> {
  const handle = await open(path, 'r');
  try {
    await handle.sync();
  } catch {
    // some filesystems refuse fsync on directories; the rename is still atomic
  } finally {
    await handle.close();
  }
}

/** Streams a file through sha256 (used to verify downloads). */
export async function sha256File(path: string): Promise<string> {
  const hash = createHash('sha256');
  for await (const chunk of createReadStream(path)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The stage for `stage.url: file:///path`. */
export async function create(config: Config): Promise<ObjectStore> {
  return new LocalStore(config.stage.url);
}
