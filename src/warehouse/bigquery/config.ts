/**
 * The settings of the BigQuery warehouse (`warehouse.bigquery`), beside the backend that reads
 * them; config/schema.ts composes them into the configuration.
 */
import { z } from 'zod';
import { duration } from '../../config/fields.js';

export const bigquerySchema = z
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
export const bigQueryDefaults = () => bigquerySchema.parse({});
