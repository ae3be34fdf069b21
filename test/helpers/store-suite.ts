/**
 * The one ObjectStore suite: every store (local, S3, GCS) runs these same cases, so the lease and
 * the checkpoint can rely on the port's promises whatever the stage is. A store file calls
 * `objectStoreSuite` with a factory that gives a fresh, empty stage per test.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type ClaimedCheckpoint,
  claimCheckpoint,
  commitCheckpoint,
  readCheckpoint,
} from '../../src/state/checkpoint.js';
import { putState } from '../../src/state/conditional.js';
import { Lease } from '../../src/state/lease.js';
import { type ObjectStore, PreconditionFailedError } from '../../src/store/store.js';

export interface StoreFixture {
  /** A store over a fresh, empty prefix. */
  readonly store: ObjectStore;
  /** Objects the server still holds for unfinished uploads (S3 multipart parts, GCS resumable sessions). */
  readonly pendingUploads?: () => Promise<number>;
  readonly dispose?: () => Promise<void>;
}

export interface StoreSuiteOptions {
  /** A file size that forces the store's multipart/resumable path (more than one part or chunk). */
  readonly largeFileBytes: number;
  /** Race rounds: two or more writers at the same moment, many times. */
  readonly raceRounds?: number;
  /**
   * Whether the store has the server verify the part file's sha256 (S3 `x-amz-checksum-sha256`,
   * GCS crc32c/md5 computed alongside). A local stage renames the very bytes that were hashed.
   */
  readonly verifiesChecksums: boolean;
  /**
   * Makes the server carry out the next write but lose its answer (the connection drops), so the
   * SDK retries it; absent where a store cannot lose an answer (a local directory).
   */
  readonly loseNextWriteAnswer?: () => void;
  /** Why the suite cannot run here (a server missing): its cases are skipped. */
  readonly skip?: string;
}

const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');

async function collect(iter: AsyncIterable<{ key: string }>): Promise<string[]> {
  const keys: string[] = [];
  for await (const info of iter) keys.push(info.key);
  return keys;
}

const bound = (ts: string) => ({ values: [ts, '1'], inclusive: true });

/**
 * The store as `n` racers see it: their first `n` reads all complete before any of them returns,
 * so every racer decides from the same version and their conditional writes truly race, however
 * busy the machine is. Reads after those pass straight through.
 */
