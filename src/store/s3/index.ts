/**
 * An S3 bucket (or an S3-compatible server: MinIO, R2) as the stage: `s3://bucket/prefix`.
 * Small objects are single PutObjects, conditional with `If-None-Match: *` (create only) or
 * `If-Match: <etag>` (compare-and-swap). Part files carry their SHA-256 so S3 verifies them:
 * up to `part_size_mb` in one PutObject with `x-amz-checksum-sha256`, larger ones as a multipart
 * upload with a SHA-256 per part, aborted on failure or SIGTERM so no parts stay billed.
 * The SDK retries throttling, 5xx and network errors with backoff and jitter (standard mode).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type {
  PutObjectCommandInput,
  S3Client,
  S3ClientConfig,
  ServerSideEncryption,
  StorageClass,
} from '@aws-sdk/client-s3';
import type { AwsCredentialIdentityProvider } from '@aws-sdk/types';
import type { AwsEnvironment } from '../../config/cloud.js';
import { cloudEnvironment, quietAwsSdk } from '../../config/cloud.js';
import type { S3StageConfig } from '../../config/schema.js';
import { type Config, s3StageDefaults } from '../../config/schema.js';
import { internalError } from '../../errors.js';
import { awsCredentials, awsIdentity } from '../../identity/aws.js';
import type { AccessNeeds, Identity } from '../../identity/principal.js';
import { BucketPath } from '../bucket-path.js';
import {
  type ObjectInfo,
  type ObjectStore,
  PreconditionFailedError,
  type PutFileOptions,
  type PutOptions,
} from '../store.js';
import { isNotFound, isPreconditionFailed, translateS3Error } from './errors.js';

type S3Sdk = typeof import('@aws-sdk/client-s3');

export interface S3StoreOptions {
  /** `s3://bucket/prefix`. */
  readonly url: string;
  /** `stage.s3`, with defaults applied. */
  readonly settings: S3StageConfig;
  /** The AWS environment (credentials chain inputs, region, endpoints). */
  readonly env: AwsEnvironment;
}

const MB = 1024 * 1024;

export class S3Store implements ObjectStore {
  private readonly path: BucketPath;
  private readonly settings: S3StageConfig;
  private readonly env: AwsEnvironment;
  private readonly region: string;
  private credentials: Promise<AwsCredentialIdentityProvider> | undefined;
  private client: Promise<{ s3: S3Client; sdk: S3Sdk }> | undefined;

  constructor(options: S3StoreOptions) {
    this.path = new BucketPath(options.url, 's3');
    this.settings = options.settings;
    this.env = options.env;
    this.region = options.settings.region ?? options.env.region ?? 'us-east-1';
  }

  /** The stage URL, normalised. */
  get url(): string {
    return this.path.url;
  }

  get bucket(): string {
    return this.path.bucket;
  }

  get prefix(): string {
    return this.path.prefix;
  }

  /** The custom S3 endpoint (MinIO, R2, a VPC endpoint), if any. */
  private get endpoint(): string | undefined {
    return this.settings.endpoint ?? this.env.s3Endpoint;
  }

  /** One credentials provider for S3 and STS, so a role is assumed once. */
  private credentialsProvider(): Promise<AwsCredentialIdentityProvider> {
    this.credentials ??= awsCredentials({ env: this.env, region: this.region });
    return this.credentials;
  }

  /** The SDK client, made on first use: the SDK loads only when an s3:// stage is used. */
  private async sdk(): Promise<{ s3: S3Client; sdk: S3Sdk }> {
    this.client ??= (async () => {
      const sdk = await import('@aws-sdk/client-s3');
      const s = this.settings;
      const checksum = s.request_checksum === 'when_required' ? 'WHEN_REQUIRED' : 'WHEN_SUPPORTED';
      const endpoint = this.endpoint;
      const config: S3ClientConfig = {
        region: this.region,
        credentials: await this.credentialsProvider(),
        maxAttempts: s.max_attempts,
        retryMode: 'standard',
        requestChecksumCalculation: checksum,
        responseChecksumValidation: checksum,
        forcePathStyle: s.force_path_style,
        ...(endpoint ? { endpoint } : {}),
      };
      return { s3: new sdk.S3Client(config), sdk };
    })();
    return this.client;
  }

