/**
 * The configuration schema: every key, its type, its default and its documentation. It is the
 * single source for validation, for the environment overrides (`NIGHTSHIFT_<PATH>`), and for the
 * configuration reference in docs/configuration.md (a test checks that every key is documented there).
 */
import { z } from 'zod';
import { PgUrlError, parsePgUrl } from './pg-url.js';

/** A duration such as `90s`, `5m`, `1h30m`, `2d`, or a number of milliseconds. */
export const DURATION_RE = /^(\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;

const duration = z
  .union([
    z.number().nonnegative(),
    z.string().regex(DURATION_RE, 'expected a duration such as 30s, 5m or 1h'),
  ])
  .transform((v) => (typeof v === 'number' ? v : parseDuration(v)));

/** Parses `1h30m` style durations into milliseconds. */
export function parseDuration(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) total += Number(n) * units[unit];
  return total;
}

const identifier = z.string().min(1, 'expected a column name');
const jobName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'expected lowercase letters, digits, ".", "_" or "-" (max 63)');

const source = z
  .strictObject({
    url: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// connection URL')
      .optional()
      .describe(
        'PostgreSQL connection URL, `postgres://user:password@host:5432/db?sslmode=require`, with the libpq parameters `connect_timeout`, `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `application_name`, `options`, `keepalives`, `keepalives_idle` (others are refused). A password in it must be URL-encoded; `source.password` needs no encoding. Give this or `host`. Secret.',
      ),
    host: z
      .string()
      .min(1)
      .optional()
      .describe('Database host name, IP address or Unix socket directory; overrides the host of `url`.'),
    port: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe('Database port; overrides the port of `url`. Default: 5432.'),
    database: z
      .string()
      .min(1)
      .optional()
      .describe('Database name; overrides the database of `url`. Default: the user name.'),
    user: z.string().min(1).optional().describe('Role to connect as; overrides the user of `url`.'),
    password: z
      .string()
      .optional()
      .describe(
        'Password of the role, as it is (no URL-encoding); overrides the password of `url`. From the environment or a mounted file: `${file:/var/run/secrets/pg/password}`. Secret.',
      ),
    connect_timeout: duration
      .optional()
      .describe(
        "Longest wait for a connection to be ready (TCP, TLS, authentication, session setup); then exit 75. Default: the URL's `connect_timeout`, else 30s. 0 waits for ever.",
      ),
    stall_timeout: duration
      .prefault('5m')
      .describe(
        'Longest a COPY may go without receiving a byte from the server before the run gives up (exit 75). Time the run itself pauses reading (uploads behind) does not count. 0 waits for ever.',
      ),
    table: z
      .string()
      .min(1)
      .optional()
      .describe('Table to export, `schema.table` or `table`. Give this or `query`.'),
    query: z
      .string()
      .min(1)
      .optional()
      .describe(
        'A SELECT whose rows are exported instead of a table; the window predicate is applied around it. Give this or `table`.',
      ),
    columns: z
      .array(identifier)
      .min(1)
      .optional()
      .describe('Columns to export (default: all columns of the table or query, in order).'),
    cursor: identifier
      .optional()
      .describe(
        'Incremental cursor column: a timestamp, timestamptz, date or integer column that grows as rows are inserted or updated. Required unless `warehouse.mode` is `replace`.',
      ),
    key: z
      .array(identifier)
      .min(1)
      .optional()
      .describe(
        'Unique key columns: the tiebreaker that orders rows sharing a cursor value, and the key `merge` upserts on. Required with `cursor`.',
      ),
    lag: z
      .union([duration, z.number()])
      .default(0)
      .describe(
        'How far behind the newest visible cursor value a window stops, so that transactions still open when the snapshot is taken (late commits) land in a later window. A duration for time cursors (`5m`), a number for integer cursors.',
      ),
    start: z
      .string()
      .optional()
      .describe(
        'Lower bound (exclusive) of the first window when there is no checkpoint yet, in the cursor type (`2024-01-01T00:00:00Z`, `0`). Default: from the beginning.',
      ),
    max_rows_per_run: z
      .number()
      .int()
      .positive()
      .optional()
      .describe(
        'Cap on rows per window; a backlog is then drained over several runs, each ending on a (cursor, key) boundary.',
      ),
    casts: z
      .record(z.string(), z.string().min(1))
      .default({})
      .describe(
        'Per-column SQL type to cast to before export, for types nightshift does not map (`{geom: text}`); `json`/`jsonb` wraps the column in `to_jsonb()`.',
      ),
    infinity: z
      .enum(['clamp', 'null', 'error'])
      .default('clamp')
      .describe(
        'What `infinity`/`-infinity` dates and timestamps become: `clamp` to 9999-12-31 23:59:59.999999 / 0001-01-01, `null`, or `error`.',
      ),
    numeric: z
      .enum(['auto', 'string'])
      .default('auto')
      .describe(
        'Unconstrained `numeric` columns: `auto` measures the window and writes DECIMAL(38,s) when every value fits (else a string); `string` always writes the exact text.',
      ),
    statement_timeout: duration
      .default(0)
      .describe('PostgreSQL statement_timeout for the export session; 0 means none.'),
    application_name: z
      .string()
      .optional()
      .describe(
        "application_name the session shows in pg_stat_activity. Default: the URL's `application_name`, else `nightshift`.",
      ),
  })
  .describe('Where rows come from.');

