/**
 * The least-privilege access the Redshift warehouse needs for one job, as `nightshift iam` prints
 * it: the roles and grants docs/warehouse-redshift.md lists, filled in with the job's own names. A pure function of
 * the parsed options, so the command needs no login.
 */
import type { AccessNeeds } from '../../identity/principal.js';
import type { LoadMode } from '../warehouse.js';

const bucketOf = (stageUrl: string) => new URL(stageUrl).host;

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
