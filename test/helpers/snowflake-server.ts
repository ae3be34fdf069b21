/**
 * A local HTTP server that speaks the Snowflake connector protocol snowflake-sdk uses, for the
 * contract tests. What it answers, and how (read off the SDK's own requests and response
 * handling, and Snowflake's documented behaviour):
 *
 * - POST /session/v1/login-request: key-pair login (the JWT is verified against the user's
 *   registered public key: RS256 signature, `iss` = ACCOUNT.USER.SHA256:<fingerprint>, `sub`,
 *   expiry) and WORKLOAD_IDENTITY with an OIDC token; session + master tokens with validities;
 *   the session parameters echoed back. Login errors are 200s with `success: false` and a 390xxx
 *   code; an unknown account is an HTTP 403.
 * - POST /queries/v1/query-request?requestId=...: one statement per request, binds as
 *   `bindings: {"1": {type, value}}`, results in the JSON result format (`rowtype` + `rowset` of
 *   strings). A statement that runs longer than `asyncAfterMs` is answered 333333 ("in progress")
 *   with a getResultUrl the SDK polls (GET /queries/<id>/result). The same requestId again (the
 *   SDK's retry after a lost response, or a 5xx/429) is not executed twice: the first
 *   execution's result is returned, which is what makes the connector's retries safe.
 * - Session token expiry (390112, renewed through POST /session/token-request with the master
 *   token), heartbeats (POST /session/heartbeat), abort requests, telemetry, and logout
 *   (POST /session?delete=true, which rolls back an open transaction).
 *
 * Statements run on a real DuckDB database, one DuckDB connection per session (so BEGIN /
 * COMMIT / ROLLBACK and temporary tables behave as sessions do), after translating the few
 * Snowflake spellings nightshift uses. As in Snowflake, DDL inside an open transaction commits
 * it first. COPY INTO reads the real Parquet files of the stage's local directory, lands them
 * by column name with Snowflake's documented landing rules (UUID as 16 bytes, JSON as text),
 * keeps per-table load history (files loaded before are skipped unless FORCE = TRUE), and
 * answers one row per file, or the single `status` row "Copy executed with 0 files processed.".
 *
 * Faults are injected per statement: an error answer, an HTTP status, a dropped response after
 * the statement ran, a slow statement, or per-file COPY outcomes.
 */
