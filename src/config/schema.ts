/**
 * The configuration schema: every key, its type, its default and its documentation. It is the
 * single source for validation, for the environment overrides (`NIGHTSHIFT_<PATH>`), and for the
 * configuration reference in docs/configuration.md (a test checks that every key is documented there).
 */
import { z } from 'zod';
import { gcsStageSchema } from '../store/gcs/config.js';
import { s3StageSchema } from '../store/s3/config.js';
import { bigquerySchema } from '../warehouse/bigquery/config.js';
import { duckdbSchema } from '../warehouse/duckdb/config.js';
import { checkRedshift, redshiftSchema } from '../warehouse/redshift/config.js';
import { checkSnowflake, snowflakeSchema } from '../warehouse/snowflake/config.js';
import { duration, jobName } from './fields.js';
import { checkSourceConnection, sourceSchema } from './source.js';

export { gcsStageDefaults } from '../store/gcs/config.js';
export { s3StageDefaults } from '../store/s3/config.js';
export { bigQueryDefaults } from '../warehouse/bigquery/config.js';
export { DURATION_RE, parseDuration } from './fields.js';

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
    s3: s3StageSchema.optional(),
    gcs: gcsStageSchema.optional(),
  })
  .describe('Object storage for data files, run manifests, the checkpoint and the lease.');

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
    duckdb: duckdbSchema.optional(),
    snowflake: snowflakeSchema.optional(),
    bigquery: bigquerySchema.optional(),
    redshift: redshiftSchema.optional(),
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
    source: sourceSchema,
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