const s3 = z
  .strictObject({
    region: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Region of the bucket (`eu-west-1`). Default: `AWS_REGION` or `AWS_DEFAULT_REGION` (EKS sets it), else `us-east-1`.',
      ),
    endpoint: z
      .string()
      .regex(/^https?:\/\//, 'expected an http(s) URL')
      .optional()
      .describe(
        'An S3-compatible endpoint instead of AWS S3: MinIO (`http://minio.minio:9000`), Cloudflare R2 (`https://<account>.r2.cloudflarestorage.com`), a VPC interface endpoint.',
      ),
    force_path_style: z
      .boolean()
      .default(false)
      .describe(
        'Address the bucket in the path (`https://host/bucket/key`) instead of the host name; MinIO needs it.',
      ),
    server_side_encryption: z
      .enum(['AES256', 'aws:kms', 'aws:kms:dsse'])
      .optional()
      .describe(
        'Server-side encryption of every object written: `AES256` (SSE-S3), `aws:kms` (SSE-KMS), `aws:kms:dsse`. Default: the bucket default encryption.',
      ),
    kms_key_id: z
      .string()
      .min(1)
      .optional()
      .describe(
        'KMS key (id, ARN or `alias/...`) for `aws:kms` encryption; the role then needs `kms:GenerateDataKey` and `kms:Decrypt` on it. Default: the AWS managed key `aws/s3`.',
      ),
    storage_class: z
      .enum(['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'EXPRESS_ONEZONE'])
      .optional()
      .describe(
        'Storage class of part files (manifests, the lease and the checkpoint stay in the default class: they are small and rewritten). Default: the bucket default, `STANDARD`.',
      ),
    object_lock_mode: z
      .enum(['GOVERNANCE', 'COMPLIANCE'])
      .optional()
      .describe(
        'Object Lock retention mode of part files, for a write-once archive; the bucket must have Object Lock enabled. Needs `object_lock_retention`.',
      ),
    object_lock_retention: duration
      .optional()
      .describe(
        'How long each part file stays locked from its upload (`365d`); the role then also needs `s3:PutObjectRetention`.',
      ),
    part_size_mb: z
      .number()
      .int()
      .min(5)
      .max(5120)
      .default(16)
      .describe(
        'Multipart part size. A part file up to this size is one PutObject; a larger one is a multipart upload of parts this size.',
      ),
    queue_size: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(4)
      .describe(
        'Parts of one file uploaded at once; each holds `part_size_mb` in memory (two files upload at a time).',
      ),
    max_attempts: z
      .number()
      .int()
      .min(1)
      .max(20)
      .default(5)
      .describe(
        'Attempts per S3 request, retried with exponential backoff and jitter on throttling, 5xx and network errors; then the run exits 75.',
      ),
    request_checksum: z
      .enum(['when_supported', 'when_required'])
      .default('when_supported')
      .describe(
        'When the SDK adds its own request checksum (`requestChecksumCalculation`). Part files always carry a SHA-256 checksum that S3 verifies. `when_required` for S3-compatible servers that do not decode `aws-chunked` bodies.',
      ),
  })
  .describe(
    'S3 stage settings (`stage.url: s3://bucket/prefix`). Credentials come from the AWS default chain.',
  );

const gcs = z
  .strictObject({
    project: z
      .string()
      .min(1)
      .optional()
      .describe('Project for requests that need one. Default: the project of the credentials.'),
    api_endpoint: z
      .string()
      .regex(/^https?:\/\//, 'expected an http(s) URL')
      .optional()
      .describe(
        'Cloud Storage JSON API endpoint, for Private Service Connect (`https://storage-myendpoint.p.googleapis.com`). Default: the public endpoint.',
      ),
    storage_class: z
      .enum(['STANDARD', 'NEARLINE', 'COLDLINE', 'ARCHIVE'])
      .optional()
      .describe('Storage class of part files. Default: the bucket default.'),
    temporary_hold: z
      .boolean()
      .default(false)
      .describe(
        'Place a temporary hold on each part file: it cannot be deleted or replaced until the hold is released. The role then also needs `storage.objects.update`.',
      ),
    event_based_hold: z
      .boolean()
      .default(false)
      .describe(
        "Place an event-based hold on each part file: the bucket's retention period starts when the hold is released. The role then also needs `storage.objects.update`.",
      ),
    chunk_size_mb: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .default(16)
      .describe(
        'Part files are resumable uploads sent in chunks of this size; a chunk that fails is resent from where the server says it stopped.',
      ),
    max_attempts: z
      .number()
      .int()
      .min(1)
      .max(20)
      .default(5)
      .describe(
        'Attempts per Cloud Storage request, retried with exponential backoff on 429, 5xx and network errors; then the run exits 75.',
      ),
  })
  .describe(
    'Cloud Storage stage settings (`stage.url: gs://bucket/prefix`). Credentials come from Application Default Credentials.',
  );

/** The S3 and Cloud Storage settings when the config has no `stage.s3` / `stage.gcs` block. */
export const s3StageDefaults = () => s3.parse({});
export const gcsStageDefaults = () => gcs.parse({});

const stage = z
  .strictObject({
    url: z
      .string()
      .regex(
        /^(file:\/\/|s3:\/\/[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](\/|$)|gs:\/\/[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](\/|$))/,
        'expected file:///absolute/path, s3://bucket/prefix or gs://bucket/prefix',
      )
      .describe(
        'Where Parquet files, manifests and state live: `file:///absolute/path`, `s3://bucket/prefix` or `gs://bucket/prefix`.',
      ),
    s3: s3.optional(),
    gcs: gcs.optional(),
  })
  .describe('Object storage for data files, run manifests, the checkpoint and the lease.');

const duckdb = z
  .strictObject({
    path: z.string().min(1).describe('DuckDB database file; created when missing.'),
    memory_limit_mb: z
      .number()
      .int()
      .min(64)
      .default(96)
      .describe(
        "DuckDB memory_limit during the load: what DuckDB's buffer manager holds before it writes out or spills; its readers and threads use memory beyond it.",
      ),
    threads: z.number().int().min(1).default(2).describe('DuckDB threads during the load.'),
    storage_version: z
      .string()
      .regex(/^(v\d+\.\d+\.\d+|latest)$/, 'a DuckDB version such as v1.3.0, or latest')
      .default('v1.3.0')
      .describe(
        'Storage format of a new DuckDB file, named by the oldest DuckDB release that must open it. From v1.3.0 DuckDB stores text with DICT_FSST, which takes a fifth less CPU to load; set v1.0.0 to share the file with older DuckDB releases. An existing file keeps the format it was created with.',
      ),
  })
  .describe('The embedded DuckDB warehouse.');

const bigquery = z
  .strictObject({
    project: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Project that runs the load and query jobs (and is billed for them). Default: the project of the Application Default Credentials. A `warehouse.table` of `project.dataset.table` may name another project for the data.',
      ),
    location: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Location of the dataset (`US`, `EU`, `europe-west4`). Default: read from the dataset. When set, a dataset elsewhere is reported as a configuration error. The stage bucket must be in the same location.',
      ),
    staging_dataset: z
      .string()
      .min(1)
      .optional()
      .describe(
        "Dataset for the staging tables that `merge`, multi-partition `append` windows and JSON columns go through; each expires after a day and is dropped once applied. Default: the target table's dataset.",
      ),
    create_table: z
      .boolean()
      .default(true)
      .describe(
        'Create the target table from the Parquet schema when it is missing (partitioned and clustered as below).',
      ),
    partition_by: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Column a created table is time-partitioned on (a DATE, DATETIME or TIMESTAMP column, usually `source.cursor`). Only used when the table is created.',
      ),
    partition_type: z
      .enum(['HOUR', 'DAY', 'MONTH', 'YEAR'])
      .default('DAY')
      .describe(
        'Partition granularity of a created table. A one-day window of a day-partitioned table is loaded straight into its partition (`table$YYYYMMDD`, WRITE_TRUNCATE).',
      ),
    cluster_by: z
      .array(z.string().min(1))
      .min(1)
      .max(4)
      .optional()
      .describe('Up to four columns a created table is clustered on.'),
    maximum_bytes_billed: z
      .number()
      .int()
      .positive()
      .default(1_099_511_627_776)
      .describe(
        'Cap on the bytes billed by each query nightshift runs (window replacement, MERGE, counts); a query over it fails without cost (exit 2). Default 1 TiB.',
      ),
    timeout: duration
      .prefault('1h')
      .describe(
        'How long to wait for one BigQuery job; a job still running then is cancelled and the run exits 75.',
      ),
    job_id_prefix: z
      .string()
      .regex(/^[A-Za-z0-9_-]{1,64}$/, 'expected letters, digits, "_" or "-"')
      .default('nightshift')
      .describe(
        'Prefix of the job ids. Job ids are derived from the job, the window and the files, so a rerun finds the jobs of an interrupted run instead of loading twice; change the prefix to force a fresh load of a window already loaded.',
      ),
    api_endpoint: z
      .string()
      .regex(/^https?:\/\//, 'expected an http(s) URL')
      .optional()
      .describe('BigQuery API endpoint, for Private Service Connect. Default: the public endpoint.'),
  })
  .describe(
    'The BigQuery warehouse; credentials come from Application Default Credentials (Workload Identity).',
  );

/** The BigQuery settings when the config has no `warehouse.bigquery` block. */
export const bigQueryDefaults = () => bigquery.parse({});

const snowflake = z
  .strictObject({
    account: z
      .string()
      .regex(/^[A-Za-z0-9_.-]+$/, 'expected an account identifier such as myorg-myaccount')
      .describe(
        'Account identifier, `<orgname>-<accountname>` (Snowsight: Admin > Accounts), or a legacy locator with its region (`xy12345.eu-west-1`).',
      ),
    user: z
      .string()
      .min(1)
      .optional()
      .describe('Login name of the service user. Required with `authenticator: SNOWFLAKE_JWT`.'),
    role: z.string().min(1).optional().describe("Role the session uses (default: the user's default role)."),
    warehouse: z.string().min(1).describe('Virtual warehouse that runs the COPY and the DML.'),
    database: z.string().min(1).describe('Database of the target table, the staging table and the stage.'),
    schema: z
      .string()
      .min(1)
      .default('PUBLIC')
      .describe('Schema of `warehouse.table` when the table name has none, and of the staging table.'),
    authenticator: z
      .enum(['SNOWFLAKE_JWT', 'WORKLOAD_IDENTITY'])
      .default('SNOWFLAKE_JWT')
      .describe(
        "`SNOWFLAKE_JWT`: key-pair authentication with `private_key_path`. `WORKLOAD_IDENTITY`: the pod's cloud identity (`workload_identity_provider`), no secret at all.",
      ),
    private_key_path: z
      .string()
      .min(1)
      .optional()
      .describe(
        'PEM private key (PKCS#8) of the user, mounted from a Secret: `/var/run/secrets/snowflake/rsa_key.p8`. Required with `SNOWFLAKE_JWT`.',
      ),
    private_key_passphrase: z
      .string()
      .optional()
      .describe(
        'Passphrase of an encrypted private key, from a mounted file: `${file:/var/run/secrets/snowflake/passphrase}`. Secret.',
      ),
    workload_identity_provider: z
      .enum(['AWS', 'GCP', 'AZURE', 'OIDC'])
      .optional()
      .describe(
        'With `WORKLOAD_IDENTITY`: where the identity comes from. `AWS` (IRSA / EKS Pod Identity), `GCP` (GKE Workload Identity), `AZURE` (managed identity), or `OIDC` (a token file, such as a projected service account token).',
      ),
    token_path: z
      .string()
      .min(1)
      .optional()
      .describe(
        'With `workload_identity_provider: OIDC`: file holding the OIDC token, read at each login (a projected service account token with audience `snowflakecomputing.com`).',
      ),
    stage: z
      .string()
      .min(1)
      .describe(
        'External stage whose URL is `stage.url` (created with a storage integration), `name`, `schema.name` or `database.schema.name`. Files are loaded from it by their keys.',
      ),
    access_url: z
      .string()
      .regex(/^https?:\/\/[^/\s]+\/?$/, 'expected https://host[:port]')
      .optional()
      .describe(
        'Endpoint, when it is not `https://<account>.snowflakecomputing.com` (PrivateLink: `https://<account>.privatelink.snowflakecomputing.com`).',
      ),
    lock_timeout: duration
      .prefault('10m')
      .describe(
        'How long a statement waits for a lock on the target table (LOCK_TIMEOUT) before the run stops with exit 75.',
      ),
    statement_timeout: duration
      .prefault('2h')
      .describe(
        'Longest a single statement (one COPY, the DELETE, the INSERT) may run (STATEMENT_TIMEOUT_IN_SECONDS).',
      ),
  })
  .describe('The Snowflake warehouse: COPY INTO from an external stage over `stage.url`.');

/** An IAM role ARN, or a comma-separated chain of them. */
const IAM_ROLE_RE =
  /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]+(,arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]+)*$/;

