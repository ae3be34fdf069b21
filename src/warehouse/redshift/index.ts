/**
 * The Redshift warehouse (Serverless workgroup or provisioned cluster), through the Data API.
 *
 * A load writes a COPY manifest listing exactly the run's files next to them in the stage, then
 * submits ONE BatchExecuteStatement, which the Data API runs as one transaction in one session:
 * create the table when missing, create a temporary staging table, COPY the manifest's files into
 * it (FORMAT AS PARQUET), check in the same session that COPY loaded exactly the rows the files
 * hold (pg_last_copy_count(); a difference fails the statement, so the transaction rolls back),
 * delete what the load replaces (the window, the keys of the files, or everything), and insert
 * from the staging table. Nothing is visible before the batch commits, and a batch that fails or
 * is cancelled leaves the table as it was.
 *
 * The batch carries a ClientToken derived from the run and its SQL: a submission whose response
 * was lost is retried with the same token, and the Data API answers with the statement it
 * already started instead of starting a second load. Statements are polled with capped backoff
 * until a deadline, then cancelled; SIGTERM cancels too.
 */
import type {
  DescribeStatementResponse,
  Field,
  GetStatementResultResponse,
  RedshiftData,
  SqlParameter,
  SubStatementData,
} from '@aws-sdk/client-redshift-data';
import { quietAwsSdk } from '../../config/cloud.js';
import type { Config } from '../../config/schema.js';
import { pause as sleep } from '../../core/abort.js';
import { failpoint } from '../../core/failpoint.js';
import { dataPrefix } from '../../core/layout.js';
import { pollUntilEnded } from '../../core/poll.js';
import type { Window } from '../../core/window.js';
import { configError, NightshiftError, transientError, validationError } from '../../errors.js';
import type { AccessNeeds } from '../../identity/principal.js';
import type { ObjectStore } from '../../store/store.js';
import type { LoadMode, LoadRequest, LoadResult, Warehouse } from '../warehouse.js';
import {
  apiError,
  type ErrorScope,
  isConcurrentCreate,
  type StatementContext,
  statementFailure,
} from './errors.js';
import { redshiftAccess } from './grants.js';
import {
  clientToken,
  copyManifest,
  copyStatement,
  DESCRIBE_SQL,
  loadStatements,
  manifestKey,
  quote,
  type StepKind,
  stagingName,
  stepKind,
  type TableColumn,
  type TableName,
  tableName,
  windowCondition,
} from './sql.js';

/** The Data API calls the warehouse makes; the SDK's aggregated `RedshiftData` client has them. */
export type DataApiClient = Pick<
  RedshiftData,
  | 'executeStatement'
  | 'batchExecuteStatement'
  | 'describeStatement'
  | 'getStatementResult'
  | 'cancelStatement'
> & { destroy?(): void };

export interface RedshiftOptions {
  /** Serverless workgroup; give this or `cluster`. */
  readonly workgroup?: string;
  /** Provisioned cluster identifier. */
  readonly cluster?: string;
  readonly database: string;
  /** Schema of a table name without one. */
  readonly schema: string;
  /** Secrets Manager authentication; otherwise IAM (temporary credentials). */
  readonly secretArn?: string;
  /** With a cluster and IAM: the database user to connect as. */
  readonly dbUser?: string;
  /** IAM_ROLE of COPY: ARN(s) or `default`. */
  readonly iamRole: string;
  /** Region of the client, for messages. */
  readonly region?: string;
  /** Longest a load (or any statement) may run (ms). */
  readonly statementTimeoutMs: number;
  /** First and longest wait between two polls of a statement (ms). */
  readonly poll?: { initialMs: number; maxMs: number };
  /** After SIGTERM cancels a statement: how long to wait for its final state (ms). */
  readonly cancelWaitMs?: number;
}

type Row = Record<string, unknown>;

/** Statuses after which a statement does not change any more. */
const ENDED = new Set(['FINISHED', 'FAILED', 'ABORTED']);
/** Failed polls in a row (after the SDK's own retries) before the wait gives up. */
const MAX_POLL_FAILURES = 5;
/** Extra time past statement_timeout (a tenth, at most 30 s), so Redshift's own timeout reports first. */
const graceMs = (timeoutMs: number) => Math.min(30_000, Math.ceil(timeoutMs / 10));

export class RedshiftWarehouse implements Warehouse {
  readonly kind = 'redshift';
  private readonly client: DataApiClient;
  private readonly options: RedshiftOptions;
  private readonly store: ObjectStore;
  private readonly scope: ErrorScope;

