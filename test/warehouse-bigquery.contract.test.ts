/**
 * BigQuery contract tests: the real @google-cloud/bigquery SDK, with Application Default
 * Credentials from a metadata server (Workload Identity), against a local server that answers as
 * the documented BigQuery REST API does (test/helpers/bigquery-server.ts). They assert the exact
 * load configuration and SQL sent, and how job states, errors and retries are handled.
 */
import { BigQuery } from '@google-cloud/bigquery';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { createWarehouse } from '../src/backends.js';
import { bigQueryDefaults, type Config, configSchema } from '../src/config/schema.js';
import { newRunId } from '../src/core/layout.js';
import { LocalStore } from '../src/store/local/index.js';
import { BigQueryWarehouse, type BigQueryWarehouseOptions } from '../src/warehouse/bigquery/index.js';
import {
  COLUMNS,
  INCREMENTAL,
  JSON_COLUMN,
  loadRequest,
  ONE_DAY,
  stagedFiles,
} from './helpers/bigquery-cases.js';
import { BigQueryContractServer, type Field, TOKEN } from './helpers/bigquery-server.js';
import { failure } from './helpers/warehouse-fixtures.js';
import { warehouseSuite } from './helpers/warehouse-suite.js';

const STAGE = 'gs://nightshift-stage/prefix';
const INFERRED: Field[] = [
  { name: 'id', type: 'INTEGER', mode: 'NULLABLE' },
  { name: 'updated_at', type: 'TIMESTAMP', mode: 'NULLABLE' },
  { name: 'amount', type: 'NUMERIC', mode: 'NULLABLE' },
  { name: 'tags', type: 'STRING', mode: 'REPEATED' },
];
const TARGET = 'proj:analytics.orders';
const T = '`proj`.`analytics`.`orders`';

let server: BigQueryContractServer;

beforeAll(() => {
  // Application Default Credentials as on GKE with Workload Identity: the metadata server.
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
  process.env.GOOGLE_CLOUD_PROJECT = '';
});

beforeEach(async () => {
  server = await new BigQueryContractServer().start();
  process.env.GCE_METADATA_HOST = server.host;
  server.addDataset('proj', 'analytics', 'US');
  server.inferredSchema = INFERRED;
});
afterEach(async () => {
  await server.stop();
});

function client(): BigQuery {
  return new BigQuery({
    projectId: 'proj',
    apiEndpoint: server.url,
    retryOptions: { maxRetries: 2, maxRetryDelay: 0.05 },
  });
}

function warehouse(options: Partial<BigQueryWarehouseOptions> = {}, bq = client()): BigQueryWarehouse {
  return new BigQueryWarehouse(bq, {
    project: 'proj',
    createTable: true,
    partitionType: 'DAY',
    maximumBytesBilled: 5_000_000_000,
    timeoutMs: 10_000,
    jobIdPrefix: 'nightshift',
    poll: { initialMs: 5, maxMs: 20 },
    ...options,
  });
}

/** Registers the staged files with the server (as if uploaded) and returns them. */
function stage(rows: number[], seed = 'a') {
  const files = stagedFiles(STAGE, '20240102T060000Z-abc123', rows, seed);
  for (const f of files) server.objects.set(f.url, f.rows);
  return files;
}

function existingTarget(extra: Partial<Parameters<BigQueryContractServer['addTable']>[1]> = {}) {
  server.addTable(TARGET, { schema: { fields: INFERRED }, numRows: 40, ...extra });
}

const PARQUET_OPTIONS = {
  sourceFormat: 'PARQUET',
  writeDisposition: 'WRITE_TRUNCATE',
  decimalTargetTypes: ['NUMERIC', 'BIGNUMERIC', 'STRING'],
  parquetOptions: { enableListInference: true, enumAsString: true },
  maxBadRecords: 0,
};

/**
 * The shared Warehouse suite, against the same server (a new one per case), credentials and
 * warehouse options as the cases below. The server keeps each table's row count, not its rows,
 * and does not run the SQL it is sent: the suite asserts counts here.
 */
