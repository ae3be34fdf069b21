/**
 * A local HTTP server that answers as the Amazon Redshift Data API does, for the contract tests.
 * The real @aws-sdk/client-redshift-data talks to it through its documented `endpoint` option.
 * What it answers, and how (from the Data API reference and the SDK's own model):
 *
 * - The awsJson1_1 protocol: POST / with `X-Amz-Target: RedshiftData.<Operation>`; errors are
 *   HTTP 400 (client) or 500 (server) with `{"__type": "<Exception>", "message": ...}`. The SigV4
 *   Authorization header names the caller (access key) and the Region it signed for; an unknown
 *   key is UnrecognizedClientException, a denied operation AccessDeniedException, and a
 *   workgroup or cluster asked for in another Region does not exist there.
 * - ExecuteStatement / BatchExecuteStatement: the statement is SUBMITTED, then PICKED, STARTED
 *   and FINISHED, FAILED or ABORTED; ids are UUIDs and a batch's statements are `<id>:<n>`. A
 *   ClientToken seen before returns the statement it started (idempotency); named parameters
 *   (`:name`, never inside quotes) are bound, and unused, missing or empty ones are refused.
 *   A batch runs as one transaction in one session: a failing statement rolls back all of it.
 * - DescribeStatement with SubStatements (Status, Error, ResultRows, HasResultSet);
 *   GetStatementResult with typed `Records` (longValue, doubleValue, booleanValue, stringValue,
 *   isNull), ColumnMetadata and TotalNumRows, paged with NextToken; CancelStatement.
 *
 * Statements run on a real PostgreSQL database standing in for Redshift, each statement or batch
 * in its own session as the database user the authentication names (`IAMR:<role>` for an IAM
 * role, the secret's user, or DbUser), so grants are enforced by the database itself. The few
 * Redshift spellings the runner uses exist there: SUPER (a jsonb domain), JSON_PARSE,
 * TO_HEX(varbyte), VARBYTE(n), pg_last_copy_count() and the SVV_COLUMNS view. COPY ... FORMAT AS
 * PARQUET MANIFEST is carried out here: the IAM role must be associated and may read only its
 * buckets, the bucket must be in the server's Region, the manifest and every file it lists must
 * exist with their `meta.content_length`, Parquet columns land by position, and nested columns
 * load into SUPER only with SERIALIZETOJSON. Error texts follow Redshift's wording.
 *
 * Faults are injected per operation (an error answer, or a response lost after the request was
 * carried out) and per statement (a Redshift error text, or a slow statement).
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import pg from 'pg';
import { readBody, sendJson } from './http.js';

export interface Principal {
  /** The caller, `arn:aws:sts::123456789012:assumed-role/<role>/<session>` or an IAM user ARN. */
  readonly arn: string;
  /** Data API operations the caller's policies do not allow. */
  readonly deny?: readonly string[];
}

export interface StageBucket {
  /** `s3://bucket/prefix/` that the directory stands for. */
  readonly url: string;
  readonly dir: string;
  /** Region of the bucket (default: the server's). */
  readonly region?: string;
  /** Where an object's bytes are, by its key under `url`, when not `dir/<key>` (an S3 server's own files). */
  readonly objectPath?: (key: string) => string;
}

export interface FakeRedshiftOptions {
  /** Admin URL of the PostgreSQL database the statements run in (a fresh one per server). */
  readonly pgUrl: string;
  readonly region: string;
  readonly account: string;
  /** The Serverless workgroup, or the cluster, the server answers for. */
  readonly workgroup?: string;
  readonly cluster?: string;
  readonly database: string;
  /** Callers by access key id. */
  readonly principals: Record<string, Principal>;
  /** Secrets Manager secrets by ARN: the database user each holds. */
  readonly secrets?: Record<string, string>;
  /** IAM roles associated with the workgroup or cluster (the first is the default role), each with the buckets it may read. */
  readonly roles: Record<string, { buckets: readonly string[] }>;
  readonly buckets: readonly StageBucket[];
  /** Records per GetStatementResult page. */
  readonly pageSize?: number;
  /** Time a statement spends SUBMITTED, then PICKED, before it starts (ms). */
  readonly queueMs?: number;
}

type Status = 'SUBMITTED' | 'PICKED' | 'STARTED' | 'FINISHED' | 'FAILED' | 'ABORTED';

interface Field {
  isNull?: boolean;
  longValue?: number;
  doubleValue?: number;
  booleanValue?: boolean;
  stringValue?: string;
}

interface Result {
  columns: { name: string; label: string; typeName: string; nullable: number }[];
  records: Field[][];
}

/** One statement of a request (a batch has several). */
export interface SubStatement {
  readonly sql: string;
  status: Status;
  error?: string;
  resultRows: number;
  result?: Result;
  startedAt?: number;
  endedAt?: number;
}