  constructor(client: DataApiClient, options: RedshiftOptions, store: ObjectStore) {
    if (!options.workgroup === !options.cluster) {
      throw configError('give exactly one of warehouse.redshift.workgroup or warehouse.redshift.cluster');
    }
    this.client = client;
    this.options = options;
    this.store = store;
    this.scope = {
      target: options.workgroup ? `workgroup ${options.workgroup}` : `cluster ${options.cluster}`,
      database: options.database,
      region: options.region,
      auth: options.secretArn
        ? `secret ${options.secretArn}`
        : options.dbUser
          ? `database user ${options.dbUser}`
          : 'IAM',
      iamRole: options.iamRole,
    };
  }
  /** The runner's IAM policy and the database grants, for `nightshift iam`. */
  accessNeeded(table: string, mode: LoadMode): AccessNeeds {
    return redshiftAccess({ ...this.options, stageUrl: this.store.url, table, mode });
  }

  /** Where statements run and how the Data API authenticates, as every request names it. */
  private get connection() {
    const o = this.options;
    return {
      ...(o.workgroup ? { WorkgroupName: o.workgroup } : { ClusterIdentifier: o.cluster }),
      Database: o.database,
      ...(o.secretArn ? { SecretArn: o.secretArn } : {}),
      ...(o.dbUser ? { DbUser: o.dbUser } : {}),
    };
  }

  async load(request: LoadRequest): Promise<LoadResult> {
    checkFiles(request);
    request.signal?.throwIfAborted();
    const target = tableName(request.table, this.options.schema);
    const existing = await this.describe(target, request.signal);
    const manifestUrl = request.files.length ? await this.writeManifest(request) : undefined;
    const load = { request, target, manifestUrl };
    const ended = await this.submitLoad(load, existing);
    if (!existing && createRaced(ended)) {
      // Another session created the table between our look and our CREATE TABLE (typically the
      // load of a killed run of this job, still running): look again and load into its table.
      const created = await this.describe(target, request.signal);
      if (created) return this.outcome(await this.submitLoad(load, created, 'table created meanwhile'), load);
    }
    return this.outcome(ended, load);
  }

  /** Plans the load transaction for the table as it is, submits it, and waits for it to end. */
  private async submitLoad(
    load: { request: LoadRequest; target: TableName; manifestUrl: string | undefined },
    existing: Map<string, TableColumn> | undefined,
    resubmission?: string,
  ): Promise<DescribeStatementResponse> {
    const { request, target, manifestUrl } = load;
    const staging = stagingName(request.runId);
    const { steps, parameters } = loadStatements({
      mode: request.mode,
      target,
      existing,
      columns: request.columns,
      key: request.key,
      window: request.window,
      staging,
      copy:
        manifestUrl &&
        copyStatement({
          staging,
          manifestUrl,
          iamRole: this.options.iamRole,
          serializeToJson: request.columns.some((c) => c.list),
        }),
      expectedRows: request.expectedRows,
      statementTimeoutMs: this.options.statementTimeoutMs,
    });
    const ctx = { action: `load ${request.files.length} files into ${target.sql}` };
    const token = loadToken(request, target, ...(resubmission ? [resubmission] : []));
    const id = await this.submitBatch(
      steps.map((s) => s.sql),
      parameters,
      token,
      ctx,
    );
    return this.wait(id, ctx, request.signal);
  }

  /** Writes the COPY manifest of the run's files into the run's folder; returns its URL. */
  private async writeManifest(request: LoadRequest): Promise<string> {
    const key = manifestKey(dataPrefix(request.job, request.runId));
    await this.store.put(key, copyManifest(request.files), {
      contentType: 'application/json',
      signal: request.signal,
    });
    return this.store.urlOf(key);
  }

  /**
   * The result of a batch that ended: counts when it finished, the failure otherwise. Its
   * statements are told apart by their own text: a load submitted again gets back the batch
   * the first submission started, which may have been planned differently (before the table
   * existed).
   */
  private async outcome(
    ended: DescribeStatementResponse,
    load: { request: LoadRequest; target: TableName; manifestUrl: string | undefined },
  ): Promise<LoadResult> {
    const subs = ended.SubStatements ?? [];
    const sub = (kind: StepKind) => subs.find((s) => stepKind(s.QueryString ?? '') === kind);
    const { request, target } = load;
    if (ended.Status !== 'FINISHED') throw this.batchFailure(ended, load);
    const check = sub('check');
    if (check) {
      const copied = Number((await this.records(check.Id ?? `${ended.Id}:0`))[0]?.rows_loaded);
      if (copied !== request.expectedRows) {
        throw validationError(
          `Redshift's COPY reported ${copied} rows loaded but the files hold ${request.expectedRows}, after the transaction committed`,
          { hint: 'the checkpoint did not move; the next run replaces this window' },
        );
      }
    }
    const inserted = rowsOf(sub('insert'));
    if (inserted !== request.expectedRows) {
      throw validationError(
        `Redshift inserted ${inserted} rows into ${target.sql} but the files hold ${request.expectedRows}; the transaction had committed`,
        { hint: 'the checkpoint did not move; the next run replaces this window' },
      );
    }
    const deleted = sub('delete');
    return { rowsLoaded: inserted, rowsReplaced: deleted ? rowsOf(deleted) : 0, loadId: ended.Id };
  }