const redshift = z
  .strictObject({
    workgroup: z
      .string()
      .regex(/^[A-Za-z0-9:/_-]+$/, 'expected a workgroup name or ARN')
      .optional()
      .describe('Redshift Serverless workgroup (name or ARN). Give this or `cluster`.'),
    cluster: z
      .string()
      .regex(/^[a-z][a-z0-9-]{0,62}$/, 'expected a cluster identifier such as analytics-prod')
      .optional()
      .describe('Provisioned cluster identifier. Give this or `workgroup`.'),
    database: z.string().min(1).describe('Database of the target table; the Data API connects to it.'),
    schema: z
      .string()
      .min(1)
      .default('public')
      .describe('Schema of `warehouse.table` when the table name has none.'),
    secret_arn: z
      .string()
      .regex(
        /^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:.+$/,
        'expected a Secrets Manager secret ARN',
      )
      .optional()
      .describe(
        "Secrets Manager secret (`username`, `password`) the Data API connects with. Default: IAM, the pod's own identity (temporary credentials; database user `IAMR:<role>`).",
      ),
    db_user: z
      .string()
      .min(1)
      .optional()
      .describe(
        "With `cluster` and IAM: connect as this existing database user (`redshift:GetClusterCredentials`) instead of the pod's IAM identity (`redshift:GetClusterCredentialsWithIAM`).",
      ),
    iam_role: z
      .string()
      .regex(
        IAM_ROLE_RE,
        'expected arn:aws:iam::<account>:role/<name> (or a comma-separated chain), or default',
      )
      .or(z.literal('default'))
      .describe(
        "IAM role COPY reads the stage with (`IAM_ROLE` of COPY): its ARN, associated with the workgroup's namespace or the cluster; a comma-separated chain of ARNs; or `default`, the namespace's or cluster's default role.",
      ),
    region: z
      .string()
      .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, 'expected an AWS Region such as eu-west-1')
      .optional()
      .describe(
        'AWS Region of the workgroup or cluster; the stage bucket must be in the same Region (COPY reads Parquet only from there). Default: `AWS_REGION` of the pod.',
      ),
    statement_timeout: duration
      .prefault('2h')
      .describe(
        "Longest the load may take (one transaction: COPY, delete, insert): Redshift's `statement_timeout` for each statement, and the time after which nightshift cancels the transaction (exit 75).",
      ),
    endpoint: z
      .string()
      .regex(/^https?:\/\//, 'expected an http(s) URL')
      .optional()
      .describe(
        'Data API endpoint, for a VPC interface endpoint (`https://redshift-data.<region>.amazonaws.com` by default).',
      ),
  })
  .describe(
    'The Redshift warehouse (Serverless or provisioned) through the Data API: COPY ... FORMAT AS PARQUET from `stage.url` on S3.',
  );