  private keyOf(key: string): string {
    return this.path.nameOf(key);
  }

  urlOf(key: string): string {
    return this.path.urlOf(key);
  }

  /** Encryption headers for every object written. */
  private encryption(): Pick<PutObjectCommandInput, 'ServerSideEncryption' | 'SSEKMSKeyId'> {
    const s = this.settings;
    return {
      ...(s.server_side_encryption
        ? { ServerSideEncryption: s.server_side_encryption as ServerSideEncryption }
        : {}),
      ...(s.kms_key_id ? { SSEKMSKeyId: s.kms_key_id } : {}),
    };
  }

  /** Storage class and Object Lock: part files only (state objects are small and rewritten). */
  private partFileParams(): Partial<PutObjectCommandInput> {
    const s = this.settings;
    return {
      ...(s.storage_class ? { StorageClass: s.storage_class as StorageClass } : {}),
      ...(s.object_lock_mode && s.object_lock_retention
        ? {
            ObjectLockMode: s.object_lock_mode,
            ObjectLockRetainUntilDate: new Date(Date.now() + s.object_lock_retention),
          }
        : {}),
    };
  }

  async put(key: string, body: string | Uint8Array, options: PutOptions = {}): Promise<ObjectInfo> {
    const { s3, sdk } = await this.sdk();
    const data = typeof body === 'string' ? Buffer.from(body) : Buffer.from(body);
    const Key = this.keyOf(key);
    try {
      const out = await s3.send(
        new sdk.PutObjectCommand({
          Bucket: this.bucket,
          Key,
          Body: data,
          ContentLength: data.length,
          ...(options.contentType ? { ContentType: options.contentType } : {}),
          ...conditions(options),
          ...this.encryption(),
        }),
        { abortSignal: options.signal },
      );
      return { key, size: data.length, etag: out.ETag ?? '' };
    } catch (err) {
      if (conditionFailed(options, err)) throw new PreconditionFailedError(key, { cause: err });
      throw translateS3Error(err, { bucket: this.bucket, action: 's3:PutObject', key: Key });
    }
  }

  async putFile(key: string, path: string, options: PutFileOptions = {}): Promise<ObjectInfo> {
    options.signal?.throwIfAborted();
    const { size } = await stat(path);
    const Key = this.keyOf(key);
    try {
      const etag =
        size <= this.settings.part_size_mb * MB
          ? await this.putSingle(Key, path, size, options)
          : await this.putMultipart(Key, path, size, options);
      return { key, size, etag };
    } catch (err) {
      if (conditionFailed(options, err)) throw new PreconditionFailedError(key, { cause: err });
      if (options.signal?.aborted)
        throw translateS3Error(options.signal.reason ?? err, {
          bucket: this.bucket,
          action: 's3:PutObject',
          key: Key,
        });
      throw translateS3Error(err, { bucket: this.bucket, action: 's3:PutObject', key: Key });
    }
  }

  /**
   * One PutObject; S3 checks the body against the SHA-256 the caller computed while writing it.
   * The file (at most `part_size_mb`) is read into memory so the SDK can send it again on retry;
   * a stream would be spent by the first attempt.
   */
  private async putSingle(Key: string, path: string, size: number, options: PutFileOptions): Promise<string> {
    const { s3, sdk } = await this.sdk();
    const body = await readFile(path, { signal: options.signal });
    if (body.length !== size) throw internalError(`${path} changed while it was being uploaded`);
    const out = await s3.send(
      new sdk.PutObjectCommand({
        Bucket: this.bucket,
        Key,
        Body: body,
        ContentLength: size,
        ...(options.sha256 ? { ChecksumSHA256: Buffer.from(options.sha256, 'hex').toString('base64') } : {}),
        ...(options.contentType ? { ContentType: options.contentType } : {}),
        ...conditions(options),
        ...this.encryption(),
        ...this.partFileParams(),
      }),
      { abortSignal: options.signal },
    );
    return out.ETag ?? '';
  }

