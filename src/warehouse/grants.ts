/**
 * The least-privilege access each cloud warehouse needs for one job, as `nightshift iam` prints
 * it: the same roles and grants docs/warehouse-*.md list, filled in with the job's own project, dataset,
 * schema, stage and table. Pure functions of the parsed options, so the command needs no login.
 */
import type { AccessNeeds } from '../identity/principal.js';
import type { LoadMode } from './warehouse.js';

/** `dataset.table` or `project.dataset.table` (backticks allowed) -> its parts. */
function bigQueryTable(table: string, project: string): { project: string; dataset: string; name: string } {
  const parts = table.replaceAll('`', '').split('.');
  const [p, dataset, name] = parts.length >= 3 ? parts : [project, parts[0], parts[1] ?? ''];
  return { project: p ?? project, dataset: dataset ?? '', name: name ?? '' };
}

const bucketOf = (stageUrl: string) => new URL(stageUrl).host;

export function bigQueryAccess(options: {
  project: string;
  stagingDataset?: string;
  stageUrl: string;
  table: string;
  mode: LoadMode;
}): AccessNeeds {
  const t = bigQueryTable(options.table, options.project);
  const datasets = [`${t.project}:${t.dataset}`];
  if (options.stagingDataset && options.stagingDataset !== t.dataset)
    datasets.push(`${options.project}:${options.stagingDataset}`);
  const bucket = options.stageUrl.startsWith('gs://')
    ? `gs://${bucketOf(options.stageUrl)}`
    : 'the stage bucket';
  const member = 'serviceAccount:SERVICE_ACCOUNT_EMAIL';
  return {
    part: 'warehouse',
    target: `BigQuery table ${t.project}.${t.dataset}.${t.name} (${options.mode})`,
    principal: 'the Google service account of the pod (see `nightshift whoami`)',
    grants: [
      {
        permission: 'roles/bigquery.jobUser',
        on: `project ${options.project}`,
        why: 'creating load and query jobs',
      },
      ...datasets.map((d) => ({
        permission: 'roles/bigquery.dataEditor',
        on: `dataset ${d}`,
        why: 'creating, writing, patching and dropping the target and staging tables',
      })),
      {
        permission: 'roles/storage.objectViewer',
        on: bucket,
        why: "BigQuery reads the staged files with the caller's identity",
      },
    ],
    documents: [
      {
        title: 'grant them (replace SERVICE_ACCOUNT_EMAIL)',
        language: 'shell',
        text: [
          `gcloud projects add-iam-policy-binding ${options.project} --member ${member} --role roles/bigquery.jobUser`,
          ...datasets.map(
            (d) => `bq add-iam-policy-binding --member ${member} --role roles/bigquery.dataEditor ${d}`,
          ),
          `gcloud storage buckets add-iam-policy-binding ${bucket} --member ${member} --role roles/storage.objectViewer`,
        ].join('\n'),
      },
    ],
  };
}

export function snowflakeAccess(options: {
  role?: string;
  user?: string;
  warehouse?: string;
  table: { database: string; schema: string; name: string };
  stage: { database: string; schema: string; name: string };
  mode: LoadMode;
}): AccessNeeds {
  const role = options.role ?? 'NIGHTSHIFT_LOADER';
  const { database, schema, name } = options.table;
  const stage = `${options.stage.database}.${options.stage.schema}.${options.stage.name}`;
  const warehouse = options.warehouse ?? '<the user default warehouse>';
  return {
    part: 'warehouse',
    target: `Snowflake table ${database}.${schema}.${name} (${options.mode})`,
    principal: `role ${role}${options.user ? ` of user ${options.user}` : ''}`,
    grants: [
      { permission: 'USAGE', on: `warehouse ${warehouse}`, why: 'running the COPY and the transaction' },
      { permission: 'USAGE', on: `database ${database}`, why: 'resolving the table' },
      {
        permission: 'USAGE, CREATE TABLE',
        on: `schema ${database}.${schema}`,
        why: 'the target table when missing, and the temporary staging table',
      },
      { permission: 'USAGE', on: `stage ${stage}`, why: 'COPY INTO reads the run files through it' },
      {
        permission: 'SELECT, INSERT, DELETE',
        on: `table ${database}.${schema}.${name}`,
        why: 'only when someone else created the table (its owner has them)',
      },
    ],
    documents: [
      {
        title: 'grants',
        language: 'sql',
        text: [
          `GRANT USAGE ON WAREHOUSE ${warehouse} TO ROLE ${role};`,
          `GRANT USAGE ON DATABASE ${database} TO ROLE ${role};`,
          `GRANT USAGE, CREATE TABLE ON SCHEMA ${database}.${schema} TO ROLE ${role};`,
          `GRANT USAGE ON STAGE ${stage} TO ROLE ${role};`,
          '-- only for a target table created by someone else:',
          `GRANT SELECT, INSERT, DELETE ON TABLE ${database}.${schema}.${name} TO ROLE ${role};`,
          `GRANT ROLE ${role} TO USER ${options.user ?? '<the service user>'};`,
        ].join('\n'),
      },
    ],
  };
}