const warehouse = z
  .strictObject({
    type: z
      .enum(['duckdb', 'bigquery', 'snowflake', 'redshift'])
      .default('duckdb')
      .describe('Warehouse kind: `duckdb`, `bigquery`, `snowflake` or `redshift`.'),
    table: z
      .string()
      .min(1)
      .describe('Target table, `schema.table` or `table`; created from the Parquet schema when missing.'),
    mode: z
      .enum(['append', 'merge', 'replace'])
      .default('append')
      .describe(
        "`append`: the window's rows replace whatever the warehouse holds for that window (idempotent per window). `merge`: upsert on `source.key`. `replace`: the table is replaced by the full export.",
      ),
    duckdb: duckdb.optional(),
    snowflake: snowflake.optional(),
    bigquery: bigquery.optional(),
    redshift: redshift.optional(),
  })
  .describe('Where rows are loaded.');

const parquet = z
  .strictObject({
    compression: z.enum(['zstd', 'gzip', 'none']).default('zstd').describe('Page compression codec.'),
    compression_level: z
      .number()
      .int()
      .min(1)
      .max(19)
      .default(3)
      .describe(
        'zstd or gzip level. A column whose pages come out no larger at level 1 (random text, often) is written at level 1, which is faster; this is checked on its first page and every 32nd after.',
      ),
    part_size_mb: z
      .number()
      .int()
      .min(1)
      .optional()
      .describe(
        'A part file is closed, uploaded and deleted once it reaches this size. Default: what the warehouse loads best (32 for duckdb, whose loads start while the export runs; 256 otherwise).',
      ),
    row_group_mb: z
      .number()
      .int()
      .min(1)
      .default(64)
      .describe("Uncompressed bytes per row group; with the page buffers this bounds the writer's memory."),
    page_kb: z.number().int().min(8).default(1024).describe('Uncompressed bytes per data page.'),
    dictionary: z
      .boolean()
      .default(true)
      .describe('Dictionary-encode columns while their dictionary stays small.'),
  })
  .describe('Part files.');

