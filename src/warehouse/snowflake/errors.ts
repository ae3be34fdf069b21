/**
 * Snowflake failures in the terms of the exit code contract, each with what to fix. The SDK
 * reports three kinds: network errors (no answer), request failures (an HTTP status), and
 * operation failures (Snowflake answered with an error code and a SQLSTATE).
 */
import { configError, identityError, internalError, NightshiftError, transientError } from '../../errors.js';

/** What the failing statement was doing, for the message and the privilege it needs. */
export interface StatementContext {
  /** `create the target table`, `COPY the files into the staging table`, ... */
  readonly action: string;
  /** The privilege(s) the statement needs, as a GRANT would name them. */
  readonly privilege?: string;
}

/** Where the warehouse connects and loads, for messages. */
export interface ErrorScope {
  readonly host: string;
  readonly account: string;
  readonly user?: string;
  readonly role?: string;
  readonly warehouse: string;
  readonly table: string;
  readonly stage: string;
}

/** The parts of an SDK error nightshift reads. */
interface SdkError {
  name?: string;
  code?: string | number;
  sqlState?: string;
  message?: string;
  response?: { statusCode?: number; status?: number };
  cause?: { code?: string; message?: string };
}

/** Login codes (390xxx) that mean the credentials or the identity were refused. */
const LOGIN_REFUSED = /^390(1\d\d|3\d\d|4\d\d)$/;
/** Session codes the SDK could not recover from: gone, expired master token. */
const SESSION_LOST = new Set(['390111', '390112', '390114']);
/** SDK codes for a connection it has given up on (ERR_CONN_*_STATUS_DISCONNECTED). */
const DISCONNECTED = new Set(['405503', '407002']);

/** A cause without the SDK's response object, so nothing of the request travels into logs. */
function plainCause(err: SdkError): Error {
  const cause = new Error(err.message ?? String(err));
  cause.name = err.name ?? 'SnowflakeError';
  Object.assign(cause, { code: err.code, sqlState: err.sqlState });
  return cause;
}

/** Translates an error from connecting (login). */
export function connectError(err: unknown, scope: ErrorScope): NightshiftError {
  if (err instanceof NightshiftError) return err;
  const e = err as SdkError;
  const cause = plainCause(e);
  const message = e.message ?? String(err);
  const status = e.response?.statusCode ?? e.response?.status;
  const code = String(e.code ?? '');
  if (e.name === 'NetworkError') {
    const dns = e.cause?.code === 'ENOTFOUND';
    return transientError(`cannot reach Snowflake at ${scope.host}: ${message}`, {
      cause,
      hint: dns
        ? `the host does not resolve: check warehouse.snowflake.account (${scope.account}) or the network's DNS`
        : 'check the egress from the pod to the Snowflake host (NetworkPolicy, proxy, PrivateLink)',
    });
  }
  if (status === 403 || status === 404) {
    return identityError(`Snowflake at ${scope.host} refused the login (HTTP ${status})`, {
      cause,
      hint: `check warehouse.snowflake.account (${scope.account}): use <orgname>-<accountname> as Snowsight shows it, or set warehouse.snowflake.access_url`,
    });
  }
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) {
    return transientError(`Snowflake login failed with HTTP ${status}: ${message}`, { cause });
  }
  if (code === '390189' || /role .* (does not exist|not authorized)/i.test(message)) {
    return identityError(`Snowflake login: ${message}`, {
      cause,
      hint: `GRANT ROLE ${scope.role ?? '<role>'} TO USER ${scope.user ?? '<user>'}, or fix warehouse.snowflake.role`,
    });
  }
  if (LOGIN_REFUSED.test(code) || status === 401 || /JWT|password|authenticat/i.test(message)) {
    return identityError(
      `Snowflake refused the login of ${scope.user ?? 'the workload identity'}: ${message}`,
      {
        cause,
        hint: scope.user
          ? `check that the public key of warehouse.snowflake.private_key_path is set on the user (ALTER USER ${scope.user} SET RSA_PUBLIC_KEY = '...'; DESC USER shows RSA_PUBLIC_KEY_FP), and the account`
          : 'check the WORKLOAD_IDENTITY user (CREATE USER ... WORKLOAD_IDENTITY = (...)) matches the pod identity',
      },
    );
  }
  return statementError(err, { action: 'log in' }, scope);
}

