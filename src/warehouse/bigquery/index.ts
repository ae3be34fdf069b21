/**
 * The BigQuery warehouse: one load job over exactly the run's staged Parquet files in Cloud
 * Storage, with ids derived from the job, window and files so that a rerun finds the jobs of an
 * interrupted run (409 Already Exists: get that job, use its result) instead of loading twice.
 *
 * Routes, chosen per load:
 * - `partition`: an `append` window that is exactly one day of a table day-partitioned on the
 *   cursor is loaded straight into `table$YYYYMMDD` with WRITE_TRUNCATE: one atomic job.
 * - `direct`: `replace` loads the whole table with WRITE_TRUNCATE: one atomic job.
 * - `staging`: everything else (windows spanning partitions, `merge`, JSON columns, which a load
 *   alone lands as STRING) loads into a staging table, then one multi-statement transaction
 *   removes what the load replaces, inserts, checks the count, and commits.
 *
 * On SIGTERM a submitted job is left running: cancelling is only a request, and leaving it
 * means the next run of the same window finds it by id and uses its result. A job still
 * running at the deadline is cancelled.
 */
import type { BigQuery, Job, JobMetadata } from '@google-cloud/bigquery';
import type { GcpEnvironment } from '../../config/cloud.js';
import { cloudEnvironment } from '../../config/cloud.js';
import { bigQueryDefaults, type Config } from '../../config/schema.js';
import { failpoint } from '../../core/failpoint.js';
import { pollUntilEnded } from '../../core/poll.js';
import type { Window } from '../../core/window.js';
import { configError, NightshiftError, transientError, validationError } from '../../errors.js';
import { gcpIdentity, gcpSetup } from '../../identity/gcp.js';
import type { AccessNeeds, Identity } from '../../identity/principal.js';
import type { ObjectStore } from '../../store/store.js';
import type { LoadMode, LoadRequest, LoadResult, Warehouse } from '../warehouse.js';
import { jobFailure, translateBigQueryError } from './errors.js';
import { bigQueryAccess } from './grants.js';
import {
  applyScript,
  type FieldSchema,
  labelValue,
  loadConfiguration,
  loadDigest,
  needsConversion,
  parseTable,
  type QueryParameter,
  slug,
  type TableLayout,
  type TableRef,
  tableSql,
  tableText,
  targetSchema,
  windowCondition,
  windowPartition,
} from './sql.js';

export interface BigQueryWarehouseOptions {
  /** Project that runs (and pays for) the jobs; also the default project of tables. */
  project: string;
  /** Dataset location; undefined: read from the dataset. */
  location?: string;
  stagingDataset?: string;
  createTable: boolean;
  partitionBy?: string;
  partitionType: 'HOUR' | 'DAY' | 'MONTH' | 'YEAR';
  clusterBy?: readonly string[];
  maximumBytesBilled: number;
  /** How long one job may take (ms). */
  timeoutMs: number;
  jobIdPrefix: string;
  /** `stage.url`, for the access `nightshift iam` describes. */
  stageUrl?: string;
  /** First and longest wait between two polls of a job (ms). */
  poll?: { initialMs: number; maxMs: number };
  /** The Application Default Credentials inputs, to name the identity the jobs run as. */
  gcp?: GcpEnvironment;
}

/** Earlier attempts of the same load that failed before a new attempt id is used. */
const MAX_ATTEMPTS = 20;
/** BigQuery takes at most 10,000 source URIs per load job. */
const MAX_URIS = 10_000;
const STAGING_TTL_MS = 86_400_000;

type Route = 'partition' | 'direct' | 'staging';

/** What a load works on, looked up once. */
interface Target {
  ref: TableRef;
  location: string;
  /** The table's metadata, undefined when it does not exist. */
  table: TableMeta | undefined;
}

interface TableMeta extends TableLayout {
  schema?: { fields?: FieldSchema[] };
  numRows?: string;
}

