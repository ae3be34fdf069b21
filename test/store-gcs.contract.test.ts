/**
 * Contract tests of the Cloud Storage stage: the shared ObjectStore suite and the GCS specifics,
 * driving the real @google-cloud/storage (and its auth library, through the GKE metadata server)
 * against a local server that answers as the JSON API is documented: generations and
 * preconditions, resumable sessions, CRC32C checks, IAM permissions and faults
 * (test/helpers/gcp-server.ts).
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { GcpEnvironment } from '../src/config/cloud.js';
import { type GcsStageConfig, gcsStageDefaults } from '../src/config/schema.js';
import { NightshiftError } from '../src/errors.js';
import { putState } from '../src/state/conditional.js';
import { GcsStore, gcsPermissions } from '../src/store/gcs/index.js';
import { PreconditionFailedError } from '../src/store/store.js';
import { crc32c, GcpServer, type Permission } from './helpers/gcp-server.js';
import { objectStoreSuite } from './helpers/store-suite.js';

const MB = 1024 * 1024;
const BUCKET = 'stage-bucket';
const SA = 'nightshift@acme-data.iam.gserviceaccount.com';
const env: GcpEnvironment = { kubernetes: true };

let server: GcpServer;
let stages = 0;
let savedMetadataHost: string | undefined;

/** A store on a fresh prefix, with 1 MiB resumable chunks so a few MiB take several. */
function gcsStore(overrides: Partial<GcsStageConfig> = {}, prefix = `stage${++stages}`): GcsStore {
  return new GcsStore({
    url: `gs://${BUCKET}/${prefix}`,
    settings: {
      ...gcsStageDefaults(),
      api_endpoint: server.url,
      chunk_size_mb: 1,
      max_attempts: 3,
      ...overrides,
    },
    env,
  });
}

beforeAll(async () => {
  server = await GcpServer.start();
  server.createBucket(BUCKET);
  server.metadata = { email: SA, project: 'acme-data', cluster: 'data' };
  // The auth library reaches the metadata server here (GKE's is at 169.254.169.254).
  savedMetadataHost = process.env.GCE_METADATA_HOST;
  process.env.GCE_METADATA_HOST = server.host;
});
afterAll(async () => {
  if (savedMetadataHost === undefined) delete process.env.GCE_METADATA_HOST;
  else process.env.GCE_METADATA_HOST = savedMetadataHost;
  await server?.close();
});

objectStoreSuite(
  'gcs (contract server: JSON API generations, resumable sessions, CRC32C)',
  async () => ({ store: gcsStore(), pendingUploads: async () => server.pendingUploads() }),
  {
    largeFileBytes: 3 * MB + 12345,
    raceRounds: 15,
    verifiesChecksums: true,
    loseNextWriteAnswer: () => server.failNext(1, 'lost', { method: 'POST' }),
  },
);

