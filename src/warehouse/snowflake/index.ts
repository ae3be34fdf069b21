/**
 * The Snowflake warehouse. A load is: COPY INTO a temporary staging table from the external stage
 * over `stage.url`, naming exactly the run's files (FILES = (...), at most 1,000 per COPY); check
 * every file's result row; then replace the window (append), the keys (merge) or the whole table
 * (replace) in the target and INSERT from the staging table; compare the counts; COMMIT. The
 * COPY, the DELETE and the INSERT run in one transaction, so a failure at any point leaves the
 * target as it was. DDL (creating the target or the staging table) commits implicitly in
 * Snowflake, so it runs before BEGIN.
 */
import { readFile } from 'node:fs/promises';
import type { Connection, ConnectionOptions, RowStatement } from 'snowflake-sdk';
import { quietSnowflakeSdk } from '../../config/cloud.js';
import { redactor } from '../../config/redact.js';
import type { Config, SnowflakeConfig } from '../../config/schema.js';
import { failpoint } from '../../core/failpoint.js';
import type { Window } from '../../core/window.js';
import { configError, NightshiftError, validationError } from '../../errors.js';
import type { AccessNeeds } from '../../identity/principal.js';
import type { ColumnSpec } from '../../parquet/schema.js';
import type { ObjectStore } from '../../store/store.js';
import type { LoadMode, LoadRequest, LoadResult, StagedFile, Warehouse } from '../warehouse.js';
import { connectError, type ErrorScope, type StatementContext, statementError } from './errors.js';
import { snowflakeAccess } from './grants.js';
import {
  chunks,
  commonDirectory,
  copyStatement,
  insertExpression,
  literal,
  MAX_FILES_PER_COPY,
  newColumnName,
  type ObjectName,
  objectName,
  quote,
  resolveColumn,
  resolveParts,
  stagingType,
  type TableColumn,
  targetType,
  windowCondition,
} from './sql.js';

export interface SnowflakeOptions extends SnowflakeConfig {
  /** Job name, for the query tag. */
  readonly job: string;
  /** Login attempts before giving up; a run that cannot log in exits 75 and the next run retries. */
  readonly loginRetries?: number;
}

type Row = Record<string, unknown>;
type Sdk = typeof import('snowflake-sdk');

let sdk: Promise<Sdk> | undefined;

/** Imports snowflake-sdk once, configured for a pod: no log file, no cloud probing. */
function loadSdk(): Promise<Sdk> {
  sdk ??= (async () => {
    quietSnowflakeSdk();
    const mod = (await import('snowflake-sdk')) as Sdk & { default?: Sdk };
    const instance = mod.default ?? mod;
    const quiet = () => undefined;
    // Without a custom logger the SDK writes snowflake.log into the working directory, which a
    // read-only root filesystem refuses; nightshift reports failures itself.
    instance.configure({
      logLevel: 'ERROR',
      customLogger: { error: quiet, warn: quiet, info: quiet, debug: quiet, trace: quiet },
    });
    return instance;
  })();
  return sdk;
}

/** One Snowflake session: statements in order, each translated into nightshift's errors. */
class Session {
  /** Query id of the last statement, for the summary. */
  lastQueryId: string | undefined;
  /** The table the statements are about, for messages. */
  table = '';

  constructor(
    private readonly connection: Connection,
    private readonly scope: Omit<ErrorScope, 'table'>,
  ) {}

  /** Runs one statement and returns its rows as objects. */
  run(
    sql: string,
    ctx: StatementContext,
    binds: readonly string[] = [],
    signal?: AbortSignal,
  ): Promise<Row[]> {
    signal?.throwIfAborted();
    return new Promise((resolve, reject) => {
      let statement: RowStatement | undefined;
      const onAbort = () => statement?.cancel(() => undefined);
      signal?.addEventListener('abort', onAbort, { once: true });
      statement = this.connection.execute({
        sqlText: sql,
        binds: [...binds],
        rowMode: 'object',
        complete: (err, stmt, rows) => {
          signal?.removeEventListener('abort', onAbort);
          this.lastQueryId = stmt?.getQueryId?.() ?? this.lastQueryId;
          if (!err) return resolve((rows ?? []) as Row[]);
          if (signal?.aborted) {
            return reject(new NightshiftError('terminated', `stopped while Snowflake ran: ${ctx.action}`));
          }
          reject(statementError(err, ctx, { ...this.scope, table: this.table }));
        },
      }) as RowStatement;
    });
  }