/** One ExecuteStatement or BatchExecuteStatement, as the server keeps it. */
export interface FakeStatement {
  readonly id: string;
  readonly batch: boolean;
  readonly subs: SubStatement[];
  readonly parameters: readonly { name: string; value: string }[];
  readonly clientToken?: string;
  readonly dbUser: string;
  readonly createdAt: number;
  status: Status;
  error?: string;
  updatedAt: number;
  cancelRequested: boolean;
  pid?: number;
  done: Promise<void>;
}

/** A fault for the next call(s) of one operation. */
export interface ApiFault {
  readonly op: string;
  /** How many calls it applies to. */
  times?: number;
  /** Answer with this error instead of carrying the request out. */
  readonly error?: { type: string; status: number; message: string };
  /** Carry the request out, then drop the connection without an answer. */
  readonly lose?: boolean;
}

interface StatementFault {
  readonly pattern: RegExp;
  times: number;
  readonly error?: string;
  readonly delayMs?: number;
  /** Held until this settles (see holdStatement). */
  readonly until?: Promise<void>;
}

class ApiError extends Error {
  constructor(
    readonly type: string,
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** An error a statement fails with, worded as Redshift words it. */
class StatementError extends Error {}

const COPY_RE =
  /^COPY\s+("(?:[^"]|"")+"|\S+)\s+FROM\s+'([^']*)'\s+IAM_ROLE\s+('[^']*'|default)\s+FORMAT\s+AS\s+PARQUET((?:\s+[A-Z_]+)*)$/i;

/** PostgreSQL type OIDs answered as longValue, doubleValue and booleanValue. */
const LONG_OIDS = new Set([20, 21, 23, 26]);
const DOUBLE_OIDS = new Set([700, 701]);
const TYPE_NAMES: Record<number, string> = {
  16: 'bool',
  20: 'int8',
  21: 'int2',
  23: 'int4',
  25: 'text',
  700: 'float4',
  701: 'float8',
  1043: 'varchar',
  1082: 'date',
  1114: 'timestamp',
  1184: 'timestamptz',
  1700: 'numeric',
};

/** What makes PostgreSQL speak the Redshift the runner uses. */
const EMULATION = [
  `DO $$ BEGIN CREATE DOMAIN super AS jsonb; EXCEPTION WHEN duplicate_object THEN NULL; END $$`,
  `CREATE OR REPLACE FUNCTION json_parse(text) RETURNS super LANGUAGE sql IMMUTABLE AS $$ SELECT CAST(CAST($1 AS jsonb) AS super) $$`,
  `CREATE OR REPLACE FUNCTION to_hex(bytea) RETURNS text LANGUAGE sql IMMUTABLE AS $$ SELECT encode($1, 'hex') $$`,
  `CREATE OR REPLACE FUNCTION pg_last_copy_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT CAST(COALESCE(NULLIF(current_setting('redshift.last_copy_count', true), ''), '-1') AS bigint) $$`,
  `CREATE OR REPLACE VIEW svv_columns AS SELECT CAST(table_schema AS varchar) AS table_schema, CAST(table_name AS varchar) AS table_name, CAST(column_name AS varchar) AS column_name, CAST(ordinal_position AS int) AS ordinal_position,
     CAST(CASE WHEN domain_name = 'super' THEN 'super' WHEN data_type = 'bytea' THEN 'binary varying' ELSE data_type END AS varchar) AS data_type,
     CAST(character_maximum_length AS int) AS character_maximum_length, CAST(numeric_precision AS int) AS numeric_precision, CAST(numeric_scale AS int) AS numeric_scale
     FROM information_schema.columns`,
  `GRANT SELECT ON svv_columns TO PUBLIC`,
];

export class FakeRedshiftData {
  /** Every request, in order: operation, body and caller. */
  readonly requests: { op: string; body: Record<string, unknown>; accessKey?: string }[] = [];
  /** Every statement started, in order. */
  readonly statements: FakeStatement[] = [];
  private readonly byToken = new Map<string, FakeStatement>();
  private readonly faults: ApiFault[] = [];
  private readonly statementFaults: StatementFault[] = [];
  private server: Server | undefined;
  private adminClient: pg.Client | undefined;
  private duck: DuckDBInstance | undefined;
  private port = 0;

  constructor(readonly options: FakeRedshiftOptions) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async start(): Promise<void> {
    this.adminClient = new pg.Client({ connectionString: this.options.pgUrl });
    await this.adminClient.connect();
    for (const sql of EMULATION) await this.adminClient.query(sql);
    this.duck = await DuckDBInstance.create(':memory:');
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        send(res, 500, { __type: 'InternalServerException', message: String(err) });
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    await Promise.allSettled(this.statements.map((s) => s.done));
    await new Promise<void>((resolve) => {
      this.server?.closeAllConnections();
      this.server?.close(() => resolve());
    });
    await this.adminClient?.end();
    this.duck?.closeSync();
  }

