/**
 * What `nightshift iam` prints for the cloud warehouses: the roles and grants of docs/warehouse-*.md,
 * filled in with the job's own names. The warehouses are built as the adapters build them; no
 * request leaves the process (describing access needs no login).
 */

import { RedshiftData } from '@aws-sdk/client-redshift-data';
import { BigQuery } from '@google-cloud/bigquery';
import { describe, expect, it } from 'vitest';
import { LocalStore } from '../src/store/local/index.js';
import { BigQueryWarehouse } from '../src/warehouse/bigquery/index.js';
import { RedshiftWarehouse } from '../src/warehouse/redshift/index.js';
import { SnowflakeWarehouse } from '../src/warehouse/snowflake/index.js';

describe('access the cloud warehouses need', () => {
  it('BigQuery: jobUser on the project, dataEditor on the target and staging datasets, objectViewer on the stage bucket', () => {
    const wh = new BigQueryWarehouse(new BigQuery({ projectId: 'acme-data' }), {
      project: 'acme-data',
      stagingDataset: 'nightshift_staging',
      createTable: true,
      partitionType: 'DAY',
      maximumBytesBilled: 1e9,
      timeoutMs: 60_000,
      jobIdPrefix: 'nightshift',
      stageUrl: 'gs://acme-nightshift/stage',
    });
    const access = wh.accessNeeded('analytics.trips', 'merge');
    expect(access.target).toBe('BigQuery table acme-data.analytics.trips (merge)');
    expect(access.grants.map((g) => `${g.permission} @ ${g.on}`)).toEqual([
      'roles/bigquery.jobUser @ project acme-data',
      'roles/bigquery.dataEditor @ dataset acme-data:analytics',
      'roles/bigquery.dataEditor @ dataset acme-data:nightshift_staging',
      'roles/storage.objectViewer @ gs://acme-nightshift',
    ]);
    const shell = access.documents?.[0]?.text ?? '';
    expect(shell).toContain('gcloud projects add-iam-policy-binding acme-data');
    expect(shell).toContain('--role roles/bigquery.dataEditor acme-data:analytics');
    expect(shell).toContain('gcloud storage buckets add-iam-policy-binding gs://acme-nightshift');
    // A fully qualified table in another project names that project's dataset.
    expect(wh.accessNeeded('other-proj.raw.t', 'append').grants[1]?.on).toBe('dataset other-proj:raw');
  });

  it('Snowflake: the loader role grants, with the stage and table resolved against database and schema', () => {
    const wh = new SnowflakeWarehouse({
      account: 'acme-analytics',
      user: 'NIGHTSHIFT_SVC',
      role: 'NIGHTSHIFT_LOADER',
      warehouse: 'LOAD_WH',
      database: 'ANALYTICS',
      schema: 'RAW',
      stage: 'RAW.NIGHTSHIFT_STAGE',
      authenticator: 'SNOWFLAKE_JWT',
      private_key_path: '/nonexistent/key.p8',
      lock_timeout: 600_000,
      statement_timeout: 7_200_000,
      job: 'trips',
    } as ConstructorParameters<typeof SnowflakeWarehouse>[0]);
    const access = wh.accessNeeded('trips', 'append');
    expect(access.principal).toBe('role NIGHTSHIFT_LOADER of user NIGHTSHIFT_SVC');
    const sql = access.documents?.[0]?.text ?? '';
    expect(sql).toContain('GRANT USAGE ON WAREHOUSE LOAD_WH TO ROLE NIGHTSHIFT_LOADER;');
    expect(sql).toContain('GRANT USAGE, CREATE TABLE ON SCHEMA ANALYTICS.RAW TO ROLE NIGHTSHIFT_LOADER;');
    expect(sql).toContain('GRANT USAGE ON STAGE ANALYTICS.RAW.NIGHTSHIFT_STAGE TO ROLE NIGHTSHIFT_LOADER;');
    expect(sql).toContain(
      'GRANT SELECT, INSERT, DELETE ON TABLE ANALYTICS.RAW.TRIPS TO ROLE NIGHTSHIFT_LOADER;',
    );
    expect(sql).not.toMatch(/OWNERSHIP|ALL PRIVILEGES|ACCOUNTADMIN/);
  });

  it('Redshift: the runner IAM policy for a workgroup or a cluster, and the database grants', () => {
    const client = new RedshiftData({ region: 'eu-west-1' });
    const store = new LocalStore('file:///tmp/unused');
    const options = {
      database: 'dev',
      schema: 'raw',
      iamRole: 'arn:aws:iam::123456789012:role/redshift-copy',
      region: 'eu-west-1',
      statementTimeoutMs: 60_000,
    };
    const serverless = new RedshiftWarehouse(client, { ...options, workgroup: 'analytics' }, store);
    const access = serverless.accessNeeded('raw.trips', 'append');
    const policy = JSON.parse(access.documents?.[0]?.text ?? '{}');
    const actions = policy.Statement.flatMap((s: { Action: string[] }) => s.Action).sort();
    expect(actions).toEqual([
      'redshift-data:BatchExecuteStatement',
      'redshift-data:CancelStatement',
      'redshift-data:DescribeStatement',
      'redshift-data:ExecuteStatement',
      'redshift-data:GetStatementResult',
      'redshift-serverless:GetCredentials',
    ]);
    expect(policy.Statement[0].Resource).toMatch(/^arn:aws:redshift-serverless:eu-west-1:/);
    expect(access.documents?.[1]?.text).toContain(
      'GRANT USAGE, CREATE ON SCHEMA raw TO "IAMR:<pod role name>";',
    );

    const cluster = new RedshiftWarehouse(client, { ...options, cluster: 'prod', dbUser: 'loader' }, store);
    const c = JSON.parse(cluster.accessNeeded('trips', 'merge').documents?.[0]?.text ?? '{}');
    expect(c.Statement[2]).toEqual({
      Effect: 'Allow',
      Action: ['redshift:GetClusterCredentials'],
      Resource: 'arn:aws:redshift:eu-west-1:<account-id>:dbuser:prod/loader',
    });
    const secret = new RedshiftWarehouse(
      client,
      { ...options, workgroup: 'analytics', secretArn: 'arn:aws:secretsmanager:eu-west-1:1:secret:rs' },
      store,
    );
    const s = JSON.parse(secret.accessNeeded('trips', 'merge').documents?.[0]?.text ?? '{}');
    expect(s.Statement[2].Action).toEqual(['secretsmanager:GetSecretValue']);
  });
});