import { createHash, createPublicKey, randomBytes, randomUUID, verify } from 'node:crypto';
import { existsSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { type DuckDBConnection, DuckDBInstance } from '@duckdb/node-api';
import { readBody } from './http.js';

export interface FakeUser {
  /** PEM public key registered for key-pair login (ALTER USER ... SET RSA_PUBLIC_KEY). */
  publicKey?: string;
  /** OIDC tokens that log in as this user (CREATE USER ... WORKLOAD_IDENTITY). */
  oidcTokens?: string[];
  /** Roles granted; the first is the default role. */
  roles: string[];
}

export interface FakeStage {
  /** Local directory the stage's URL maps to. */
  dir: string;
  /** The URL the stage reports in COPY results: s3://bucket/prefix/ */
  url: string;
}

export interface FakeSnowflakeOptions {
  /** Account name the server answers for (upper case, as the SDK sends it). */
  account: string;
  database: string;
  users: Record<string, FakeUser>;
  /** Stages by resolved name, `DB.SCHEMA.NAME`. */
  stages: Record<string, FakeStage>;
  /** Statements running longer than this are answered 333333 and polled. */
  asyncAfterMs?: number;
  /** Session token validity in seconds (the SDK renews after 390112). */
  sessionValiditySeconds?: number;
  /** Heartbeat frequency the server grants, in seconds. */
  heartbeatSeconds?: number;
}

/** An error answer, as Snowflake sends it: HTTP 200, success false, code and SQLSTATE. */
export interface SqlError {
  code: string;
  sqlState: string;
  message: string;
}

/** One COPY file outcome to report instead of loading the file. */
export interface CopyFileFault {
  status: 'LOADED' | 'LOAD_FAILED' | 'PARTIALLY_LOADED';
  rowsLoaded?: number;
  firstError?: string;
}

export interface Fault {
  /** Which statements: a regular expression on the SQL text. */
  match: RegExp;
  /** How many matching statements it applies to (default 1). */
  times?: number;
  /** Answer with this error instead of running the statement. */
  error?: SqlError;
  /** Answer with this HTTP status (the statement does not run). */
  httpStatus?: number;
  /** Run the statement, then drop the connection without answering. */
  dropResponse?: boolean;
  /** Run the statement this much slower. */
  delayMs?: number;
  /** COPY only: report every file with this outcome, or the 0-files answer. */
  copy?: CopyFileFault | 'zero-files';
}

/** A statement the server ran. */
export interface ExecutedStatement {
  sql: string;
  binds: string[];
  requestId: string;
  sessionId: number;
  queryId: string;
}

interface Column {
  name: string;
  type: string;
}

interface TableInfo {
  columns: Column[];
  temporary: boolean;
  sessionId?: number;
}

interface Result {
  rowtype: { name: string; type: 'text' | 'fixed' }[];
  rowset: (string | null)[][];
  statementTypeId?: number;
}

interface Session {
  id: number;
  token: string;
  tokenIssued: number;
  masterToken: string;
  user: string;
  role: string;
  con: DuckDBConnection;
  inTransaction: boolean;
  /** Load history recorded in the open transaction, applied at COMMIT. */
  pendingHistory: [string, string][];
  parameters: Record<string, string>;
  closed: boolean;
  /** Resolves once the session's DuckDB connection is open. */
  ready: Promise<void>;
}

type Answer = { status: number; body: unknown };

const STATUS = [{ name: 'status', type: 'text' as const }];
const COPY_COLUMNS = [
  'file',
  'status',
  'rows_parsed',
  'rows_loaded',
  'error_limit',
  'errors_seen',
  'first_error',
  'first_error_line',
  'first_error_character',
  'first_error_column_name',
];

export class FakeSnowflake {
  /** Every statement that ran (a deduplicated retry is not here twice). */
  readonly statements: ExecutedStatement[] = [];
  /** Every HTTP request: method, path and query. */
  readonly requests: { method: string; path: string; query: URLSearchParams; authorization?: string }[] = [];
  /** Login request bodies (`data`), for assertions on what the SDK sent. */
  readonly logins: Record<string, unknown>[] = [];
  private readonly options: FakeSnowflakeOptions;
  private readonly faults: Fault[] = [];
  private readonly sessions = new Map<string, Session>();
  private readonly byRequest = new Map<string, Promise<Answer>>();
  private readonly running = new Map<string, { done: Promise<Answer>; settled?: Answer }>();
  private readonly tables = new Map<string, TableInfo>();
  private readonly history = new Map<string, Set<string>>();
  /** Query ids and request ids an abort-request named. */
  private readonly cancelled = new Set<string>();
  private server: Server | undefined;
  private db: DuckDBInstance | undefined;
  private admin: DuckDBConnection | undefined;
  private nextSession = 1;

  constructor(options: FakeSnowflakeOptions) {
    this.options = options;
  }

  /** http://127.0.0.1:<port> */
  url = '';

  async start(): Promise<void> {
    this.db = await DuckDBInstance.create(':memory:');
    this.admin = await this.db.connect();
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) this.send(res, { status: 500, body: { success: false, message: String(err) } });
      });
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const s of this.sessions.values()) if (!s.closed) s.con.closeSync();
    await new Promise<void>((resolve) => {
      this.server?.closeAllConnections();
      this.server?.close(() => resolve());
    });
    this.admin?.closeSync();
    this.db?.closeSync();
  }

  /** Adds a fault for the next matching statement(s). */
  inject(fault: Fault): void {
    this.faults.push({ times: 1, ...fault });
  }

  /** Faults injected and not yet met by a statement. */
  get pendingFaults(): number {
    return this.faults.length;
  }

  /** Statements that ran whose SQL matches. */
  executed(match: RegExp): ExecutedStatement[] {
    return this.statements.filter((s) => match.test(s.sql));
  }

  /** Sessions still logged in. */
  get openSessions(): number {
    return [...this.sessions.values()].filter((s) => !s.closed).length;
  }

  /** Runs SQL on the committed data (DuckDB spelling), for assertions. */
  async query(sql: string): Promise<Record<string, unknown>[]> {
    const reader = await this.admin?.runAndReadAll(sql);
    return (reader?.getRowObjectsJson() ?? []) as Record<string, unknown>[];
  }

  /** Creates a table as an administrator would (Snowflake types). */
  async createTable(name: string, columns: Column[]): Promise<void> {
    await this.ddl(this.admin as DuckDBConnection, name, columns, false, undefined);
  }

  // ---------------------------------------------------------------- HTTP

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const authorization = req.headers.authorization;
    this.requests.push({
      method: req.method ?? '',
      path: url.pathname,
      query: url.searchParams,
      authorization,
    });
    const body = await readJson(req);
    const path = url.pathname;
    if (path === '/session/v1/login-request') return this.send(res, this.login(url, body));
    if (path === '/telemetry/send') return this.send(res, ok(null));
    if (path === '/session/token-request') return this.send(res, this.renew(authorization, body));
    const session = this.sessionOf(authorization);
    if ('status' in session) return this.send(res, session);
    if (path === '/session' && url.searchParams.get('delete') === 'true') {
      await this.logout(session);
      return this.send(res, ok(null));
    }
    if (path === '/session/heartbeat') return this.send(res, ok({}));
    if (path.endsWith('/abort-request')) {
      const byId = /^\/queries\/([0-9a-f-]+)\/abort-request$/.exec(path)?.[1];
      this.cancelled.add(byId ?? String(body.requestId ?? ''));
      return this.send(res, ok(null));
    }
    if (path === '/queries/v1/query-request') return this.queryRequest(req, res, url, body, session);
    const result = /^\/queries\/([0-9a-f-]+)\/result$/.exec(path);
    if (result) return this.send(res, await this.poll(result[1]));
    this.send(res, { status: 404, body: { success: false, message: `no route ${path}` } });
  }

  private send(res: ServerResponse, answer: Answer): void {
    const text = typeof answer.body === 'string' ? answer.body : JSON.stringify(answer.body);
    const type = typeof answer.body === 'string' ? 'text/html' : 'application/json';
    res.writeHead(answer.status, { 'content-type': type });
    res.end(text);
  }

  // ---------------------------------------------------------------- login

  /** Answer the next logins with this HTTP status (a 5xx outage, 429 throttling). */
  loginStatus: number | undefined;

  private login(url: URL, body: Record<string, unknown>): Answer {
    const data = (body.data ?? {}) as Record<string, unknown>;
    this.logins.push(data);
    if (this.loginStatus)
      return { status: this.loginStatus, body: '<html><body>Service Unavailable</body></html>' };
    if (String(data.ACCOUNT_NAME ?? '').toUpperCase() !== this.options.account.toUpperCase()) {
      return { status: 403, body: '<html><body>403 Forbidden</body></html>' };
    }
    const who = this.authenticate(data);
    if (typeof who !== 'string') return who;
    const user = this.options.users[who];
    const requested = url.searchParams.get('roleName');
    const role = requested ? requested.toUpperCase() : user.roles[0];
    if (!user.roles.includes(role)) {
      return fail(
        '390189',
        '08004',
        `Role '${role}' specified in the connect string does not exist or not authorized. Contact your local system administrator, or attempt to login with another role, e.g. PUBLIC.`,
      );
    }
    return this.openSession(who, role, data);
  }

  /** The user a login authenticates, or the refusal. */
  private authenticate(data: Record<string, unknown>): string | Answer {
    const authenticator = String(data.AUTHENTICATOR ?? '');
    if (authenticator === 'WORKLOAD_IDENTITY') {
      const token = String(data.TOKEN ?? '');
      const found = Object.entries(this.options.users).find(([, u]) => u.oidcTokens?.includes(token));
      if (data.PROVIDER !== 'OIDC' || !found) {
        return fail('390432', '28000', 'Workload identity authentication failed.');
      }
      return found[0];
    }
    if (authenticator !== 'SNOWFLAKE_JWT')
      return fail('390100', '28000', 'Incorrect username or password was specified.');
    const login = String(data.LOGIN_NAME ?? '').toUpperCase();
    const user = this.options.users[login];
    if (
      !user?.publicKey ||
      !verifyJwt(String(data.TOKEN ?? ''), this.options.account, login, user.publicKey)
    ) {
      return fail('390144', '08004', 'JWT token is invalid.');
    }
    return login;
  }

  private openSession(user: string, role: string, data: Record<string, unknown>): Answer {
    const session: Session = {
      id: this.nextSession++,
      token: randomBytes(16).toString('hex'),
      tokenIssued: Date.now(),
      masterToken: randomBytes(16).toString('hex'),
      user,
      role,
      con: undefined as unknown as DuckDBConnection,
      inTransaction: false,
      pendingHistory: [],
      parameters: {},
      closed: false,
      ready: Promise.resolve(),
    };
    const requested = (data.SESSION_PARAMETERS ?? {}) as Record<string, unknown>;
    const parameters = Object.entries(requested).map(([name, value]) => ({ name, value }));
    if (requested.CLIENT_SESSION_KEEP_ALIVE) {
      parameters.push({
        name: 'CLIENT_SESSION_KEEP_ALIVE_HEARTBEAT_FREQUENCY',
        value: this.options.heartbeatSeconds ?? 3600,
      });
    }
    this.sessions.set(session.token, session);
    const validity = this.options.sessionValiditySeconds ?? 3600;
    session.ready = (this.db as DuckDBInstance).connect().then((con) => {
      session.con = con;
    });
    return ok({
      token: session.token,
      masterToken: session.masterToken,
      validityInSeconds: validity,
      masterValidityInSeconds: validity * 4,
      sessionId: session.id,
      parameters,
      sessionInfo: { databaseName: this.options.database, roleName: role },
    });
  }

  private renew(authorization: string | undefined, body: Record<string, unknown>): Answer {
    const master = tokenOf(authorization);
    const session = [...this.sessions.values()].find((s) => s.masterToken === master && !s.closed);
    if (!session)
      return fail('390114', '08001', 'Authentication token has expired. The user must authenticate again.');
    if (body.oldSessionToken !== session.token)
      return fail('390104', '08001', 'User must login again to access the service.');
    this.sessions.delete(session.token);
    session.token = randomBytes(16).toString('hex');
    session.tokenIssued = Date.now();
    this.sessions.set(session.token, session);
    const validity = this.options.sessionValiditySeconds ?? 3600;
    return ok({
      sessionToken: session.token,
      validityInSecondsST: validity,
      masterToken: session.masterToken,
      validityInSecondsMT: validity * 4,
    });
  }

  private sessionOf(authorization: string | undefined): Session | Answer {
    const token = tokenOf(authorization);
    if (!token)
      return {
        status: 401,
        body: {
          success: false,
          code: '390101',
          message: 'Authorization header not found in the request data.',
        },
      };
    const session = this.sessions.get(token);
    if (!session || session.closed)
      return fail('390111', '08001', 'Session no longer exists.  New login required to access the service.');
    const validity = (this.options.sessionValiditySeconds ?? 3600) * 1000;
    if (Date.now() - session.tokenIssued > validity) return fail('390112', '08001', 'Session token expired');
    return session;
  }

  private async logout(session: Session): Promise<void> {
    await session.ready;
    session.closed = true;
    // Ending a session rolls back its open transaction and drops its temporary tables.
    session.con.closeSync();
    for (const [name, info] of this.tables)
      if (info.temporary && info.sessionId === session.id) this.tables.delete(name);
  }

  // ---------------------------------------------------------------- statements

  private async queryRequest(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    body: Record<string, unknown>,
    session: Session,
  ): Promise<void> {
    const requestId = url.searchParams.get('requestId') ?? randomUUID();
    const sql = String(body.sqlText ?? '');
    const bindings = (body.bindings ?? {}) as Record<string, { value: string | null }>;
    const binds = Object.keys(bindings)
      .sort((a, b) => Number(a) - Number(b))
      .map((k) => bindings[k].value as string);
    const earlier = this.byRequest.get(requestId);
    if (earlier) return this.send(res, await earlier);
    const fault = this.takeFault(sql);
    if (fault?.httpStatus) {
      return this.send(res, {
        status: fault.httpStatus,
        body: { success: false, message: 'Too many requests or unavailable' },
      });
    }
    const queryId = randomUUID();
    const done = this.execute(session, sql, binds, requestId, queryId, fault);
    this.byRequest.set(requestId, done);
    const entry: { done: Promise<Answer>; settled?: Answer } = { done };
    this.running.set(queryId, entry);
    done.then((a) => {
      entry.settled = a;
    });
    const asyncAfter = this.options.asyncAfterMs ?? 500;
    const first = await Promise.race([done, sleep(asyncAfter).then(() => undefined)]);
    if (fault?.dropResponse) {
      await done;
      req.socket.destroy();
      return;
    }
    this.send(res, first ?? inProgress(queryId));
  }

  /** GET /queries/<id>/result: the result, or still in progress after a while. */
  private async poll(queryId: string): Promise<Answer> {
    const entry = this.running.get(queryId);
    if (!entry) return fail('000709', '02000', `Statement ${queryId} not found`);
    const answer = await Promise.race([
      entry.done,
      sleep(this.options.asyncAfterMs ?? 500).then(() => undefined),
    ]);
    return answer ?? inProgress(queryId);
  }

  private takeFault(sql: string): Fault | undefined {
    const i = this.faults.findIndex((f) => f.match.test(sql));
    if (i < 0) return undefined;
    const fault = this.faults[i];
    fault.times = (fault.times ?? 1) - 1;
    if (fault.times <= 0) this.faults.splice(i, 1);
    return fault;
  }

  private async execute(
    session: Session,
    sql: string,
    binds: string[],
    requestId: string,
    queryId: string,
    fault: Fault | undefined,
  ): Promise<Answer> {
    await session.ready;
    if (fault?.delayMs) await sleep(fault.delayMs);
    if (this.cancelled.has(queryId) || this.cancelled.has(requestId)) {
      return fail('000604', '57014', 'SQL execution canceled', queryId);
    }
    if (fault?.error) return fail(fault.error.code, fault.error.sqlState, fault.error.message, queryId);
    this.statements.push({ sql, binds, requestId, sessionId: session.id, queryId });
    try {
      const result = await this.run(session, sql.trim(), binds, fault);
      return ok({
        queryId,
        rowtype: result.rowtype.map((c) => ({
          name: c.name,
          type: c.type,
          nullable: true,
          scale: c.type === 'fixed' ? 0 : null,
          precision: c.type === 'fixed' ? 38 : null,
          length: c.type === 'text' ? 16777216 : null,
          byteLength: c.type === 'text' ? 16777216 : null,
          database: '',
          schema: '',
          table: '',
          collation: null,
        })),
        rowset: result.rowset,
        total: result.rowset.length,
        returned: result.rowset.length,
        queryResultFormat: 'json',
        statementTypeId: result.statementTypeId ?? 4096,
        version: 1,
        parameters: [],
        finalDatabaseName: this.options.database,
        finalRoleName: session.role,
      });
    } catch (err) {
      const e = err as SqlError;
      if (e.code && e.sqlState) return fail(e.code, e.sqlState, e.message, queryId);
      return fail('002003', '42000', `SQL compilation error:\n${(err as Error).message}`, queryId);
    }
  }

  private async run(
    session: Session,
    sql: string,
    binds: string[],
    fault: Fault | undefined,
  ): Promise<Result> {
    const con = session.con;
    if (/^ALTER SESSION SET /i.test(sql)) return this.alterSession(session, sql);
    if (/^BEGIN( TRANSACTION)?$/i.test(sql)) {
      if (!session.inTransaction) await con.run('BEGIN TRANSACTION');
      session.inTransaction = true;
      return status('Statement executed successfully.');
    }
    if (/^COMMIT$/i.test(sql)) return this.commit(session);
    if (/^ROLLBACK$/i.test(sql)) {
      if (session.inTransaction) await con.run('ROLLBACK');
      session.inTransaction = false;
      session.pendingHistory = [];
      return status('Statement executed successfully.');
    }
    const create = /^CREATE (TEMPORARY )?TABLE (IF NOT EXISTS )?((?:"(?:[^"]|"")*"\.?){3}) \((.*)\)$/is.exec(
      sql,
    );
    if (create) {
      await this.commit(session); // DDL commits an open transaction first
      const name = parseName(create[3]);
      if (this.tables.has(name.key) && create[2])
        return status(`${name.name} already exists, statement succeeded.`);
      await this.ddl(con, create[3], parseColumns(create[4]), !!create[1], session.id);
      return status(`Table ${name.name} successfully created.`);
    }
    const drop = /^DROP TABLE IF EXISTS ((?:"(?:[^"]|"")*"\.?){3})$/i.exec(sql);
    if (drop) {
      await this.commit(session);
      const name = parseName(drop[1]);
      const info = this.tables.get(name.key);
      if (info) {
        await con.run(`DROP TABLE IF EXISTS ${this.duckName(name.key, info)}`);
        this.tables.delete(name.key);
      }
      return status(`${name.name} successfully dropped.`);
    }
    if (/^SELECT .* FROM "[^"]+"\.INFORMATION_SCHEMA\.COLUMNS /is.test(sql))
      return this.describe(session, sql, binds);
    if (/^COPY INTO /i.test(sql)) return this.copy(session, sql, fault);
    this.requireGrants(session, sql);
    const translated = this.translate(sql, session);
    const reader = await con.runAndReadAll(translated, binds);
    if (/^DELETE /i.test(sql)) return count('number of rows deleted', reader.getRows(), 0x3300);
    if (/^INSERT /i.test(sql)) return count('number of rows inserted', reader.getRows(), 0x3100);
    const names = reader.columnNames();
    return {
      rowtype: names.map((name) => ({ name, type: 'text' })),
      rowset: (reader.getRowsJson() as unknown[][]).map((r) => r.map((v) => (v === null ? null : String(v)))),
    };
  }

  /** Privileges the fake enforces: a user without role LOADER cannot write the target. */
  private requireGrants(session: Session, sql: string): void {
    if (session.role === 'READER' && /^(DELETE|INSERT)/i.test(sql)) {
      const table = /(?:INTO|FROM) ((?:"(?:[^"]|"")*"\.?){3})/i.exec(sql)?.[1] ?? 'table';
      throw {
        code: '003001',
        sqlState: '42501',
        message: `SQL access control error:\nInsufficient privileges to operate on table '${parseName(table).name}'`,
      } satisfies SqlError;
    }
  }

  private async commit(session: Session): Promise<Result> {
    if (session.inTransaction) await session.con.run('COMMIT');
    session.inTransaction = false;
    for (const [table, file] of session.pendingHistory) this.remember(table, file);
    session.pendingHistory = [];
    return status('Statement executed successfully.');
  }

  private async alterSession(session: Session, sql: string): Promise<Result> {
    for (const [, name, value] of sql
      .slice('ALTER SESSION SET '.length)
      .matchAll(/(\w+) = ('(?:[^']|'')*'|\S+)/g)) {
      session.parameters[name.toUpperCase()] = value.startsWith("'")
        ? value.slice(1, -1).replaceAll("''", "'")
        : value;
    }
    const tz = session.parameters.TIMEZONE;
    if (tz) await session.con.run(`SET TimeZone = '${tz.replaceAll("'", "''")}'`);
    return status('Statement executed successfully.');
  }

  private async describe(session: Session, sql: string, binds: string[]): Promise<Result> {
    const database = /FROM "([^"]+)"\.INFORMATION_SCHEMA/i.exec(sql)?.[1];
    const key = `${database}.${binds[0]}.${binds[1]}`;
    const info = this.tables.get(key);
    const visible = info && (!info.temporary || info.sessionId === session.id);
    const rows = visible
      ? info.columns.map((c) => {
          const { dataType, precision, scale } = describeType(c.type);
          return [c.name, dataType, precision, scale];
        })
      : [];
    return {
      rowtype: [
        { name: 'COLUMN_NAME', type: 'text' },
        { name: 'DATA_TYPE', type: 'text' },
        { name: 'NUMERIC_PRECISION', type: 'fixed' },
        { name: 'NUMERIC_SCALE', type: 'fixed' },
      ],
      rowset: rows.map((r) => r.map((v) => (v === null ? null : String(v)))),
    };
  }

  private async ddl(
    con: DuckDBConnection,
    quoted: string,
    columns: Column[],
    temporary: boolean,
    sessionId: number | undefined,
  ): Promise<void> {
    const name = parseName(quoted);
    if (name.database !== this.options.database) {
      throw {
        code: '002003',
        sqlState: '02000',
        message: `SQL compilation error:\nDatabase '${name.database}' does not exist or not authorized.`,
      } satisfies SqlError;
    }
    const info: TableInfo = { columns, temporary, sessionId };
    const cols = columns.map((c) => `${q(c.name)} ${duckType(c.type)}`).join(', ');
    if (!temporary) await con.run(`CREATE SCHEMA IF NOT EXISTS ${q(name.schema)}`);
    await con.run(
      `CREATE ${temporary ? 'TEMPORARY ' : ''}TABLE IF NOT EXISTS ${this.duckName(name.key, info)} (${cols})`,
    );
    this.tables.set(name.key, info);
  }

  private duckName(key: string, info: TableInfo): string {
    const [, schema, table] = key.split('.');
    return info.temporary ? `temp.main.${q(table)}` : `${q(schema)}.${q(table)}`;
  }

  /** Snowflake spellings -> DuckDB: names, binds, types in CASTs, two functions. */
  private translate(sql: string, session: Session): string {
    let n = 0;
    let out = sql.replace(
      /((?:"(?:[^"]|"")*"\.){2}"(?:[^"]|"")*")|'(?:[^']|'')*'|\?|:(\d+)\b/g,
      (m, name: string | undefined, numbered: string | undefined) => {
        if (name) {
          const parsed = parseName(name);
          const info = this.tables.get(parsed.key);
          if (!info || (info.temporary && info.sessionId !== session.id)) {
            throw {
              code: '002003',
              sqlState: '42S02',
              message: `SQL compilation error:\nObject '${parsed.name}' does not exist or not authorized.`,
            } satisfies SqlError;
          }
          return this.duckName(parsed.key, info);
        }
        if (m === '?') return `$${++n}`;
        if (numbered) return `$${numbered}`;
        return m;
      },
    );
    out = out.replace(
      /CAST\((\$\d+) AS ([A-Z_]+(?:\(\d+(?:,\d+)?\))?)\)/g,
      (_m, p: string, t: string) => `CAST(${p} AS ${duckType(t)})`,
    );
    out = out.replaceAll('PARSE_JSON(', 'json(').replaceAll('HEX_ENCODE(', 'hex(');
    return out;
  }

  // ---------------------------------------------------------------- COPY

  private async copy(session: Session, sql: string, fault: Fault | undefined): Promise<Result> {
    const m =
      /^COPY INTO ((?:"(?:[^"]|"")*"\.?){3})\s+FROM @((?:"(?:[^"]|"")*"\.?){3})\/(\S*)\s+FILES = \((.*?)\)\s+FILE_FORMAT = \((.*?)\)\s+MATCH_BY_COLUMN_NAME = (\w+)\s+ON_ERROR = (\w+)(?:\s+FORCE = (\w+))?$/is.exec(
        sql,
      );
    if (!m)
      throw {
        code: '001003',
        sqlState: '42000',
        message: `SQL compilation error:\nsyntax error in ${sql.slice(0, 40)}`,
      } satisfies SqlError;
    const [, tableName, stageName, directory, fileList, , match, , force] = m;
    const table = parseName(tableName);
    const info = this.tables.get(table.key);
    if (!info)
      throw {
        code: '002003',
        sqlState: '42S02',
        message: `SQL compilation error:\nTable '${table.name}' does not exist or not authorized.`,
      } satisfies SqlError;
    const stage = this.options.stages[parseName(stageName).key];
    if (!stage) {
      throw {
        code: '002003',
        sqlState: '02000',
        message: `SQL compilation error:\nStage '${parseName(stageName).key}' does not exist or not authorized.`,
      } satisfies SqlError;
    }
    const files = [...fileList.matchAll(/'((?:[^'\\]|''|\\.)*)'/g)].map((f) => f[1].replaceAll("''", "'"));
    if (fault?.copy === 'zero-files') return status('Copy executed with 0 files processed.');
    const rows: (string | null)[][] = [];
    const loaded = this.history.get(table.key) ?? new Set<string>();
    for (const file of files) {
      const url = `${stage.url}${directory}${file}`;
      if (force?.toUpperCase() !== 'TRUE' && loaded.has(url)) continue;
      const path = join(stage.dir, directory, file);
      if (!existsSync(path)) {
        throw {
          code: '091016',
          sqlState: '22000',
          message: `Remote file '${url}' was not found. There are several potential causes. The file might not exist. The required credentials may be missing or invalid.`,
        } satisfies SqlError;
      }
      const parsed = await this.fileRows(path);
      if (fault?.copy) {
        const f = fault.copy;
        rows.push(
          copyRow(
            url,
            f.status,
            parsed,
            f.rowsLoaded ?? (f.status === 'LOADED' ? parsed : 0),
            f.firstError ?? null,
          ),
        );
        continue;
      }
      const inserted = await this.land(
        session,
        this.duckName(table.key, info),
        info,
        path,
        match.toUpperCase(),
      );
      session.pendingHistory.push([table.key, url]);
      rows.push(copyRow(url, 'LOADED', parsed, inserted, null));
    }
    if (!session.inTransaction) {
      for (const [t, f] of session.pendingHistory) this.remember(t, f);
      session.pendingHistory = [];
    }
    if (rows.length === 0) return status('Copy executed with 0 files processed.');
    return {
      rowtype: COPY_COLUMNS.map((name) => ({
        name,
        type: name.startsWith('rows') || name.startsWith('error') ? 'fixed' : 'text',
      })),
      rowset: rows,
    };
  }

  private remember(table: string, file: string): void {
    const set = this.history.get(table) ?? new Set<string>();
    set.add(file);
    this.history.set(table, set);
  }

  private async fileRows(path: string): Promise<number> {
    const reader = await this.admin?.runAndReadAll(
      `SELECT count(*) FROM read_parquet('${path.replaceAll("'", "''")}')`,
    );
    return Number(reader?.getRows()[0][0] ?? 0);
  }

  /** Loads one Parquet file by column name, landing each value as Snowflake would. */
  private async land(
    session: Session,
    target: string,
    info: TableInfo,
    path: string,
    match: string,
  ): Promise<number> {
    const file = `read_parquet('${path.replaceAll("'", "''")}')`;
    const described = await session.con.runAndReadAll(`DESCRIBE SELECT * FROM ${file}`);
    const source = new Map(described.getRows().map((r) => [String(r[0]), String(r[1])]));
    const pick = (name: string) =>
      match === 'CASE_SENSITIVE'
        ? source.has(name)
          ? name
          : undefined
        : [...source.keys()].find((k) => k.toLowerCase() === name.toLowerCase());
    const cols = info.columns.flatMap((c) => {
      const from = pick(c.name);
      if (!from) return [];
      const type = source.get(from) ?? '';
      const value =
        /^BINARY/i.test(c.type) && type === 'UUID'
          ? `from_hex(replace(CAST(${q(from)} AS VARCHAR), '-', ''))`
          : q(from);
      return [{ to: q(c.name), expr: `CAST(${value} AS ${duckType(c.type)})` }];
    });
    const reader = await session.con.runAndReadAll(
      `INSERT INTO ${target} (${cols.map((c) => c.to).join(', ')}) SELECT ${cols.map((c) => c.expr).join(', ')} FROM ${file}`,
    );
    return Number(reader.getRows()[0][0]);
  }
}