  /** Runs SQL as the database's owner (setup, grants, and reading what a load left). */
  async admin<T extends pg.QueryResultRow = Record<string, unknown>>(
    sql: string,
    values?: unknown[],
  ): Promise<T[]> {
    if (!this.adminClient) throw new Error('server not started');
    return (await this.adminClient.query<T>(sql, values)).rows;
  }

  /** Injects a fault into the next call(s) of an operation. */
  inject(fault: ApiFault): void {
    this.faults.push({ times: 1, ...fault });
  }

  /** Removes the faults not yet used. */
  clearFaults(): void {
    this.faults.length = 0;
    this.statementFaults.length = 0;
  }

  /** The next statement(s) matching fail with this Redshift error text. */
  failStatement(pattern: RegExp, error: string, times = 1): void {
    this.statementFaults.push({ pattern, error, times });
  }

  /** The next statement(s) matching take this long before they run (cancellable). */
  delayStatement(pattern: RegExp, delayMs: number, times = 1): void {
    this.statementFaults.push({ pattern, delayMs, times });
  }

  /**
   * The next statement matching waits, inside its transaction, until `release` is called (or it is
   * cancelled): what came before it in its batch stays uncommitted meanwhile.
   */
  holdStatement(pattern: RegExp): { release: () => void } {
    let release: () => void = () => undefined;
    const until = new Promise<void>((resolve) => {
      release = resolve;
    });
    this.statementFaults.push({ pattern, until, times: 1 });
    return { release };
  }

  /** Batches started, in order. */
  batches(): FakeStatement[] {
    return this.statements.filter((s) => s.batch);
  }

  // ------------------------------------------------------------------ protocol

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const raw = (await readBody(req)).toString('utf8');
    const body = (raw ? JSON.parse(raw) : {}) as Record<string, unknown>;
    const op = String(req.headers['x-amz-target'] ?? '').replace(/^RedshiftData\./, '');
    const auth = parseAuthorization(req.headers.authorization);
    this.requests.push({ op, body, accessKey: auth?.accessKey });
    const fault = this.takeFault(op);
    if (fault?.error) {
      send(res, fault.error.status, { __type: fault.error.type, message: fault.error.message });
      return;
    }
    let answer: { status: number; body: unknown };
    try {
      const caller = this.authorize(op, auth);
      answer = { status: 200, body: await this.dispatch(op, body, caller) };
    } catch (err) {
      if (!(err instanceof ApiError)) throw err;
      answer = { status: err.status, body: { __type: err.type, message: err.message, ...err.extra } };
    }
    if (fault?.lose) {
      req.socket.destroy();
      return;
    }
    send(res, answer.status, answer.body);
  }

  private takeFault(op: string): ApiFault | undefined {
    const index = this.faults.findIndex((f) => f.op === op);
    if (index < 0) return undefined;
    const fault = this.faults[index];
    fault.times = (fault.times ?? 1) - 1;
    if (fault.times <= 0) this.faults.splice(index, 1);
    return fault;
  }

  private authorize(op: string, auth: Authorization | undefined): { principal: Principal; region: string } {
    const principal = auth && this.options.principals[auth.accessKey];
    if (!auth || !principal) {
      throw new ApiError(
        'UnrecognizedClientException',
        400,
        'The security token included in the request is invalid.',
      );
    }
    if (auth.service !== 'redshift-data') {
      throw new ApiError(
        'InvalidSignatureException',
        400,
        `Credential should be scoped to correct service: 'redshift-data'.`,
      );
    }
    if (principal.deny?.includes(op)) {
      throw new ApiError(
        'AccessDeniedException',
        400,
        `User: ${principal.arn} is not authorized to perform: redshift-data:${op} on resource: ${this.resourceArn()} because no identity-based policy allows the redshift-data:${op} action`,
      );
    }
    return { principal, region: auth.region };
  }

  private resourceArn(): string {
    const { region, account, workgroup, cluster } = this.options;
    return workgroup
      ? `arn:aws:redshift-serverless:${region}:${account}:workgroup/${workgroup}`
      : `arn:aws:redshift:${region}:${account}:cluster:${cluster}`;
  }

  private async dispatch(
    op: string,
    body: Record<string, unknown>,
    caller: { principal: Principal; region: string },
  ): Promise<unknown> {
    switch (op) {
      case 'ExecuteStatement':
        return this.submit(body, caller, [String(body.Sql ?? '')], false);
      case 'BatchExecuteStatement':
        return this.submit(body, caller, (body.Sqls as string[] | undefined) ?? [], true);
      case 'DescribeStatement':
        return this.describe(String(body.Id ?? ''));
      case 'GetStatementResult':
        return this.result(String(body.Id ?? ''), body.NextToken as string | undefined);
      case 'CancelStatement':
        return this.cancel(String(body.Id ?? ''));
      default:
        throw new ApiError('UnknownOperationException', 400, `unknown operation ${op}`);
    }
  }