  /**
   * A multipart upload of `part_size_mb` parts, `queue_size` at once. Each UploadPart carries
   * its SHA-256 (ChecksumAlgorithm), which S3 verifies; lib-storage hands the parts' checksums to
   * CompleteMultipartUpload, and S3 checks them again there. The whole-file SHA-256 is not what
   * S3 stores for a multipart object (it keeps a checksum of the part checksums), so the store
   * confirms the size afterwards; the manifest keeps the whole-file SHA-256.
   */
  private async putMultipart(
    Key: string,
    path: string,
    size: number,
    options: PutFileOptions,
  ): Promise<string> {
    const { s3, sdk } = await this.sdk();
    const { Upload } = await import('@aws-sdk/lib-storage');
    const upload = new Upload({
      client: s3,
      partSize: this.settings.part_size_mb * MB,
      queueSize: this.settings.queue_size,
      leavePartsOnError: false,
      params: {
        Bucket: this.bucket,
        Key,
        Body: createReadStream(path, { highWaterMark: MB }) as Readable,
        ContentLength: size,
        ChecksumAlgorithm: 'SHA256',
        // CompleteMultipartUpload takes the write conditions (lib-storage passes params on).
        ...conditions(options),
        ...(options.contentType ? { ContentType: options.contentType } : {}),
        ...this.encryption(),
        ...this.partFileParams(),
      },
    });
    const onAbort = () => void upload.abort();
    options.signal?.addEventListener('abort', onAbort, { once: true });
    if (options.signal?.aborted) onAbort();
    try {
      const out = await upload.done();
      const head = await s3.send(new sdk.HeadObjectCommand({ Bucket: this.bucket, Key }));
      if (head.ContentLength !== size)
        throw internalError(
          `s3://${this.bucket}/${Key} holds ${head.ContentLength} bytes after upload, expected ${size}`,
        );
      return out.ETag ?? head.ETag ?? '';
    } catch (err) {
      // The upload's own failure is what the caller needs; a failed abort is added to it.
      await this.abandon(upload, Key).catch((abortErr: unknown) => {
        if (err instanceof Error && err.cause === undefined) err.cause = abortErr;
      });
      throw err;
    } finally {
      options.signal?.removeEventListener('abort', onAbort);
    }
  }

  /**
   * Makes sure a failed or aborted multipart upload is aborted on S3. lib-storage's done() rejects
   * as soon as its signal fires, while part uploads (and its own AbortMultipartUpload) still run,
   * and CreateMultipartUpload may answer after that. So: abort at once when the upload id is
   * known, wait for the part uploads in flight, and abort again, since S3 says a part that was
   * in progress during an abort may still be stored.
   */
  private async abandon(upload: object, Key: string): Promise<void> {
    const internals = upload as { concurrentUploaders?: Promise<unknown>[]; uploadId?: string };
    await this.abortUpload(Key, internals.uploadId);
    await Promise.allSettled(internals.concurrentUploaders ?? []);
    await this.abortUpload(Key, internals.uploadId);
  }