describe('Cloud Storage stage specifics (contract)', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ns-gcs-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const file = async (name: string, bytes: number) => {
    const path = join(dir, name);
    const data = randomBytes(bytes);
    await writeFile(path, data);
    return { path, data };
  };
  const callsSince = (start: number) => server.calls.slice(start);
  afterEach(() => server.clearFaults());

  it('part files go up as resumable uploads in chunks, with their CRC32C, storage class and holds; state objects without', async () => {
    const store = gcsStore({ storage_class: 'NEARLINE', temporary_hold: true, event_based_hold: true });
    const { path, data } = await file('part.parquet', 3 * MB + 17);
    const start = server.calls.length;
    const info = await store.putFile('data/part-00000.parquet', path);
    const calls = callsSince(start);
    expect(calls.filter((c) => c.query.uploadType === 'resumable' && c.method === 'POST')).toHaveLength(1);
    expect(calls.filter((c) => c.method === 'PUT').length).toBeGreaterThanOrEqual(4);
    const stored = server.object(BUCKET, `${store.prefix}/data/part-00000.parquet`);
    expect(stored?.data.equals(data)).toBe(true);
    expect(stored).toMatchObject({ storageClass: 'NEARLINE', temporaryHold: true, eventBasedHold: true });
    expect(stored?.crc32c).toBe(crc32c(data));
    expect(info).toEqual({ key: 'data/part-00000.parquet', size: data.length, etag: stored?.generation });

    await store.put('state/lease.json', '{}', { ifNoneMatch: true });
    expect(server.object(BUCKET, `${store.prefix}/state/lease.json`)).toMatchObject({
      storageClass: 'STANDARD',
      temporaryHold: false,
      eventBasedHold: false,
    });
    // A part file under a hold cannot be replaced: a configuration problem, said so.
    const replaced = await store.putFile('data/part-00000.parquet', path).catch((e: unknown) => e);
    expect(replaced).toBeInstanceOf(NightshiftError);
    expect((replaced as NightshiftError).message).toMatch(/hold|retention/);
  });

  it('a stopped upload (SIGTERM) cancels its resumable session: nothing is left open', async () => {
    const store = gcsStore();
    const { path } = await file('big.parquet', 6 * MB);
    server.failNext(3, 'http503', { method: 'PUT' });
    const controller = new AbortController();
    const start = server.calls.length;
    const upload = store.putFile('data/big.parquet', path, { signal: controller.signal });
    while (!callsSince(start).some((c) => c.method === 'PUT')) await new Promise((r) => setTimeout(r, 5));
    controller.abort(new Error('SIGTERM'));
    const err = await upload.catch((e: unknown) => e);
    expect((err as NightshiftError).code).toBe('terminated');
    await new Promise((r) => setTimeout(r, 200));
    expect(server.pendingUploads()).toBe(0);
    expect(callsSince(start).some((c) => c.method === 'DELETE')).toBe(true);
    expect(server.object(BUCKET, `${store.prefix}/data/big.parquet`)).toBeUndefined();
  });

  it('429 and 503 on chunks and reads are retried with backoff; a chunk is resent from the offset the server holds', async () => {
    const store = gcsStore({ max_attempts: 5 });
    const { path, data } = await file('retry.parquet', 3 * MB);
    server.failNext(2, 'http503', { method: 'PUT' });
    server.failNext(1, 'http429', { method: 'POST' });
    server.failNext(1, 'reset', { method: 'PUT' });
    await store.putFile('data/retry.parquet', path);
    expect(server.object(BUCKET, `${store.prefix}/data/retry.parquet`)?.data.equals(data)).toBe(true);
    server.failNext(2, 'http503', { method: 'GET' });
    const dest = join(dir, 'retry.copy');
    await store.download('data/retry.parquet', dest);
    expect(server.pendingUploads()).toBe(0);
  });

  it('errors that outlast the retries are transient (exit 75)', async () => {
    const store = gcsStore({ max_attempts: 2 });
    server.failNext(10, 'http503', { method: 'POST' });
    const err = await store.put('state/x.json', '{}').catch((e: unknown) => e);
    server.clearFaults();
    expect(err).toBeInstanceOf(NightshiftError);
    expect((err as NightshiftError).code).toBe('transient');
  });

  it('a conditional create whose answer is lost: the retry meets 412, and putState recognises its own write', async () => {
    const store = gcsStore();
    server.failNext(1, 'lost', { method: 'POST' });
    const err = await store
      .put('state/lease.json', '{"a":1}', { ifNoneMatch: true })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PreconditionFailedError);
    // The same through the state writer: it reads the object back and finds its own bytes.
    server.failNext(1, 'lost', { method: 'POST' });
    const info = await putState(store, 'state/checkpoint.json', { b: 2 }, { ifNoneMatch: true });
    expect(info.etag).toBe(server.object(BUCKET, `${store.prefix}/state/checkpoint.json`)?.generation);
  });

  it('a bucket that does not exist is a configuration error naming it', async () => {
    const store = new GcsStore({
      url: 'gs://no-such-bucket/x',
      settings: { ...gcsStageDefaults(), api_endpoint: server.url, max_attempts: 1 },
      env,
    });
    const err = (await store.put('a.json', '{}').catch((e: unknown) => e)) as NightshiftError;
    expect(err.code).toBe('config');
    expect(err.message).toContain('no-such-bucket');
  });

  it('with IAM enforced: the permissions `nightshift iam` lists suffice; without any one of them the store is refused (exit 5)', async () => {
    server.iam = true;
    try {
      const exercise = async (store: GcsStore) => {
        const { path } = await file('iam.parquet', 100_000);
        await store.putFile('data/p.parquet', path);
        const lease = await store.put('state/lease.json', '{"v":1}', { ifNoneMatch: true });
        await store.put('state/lease.json', '{"v":2}', { ifMatch: lease.etag });
        await store.get('state/lease.json');
        for await (const _ of store.list('data/')) void _;
        await store.delete('preflight/probe');
      };
      server.grant(SA, gcsPermissions() as Permission[]);
      await exercise(gcsStore());
      for (const missing of gcsPermissions()) {
        server.revoke(SA);
        server.grant(SA, gcsPermissions().filter((p) => p !== missing) as Permission[]);
        const err = (await exercise(gcsStore()).catch((e: unknown) => e)) as NightshiftError;
        expect(err, missing).toBeInstanceOf(NightshiftError);
        expect(err.code, missing).toBe('identity');
        expect(err.message, missing).toContain(`gs://${BUCKET}`);
        expect(err.hint, missing).toContain('nightshift iam');
      }
    } finally {
      server.iam = false;
      server.revoke(SA);
    }
  });

  it('whoami: GKE Workload Identity through the metadata server, never a token', async () => {
    const id = await gcsStore().identity();
    expect(id).toMatchObject({ mechanism: 'GKE Workload Identity', principal: SA });
    expect(id.details).toMatchObject({ project: 'acme-data' });
    for (const token of server.issuedTokens) expect(JSON.stringify(id)).not.toContain(token);
  });
});