  /** Ends the session; Snowflake rolls back whatever it left open. */
  close(): Promise<void> {
    return new Promise((resolve) => this.connection.destroy(() => resolve()));
  }
}

/** The first numeric value of a DML result row (`number of rows inserted`, ...). */
function affected(rows: readonly Row[]): number {
  const value = Object.values(rows[0] ?? {})[0];
  return Number(value ?? 0);
}

/** The outcome of the COPYs of one load. */
interface CopyOutcome {
  rowsLoaded: number;
  files: number;
}

export class SnowflakeWarehouse implements Warehouse {
  readonly kind = 'snowflake';
  private readonly options: SnowflakeOptions;
  private readonly scope: Omit<ErrorScope, 'table'>;
  private readonly stage: ObjectName;
  private session: Promise<Session> | undefined;

  constructor(options: SnowflakeOptions) {
    this.options = options;
    const defaults = this.defaults;
    this.stage = objectName(options.stage, 'warehouse.snowflake.stage', defaults);
    const host = options.access_url
      ? new URL(options.access_url).host
      : `${options.account}.snowflakecomputing.com`;
    this.scope = {
      host,
      account: options.account,
      user: options.user,
      role: options.role,
      warehouse: options.warehouse,
      stage: this.stage.sql,
    };
  }

  /** The grants the loader role needs, for `nightshift iam`. */
  accessNeeded(table: string, mode: LoadMode): AccessNeeds {
    const { role, user, warehouse } = this.options;
    const target = objectName(table, 'warehouse.table', this.defaults);
    return snowflakeAccess({ role, user, warehouse, table: target, stage: this.stage, mode });
  }

  private get defaults(): { database: string; schema: string } {
    const database = resolveParts(this.options.database, 'warehouse.snowflake.database', 1)[0];
    const schema = resolveParts(this.options.schema, 'warehouse.snowflake.schema', 1)[0];
    return { database, schema };
  }

  private scopeFor(table: ObjectName): ErrorScope {
    return { ...this.scope, table: table.sql };
  }

  /** The SDK connection options: credentials are read from their files at each login. */
  private async connectionOptions(): Promise<ConnectionOptions> {
    const o = this.options;
    const base: ConnectionOptions = {
      account: o.account,
      username: o.user,
      role: o.role,
      warehouse: o.warehouse,
      database: o.database,
      schema: o.schema,
      application: 'nightshift',
      // Heartbeats keep the master token alive through COPYs that run for hours.
      clientSessionKeepAlive: true,
      sfRetryMaxLoginRetries: o.loginRetries ?? 3,
      ...(o.access_url ? { accessUrl: o.access_url.replace(/\/$/, '') } : {}),
    };
    if (o.authenticator === 'SNOWFLAKE_JWT') {
      const privateKey = await readSecretFile(o.private_key_path, 'warehouse.snowflake.private_key_path');
      redactor.add(privateKey);
      return {
        ...base,
        authenticator: 'SNOWFLAKE_JWT',
        privateKey,
        ...(o.private_key_passphrase ? { privateKeyPass: o.private_key_passphrase } : {}),
      };
    }
    const provider = o.workload_identity_provider;
    const token =
      provider === 'OIDC'
        ? (await readSecretFile(o.token_path, 'warehouse.snowflake.token_path')).trim()
        : undefined;
    if (token) redactor.add(token);
    return {
      ...base,
      authenticator: 'WORKLOAD_IDENTITY',
      workloadIdentityProvider: provider,
      ...(token ? { token } : {}),
    } as ConnectionOptions;
  }

  private connect(table: ObjectName): Promise<Session> {
    this.session ??= (async () => {
      const snowflake = await loadSdk();
      const options = await this.connectionOptions();
      let connection: Connection;
      try {
        connection = snowflake.createConnection(options);
      } catch (err) {
        throw configError(`warehouse.snowflake: ${(err as Error).message}`, { cause: err });
      }
      await new Promise<void>((resolve, reject) =>
        connection.connect((err) => (err ? reject(connectError(err, this.scopeFor(table))) : resolve())),
      );
      return new Session(connection, this.scope);
    })();
    // A failed login is not cached: the next call logs in again.
    this.session.catch(() => {
      this.session = undefined;
    });
    return this.session;
  }