let suiteCounter = 0;
warehouseSuite('BigQuery warehouse contract', {
  warehouse: async () => warehouse(),
  table: () => `analytics.suite_${++suiteCounter}`,
  stage: async (parts) => {
    const runId = newRunId();
    const files = stagedFiles(
      STAGE,
      runId,
      parts.map((p) => p.length),
      JSON.stringify(parts),
    );
    for (const f of files) server.objects.set(f.url, f.rows);
    return { runId, files };
  },
  count: async (table) => server.tables.get(`proj:${table}`)?.numRows ?? 0,
  stall: () => {
    // Jobs stay RUNNING: the load is stopped while it waits for its load job.
    server.pollsBeforeDone = 1_000;
    return () => server.jobsOf('load').some((j) => j.state === 'RUNNING');
  },
  beforeEach: () => {
    server.inferredSchema = [
      { name: 'trip_id', type: 'INTEGER', mode: 'NULLABLE' },
      { name: 'updated_at', type: 'TIMESTAMP', mode: 'NULLABLE' },
      { name: 'fare_usd', type: 'NUMERIC', mode: 'NULLABLE' },
      { name: 'region', type: 'STRING', mode: 'NULLABLE' },
      { name: 'payload', type: 'STRING', mode: 'NULLABLE' },
      { name: 'ride_id', type: 'STRING', mode: 'NULLABLE' },
      { name: 'tags', type: 'STRING', mode: 'REPEATED' },
    ];
  },
  cannot: {
    merge: 'the server adds the staged count on MERGE; it holds no keys, so one row per key cannot be shown',
    'session count mismatch':
      'a BigQuery load is one load job over the whole file list: the warehouse has no begin()',
    countWindow: "the server's COUNT answers the whole table's rows, not the window's",
    replace:
      'the trips have a JSON column, so replace runs the staging script, whose DELETE the server does not run (it answers 0 replaced and adds the rows)',
  },
});