  /** A batch that FAILED or was ABORTED: the failing statement's own error, translated. */
  private batchFailure(
    ended: DescribeStatementResponse,
    load: { request: LoadRequest; target: TableName; manifestUrl: string | undefined },
  ): NightshiftError {
    const subs = ended.SubStatements ?? [];
    const index = subs.findIndex((s) => s.Status === 'FAILED');
    const step = index < 0 ? undefined : stepKind(subs[index].QueryString ?? '');
    const { request, target } = load;
    if (ended.Status === 'ABORTED' && index < 0) {
      return transientError(`the Redshift load into ${target.sql} (statement ${ended.Id}) was cancelled`, {
        hint: 'someone cancelled it (CancelStatement, or pg_cancel_backend); the next run retries the window',
      });
    }
    if (step === 'check') {
      const copied = rowsOf(subs.find((s) => stepKind(s.QueryString ?? '') === 'copy'));
      return validationError(
        `Redshift's COPY loaded ${copied >= 0 ? copied : 'a different number of'} rows from ${request.files.length} files but the files hold ${request.expectedRows}; the load was rolled back`,
        {
          hint: `compare the manifest ${load.manifestUrl} with the run manifest; the checkpoint did not move`,
        },
      );
    }
    const text = subs[index]?.Error ?? ended.Error ?? 'no error text';
    return statementFailure(text, this.stepContext(step, request, target, load.manifestUrl), this.scope);
  }

  /** What a statement of the load transaction does and needs, for its error. */
  private stepContext(
    step: StepKind | undefined,
    request: LoadRequest,
    target: TableName,
    manifestUrl: string | undefined,
  ): StatementContext {
    const schema = quote(target.schema);
    switch (step) {
      case 'create':
        return {
          action: `create the table ${target.sql}`,
          privilege: `USAGE and CREATE on schema ${schema}`,
        };
      case 'staging':
        return {
          action: 'create the temporary staging table',
          privilege: `TEMP on database ${quote(this.options.database)}`,
        };
      case 'copy':
        return {
          action: `COPY ${request.files.length} files listed in ${manifestUrl}`,
          privilege: `the right to use the IAM role for COPY (GRANT ASSUMEROLE ON '${this.options.iamRole}' TO <user> FOR COPY, when ASSUMEROLE is restricted)`,
        };
      case 'delete':
        return {
          action: `delete the replaced rows of ${target.sql}`,
          privilege: `USAGE on schema ${schema}, and SELECT and DELETE on ${target.sql}`,
        };
      case 'insert':
        return {
          action: `insert into ${target.sql}`,
          privilege: `USAGE on schema ${schema}, and INSERT on ${target.sql}`,
        };
      default:
        return { action: `load into ${target.sql}` };
    }
  }

  /** The table's columns, or undefined when it does not exist (or the user cannot see it). */
  private async describe(
    target: TableName,
    signal?: AbortSignal,
  ): Promise<Map<string, TableColumn> | undefined> {
    const rows = await this.query(
      DESCRIBE_SQL,
      [
        { name: 'schema', value: target.schema },
        { name: 'table', value: target.name },
      ],
      { action: `read the columns of ${target.sql}`, privilege: `USAGE on schema ${quote(target.schema)}` },
      signal,
    );
    if (rows.length === 0) return undefined;
    const numeric = (v: unknown) => (v === null || v === undefined ? null : Number(v));
    return new Map(
      rows.map((r) => {
        const name = String(r.column_name);
        const column: TableColumn = {
          name,
          dataType: String(r.data_type),
          length: numeric(r.character_maximum_length),
          precision: numeric(r.numeric_precision),
          scale: numeric(r.numeric_scale),
        };
        return [name, column];
      }),
    );
  }