  async load(request: LoadRequest): Promise<LoadResult> {
    const target = objectName(request.table, 'warehouse.table', this.defaults);
    const staging = objectName(
      quote(`NIGHTSHIFT_STAGING_${request.runId.replace(/[^A-Za-z0-9]/g, '_')}`),
      'staging table',
      target,
    );
    const session = await this.connect(target);
    session.table = target.sql;
    await session.run(this.sessionSettings(request), { action: 'set the session parameters' });
    let columns = await this.describe(session, target);
    const created = !columns;
    if (!columns) {
      await session.run(createTable(target, request.columns), {
        action: `create the table ${target.sql}`,
        privilege: `CREATE TABLE on schema ${quote(target.database)}.${quote(target.schema)}`,
      });
      columns = await this.describe(session, target);
      if (!columns) throw configError(`${target.sql} was created but the role cannot see it`);
    }
    await session.run(createStaging(staging, request.columns), {
      action: `create the temporary table ${staging.sql}`,
      privilege: `CREATE TABLE on schema ${quote(target.database)}.${quote(target.schema)}`,
    });
    try {
      return await this.transaction(session, request, target, staging, columns, created);
    } finally {
      await session
        .run(`DROP TABLE IF EXISTS ${staging.sql}`, { action: 'drop the staging table' })
        .catch(() => undefined);
    }
  }

  /** COPY, DELETE, INSERT and the count checks between BEGIN and COMMIT. */
  private async transaction(
    session: Session,
    request: LoadRequest,
    target: ObjectName,
    staging: ObjectName,
    columns: ReadonlyMap<string, TableColumn>,
    created: boolean,
  ): Promise<LoadResult> {
    const { signal } = request;
    await session.run('BEGIN TRANSACTION', { action: 'begin a transaction' }, [], signal);
    try {
      const copied = await this.copy(session, request, staging);
      if (copied.rowsLoaded !== request.expectedRows) {
        throw validationError(
          `Snowflake loaded ${copied.rowsLoaded} rows from ${copied.files} files but the files hold ${request.expectedRows}; the load was rolled back`,
        );
      }
      const replaced = created ? 0 : await this.remove(session, request, target, staging, columns);
      const inserted = await this.insert(session, request, target, staging, columns);
      if (inserted !== request.expectedRows) {
        throw validationError(
          `Snowflake inserted ${inserted} rows into ${target.sql} but the files hold ${request.expectedRows}; the load was rolled back`,
        );
      }
      const loadId = session.lastQueryId;
      await failpoint('load-submitted');
      // Not cancelled by SIGTERM: a COMMIT is short, and finishing it beats an unknown outcome.
      await session.run('COMMIT', { action: 'commit the load' });
      return { rowsLoaded: inserted, rowsReplaced: replaced, ...(loadId ? { loadId } : {}) };
    } catch (err) {
      await session.run('ROLLBACK', { action: 'roll back the load' }).catch(() => undefined);
      if (signal?.aborted && !(err instanceof NightshiftError && err.code === 'terminated')) {
        throw new NightshiftError('terminated', 'the Snowflake load was interrupted and rolled back', {
          cause: err,
        });
      }
      throw err;
    }
  }

  /** ALTER SESSION: UTC, bounded lock waits and statements, a query tag naming the run. */
  private sessionSettings(request: LoadRequest): string {
    const seconds = (ms: number) => Math.max(1, Math.ceil(ms / 1000));
    const tag = `nightshift job=${request.job} run=${request.runId}`;
    // UTC: a Parquet instant loaded into a timestamp column must not take the session's offset.
    // ABORT_DETACHED_QUERY: a pod killed mid-COPY leaves no statement running on for hours; its
    // detached transaction is aborted once it blocks the next run's for 5 minutes, within LOCK_TIMEOUT.
    return [
      "ALTER SESSION SET TIMEZONE = 'UTC'",
      'ABORT_DETACHED_QUERY = TRUE',
      `LOCK_TIMEOUT = ${seconds(this.options.lock_timeout)}`,
      `STATEMENT_TIMEOUT_IN_SECONDS = ${seconds(this.options.statement_timeout)}`,
      `QUERY_TAG = ${literal(tag)}`,
    ].join(' ');
  }

