/**
 * A local HTTP server that answers as the documented BigQuery REST API v2 does, for contract
 * tests that drive the real @google-cloud/bigquery SDK:
 *   datasets.get, tables.list/get/insert/patch/delete, jobs.insert/get/cancel, jobs.getQueryResults,
 * with job states PENDING -> RUNNING -> DONE, `status.errorResult` + `status.errors` on failed
 * jobs, 409 `duplicate` for a reused job id, and ErrorProto bodies (`{error: {code, message,
 * errors: [{reason, message}], status}}`). It also answers as the GCE/GKE metadata server
 * (Workload Identity) so Application Default Credentials get a token from it.
 *
 * It does not execute SQL or read Parquet: a load job's row count is what the test registered for
 * each gs:// URI, and the apply script's effect is emulated from the staging table's rows (the
 * script's own count check included). Tests inject faults with `fail()` and `failJob()`.
 * Reference: https://cloud.google.com/bigquery/docs/reference/rest
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readBody } from './http.js';

/** A JSON body of the REST API, read loosely as the server would. */
// biome-ignore lint/suspicious/noExplicitAny: request bodies are arbitrary JSON
type Json = any;

export interface Field {
  name: string;
  type: string;
  mode?: string;
}

export interface FakeTable {
  schema: { fields: Field[] };
  numRows: number;
  timePartitioning?: { type: string; field?: string };
  clustering?: { fields: string[] };
  expirationTime?: string;
  /** Rows per partition id (YYYYMMDD) written through a decorator. */
  partitions: Map<string, number>;
}

export interface FakeJob {
  id: string;
  location: string;
  configuration: Record<string, Json>;
  /** How many more jobs.get calls see the job before it is DONE. */
  pendingPolls: number;
  state: 'PENDING' | 'RUNNING' | 'DONE';
  errorResult?: ErrorProto;
  errors?: ErrorProto[];
  cancelled: boolean;
  /** Result rows of a query job. */
  result?: { schema: { fields: Field[] }; rows: Record<string, unknown>[] };
  outputRows?: number;
}

export interface ErrorProto {
  reason: string;
  message: string;
  location?: string;
}

/** A recorded request. */
export interface Call {
  method: string;
  path: string;
  query: URLSearchParams;
  body: Json;
  authorization: string | undefined;
}

/** A fault: the next `times` requests matching answer this way. */
interface Fault {
  method: string;
  path: RegExp;
  times: number;
  /** `after`: handle the request first, then answer with the error (a lost response). */
  when: 'before' | 'after';
  status: number;
  reason: string;
  message: string;
}

export const TOKEN = 'ya29.contract-token';