  /** The database user a request connects as. */
  private dbUser(body: Record<string, unknown>, caller: { principal: Principal; region: string }): string {
    const { workgroup, cluster, region, secrets } = this.options;
    const wg = body.WorkgroupName as string | undefined;
    const cl = body.ClusterIdentifier as string | undefined;
    if (!wg === !cl) {
      throw new ApiError(
        'ValidationException',
        400,
        'Either WorkgroupName or ClusterIdentifier must be specified, but not both.',
      );
    }
    const here = caller.region === region;
    if (wg && (!here || wg !== workgroup)) {
      throw new ApiError('ValidationException', 400, `Workgroup ${wg} not found.`);
    }
    if (cl && (!here || cl !== cluster)) {
      throw new ApiError('ValidationException', 400, `Cluster ${cl} not found.`);
    }
    if (!body.Database) throw new ApiError('ValidationException', 400, 'Database must be specified.');
    if (body.SecretArn) {
      const user = secrets?.[String(body.SecretArn)];
      if (!user)
        throw new ApiError('ValidationException', 400, `Secrets Manager can't find the specified secret.`);
      return user;
    }
    if (body.DbUser) {
      if (wg) throw new ApiError('ValidationException', 400, 'DbUser is not supported for a workgroup.');
      return String(body.DbUser);
    }
    const role = /:assumed-role\/([^/]+)\//.exec(caller.principal.arn);
    return role ? `IAMR:${role[1]}` : `IAM:${caller.principal.arn.split('/').pop()}`;
  }

  private async submit(
    body: Record<string, unknown>,
    caller: { principal: Principal; region: string },
    sqls: string[],
    batch: boolean,
  ): Promise<unknown> {
    const dbUser = this.dbUser(body, caller);
    const token = body.ClientToken as string | undefined;
    const seen = token ? this.byToken.get(token) : undefined;
    const statement = seen ?? this.newStatement(body, sqls, batch, dbUser, token);
    return {
      Id: statement.id,
      CreatedAt: statement.createdAt / 1000,
      Database: body.Database,
      DbUser: dbUser,
      ...(body.WorkgroupName
        ? { WorkgroupName: body.WorkgroupName }
        : { ClusterIdentifier: body.ClusterIdentifier }),
      ...(body.SecretArn ? { SecretArn: body.SecretArn } : {}),
    };
  }

  private newStatement(
    body: Record<string, unknown>,
    sqls: string[],
    batch: boolean,
    dbUser: string,
    token: string | undefined,
  ): FakeStatement {
    if (sqls.length === 0 || sqls.some((s) => !s.trim())) {
      throw new ApiError('ValidationException', 400, 'SQL statement must not be empty.');
    }
    if (sqls.length > 40)
      throw new ApiError('ValidationException', 400, 'Batch can have at most 40 SQL statements.');
    const parameters = (body.Parameters as { name: string; value: string }[] | undefined) ?? [];
    bindAll(sqls, parameters);
    const now = Date.now();
    const statement: FakeStatement = {
      id: randomUUID(),
      batch,
      subs: sqls.map((sql) => ({ sql, status: 'SUBMITTED', resultRows: -1 })),
      parameters,
      clientToken: token,
      dbUser,
      createdAt: now,
      updatedAt: now,
      status: 'SUBMITTED',
      cancelRequested: false,
      done: Promise.resolve(),
    };
    if (token) this.byToken.set(token, statement);
    this.statements.push(statement);
    statement.done = this.run(statement, String(body.Database)).catch(() => undefined);
    return statement;
  }

  private find(id: string): { statement: FakeStatement; sub?: SubStatement } {
    const [base, n] = id.split(':');
    const statement = this.statements.find((s) => s.id === base);
    if (!statement)
      throw new ApiError('ResourceNotFoundException', 400, 'Query does not exist.', { ResourceId: id });
    if (n === undefined) return { statement };
    const sub = statement.batch ? statement.subs[Number(n) - 1] : undefined;
    if (!sub)
      throw new ApiError('ResourceNotFoundException', 400, 'Query does not exist.', { ResourceId: id });
    return { statement, sub };
  }

  private describe(id: string): unknown {
    const { statement, sub } = this.find(id);
    if (sub) return { Id: id, ...this.describeSub(sub) };
    const head = statement.batch ? undefined : statement.subs[0];
    return {
      Id: statement.id,
      Status: statement.status,
      ...(statement.error ? { Error: statement.error } : {}),
      CreatedAt: statement.createdAt / 1000,
      UpdatedAt: statement.updatedAt / 1000,
      Duration: ended(statement.status) ? (statement.updatedAt - statement.createdAt) * 1e6 : -1,
      Database: this.options.database,
      DbUser: statement.dbUser,
      ...(this.options.workgroup
        ? { WorkgroupName: this.options.workgroup }
        : { ClusterIdentifier: this.options.cluster }),
      HasResultSet: statement.subs.some((s) => s.result !== undefined),
      QueryString: statement.batch ? undefined : head?.sql,
      ResultRows: head ? head.resultRows : -1,
      ResultSize: -1,
      RedshiftPid: statement.pid ?? 0,
      ...(statement.parameters.length ? { QueryParameters: statement.parameters } : {}),
      ...(statement.batch
        ? {
            SubStatements: statement.subs.map((s, i) => ({
              Id: `${statement.id}:${i + 1}`,
              ...this.describeSub(s),
            })),
          }
        : {}),
    };
  }

