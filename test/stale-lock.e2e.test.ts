/**
 * Lock files a killed process leaves in a file:// stage, empty or cut short (killed between
 * creating and writing one, or a full disk), are recognised as dead at once: the next run
 * succeeds instead of exiting 75 until the lock is 30 s old.
 */
import { writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, tempDir } from './helpers/env.js';
import { tripsJob } from './helpers/trips-job.js';

const tmp = tempDir('ns-lock-');
let dbUrl: string;

beforeAll(async () => {
  dbUrl = await freshDatabase();
});
afterAll(() => tmp.cleanup());

describe('stale local locks', () => {
  it('a run after a kill that left empty and cut-short lock files succeeds', async () => {
    const job = await tripsJob({
      dbUrl,
      root: tmp.dir,
      rows: 1000,
      stage: (dir) => ({ url: pathToFileURL(join(dir, 'stage')).href }),
    });
    const first = await job.run();
    expect(first.code, first.stdout.slice(-1000)).toBe(0);
    const state = join(job.dir, 'stage', job.config.job, 'state');
    const owner = `${hostname()} ${process.pid}\n`;
    for (const cut of [0, 1, Math.floor(owner.length / 2), owner.length - 1]) {
      writeFileSync(join(state, 'lease.json.lock'), owner.slice(0, cut));
      writeFileSync(join(state, 'checkpoint.json.lock'), owner.slice(0, cut));
      await job.insert(1001 + cut * 10, 1010 + cut * 10);
      const r = await job.run();
      expect(r.code, `cut at ${cut}: ${r.stdout.slice(-1000)}`).toBe(0);
      expect(r.summary).toMatchObject({ status: 'succeeded', rows_loaded: 10 });
    }
    expect(await job.facts()).toEqual(await job.sourceFacts());
  });
});
