/**
 * S3 errors in the terms of the exit code contract. The SDK has already retried what it retries
 * (throttling, 5xx, network) by the time an error gets here, so those are transient (exit 75);
 * refused credentials or permissions are identity errors (exit 5) naming the bucket, the action
 * and the likely fix. Messages carry names only: the SDK's own messages hold no secrets, and no
 * credential is ever put into one.
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

/** The fields of an SDK service or credential error this file looks at. */
interface AwsErrorShape {
  name?: string;
  code?: string;
  message?: string;
  Code?: string;
  $metadata?: { httpStatusCode?: number };
  $fault?: string;
}

/** Error codes of a request S3 refused because of who sent it. */
const IDENTITY_CODES = new Set([
  'AccessDenied',
  'AllAccessDisabled',
  'InvalidAccessKeyId',
  'SignatureDoesNotMatch',
  'ExpiredToken',
  'InvalidToken',
  'TokenRefreshRequired',
  'AccountProblem',
  'KMS.AccessDeniedException',
]);

const TRANSIENT_CODES = new Set([
  'SlowDown',
  'ServiceUnavailable',
  'InternalError',
  'RequestTimeout',
  'RequestTimeTooSkewed',
  'Throttling',
  'ThrottlingException',
  'TooManyRequestsException',
  'TimeoutError',
  'RequestTimeoutException',
  'OperationAborted',
]);

/** Requests S3 refuses because of a stage.s3 setting the bucket cannot honour. */
const SETTING_CODES = new Set([
  'InvalidRequest',
  'InvalidArgument',
  'InvalidStorageClass',
  'InvalidEncryptionAlgorithmError',
  'KMS.NotFoundException',
  'KMS.KMSInvalidStateException',
  'KMS.DisabledException',
]);

const NETWORK_CODES = new Set(['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND']);

/** The S3 error code of an SDK error (`name` for modeled errors, `Code` for others). */
export function s3ErrorCode(err: unknown): string | undefined {
  const e = err as AwsErrorShape | null;
  return e?.Code ?? e?.name;
}

/** The HTTP status of an SDK service error, when the request got a response. */
export function s3Status(err: unknown): number | undefined {
  return (err as AwsErrorShape | null)?.$metadata?.httpStatusCode;
}

/** Whether the error says the object does not exist. */
export function isNotFound(err: unknown): boolean {
  const code = s3ErrorCode(err);
  return code === 'NoSuchKey' || code === 'NotFound' || (s3Status(err) === 404 && code !== 'NoSuchBucket');
}

/** Whether a conditional write lost: 412 PreconditionFailed, or 409 for a concurrent one. */
export function isPreconditionFailed(err: unknown): boolean {
  const code = s3ErrorCode(err);
  const status = s3Status(err);
  return (
    code === 'PreconditionFailed' ||
    code === 'ConditionalRequestConflict' ||
    status === 412 ||
    (status === 409 && code !== 'BucketAlreadyExists' && code !== 'OperationAborted')
  );
}

export interface S3ErrorContext {
  /** The bucket. */
  readonly bucket: string;
  /** The S3 action that failed, in IAM terms (`s3:PutObject`). */
  readonly action: string;
  /** The key, relative to the bucket. */
  readonly key?: string;
}

/** Translates an error from an S3 call (already retried by the SDK) into a NightshiftError. */
export function translateS3Error(err: unknown, where: S3ErrorContext): Error {
  if (err instanceof NightshiftError || err instanceof PreconditionFailedError) return err;
  const e = (err ?? {}) as AwsErrorShape;
  const code = s3ErrorCode(err) ?? '';
  const status = s3Status(err);
  const target = `s3://${where.bucket}${where.key ? `/${where.key}` : ''}`;
  const detail = `${code || 'error'}${status ? ` (HTTP ${status})` : ''}: ${e.message ?? String(err)}`;
  if (e.name === 'AbortError')
    return new NightshiftError('terminated', `upload to ${target} aborted`, { cause: err });
  if (e.name === 'CredentialsProviderError' || IDENTITY_CODES.has(code) || status === 401 || status === 403) {
    return identityError(`${where.action} on ${target} was refused: ${detail}`, {
      cause: err,
      hint: identityHint(code, where),
    });
  }
  if (code === 'BadDigest' || code === 'XAmzContentChecksumMismatch' || code === 'InvalidDigest') {
    return transientError(`${where.action} on ${target}: S3 refused the bytes it received: ${detail}`, {
      cause: err,
      hint: 'their SHA-256 differs from the one computed while the file was written: corrupted on the way (the next run uploads again) or on the local disk',
    });
  }
  if (SETTING_CODES.has(code)) {
    return configError(`${where.action} on ${target} was rejected: ${detail}`, {
      cause: err,
      hint: 'check stage.s3: Object Lock needs a bucket created with Object Lock enabled; storage_class must be one the bucket offers; kms_key_id must name an enabled key in the bucket region',
    });
  }
  if (code === 'NoSuchBucket') {
    return configError(`the bucket ${where.bucket} does not exist (${where.action} on ${target})`, {
      cause: err,
      hint: 'check stage.url (s3://bucket/prefix) and stage.s3.region / endpoint',
    });
  }
  if (
    code === 'PermanentRedirect' ||
    code === 'AuthorizationHeaderMalformed' ||
    code === 'IllegalLocationConstraintException'
  ) {
    return configError(`${where.action} on ${target}: ${detail}`, {
      cause: err,
      hint: 'set stage.s3.region (or AWS_REGION) to the region of the bucket',
    });
  }
  if (
    TRANSIENT_CODES.has(code) ||
    (status !== undefined && status >= 500) ||
    NETWORK_CODES.has(e.code ?? '') ||
    e.$fault === 'server'
  ) {
    return transientError(`${where.action} on ${target} failed after retries: ${detail}`, {
      cause: err,
      hint: 'S3 was throttling, unavailable or unreachable; the next run retries',
    });
  }
  const generic = toNightshiftError(err);
  if (generic.code !== 'internal') return generic;
  return internalError(`${where.action} on ${target}: ${detail}`, { cause: err });
}

function identityHint(code: string, where: S3ErrorContext): string {
  switch (code) {
    case 'InvalidAccessKeyId':
    case 'SignatureDoesNotMatch':
      return 'the access key is unknown or its secret is wrong: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or remove them so the pod identity (IRSA, Pod Identity) is used';
    case 'ExpiredToken':
    case 'InvalidToken':
    case 'TokenRefreshRequired':
      return 'the session credentials expired: remove a static AWS_SESSION_TOKEN from the environment, or check the clock of the node';
    case 'KMS.AccessDeniedException':
      return 'allow kms:GenerateDataKey and kms:Decrypt on stage.s3.kms_key_id to the role (key policy and IAM policy)';
    default:
      return `allow ${where.action} on arn:aws:s3:::${where.bucket}${where.key ? `/${where.key}` : ''} to the role the pod runs as (\`nightshift iam\` prints the whole policy); check bucket policies and SCPs that deny it`;
  }
}
