/** The shared ObjectStore suite on a local directory stage (`file:///...`). */
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';
import { LocalStore } from '../src/store/local/index.js';
import { objectStoreSuite } from './helpers/store-suite.js';

objectStoreSuite(
  'local',
  async () => {
    const root = await mkdtemp(join(tmpdir(), 'nightshift-local-store-'));
    return {
      store: new LocalStore(pathToFileURL(root).href),
      dispose: () => rm(root, { recursive: true, force: true }),
    };
  },
  { largeFileBytes: 24 * 1024 * 1024, raceRounds: 25, verifiesChecksums: false },
);

describe('local store locks', () => {
  it('a lock left by a process killed inside the critical section is broken at once, not after its age', async () => {
    const root = await mkdtemp(join(tmpdir(), 'nightshift-local-lock-'));
    try {
      const store = new LocalStore(pathToFileURL(root).href);
      const first = await store.put('job/state/lease.json', 'v1', { ifNoneMatch: true });
      // A process of this host that is gone now, as after a SIGKILL.
      const dead = spawnSync(process.execPath, ['-e', '']).pid;
      writeFileSync(join(root, 'job', 'state', 'lease.json.lock'), `${hostname()} ${dead}`);
      // Were the lock only broken by age (30 s), the wait for it (10 s) would end first, in an error.
      await store.put('job/state/lease.json', 'v2', { ifMatch: first.etag });
      expect((await store.get('job/state/lease.json'))?.body.toString()).toBe('v2');
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('a lock file cut short at any byte (empty, half written) is dead at once; the next write succeeds', async () => {
    const root = await mkdtemp(join(tmpdir(), 'nightshift-local-lock-'));
    try {
      const store = new LocalStore(pathToFileURL(root).href);
      let etag = (await store.put('job/state/checkpoint.json', 'v0', { ifNoneMatch: true })).etag;
      // The whole owner line of this very process: alive, so only the cut can make it dead.
      const whole = `${hostname()} ${process.pid}\n`;
      const lock = join(root, 'job', 'state', 'checkpoint.json.lock');
      for (let cut = 0; cut < whole.length; cut++) {
        writeFileSync(lock, whole.slice(0, cut));
        // A live lock would make this wait 10 s and fail with exit 75's error.
        etag = (await store.put('job/state/checkpoint.json', `v${cut + 1}`, { ifMatch: etag })).etag;
        expect(existsSync(lock)).toBe(false);
      }
      expect((await store.get('job/state/checkpoint.json'))?.body.toString()).toBe(`v${whole.length}`);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });

  it('a whole lock of a live process is respected', async () => {
    const root = await mkdtemp(join(tmpdir(), 'nightshift-local-lock-'));
    try {
      const store = new LocalStore(pathToFileURL(root).href);
      const first = await store.put('job/state/lease.json', 'v1', { ifNoneMatch: true });
      const lock = join(root, 'job', 'state', 'lease.json.lock');
      writeFileSync(lock, `${hostname()} ${process.pid}\n`);
      await expect(store.put('job/state/lease.json', 'v2', { ifMatch: first.etag })).rejects.toMatchObject({
        code: 'transient',
        message: expect.stringContaining('timed out waiting for the lock'),
      });
      expect((await store.get('job/state/lease.json'))?.body.toString()).toBe('v1');
      expect(existsSync(lock)).toBe(true);
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});

describe('local store: a stale lock met by racers', () => {
  it('is broken once: of the compare-and-swaps racing through it, exactly one wins, many times over', async () => {
    const root = await mkdtemp(join(tmpdir(), 'nightshift-local-stale-'));
    try {
      const store = new LocalStore(pathToFileURL(root).href);
      const dead = spawnSync(process.execPath, ['-e', '']).pid;
      for (let round = 0; round < 80; round++) {
        const key = `job${round}/state/checkpoint.json`;
        const first = await store.put(key, 'v0', { ifNoneMatch: true });
        writeFileSync(join(root, `job${round}`, 'state', 'checkpoint.json.lock'), `${hostname()} ${dead}`);
        const racers = await Promise.allSettled(
          [1, 2, 3, 4, 5, 6, 7, 8].map((i) => store.put(key, `v${i}`, { ifMatch: first.etag })),
        );
        expect(
          racers.filter((r) => r.status === 'fulfilled'),
          `round ${round}`,
        ).toHaveLength(1);
      }
    } finally {
      await rm(root, { recursive: true, force: true });
    }
  });
});