  async countWindow(table: string, window: Window): Promise<number | undefined> {
    const target = tableName(table, this.options.schema);
    const columns = await this.describe(target);
    if (!columns) return undefined;
    const { sql, parameters } = windowCondition(window, columns, target.sql);
    const rows = await this.query(`SELECT COUNT(*) AS n FROM ${target.sql} WHERE ${sql}`, parameters, {
      action: `count the window in ${target.sql}`,
      privilege: `SELECT on ${target.sql}`,
    });
    return Number(rows[0]?.n ?? 0);
  }

  /** Runs one statement and returns all its rows, across result pages. */
  private async query(
    sql: string,
    parameters: readonly SqlParameter[],
    ctx: StatementContext,
    signal?: AbortSignal,
  ): Promise<Row[]> {
    let id: string;
    try {
      const out = await this.client.executeStatement({
        ...this.connection,
        Sql: sql,
        ...(parameters.length ? { Parameters: [...parameters] } : {}),
      });
      id = requireId(out.Id);
    } catch (err) {
      throw apiError(err, ctx, this.scope);
    }
    const ended = await this.wait(id, ctx, signal);
    if (ended.Status !== 'FINISHED') {
      throw statementFailure(ended.Error ?? `the statement ended ${ended.Status}`, ctx, this.scope);
    }
    return this.records(id, ctx);
  }

  private async submitBatch(
    sqls: string[],
    parameters: readonly SqlParameter[],
    token: string,
    ctx: StatementContext,
  ): Promise<string> {
    try {
      const out = await this.client.batchExecuteStatement({
        ...this.connection,
        Sqls: sqls,
        ...(parameters.length ? { Parameters: [...parameters] } : {}),
        ClientToken: token,
        StatementName: 'nightshift-load',
      });
      const id = requireId(out.Id);
      await failpoint('load-submitted');
      return id;
    } catch (err) {
      throw apiError(err, ctx, this.scope);
    }
  }

  /**
   * Polls DescribeStatement with capped backoff until the statement ends. At the deadline the
   * statement is cancelled (exit 75); on SIGTERM it is cancelled and its final state awaited
   * briefly: a batch that still committed counts as loaded.
   */
  private async wait(
    id: string,
    ctx: StatementContext,
    signal?: AbortSignal,
  ): Promise<DescribeStatementResponse> {
    let failures = 0;
    return pollUntilEnded<DescribeStatementResponse>({
      ...(this.options.poll ?? { initialMs: 250, maxMs: 5_000 }),
      deadline: Date.now() + this.options.statementTimeoutMs + graceMs(this.options.statementTimeoutMs),
      signal,
      read: () =>
        this.describeStatement(id, ctx).then(
          (d) => {
            failures = 0;
            return d;
          },
          (err: NightshiftError) => {
            if (err.code !== 'transient' || ++failures >= MAX_POLL_FAILURES) throw err;
            return undefined;
          },
        ),
      ended: (d: DescribeStatementResponse) => ENDED.has(d.Status ?? ''),
      onStop: () => this.stopped(id, ctx),
      onDeadline: async () => {
        await this.cancel(id);
        throw transientError(
          `Redshift did not ${ctx.action} within ${seconds(this.options.statementTimeoutMs)} s; statement ${id} was cancelled and rolls back`,
          { hint: 'raise warehouse.redshift.statement_timeout, or check the workgroup for queued queries' },
        );
      },
    });
  }

  /** SIGTERM: cancel, then report what became of the statement. */
  private async stopped(id: string, ctx: StatementContext): Promise<DescribeStatementResponse> {
    await this.cancel(id);
    const until = Date.now() + (this.options.cancelWaitMs ?? 5_000);
    while (Date.now() < until) {
      const d = await this.describeStatement(id, ctx).catch(() => undefined);
      if (d?.Status === 'FINISHED') return d;
      if (d && ENDED.has(d.Status ?? '')) break;
      await sleep(Math.min(250, Math.max(0, until - Date.now())), undefined);
    }
    throw new NightshiftError(
      'terminated',
      `stopped by SIGTERM while Redshift ran statement ${id} (${ctx.action}); it was cancelled and its transaction rolls back`,
    );
  }

  private async describeStatement(id: string, ctx: StatementContext): Promise<DescribeStatementResponse> {
    try {
      return await this.client.describeStatement({ Id: id });
    } catch (err) {
      throw apiError(err, { action: `read the state of statement ${id} (${ctx.action})` }, this.scope);
    }
  }

  private async cancel(id: string): Promise<void> {
    await this.client.cancelStatement({ Id: id }).catch(() => undefined);
  }