// ---------------------------------------------------------------- helpers

function ok(data: unknown): Answer {
  return { status: 200, body: { data, code: null, message: null, success: true } };
}

function fail(code: string, sqlState: string, message: string, queryId?: string): Answer {
  return {
    status: 200,
    body: {
      data: { errorCode: code, sqlState, queryId, internalError: false },
      code,
      message,
      success: false,
    },
  };
}

function inProgress(queryId: string): Answer {
  return {
    status: 200,
    body: {
      data: { queryId, getResultUrl: `/queries/${queryId}/result` },
      code: '333333',
      message: 'Query execution in progress',
      success: true,
    },
  };
}

function status(text: string): Result {
  return { rowtype: STATUS, rowset: [[text]] };
}

function count(name: string, rows: unknown[][], statementTypeId: number): Result {
  return { rowtype: [{ name, type: 'fixed' }], rowset: [[String(rows[0]?.[0] ?? 0)]], statementTypeId };
}

function copyRow(
  url: string,
  state: string,
  parsed: number,
  loaded: number,
  error: string | null,
): (string | null)[] {
  const errors = state === 'LOADED' ? 0 : Math.max(1, parsed - loaded);
  return [
    url,
    state,
    String(parsed),
    String(loaded),
    '1',
    String(errors),
    error,
    error ? '1' : null,
    error ? '1' : null,
    null,
  ];
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

function q(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}

function tokenOf(authorization: string | undefined): string | undefined {
  return /^Snowflake Token="(.*)"$/.exec(authorization ?? '')?.[1];
}

async function readJson(req: IncomingMessage): Promise<Record<string, unknown>> {
  let raw = await readBody(req);
  if (raw.length === 0) return {};
  // The SDK gzips bodies and says so; the header can arrive on a body that is still plain JSON.
  if (raw[0] === 0x1f && raw[1] === 0x8b) raw = gunzipSync(raw);
  return JSON.parse(raw.toString('utf8')) as Record<string, unknown>;
}

/** `"DB"."S"."T"` -> parts and `DB.S.T`. */
function parseName(quoted: string): { database: string; schema: string; name: string; key: string } {
  const parts = [...quoted.matchAll(/"((?:[^"]|"")*)"/g)].map((m) => m[1].replaceAll('""', '"'));
  const [database, schema, name] = parts;
  return { database, schema, name, key: parts.join('.') };
}