const validation = z
  .strictObject({
    min_rows: z
      .number()
      .int()
      .nonnegative()
      .default(0)
      .describe('Fail (exit 3) when a window has fewer rows.'),
    source_count: z
      .enum(['copy', 'query'])
      .default('copy')
      .describe(
        'Where the source count comes from: `copy`, the row count PostgreSQL reports for the COPY of the window; `query`, also a count(*) of the window in the same snapshot on a second connection (an independent check that costs a second scan).',
      ),
    max_rows: z
      .number()
      .int()
      .positive()
      .optional()
      .describe('Fail (exit 3) before moving data when a window has more rows.'),
  })
  .describe('Checks a run must pass before the checkpoint moves.');

const lease = z
  .strictObject({
    ttl: duration
      .prefault('10m')
      .describe("How long a lease lasts without renewal; a dead holder's lease is taken over after it."),
  })
  .describe('The run lease.');

const log = z
  .strictObject({
    level: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info').describe('Log level.'),
    format: z
      .enum(['auto', 'json', 'pretty'])
      .default('auto')
      .describe('`json` lines (Cloud Logging, CloudWatch), `pretty` lines, or `auto`: pretty on a terminal.'),
    progress: z
      .enum(['auto', 'on', 'off'])
      .default('auto')
      .describe(
        'Progress display (rows, MB/s, ETA): `auto` shows it on a terminal, and logs it every 10 s otherwise.',
      ),
  })
  .describe('Logging.');

