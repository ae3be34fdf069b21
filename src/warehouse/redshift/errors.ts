/**
 * Redshift failures in the terms of the exit code contract, each with what to fix. Two kinds
 * arrive: the Data API refusing a call (an SDK exception: throttling, IAM, validation), and a
 * statement that ran and FAILED, whose `Error` is Redshift's own text
 * (`ERROR: permission denied for relation trips`).
 */
import {
  configError,
  identityError,
  internalError,
  NightshiftError,
  toNightshiftError,
  transientError,
} from '../../errors.js';

/** What the failing call or statement was doing, for the message and the privilege it needs. */
export interface StatementContext {
  /** `load 3 files into "raw"."trips"`, `read the columns of "raw"."trips"`, ... */
  readonly action: string;
  /** The privilege(s) the statement needs, as a GRANT would name them. */
  readonly privilege?: string;
}

/** Where the warehouse loads, for messages. */
export interface ErrorScope {
  /** `workgroup analytics` or `cluster analytics-prod`. */
  readonly target: string;
  readonly database: string;
  /** The region of the client, when known. */
  readonly region?: string;
  /** How the Data API authenticates: `IAM`, `secret ...`, `database user ...`. */
  readonly auth: string;
  readonly iamRole: string;
}

/** The parts of an SDK error nightshift reads. */
interface SdkError {
  name?: string;
  message?: string;
  code?: string;
  $fault?: string;
  $metadata?: { httpStatusCode?: number };
}

/** Data API exceptions that a later run gets past. */
const TRANSIENT_API = new Set([
  'ThrottlingException',
  'TooManyRequestsException',
  'ActiveStatementsExceededException',
  'ActiveSessionsExceededException',
  'ActiveWaitingRequestsExceededException',
  'InternalServerException',
  'ServiceUnavailableException',
  'ExecuteStatementException',
  'BatchExecuteStatementException',
  'QueryTimeoutException',
  'RequestTimeout',
  'RequestTimeoutException',
  'TimeoutError',
]);

/** Exceptions that mean the caller's AWS credentials were refused or missing. */
const CREDENTIALS = new Set([
  'UnrecognizedClientException',
  'InvalidSignatureException',
  'ExpiredTokenException',
  'InvalidClientTokenId',
  'CredentialsProviderError',
]);

/** The IAM actions the runner needs, for hints. */
const RUNNER_ACTIONS =
  'redshift-data:ExecuteStatement, BatchExecuteStatement, DescribeStatement, GetStatementResult and CancelStatement';

/** A cause without the SDK's request and response objects, so nothing of them travels into logs. */
function plainCause(err: SdkError): Error {
  const cause = new Error(err.message ?? String(err));
  cause.name = err.name ?? 'RedshiftDataError';
  return cause;
}

function credentialHint(scope: ErrorScope): string {
  const auth = scope.auth.startsWith('secret')
    ? 'secretsmanager:GetSecretValue on the secret'
    : scope.target.startsWith('workgroup')
      ? 'redshift-serverless:GetCredentials on the workgroup'
      : scope.auth.startsWith('database user')
        ? 'redshift:GetClusterCredentials on the cluster and its dbuser'
        : 'redshift:GetClusterCredentialsWithIAM on the cluster';
  return `the pod's IAM role needs ${RUNNER_ACTIONS}, and ${auth}; see docs/warehouse-redshift.md#the-runners-iam-permissions`;
}

