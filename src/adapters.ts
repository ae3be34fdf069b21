/**
 * The one place that switches on backend kinds: stage URL -> ObjectStore, warehouse.type ->
 * Warehouse. Adapters get parsed config through their constructors; heavy SDKs are imported
 * only when their backend is chosen.
 */
import { cloudEnvironment, quietAwsSdk } from './config/cloud.js';
import { bigQueryDefaults, type Config, gcsStageDefaults, s3StageDefaults } from './config/schema.js';
import { configError } from './errors.js';
import { LocalStore } from './store/local.js';
import type { ObjectStore } from './store/store.js';
import type { Warehouse } from './warehouse/warehouse.js';

/** The object store for `stage.url`. */
export async function createStore(config: Config): Promise<ObjectStore> {
  const url = config.stage.url;
  const scheme = url.slice(0, url.indexOf(':'));
  switch (scheme) {
    case 'file':
      return new LocalStore(url);
    case 's3': {
      quietAwsSdk();
      const { S3Store } = await import('./store/s3.js');
      return new S3Store({
        url,
        settings: config.stage.s3 ?? s3StageDefaults(),
        env: cloudEnvironment().aws,
      });
    }
    case 'gs': {
      const { GcsStore } = await import('./store/gcs.js');
      return new GcsStore({
        url,
        settings: config.stage.gcs ?? gcsStageDefaults(),
        env: cloudEnvironment().gcp,
      });
    }
    default:
      throw configError(`stage.url: unsupported scheme in ${url}`, {
        hint: 'set NIGHTSHIFT_STAGE_URL to file:///absolute/path, s3://bucket/prefix or gs://bucket/prefix',
      });
  }
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

/** The warehouse for `warehouse.type`. */
export async function createWarehouse(config: Config, store: ObjectStore): Promise<Warehouse> {
  const wh = config.warehouse;
  switch (wh.type) {
    case 'duckdb': {
      if (!wh.duckdb) throw configError('warehouse.duckdb.path is required for warehouse.type duckdb');
      const { DuckDbWarehouse } = await import('./warehouse/duckdb.js');
      return new DuckDbWarehouse(
        {
          path: wh.duckdb.path,
          memoryLimitMb: wh.duckdb.memory_limit_mb,
          threads: wh.duckdb.threads,
          storageVersion: wh.duckdb.storage_version,
          tempDir: config.temp_dir,
        },
        store,
      );
    }
    case 'bigquery': {
      const bq = wh.bigquery ?? bigQueryDefaults();
      const { BigQuery } = await import('@google-cloud/bigquery');
      // Application Default Credentials: Workload Identity on GKE, no keys.
      const client = new BigQuery({
        ...(bq.project ? { projectId: bq.project } : {}),
        ...(bq.location ? { location: bq.location } : {}),
        ...(bq.api_endpoint ? { apiEndpoint: bq.api_endpoint } : {}),
      });
      const { BigQueryWarehouse } = await import('./warehouse/bigquery.js');
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
    case 'snowflake': {
      if (!wh.snowflake) throw configError('warehouse.type snowflake needs warehouse.snowflake');
      const { SnowflakeWarehouse } = await import('./warehouse/snowflake.js');
      return new SnowflakeWarehouse({ ...wh.snowflake, job: config.job });
    }
    case 'redshift': {
      const rs = wh.redshift;
      if (!rs) throw configError('warehouse.type redshift needs warehouse.redshift');
      quietAwsSdk();
      const { RedshiftData } = await import('@aws-sdk/client-redshift-data');
      // The default credential chain: IRSA or EKS Pod Identity in a pod, no static keys.
      const client = new RedshiftData({
        ...(rs.region ? { region: rs.region } : {}),
        ...(rs.endpoint ? { endpoint: rs.endpoint } : {}),
      });
      const { RedshiftWarehouse } = await import('./warehouse/redshift.js');
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
    default:
      throw configError(`warehouse.type ${wh.type} is not available in this build`, {
        hint: 'use warehouse.type: duckdb',
      });
  }
}