export const configSchema = z
  .strictObject({
    job: jobName.describe(
      'Job name: the folder under the stage and the lease scope. Lowercase, digits, `._-`.',
    ),
    temp_dir: z
      .string()
      .min(1)
      .default('/tmp')
      .describe('Where part files are written before upload (an emptyDir in Kubernetes).'),
    source,
    stage,
    warehouse,
    parquet: parquet.default(parquet.parse({})),
    validation: validation.default(validation.parse({})),
    lease: lease.default(lease.parse({})),
    log: log.default(log.parse({})),
  })
  .superRefine((cfg, ctx) => {
    const src = cfg.source;
    checkSourceConnection(src, ctx);
    if (!src.table === !src.query) {
      ctx.addIssue({
        code: 'custom',
        path: ['source'],
        message: 'give exactly one of source.table or source.query',
      });
    }
    if (src.columns && src.query) {
      ctx.addIssue({
        code: 'custom',
        path: ['source', 'columns'],
        message: 'source.columns applies to source.table only',
      });
    }
    if (cfg.warehouse.mode !== 'replace' && !src.cursor) {
      ctx.addIssue({
        code: 'custom',
        path: ['source', 'cursor'],
        message: `warehouse.mode ${cfg.warehouse.mode} needs an incremental cursor column`,
      });
    }
    if ((src.cursor || cfg.warehouse.mode === 'merge') && !src.key) {
      ctx.addIssue({
        code: 'custom',
        path: ['source', 'key'],
        message: 'needs the unique key column(s) that break cursor ties and identify rows for merge',
      });
    }
    if (cfg.warehouse.type === 'duckdb' && !cfg.warehouse.duckdb) {
      ctx.addIssue({
        code: 'custom',
        path: ['warehouse', 'duckdb', 'path'],
        message: 'warehouse.type duckdb needs warehouse.duckdb.path',
      });
    }
    if (cfg.warehouse.type === 'bigquery' && !cfg.stage.url.startsWith('gs://')) {
      ctx.addIssue({
        code: 'custom',
        path: ['stage', 'url'],
        message: 'warehouse.type bigquery loads from Cloud Storage: set stage.url to gs://bucket/prefix',
      });
    }
    if (cfg.warehouse.type === 'snowflake') checkSnowflake(cfg.warehouse.snowflake, ctx);
    if (cfg.warehouse.type === 'redshift') checkRedshift(cfg.warehouse.redshift, cfg.stage.url, ctx);
    checkStage(cfg.stage, ctx);
    if (src.max_rows_per_run && cfg.warehouse.mode === 'replace') {
      ctx.addIssue({
        code: 'custom',
        path: ['source', 'max_rows_per_run'],
        message: 'a replace load moves the whole table; drop max_rows_per_run',
      });
    }
  });

