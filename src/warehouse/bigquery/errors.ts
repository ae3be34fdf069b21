/**
 * BigQuery errors in the terms of the exit code contract, with what to fix. The `reason` of an
 * ErrorProto decides, not the HTTP status alone: BigQuery answers 403 both for a missing grant
 * (accessDenied) and for throttling (rateLimitExceeded, quotaExceeded).
 * See https://cloud.google.com/bigquery/docs/error-messages
 */
import { type ErrorCode, NightshiftError, toNightshiftError } from '../../errors.js';

/** One REST `ErrorProto`. */
export interface ErrorProto {
  reason?: string | null;
  message?: string | null;
  location?: string | null;
}

const TRANSIENT_REASONS = new Set([
  'backendError',
  'internalError',
  'rateLimitExceeded',
  'userRateLimitExceeded',
  'jobRateLimitExceeded',
  'quotaExceeded',
  'jobBackendError',
  'jobInternalError',
  'tableUnavailable',
  'timeout',
  'stopped',
  'resourcesExceeded',
]);

const IDENTITY_REASONS = new Set(['accessDenied', 'blocked', 'authError', 'unauthorized']);

const CONFIG_REASONS = new Set([
  'invalid',
  'invalidQuery',
  'notFound',
  'duplicate',
  'bytesBilledLimitExceeded',
  'billingTierLimitExceeded',
  'billingNotEnabled',
  'notImplemented',
  'invalidUser',
]);

/** Messages of failed transactions that a rerun gets past. */
const CONFLICT_RE =
  /concurrent update|could not serialize access|transaction is aborted|aborted due to concurrent/i;

/** The message the apply script raises when the inserted count differs. */
const COUNT_RE = /nightshift: inserted \d+ rows but the files hold \d+/;

function classify(reason: string | undefined, message: string, status: number | undefined): ErrorCode {
  if (COUNT_RE.test(message)) return 'validation';
  if (CONFLICT_RE.test(message)) return 'transient';
  if (reason && TRANSIENT_REASONS.has(reason)) return 'transient';
  if (reason && IDENTITY_REASONS.has(reason)) return 'identity';
  if (reason && CONFIG_REASONS.has(reason)) return 'config';
  if (status === 429 || (status !== undefined && status >= 500)) return 'transient';
  if (status === 401 || status === 403) return 'identity';
  if (status === 400 || status === 404 || status === 409) return 'config';
  return 'internal';
}

/** What to do about an error, when its kind says more than its message. */
function hintFor(code: ErrorCode, reason: string | undefined, message: string): string | undefined {
  if (code === 'identity') {
    if (/storage\.objects|gs:\/\/|cloud storage|bucket/i.test(message)) {
      return "grant roles/storage.objectViewer on the stage bucket to the workload's service account";
    }
    if (/bigquery\.jobs\.create|jobs\.create/i.test(message)) {
      return "grant roles/bigquery.jobUser on the project that runs the jobs (warehouse.bigquery.project) to the workload's service account";
    }
    return "grant roles/bigquery.dataEditor on the target (and staging) dataset, and roles/bigquery.jobUser on the project, to the workload's service account";
  }
  if (code === 'validation') return 'the transaction was rolled back; the next run loads this window again';
  if (code === 'transient') return 'a later run retries; the job ids make the retry find work already done';
  if (/different locations|location/i.test(message)) {
    return 'the dataset, the stage bucket and warehouse.bigquery.location must be in the same location';
  }
  if (reason === 'bytesBilledLimitExceeded') {
    return 'raise warehouse.bigquery.maximum_bytes_billed, or partition and cluster the table on the cursor and key';
  }
  if (reason === 'billingNotEnabled') return 'enable billing on the project that runs the jobs';
  if (reason === 'notFound' && /gs:\/\/|uri|file/i.test(message)) {
    return "the staged files are not readable at their gs:// URLs; check the stage bucket's lifecycle rules";
  }
  if (reason === 'notFound')
    return 'check warehouse.table and warehouse.bigquery.project (and the dataset location)';
  if (reason === 'invalid' || reason === 'invalidQuery') {
    return 'the table and the exported columns may disagree; align the table, or load into a new table';
  }
  return undefined;
}

function make(code: ErrorCode, message: string, reason: string | undefined, cause: unknown): NightshiftError {
  if (code === 'internal' && !reason) {
    // No BigQuery reason: a network error or a credentials problem.
    const e = toNightshiftError(cause);
    if (/default credentials|could not refresh access token|metadata/i.test(e.message)) {
      return new NightshiftError('identity', `${message}: no Google credentials`, {
        cause,
        hint: 'run with Workload Identity (a Kubernetes service account bound to a Google service account), or set GOOGLE_APPLICATION_CREDENTIALS for a local run',
      });
    }
    if (e.code !== 'internal') return new NightshiftError(e.code, message, { cause });
  }
  return new NightshiftError(code, message, { cause, hint: hintFor(code, reason, message) });
}

/** Translates an SDK error (HTTP or network) from `doing` something. */
export function translateBigQueryError(err: unknown, doing: string): NightshiftError {
  if (err instanceof NightshiftError) return err;
  const e = err as { code?: unknown; message?: unknown; errors?: ErrorProto[] } | null;
  const status = typeof e?.code === 'number' ? e.code : undefined;
  const reason = e?.errors?.find((x) => x.reason)?.reason ?? undefined;
  const text = typeof e?.message === 'string' ? e.message : String(err);
  const code = classify(reason, text, status);
  const detail = reason ? `${reason}: ${text}` : text;
  return make(code, `BigQuery, ${doing}: ${detail}`, reason, err);
}

/** A job that finished with an errorResult; the errors list is kept in the message. */
export function jobFailure(
  what: 'load' | 'query',
  jobId: string,
  errorResult: ErrorProto,
  errors: readonly ErrorProto[],
): NightshiftError {
  const reason = errorResult.reason ?? undefined;
  const main = errorResult.message ?? 'no message';
  const more = errors
    .filter((x) => x.message && x.message !== main)
    .slice(0, 5)
    .map((x) => `${x.reason ?? 'error'}${x.location ? ` at ${x.location}` : ''}: ${x.message}`);
  const message =
    `BigQuery ${what} job ${jobId} failed: ${reason ? `${reason}: ` : ''}${main}` +
    (more.length ? ` (${more.join('; ')})` : '');
  return make(classify(reason, main, undefined), message, reason, errorResult);
}