describe('BigQuery warehouse contract: loads', () => {
  it('append of an incremental window: one load into staging, then one transaction replacing the window', async () => {
    existingTarget();
    const files = stage([3, 4]);
    const result = await warehouse().load(loadRequest({ files }));

    const [load] = server.jobsOf('load');
    expect(load.id).toMatch(/^nightshift_orders_[0-9a-f]{32}_0_load$/);
    const stageId = load.id.replace(/_load$/, '_stage');
    expect(load.location).toBe('US');
    expect(load.configuration.load).toEqual({
      ...PARQUET_OPTIONS,
      sourceUris: files.map((f) => f.url),
      destinationTable: { projectId: 'proj', datasetId: 'analytics', tableId: stageId },
      createDisposition: 'CREATE_IF_NEEDED',
    });
    expect(load.configuration.labels).toEqual({
      app: 'nightshift',
      nightshift_job: 'orders',
      nightshift_run: '20240102t060000z-abc123',
    });

    // The staging table was given an expiry before anything else touched it.
    const patch = server.requests('PATCH', new RegExp(`/tables/${stageId}$`));
    expect(patch).toHaveLength(1);
    expect(Number(patch[0].body.expirationTime)).toBeGreaterThan(Date.now() + 23 * 3_600_000);

    const [apply] = server.jobsOf('query');
    expect(apply.id).toBe(load.id.replace(/_load$/, '_apply'));
    const S = `\`proj\`.\`analytics\`.\`${stageId}\``;
    expect(apply.configuration.query.query).toBe(
      [
        'DECLARE replaced INT64 DEFAULT 0;',
        'DECLARE inserted INT64 DEFAULT 0;',
        'DECLARE rows_before INT64 DEFAULT 0;',
        'BEGIN TRANSACTION;',
        `DELETE FROM ${T} WHERE ((\`updated_at\` > CAST(@w0 AS TIMESTAMP)) OR (\`updated_at\` = CAST(@w0 AS TIMESTAMP) AND \`id\` > CAST(@w1 AS INT64))) AND ((\`updated_at\` < CAST(@w2 AS TIMESTAMP)) OR (\`updated_at\` = CAST(@w2 AS TIMESTAMP) AND \`id\` <= CAST(@w3 AS INT64)));`,
        'SET replaced = @@row_count;',
        `INSERT INTO ${T} (\`id\`, \`updated_at\`, \`amount\`, \`tags\`) SELECT s.\`id\`, s.\`updated_at\`, s.\`amount\`, s.\`tags\` FROM ${S} AS s;`,
        'SET inserted = @@row_count;',
        'IF inserted != @expected_rows THEN',
        '  ROLLBACK TRANSACTION;',
        "  RAISE USING MESSAGE = FORMAT('nightshift: inserted %d rows but the files hold %d; rolled back', inserted, @expected_rows);",
        'END IF;',
        'COMMIT TRANSACTION;',
        `DROP TABLE IF EXISTS ${S};`,
        'SELECT replaced AS rows_replaced, inserted AS rows_loaded;',
      ].join('\n'),
    );
    expect(apply.configuration.query).toMatchObject({
      useLegacySql: false,
      parameterMode: 'NAMED',
      maximumBytesBilled: '5000000000',
    });
    expect(apply.configuration.query.queryParameters).toEqual([
      { name: 'expected_rows', parameterType: { type: 'INT64' }, parameterValue: { value: '7' } },
      { name: 'w0', parameterType: { type: 'STRING' }, parameterValue: { value: '2024-01-01 00:00:00+00' } },
      { name: 'w1', parameterType: { type: 'STRING' }, parameterValue: { value: '17' } },
      { name: 'w2', parameterType: { type: 'STRING' }, parameterValue: { value: '2024-01-02 06:00:00+00' } },
      { name: 'w3', parameterType: { type: 'STRING' }, parameterValue: { value: '99' } },
    ]);
    expect(result).toEqual({ rowsLoaded: 7, rowsReplaced: 0, loadId: `${load.id},${apply.id}` });
    expect(server.tables.has(`proj:analytics.${stageId}`)).toBe(false);
    // Every request carried the token from the metadata server (Workload Identity).
    expect(server.calls.every((c) => c.authorization === `Bearer ${TOKEN}`)).toBe(true);
  });

  it('append of exactly one day of a day-partitioned table: one WRITE_TRUNCATE load into table$YYYYMMDD, no query', async () => {
    existingTarget({
      timePartitioning: { type: 'DAY', field: 'updated_at' },
      clustering: { fields: ['id'] },
    });
    const files = stage([5]);
    const result = await warehouse().load(loadRequest({ files, window: ONE_DAY }));
    const [load] = server.jobsOf('load');
    expect(load.configuration.load).toEqual({
      ...PARQUET_OPTIONS,
      sourceUris: [files[0].url],
      destinationTable: { projectId: 'proj', datasetId: 'analytics', tableId: 'orders$20240101' },
      createDisposition: 'CREATE_IF_NEEDED',
      timePartitioning: { type: 'DAY', field: 'updated_at' },
      clustering: { fields: ['id'] },
    });
    expect(server.jobsOf('query')).toHaveLength(0);
    expect(result).toEqual({ rowsLoaded: 5, loadId: load.id });
    expect(server.tables.get(TARGET)?.partitions.get('20240101')).toBe(5);
  });

  it('a one-day window of a table partitioned by another column goes through staging', async () => {
    existingTarget({ timePartitioning: { type: 'DAY', field: 'created_at' } });
    await warehouse().load(loadRequest({ files: stage([2]), window: ONE_DAY }));
    expect(server.jobsOf('load')[0].configuration.load.destinationTable.tableId).toMatch(/_stage$/);
    expect(server.jobsOf('query')).toHaveLength(1);
  });

  it('merge: staging, then MERGE on the key inside one transaction', async () => {
    existingTarget();
    const result = await warehouse().load(loadRequest({ files: stage([6]), mode: 'merge' }));
    const [load] = server.jobsOf('load');
    const S = `\`proj\`.\`analytics\`.\`${load.id.replace(/_load$/, '_stage')}\``;
    const sql: string = server.jobsOf('query')[0].configuration.query.query;
    expect(sql.split('\n').slice(3, 10)).toEqual([
      'BEGIN TRANSACTION;',
      `SET rows_before = (SELECT COUNT(*) FROM ${T});`,
      `MERGE ${T} AS t USING ${S} AS s ON t.\`id\` = s.\`id\``,
      'WHEN MATCHED THEN UPDATE SET `updated_at` = s.`updated_at`, `amount` = s.`amount`, `tags` = s.`tags`',
      'WHEN NOT MATCHED THEN INSERT (`id`, `updated_at`, `amount`, `tags`) VALUES (s.`id`, s.`updated_at`, s.`amount`, s.`tags`);',
      'SET inserted = @@row_count;',
      `SET replaced = inserted - ((SELECT COUNT(*) FROM ${T}) - rows_before);`,
    ]);
    expect(sql).not.toContain('DELETE FROM');
    expect(result.rowsLoaded).toBe(6);
  });

  it('replace: one WRITE_TRUNCATE load of the whole table, reporting the rows it replaced', async () => {
    existingTarget({ numRows: 40 });
    const files = stage([8, 1]);
    const result = await warehouse().load(loadRequest({ files, mode: 'replace' }));
    const [load] = server.jobsOf('load');
    expect(load.configuration.load.destinationTable).toEqual({
      projectId: 'proj',
      datasetId: 'analytics',
      tableId: 'orders',
    });
    expect(load.configuration.load.writeDisposition).toBe('WRITE_TRUNCATE');
    expect(server.jobsOf('query')).toHaveLength(0);
    expect(result).toEqual({ rowsLoaded: 9, rowsReplaced: 40, loadId: load.id });
  });

  it('creates a missing target partitioned and clustered as configured, with JSON columns as JSON', async () => {
    server.inferredSchema = [...INFERRED, { name: 'payload', type: 'STRING', mode: 'NULLABLE' }];
    const files = stage([4]);
    await warehouse({ partitionBy: 'updated_at', clusterBy: ['id'] }).load(
      loadRequest({ files, mode: 'replace', columns: [...COLUMNS, JSON_COLUMN] }),
    );
    // JSON columns arrive from Parquet as STRING: replace goes through staging to parse them.
    const [insert] = server.requests('POST', /\/datasets\/analytics\/tables$/);
    expect(insert.body).toEqual({
      tableReference: { projectId: 'proj', datasetId: 'analytics', tableId: 'orders' },
      schema: { fields: [...INFERRED, { name: 'payload', type: 'JSON', mode: 'NULLABLE' }] },
      timePartitioning: { type: 'DAY', field: 'updated_at' },
      clustering: { fields: ['id'] },
    });
    const sql: string = server.jobsOf('query')[0].configuration.query.query;
    expect(sql).toContain(`DELETE FROM ${T} WHERE TRUE;`);
    expect(sql).toContain(
      'SELECT s.`id`, s.`updated_at`, s.`amount`, s.`tags`, PARSE_JSON(s.`payload`) FROM',
    );
  });

  it('a table created by the load itself gets the configured partitioning', async () => {
    await warehouse({ partitionBy: 'updated_at', clusterBy: ['id'] }).load(
      loadRequest({ files: stage([2]), window: ONE_DAY }),
    );
    const [load] = server.jobsOf('load');
    expect(load.configuration.load).toMatchObject({
      destinationTable: { tableId: 'orders$20240101' },
      createDisposition: 'CREATE_IF_NEEDED',
      timePartitioning: { type: 'DAY', field: 'updated_at' },
      clustering: { fields: ['id'] },
    });
  });

  it('a missing table with create_table off is a configuration error that names it', async () => {
    const err = await failure(
      warehouse({ createTable: false }).load(loadRequest({ files: stage([1]), mode: 'replace' })),
    );
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain('proj:analytics.orders does not exist');
    expect(server.jobsOf('load')).toHaveLength(0);
  });

  it('refuses files that are not on Cloud Storage', async () => {
    const files = stagedFiles('file:///tmp/stage', 'r', [1]);
    const err = await failure(warehouse().load(loadRequest({ files })));
    expect(err.exitCode).toBe(2);
    expect(err.hint).toContain('gs://');
  });
});