  private describeSub(sub: SubStatement): Record<string, unknown> {
    return {
      Status: sub.status,
      ...(sub.error ? { Error: sub.error } : {}),
      QueryString: sub.sql,
      ResultRows: sub.resultRows,
      ResultSize: -1,
      HasResultSet: sub.result !== undefined,
      CreatedAt: (sub.startedAt ?? Date.now()) / 1000,
      UpdatedAt: (sub.endedAt ?? Date.now()) / 1000,
      Duration: sub.startedAt && sub.endedAt ? (sub.endedAt - sub.startedAt) * 1e6 : -1,
    };
  }

  private result(id: string, nextToken: string | undefined): unknown {
    const { statement, sub } = this.find(id);
    const target = sub ?? (statement.batch ? undefined : statement.subs[0]);
    if (target?.status !== 'FINISHED' || !target.result) {
      throw new ApiError(
        'ValidationException',
        400,
        'Query does not have result. Please check query status with DescribeStatement.',
      );
    }
    const pageSize = this.options.pageSize ?? 1000;
    const offset = nextToken ? Number(Buffer.from(nextToken, 'base64').toString()) : 0;
    const records = target.result.records.slice(offset, offset + pageSize);
    const next = offset + pageSize < target.result.records.length ? offset + pageSize : undefined;
    return {
      Records: records,
      ColumnMetadata: target.result.columns,
      TotalNumRows: target.result.records.length,
      ...(next !== undefined ? { NextToken: Buffer.from(String(next)).toString('base64') } : {}),
    };
  }

  private async cancel(id: string): Promise<unknown> {
    const { statement } = this.find(id);
    if (ended(statement.status)) {
      throw new ApiError(
        'ValidationException',
        400,
        `Could not cancel a query that is already in ${statement.status} state with ID: ${statement.id}`,
      );
    }
    statement.cancelRequested = true;
    if (statement.pid) await this.admin('SELECT pg_cancel_backend($1)', [statement.pid]);
    return { Status: true };
  }

  // ------------------------------------------------------------------ execution