  /** The table's columns by name, or undefined when it does not exist (or the role cannot see it). */
  private async describe(session: Session, table: ObjectName): Promise<Map<string, TableColumn> | undefined> {
    const rows = await session.run(
      `SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE FROM ${quote(table.database)}.INFORMATION_SCHEMA.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION`,
      {
        action: `read the columns of ${table.sql}`,
        privilege: `USAGE on database ${quote(table.database)} and schema ${quote(table.database)}.${quote(table.schema)}`,
      },
      [table.schema, table.name],
    );
    if (rows.length === 0) return undefined;
    const columns = new Map<string, TableColumn>();
    for (const row of rows) {
      const name = String(row.COLUMN_NAME);
      const numeric = (v: unknown) => (v === null || v === undefined ? null : Number(v));
      columns.set(name, {
        name,
        dataType: String(row.DATA_TYPE),
        precision: numeric(row.NUMERIC_PRECISION),
        scale: numeric(row.NUMERIC_SCALE),
      });
    }
    return columns;
  }

  /** COPYs the files into the staging table, chunk by chunk, and checks every file's result. */
  private async copy(session: Session, request: LoadRequest, staging: ObjectName): Promise<CopyOutcome> {
    const directory = commonDirectory(request.files.map((f) => f.key));
    let rowsLoaded = 0;
    for (const chunk of chunks(request.files, MAX_FILES_PER_COPY)) {
      const sql = copyStatement({
        staging: staging.sql,
        stage: this.stage.sql,
        directory,
        files: chunk.map((f) => f.key.slice(directory.length)),
      });
      const rows = await session.run(
        sql,
        {
          action: `COPY ${chunk.length} files from the stage ${this.stage.sql}`,
          privilege: `USAGE on stage ${this.stage.sql} (and on its database and schema)`,
        },
        [],
        request.signal,
      );
      rowsLoaded += checkCopyResult(rows, chunk, directory);
    }
    return { rowsLoaded, files: request.files.length };
  }

  /** Deletes what the load replaces; returns how many rows. */
  private async remove(
    session: Session,
    request: LoadRequest,
    target: ObjectName,
    staging: ObjectName,
    columns: ReadonlyMap<string, TableColumn>,
  ): Promise<number> {
    const ctx = { action: `delete the replaced rows of ${target.sql}`, privilege: `DELETE on ${target.sql}` };
    if (request.mode === 'replace') {
      return affected(await session.run(`DELETE FROM ${target.sql}`, ctx, [], request.signal));
    }
    if (request.mode === 'append') {
      const { sql, binds } = windowCondition(request.window, columns, target.sql);
      return affected(
        await session.run(`DELETE FROM ${target.sql} WHERE ${sql}`, ctx, binds, request.signal),
      );
    }
    const specs = new Map(request.columns.map((c) => [c.name, c]));
    const keys = request.key.map((k) => {
      const spec = specs.get(k);
      if (!spec) throw configError(`source.key column ${k} is not among the exported columns`);
      const column = resolveColumn(columns, k, target.sql);
      return { column, expr: insertExpression(spec, `s.${quote(k)}`, column) };
    });
    const select = keys.map((k) => `${k.expr} AS ${quote(k.column.name)}`).join(', ');
    const match = keys
      .map((k) => `${target.sql}.${quote(k.column.name)} = k.${quote(k.column.name)}`)
      .join(' AND ');
    const sql = `DELETE FROM ${target.sql} USING (SELECT DISTINCT ${select} FROM ${staging.sql} AS s) AS k WHERE ${match}`;
    return affected(await session.run(sql, ctx, [], request.signal));
  }

  /** Inserts the staging rows into the target, converting what COPY landed as text or bytes. */
  private async insert(
    session: Session,
    request: LoadRequest,
    target: ObjectName,
    staging: ObjectName,
    columns: ReadonlyMap<string, TableColumn>,
  ): Promise<number> {
    const pairs = request.columns.map((spec) => {
      const column = resolveColumn(columns, spec.name, target.sql);
      return { column, expr: insertExpression(spec, `s.${quote(spec.name)}`, column) };
    });
    const sql = `INSERT INTO ${target.sql} (${pairs.map((p) => quote(p.column.name)).join(', ')}) SELECT ${pairs.map((p) => p.expr).join(', ')} FROM ${staging.sql} AS s`;
    const rows = await session.run(
      sql,
      { action: `insert into ${target.sql}`, privilege: `INSERT on ${target.sql}` },
      [],
      request.signal,
    );
    return affected(rows);
  }

