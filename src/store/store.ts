/**
 * The ObjectStore port: what the runner needs from object storage (S3, GCS, a local directory).
 * Keys are relative to the stage URL and use `/`. Conditional writes are what make the lease and
 * the checkpoint safe when two runs overlap.
 */
import type { Config } from '../config/schema.js';
import type { AccessNeeds, Identity } from '../identity/principal.js';

/** An object's identity after a write or a read. */
export interface ObjectInfo {
  /** Key relative to the stage root. */
  readonly key: string;
  /** Size in bytes. */
  readonly size: number;
  /** Opaque version tag for conditional writes (S3 ETag, GCS generation, local content hash). */
  readonly etag: string;
}

export interface PutOptions {
  /** Write only if the object does not exist yet (S3 `If-None-Match: *`, GCS generation 0). */
  ifNoneMatch?: boolean;
  /** Write only if the object's current etag is this one (compare-and-swap). */
  ifMatch?: string;
  /** MIME type. */
  contentType?: string;
  /** Aborts the upload (and any multipart parts) when it fires. */
  signal?: AbortSignal;
}

export interface PutFileOptions extends PutOptions {
  /** The caller deletes the file afterwards anyway: a local store may move it instead of copying. */
  consume?: boolean;
  /** Expected sha256 (hex) of the file: a store that can verify it end to end does. */
  sha256?: string;
}

/** A conditional write or delete whose condition did not hold (HTTP 412, or 409 on a race). */
export class PreconditionFailedError extends Error {
  readonly key: string;
  constructor(key: string, options?: { cause?: unknown }) {
    super(`precondition failed for ${key}: another writer changed it first`, options);
    this.name = 'PreconditionFailedError';
    this.key = key;
  }
}

export interface ObjectStore {
  /** The stage URL, without credentials, for messages and the manifest. */
  readonly url: string;

  /** URL of one object as a warehouse reads it (`file:///...`, `s3://...`, `gs://...`). */
  urlOf(key: string): string;

  /** Uploads a local file. Honors `signal`: an aborted upload leaves nothing billed behind. */
  putFile(key: string, path: string, options?: PutFileOptions): Promise<ObjectInfo>;

  /** Writes a small object, optionally conditionally; throws PreconditionFailedError. */
  put(key: string, body: string | Uint8Array, options?: PutOptions): Promise<ObjectInfo>;

  /** Reads a small object with its etag; undefined when it does not exist. */
  get(key: string): Promise<{ body: Buffer; info: ObjectInfo } | undefined>;

  /** Lists objects whose keys start with `prefix`, in key order. */
  list(prefix: string): AsyncIterable<ObjectInfo>;

  /** Deletes an object; deleting a missing object is not an error. */
  delete(key: string): Promise<void>;

  /** Copies an object to a local file (for warehouses that read local files). */
  download(key: string, path: string): Promise<void>;

  /** The object's path on this machine, when the store is a local directory. */
  localPath?(key: string): string;

  /** Releases clients and sockets. */
  close?(): Promise<void>;

  /** Who the store acts as (mechanism and principal), for `whoami` and `check`; never a secret. */
  identity?(): Promise<Identity>;

  /** The least-privilege access a job needs on this store, for `nightshift iam`. */
  accessNeeded?(job: string): AccessNeeds;
}

/** Builds the stage a job's configuration names (see src/backends.ts). */
export type StoreFactory = (config: Config) => Promise<ObjectStore>;