  /** AbortMultipartUpload; an upload already gone (404 NoSuchUpload) is fine. */
  private async abortUpload(Key: string, UploadId: string | undefined): Promise<void> {
    if (!UploadId) return;
    const { s3, sdk } = await this.sdk();
    try {
      await s3.send(new sdk.AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId }));
    } catch (err) {
      if (!isNotFound(err))
        throw translateS3Error(err, { bucket: this.bucket, action: 's3:AbortMultipartUpload', key: Key });
    }
  }

  async get(key: string): Promise<{ body: Buffer; info: ObjectInfo } | undefined> {
    const { s3, sdk } = await this.sdk();
    const Key = this.keyOf(key);
    try {
      const out = await s3.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key }));
      const body = Buffer.from((await out.Body?.transformToByteArray()) ?? new Uint8Array());
      return { body, info: { key, size: body.length, etag: out.ETag ?? '' } };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      if (s3ErrorIsDenied(err) && !(await this.exists(Key))) return undefined;
      throw translateS3Error(err, { bucket: this.bucket, action: 's3:GetObject', key: Key });
    }
  }

  /**
   * Whether a key exists, by listing it. S3 answers 403 rather than 404 for a missing object
   * unless the caller may list the bucket without a prefix condition; the minimal policy allows
   * listing only under the job's prefix, so a denied read of the lease or checkpoint before they
   * exist is told apart from a real denial this way.
   */
  private async exists(Key: string): Promise<boolean> {
    const { s3, sdk } = await this.sdk();
    try {
      const out = await s3.send(
        new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix: Key, MaxKeys: 1 }),
      );
      return (out.Contents ?? []).some((o) => o.Key === Key);
    } catch {
      return true; // the listing was refused too: report the original denial
    }
  }

  async *list(prefix: string): AsyncIterable<ObjectInfo> {
    const { s3, sdk } = await this.sdk();
    const Prefix = this.path.listPrefix(prefix);
    let ContinuationToken: string | undefined;
    do {
      let out: import('@aws-sdk/client-s3').ListObjectsV2CommandOutput;
      try {
        out = await s3.send(new sdk.ListObjectsV2Command({ Bucket: this.bucket, Prefix, ContinuationToken }));
      } catch (err) {
        throw translateS3Error(err, { bucket: this.bucket, action: 's3:ListBucket', key: Prefix });
      }
      // S3 lists in UTF-8 binary key order, which is the order the port promises.
      for (const o of out.Contents ?? []) {
        if (o.Key) yield { key: this.path.keyOf(o.Key), size: o.Size ?? 0, etag: o.ETag ?? '' };
      }
      ContinuationToken = out.IsTruncated ? out.NextContinuationToken : undefined;
    } while (ContinuationToken);
  }

  async delete(key: string): Promise<void> {
    const { s3, sdk } = await this.sdk();
    const Key = this.keyOf(key);
    try {
      await s3.send(new sdk.DeleteObjectCommand({ Bucket: this.bucket, Key }));
    } catch (err) {
      if (!isNotFound(err))
        throw translateS3Error(err, { bucket: this.bucket, action: 's3:DeleteObject', key: Key });
    }
  }

  async download(key: string, path: string): Promise<void> {
    const { s3, sdk } = await this.sdk();
    const Key = this.keyOf(key);
    try {
      const out = await s3.send(new sdk.GetObjectCommand({ Bucket: this.bucket, Key }));
      if (!out.Body) throw internalError(`s3://${this.bucket}/${Key} returned no body`);
      await pipeline(out.Body as Readable, createWriteStream(path));
    } catch (err) {
      throw translateS3Error(err, { bucket: this.bucket, action: 's3:GetObject', key: Key });
    }
  }

  async identity(): Promise<Identity> {
    return awsIdentity(
      { env: this.env, region: this.region, s3Endpoint: this.endpoint },
      await this.credentialsProvider(),
    );
  }

  accessNeeded(job: string): AccessNeeds {
    return s3AccessNeeds({ bucket: this.bucket, prefix: this.prefix, job, settings: this.settings });
  }

  async close(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    if (client) (await client.catch(() => undefined))?.s3.destroy();
  }
}

/**
 * Whether a conditional write lost: 412, or 409 for a concurrent one; and for `If-Match` on a
 * key that does not exist, S3 may answer 404 NoSuchKey rather than 412.
 */
function conditionFailed(options: PutOptions, err: unknown): boolean {
  if (options.ifMatch !== undefined && isNotFound(err)) return true;
  return (options.ifNoneMatch === true || options.ifMatch !== undefined) && isPreconditionFailed(err);
}

/** The conditional-write headers of a put. */
function conditions(options: PutOptions): { IfNoneMatch?: string; IfMatch?: string } {
  return {
    ...(options.ifNoneMatch ? { IfNoneMatch: '*' } : {}),
    ...(options.ifMatch !== undefined ? { IfMatch: options.ifMatch } : {}),
  };
}

function s3ErrorIsDenied(err: unknown): boolean {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return e?.name === 'AccessDenied' || e?.$metadata?.httpStatusCode === 403;
}