  async countWindow(table: string, window: Window): Promise<number | undefined> {
    const target = objectName(table, 'warehouse.table', this.defaults);
    const session = await this.connect(target);
    session.table = target.sql;
    const columns = await this.describe(session, target);
    if (!columns) return undefined;
    const { sql, binds } = windowCondition(window, columns, target.sql);
    const rows = await session.run(
      `SELECT COUNT(*) AS N FROM ${target.sql} WHERE ${sql}`,
      { action: `count the window in ${target.sql}`, privilege: `SELECT on ${target.sql}` },
      binds,
    );
    return Number(rows[0]?.N ?? 0);
  }

  async close(): Promise<void> {
    const session = await this.session?.catch(() => undefined);
    this.session = undefined;
    await session?.close();
  }
}

async function readSecretFile(path: string | undefined, key: string): Promise<string> {
  if (!path) throw configError(`${key} is required for this authenticator`);
  try {
    return await readFile(path, 'utf8');
  } catch (err) {
    throw configError(`cannot read ${key} ${path}: ${(err as Error).message}`, {
      cause: err,
      hint: 'mount the Secret (or projected token) at that path',
    });
  }
}

function columnList(
  columns: readonly ColumnSpec[],
  name: (c: ColumnSpec) => string,
  type: (c: ColumnSpec) => string,
) {
  return columns.map((c) => `${quote(name(c))} ${type(c)}`).join(', ');
}

/** The target table, typed from the Parquet columns. */
export function createTable(table: ObjectName, columns: readonly ColumnSpec[]): string {
  return `CREATE TABLE IF NOT EXISTS ${table.sql} (${columnList(columns, (c) => newColumnName(c.name), targetType)})`;
}

/** The staging table: the Parquet names exactly (COPY matches them case-sensitively), landing types. */
export function createStaging(table: ObjectName, columns: readonly ColumnSpec[]): string {
  return `CREATE TEMPORARY TABLE ${table.sql} (${columnList(columns, (c) => c.name, stagingType)})`;
}

/** The 0-files answer: one `status` column instead of one row per file. */
const NO_FILES = /copy executed with 0 files processed/i;

/**
 * Checks the per-file rows of one COPY against the files it named, and returns the rows loaded.
 * A file missing from the answer, not LOADED, or loading a different number of rows than it
 * holds fails the load (exit 3): the sum alone could hide one file loaded twice and one skipped.
 */
export function checkCopyResult(
  rows: readonly Row[],
  files: readonly StagedFile[],
  directory: string,
): number {
  const expected = files.reduce((n, f) => n + f.rows, 0);
  if (rows.length === 1 && !('rows_loaded' in rows[0]) && NO_FILES.test(String(Object.values(rows[0])[0]))) {
    if (expected === 0) return 0;
    throw validationError(
      `Snowflake's COPY processed 0 of ${files.length} files (${expected} rows): "${String(Object.values(rows[0])[0])}"`,
      {
        hint: 'the files were skipped, not loaded: check that the external stage points at stage.url and that nothing else removes the files',
      },
    );
  }
  const byName = new Map(rows.map((r) => [String(r.file ?? ''), r]));
  let loaded = 0;
  for (const file of files) {
    const name = file.key.slice(directory.length);
    const row = [...byName.entries()].find(([path]) => path === name || path.endsWith(`/${name}`))?.[1];
    if (!row) {
      throw validationError(`Snowflake's COPY reported nothing for ${file.key}; the load was rolled back`, {
        hint: 'check that the external stage points at stage.url',
      });
    }
    const status = String(row.status ?? '').toUpperCase();
    const rowsLoaded = Number(row.rows_loaded ?? 0);
    if (status !== 'LOADED' || rowsLoaded !== file.rows) {
      const error = row.first_error ? `: ${String(row.first_error)}` : '';
      throw validationError(
        `Snowflake's COPY of ${file.key} ended ${status || 'without a status'} with ${rowsLoaded} of ${file.rows} rows${error}; the load was rolled back`,
        { hint: 'compare the file with the table columns; the checkpoint did not move' },
      );
    }
    loaded += rowsLoaded;
  }
  return loaded;
}

/** The Snowflake warehouse for `warehouse.type: snowflake`. */
export async function create(config: Config, _store: ObjectStore): Promise<Warehouse> {
  const snowflake = config.warehouse.snowflake;
  if (!snowflake) throw configError('warehouse.type snowflake needs warehouse.snowflake');
  return new SnowflakeWarehouse({ ...snowflake, job: config.job });
}