export class BigQueryContractServer {
  readonly calls: Call[] = [];
  readonly datasets = new Map<string, { location: string }>();
  readonly tables = new Map<string, FakeTable>();
  readonly jobs = new Map<string, FakeJob>();
  /** Rows each staged URI holds, as the test staged it. */
  readonly objects = new Map<string, number>();
  /** Schema a load infers from the files (what BigQuery would read from the Parquet footer). */
  inferredSchema: Field[] = [];
  /** jobs.get calls a new job answers PENDING/RUNNING before DONE. */
  pollsBeforeDone = 2;
  /** Rows per page of getQueryResults. */
  pageSize = 1000;
  /** getQueryResults calls answered `jobComplete: false` first. */
  incompleteResults = 0;
  private readonly faults: Fault[] = [];
  private readonly jobFaults: { match: RegExp; error: ErrorProto; errors?: ErrorProto[] }[] = [];
  /** Called when a table's metadata is patched (the staging table's expiry). */
  onPatch: ((id: string, table: FakeTable) => void) | undefined;
  private server: Server | undefined;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => {
      void this.handle(req, res).catch((err) =>
        this.send(res, 500, { error: { code: 500, message: String(err) } }),
      );
    });
    await new Promise<void>((resolve) => this.server?.listen(0, '127.0.0.1', resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  /** `host:port`, for GCE_METADATA_HOST. */
  get host(): string {
    return this.url.slice('http://'.length);
  }

  addDataset(project: string, dataset: string, location = 'US'): void {
    this.datasets.set(`${project}:${dataset}`, { location });
  }

  addTable(id: string, table: Partial<FakeTable> & { schema: { fields: Field[] } }): void {
    this.tables.set(id, { numRows: 0, partitions: new Map(), ...table });
  }

  /** The next `times` requests matching answer `status` with an ErrorProto. */
  fail(
    method: string,
    path: RegExp,
    status: number,
    reason: string,
    message: string,
    options: { times?: number; when?: 'before' | 'after' } = {},
  ): void {
    this.faults.push({
      method,
      path,
      status,
      reason,
      message,
      times: options.times ?? 1,
      when: options.when ?? 'before',
    });
  }

  /** Jobs whose id matches finish with this errorResult. */
  failJob(match: RegExp, error: ErrorProto, errors?: ErrorProto[]): void {
    this.jobFaults.push({ match, error, errors });
  }

  /** Requests of one kind, e.g. `jobs.insert`. */
  requests(method: string, path: RegExp): Call[] {
    return this.calls.filter((c) => c.method === method && path.test(c.path));
  }

  /** Inserted jobs of one type. */
  jobsOf(type: 'load' | 'query'): FakeJob[] {
    return [...this.jobs.values()].filter((j) => j.configuration[type]);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const text = (await readBody(req)).toString('utf8');
    const call: Call = {
      method: req.method ?? 'GET',
      path: url.pathname,
      query: url.searchParams,
      body: text ? JSON.parse(text) : undefined,
      authorization: req.headers.authorization,
    };
    if (url.pathname.startsWith('/computeMetadata/')) return this.metadata(req, res, url.pathname);
    this.calls.push(call);
    if (call.authorization !== `Bearer ${TOKEN}`) {
      return this.error(res, 401, 'authError', 'Request is missing required authentication credential.');
    }
    const fault = this.faults.find((f) => f.times > 0 && f.method === call.method && f.path.test(call.path));
    if (fault) fault.times--;
    if (fault?.when === 'before') return this.error(res, fault.status, fault.reason, fault.message);
    const [status, body] = this.route(call);
    if (fault) return this.error(res, fault.status, fault.reason, fault.message);
    this.send(res, status, body);
  }

  /** The GKE metadata server, as Workload Identity serves it. */
  private metadata(req: IncomingMessage, res: ServerResponse, path: string): void {
    if (req.headers['metadata-flavor'] !== 'Google') {
      this.send(res, 403, 'Missing Metadata-Flavor header');
      return;
    }
    res.setHeader('Metadata-Flavor', 'Google');
    if (path.endsWith('/service-accounts/default/token')) {
      this.send(res, 200, { access_token: TOKEN, expires_in: 3599, token_type: 'Bearer' });
      return;
    }
    if (path.endsWith('/project/project-id')) {
      res.setHeader('Content-Type', 'text/plain');
      res.end('proj');
      return;
    }
    if (path.endsWith('/service-accounts/default/email')) {
      res.setHeader('Content-Type', 'text/plain');
      res.end('loader@proj.iam.gserviceaccount.com');
      return;
    }
    this.send(res, 200, {});
  }

  private route(call: Call): [number, unknown] {
    const p = call.path.replace(/^\/bigquery\/v2/, '');
    let m = /^\/projects\/([^/]+)\/datasets\/([^/]+)$/.exec(p);
    if (m && call.method === 'GET') return this.getDataset(m[1], m[2]);
    m = /^\/projects\/([^/]+)\/datasets\/([^/]+)\/tables$/.exec(p);
    if (m && call.method === 'POST') return this.insertTable(m[1], m[2], call.body);
    if (m && call.method === 'GET') return this.listTables(m[1], m[2]);
    m = /^\/projects\/([^/]+)\/datasets\/([^/]+)\/tables\/([^/]+)$/.exec(p);
    if (m) return this.table(call.method, `${m[1]}:${m[2]}.${decodeURIComponent(m[3])}`, call.body);
    m = /^\/projects\/([^/]+)\/jobs$/.exec(p);
    if (m && call.method === 'POST') return this.insertJob(m[1], call.body);
    m = /^\/projects\/([^/]+)\/jobs\/([^/]+)\/cancel$/.exec(p);
    if (m && call.method === 'POST') return this.cancelJob(m[1], m[2], call.query);
    m = /^\/projects\/([^/]+)\/jobs\/([^/]+)$/.exec(p);
    if (m && call.method === 'GET') return this.getJob(m[1], m[2], call.query);
    m = /^\/projects\/([^/]+)\/queries\/([^/]+)$/.exec(p);
    if (m && call.method === 'GET') return this.queryResults(m[1], m[2], call.query);
    return errorBody(404, 'notFound', `Not found: ${call.method} ${call.path}`);
  }

  private getDataset(project: string, dataset: string): [number, unknown] {
    const d = this.datasets.get(`${project}:${dataset}`);
    if (!d) return errorBody(404, 'notFound', `Not found: Dataset ${project}:${dataset}`);
    return [
      200,
      {
        kind: 'bigquery#dataset',
        id: `${project}:${dataset}`,
        datasetReference: { projectId: project, datasetId: dataset },
        location: d.location,
      },
    ];
  }

  /** tables.list: every table of a dataset, in name order (one page). */
  private listTables(project: string, dataset: string): [number, unknown] {
    if (!this.datasets.has(`${project}:${dataset}`))
      return errorBody(404, 'notFound', `Not found: Dataset ${project}:${dataset}`);
    const ids = [...this.tables.keys()].filter((id) => id.startsWith(`${project}:${dataset}.`)).sort();
    const tables = ids.map((id) => {
      const tableId = id.slice(`${project}:${dataset}.`.length);
      return {
        kind: 'bigquery#table',
        id,
        tableReference: { projectId: project, datasetId: dataset, tableId },
        type: 'TABLE',
      };
    });
    return [200, { kind: 'bigquery#tableList', tables, totalItems: tables.length }];
  }

  private tableResource(id: string, t: FakeTable): unknown {
    const [project, rest] = id.split(':');
    const [dataset, table] = rest.split('.');
    return {
      kind: 'bigquery#table',
      id,
      tableReference: { projectId: project, datasetId: dataset, tableId: table },
      schema: t.schema,
      numRows: String(t.numRows),
      type: 'TABLE',
      location: this.datasets.get(`${project}:${dataset}`)?.location ?? 'US',
      ...(t.timePartitioning ? { timePartitioning: t.timePartitioning } : {}),
      ...(t.clustering ? { clustering: t.clustering } : {}),
      ...(t.expirationTime ? { expirationTime: t.expirationTime } : {}),
    };
  }

  private insertTable(project: string, dataset: string, body: Json): [number, unknown] {
    const id = `${project}:${dataset}.${body.tableReference.tableId}`;
    if (!this.datasets.has(`${project}:${dataset}`))
      return errorBody(404, 'notFound', `Not found: Dataset ${project}:${dataset}`);
    if (this.tables.has(id)) return errorBody(409, 'duplicate', `Already Exists: Table ${id}`);
    const t: FakeTable = {
      schema: body.schema,
      numRows: 0,
      partitions: new Map(),
      timePartitioning: body.timePartitioning,
      clustering: body.clustering,
    };
    this.tables.set(id, t);
    return [200, this.tableResource(id, t)];
  }

  private table(method: string, id: string, body: Json): [number, unknown] {
    const t = this.tables.get(id);
    if (!t) return errorBody(404, 'notFound', `Not found: Table ${id}`);
    if (method === 'GET') return [200, this.tableResource(id, t)];
    if (method === 'PATCH') {
      if (body.expirationTime) t.expirationTime = body.expirationTime;
      this.onPatch?.(id, t);
      return [200, this.tableResource(id, t)];
    }
    if (method === 'DELETE') {
      this.tables.delete(id);
      return [204, undefined];
    }
    return errorBody(400, 'invalid', `unsupported ${method}`);
  }

  private insertJob(project: string, body: Json): [number, unknown] {
    const ref = body.jobReference ?? {};
    const id = ref.jobId ?? randomBytes(8).toString('hex');
    const location = ref.location ?? 'US';
    if (this.jobs.has(id))
      return errorBody(409, 'duplicate', `Already Exists: Job ${project}:${location}.${id}`);
    const configuration = body.configuration ?? {};
    if (configuration.dryRun) {
      return [
        200,
        {
          kind: 'bigquery#job',
          status: { state: 'DONE' },
          configuration,
          jobReference: { projectId: project, location },
          statistics: { query: { totalBytesProcessed: '0' } },
        },
      ];
    }
    const job: FakeJob = {
      id,
      location,
      configuration,
      pendingPolls: this.pollsBeforeDone,
      state: 'PENDING',
      cancelled: false,
    };
    this.jobs.set(id, job);
    return [200, this.jobResource(project, job)];
  }

  private jobResource(project: string, job: FakeJob): unknown {
    const stats: Record<string, unknown> = { creationTime: String(Date.now()) };
    if (job.configuration.load && job.state !== 'PENDING') {
      // While RUNNING, statistics may be partial; only a DONE job's outputRows is final.
      const rows = job.outputRows ?? 0;
      stats.load = {
        inputFiles: String(job.configuration.load.sourceUris.length),
        outputRows: String(job.state === 'DONE' ? rows : Math.floor(rows / 2)),
      };
    }
    return {
      kind: 'bigquery#job',
      id: `${project}:${job.location}.${job.id}`,
      jobReference: { projectId: project, jobId: job.id, location: job.location },
      configuration: { ...job.configuration, jobType: job.configuration.load ? 'LOAD' : 'QUERY' },
      status: {
        state: job.state,
        ...(job.errorResult ? { errorResult: job.errorResult, errors: job.errors ?? [job.errorResult] } : {}),
      },
      statistics: stats,
      user_email: 'loader@proj.iam.gserviceaccount.com',
    };
  }

  private getJob(project: string, id: string, query: URLSearchParams): [number, unknown] {
    const job = this.jobs.get(id);
    const location = query.get('location') ?? 'US';
    if (!job || job.location.toLowerCase() !== location.toLowerCase()) {
      return errorBody(404, 'notFound', `Not found: Job ${project}:${location}.${id}`);
    }
    if (job.state !== 'DONE') {
      if (job.pendingPolls > 0) {
        job.pendingPolls--;
        job.state = 'RUNNING';
        if (job.configuration.load) job.outputRows = this.rowsOf(job);
      } else {
        this.complete(job);
      }
    }
    return [200, this.jobResource(project, job)];
  }

  private cancelJob(project: string, id: string, query: URLSearchParams): [number, unknown] {
    const job = this.jobs.get(id);
    if (!job || job.location !== (query.get('location') ?? 'US'))
      return errorBody(404, 'notFound', `Not found: Job ${project}:${id}`);
    if (job.state !== 'DONE') {
      job.cancelled = true;
      job.state = 'DONE';
      job.errorResult = {
        reason: 'stopped',
        message: 'Job execution was cancelled: User requested cancellation',
      };
    }
    return [200, { kind: 'bigquery#jobCancelResponse', job: this.jobResource(project, job) }];
  }

  private rowsOf(job: FakeJob): number {
    return (job.configuration.load.sourceUris as string[]).reduce(
      (n, u) => n + (this.objects.get(u) ?? 0),
      0,
    );
  }

  /** Runs a job to DONE: its effect on tables, or its injected failure. */
  private complete(job: FakeJob): void {
    job.state = 'DONE';
    const fault = this.jobFaults.find((f) => f.match.test(job.id));
    if (fault) {
      job.errorResult = fault.error;
      job.errors = fault.errors ?? [fault.error];
      return;
    }
    if (job.configuration.load) this.completeLoad(job);
    else this.completeQuery(job);
  }

  private completeLoad(job: FakeJob): void {
    const load = job.configuration.load;
    for (const uri of load.sourceUris as string[]) {
      if (!this.objects.has(uri)) {
        job.errorResult = { reason: 'notFound', message: `Not found: URI ${uri}` };
        return;
      }
    }
    job.outputRows = this.rowsOf(job);
    const d = load.destinationTable;
    const [tableId, partition] = String(d.tableId).split('$');
    const id = `${d.projectId}:${d.datasetId}.${tableId}`;
    let t = this.tables.get(id);
    if (!t) {
      if (load.createDisposition === 'CREATE_NEVER') {
        job.errorResult = { reason: 'notFound', message: `Not found: Table ${id}` };
        return;
      }
      t = { schema: { fields: this.inferredSchema }, numRows: 0, partitions: new Map() };
      if (load.timePartitioning) t.timePartitioning = load.timePartitioning;
      if (load.clustering) t.clustering = load.clustering;
      this.tables.set(id, t);
    }
    if (partition) {
      t.numRows += job.outputRows - (t.partitions.get(partition) ?? 0);
      t.partitions.set(partition, job.outputRows);
    } else {
      t.numRows = job.outputRows;
      t.schema = { fields: this.inferredSchema };
    }
  }

  /** Emulates the apply script: staged rows are inserted, the count checked, the staging table dropped. */
  private completeQuery(job: FakeJob): void {
    const sql: string = job.configuration.query.query;
    const params = new Map<string, string>(
      (job.configuration.query.queryParameters ?? []).map((p: Json) => [p.name, p.parameterValue.value]),
    );
    if (/^SELECT COUNT\(\*\) AS n FROM/.test(sql)) {
      const m = /FROM `([^`]+)`\.`([^`]+)`\.`([^`]+)`/.exec(sql);
      const t = m ? this.tables.get(`${m[1]}:${m[2]}.${m[3]}`) : undefined;
      job.result = { schema: { fields: [{ name: 'n', type: 'INTEGER' }] }, rows: [{ n: t?.numRows ?? 0 }] };
      return;
    }
    const staging = /DROP TABLE IF EXISTS `([^`]+)`\.`([^`]+)`\.`([^`]+)`/.exec(sql);
    const target = /(?:DELETE FROM|MERGE) `([^`]+)`\.`([^`]+)`\.`([^`]+)`/.exec(sql);
    if (!staging || !target) {
      job.result = { schema: { fields: [] }, rows: [] };
      return;
    }
    const s = this.tables.get(`${staging[1]}:${staging[2]}.${staging[3]}`);
    const t = this.tables.get(`${target[1]}:${target[2]}.${target[3]}`);
    if (!s || !t) {
      job.errorResult = { reason: 'notFound', message: `Not found: Table ${s ? target[0] : staging[0]}` };
      return;
    }
    const inserted = s.numRows;
    const expected = Number(params.get('expected_rows'));
    if (inserted !== expected) {
      job.errorResult = {
        reason: 'invalidQuery',
        message: `nightshift: inserted ${inserted} rows but the files hold ${expected}; rolled back at [20:3]`,
      };
      return;
    }
    t.numRows += inserted;
    this.tables.delete(`${staging[1]}:${staging[2]}.${staging[3]}`);
    job.result = {
      schema: {
        fields: [
          { name: 'rows_replaced', type: 'INTEGER' },
          { name: 'rows_loaded', type: 'INTEGER' },
        ],
      },
      rows: [{ rows_replaced: 0, rows_loaded: inserted }],
    };
  }

  private queryResults(project: string, id: string, query: URLSearchParams): [number, unknown] {
    const job = this.jobs.get(id);
    if (!job || job.location !== (query.get('location') ?? 'US'))
      return errorBody(404, 'notFound', `Not found: Job ${project}:${id}`);
    const ref = { projectId: project, jobId: id, location: job.location };
    if (this.incompleteResults > 0 || job.state !== 'DONE') {
      this.incompleteResults = Math.max(0, this.incompleteResults - 1);
      return [200, { kind: 'bigquery#getQueryResultsResponse', jobReference: ref, jobComplete: false }];
    }
    if (job.errorResult) return errorBody(400, job.errorResult.reason, job.errorResult.message);
    const result = job.result ?? { schema: { fields: [] }, rows: [] };
    const start = Number(query.get('pageToken') ?? 0);
    const page = result.rows.slice(start, start + this.pageSize);
    const next = start + this.pageSize < result.rows.length ? String(start + this.pageSize) : undefined;
    return [
      200,
      {
        kind: 'bigquery#getQueryResultsResponse',
        jobReference: ref,
        jobComplete: true,
        schema: result.schema,
        totalRows: String(result.rows.length),
        rows: page.map((r) => ({
          f: result.schema.fields.map((f) => ({ v: r[f.name] === null ? null : String(r[f.name]) })),
        })),
        ...(next ? { pageToken: next } : {}),
      },
    ];
  }

  private error(res: ServerResponse, status: number, reason: string, message: string): void {
    const [, body] = errorBody(status, reason, message);
    this.send(res, status, body);
  }

  private send(res: ServerResponse, status: number, body: unknown): void {
    if (res.headersSent) return;
    if (body === undefined) {
      res.writeHead(status).end();
      return;
    }
    const text = typeof body === 'string' ? body : JSON.stringify(body);
    res.writeHead(status, {
      'Content-Type': typeof body === 'string' ? 'text/plain' : 'application/json; charset=UTF-8',
    });
    res.end(text);
  }
}

const STATUS_TEXT: Record<number, string> = {
  400: 'INVALID_ARGUMENT',
  401: 'UNAUTHENTICATED',
  403: 'PERMISSION_DENIED',
  404: 'NOT_FOUND',
  409: 'ALREADY_EXISTS',
  429: 'RESOURCE_EXHAUSTED',
  500: 'INTERNAL',
  503: 'UNAVAILABLE',
};

/** The REST error body: `{error: {code, message, errors: [ErrorProto], status}}`. */
export function errorBody(status: number, reason: string, message: string): [number, unknown] {
  return [
    status,
    {
      error: {
        code: status,
        message,
        errors: [{ message, domain: 'global', reason }],
        status: STATUS_TEXT[status] ?? 'UNKNOWN',
      },
    },
  ];
}