/** Translates an error of one statement. */
export function statementError(err: unknown, ctx: StatementContext, scope: ErrorScope): NightshiftError {
  if (err instanceof NightshiftError) return err;
  const e = err as SdkError;
  const cause = plainCause(e);
  const message = e.message ?? String(err);
  const code = String(e.code ?? '');
  const state = e.sqlState ?? '';
  const status = e.response?.statusCode ?? e.response?.status;
  const what = `Snowflake could not ${ctx.action}`;
  if (
    e.name === 'NetworkError' ||
    SESSION_LOST.has(code) ||
    DISCONNECTED.has(code) ||
    state.startsWith('08')
  ) {
    return transientError(`${what}: the connection to ${scope.host} failed: ${message}`, { cause });
  }
  if (status !== undefined && (status >= 500 || status === 429 || status === 408)) {
    return transientError(`${what}: HTTP ${status}`, { cause });
  }
  if (code === '003001' || state === '42501' || /insufficient privileges/i.test(message)) {
    return identityError(`${what}: ${message}`, {
      cause,
      hint: `the role ${scope.role ?? '(default role)'} needs ${ctx.privilege ?? 'more privileges'}; see docs/warehouse-snowflake.md#grants`,
    });
  }
  if (code === '000606' || /no active warehouse/i.test(message)) {
    return identityError(`${what}: no usable warehouse (${scope.warehouse}): ${message}`, {
      cause,
      hint: `GRANT USAGE ON WAREHOUSE ${scope.warehouse} TO ROLE ${scope.role ?? '<role>'}, and check warehouse.snowflake.warehouse`,
    });
  }
  if (/remote file .* (was )?not found/i.test(message)) {
    return configError(`${what}: ${message}`, {
      cause,
      hint: `the external stage ${scope.stage} must point at stage.url; compare DESC STAGE ${scope.stage} with it`,
    });
  }
  if (
    /failure using stage area|access denied|not authorized to (access|use)|storage integration|integration .* (does not exist|not authorized)/i.test(
      message,
    )
  ) {
    return identityError(`${what}: Snowflake cannot read the stage ${scope.stage}: ${message}`, {
      cause,
      hint: "check the stage's storage integration: its IAM role trust policy and bucket policy (S3), or its service account's storage.objectViewer (GCS); DESC INTEGRATION shows the identity Snowflake uses",
    });
  }
  if (code === '002003' || /does not exist or not authorized/i.test(message)) {
    return identityError(`${what}: ${message}`, {
      cause,
      hint: `check the name, and that the role ${scope.role ?? '(default role)'} has ${ctx.privilege ?? 'USAGE on the database and schema'}`,
    });
  }
  if (/lock/i.test(message) || code === '000625') {
    return transientError(`${what}: waited too long for a lock on ${scope.table}: ${message}`, {
      cause,
      hint: 'another session holds the table; the next run retries (raise warehouse.snowflake.lock_timeout to wait longer)',
    });
  }
  if (state.startsWith('57') || /timeout|queued|overloaded|throttl|too many/i.test(message)) {
    return transientError(`${what}: ${message}`, { cause });
  }
  if (state.startsWith('22') || /^100\d\d\d$/.test(code)) {
    return configError(`${what}: a value does not fit the table: ${message}`, {
      cause,
      hint: `the columns of ${scope.table} and the exported columns disagree; align their types, or load into a new table`,
    });
  }
  if (state.startsWith('42')) {
    return configError(`${what}: ${message}`, { cause });
  }
  if (state === 'XX000' || /incident|internal error/i.test(message)) {
    return transientError(`${what}: Snowflake reported an internal error: ${message}`, { cause });
  }
  return internalError(`${what}: ${message}${code ? ` (code ${code})` : ''}`, { cause });
}
