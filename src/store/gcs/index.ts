/**
 * A Cloud Storage bucket as the stage: `gs://bucket/prefix`, through `@google-cloud/storage` and
 * Application Default Credentials (GKE Workload Identity, Workload Identity Federation, no keys).
 * An object's etag here is its generation: small objects are single uploads, conditional with
 * `ifGenerationMatch: 0` (create only) or `ifGenerationMatch: <generation>` (compare-and-swap).
 * Part files are resumable uploads in `chunk_size_mb` chunks; a failed chunk is resent from where
 * the server says it stopped, and a failed or stopped upload's session is cancelled. Every upload
 * carries the CRC32C of its bytes, which Cloud Storage checks before it commits the object, and
 * the library checks the stored object's CRC32C again. Every request is retried with backoff
 * (all of them: a write is either conditional or rewrites the same bytes to the same name).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Bucket, File, FileMetadata, Storage } from '@google-cloud/storage';
import type { GcpEnvironment } from '../../config/cloud.js';
import { cloudEnvironment } from '../../config/cloud.js';
import type { GcsStageConfig } from '../../config/schema.js';
import { type Config, gcsStageDefaults } from '../../config/schema.js';
import { internalError, NightshiftError, transientError } from '../../errors.js';
import { type GcpSetup, gcpIdentity, gcpSetup, precheckGcp } from '../../identity/gcp.js';
import type { AccessNeeds, Identity } from '../../identity/principal.js';
import { BucketPath } from '../bucket-path.js';
import {
  type ObjectInfo,
  type ObjectStore,
  PreconditionFailedError,
  type PutFileOptions,
  type PutOptions,
} from '../store.js';
import { gcsStatus, isGcsNotFound, isGcsPreconditionFailed, translateGcsError } from './errors.js';
import { guardPipelineIntoDestroyed } from './pipe-guard.js';

guardPipelineIntoDestroyed();

type GcsSdk = typeof import('@google-cloud/storage');

export interface GcsStoreOptions {
  /** `gs://bucket/prefix`. */
  readonly url: string;
  /** `stage.gcs`, with defaults applied. */
  readonly settings: GcsStageConfig;
  /** The Application Default Credentials inputs. */
  readonly env: GcpEnvironment;
}

const MB = 1024 * 1024;

interface Client {
  storage: Storage;
  bucket: Bucket;
  sdk: GcsSdk;
}

export class GcsStore implements ObjectStore {
  private readonly path: BucketPath;
  private readonly settings: GcsStageConfig;
  private readonly env: GcpEnvironment;
  private client: Promise<Client> | undefined;
  private setup: Promise<GcpSetup> | undefined;

  constructor(options: GcsStoreOptions) {
    this.path = new BucketPath(options.url, 'gs');
    this.settings = options.settings;
    this.env = options.env;
  }

  /** The stage URL, normalised. */
  get url(): string {
    return this.path.url;
  }

  get bucketName(): string {
    return this.path.bucket;
  }

  get prefix(): string {
    return this.path.prefix;
  }

  /** Which credentials ADC uses here, found once; a missing token file fails before any request. */
  private gcpSetup(): Promise<GcpSetup> {
    this.setup ??= gcpSetup(this.env).then(async (setup) => {
      await precheckGcp(setup);
      return setup;
    });
    return this.setup;
  }

  /** The client, made on first use: the library loads only when a gs:// stage is used. */
  private async sdk(): Promise<Client> {
    this.client ??= (async () => {
      const setup = await this.gcpSetup();
      const sdk = await import('@google-cloud/storage');
      const s = this.settings;
      const project = s.project ?? this.env.project;
      const storage = new sdk.Storage({
        ...(setup.file ? { keyFilename: setup.file } : {}),
        ...(project ? { projectId: project } : {}),
        // A Private Service Connect endpoint still needs credentials: the library skips them
        // for a custom endpoint unless told otherwise.
        ...(s.api_endpoint ? { apiEndpoint: s.api_endpoint, useAuthWithCustomEndpoint: true } : {}),
        retryOptions: {
          autoRetry: true,
          maxRetries: s.max_attempts - 1,
          retryDelayMultiplier: 2,
          maxRetryDelay: 32,
          totalTimeout: 600,
          idempotencyStrategy: sdk.IdempotencyStrategy.RetryAlways,
          retryableErrorFn: retryable(sdk),
        },
      });
      return { storage, bucket: storage.bucket(this.bucketName), sdk };
    })();
    return this.client;
  }