/** Translates a Data API call that was refused (an SDK exception). */
export function apiError(err: unknown, ctx: StatementContext, scope: ErrorScope): NightshiftError {
  if (err instanceof NightshiftError) return err;
  const e = (err ?? {}) as SdkError;
  const name = e.name ?? '';
  const message = e.message ?? String(err);
  const status = e.$metadata?.httpStatusCode;
  const cause = plainCause(e);
  const what = `the Redshift Data API refused to ${ctx.action}`;
  if (/region is missing/i.test(message)) {
    return configError(`cannot ${ctx.action}: no AWS Region`, {
      cause,
      hint: 'set warehouse.redshift.region (NIGHTSHIFT_WAREHOUSE_REDSHIFT_REGION) or AWS_REGION',
    });
  }
  if (CREDENTIALS.has(name) || /could not load credentials/i.test(message)) {
    return identityError(`${what}: the AWS credentials were refused or not found: ${message}`, {
      cause,
      hint: 'give the pod an IAM role (IRSA or EKS Pod Identity) and check that the projected token is mounted',
    });
  }
  if (name === 'AccessDeniedException' || /not authorized to perform/i.test(message)) {
    return identityError(`${what}: ${message}`, { cause, hint: credentialHint(scope) });
  }
  if (name === 'DatabaseConnectionException') return connectionError(message, what, scope, cause);
  if (TRANSIENT_API.has(name) || status === 429 || (status !== undefined && status >= 500)) {
    return transientError(`${what}: ${name || `HTTP ${status}`}: ${message}`, { cause });
  }
  if (name === 'ValidationException' || name === 'ResourceNotFoundException') {
    return validationFailure(message, what, scope, cause);
  }
  const network = toNightshiftError(err);
  if (network.code === 'transient') return transientError(`${what}: ${message}`, { cause });
  return internalError(`${what}: ${name ? `${name}: ` : ''}${message}`, { cause });
}

/** DatabaseConnectionException: the Data API reached the Data API but not the database. */
function connectionError(message: string, what: string, scope: ErrorScope, cause: Error): NightshiftError {
  if (
    /password authentication|authentication failed|not authorized|permission denied|does not exist|no pg_hba/i.test(
      message,
    )
  ) {
    return identityError(
      `${what}: cannot connect to database ${scope.database} (${scope.auth}): ${message}`,
      {
        cause,
        hint: `check warehouse.redshift.database, and that the database user exists with access to it; ${credentialHint(scope)}`,
      },
    );
  }
  return transientError(`${what}: the connection to the database failed: ${message}`, { cause });
}

/** ValidationException / ResourceNotFoundException: a name, a Region or an ARN is wrong. */
function validationFailure(message: string, what: string, scope: ErrorScope, cause: Error): NightshiftError {
  if (/secret/i.test(message) && /access|authoriz|permission/i.test(message)) {
    return identityError(`${what}: ${message}`, { cause, hint: credentialHint(scope) });
  }
  if (/region|endpoint/i.test(message)) {
    return configError(`${what}: ${message}`, {
      cause,
      hint: `the ${scope.target} is not in Region ${scope.region ?? '(unset)'}: set warehouse.redshift.region to its Region`,
    });
  }
  return configError(`${what}: ${message}`, {
    cause,
    hint: `check warehouse.redshift (${scope.target}, database ${scope.database}) and its Region ${scope.region ?? ''}`.trim(),
  });
}

/** The pattern, the contract code, and what to do, for one kind of statement failure. */
interface Rule {
  readonly test: RegExp;
  readonly code: 'config' | 'identity' | 'transient';
  readonly hint: (ctx: StatementContext, scope: ErrorScope, match: RegExpExecArray) => string | undefined;
}

/**
 * Two sessions creating one table at once: the later CREATE TABLE waits on the earlier one's
 * catalog row and fails on its unique index when that commits, or, if it commits first, finds the
 * relation there. Both are left to a later attempt; `relation ... already exists` alone is also
 * what a table the user cannot see gives, which the load tells apart by looking again.
 */
const CONCURRENT_CREATE =
  /duplicate key value violates unique constraint "pg_(type_typname|class_relname)_nsp_index"/i;

/** Whether a CREATE TABLE failed because another session created the same table meanwhile. */
export function isConcurrentCreate(text: string): boolean {
  return CONCURRENT_CREATE.test(text) || /relation "[^"]+" already exists/i.test(text);
}

