/**
 * Contract tests of the GCP contract server (test/helpers/gcp-server.ts): the real
 * @google-cloud/storage, with its own google-auth-library, drives it the way it drives Google, so
 * the adapters' contract tests can trust what it answers. Covers the three upload types,
 * preconditions and their atomicity, listing, deletes and holds, hashes, faults and the library's
 * retry policy, IAM, and Application Default Credentials through the metadata server and through
 * an external_account (Workload Identity Federation) file.
 */
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CRC32C, type File, type SaveOptions, Storage, type StorageOptions } from '@google-cloud/storage';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { crc32c, externalAccountFile, federatedPrincipal, GcpServer } from './helpers/gcp-server.js';

const BUCKET = 'contract-bucket';
const WRITER = 'writer@p.iam.gserviceaccount.com';
const AUDIENCE =
  '//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/pool/providers/k8s';
const SUBJECT = 'system:serviceaccount:data:nightshift';
const EXPORTER = 'exporter@p.iam.gserviceaccount.com';

let server: GcpServer;
let dir: string;
let token: string;

/** The OAuth2Client of the google-auth-library that @google-cloud/storage itself loads. */
const { OAuth2Client } = createRequire(createRequire(import.meta.url).resolve('@google-cloud/storage'))(
  'google-auth-library',
) as { OAuth2Client: new () => { setCredentials(c: { access_token: string; expiry_date: number }): void } };

const RETRY = {
  autoRetry: true,
  maxRetries: 3,
  retryDelayMultiplier: 1.1,
  maxRetryDelay: 1,
  totalTimeout: 20,
};

/** A client holding a fixed bearer token (undefined: Application Default Credentials). */
function storage(bearer?: string, extra: StorageOptions = {}): Storage {
  const opts: StorageOptions = {
    apiEndpoint: server.url,
    useAuthWithCustomEndpoint: true,
    projectId: 'p',
    retryOptions: RETRY,
    ...extra,
  };
  if (bearer) {
    const client = new OAuth2Client();
    client.setCredentials({ access_token: bearer, expiry_date: Date.now() + 3_600_000 });
    opts.authClient = client as unknown as StorageOptions['authClient'];
  }
  return new Storage(opts);
}

/**
 * A resumable save against a custom endpoint. @google-cloud/storage 7.22 does not pass
 * `useAuthWithCustomEndpoint` from createWriteStream/save/upload to its resumable uploader, which
 * therefore creates the session WITHOUT credentials on any host that is not *.googleapis.com (GCS
 * answers 401). createResumableUpload does pass it, and the session URI itself needs no
 * credentials (the upload id is the capability), so the session is created first and the data
 * sent to its URI.
 */
async function saveResumable(file: File, data: Buffer | string, opts: SaveOptions = {}): Promise<void> {
  const [uri] = await file.createResumableUpload({
    preconditionOpts: opts.preconditionOpts,
    metadata: opts.metadata,
  });
  await file.save(data, { ...opts, resumable: true, uri });
}

/** 'ok', or the status code (else the error code, else 'error') of a rejected library call. */
async function codeOf(p: Promise<unknown>): Promise<number | string> {
  try {
    await p;
    return 'ok';
  } catch (err) {
    const e = err as { code?: number | string; status?: number; response?: { status?: number } };
    return e.response?.status ?? e.status ?? e.code ?? 'error';
  }
}

/** Runs `fn` with some environment variables set, restoring them after. */
async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

beforeAll(async () => {
  server = await GcpServer.start();
  server.createBucket(BUCKET);
  token = server.issueToken(WRITER);
  dir = await mkdtemp(join(tmpdir(), 'ns-gcp-'));
});
afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});
afterEach(() => {
  server.iam = false;
  server.metadata = undefined;
});