  private nameOf(key: string): string {
    return this.path.nameOf(key);
  }

  urlOf(key: string): string {
    return this.path.urlOf(key);
  }

  private failure(err: unknown, permission: string, name: string, options: PutOptions = {}): Error {
    if ((options.ifNoneMatch || options.ifMatch !== undefined) && isGcsPreconditionFailed(err))
      return new PreconditionFailedError(this.path.keyOf(name), { cause: err });
    return translateGcsError(err, { bucket: this.bucketName, permission, name });
  }

  async put(key: string, body: string | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const { bucket, sdk } = await this.sdk();
    const data = Buffer.from(body);
    const name = this.nameOf(key);
    const file = bucket.file(name);
    const crc = new sdk.CRC32C();
    crc.update(data);
    try {
      options.signal?.throwIfAborted();
      await file.save(data, {
        resumable: false,
        validation: 'crc32c',
        metadata: {
          crc32c: crc.toString(),
          ...(options.contentType ? { contentType: options.contentType } : {}),
        },
        ...preconditions(options),
      });
      return { key, size: data.length, etag: generationOf(file.metadata) };
    } catch (err) {
      throw this.failure(err, 'storage.objects.create', name, options);
    }
  }

  async putFile(key: string, path: string, options: PutFileOptions = {}): Promise<ObjectInfo> {
    options.signal?.throwIfAborted();
    const { bucket, sdk } = await this.sdk();
    const name = this.nameOf(key);
    const { size } = await stat(path);
    const file = bucket.file(name);
    let session: string | undefined;
    try {
      const crc32c = await fileCrc32c(sdk, path, name, options);
      const metadata: FileMetadata = {
        crc32c,
        ...this.partFileMetadata(),
        ...(options.contentType ? { contentType: options.contentType } : {}),
      };
      // The session is opened here rather than by the write stream: the library opens it without
      // credentials at a custom endpoint (Private Service Connect), and its URI is what a stopped
      // upload cancels.
      [session] = await file.createResumableUpload({ metadata, ...preconditions(options) });
      options.signal?.throwIfAborted();
      const upload = file.createWriteStream({
        uri: session,
        // A session just opened holds nothing: no need to ask it for its offset first.
        offset: 0,
        resumable: true,
        chunkSize: this.settings.chunk_size_mb * MB,
        validation: 'crc32c',
        metadata,
        ...preconditions(options),
      });
      await pipeline(createReadStream(path, { highWaterMark: MB }), upload, {
        ...(options.signal ? { signal: options.signal } : {}),
      });
      const stored = Number(file.metadata.size);
      if (stored !== size)
        throw internalError(
          `gs://${this.bucketName}/${name} holds ${stored} bytes after upload, expected ${size}`,
        );
      return { key, size, etag: generationOf(file.metadata) };
    } catch (err) {
      await this.cancelSession(session);
      if (options.signal?.aborted)
        throw new NightshiftError('terminated', `upload to gs://${this.bucketName}/${name} aborted`, {
          cause: options.signal.reason ?? err,
        });
      throw this.failure(err, 'storage.objects.create', name, options);
    }
  }

  /** Storage class and holds: part files only (state objects are small and rewritten). */
  private partFileMetadata(): FileMetadata {
    const s = this.settings;
    return {
      ...(s.storage_class ? { storageClass: s.storage_class } : {}),
      ...(s.temporary_hold ? { temporaryHold: true } : {}),
      ...(s.event_based_hold ? { eventBasedHold: true } : {}),
    };
  }

  /**
   * Cancels an unfinished resumable session (DELETE on its URI answers 499), so a failed or
   * stopped upload leaves nothing behind; one already finished or gone is fine.
   */
  private async cancelSession(uri: string | undefined): Promise<void> {
    if (!uri) return;
    const { storage } = await this.sdk();
    await storage.authClient
      .request({ method: 'DELETE', url: uri, validateStatus: () => true, retry: false })
      .catch(() => undefined);
  }