/** A job this run submitted, or found already submitted under the same id. */
interface Submitted {
  job: Job;
  /** Whether the id already existed (409): the job is an earlier run's. */
  found: boolean;
}

/** An earlier attempt under this id failed: the caller moves to the next attempt id. */
const RETRY = Symbol('retry');

export class BigQueryWarehouse implements Warehouse {
  readonly kind = 'bigquery';
  /** Load jobs read many files in parallel; large parts keep the URI list short. */
  readonly preferredPartMb = 256;
  private readonly client: BigQuery;
  private readonly options: BigQueryWarehouseOptions;

  constructor(client: BigQuery, options: BigQueryWarehouseOptions) {
    this.client = client;
    this.options = options;
  }

  /** Who the jobs run as (Application Default Credentials), with a token already obtained. */
  async identity(): Promise<Identity> {
    const setup = await gcpSetup(this.options.gcp ?? { kubernetes: false });
    return gcpIdentity(setup, this.client.authClient, this.options.project);
  }

  /** The roles the job needs, for `nightshift iam`. */
  accessNeeded(table: string, mode: LoadMode): AccessNeeds {
    const { project, stagingDataset, stageUrl } = this.options;
    return bigQueryAccess({ project, stagingDataset, stageUrl: stageUrl ?? '', table, mode });
  }