  private async run(statement: FakeStatement, database: string): Promise<void> {
    const queue = this.options.queueMs ?? 30;
    await sleep(queue);
    this.setStatus(statement, 'PICKED');
    await sleep(queue);
    if (statement.cancelRequested) return this.abort(statement, 0);
    this.setStatus(statement, 'STARTED');
    const url = new URL(this.options.pgUrl);
    if (database !== this.options.database) {
      return this.fail(statement, 0, `FATAL: database "${database}" does not exist`);
    }
    const client = new pg.Client({
      connectionString: url.href,
      types: { getTypeParser: () => (value: string) => value },
    });
    await client.connect();
    try {
      statement.pid = Number((await client.query('SELECT pg_backend_pid() AS pid')).rows[0].pid);
      await this.ensureUser(statement.dbUser);
      await client.query(`SET ROLE ${ident(statement.dbUser)}`);
      if (statement.batch) await client.query('BEGIN');
      const bound = bindAll(
        statement.subs.map((s) => s.sql),
        statement.parameters,
      );
      for (const [i, sub] of statement.subs.entries()) {
        if (statement.cancelRequested) {
          if (statement.batch) await client.query('ROLLBACK').catch(() => undefined);
          return this.abort(statement, i);
        }
        sub.status = 'STARTED';
        sub.startedAt = Date.now();
        try {
          await this.runOne(client, statement, sub, bound[i]);
        } catch (err) {
          if (statement.batch) await client.query('ROLLBACK').catch(() => undefined);
          if (statement.cancelRequested) return this.abort(statement, i);
          return this.fail(statement, i, redshiftText(err));
        }
        sub.status = 'FINISHED';
        sub.endedAt = Date.now();
        statement.updatedAt = Date.now();
      }
      if (statement.batch) await client.query('COMMIT');
      this.setStatus(statement, 'FINISHED');
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  private setStatus(statement: FakeStatement, status: Status): void {
    statement.status = status;
    statement.updatedAt = Date.now();
  }

  private fail(statement: FakeStatement, index: number, error: string): void {
    const sub = statement.subs[index];
    sub.status = 'FAILED';
    sub.error = error;
    sub.endedAt = Date.now();
    for (const later of statement.subs.slice(index + 1)) later.status = 'ABORTED';
    statement.error = error;
    this.setStatus(statement, 'FAILED');
  }

  private abort(statement: FakeStatement, index: number): void {
    for (const sub of statement.subs.slice(index)) sub.status = 'ABORTED';
    this.setStatus(statement, 'ABORTED');
  }

  /** Redshift creates the database user of an IAM identity at its first connection. */
  private async ensureUser(user: string): Promise<void> {
    const found = await this.admin('SELECT 1 FROM pg_roles WHERE rolname = $1', [user]);
    if (!found.length) await this.admin(`CREATE ROLE ${ident(user)}`).catch(() => undefined);
  }

  private async runOne(
    client: pg.Client,
    statement: FakeStatement,
    sub: SubStatement,
    bound: { text: string; values: string[] },
  ): Promise<void> {
    const fault = this.statementFaults.find((f) => f.pattern.test(sub.sql) && f.times > 0);
    if (fault) {
      fault.times--;
      if (fault.delayMs) await this.pause(statement, fault.delayMs);
      if (fault.until) await this.holdUntil(statement, fault.until);
      if (fault.error) throw new StatementError(fault.error);
    }
    if (/^\s*COPY\s/i.test(sub.sql)) {
      sub.resultRows = await this.copy(client, statement, sub.sql.replace(/\s+/g, ' ').trim());
      return;
    }
    const result = await client.query({
      text: toPostgres(bound.text),
      values: bound.values,
      rowMode: 'array',
    });
    const fields = result.fields ?? [];
    if (fields.length) {
      const rows = result.rows as unknown as (string | null)[][];
      sub.result = {
        columns: fields.map((f) => ({
          name: f.name,
          label: f.name,
          typeName: TYPE_NAMES[f.dataTypeID] ?? 'varchar',
          nullable: 1,
        })),
        records: rows.map((row) => row.map((v, i) => field(v, fields[i].dataTypeID))),
      };
      sub.resultRows = rows.length;
    } else {
      sub.resultRows = result.rowCount ?? 0;
    }
  }

  /** Waits, unless the statement is cancelled first (then fails as a cancelled query does). */
  private async pause(statement: FakeStatement, ms: number): Promise<void> {
    const until = Date.now() + ms;
    while (Date.now() < until) {
      if (statement.cancelRequested) throw new StatementError("ERROR: Query cancelled on user's request");
      await sleep(Math.min(20, until - Date.now()));
    }
  }

  /** Waits for `until`, unless the statement is cancelled first. */
  private async holdUntil(statement: FakeStatement, until: Promise<void>): Promise<void> {
    let released = false;
    void until.then(() => {
      released = true;
    });
    while (!released) {
      if (statement.cancelRequested) throw new StatementError("ERROR: Query cancelled on user's request");
      await sleep(20);
    }
  }

  // ------------------------------------------------------------------ COPY

  private async copy(client: pg.Client, statement: FakeStatement, sql: string): Promise<number> {
    const m = COPY_RE.exec(sql);
    if (!m) throw new StatementError(`ERROR: syntax error at or near "COPY"`);
    const [, table, manifestUrl, roleText, optionText] = m;
    const options = optionText.trim().toUpperCase().split(/\s+/).filter(Boolean);
    const role = roleText === 'default' ? Object.keys(this.options.roles)[0] : roleText.slice(1, -1);
    this.checkRole(role, statement.dbUser);
    const manifest = readManifest(this.objectPath(manifestUrl, role, true));
    const known = new Set(['MANIFEST', 'SERIALIZETOJSON', 'STATUPDATE', 'OFF', 'ON']);
    const unknown = options.find((o) => !known.has(o));
    if (unknown || !options.includes('MANIFEST')) {
      throw new StatementError(`ERROR: syntax error at or near "${unknown ?? 'FROM'}"`);
    }
    const paths: string[] = [];
    for (const entry of manifest.entries) {
      const path = this.objectPath(entry.url, role, entry.mandatory === true);
      if (!existsSync(path)) continue;
      const length = entry.meta?.content_length;
      if (typeof length !== 'number') {
        throw new StatementError(
          `ERROR: Manifest entry for ${entry.url} is missing meta content_length, which COPY from Parquet requires`,
        );
      }
      if (length !== statSync(path).size) {
        throw new StatementError(
          `ERROR: Spectrum Scan Error: content_length ${length} in the manifest does not match the size of ${entry.url}`,
        );
      }
      paths.push(path);
    }
    if (!paths.length)
      throw new StatementError('ERROR: The specified S3 prefix/manifest found no files to load');
    const columns = await stagingColumns(client, table);
    const rows = await this.readParquet(paths, columns, options.includes('SERIALIZETOJSON'));
    for (let i = 0; i < rows.length; i += 500) {
      const chunk = rows.slice(i, i + 500);
      const values: (string | null)[] = [];
      const tuples = chunk.map((row) => `(${row.map((v) => `$${values.push(v)}`).join(', ')})`);
      await client.query(`INSERT INTO ${table} VALUES ${tuples.join(', ')}`, values);
    }
    await client.query(`SELECT set_config('redshift.last_copy_count', $1, false)`, [String(rows.length)]);
    return rows.length;
  }

  private checkRole(role: string, dbUser: string): void {
    if (!this.options.roles[role.split(',')[0]]) {
      const { region, account, workgroup, cluster } = this.options;
      const who = workgroup
        ? `arn:aws:redshift-serverless:${region}:${account}:dbuser:${workgroup}/${dbUser}`
        : `arn:aws:redshift:${region}:${account}:dbuser:${cluster}/${dbUser}`;
      throw new StatementError(`ERROR: User ${who} is not authorized to assume IAM Role ${role}`);
    }
  }

  /** The local path of an S3 object COPY reads with `role`, after S3's checks. */
  private objectPath(url: string, role: string, mandatory: boolean): string {
    const bucket = this.options.buckets.find((b) => url.startsWith(b.url));
    const name = /^s3:\/\/([^/]+)\//.exec(url)?.[1];
    const rid = 'Rid 8C1A4D9E7B3F2A10,ExtRid wQ0ynS4n,CanRetry 1';
    if (!bucket || !name) {
      throw new StatementError(
        `ERROR: S3ServiceException:The specified bucket does not exist,Status 404,Error NoSuchBucket,${rid}`,
      );
    }
    if ((bucket.region ?? this.options.region) !== this.options.region) {
      throw new StatementError(
        `ERROR: S3ServiceException:The S3 bucket addressed by the query is in a different region from this cluster.,Status 301,Error PermanentRedirect,${rid}`,
      );
    }
    if (!this.options.roles[role.split(',')[0]]?.buckets.includes(name)) {
      throw new StatementError(
        `ERROR: S3ServiceException:Access Denied,Status 403,Error AccessDenied,${rid}`,
      );
    }
    const key = url.slice(bucket.url.length);
    const path = bucket.objectPath ? bucket.objectPath(key) : join(bucket.dir, ...key.split('/'));
    if (mandatory && !existsSync(path)) {
      throw new StatementError(
        `ERROR: Problem reading manifest file - S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey,${rid}`,
      );
    }
    return path;
  }

  /** The files' rows, each value as text PostgreSQL parses into the staging column's type. */
  private async readParquet(
    paths: string[],
    columns: { name: string; type: string }[],
    serialize: boolean,
  ): Promise<(string | null)[][]> {
    if (!this.duck) throw new Error('server not started');
    const con = await this.duck.connect();
    try {
      await con.run("SET TimeZone = 'UTC'");
      const files = `read_parquet([${paths.map((p) => `'${p.replaceAll("'", "''")}'`).join(', ')}], hive_partitioning = false)`;
      const described = (await con.runAndReadAll(`DESCRIBE SELECT * FROM ${files}`)).getRows();
      if (described.length !== columns.length) {
        throw new StatementError(
          `ERROR: Spectrum Scan Error: the file has ${described.length} columns but the table has ${columns.length}: the number of columns must match`,
        );
      }
      const exprs = described.map(([name, type], i) =>
        landing(`"${String(name).replaceAll('"', '""')}"`, String(type), columns[i], serialize),
      );
      const reader = await con.runAndReadAll(`SELECT ${exprs.join(', ')} FROM ${files}`);
      return reader.getRows().map((row) => row.map((v) => (v === null ? null : String(v))));
    } finally {
      con.closeSync();
    }
  }
}

// ---------------------------------------------------------------- helpers

/** How a Parquet column (DuckDB's type) lands in a staging column, as COPY would land it. */
function landing(
  column: string,
  type: string,
  target: { name: string; type: string },
  serialize: boolean,
): string {
  const nested = /\[\]$|^STRUCT|^MAP/.test(type);
  const incompatible = () =>
    new StatementError(
      `ERROR: Spectrum Scan Error: incompatible Parquet schema for column '${target.name}'. Column type: ${target.type.toUpperCase()}, Parquet schema: ${type}`,
    );
  if (target.type === 'super') {
    if (nested && !serialize) {
      throw new StatementError(
        `ERROR: Spectrum Scan Error: nested column '${target.name}' can only be loaded into a SUPER column with SERIALIZETOJSON`,
      );
    }
    return nested
      ? `CAST(to_json(${column}) AS VARCHAR)`
      : `CAST(to_json(CAST(${column} AS VARCHAR)) AS VARCHAR)`;
  }
  if (nested) throw incompatible();
  if (target.type === 'bytea') {
    if (type === 'UUID') return `'\\x' || replace(CAST(${column} AS VARCHAR), '-', '')`;
    if (type === 'BLOB') return `'\\x' || lower(hex(${column}))`;
    throw incompatible();
  }
  if (type === 'UUID' || type === 'BLOB') throw incompatible();
  return `CAST(${column} AS VARCHAR)`;
}

async function stagingColumns(client: pg.Client, table: string): Promise<{ name: string; type: string }[]> {
  const rows = (
    await client.query(
      `SELECT a.attname AS name, t.typname AS type FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
       WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
      [table],
    )
  ).rows as { name: string; type: string }[];
  if (!rows.length) throw new StatementError(`ERROR: relation ${table} does not exist`);
  return rows;
}

interface Manifest {
  entries: { url: string; mandatory?: boolean; meta?: { content_length?: unknown } }[];
}

function readManifest(path: string): Manifest {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    throw new StatementError('ERROR: Manifest file is not in correct json format');
  }
  const entries = (parsed as Manifest | null)?.entries;
  if (!Array.isArray(entries) || entries.some((e) => typeof e?.url !== 'string')) {
    throw new StatementError('ERROR: Manifest file is not in correct json format');
  }
  return { entries };
}

/** The few Redshift spellings that PostgreSQL writes differently. */
function toPostgres(sql: string): string {
  return sql.replace(/\bVARBYTE\(\d+\)/gi, 'BYTEA');
}

/** A PostgreSQL error in Redshift's words. */
function redshiftText(err: unknown): string {
  if (err instanceof StatementError) return err.message;
  const message = (err as Error).message
    .replace(/permission denied for table/, 'permission denied for relation')
    .replace('division by zero', 'divide by zero');
  return `ERROR: ${message}`;
}

function field(value: string | null, oid: number): Field {
  if (value === null) return { isNull: true };
  if (LONG_OIDS.has(oid)) return { longValue: Number(value) };
  if (DOUBLE_OIDS.has(oid)) return { doubleValue: Number(value) };
  if (oid === 16) return { booleanValue: value === 't' };
  return { stringValue: value };
}

/**
 * Binds the Data API's named parameters (`:name`, outside quotes and `::` casts) to PostgreSQL's
 * `$n`, refusing what the Data API refuses: a missing, unused or empty parameter.
 */
function bindAll(
  sqls: readonly string[],
  parameters: readonly { name: string; value: string }[],
): { text: string; values: string[] }[] {
  const given = new Map(parameters.map((p) => [p.name, p.value]));
  const used = new Set<string>();
  const out = sqls.map((sql) => {
    const names: string[] = [];
    const text = replaceOutsideQuotes(sql, (name) => {
      if (!given.has(name))
        throw new ApiError('ValidationException', 400, `Parameter ${name} is not provided.`);
      used.add(name);
      if (!names.includes(name)) names.push(name);
      return `$${names.indexOf(name) + 1}`;
    });
    return { text, values: names.map((n) => given.get(n) ?? '') };
  });
  const unused = parameters.filter((p) => !used.has(p.name)).map((p) => p.name);
  if (unused.length) {
    throw new ApiError(
      'ValidationException',
      400,
      `Parameters list contains unused parameters. Unused parameters: [${unused.join(', ')}]`,
    );
  }
  const empty = parameters.find((p) => p.value === '');
  if (empty) throw new ApiError('ValidationException', 400, `Parameter ${empty.name} has an empty value.`);
  return out;
}

function replaceOutsideQuotes(sql: string, param: (name: string) => string): string {
  let out = '';
  let i = 0;
  while (i < sql.length) {
    const c = sql[i];
    if (c === "'" || c === '"') {
      const end = closing(sql, i);
      out += sql.slice(i, end);
      i = end;
    } else if (c === ':' && sql[i + 1] === ':') {
      out += '::';
      i += 2;
    } else if (c === ':' && /[A-Za-z_]/.test(sql[i + 1] ?? '')) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(sql.slice(i + 1));
      const name = m?.[0] ?? '';
      out += param(name);
      i += 1 + name.length;
    } else {
      out += c;
      i++;
    }
  }
  return out;
}

/** Index just past the quote that closes the one at `start` (a doubled quote stays inside). */
function closing(sql: string, start: number): number {
  const q = sql[start];
  let i = start + 1;
  while (i < sql.length) {
    if (sql[i] === q && sql[i + 1] === q) i += 2;
    else if (sql[i] === q) return i + 1;
    else i++;
  }
  return i;
}

interface Authorization {
  accessKey: string;
  region: string;
  service: string;
}

/** The credential scope of a SigV4 Authorization header. */
function parseAuthorization(header: string | undefined): Authorization | undefined {
  const m = /Credential=([^/]+)\/\d{8}\/([^/]+)\/([^/]+)\/aws4_request/.exec(header ?? '');
  return m ? { accessKey: m[1], region: m[2], service: m[3] } : undefined;
}

function ended(status: Status): boolean {
  return status === 'FINISHED' || status === 'FAILED' || status === 'ABORTED';
}

/** Answers as the Data API does: AWS JSON 1.1 with a request id. */
function send(res: ServerResponse, status: number, body: unknown): void {
  sendJson(res, status, body, 'application/x-amz-json-1.1', { 'x-amzn-requestid': randomUUID() });
}

function ident(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