  /**
   * Reads an object and its generation: the metadata first, then that very generation's bytes,
   * so the etag returned is the one of the bytes. Rewritten in between: read again.
   */
  async get(key: string): Promise<{ body: Buffer; info: ObjectInfo } | undefined> {
    const { bucket } = await this.sdk();
    const name = this.nameOf(key);
    for (let attempt = 1; ; attempt++) {
      let generation: string;
      try {
        const [meta] = await bucket.file(name).getMetadata();
        generation = generationOf(meta);
      } catch (err) {
        if (isGcsNotFound(err)) return undefined;
        throw this.failure(err, 'storage.objects.get', name);
      }
      try {
        const [body] = await bucket.file(name, { generation: Number(generation) }).download();
        return { body, info: { key, size: body.length, etag: generation } };
      } catch (err) {
        if (!isGcsNotFound(err) || attempt >= 5) throw this.failure(err, 'storage.objects.get', name);
      }
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const { bucket } = await this.sdk();
    const full = this.path.listPrefix(prefix);
    let pageToken: string | undefined;
    do {
      let files: File[];
      let next: { pageToken?: string };
      try {
        [files, next] = await bucket.getFiles({
          prefix: full,
          autoPaginate: false,
          maxResults: 1000,
          pageToken,
        });
      } catch (err) {
        throw this.failure(err, 'storage.objects.list', full);
      }
      // Cloud Storage lists in lexicographic (UTF-8 byte) order, which is the order the port promises.
      for (const f of files)
        yield {
          key: this.path.keyOf(f.name),
          size: Number(f.metadata.size ?? 0),
          etag: generationOf(f.metadata),
        };
      pageToken = next?.pageToken;
    } while (pageToken);
  }

  async delete(key: string): Promise<void> {
    const { bucket } = await this.sdk();
    const name = this.nameOf(key);
    try {
      await bucket.file(name).delete({ ignoreNotFound: true });
    } catch (err) {
      throw this.failure(err, 'storage.objects.delete', name);
    }
  }

  async download(key: string, path: string): Promise<void> {
    const { bucket } = await this.sdk();
    const name = this.nameOf(key);
    try {
      await bucket.file(name).download({ destination: path, validation: 'crc32c' });
    } catch (err) {
      throw this.failure(err, 'storage.objects.get', name);
    }
  }

  async identity(): Promise<Identity> {
    const setup = await this.gcpSetup();
    const { storage } = await this.sdk();
    return gcpIdentity(setup, storage.authClient, this.settings.project ?? this.env.project);
  }

  accessNeeded(job: string): AccessNeeds {
    return gcsAccessNeeds({ bucket: this.bucketName, prefix: this.prefix, job, settings: this.settings });
  }

  async close(): Promise<void> {
    this.client = undefined;
  }
}

/**
 * The CRC32C of a file, which Cloud Storage checks before it commits the upload; read in the same
 * pass, the SHA-256 computed while the file was written must still match, so what is sent is
 * exactly what was written.
 */
async function fileCrc32c(sdk: GcsSdk, path: string, name: string, options: PutFileOptions): Promise<string> {
  const crc = new sdk.CRC32C();
  const sha = createHash('sha256');
  for await (const chunk of createReadStream(path, { highWaterMark: MB, signal: options.signal })) {
    crc.update(chunk as Buffer);
    sha.update(chunk as Buffer);
  }
  if (options.sha256 && sha.digest('hex') !== options.sha256)
    throw transientError(`${path} no longer has the SHA-256 it had when written; not uploaded to ${name}`, {
      hint: 'the local disk changed or corrupted the file: the next run exports it again',
    });
  return crc.toString();
}

/**
 * The library's own test, plus the HTTP status where it looks only at `code`: the resumable
 * upload's requests fail with errors whose status is in `status`, and a 503 to one of them would
 * otherwise end the upload at once.
 */
function retryable(sdk: GcsSdk): (err: unknown) => boolean {
  return (err) => {
    if (sdk.RETRYABLE_ERR_FN_DEFAULT(err as Parameters<GcsSdk['RETRYABLE_ERR_FN_DEFAULT']>[0])) return true;
    const status = gcsStatus(err);
    return status === 408 || status === 429 || (status !== undefined && status >= 500 && status <= 504);
  };
}

/** The generation of an object's metadata, as the etag of the port. */
function generationOf(meta: FileMetadata | undefined): string {
  const generation = meta?.generation;
  if (generation === undefined || generation === null)
    throw internalError('Cloud Storage returned no generation');
  return String(generation);
}

/** `ifGenerationMatch`: 0 for create-only, the generation for compare-and-swap. */
function preconditions(options: PutOptions): { preconditionOpts?: { ifGenerationMatch: number } } {
  if (options.ifNoneMatch) return { preconditionOpts: { ifGenerationMatch: 0 } };
  if (options.ifMatch !== undefined) {
    const generation = Number(options.ifMatch);
    if (!Number.isSafeInteger(generation) || generation <= 0)
      throw internalError(`${options.ifMatch} is not a Cloud Storage generation`);
    return { preconditionOpts: { ifGenerationMatch: generation } };
  }
  return {};
}

/**
 * The custom role's permissions one job needs on a Cloud Storage stage. Holds are set in the
 * upload's own metadata (objects.insert), which `storage.objects.create` covers; releasing them
 * later (objects.patch, `storage.objects.update`) is an operator's act, not the runner's.
 */
export function gcsPermissions(
  settings?: Pick<GcsStageConfig, 'temporary_hold' | 'event_based_hold'>,
): string[] {
  return [
    'storage.objects.create',
    'storage.objects.get',
    'storage.objects.list',
    // Replacing an existing object (the lease, the checkpoint) needs delete as well as create.
    'storage.objects.delete',
    // Cloud Storage documents storage.objects.update as needed to place holds.
    ...(settings?.temporary_hold || settings?.event_based_hold ? ['storage.objects.update'] : []),
  ];
}

/** The access one job needs on a Cloud Storage stage, with the gcloud commands that grant it. */
export function gcsAccessNeeds(options: {
  bucket: string;
  prefix: string;
  job: string;
  settings?: GcsStageConfig;
}): AccessNeeds {
  const { bucket, prefix, job } = options;
  const jobPath = prefix ? `${prefix}/${job}` : job;
  const objects = `projects/_/buckets/${bucket}/objects/${jobPath}/`;
  const permissions = gcsPermissions(options.settings);
  const condition = `resource.name.startsWith("${objects}") || resource.type == "storage.googleapis.com/Bucket"`;
  const why: Record<string, string> = {
    'storage.objects.create': 'part files, manifests, the lease and the checkpoint (conditional writes)',
    'storage.objects.get': 'the lease and checkpoint; warehouses that download parts',
    'storage.objects.list':
      'finds the last run manifest; lists are checked against the bucket, not the prefix',
    'storage.objects.delete':
      'Cloud Storage requires it to replace an object (the lease and the checkpoint); `nightshift check` deletes its probe',
    'storage.objects.update': 'placing the temporary or event-based hold on each part file',
  };
  return {
    part: 'stage',
    target: `stage gs://${bucket}${prefix ? `/${prefix}` : ''}`,
    grants: permissions.map((permission) => ({
      permission,
      on: permission === 'storage.objects.list' ? `gs://${bucket}` : `gs://${bucket}/${jobPath}/*`,
      why: why[permission] ?? '',
    })),
    documents: [
      {
        title:
          'A custom role and a conditional binding on the bucket (GSA_EMAIL: the service account the pod runs as)',
        language: 'shell',
        text: [
          `gcloud iam roles create nightshiftStage --project PROJECT_ID \\`,
          `  --title "nightshift stage" --permissions ${permissions.join(',')}`,
          `gcloud storage buckets add-iam-policy-binding gs://${bucket} \\`,
          `  --member "serviceAccount:GSA_EMAIL" --role projects/PROJECT_ID/roles/nightshiftStage \\`,
          `  --condition 'title=nightshift-${job},expression=${condition}'`,
        ].join('\n'),
      },
    ],
  };
}

/** The stage for `stage.url: gs://bucket/prefix`, with Application Default Credentials. */
export async function create(config: Config): Promise<ObjectStore> {
  return new GcsStore({
    url: config.stage.url,
    settings: config.stage.gcs ?? gcsStageDefaults(),
    env: cloudEnvironment().gcp,
  });
}