  /** Loads the files with one load job (and one transaction when staging), reusing earlier jobs by id. */
  async load(request: LoadRequest): Promise<LoadResult> {
    if (!request.files.length) return { rowsLoaded: 0 };
    if (request.files.length > MAX_URIS) {
      throw configError(
        `BigQuery loads at most ${MAX_URIS} files per job; this run staged ${request.files.length}`,
        {
          hint: 'raise parquet.part_size_mb or set source.max_rows_per_run',
        },
      );
    }
    for (const f of request.files) {
      if (!f.url.startsWith('gs://')) {
        throw configError(`BigQuery loads from Cloud Storage only, not ${f.url}`, {
          hint: 'set stage.url to gs://bucket/prefix',
        });
      }
    }
    const target = await this.target(request.table);
    const route = this.route(request, target);
    const base = `${this.options.jobIdPrefix}_${slug(request.job)}_${loadDigest(request, route)}`;
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const result = await this.attempt(request, target, route, `${base}_${attempt}`);
      if (result !== RETRY) return result;
    }
    throw configError(`${MAX_ATTEMPTS} earlier BigQuery jobs for this window failed (ids ${base}_*)`, {
      hint: 'read their errors with `bq show -j`, fix the cause, or change warehouse.bigquery.job_id_prefix',
    });
  }

  /** The dataset's location (checked against the configured one) and the table, if it exists. */
  private async target(table: string): Promise<Target> {
    const ref = parseTable(table, this.options.project);
    const location = await this.datasetLocation(ref.projectId, ref.datasetId);
    const wanted = this.options.location;
    if (wanted && location && wanted.toLowerCase() !== location.toLowerCase()) {
      throw configError(
        `warehouse.bigquery.location is ${wanted} but dataset ${ref.projectId}:${ref.datasetId} is in ${location}`,
        { hint: `set warehouse.bigquery.location to ${location} (and keep the stage bucket there)` },
      );
    }
    const staging = this.options.stagingDataset;
    if (staging && staging !== ref.datasetId) {
      const elsewhere = await this.datasetLocation(ref.projectId, staging);
      if (elsewhere.toLowerCase() !== location.toLowerCase()) {
        throw configError(
          `warehouse.bigquery.staging_dataset ${staging} is in ${elsewhere} but ${ref.datasetId} is in ${location}`,
          { hint: 'use a staging dataset in the same location as the target dataset' },
        );
      }
    }
    return { ref, location: location || wanted || 'US', table: await this.tableMeta(ref) };
  }

  /** A dataset's location; a missing or unreadable dataset is an error that says so. */
  private async datasetLocation(projectId: string, datasetId: string): Promise<string> {
    try {
      const [meta] = await this.client.dataset(datasetId, { projectId }).getMetadata();
      return String(meta.location ?? '');
    } catch (err) {
      throw translateBigQueryError(err, `reading dataset ${projectId}:${datasetId}`);
    }
  }

  /** A table's metadata (schema, layout, row count); undefined when it does not exist. */
  private async tableMeta(ref: TableRef): Promise<TableMeta | undefined> {
    const table = this.client.dataset(ref.datasetId, { projectId: ref.projectId }).table(ref.tableId);
    try {
      const [meta] = await table.getMetadata();
      return meta as TableMeta;
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw translateBigQueryError(err, `reading table ${tableText(ref)}`);
    }
  }

  /** The layout a new table gets from the configuration. */
  private configuredLayout(): TableLayout {
    const o = this.options;
    return {
      ...(o.partitionBy ? { timePartitioning: { type: o.partitionType, field: o.partitionBy } } : {}),
      ...(o.clusterBy ? { clustering: { fields: [...o.clusterBy] } } : {}),
    };
  }

  /** The existing table's layout, or the configured one for a table the load creates. */
  private layout(target: Target): TableLayout {
    if (!target.table) return this.configuredLayout();
    const { timePartitioning, rangePartitioning, clustering } = target.table;
    return {
      ...(timePartitioning ? { timePartitioning } : {}),
      ...(rangePartitioning ? { rangePartitioning } : {}),
      ...(clustering ? { clustering } : {}),
    };
  }

  /** The partition and direct routes need no query; anything a load alone cannot do goes through staging. */
  private route(request: LoadRequest, target: Target): Route {
    if (needsConversion(request.columns)) return 'staging';
    if (request.mode === 'replace') return 'direct';
    if (request.mode === 'append' && windowPartition(request.window, this.layout(target))) return 'partition';
    return 'staging';
  }

  /** One attempt under one id: the load, its count check, and (staging) the transaction. */
  private async attempt(
    request: LoadRequest,
    target: Target,
    route: Route,
    id: string,
  ): Promise<LoadResult | typeof RETRY> {
    const staging = this.stagingRef(target.ref, id);
    const destination =
      route === 'staging'
        ? staging
        : route === 'partition'
          ? {
              ...target.ref,
              tableId: `${target.ref.tableId}$${windowPartition(request.window, this.layout(target))}`,
            }
          : target.ref;
    if (route !== 'staging' && !target.table && !this.options.createTable) throw missingTable(target.ref);
    const load = await this.submit(
      `${id}_load`,
      {
        load: loadConfiguration({
          uris: request.files.map((f) => f.url),
          destination,
          create: route === 'staging' || this.options.createTable,
          layout: route === 'staging' ? undefined : this.layout(target),
        }),
        labels: this.labels(request),
      },
      target.location,
      request.signal,
    );
    const loaded = await this.finish(load, 'load', request.signal);
    if (loaded === RETRY) return RETRY;
    const outputRows = Number(loaded.statistics?.load?.outputRows ?? Number.NaN);
    if (outputRows !== request.expectedRows) {
      throw validationError(
        `BigQuery load job ${load.job.id} loaded ${outputRows} rows into ${tableText(destination)} but the files hold ${request.expectedRows}`,
        {
          hint:
            route === 'staging'
              ? 'nothing was applied to the table'
              : 'the next run replaces this window again',
        },
      );
    }
    if (route !== 'staging') {
      return {
        rowsLoaded: outputRows,
        ...(route === 'direct' ? { rowsReplaced: Number(target.table?.numRows ?? 0) } : {}),
        loadId: load.job.id ?? `${id}_load`,
      };
    }
    return this.apply(request, target, staging, id, load);
  }

  /** Staging tables live in the staging dataset (default: the target's), one per load id. */
  private stagingRef(target: TableRef, id: string): TableRef {
    return { ...target, datasetId: this.options.stagingDataset ?? target.datasetId, tableId: `${id}_stage` };
  }

  /** Runs the transaction that moves the staged rows into the target. */
  private async apply(
    request: LoadRequest,
    target: Target,
    staging: TableRef,
    id: string,
    load: Submitted,
  ): Promise<LoadResult | typeof RETRY> {
    if (load.found) {
      // An earlier run loaded the same files: its transaction may have run too.
      const prior = await this.existingJob(`${id}_apply`, target.location);
      if (prior) return this.applied({ job: prior, found: true }, load, request.signal);
    }
    const stagedMeta = await this.tableMeta(staging);
    // The earlier run's staging table is gone (expired) and it never applied it: load again.
    if (!stagedMeta) {
      if (load.found) return RETRY;
      throw new NightshiftError(
        'internal',
        `BigQuery staging table ${tableText(staging)} vanished after its load`,
      );
    }
    if (!load.found) await this.expire(staging);
    const staged = stagedMeta.schema?.fields ?? [];
    const targetMeta = target.table ?? (await this.createTarget(target.ref, staged, request));
    const targetFields = new Map((targetMeta.schema?.fields ?? []).map((f) => [f.name, f]));
    const script = applyScript({
      mode: request.mode,
      target: target.ref,
      staging,
      staged,
      targetFields,
      window: request.window,
      key: request.key,
      expectedRows: request.expectedRows,
    });
    const applyJob = await this.submit(
      `${id}_apply`,
      { query: this.queryConfig(script.sql, script.params), labels: this.labels(request) },
      target.location,
      request.signal,
    );
    return this.applied(applyJob, load, request.signal);
  }

  /** The counts the transaction returned, once it is done. */
  private async applied(
    applyJob: Submitted,
    load: Submitted,
    signal: AbortSignal | undefined,
  ): Promise<LoadResult | typeof RETRY> {
    const done = await this.finish(applyJob, 'query', signal);
    if (done === RETRY) return RETRY;
    const [row] = await this.rows(applyJob.job);
    return {
      rowsLoaded: Number(row?.rows_loaded ?? Number.NaN),
      rowsReplaced: Number(row?.rows_replaced ?? 0),
      loadId: `${load.job.id},${applyJob.job.id}`,
    };
  }

  /** A job submitted earlier under this id, if there is one. */
  private async existingJob(id: string, location: string): Promise<Job | undefined> {
    const job = this.client.job(id, { location });
    try {
      await job.getMetadata();
      return job;
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw translateBigQueryError(err, `reading BigQuery job ${id}`);
    }
  }

  /** Staging tables expire on their own if a run dies before its transaction drops them. */
  private async expire(staging: TableRef): Promise<void> {
    const table = this.client
      .dataset(staging.datasetId, { projectId: staging.projectId })
      .table(staging.tableId);
    try {
      await table.setMetadata({ expirationTime: String(Date.now() + STAGING_TTL_MS) });
    } catch (err) {
      throw translateBigQueryError(err, `setting the expiration of ${tableText(staging)}`);
    }
  }

  /** Creates the target with the staged schema (JSON columns as JSON), partitioned and clustered as configured. */
  private async createTarget(ref: TableRef, staged: FieldSchema[], request: LoadRequest): Promise<TableMeta> {
    if (!this.options.createTable) throw missingTable(ref);
    const fields = targetSchema(staged, request.columns);
    const names = new Set(fields.map((f) => f.name));
    for (const c of [this.options.partitionBy, ...(this.options.clusterBy ?? [])]) {
      if (c && !names.has(c)) {
        throw configError(
          `warehouse.bigquery: column ${c} to partition or cluster on is not among the exported columns`,
        );
      }
    }
    const dataset = this.client.dataset(ref.datasetId, { projectId: ref.projectId });
    try {
      await dataset.createTable(ref.tableId, { schema: { fields }, ...this.configuredLayout() });
    } catch (err) {
      // Created meanwhile (a concurrent or earlier run): use it as it is.
      if (httpStatus(err) !== 409) throw translateBigQueryError(err, `creating table ${tableText(ref)}`);
    }
    const meta = await this.tableMeta(ref);
    if (!meta)
      throw new NightshiftError(
        'internal',
        `BigQuery table ${tableText(ref)} is missing right after its creation`,
      );
    return meta;
  }

  private queryConfig(sql: string, params: QueryParameter[]): Record<string, unknown> {
    return {
      query: sql,
      useLegacySql: false,
      ...(params.length ? { parameterMode: 'NAMED', queryParameters: params } : {}),
      maximumBytesBilled: String(this.options.maximumBytesBilled),
    };
  }

  private labels(request: LoadRequest): Record<string, string> {
    return {
      app: 'nightshift',
      nightshift_job: labelValue(request.job),
      nightshift_run: labelValue(request.runId),
    };
  }

  /** Inserts a job under `id`; 409 means an earlier attempt created it: that job is used. */
  private async submit(
    id: string,
    configuration: Record<string, unknown>,
    location: string,
    signal: AbortSignal | undefined,
  ): Promise<Submitted> {
    signal?.throwIfAborted();
    try {
      const [job] = await this.client.createJob({ jobId: id, location, configuration });
      await failpoint('load-submitted');
      return { job, found: false };
    } catch (err) {
      if (httpStatus(err) === 409) return { job: this.client.job(id, { location }), found: true };
      // The job was created but came back with errors: its status says what failed.
      if (hasJobResource(err)) return { job: this.client.job(id, { location }), found: false };
      throw translateBigQueryError(err, `submitting BigQuery job ${id}`);
    }
  }

  /**
   * Waits for a job; a failed job this run submitted throws, a failed job of an earlier run
   * (found by id) asks for the next attempt.
   */
  private async finish(
    submitted: Submitted,
    what: 'load' | 'query',
    signal: AbortSignal | undefined,
  ): Promise<JobMetadata | typeof RETRY> {
    const meta = await this.wait(submitted.job, signal);
    if (!meta.status?.errorResult) return meta;
    if (submitted.found) return RETRY;
    throw jobFailure(what, submitted.job.id ?? '', meta.status.errorResult, meta.status.errors ?? []);
  }

  /** Polls jobs.get with capped backoff until DONE, the deadline, or SIGTERM. */
  private async wait(job: Job, signal: AbortSignal | undefined): Promise<JobMetadata> {
    if (signal?.aborted) throw leftRunning(job);
    return pollUntilEnded<JobMetadata>({
      ...(this.options.poll ?? { initialMs: 500, maxMs: 10_000 }),
      deadline: Date.now() + this.options.timeoutMs,
      signal,
      read: async () => {
        try {
          return (await job.getMetadata())[0];
        } catch (err) {
          throw translateBigQueryError(err, `reading BigQuery job ${job.id}`);
        }
      },
      ended: (meta) => meta.status?.state === 'DONE',
      onStop: async () => {
        throw leftRunning(job);
      },
      onDeadline: async () => {
        await job.cancel().catch(() => undefined);
        throw transientError(
          `BigQuery job ${job.id} did not finish within ${Math.round(this.options.timeoutMs / 1000)} s; it was cancelled`,
          { hint: 'raise warehouse.bigquery.timeout, or check the project for slot contention' },
        );
      },
    });
  }

  /** All result rows of a finished query job, across pages. */
  private async rows(job: Job): Promise<Record<string, unknown>[]> {
    try {
      const [rows] = await job.getQueryResults({ autoPaginate: true });
      return rows as Record<string, unknown>[];
    } catch (err) {
      throw translateBigQueryError(err, `reading the results of BigQuery job ${job.id}`);
    }
  }

  /** Runs a query with a generated id and returns its rows. */
  private async query(
    sql: string,
    params: QueryParameter[],
    location: string,
    signal?: AbortSignal,
  ): Promise<Record<string, unknown>[]> {
    let job: Job;
    try {
      [job] = await this.client.createJob({
        jobPrefix: `${this.options.jobIdPrefix}_q_`,
        location,
        configuration: { query: this.queryConfig(sql, params), labels: { app: 'nightshift' } },
      });
    } catch (err) {
      throw translateBigQueryError(err, 'submitting a BigQuery query');
    }
    const meta = await this.wait(job, signal);
    if (meta.status?.errorResult) {
      throw jobFailure('query', job.id ?? '', meta.status.errorResult, meta.status.errors ?? []);
    }
    return this.rows(job);
  }

  async countWindow(table: string, window: Window): Promise<number | undefined> {
    const target = await this.target(table);
    if (!target.table) return undefined;
    const fields = new Map((target.table.schema?.fields ?? []).map((f) => [f.name, f]));
    const cond = windowCondition(window, fields, tableText(target.ref));
    const rows = await this.query(
      `SELECT COUNT(*) AS n FROM ${tableSql(target.ref)} WHERE ${cond.sql}`,
      cond.params,
      target.location,
    );
    return Number(rows[0]?.n ?? 0);
  }

  async check(table: string): Promise<void> {
    const target = await this.target(table);
    // A dry run needs bigquery.jobs.create, like every load, and bills nothing.
    try {
      await this.client.createJob({
        location: target.location,
        configuration: { dryRun: true, query: this.queryConfig('SELECT 1', []) },
      });
    } catch (err) {
      throw translateBigQueryError(err, `running a dry-run query in project ${this.options.project}`);
    }
  }

  async close(): Promise<void> {}
}