export function readingTogether(store: ObjectStore, n: number): ObjectStore {
  let waiting = n;
  let release: () => void = () => undefined;
  const all = new Promise<void>((resolve) => {
    release = resolve;
  });
  const get: ObjectStore['get'] = async (key) => {
    if (waiting <= 0) return store.get(key);
    try {
      return await store.get(key);
    } finally {
      if (--waiting === 0) release();
      await all;
    }
  };
  return new Proxy(store, {
    get(target, property) {
      if (property === 'get') return get;
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

/** Registers the shared cases for one store kind. */
export function objectStoreSuite(
  name: string,
  makeFixture: () => Promise<StoreFixture>,
  options: StoreSuiteOptions,
): void {
  describe.skipIf(!!options.skip)(`ObjectStore suite: ${name}`, () => {
    let fixture: StoreFixture;
    let store: ObjectStore;
    let dir: string;

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'nightshift-store-suite-'));
    });
    afterAll(async () => {
      await rm(dir, { recursive: true, force: true });
    });
    const fresh = async () => {
      fixture = await makeFixture();
      store = fixture.store;
    };
    afterEach(async () => {
      await store?.close?.();
      await fixture?.dispose?.();
    });

    it('writes, reads back and reports size and etag', async () => {
      await fresh();
      const info = await store.put('job/a.json', '{"a":1}', { contentType: 'application/json' });
      expect(info).toMatchObject({ key: 'job/a.json', size: 7 });
      expect(info.etag).toBeTruthy();
      const got = await store.get('job/a.json');
      expect(got?.body.toString()).toBe('{"a":1}');
      expect(got?.info.etag).toBe(info.etag);
      expect(await store.get('job/missing.json')).toBeUndefined();
    });

    it('creates only if absent: a second create fails with PreconditionFailedError and changes nothing', async () => {
      await fresh();
      await store.put('job/state/lease.json', 'first', { ifNoneMatch: true });
      await expect(store.put('job/state/lease.json', 'second', { ifNoneMatch: true })).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
      expect((await store.get('job/state/lease.json'))?.body.toString()).toBe('first');
    });

    it('compare-and-swap: the current etag wins, a stale or invented one fails', async () => {
      await fresh();
      const v1 = await store.put('job/state/checkpoint.json', 'v1');
      const v2 = await store.put('job/state/checkpoint.json', 'v2', { ifMatch: v1.etag });
      expect(v2.etag).not.toBe(v1.etag);
      await expect(store.put('job/state/checkpoint.json', 'v3', { ifMatch: v1.etag })).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
      await expect(store.put('job/state/missing.json', 'x', { ifMatch: v1.etag })).rejects.toBeInstanceOf(
        PreconditionFailedError,
      );
      expect((await store.get('job/state/checkpoint.json'))?.body.toString()).toBe('v2');
      expect(await store.get('job/state/missing.json')).toBeUndefined();
    });

    it('lists by prefix in key order and deletes (a missing object is no error)', async () => {
      await fresh();
      for (const key of [
        'job/data/b.parquet',
        'job/data/a.parquet',
        'job/runs/r.json',
        'jobx/data/c.parquet',
      ])
        await store.put(key, key);
      expect(await collect(store.list('job/data/'))).toEqual(['job/data/a.parquet', 'job/data/b.parquet']);
      expect(await collect(store.list('job/'))).toEqual([
        'job/data/a.parquet',
        'job/data/b.parquet',
        'job/runs/r.json',
      ]);
      await store.delete('job/data/a.parquet');
      await store.delete('job/data/never.parquet');
      expect(await collect(store.list('job/data/'))).toEqual(['job/data/b.parquet']);
    });

    it('uploads a small and a large file byte for byte, verified by sha256, and downloads them', async () => {
      await fresh();
      for (const size of [1234, options.largeFileBytes]) {
        const data = randomBytes(size);
        const path = join(dir, `up-${size}.bin`);
        await writeFile(path, data);
        const key = `job/data/part-${size}.parquet`;
        const info = await store.putFile(key, path, { sha256: sha256(data) });
        expect(info.size).toBe(size);
        const back = join(dir, `down-${size}.bin`);
        await store.download(key, back);
        expect(sha256(await readFile(back))).toBe(sha256(data));
        expect(store.urlOf(key).endsWith(key)).toBe(true);
      }
      expect(await fixture.pendingUploads?.()).toBe(fixture.pendingUploads ? 0 : undefined);
    });

    it.runIf(options.verifiesChecksums)(
      'refuses a file whose content does not match the sha256 it is given, and keeps nothing',
      async () => {
        await fresh();
        const path = join(dir, 'corrupt.bin');
        await writeFile(path, randomBytes(2048));
        await expect(
          store.putFile('job/data/corrupt.parquet', path, { sha256: sha256(Buffer.from('something else')) }),
        ).rejects.toThrow();
        expect(await store.get('job/data/corrupt.parquet')).toBeUndefined();
      },
    );

    it('an aborted upload leaves no object and nothing pending', async () => {
      await fresh();
      const path = join(dir, 'abort.bin');
      await writeFile(path, randomBytes(options.largeFileBytes));
      const controller = new AbortController();
      const upload = store.putFile('job/data/aborted.parquet', path, { signal: controller.signal });
      setTimeout(() => controller.abort(new Error('SIGTERM')), 5);
      await expect(upload).rejects.toThrow();
      expect(await store.get('job/data/aborted.parquet')).toBeUndefined();
      if (fixture.pendingUploads) expect(await fixture.pendingUploads()).toBe(0);
    });

    it('lease: runs that read the lease at the same moment, many times over; exactly one wins each time', async () => {
      await fresh();
      const rounds = options.raceRounds ?? 10;
      for (let round = 0; round < rounds; round++) {
        const job = `race${round}`;
        const together = readingTogether(store, 3);
        const attempts = await Promise.allSettled(
          [0, 1, 2].map((i) =>
            Lease.acquire({ store: together, job, runId: `run-${round}-${i}`, ttlMs: 60_000 }),
          ),
        );
        const winners = attempts.filter((a) => a.status === 'fulfilled');
        expect(winners).toHaveLength(1);
        for (const lost of attempts.filter((a) => a.status === 'rejected'))
          expect((lost as PromiseRejectedResult).reason).toMatchObject({ code: 'lease_held' });
        await (winners[0] as PromiseFulfilledResult<Lease>).value.release();
      }
    });

    it('lease: an expired lease is taken over by exactly one of the runs racing for it, with a higher token', async () => {
      await fresh();
      let clock = Date.now();
      const now = () => clock;
      const first = await Lease.acquire({ store, job: 'j', runId: 'dead', ttlMs: 1_000, now });
      clock += 5_000; // the holder died: its lease expired without a release
      const together = readingTogether(store, 3);
      const racers = await Promise.allSettled(
        ['a', 'b', 'c'].map((id) =>
          Lease.acquire({ store: together, job: 'j', runId: id, ttlMs: 60_000, now }),
        ),
      );
      const winners = racers.filter((r) => r.status === 'fulfilled') as PromiseFulfilledResult<Lease>[];
      expect(winners).toHaveLength(1);
      const winner = winners[0]?.value as Lease;
      expect(winner.token).toBe(first.token + 1);
      // The dead holder comes back: its renewal is refused and it knows it lost the lease.
      await first.renew();
      expect(() => first.assertHeld()).toThrow(/lease/);
      await winner.release();
      const next = await Lease.acquire({ store, job: 'j', runId: 'next', ttlMs: 60_000, now });
      expect(next.token).toBe(first.token + 2);
      await next.release();
    });

    it('checkpoint: a run fenced out by a newer claim can never move it', async () => {
      await fresh();
      const old = await claimCheckpoint(store, 'j', ['ts', 'id'], 1);
      const newer = await claimCheckpoint(store, 'j', ['ts', 'id'], 2);
      await expect(
        commitCheckpoint(store, old, { watermark: bound('2026-01-01'), runId: 'old', rows: 5 }),
      ).rejects.toMatchObject({ code: 'lease_held' });
      await commitCheckpoint(store, newer, { watermark: bound('2026-01-02'), runId: 'new', rows: 7 });
      const after = await readCheckpoint(store, 'j');
      expect(after?.record).toMatchObject({
        fence: 2,
        run_id: 'new',
        rows_total: 7,
        watermark: ['2026-01-02', '1'],
      });
    });

    it('checkpoint: claims that read the same version, many times over; exactly one succeeds', async () => {
      await fresh();
      const rounds = options.raceRounds ?? 10;
      for (let round = 0; round < rounds; round++) {
        const job = `cp${round}`;
        if (round % 2) await claimCheckpoint(store, job, ['id'], 0); // half the rounds race on an existing one
        const together = readingTogether(store, 3);
        const claims = await Promise.allSettled(
          [1, 2, 3].map((fence) => claimCheckpoint(together, job, ['id'], fence)),
        );
        expect(claims.filter((c) => c.status === 'fulfilled')).toHaveLength(1);
      }
    });

    it('checkpoint: two claims with the same fencing token (a lease handed out twice) cannot both succeed', async () => {
      // Both build byte-identical records; the loser's read-back after its 412 must not take the
      // winner's object for its own earlier attempt.
      await fresh();
      const rounds = options.raceRounds ?? 10;
      for (let round = 0; round < rounds; round++) {
        const job = `same${round}`;
        if (round % 2) await claimCheckpoint(store, job, ['id'], 0);
        const together = readingTogether(store, 2);
        const claims = await Promise.allSettled(
          [7, 7].map((fence) => claimCheckpoint(together, job, ['id'], fence)),
        );
        expect(claims.filter((c) => c.status === 'fulfilled')).toHaveLength(1);
      }
    });

    it('checkpoint: claims at any pace (each may replace the one before); exactly one of them can commit', async () => {
      await fresh();
      const rounds = options.raceRounds ?? 10;
      for (let round = 0; round < rounds; round++) {
        const job = `pace${round}`;
        if (round % 2) await claimCheckpoint(store, job, ['id'], 0);
        const claims = await Promise.allSettled(
          [1, 2, 3].map((fence) => claimCheckpoint(store, job, ['id'], fence)),
        );
        const claimed = claims
          .filter((c): c is PromiseFulfilledResult<ClaimedCheckpoint> => c.status === 'fulfilled')
          .map((c) => c.value);
        expect(claimed.length).toBeGreaterThanOrEqual(1);
        expect(new Set(claimed.map((c) => c.etag)).size).toBe(claimed.length);
        const commits = await Promise.allSettled(
          claimed.map((c) =>
            commitCheckpoint(store, c, {
              watermark: bound('2026-01-03'),
              runId: `r${c.record.fence}`,
              rows: 1,
            }),
          ),
        );
        expect(commits.filter((c) => c.status === 'fulfilled')).toHaveLength(1);
        expect((await readCheckpoint(store, job))?.record.rows_total).toBe(1);
      }
    });

    it.runIf(!!options.loseNextWriteAnswer)(
      'a conditional write whose answer is lost: the retry meets its own write and the writer is told it won',
      async () => {
        await fresh();
        for (const [i, condition] of [{ ifNoneMatch: true } as const, undefined].entries()) {
          const key = `job/state/lost${i}.json`;
          const before = condition ? undefined : await store.put(key, '{}');
          options.loseNextWriteAnswer?.();
          const info = await putState(store, key, { n: i }, condition ?? { ifMatch: String(before?.etag) });
          const stored = await store.get(key);
          expect(info.etag).toBe(stored?.info.etag);
          expect(JSON.parse(String(stored?.body))).toMatchObject({ n: i });
        }
      },
    );
  });
}