/** Redshift's error texts, most specific first. */
const RULES: readonly Rule[] = [
  {
    test: CONCURRENT_CREATE,
    code: 'transient',
    hint: () =>
      'another session created the same table at the same moment (often the load of a killed run, still running); the next run loads into it',
  },
  {
    test: /serializable isolation violation|\b1023\b|conflict with concurrent transaction|deadlock detected|could not obtain lock|lock timeout/i,
    code: 'transient',
    hint: () => 'another transaction wrote the same table at the same time; the next run retries the window',
  },
  {
    test: /not authorized to assume (IAM )?role|AssumeRole|is not associated|role .* (is )?not (attached|associated)/i,
    code: 'identity',
    hint: (_c, s) =>
      `associate the role ${s.iamRole} with the ${s.target.startsWith('workgroup') ? "workgroup's namespace" : 'cluster'}, and let redshift.amazonaws.com (and redshift-serverless.amazonaws.com) assume it in its trust policy`,
  },
  {
    test: /different region|PermanentRedirect|Status 301|IllegalLocationConstraint|AuthorizationHeaderMalformed/i,
    code: 'config',
    hint: (_c, s) =>
      `COPY reads Parquet only from a bucket in the Region of the ${s.target}${s.region ? ` (${s.region})` : ''}: move stage.url to such a bucket, or fix warehouse.redshift.region`,
  },
  {
    test: /S3ServiceException:\s*Access Denied|Status 403|AccessDenied|KMS/i,
    code: 'identity',
    hint: (_c, s) =>
      `the COPY role ${s.iamRole} needs s3:GetObject on the stage objects and s3:ListBucket on the bucket (and kms:Decrypt when the bucket uses SSE-KMS); check the bucket policy too`,
  },
  {
    test: /NoSuchBucket|specified bucket does not exist/i,
    code: 'config',
    hint: () => 'stage.url names a bucket that does not exist',
  },
  {
    test: /NoSuchKey|specified key does not exist|Status 404|manifest file .*(not found|missing)/i,
    code: 'config',
    hint: () =>
      'COPY could not find the manifest or a file it lists: check that nothing (a lifecycle rule) deletes fresh objects under stage.url',
  },
  {
    test: /permission denied for (relation|table|schema|database|function|language) "?([^"\s]+)"?|permission denied/i,
    code: 'identity',
    hint: (ctx) =>
      `the database user needs ${ctx.privilege ?? 'more privileges'}; see docs/warehouse-redshift.md#grants`,
  },
  {
    test: /relation "([^"]+)" already exists/i,
    code: 'config',
    hint: (ctx) =>
      `the table exists but the database user cannot see its columns; it needs ${ctx.privilege ?? 'SELECT on it'} (and SELECT, INSERT, DELETE on the table)`,
  },
  {
    test: /schema "([^"]+)" does not exist/i,
    code: 'config',
    hint: (_c, _s, m) =>
      `create the schema (CREATE SCHEMA ${m[1]}) or fix warehouse.table / warehouse.redshift.schema`,
  },
  {
    test: /statement timeout|cancelled on user's request|canceling statement|query cancelled/i,
    code: 'transient',
    hint: () =>
      'the load took longer than warehouse.redshift.statement_timeout; raise it, or load smaller windows',
  },
  {
    test: /codec|compression (type|codec)|unsupported compression/i,
    code: 'config',
    hint: () => 'Redshift cannot read the Parquet page compression: set parquet.compression to gzip',
  },
  {
    test: /relation "([^"]+)" does not exist|column "([^"]+)".* does not exist|does not exist/i,
    code: 'config',
    hint: () => 'the table and the exported columns disagree; align the table, or load into a new table',
  },
  {
    test: /incompatible|Spectrum Scan Error|invalid input|cannot be cast|value too long|overflow|out of range|Invalid JSON|json_parse|type mismatch|Unsupported|number of columns/i,
    code: 'config',
    hint: () =>
      'a value does not fit the table: align the column types of the table with the export (see docs/warehouse-redshift.md#types), or load into a new table',
  },
  {
    test: /disk full|out of memory|resource|too many|connection|terminat|server closed|network|throttl|rate exceeded|internal error|try again/i,
    code: 'transient',
    hint: () => undefined,
  },
];

/** Translates the `Error` of a statement that ran and FAILED. */
export function statementFailure(text: string, ctx: StatementContext, scope: ErrorScope): NightshiftError {
  const message = `Redshift could not ${ctx.action}: ${text.trim()}`;
  for (const rule of RULES) {
    const match = rule.test.exec(text);
    if (!match) continue;
    return new NightshiftError(rule.code, message, { hint: rule.hint(ctx, scope, match) });
  }
  return internalError(message);
}
