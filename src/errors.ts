/**
 * One error class with a code, and the table from codes to process exit codes. The table is the
 * contract the CronJob's podFailurePolicy is written against: change it only together with
 * k8s/ and the README.
 */

/** What went wrong, in the terms the exit code contract uses. */
export type ErrorCode =
  | 'internal'
  | 'config'
  | 'validation'
  | 'lease_held'
  | 'identity'
  | 'transient'
  | 'terminated';

/** One row of the exit code contract. */
export interface ExitCodeEntry {
  /** The process exit code. */
  readonly exit: number;
  /** What it means, as the README says it. */
  readonly meaning: string;
  /** Whether Kubernetes should retry the pod. */
  readonly retry: boolean;
}

/** The exit code contract: the single source of truth for the README and the manifests. */
export const EXIT_CODES: Readonly<Record<ErrorCode | 'ok', ExitCodeEntry>> = {
  ok: { exit: 0, meaning: 'success, including "nothing new in the window"', retry: false },
  internal: { exit: 1, meaning: 'unexpected internal error', retry: true },
  config: { exit: 2, meaning: 'configuration or usage error', retry: false },
  validation: {
    exit: 3,
    meaning: 'validation failed: counts differ, or fewer rows than the configured minimum',
    retry: false,
  },
  lease_held: { exit: 4, meaning: "another run holds this job's lease", retry: false },
  identity: { exit: 5, meaning: 'identity or permission error', retry: false },
  transient: { exit: 75, meaning: 'transient error (network, throttling, 5xx, deadlock)', retry: true },
  terminated: {
    exit: 143,
    meaning: 'stopped by SIGTERM (or Ctrl-C), cleanly: uploads aborted, lease released, checkpoint untouched',
    retry: true,
  },
};

export interface NightshiftErrorOptions {
  /** The error this one wraps. */
  cause?: unknown;
  /** What the user should do about it, when the message alone does not say. */
  hint?: string;
}

/** The one error base class: every failure the runner reports carries a code from the contract. */
export class NightshiftError extends Error {
  readonly code: ErrorCode;
  readonly hint: string | undefined;

  constructor(code: ErrorCode, message: string, options: NightshiftErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'NightshiftError';
    this.code = code;
    this.hint = options.hint;
  }

  /** The process exit code for this error. */
  get exitCode(): number {
    return EXIT_CODES[this.code].exit;
  }
}

export const configError = (message: string, options?: NightshiftErrorOptions) =>
  new NightshiftError('config', message, options);
export const transientError = (message: string, options?: NightshiftErrorOptions) =>
  new NightshiftError('transient', message, options);
export const identityError = (message: string, options?: NightshiftErrorOptions) =>
  new NightshiftError('identity', message, options);
export const validationError = (message: string, options?: NightshiftErrorOptions) =>
  new NightshiftError('validation', message, options);
export const leaseHeldError = (message: string, options?: NightshiftErrorOptions) =>
  new NightshiftError('lease_held', message, options);
export const internalError = (message: string, options?: NightshiftErrorOptions) =>
  new NightshiftError('internal', message, options);

/** Node system error codes that mean "the network or a peer hiccuped; try again". */
const TRANSIENT_SYSCALL = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'ENOTFOUND',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
]);

/** How the `pg` driver reports a connection that the server or the network cut. */
const PG_CONNECTION_LOST =
  /Connection terminated|connection error and is not queryable|Client was closed and is not queryable|terminating connection/i;

/**
 * PostgreSQL SQLSTATE classes and codes, mapped to the contract. See the PostgreSQL manual,
 * appendix A "PostgreSQL Error Codes".
 */
function classifyPostgres(sqlstate: string): ErrorCode | undefined {
  const cls = sqlstate.slice(0, 2);
  if (cls === '08' || cls === '40' || cls === '53' || cls === '55' || cls === '57') return 'transient';
  if (cls === '28' || sqlstate === '42501') return 'identity';
  if (cls === '42' || cls === '22' || cls === '3D' || cls === '3F') return 'config';
  return undefined;
}

/** The fix for the PostgreSQL errors a job's settings cause. */
const POSTGRES_HINTS: Record<string, string> = {
  '28P01':
    'check source.user and source.password (rotated in the secret store and not yet in the pod?); nightshift check tries the connection',
  '28000':
    'the server refused this role or host: check source.user and that pg_hba.conf admits the pod address; nightshift check tries the connection',
  '42501': 'grant what nightshift iam prints for the source',
  '42P01':
    'check source.table (schema.table) and that the role can see its schema; nightshift check reads the source',
  '42703':
    'check the columns named in source.cursor, source.key, source.columns and source.casts; nightshift check reads the source',
  '3D000': 'check the database in source.url or source.database',
};

/** Maps any thrown value to a NightshiftError, keeping the original as `cause`. */
export function toNightshiftError(err: unknown): NightshiftError {
  if (err instanceof NightshiftError) return err;
  const e = err as { code?: unknown; message?: unknown; name?: unknown } | null;
  const message = typeof e?.message === 'string' ? e.message : String(err);
  const code = typeof e?.code === 'string' ? e.code : undefined;
  if (code && /^[0-9A-Z]{5}$/.test(code)) {
    const mapped = classifyPostgres(code);
    if (mapped)
      return new NightshiftError(mapped, `PostgreSQL: ${message} (SQLSTATE ${code})`, {
        cause: err,
        hint: POSTGRES_HINTS[code],
      });
  }
  if ((code && TRANSIENT_SYSCALL.has(code)) || PG_CONNECTION_LOST.test(message)) {
    return transientError(`network: ${message}`, { cause: err });
  }
  if (code === 'ENOSPC') {
    return configError(`no space left on device: ${message}`, {
      cause: err,
      hint: 'give the temp dir more room (emptyDir sizeLimit) or lower parquet.part_size_mb',
    });
  }
  return new NightshiftError('internal', message, { cause: err });
}

/** The exit code for any thrown value. */
export function exitCodeOf(err: unknown): number {
  return toNightshiftError(err).exitCode;
}