function missingTable(ref: TableRef): NightshiftError {
  return configError(`BigQuery table ${tableText(ref)} does not exist`, {
    hint: 'create it, or set warehouse.bigquery.create_table: true',
  });
}

/** SIGTERM: the job keeps running; the next run of the window finds it by its id. */
function leftRunning(job: Job): NightshiftError {
  return new NightshiftError(
    'terminated',
    `stopped by SIGTERM while BigQuery job ${job.id} runs; it is left to finish and the next run of this window uses its result`,
  );
}

export function httpStatus(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'number' ? code : undefined;
}

function hasJobResource(err: unknown): boolean {
  const response = (err as { response?: { jobReference?: unknown } } | null)?.response;
  return typeof response?.jobReference === 'object';
}

/** The project of the Application Default Credentials. */
async function defaultProject(client: { getProjectId(): Promise<string> }): Promise<string> {
  try {
    return await client.getProjectId();
  } catch (err) {
    throw configError('warehouse.bigquery.project is not set and the credentials name no project', {
      cause: err,
      hint: 'set warehouse.bigquery.project (NIGHTSHIFT_WAREHOUSE_BIGQUERY_PROJECT)',
    });
  }
}

/** The BigQuery warehouse for `warehouse.type: bigquery`, with Application Default Credentials. */
export async function create(config: Config, _store: ObjectStore): Promise<Warehouse> {
  const bq = config.warehouse.bigquery ?? bigQueryDefaults();
  const { BigQuery } = await import('@google-cloud/bigquery');
  // Application Default Credentials: Workload Identity on GKE, no keys.
  const client = new BigQuery({
    ...(bq.project ? { projectId: bq.project } : {}),
    ...(bq.location ? { location: bq.location } : {}),
    ...(bq.api_endpoint ? { apiEndpoint: bq.api_endpoint } : {}),
  });
  return new BigQueryWarehouse(client, {
    project: bq.project ?? (await defaultProject(client)),
    location: bq.location,
    stagingDataset: bq.staging_dataset,
    createTable: bq.create_table,
    partitionBy: bq.partition_by,
    partitionType: bq.partition_type,
    clusterBy: bq.cluster_by,
    maximumBytesBilled: bq.maximum_bytes_billed,
    timeoutMs: bq.timeout,
    jobIdPrefix: bq.job_id_prefix,
    stageUrl: config.stage.url,
    gcp: cloudEnvironment().gcp,
  });
}