export function redshiftAccess(options: {
  workgroup?: string;
  cluster?: string;
  database: string;
  schema: string;
  region?: string;
  iamRole: string;
  secretArn?: string;
  dbUser?: string;
  stageUrl: string;
  table: string;
  mode: LoadMode;
}): AccessNeeds {
  const region = options.region ?? '<region>';
  const [schema, name] = options.table.includes('.')
    ? options.table.split('.', 2)
    : [options.schema, options.table];
  const user = options.dbUser ?? (options.secretArn ? 'the user of the secret' : '"IAMR:<pod role name>"');
  const target = options.workgroup
    ? `arn:aws:redshift-serverless:${region}:<account-id>:workgroup/<${options.workgroup} workgroup id>`
    : `arn:aws:redshift:${region}:<account-id>:cluster:${options.cluster}`;
  const credentials = options.secretArn
    ? { action: 'secretsmanager:GetSecretValue', on: options.secretArn }
    : options.workgroup
      ? { action: 'redshift-serverless:GetCredentials', on: target }
      : options.dbUser
        ? {
            action: 'redshift:GetClusterCredentials',
            on: `arn:aws:redshift:${region}:<account-id>:dbuser:${options.cluster}/${options.dbUser}`,
          }
        : { action: 'redshift:GetClusterCredentialsWithIAM', on: target };
  const policy = {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Action: ['redshift-data:ExecuteStatement', 'redshift-data:BatchExecuteStatement'],
        Resource: target,
      },
      {
        Effect: 'Allow',
        Action: [
          'redshift-data:DescribeStatement',
          'redshift-data:GetStatementResult',
          'redshift-data:CancelStatement',
        ],
        Resource: '*',
      },
      { Effect: 'Allow', Action: [credentials.action], Resource: credentials.on },
    ],
  };
  const bucket = options.stageUrl.startsWith('s3://') ? bucketOf(options.stageUrl) : '<stage bucket>';
  return {
    part: 'warehouse',
    target: `Redshift ${options.workgroup ? `workgroup ${options.workgroup}` : `cluster ${options.cluster}`}, table ${options.database}.${schema}.${name} (${options.mode})`,
    principal: `the pod's IAM role; in the database ${user}`,
    grants: [
      {
        permission: 'redshift-data:ExecuteStatement, BatchExecuteStatement',
        on: target,
        why: 'submitting the load',
      },
      {
        permission: 'redshift-data:DescribeStatement, GetStatementResult, CancelStatement',
        on: '*',
        why: 'polling, reading the count, cancelling on SIGTERM',
      },
      { permission: credentials.action, on: credentials.on, why: 'the temporary database credentials' },
      { permission: 'USAGE, CREATE', on: `schema ${schema}`, why: 'the target table when missing' },
      {
        permission: 'TEMP',
        on: `database ${options.database}`,
        why: "the staging table (PUBLIC's by default)",
      },
      {
        permission: 'SELECT, INSERT, DELETE',
        on: `table ${schema}.${name}`,
        why: 'only when someone else created the table',
      },
      {
        permission: 's3:GetObject, s3:ListBucket',
        on: `bucket ${bucket}, for the COPY role ${options.iamRole}`,
        why: 'Redshift reads the run files with that role',
      },
    ],
    documents: [
      { title: "the runner's IAM policy", language: 'json', text: JSON.stringify(policy, null, 2) },
      {
        title: 'database grants',
        language: 'sql',
        text: [
          `GRANT USAGE, CREATE ON SCHEMA ${schema} TO ${user};`,
          '-- TEMP is PUBLIC by default; only if it was revoked:',
          `GRANT TEMP ON DATABASE ${options.database} TO ${user};`,
          '-- only for a target table created by someone else:',
          `GRANT SELECT, INSERT, DELETE ON ${schema}.${name} TO ${user};`,
        ].join('\n'),
      },
    ],
  };
}