/** The source needs somewhere to connect to, and a URL it can read without guessing. */
function checkSourceConnection(src: z.infer<typeof source>, ctx: z.RefinementCtx): void {
  if (!src.url && !src.host) {
    ctx.addIssue({
      code: 'custom',
      path: ['source', 'url'],
      message: 'give source.url, or source.host (with source.user, source.password, source.database)',
    });
  }
  if (!src.url) return;
  try {
    parsePgUrl(src.url);
  } catch (err) {
    if (!(err instanceof PgUrlError)) throw err;
    ctx.addIssue({ code: 'custom', path: ['source', 'url'], message: err.message });
  }
}

/** Cross-field rules of `stage`: each block goes with its URL scheme, and options that need a partner. */
function checkStage(st: z.infer<typeof stage>, ctx: z.RefinementCtx): void {
  const at = (path: string[], message: string) =>
    ctx.addIssue({ code: 'custom', path: ['stage', ...path], message });
  if (st.s3 && !st.url.startsWith('s3://')) at(['s3'], 'stage.s3 applies to an s3:// stage.url');
  if (st.gcs && !st.url.startsWith('gs://')) at(['gcs'], 'stage.gcs applies to a gs:// stage.url');
  const s3 = st.s3;
  if (s3?.kms_key_id && !s3.server_side_encryption?.startsWith('aws:kms')) {
    at(['s3', 'server_side_encryption'], 'kms_key_id needs server_side_encryption aws:kms or aws:kms:dsse');
  }
  if (!s3?.object_lock_mode !== !s3?.object_lock_retention) {
    at(['s3', 'object_lock_retention'], 'give object_lock_mode and object_lock_retention together');
  }
}

