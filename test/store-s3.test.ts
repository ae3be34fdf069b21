/**
 * The shared ObjectStore suite on an S3 stage: the real @aws-sdk/client-s3 and lib-storage against
 * s3rver, a real S3 HTTP server in this process. s3rver ignores conditional headers and
 * checksums, so a thin proxy in front of it enforces them as S3 documents (test/helpers/s3-proxy.ts).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AwsEnvironment } from '../src/config/cloud.js';
import { type S3StageConfig, s3StageDefaults } from '../src/config/schema.js';
import { S3Store } from '../src/store/s3/index.js';
import { PreconditionFailedError } from '../src/store/store.js';
import { S3Proxy } from './helpers/s3-proxy.js';
import { objectStoreSuite } from './helpers/store-suite.js';

const MB = 1024 * 1024;
const KEYS = { accessKeyId: 'AKIATESTSTORE0000001', secretAccessKey: 'test-secret-for-s3rver-only' };
const env: AwsEnvironment = { ...KEYS, ec2MetadataDisabled: true, region: 'eu-west-1' };

let proxy: S3Proxy;
let stages = 0;

/**
 * A store on a fresh prefix of the proxied bucket, with the default `request_checksum`
 * (when_supported): the store sends buffers, never streamed `aws-chunked` bodies, which s3rver
 * cannot decode (the proxy would answer 501 rather than let one through). The end to end test
 * runs with `when_required`.
 */
function s3Store(overrides: Partial<S3StageConfig> = {}, prefix = `stage${++stages}`): S3Store {
  return new S3Store({
    url: `s3://${proxy.bucket}/${prefix}`,
    settings: {
      ...s3StageDefaults(),
      endpoint: proxy.url,
      force_path_style: true,
      part_size_mb: 5,
      queue_size: 2,
      max_attempts: 3,
      request_checksum: 'when_supported',
      ...overrides,
    },
    env,
  });
}

beforeAll(async () => {
  proxy = await S3Proxy.start();
});
afterAll(async () => {
  await proxy?.close();
});

objectStoreSuite(
  's3 (s3rver behind a proxy that enforces S3 preconditions and checksums)',
  async () => ({ store: s3Store(), pendingUploads: async () => proxy.pendingUploads() }),
  {
    largeFileBytes: 12 * MB + 12345,
    raceRounds: 15,
    verifiesChecksums: true,
    loseNextWriteAnswer: () => proxy.faults.push({ action: 's3:PutObject', kind: 'lost', times: 1 }),
  },
);