describe('GCP contract server', () => {
  it('computes CRC32C as GCS reports it (big-endian, base64) and as the library does', () => {
    expect(Buffer.from(crc32c(Buffer.from('123456789')), 'base64').readUInt32BE()).toBe(0xe3069283);
    const data = randomBytes(100_000);
    const lib = new CRC32C();
    lib.update(data);
    expect(crc32c(data)).toBe(lib.toString());
  });

  it('saves with multipart and resumable uploads, then downloads and reads metadata', async () => {
    const bucket = storage(token).bucket(BUCKET);
    await bucket
      .file('small/multi.txt')
      .save('hello multipart', { resumable: false, contentType: 'text/plain' });
    await saveResumable(bucket.file('small/resum.bin'), Buffer.from('hello resumable'), {});
    const [data] = await bucket.file('small/multi.txt').download();
    expect(data.toString()).toBe('hello multipart');
    const [meta] = await bucket.file('small/resum.bin').getMetadata();
    const stored = server.object(BUCKET, 'small/resum.bin');
    expect(meta).toMatchObject({
      name: 'small/resum.bin',
      size: '15',
      generation: stored?.generation,
      storageClass: 'STANDARD',
    });
    expect(meta.crc32c).toBe(crc32c(Buffer.from('hello resumable')));
    expect(server.object(BUCKET, 'small/multi.txt')?.contentType).toBe('text/plain');
    await bucket.file('small/cold').save('c', { resumable: false, metadata: { storageClass: 'NEARLINE' } });
    expect((await bucket.file('small/cold').getMetadata())[0].storageClass).toBe('NEARLINE');
    const multi = server.calls.filter((c) => c.query.uploadType === 'multipart');
    const resum = server.calls.filter((c) => c.query.uploadType === 'resumable' && c.method === 'POST');
    expect([multi.length, resum.length]).toEqual([2, 1]);
    expect(server.pendingUploads()).toBe(0);
    expect(await bucket.file('small/missing').exists()).toEqual([false]);
    expect(await codeOf(bucket.file('small/missing').download())).toBe(404);
  });

  it('uploads a 20 MB file in 8 MiB resumable chunks with crc32c validation', async () => {
    const path = join(dir, 'big.bin');
    const bytes = randomBytes(20 * 1024 * 1024);
    await writeFile(path, bytes);
    const before = server.calls.length;
    const bucket = storage(token).bucket(BUCKET);
    const [uri] = await bucket.file('big/part-0.bin').createResumableUpload();
    await bucket.upload(path, {
      destination: 'big/part-0.bin',
      uri,
      resumable: true,
      chunkSize: 8 * 1024 * 1024,
      validation: 'crc32c',
    });
    const stored = server.object(BUCKET, 'big/part-0.bin');
    expect(stored?.data.equals(bytes)).toBe(true);
    expect(stored?.crc32c).toBe(crc32c(bytes));
    const puts = server.calls.slice(before).filter((c) => c.method === 'PUT' && c.query.upload_id);
    // A session URI handed to the library is first asked for its offset (`bytes */*`), then 8 + 8 + 4 MiB.
    expect(puts.length).toBe(4);
    expect(server.pendingUploads()).toBe(0);
  });

  it('refuses a second create with ifGenerationMatch 0 and a stale generation with 412', async () => {
    const file = storage(token).bucket(BUCKET).file('pre/once.txt');
    await file.save('first', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    expect(
      await codeOf(file.save('second', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } })),
    ).toBe(412);
    expect(await codeOf(saveResumable(file, 'second', { preconditionOpts: { ifGenerationMatch: 0 } }))).toBe(
      412,
    );
    expect(server.object(BUCKET, 'pre/once.txt')?.data.toString()).toBe('first');
    const g1 = Number(server.object(BUCKET, 'pre/once.txt')?.generation);
    await file.save('cas ok', { resumable: false, preconditionOpts: { ifGenerationMatch: g1 } });
    const g2 = Number(server.object(BUCKET, 'pre/once.txt')?.generation);
    expect(g2).toBeGreaterThan(g1);
    expect(await codeOf(saveResumable(file, 'stale', { preconditionOpts: { ifGenerationMatch: g1 } }))).toBe(
      412,
    );
    expect(server.object(BUCKET, 'pre/once.txt')?.data.toString()).toBe('cas ok');
    expect(server.pendingUploads()).toBe(0);
  });

  it('lets exactly one of two concurrent creates with ifGenerationMatch 0 win (20 rounds)', async () => {
    const bucket = storage(token).bucket(BUCKET);
    for (let round = 0; round < 20; round++) {
      const name = `race/${round}`;
      const resumable = round % 2 === 0;
      const opts = { preconditionOpts: { ifGenerationMatch: 0 } };
      const results = await Promise.allSettled(
        ['a', 'b'].map((who) =>
          resumable
            ? saveResumable(bucket.file(name), `${who}-${round}`, opts)
            : bucket.file(name).save(`${who}-${round}`, { ...opts, resumable: false }),
        ),
      );
      const won = results.findIndex((r) => r.status === 'fulfilled');
      expect(results.filter((r) => r.status === 'fulfilled').length).toBe(1);
      const lost = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
      expect((lost.reason as { code?: number }).code).toBe(412);
      expect(server.object(BUCKET, name)?.data.toString()).toBe(`${['a', 'b'][won]}-${round}`);
    }
  });

  it('lists in lexicographic order with prefix, delimiter and pages', async () => {
    const names = ['list/b', 'list/a', 'list/c/1', 'list/c/2', 'list/d', 'list/e', 'other/x'];
    for (const n of names) server.put(BUCKET, n, n);
    const bucket = storage(token).bucket(BUCKET);
    const [all] = await bucket.getFiles({ prefix: 'list/' });
    expect(all.map((f) => f.name)).toEqual(['list/a', 'list/b', 'list/c/1', 'list/c/2', 'list/d', 'list/e']);
    const pages: string[][] = [];
    let query: object | null = { prefix: 'list/', maxResults: 2, autoPaginate: false };
    while (query) {
      const [files, next]: [{ name: string }[], object | null, unknown] = (await bucket.getFiles(
        query,
      )) as never;
      pages.push(files.map((f) => f.name));
      query = next;
    }
    expect(pages).toEqual([
      ['list/a', 'list/b'],
      ['list/c/1', 'list/c/2'],
      ['list/d', 'list/e'],
    ]);
    const [top, , raw] = await bucket.getFiles({ prefix: 'list/', delimiter: '/', autoPaginate: false });
    expect(top.map((f) => f.name)).toEqual(['list/a', 'list/b', 'list/d', 'list/e']);
    expect((raw as { prefixes?: string[] }).prefixes).toEqual(['list/c/']);
  });

  it('deletes, answers 404 for a missing object, 412 for a stale generation and 403 under a hold', async () => {
    const bucket = storage(token).bucket(BUCKET);
    server.put(BUCKET, 'del/a', 'a');
    const gen = Number(server.object(BUCKET, 'del/a')?.generation);
    expect(await codeOf(bucket.file('del/a').delete({ ifGenerationMatch: gen - 1 }))).toBe(412);
    await bucket.file('del/a').delete({ ifGenerationMatch: gen });
    expect(server.object(BUCKET, 'del/a')).toBeUndefined();
    expect(await codeOf(bucket.file('del/a').delete())).toBe(404);
    server.put(BUCKET, 'del/held', 'h', { temporaryHold: true });
    expect(await codeOf(bucket.file('del/held').delete())).toBe(403);
    expect(await codeOf(bucket.file('del/held').save('over', { resumable: false }))).toBe(403);
    expect(
      await codeOf(
        bucket.file('del/held').setMetadata({ temporaryHold: false }, { ifMetagenerationMatch: 2 }),
      ),
    ).toBe(412);
    await bucket.file('del/held').setMetadata({ temporaryHold: false }, { ifMetagenerationMatch: 1 });
    expect(server.object(BUCKET, 'del/held')?.metageneration).toBe(2);
    await bucket.file('del/held').delete();
    expect(server.object(BUCKET, 'del/held')).toBeUndefined();
  });

  it('answers 400 when the bytes do not match the crc32c or md5Hash the client sent', async () => {
    const file = storage(token).bucket(BUCKET).file('hash/bad');
    const wrong = crc32c(Buffer.from('something else'));
    expect(
      await codeOf(
        file.save('payload', { resumable: false, validation: false, metadata: { crc32c: wrong } }),
      ),
    ).toBe(400);
    expect(
      await codeOf(
        saveResumable(file, 'payload', {
          validation: false,
          metadata: { md5Hash: 'AAAAAAAAAAAAAAAAAAAAAA==' },
        }),
      ),
    ).toBe(400);
    expect(server.object(BUCKET, 'hash/bad')).toBeUndefined();
    await file.save('payload', { resumable: false, metadata: { crc32c: crc32c(Buffer.from('payload')) } });
    expect(server.object(BUCKET, 'hash/bad')?.data.toString()).toBe('payload');
  });

  it('retries a 503 only for a preconditioned write (the library treats a bare insert as non-idempotent)', async () => {
    server.failNext(1, 'http503', { path: 'uploadType=multipart' });
    const shared = storage(token).bucket(BUCKET);
    expect(await codeOf(shared.file('retry/bare').save('x', { resumable: false }))).toBe(503);
    expect(server.object(BUCKET, 'retry/bare')).toBeUndefined();
    // The library turns autoRetry off on the Storage instance for a bare save and leaves it off:
    // a later preconditioned save on the same instance is not retried either.
    server.failNext(1, 'http429', { path: 'uploadType=multipart' });
    const stuck = shared
      .file('retry/stuck')
      .save('x', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    expect(await codeOf(stuck)).toBe(429);
    server.failNext(2, 'http429', { path: 'uploadType=multipart' });
    await storage(token)
      .bucket(BUCKET)
      .file('retry/pre')
      .save('x', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    expect(server.calls.filter((c) => c.query.name === 'retry/pre').length).toBe(3);
    server.failNext(1, 'reset', { method: 'PUT' });
    const bucket = storage(token).bucket(BUCKET);
    await saveResumable(bucket.file('retry/reset'), 'y', { preconditionOpts: { ifGenerationMatch: 0 } });
    expect(server.object(BUCKET, 'retry/reset')?.data.toString()).toBe('y');
    expect(server.pendingUploads()).toBe(0);
  });

  it('a lost answer to a create with ifGenerationMatch 0: multipart retries into 412, resumable gets its object', async () => {
    const bucket = storage(token).bucket(BUCKET);
    // Multipart: the insert committed, the client never heard; its retry finds the object -> 412.
    server.failNext(1, 'lost', { path: 'uploadType=multipart' });
    const multipart = await codeOf(
      bucket.file('lost/multi').save('m', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } }),
    );
    expect(multipart).toBe(412);
    expect(server.object(BUCKET, 'lost/multi')?.data.toString()).toBe('m');
    // Resumable: the final chunk committed; the retry asks the session, which answers the object.
    server.failNext(1, 'lost', { method: 'PUT' });
    const resumable = await codeOf(
      saveResumable(bucket.file('lost/res'), 'r', { preconditionOpts: { ifGenerationMatch: 0 } }),
    );
    expect(resumable).toBe('ok');
    expect(server.object(BUCKET, 'lost/res')?.data.toString()).toBe('r');
    expect(server.pendingUploads()).toBe(0);
  });

  it('cancels a resumable session with 499 and reports status queries with 308 and Range', async () => {
    const file = storage(token).bucket(BUCKET).file('sess/x');
    const [uri] = await file.createResumableUpload();
    expect(server.pendingUploads()).toBe(1);
    const put = (range: string, body?: Buffer) =>
      fetch(uri, { method: 'PUT', headers: { 'Content-Range': range }, body, redirect: 'manual' });
    const empty = await put('bytes */*');
    expect([empty.status, empty.headers.get('range')]).toEqual([308, null]);
    const chunk = await put('bytes 0-262143/*', Buffer.alloc(262144, 1));
    expect([chunk.status, chunk.headers.get('range')]).toEqual([308, 'bytes=0-262143']);
    const query = await put('bytes */524288');
    expect([query.status, query.headers.get('range')]).toEqual([308, 'bytes=0-262143']);
    expect((await fetch(uri, { method: 'DELETE' })).status).toBe(499);
    expect(server.pendingUploads()).toBe(0);
    expect(server.object(BUCKET, 'sess/x')).toBeUndefined();
  });

  it('answers 401 without a token or with one it did not issue', async () => {
    const anonymous = storage(undefined, { useAuthWithCustomEndpoint: false }).bucket(BUCKET);
    expect(await codeOf(anonymous.file('small/multi.txt').getMetadata())).toBe(401);
    expect(await codeOf(anonymous.file('auth/x').save('x', { resumable: false }))).toBe(401);
    const forged = storage('ya29.not-issued').bucket(BUCKET);
    expect(await codeOf(forged.file('small/multi.txt').download())).toBe(401);
  });

  it('enforces IAM: create without delete cannot overwrite, and each method needs its permission', async () => {
    const who = 'creator@p.iam.gserviceaccount.com';
    const bucket = storage(server.issueToken(who)).bucket(BUCKET);
    server.iam = true;
    server.grant(who, ['storage.objects.create']);
    await bucket.file('iam/new').save('1', { resumable: false, preconditionOpts: { ifGenerationMatch: 0 } });
    let message = '';
    try {
      await saveResumable(bucket.file('iam/new'), '2', {});
    } catch (err) {
      message = String((err as Error).message);
    }
    expect(message).toContain(`${who} does not have storage.objects.delete access`);
    expect(await codeOf(bucket.file('iam/new').download())).toBe(403);
    expect(await codeOf(bucket.getFiles({ prefix: 'iam/' }))).toBe(403);
    server.grant(who, ['storage.objects.delete', 'storage.objects.get', 'storage.objects.list']);
    await saveResumable(bucket.file('iam/new'), '2', {});
    expect((await bucket.file('iam/new').download())[0].toString()).toBe('2');
  });

  it('serves Application Default Credentials from the metadata server (GCE_METADATA_HOST)', async () => {
    server.metadata = { email: 'node@p.iam.gserviceaccount.com', project: 'p', cluster: 'prod' };
    const env = { GCE_METADATA_HOST: server.host, GOOGLE_APPLICATION_CREDENTIALS: undefined, HOME: dir };
    await withEnv(env, async () => {
      await storage().bucket(BUCKET).file('adc/gce').save('from metadata', { resumable: false });
    });
    const call = server.calls.find((c) => c.query.name === 'adc/gce');
    expect(call?.principal).toBe('node@p.iam.gserviceaccount.com');
    const token = server.calls.find((c) => c.path.endsWith('/service-accounts/default/token'));
    expect(token?.query.scopes).toContain('devstorage.full_control');
    const plain = await fetch(`${server.url}/computeMetadata/v1/project/project-id`);
    expect(plain.status).toBe(403);
    const flavoured = await fetch(`${server.url}/computeMetadata/v1/instance/attributes/cluster-name`, {
      headers: { 'Metadata-Flavor': 'Google' },
    });
    expect([flavoured.status, flavoured.headers.get('metadata-flavor'), await flavoured.text()]).toEqual([
      200,
      'Google',
      'prod',
    ]);
    server.metadata = {
      email: 'node@p.iam.gserviceaccount.com',
      project: 'p',
      tokenError: {
        status: 403,
        body: "Unable to generate access token; IAM returned 403 Forbidden: Permission 'iam.serviceAccounts.getAccessToken' denied",
      },
    };
    const failed = await withEnv(env, () =>
      codeOf(storage().bucket(BUCKET).file('adc/gce2').save('x', { resumable: false })),
    );
    expect(failed).toBe(403);
    expect(server.object(BUCKET, 'adc/gce2')).toBeUndefined();
  });

  it('serves external_account credentials through STS, with and without impersonation', async () => {
    const oidc = `eyJhbGciOiJSUzI1NiJ9.${randomBytes(24).toString('base64url')}.sig`;
    const tokenFile = join(dir, 'oidc-token');
    await writeFile(tokenFile, oidc);
    server.trustOidcToken(oidc, AUDIENCE, SUBJECT);
    const direct = join(dir, 'direct.json');
    const impersonating = join(dir, 'impersonate.json');
    await writeFile(
      direct,
      JSON.stringify(externalAccountFile({ url: server.url, audience: AUDIENCE, tokenFile })),
    );
    await writeFile(
      impersonating,
      JSON.stringify(
        externalAccountFile({ url: server.url, audience: AUDIENCE, tokenFile, impersonate: EXPORTER }),
      ),
    );
    const save = (file: string, name: string) =>
      withEnv({ GOOGLE_APPLICATION_CREDENTIALS: file, HOME: dir }, () =>
        codeOf(storage().bucket(BUCKET).file(name).save(name, { resumable: false })),
      );
    expect(await save(direct, 'wif/direct')).toBe('ok');
    expect(server.calls.find((c) => c.query.name === 'wif/direct')?.principal).toBe(
      federatedPrincipal(AUDIENCE, SUBJECT),
    );
    expect(await save(impersonating, 'wif/denied')).toBe(403);
    expect(server.object(BUCKET, 'wif/denied')).toBeUndefined();
    server.allowImpersonation(SUBJECT, EXPORTER);
    expect(await save(impersonating, 'wif/impersonated')).toBe('ok');
    expect(server.calls.find((c) => c.query.name === 'wif/impersonated')?.principal).toBe(EXPORTER);
    await writeFile(tokenFile, 'eyJhbGciOiJSUzI1NiJ9.untrusted.sig');
    expect(await save(direct, 'wif/untrusted')).toBe(400);
    expect(server.object(BUCKET, 'wif/untrusted')).toBeUndefined();
  });

  it('keeps every token it issued out of its call log', () => {
    const log = JSON.stringify(server.calls);
    expect(server.issuedTokens.length).toBeGreaterThan(3);
    for (const t of server.issuedTokens) expect(log).not.toContain(t);
  });
});