/** Cross-field rules of `warehouse.snowflake`. */
function checkSnowflake(sf: z.infer<typeof snowflake> | undefined, ctx: z.RefinementCtx): void {
  const at = (key: string, message: string) =>
    ctx.addIssue({ code: 'custom', path: ['warehouse', 'snowflake', key], message });
  if (!sf) {
    ctx.addIssue({
      code: 'custom',
      path: ['warehouse', 'snowflake'],
      message:
        'warehouse.type snowflake needs warehouse.snowflake (account, warehouse, database, stage, ...)',
    });
    return;
  }
  if (sf.authenticator === 'SNOWFLAKE_JWT') {
    if (!sf.user) at('user', 'SNOWFLAKE_JWT needs the login name of the user');
    if (!sf.private_key_path) at('private_key_path', 'SNOWFLAKE_JWT needs the mounted private key file');
  } else if (!sf.workload_identity_provider) {
    at('workload_identity_provider', 'WORKLOAD_IDENTITY needs the provider: AWS, GCP, AZURE or OIDC');
  } else if (sf.workload_identity_provider === 'OIDC' && !sf.token_path) {
    at('token_path', 'workload_identity_provider OIDC needs the token file');
  }
}

/** Cross-field rules of `warehouse.redshift`. */
function checkRedshift(
  rs: z.infer<typeof redshift> | undefined,
  stageUrl: string,
  ctx: z.RefinementCtx,
): void {
  const at = (path: string[], message: string) => ctx.addIssue({ code: 'custom', path, message });
  if (!stageUrl.startsWith('s3://')) {
    at(['stage', 'url'], 'warehouse.type redshift loads from Amazon S3: set stage.url to s3://bucket/prefix');
  }
  if (!rs) {
    at(
      ['warehouse', 'redshift'],
      'warehouse.type redshift needs warehouse.redshift (workgroup or cluster, database, iam_role)',
    );
    return;
  }
  if (!rs.workgroup === !rs.cluster) {
    at(
      ['warehouse', 'redshift'],
      'give exactly one of warehouse.redshift.workgroup (Serverless) or cluster (provisioned)',
    );
  }
  if (rs.db_user && (!rs.cluster || rs.secret_arn)) {
    at(['warehouse', 'redshift', 'db_user'], 'db_user applies to a cluster with IAM authentication; drop it');
  }
}

/** The validated, typed configuration. */
export type Config = z.infer<typeof configSchema>;
export type SourceConfig = Config['source'];
export type StageConfig = Config['stage'];
export type S3StageConfig = NonNullable<StageConfig['s3']>;
export type GcsStageConfig = NonNullable<StageConfig['gcs']>;
export type WarehouseConfig = Config['warehouse'];
export type SnowflakeConfig = NonNullable<WarehouseConfig['snowflake']>;
export type RedshiftConfig = NonNullable<WarehouseConfig['redshift']>;
export type ParquetConfig = Config['parquet'];

/** Keys whose values are secrets wherever they appear. */
export const SECRET_KEYS: readonly string[] = [
  'source.url',
  'source.password',
  'warehouse.snowflake.private_key_passphrase',
];