  /** All result rows of a finished statement, following NextToken across pages. */
  private async records(id: string, ctx?: StatementContext): Promise<Row[]> {
    const rows: Row[] = [];
    let token: string | undefined;
    do {
      let page: GetStatementResultResponse;
      try {
        page = await this.client.getStatementResult({ Id: id, ...(token ? { NextToken: token } : {}) });
      } catch (err) {
        throw apiError(
          err,
          { action: `read the result of statement ${id}${ctx ? ` (${ctx.action})` : ''}` },
          this.scope,
        );
      }
      const names = (page.ColumnMetadata ?? []).map((c, i) => c.name ?? c.label ?? `column${i + 1}`);
      for (const record of page.Records ?? []) {
        rows.push(Object.fromEntries(record.map((field, i) => [names[i], fieldValue(field)])));
      }
      token = page.NextToken || undefined;
    } while (token);
    return rows;
  }

  async close(): Promise<void> {
    this.client.destroy?.();
  }
}

/**
 * The ClientToken of a load: derived from the run and exactly what it loads, so that the same
 * load submitted again (a response lost on the way back, or the step retried) gets the batch
 * the first submission started, and a run loads its files at most once.
 */
function loadToken(request: LoadRequest, target: TableName, ...more: string[]): string {
  const files = request.files.map((f) => `${f.url}:${f.bytes}`);
  return clientToken(
    'nightshift-load',
    request.job,
    request.runId,
    target.sql,
    request.mode,
    String(request.expectedRows),
    ...files,
    ...more,
  );
}

/** Whether a batch failed at its CREATE TABLE because another session created the same table. */
function createRaced(ended: DescribeStatementResponse): boolean {
  const failed = ended.SubStatements?.find((s) => s.Status === 'FAILED');
  return (
    ended.Status === 'FAILED' &&
    stepKind(failed?.QueryString ?? '') === 'create' &&
    isConcurrentCreate(failed?.Error ?? '')
  );
}

/** Every staged file must be an S3 object, and an empty load must expect no rows. */
function checkFiles(request: LoadRequest): void {
  for (const f of request.files) {
    if (!f.url.startsWith('s3://')) {
      throw configError(`Redshift loads from Amazon S3 only, not ${f.url}`, {
        hint: 'set stage.url to s3://bucket/prefix',
      });
    }
  }
  if (!request.files.length && request.expectedRows !== 0) {
    throw validationError(`no files to load, but ${request.expectedRows} rows expected`);
  }
}

function requireId(id: string | undefined): string {
  if (!id) throw new Error('the Data API answered without a statement Id');
  return id;
}

/** Rows a sub-statement returned or affected; -1 when the Data API does not say. */
function rowsOf(sub: SubStatementData | undefined): number {
  return sub?.ResultRows ?? -1;
}

/** One Data API field as a plain value. */
function fieldValue(field: Field): unknown {
  if (field.isNull) return null;
  if (field.longValue !== undefined) return field.longValue;
  if (field.doubleValue !== undefined) return field.doubleValue;
  if (field.booleanValue !== undefined) return field.booleanValue;
  if (field.stringValue !== undefined) return field.stringValue;
  if (field.blobValue !== undefined) return Buffer.from(field.blobValue);
  return null;
}

/** Seconds for a message: one decimal below ten. */
function seconds(ms: number): string {
  return (ms / 1000).toFixed(ms < 10_000 ? 1 : 0);
}

/** The Redshift warehouse for `warehouse.type: redshift`, with the AWS default credential chain. */
export async function create(config: Config, store: ObjectStore): Promise<Warehouse> {
  const rs = config.warehouse.redshift;
  if (!rs) throw configError('warehouse.type redshift needs warehouse.redshift');
  quietAwsSdk();
  const { RedshiftData } = await import('@aws-sdk/client-redshift-data');
  // The default credential chain: IRSA or EKS Pod Identity in a pod, no static keys.
  const client = new RedshiftData({
    ...(rs.region ? { region: rs.region } : {}),
    ...(rs.endpoint ? { endpoint: rs.endpoint } : {}),
  });
  return new RedshiftWarehouse(
    client,
    {
      workgroup: rs.workgroup,
      cluster: rs.cluster,
      database: rs.database,
      schema: rs.schema,
      secretArn: rs.secret_arn,
      dbUser: rs.db_user,
      iamRole: rs.iam_role,
      region: rs.region ?? (await client.config.region().catch(() => undefined)),
      statementTimeoutMs: rs.statement_timeout,
    },
    store,
  );
}