/** The least-privilege IAM policy of one job on an S3 stage: what `nightshift iam` and docs/stage-s3.md show. */
export function s3Policy(options: {
  bucket: string;
  prefix: string;
  job: string;
  settings?: Pick<S3StageConfig, 'server_side_encryption' | 'kms_key_id' | 'object_lock_mode'>;
}): Record<string, unknown> {
  const { bucket, prefix, job, settings } = options;
  const jobPath = prefix ? `${prefix}/${job}` : job;
  const objects = `arn:aws:s3:::${bucket}/${jobPath}/*`;
  const statements: Record<string, unknown>[] = [
    {
      Sid: 'StageObjects',
      Effect: 'Allow',
      Action: ['s3:PutObject', 's3:GetObject', 's3:AbortMultipartUpload'],
      Resource: objects,
    },
    {
      Sid: 'ListJobPrefix',
      Effect: 'Allow',
      Action: 's3:ListBucket',
      Resource: `arn:aws:s3:::${bucket}`,
      Condition: { StringLike: { 's3:prefix': [`${jobPath}/*`] } },
    },
    {
      Sid: 'PreflightProbeCleanup',
      Effect: 'Allow',
      Action: 's3:DeleteObject',
      Resource: `arn:aws:s3:::${bucket}/${jobPath}/preflight/*`,
    },
  ];
  if (settings?.object_lock_mode)
    statements.push({
      Sid: 'ObjectLockRetention',
      Effect: 'Allow',
      Action: 's3:PutObjectRetention',
      Resource: objects,
    });
  if (settings?.server_side_encryption?.startsWith('aws:kms'))
    statements.push({
      Sid: 'StageKmsKey',
      Effect: 'Allow',
      Action: ['kms:GenerateDataKey', 'kms:Decrypt'],
      Resource: settings.kms_key_id?.startsWith('arn:')
        ? settings.kms_key_id
        : 'arn:aws:kms:<region>:<account>:key/<key id>',
    });
  return { Version: '2012-10-17', Statement: statements };
}

/** The access one job needs on an S3 stage, with the policy document. */
export function s3AccessNeeds(options: {
  bucket: string;
  prefix: string;
  job: string;
  settings?: S3StageConfig;
}): AccessNeeds {
  const { bucket, prefix, job } = options;
  const jobPath = prefix ? `${prefix}/${job}` : job;
  const policy = s3Policy(options);
  const grants = [
    {
      permission: 's3:PutObject',
      on: `arn:aws:s3:::${bucket}/${jobPath}/*`,
      why: 'part files, manifests, the lease and the checkpoint (conditional writes)',
    },
    {
      permission: 's3:GetObject',
      on: `arn:aws:s3:::${bucket}/${jobPath}/*`,
      why: 'the lease and checkpoint; the size check after a multipart upload; warehouses that download parts',
    },
    {
      permission: 's3:AbortMultipartUpload',
      on: `arn:aws:s3:::${bucket}/${jobPath}/*`,
      why: 'a failed or stopped upload leaves no parts billed',
    },
    {
      permission: 's3:ListBucket',
      on: `arn:aws:s3:::${bucket} (s3:prefix ${jobPath}/*)`,
      why: 'tells a missing lease or checkpoint from a denied one; finds the last run manifest',
    },
    {
      permission: 's3:DeleteObject',
      on: `arn:aws:s3:::${bucket}/${jobPath}/preflight/*`,
      why: '`nightshift check` deletes its probe; a run deletes nothing',
    },
  ];
  if (options.settings?.object_lock_mode)
    grants.push({
      permission: 's3:PutObjectRetention',
      on: `arn:aws:s3:::${bucket}/${jobPath}/*`,
      why: 'Object Lock retention on part files',
    });
  if (options.settings?.server_side_encryption?.startsWith('aws:kms'))
    grants.push({
      permission: 'kms:GenerateDataKey, kms:Decrypt',
      on: options.settings.kms_key_id ?? 'the aws/s3 key',
      why: 'SSE-KMS encryption of what the run writes and reads',
    });
  return {
    part: 'stage',
    target: `stage s3://${bucket}${prefix ? `/${prefix}` : ''}`,
    grants,
    documents: [
      {
        title: 'IAM policy for the role the pod runs as',
        language: 'json',
        text: JSON.stringify(policy, null, 2),
      },
    ],
  };
}

/** The stage for `stage.url: s3://bucket/prefix`, with the AWS default credential chain. */
export async function create(config: Config): Promise<ObjectStore> {
  quietAwsSdk();
  return new S3Store({
    url: config.stage.url,
    settings: config.stage.s3 ?? s3StageDefaults(),
    env: cloudEnvironment().aws,
  });
}