describe('S3 stage specifics', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ns-s3-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const file = async (name: string, bytes: number) => {
    const path = join(dir, name);
    await writeFile(path, randomBytes(bytes));
    return path;
  };

  it('encryption on every object; storage class and Object Lock retention on part files only; path-style at the endpoint', async () => {
    const store = s3Store({
      server_side_encryption: 'aws:kms',
      kms_key_id: 'alias/nightshift',
      storage_class: 'STANDARD_IA',
      object_lock_mode: 'GOVERNANCE',
      object_lock_retention: 3_600_000,
    });
    try {
      const before = Date.now();
      await store.putFile('job/data/part-small.parquet', await file('small.bin', 4096));
      await store.putFile('job/data/part-large.parquet', await file('large.bin', 11 * MB));
      await store.put('job/state/checkpoint.json', '{}');
      for (const name of ['part-small', 'part-large']) {
        const h = proxy.writeHeaders.get(`${store.prefix}/job/data/${name}.parquet`);
        expect(h).toMatchObject({
          'x-amz-server-side-encryption': 'aws:kms',
          'x-amz-server-side-encryption-aws-kms-key-id': 'alias/nightshift',
          'x-amz-storage-class': 'STANDARD_IA',
          'x-amz-object-lock-mode': 'GOVERNANCE',
        });
        const until = Date.parse(String(h?.['x-amz-object-lock-retain-until-date']));
        expect(until).toBeGreaterThanOrEqual(before + 3_600_000 - 1000);
        expect(until).toBeLessThan(Date.now() + 3_600_000 + 1000);
      }
      const state = proxy.writeHeaders.get(`${store.prefix}/job/state/checkpoint.json`);
      expect(state?.['x-amz-server-side-encryption']).toBe('aws:kms');
      expect(state?.['x-amz-storage-class']).toBeUndefined();
      expect(state?.['x-amz-object-lock-mode']).toBeUndefined();
      // Every part of the multipart upload carried its SHA-256 and the small file its whole-file SHA-256.
      const parts = proxy.requests.filter(
        (r) => r.query.has('partNumber') && r.key.endsWith('part-large.parquet'),
      );
      expect(parts).toHaveLength(3);
      for (const p of parts) expect(p.headers['x-amz-checksum-sha256']).toBeTruthy();
      expect(proxy.requests.every((r) => r.style === 'path')).toBe(true);
      expect(store.urlOf('job/data/x.parquet')).toBe(
        `s3://${proxy.bucket}/${store.prefix}/job/data/x.parquet`,
      );
    } finally {
      await store.close();
    }
  });

  it('SIGTERM during a multipart upload aborts it: no object, no pending upload', async () => {
    const store = s3Store();
    try {
      const path = await file('sigterm.bin', 30 * MB);
      const controller = new AbortController();
      const upload = store.putFile('job/data/stopped.parquet', path, { signal: controller.signal });
      // Stop once the first part is on the server.
      const started = proxy.requests.length;
      while (!proxy.requests.slice(started).some((r) => r.query.has('partNumber')))
        await new Promise((r) => setTimeout(r, 5));
      controller.abort(new Error('SIGTERM'));
      await expect(upload).rejects.toThrow();
      expect(proxy.pendingUploads()).toBe(0);
      expect(proxy.requests.slice(started).some((r) => r.action === 's3:AbortMultipartUpload')).toBe(true);
      expect(await store.get('job/data/stopped.parquet')).toBeUndefined();
    } finally {
      await store.close();
    }
  });

  it('a multipart upload that fails after retries is aborted and the error is transient (exit 75)', async () => {
    const store = s3Store({ max_attempts: 2 });
    try {
      const path = await file('fails.bin', 11 * MB);
      proxy.faults.push({
        action: 's3:PutObject',
        match: (r) => r.query.get('partNumber') === '2',
        kind: 'InternalError',
        times: 2,
      });
      const err = await store.putFile('job/data/fails.parquet', path).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'transient' });
      expect(proxy.pendingUploads()).toBe(0);
    } finally {
      proxy.faults.length = 0;
      await store.close();
    }
  });

  it('a part corrupted on the way is refused by its SHA-256: the upload is aborted, nothing kept, exit 75', async () => {
    const store = s3Store();
    try {
      const path = await file('corrupt-part.bin', 11 * MB);
      proxy.faults.push({
        action: 's3:PutObject',
        match: (r) => r.query.get('partNumber') === '2',
        kind: 'corrupt',
        times: 1,
      });
      const err = await store.putFile('job/data/corrupt-part.parquet', path).catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'transient' });
      expect(String((err as Error).message)).toMatch(/BadDigest/);
      expect(proxy.faults.every((f) => f.times === 0)).toBe(true);
      expect(proxy.pendingUploads()).toBe(0);
      expect(await store.get('job/data/corrupt-part.parquet')).toBeUndefined();
    } finally {
      proxy.faults.length = 0;
      await store.close();
    }
  });

  it('If-Match on a missing key is a lost compare-and-swap whether S3 answers 404 (as it does) or 412', async () => {
    const store = s3Store();
    try {
      for (const answer of ['NoSuchKey', 'PreconditionFailed'] as const) {
        proxy.ifMatchOnMissing = answer;
        await expect(store.put('job/state/gone.json', 'x', { ifMatch: '"abc"' })).rejects.toBeInstanceOf(
          PreconditionFailedError,
        );
      }
    } finally {
      proxy.ifMatchOnMissing = 'NoSuchKey';
      await store.close();
    }
  });

  it('throttling and resets are retried by the SDK with backoff', async () => {
    const store = s3Store({ max_attempts: 4 });
    try {
      proxy.faults.push({ action: 's3:PutObject', kind: 'SlowDown', times: 1 });
      proxy.faults.push({ action: 's3:GetObject', kind: 'reset', times: 1 });
      await store.put('job/state/x.json', 'ok');
      expect((await store.get('job/state/x.json'))?.body.toString()).toBe('ok');
      // A part file is sent again whole after a 503, and S3 still verifies its SHA-256.
      const data = randomBytes(300_000);
      const path = join(dir, 'retried.bin');
      await writeFile(path, data);
      proxy.faults.push({ action: 's3:PutObject', kind: 'SlowDown', times: 2 });
      const sha256 = createHash('sha256').update(data).digest('hex');
      await store.putFile('job/data/retried.parquet', path, { sha256 });
      expect(proxy.faults.every((f) => f.times === 0)).toBe(true);
      const got = await store.get('job/data/retried.parquet');
      expect(got?.body.equals(data)).toBe(true);
    } finally {
      proxy.faults.length = 0;
      await store.close();
    }
  });

  it('refused credentials are identity errors (exit 5) naming the bucket, the action and the fix; no secret in them', async () => {
    const store = s3Store();
    proxy.knownKeys = new Set(['AKIASOMEONEELSE00000']);
    try {
      const err = (await store.put('job/state/x.json', 'x').catch((e: unknown) => e)) as Error & {
        code: string;
        hint: string;
      };
      expect(err).toMatchObject({ code: 'identity' });
      expect(err.message).toContain(`s3:PutObject on s3://${proxy.bucket}/`);
      expect(err.message).toContain('InvalidAccessKeyId');
      expect(err.hint).toMatch(/AWS_ACCESS_KEY_ID/);
      expect(JSON.stringify({ m: err.message, h: err.hint })).not.toContain(KEYS.secretAccessKey);
    } finally {
      proxy.knownKeys = undefined;
      await store.close();
    }
  });

  it('a missing bucket is a config error (exit 2)', async () => {
    const store = new S3Store({
      url: 's3://no-such-bucket-here/x',
      settings: {
        ...s3StageDefaults(),
        endpoint: proxy.url,
        force_path_style: true,
        request_checksum: 'when_required',
      },
      env,
    });
    try {
      await expect(store.put('a.json', '{}')).rejects.toMatchObject({ code: 'config' });
    } finally {
      await store.close();
    }
  });

  it('part files honour create-only, single and multipart alike', async () => {
    const store = s3Store();
    try {
      for (const size of [2048, 11 * MB]) {
        const path = await file(`once-${size}.bin`, size);
        const key = `job/data/once-${size}.parquet`;
        await store.putFile(key, path, { ifNoneMatch: true });
        await expect(store.putFile(key, path, { ifNoneMatch: true })).rejects.toBeInstanceOf(
          PreconditionFailedError,
        );
      }
      expect(proxy.pendingUploads()).toBe(0);
    } finally {
      await store.close();
    }
  });

  it('lists past one page (S3 returns at most 1000 keys a page) in key order', async () => {
    const store = s3Store();
    try {
      const keys = Array.from({ length: 1003 }, (_, i) => `job/runs/${String(i).padStart(5, '0')}.json`);
      for (let i = 0; i < keys.length; i += 50)
        await Promise.all(keys.slice(i, i + 50).map((k) => store.put(k, '{}')));
      const before = proxy.requests.length;
      const listed: string[] = [];
      for await (const o of store.list('job/runs/')) listed.push(o.key);
      expect(listed).toEqual(keys);
      expect(proxy.requests.slice(before).filter((r) => r.action === 's3:ListBucket')).toHaveLength(2);
    } finally {
      await store.close();
    }
  });

  it('uploads a 64 MiB part file in multipart at a measured rate', async () => {
    const store = s3Store({ part_size_mb: 8, queue_size: 4 });
    try {
      const path = await file('rate.bin', 64 * MB);
      const t0 = performance.now();
      await store.putFile('job/data/rate.parquet', path);
      const seconds = (performance.now() - t0) / 1000;
      console.log(`S3 multipart upload to s3rver via proxy: ${(64 / seconds).toFixed(1)} MB/s`);
      expect(proxy.pendingUploads()).toBe(0);
    } finally {
      await store.close();
    }
  });
});