describe('BigQuery warehouse contract: idempotency', () => {
  it('retry after a lost jobs.insert response: same job id, exactly one load', async () => {
    existingTarget();
    // The server creates the job, then the response is lost (503); the SDK retries the insert.
    server.fail('POST', /\/projects\/proj\/jobs$/, 503, 'backendError', 'Backend error', { when: 'after' });
    const result = await warehouse().load(loadRequest({ files: stage([3]) }));
    const inserts = server.requests('POST', /\/projects\/proj\/jobs$/);
    const loadInserts = inserts.filter((c) => c.body.configuration.load);
    expect(loadInserts).toHaveLength(2);
    expect(new Set(loadInserts.map((c) => c.body.jobReference.jobId)).size).toBe(1);
    expect(server.jobsOf('load')).toHaveLength(1);
    expect(result.rowsLoaded).toBe(3);
  });

  it('a new run of the same window and files finds the earlier jobs (409) and loads nothing again', async () => {
    existingTarget();
    const request = loadRequest({ files: stage([3, 2]) });
    const first = await warehouse().load(request);
    // The pod died before committing its checkpoint; a new pod re-exports the same rows to new URLs.
    const again = stagedFiles(STAGE, '20240102T070000Z-def456', [3, 2]);
    for (const f of again) server.objects.set(f.url, f.rows);
    const second = await warehouse().load({ ...request, runId: '20240102T070000Z-def456', files: again });
    expect(server.jobsOf('load')).toHaveLength(1);
    expect(server.jobsOf('query')).toHaveLength(1);
    expect(second).toEqual(first);
    // The second run's load insert met 409 Already Exists; its transaction was found by jobs.get.
    const inserts = server.requests('POST', /\/jobs$/);
    expect(inserts.map((c) => c.body.jobReference.jobId)).toEqual([
      `${server.jobsOf('load')[0].id}`,
      `${server.jobsOf('query')[0].id}`,
      `${server.jobsOf('load')[0].id}`,
    ]);
  });

  it('SIGTERM leaves the submitted job running; the next run waits for it and uses its result', async () => {
    existingTarget();
    server.pollsBeforeDone = 1_000;
    const request = loadRequest({ files: stage([4]) });
    const stop = new AbortController();
    const pending = warehouse().load({ ...request, signal: stop.signal });
    await waitFor(() => server.jobsOf('load')[0]?.state === 'RUNNING');
    stop.abort();
    const err = await failure(pending);
    expect(err.code).toBe('terminated');
    expect(err.message).toContain('left to finish');
    const [load] = server.jobsOf('load');
    expect(load.cancelled).toBe(false);
    expect(server.requests('POST', /\/cancel$/)).toHaveLength(0);

    server.pollsBeforeDone = 1;
    load.pendingPolls = 1;
    const result = await warehouse().load(request);
    expect(server.jobsOf('load')).toHaveLength(1);
    expect(result.rowsLoaded).toBe(4);
  });

  it('an earlier run whose job failed: the next attempt id loads again', async () => {
    existingTarget();
    const request = loadRequest({ files: stage([2]) });
    server.failJob(/_0_load$/, { reason: 'backendError', message: 'Backend error' });
    const err = await failure(warehouse().load(request));
    expect(err.exitCode).toBe(75);
    const result = await warehouse().load(request);
    const ids = server.jobsOf('load').map((j) => j.id);
    expect(ids).toHaveLength(2);
    expect(ids[0]).toMatch(/_0_load$/);
    expect(ids[1]).toMatch(/_1_load$/);
    expect(result.rowsLoaded).toBe(2);
  });

  it('different files for the same window get different job ids', async () => {
    existingTarget();
    await warehouse().load(loadRequest({ files: stage([2], 'a') }));
    await warehouse().load(loadRequest({ files: stage([2], 'b') }));
    const [a, b] = server.jobsOf('load');
    expect(a.id).not.toBe(b.id);
  });
});