/** `"A" NUMBER(10,0), "B" VARCHAR` -> columns. */
function parseColumns(text: string): Column[] {
  const out: Column[] = [];
  for (const m of text.matchAll(/"((?:[^"]|"")*)" ([A-Z_]+(?:\(\d+(?:,\d+)?\))?)/g)) {
    out.push({ name: m[1].replaceAll('""', '"'), type: m[2] });
  }
  return out;
}

function duckType(type: string): string {
  const t = type.toUpperCase();
  const num = /^NUMBER\((\d+),(\d+)\)$/.exec(t);
  if (num) return `DECIMAL(${num[1]},${num[2]})`;
  if (t === 'NUMBER') return 'DECIMAL(38,0)';
  if (/^(VARCHAR|TEXT|STRING)/.test(t)) return 'VARCHAR';
  if (/^BINARY/.test(t)) return 'BLOB';
  if (t === 'FLOAT' || t === 'DOUBLE') return 'DOUBLE';
  if (/^TIME\(/.test(t) || t === 'TIME') return 'TIME';
  if (/^TIMESTAMP_NTZ/.test(t)) return 'TIMESTAMP';
  if (/^TIMESTAMP_(LTZ|TZ)/.test(t)) return 'TIMESTAMPTZ';
  if (t === 'VARIANT' || t === 'OBJECT' || t === 'ARRAY') return 'JSON';
  return t;
}

/** INFORMATION_SCHEMA.COLUMNS for a Snowflake type. */
function describeType(type: string): { dataType: string; precision: number | null; scale: number | null } {
  const t = type.toUpperCase();
  const num = /^NUMBER\((\d+),(\d+)\)$/.exec(t);
  if (num) return { dataType: 'NUMBER', precision: Number(num[1]), scale: Number(num[2]) };
  if (/^(VARCHAR|TEXT|STRING)/.test(t)) return { dataType: 'TEXT', precision: null, scale: null };
  return { dataType: t.replace(/\(.*\)$/, ''), precision: null, scale: null };
}

/** Verifies a key-pair login JWT the way Snowflake documents it. */
function verifyJwt(token: string, account: string, user: string, publicKeyPem: string): boolean {
  const [header, payload, signature] = token.split('.');
  if (!header || !payload || !signature) return false;
  const key = createPublicKey(publicKeyPem);
  const valid = verify(
    'sha256',
    Buffer.from(`${header}.${payload}`),
    key,
    Buffer.from(signature, 'base64url'),
  );
  if (!valid) return false;
  const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
  const der = key.export({ format: 'der', type: 'spki' });
  const fingerprint = `SHA256:${createHash('sha256').update(der).digest('base64')}`;
  const now = Date.now();
  const exp = Number(claims.exp);
  const expiresMs = exp > 1e12 ? exp : exp * 1000;
  return (
    claims.iss === `${account.toUpperCase()}.${user}.${fingerprint}` &&
    claims.sub === `${account.toUpperCase()}.${user}` &&
    expiresMs > now
  );
}
