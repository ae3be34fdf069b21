/**
 * Cloud Storage errors in the terms of the exit code contract. The client library has already
 * retried what it retries (429, 5xx, network, with backoff) when an error gets here, so those are
 * transient (exit 75); refused credentials or permissions are identity errors (exit 5) naming
 * the bucket, the permission and the fix. Messages carry names only, never a token.
 */
import {
  configError,
  identityError,
  internalError,
  NightshiftError,
  toNightshiftError,
  transientError,
} from '../../errors.js';
import { PreconditionFailedError } from '../store.js';

/** The fields of a library error this file looks at: ApiError (JSON API) or a gaxios error. */
interface GcsErrorShape {
  name?: string;
  code?: number | string;
  message?: string;
  errors?: { reason?: string; message?: string }[];
  response?: { status?: number };
  status?: number;
}

const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND']);

/** The HTTP status of a failed Cloud Storage request, when it got a response. */
export function gcsStatus(err: unknown): number | undefined {
  const e = (err ?? {}) as GcsErrorShape;
  if (typeof e.code === 'number') return e.code;
  const status = e.response?.status ?? e.status;
  if (status !== undefined) return status;
  // The resumable upload reports an exhausted retry as "Retry limit exceeded - status: 503, ...".
  const match = /status: (\d{3})/.exec(e.message ?? '');
  return match ? Number(match[1]) : undefined;
}

/** The first `reason` of the JSON API error (`conditionNotMet`, `notFound`, `forbidden`). */
export function gcsReason(err: unknown): string | undefined {
  return ((err ?? {}) as GcsErrorShape).errors?.[0]?.reason;
}

export const isGcsNotFound = (err: unknown) => gcsStatus(err) === 404;

/** A precondition (`ifGenerationMatch`) that did not hold. */
export const isGcsPreconditionFailed = (err: unknown) =>
  gcsStatus(err) === 412 || gcsReason(err) === 'conditionNotMet';

export interface GcsErrorContext {
  readonly bucket: string;
  /** The permission the failed call needs (`storage.objects.create`). */
  readonly permission: string;
  /** The object name, relative to the bucket. */
  readonly name?: string;
}

/** Translates an error from a Cloud Storage call (already retried) into a NightshiftError. */
export function translateGcsError(err: unknown, where: GcsErrorContext): Error {
  if (err instanceof NightshiftError || err instanceof PreconditionFailedError) return err;
  const e = (err ?? {}) as GcsErrorShape;
  const status = gcsStatus(err);
  const target = `gs://${where.bucket}${where.name ? `/${where.name}` : ''}`;
  const message = (e.message ?? String(err)).split('\n')[0];
  const detail = `${status ? `HTTP ${status}: ` : ''}${message}`;
  if (e.name === 'AbortError')
    return new NightshiftError('terminated', `upload to ${target} aborted`, { cause: err });
  if (/\bhold\b|retention/i.test(message) && (status === 403 || status === 400)) {
    return configError(`${target} is protected by a hold or retention policy: ${detail}`, {
      cause: err,
      hint: 'objects under a hold cannot be replaced or deleted: release the hold (gcloud storage objects update --no-temporary-hold) or use a new stage prefix',
    });
  }
  if (status === 401 || status === 403) {
    return identityError(`${where.permission} on ${target} was refused: ${detail}`, {
      cause: err,
      hint: `grant the pod's principal ${where.permission} on gs://${where.bucket} (\`nightshift iam\` prints the role and the gcloud commands); check IAM deny policies and VPC Service Controls`,
    });
  }
  if (e.code === 'FILE_NO_UPLOAD' || /CRC32C|MD5|checksum|hash/i.test(message)) {
    return transientError(`${target}: Cloud Storage holds other bytes than were sent: ${detail}`, {
      cause: err,
      hint: 'their CRC32C differs from the one computed from the file: corrupted on the way (the next run uploads again) or on the local disk',
    });
  }
  if (status === 404 && /bucket/i.test(message)) {
    return configError(`the bucket ${where.bucket} does not exist (${detail})`, {
      cause: err,
      hint: 'check stage.url (gs://bucket/prefix) and stage.gcs.api_endpoint',
    });
  }
  if (status === 400) {
    return configError(`Cloud Storage rejected a request on ${target}: ${detail}`, {
      cause: err,
      hint: 'check stage.gcs: storage_class must be one the bucket allows; event_based_hold needs no retention lock conflict',
    });
  }
  if (
    status === 408 ||
    status === 429 ||
    (status !== undefined && status >= 500) ||
    NETWORK_CODES.has(String(e.code ?? '')) ||
    /Retry (limit|total time limit) exceeded|socket hang up|ECONNRESET|premature close/i.test(message)
  ) {
    return transientError(`${where.permission} on ${target} failed after retries: ${detail}`, {
      cause: err,
      hint: 'Cloud Storage was throttling, unavailable or unreachable; the next run retries',
    });
  }
  const generic = toNightshiftError(err);
  if (generic.code !== 'internal') return generic;
  return internalError(`${where.permission} on ${target}: ${detail}`, { cause: err });
}