describe('BigQuery warehouse contract: job states and results', () => {
  it('reads statistics.load.outputRows only once the job is DONE (RUNNING reports partial counts)', async () => {
    existingTarget();
    server.pollsBeforeDone = 3;
    const result = await warehouse().load(loadRequest({ files: stage([10]), mode: 'replace' }));
    const polls = server.requests('GET', /\/jobs\/nightshift_/);
    expect(polls.length).toBeGreaterThanOrEqual(4);
    expect(result.rowsLoaded).toBe(10);
  });

  it('follows getQueryResults through jobComplete=false and pages', async () => {
    existingTarget();
    server.incompleteResults = 2;
    server.pageSize = 1;
    const n = await warehouse().countWindow('analytics.orders', INCREMENTAL);
    expect(n).toBe(40);
    const results = server.requests('GET', /\/queries\//);
    expect(results.length).toBeGreaterThanOrEqual(3);
    const [count] = server.jobsOf('query');
    expect(count.configuration.query.query).toBe(
      `SELECT COUNT(*) AS n FROM ${T} WHERE ((\`updated_at\` > CAST(@w0 AS TIMESTAMP)) OR (\`updated_at\` = CAST(@w0 AS TIMESTAMP) AND \`id\` > CAST(@w1 AS INT64))) AND ((\`updated_at\` < CAST(@w2 AS TIMESTAMP)) OR (\`updated_at\` = CAST(@w2 AS TIMESTAMP) AND \`id\` <= CAST(@w3 AS INT64)))`,
    );
    expect(count.configuration.query.maximumBytesBilled).toBe('5000000000');
  });

  it('countWindow of a missing table is undefined', async () => {
    expect(await warehouse().countWindow('analytics.nope', INCREMENTAL)).toBeUndefined();
  });

  it('a failed load job is a failure with its errors listed and what to fix', async () => {
    existingTarget();
    server.failJob(
      /_load$/,
      {
        reason: 'invalid',
        message:
          'Error while reading data, error message: Parquet column amount has type INT64 which does not match the target cpp_type STRING',
      },
      [
        {
          reason: 'invalid',
          message:
            'Error while reading data, error message: Parquet column amount has type INT64 which does not match the target cpp_type STRING',
        },
        {
          reason: 'invalid',
          location: 'gs://nightshift-stage/prefix/part-00000.parquet',
          message: 'Provided Schema does not match Table proj:analytics.orders',
        },
      ],
    );
    const err = await failure(warehouse().load(loadRequest({ files: stage([2]), mode: 'replace' })));
    expect(err.exitCode).toBe(2);
    expect(err.message).toMatch(
      /BigQuery load job nightshift_orders_\w+_0_load failed: invalid: Error while reading data/,
    );
    expect(err.message).toContain(
      'at gs://nightshift-stage/prefix/part-00000.parquet: Provided Schema does not match',
    );
    expect(err.hint).toContain('align the table');
  });

  it('a load that reports fewer rows than the files hold: exit 3, nothing applied', async () => {
    existingTarget();
    const files = stage([5]);
    server.objects.set(files[0].url, 4);
    const err = await failure(warehouse().load(loadRequest({ files })));
    expect(err.exitCode).toBe(3);
    expect(err.message).toContain('loaded 4 rows');
    expect(server.jobsOf('query')).toHaveLength(0);
  });

  it("the transaction's own count check rolls back: exit 3", async () => {
    existingTarget();
    const files = stage([6]);
    // The staging table loses a row between the load and the transaction (as a concurrent writer
    // could make it): the script counts what it inserted, and rolls back.
    server.onPatch = (_id, table) => {
      table.numRows = 5;
    };
    const err = await failure(warehouse().load(loadRequest({ files })));
    expect(err.exitCode).toBe(3);
    expect(err.message).toContain('nightshift: inserted 5 rows but the files hold 6');
    expect(server.tables.get(TARGET)?.numRows).toBe(40);
  });

  it('a job still running at the deadline is cancelled: exit 75', async () => {
    existingTarget();
    server.pollsBeforeDone = 1_000;
    const err = await failure(warehouse({ timeoutMs: 100 }).load(loadRequest({ files: stage([1]) })));
    expect(err.exitCode).toBe(75);
    expect(err.message).toContain('was cancelled');
    expect(server.requests('POST', /\/cancel$/)).toHaveLength(1);
    expect(server.jobsOf('load')[0].cancelled).toBe(true);
  });
});

describe('BigQuery warehouse contract: errors', () => {
  it('permission denied creating jobs: exit 5 naming roles/bigquery.jobUser', async () => {
    existingTarget();
    server.fail(
      'POST',
      /\/jobs$/,
      403,
      'accessDenied',
      'Access Denied: Project proj: User does not have bigquery.jobs.create permission in project proj.',
    );
    const err = await failure(warehouse().load(loadRequest({ files: stage([1]) })));
    expect(err.exitCode).toBe(5);
    expect(err.hint).toContain('roles/bigquery.jobUser');
  });

  it('stage not readable: exit 5 naming roles/storage.objectViewer', async () => {
    existingTarget();
    server.failJob(/_load$/, {
      reason: 'accessDenied',
      message: 'Access Denied: File gs://nightshift-stage/prefix/x.parquet: Access Denied',
    });
    const err = await failure(warehouse().load(loadRequest({ files: stage([1]) })));
    expect(err.exitCode).toBe(5);
    expect(err.hint).toContain('roles/storage.objectViewer');
  });

  it('missing dataset access: exit 5 naming roles/bigquery.dataEditor', async () => {
    server.fail(
      'GET',
      /\/datasets\/analytics$/,
      403,
      'accessDenied',
      'Access Denied: Dataset proj:analytics: Permission bigquery.datasets.get denied on dataset proj:analytics',
    );
    const err = await failure(warehouse().load(loadRequest({ files: stage([1]) })));
    expect(err.exitCode).toBe(5);
    expect(err.hint).toContain('roles/bigquery.dataEditor');
  });

  it('throttled (429 rateLimitExceeded) beyond the SDK retries: exit 75', async () => {
    existingTarget();
    server.fail(
      'POST',
      /\/jobs$/,
      429,
      'rateLimitExceeded',
      'Exceeded rate limits: too many api requests per user per method',
      { times: 10 },
    );
    const err = await failure(warehouse().load(loadRequest({ files: stage([1]) })));
    expect(err.exitCode).toBe(75);
    expect(server.requests('POST', /\/jobs$/)).toHaveLength(3);
  });

  it('throttling that passes within the SDK retries is invisible', async () => {
    existingTarget();
    server.fail('POST', /\/jobs$/, 403, 'rateLimitExceeded', 'Exceeded rate limits', { times: 1 });
    const result = await warehouse().load(loadRequest({ files: stage([2]) }));
    expect(result.rowsLoaded).toBe(2);
  });

  it('5xx on jobs.get beyond the retries: exit 75', async () => {
    existingTarget();
    server.fail('GET', /\/jobs\/nightshift_/, 503, 'backendError', 'Backend error', { times: 10 });
    const err = await failure(warehouse().load(loadRequest({ files: stage([1]) })));
    expect(err.exitCode).toBe(75);
  });

  it('a transaction aborted by a concurrent update: exit 75', async () => {
    existingTarget();
    server.failJob(/_apply$/, {
      reason: 'invalidQuery',
      message: 'Transaction is aborted due to concurrent update against table proj:analytics.orders.',
    });
    const err = await failure(warehouse().load(loadRequest({ files: stage([1]) })));
    expect(err.exitCode).toBe(75);
  });

  it('load job quota exceeded (1,500 per table per day): exit 75', async () => {
    existingTarget();
    server.failJob(/_load$/, {
      reason: 'quotaExceeded',
      message: 'Quota exceeded: Your table exceeded quota for imports or query appends per table.',
    });
    const err = await failure(warehouse().load(loadRequest({ files: stage([1]) })));
    expect(err.exitCode).toBe(75);
  });

  it('a dataset in another location than configured: exit 2 saying where it is', async () => {
    server.addDataset('proj', 'analytics', 'EU');
    const err = await failure(warehouse({ location: 'US' }).load(loadRequest({ files: stage([1]) })));
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain('is in EU');
  });

  it('a staging dataset in another location: exit 2', async () => {
    server.addDataset('proj', 'scratch', 'EU');
    const err = await failure(
      warehouse({ stagingDataset: 'scratch' }).load(loadRequest({ files: stage([1]) })),
    );
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain('staging_dataset scratch is in EU');
  });

  it('staging tables go to the staging dataset', async () => {
    server.addDataset('proj', 'scratch', 'US');
    existingTarget();
    await warehouse({ stagingDataset: 'scratch' }).load(loadRequest({ files: stage([2]) }));
    expect(server.jobsOf('load')[0].configuration.load.destinationTable.datasetId).toBe('scratch');
    expect(server.jobsOf('query')[0].configuration.query.query).toContain(
      'FROM `proj`.`scratch`.`nightshift_orders_',
    );
  });

  it('a missing dataset: exit 2', async () => {
    const err = await failure(warehouse().load(loadRequest({ files: stage([1]), table: 'nodata.orders' })));
    expect(err.exitCode).toBe(2);
    expect(err.message).toContain('Not found: Dataset proj:nodata');
  });

  it('a query over maximum_bytes_billed: exit 2 saying which setting to raise', async () => {
    existingTarget();
    server.failJob(/^nightshift_q_/, {
      reason: 'bytesBilledLimitExceeded',
      message: 'Query exceeded limit for bytes billed: 5000000000. 10485760000 or higher required.',
    });
    const err = await failure(warehouse().countWindow('analytics.orders', INCREMENTAL));
    expect(err.exitCode).toBe(2);
    expect(err.hint).toContain('maximum_bytes_billed');
  });

  it('quotes identifiers and never pastes values into SQL', async () => {
    server.addDataset('proj', 'odd_ds', 'US');
    server.addTable('proj:odd_ds.we`ird', {
      schema: { fields: [{ name: 'a`b', type: 'STRING' }] },
      numRows: 1,
    });
    const window = {
      columns: ['a`b'],
      types: ['text'],
      lower: { values: ["x'); DROP TABLE t; --"], inclusive: false },
    };
    // A table name with a backtick is refused; the column is quoted and the value a parameter.
    const err = await failure(warehouse().countWindow('odd_ds.we`ird', window));
    expect(err.exitCode).toBe(2);
    server.addTable('proj:odd_ds.weird', {
      schema: { fields: [{ name: 'a`b', type: 'STRING' }] },
      numRows: 1,
    });
    await warehouse().countWindow('odd_ds.weird', window);
    const [q] = server.jobsOf('query');
    expect(q.configuration.query.query).toBe(
      'SELECT COUNT(*) AS n FROM `proj`.`odd_ds`.`weird` WHERE `a\\`b` > @w0',
    );
    expect(q.configuration.query.queryParameters[0].parameterValue.value).toBe("x'); DROP TABLE t; --");
  });
});

describe('BigQuery warehouse contract: wiring', () => {
  it('createWarehouse builds it from the config, with ADC and the project from the metadata server', async () => {
    const base = configSchema.parse({
      job: 'orders',
      source: { url: 'postgres://u@h/db', table: 'orders', cursor: 'updated_at', key: ['id'] },
      stage: { url: 'file:///tmp/unused' },
      warehouse: { type: 'duckdb', table: 'x', duckdb: { path: '/tmp/unused.duckdb' } },
    });
    // The gs:// stage URL is accepted once the GCS store is in; the warehouse only needs the URLs.
    const config = {
      ...base,
      stage: { url: STAGE },
      warehouse: {
        ...base.warehouse,
        type: 'bigquery',
        table: 'analytics.orders',
        bigquery: { ...bigQueryDefaults(), api_endpoint: server.url, maximum_bytes_billed: 123 },
      },
    } as Config;
    existingTarget();
    server.pollsBeforeDone = 0;
    const wh = await createWarehouse(config, new LocalStore('file:///tmp/unused'));
    expect(wh.kind).toBe('bigquery');
    const result = await wh.load(loadRequest({ files: stage([3]) }));
    expect(result.rowsLoaded).toBe(3);
    const [apply] = server.jobsOf('query');
    expect(apply.configuration.query.maximumBytesBilled).toBe('123');
    expect(server.requests('POST', /\/projects\/proj\/jobs$/)).toHaveLength(2);
    await wh.close();
  });
});

describe('BigQuery warehouse contract: preflight', () => {
  it('check reads the dataset and runs a dry-run query capped by maximum_bytes_billed', async () => {
    await warehouse().check('analytics.orders');
    const [dry] = server.requests('POST', /\/jobs$/);
    expect(dry.body.configuration).toEqual({
      dryRun: true,
      query: { query: 'SELECT 1', useLegacySql: false, maximumBytesBilled: '5000000000' },
    });
    expect(server.jobs.size).toBe(0);
  });

  it('check without jobs.create: exit 5', async () => {
    server.fail(
      'POST',
      /\/jobs$/,
      403,
      'accessDenied',
      'User does not have bigquery.jobs.create permission in project proj.',
    );
    const err = await failure(warehouse().check('analytics.orders'));
    expect(err.exitCode).toBe(5);
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}
