/**
 * The settings of the Redshift warehouse (`warehouse.redshift`) and their cross-field rules,
 * beside the backend that reads them; config/schema.ts composes them into the configuration.
 */
import { z } from 'zod';
import { duration } from '../../config/fields.js';

/** An IAM role ARN, or a comma-separated chain of them. */
const IAM_ROLE_RE =
  /^arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]+(,arn:aws[a-z-]*:iam::\d{12}:role\/[\w+=,.@/-]+)*$/;

export const redshiftSchema = z
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

/** Cross-field rules of `warehouse.redshift`. */
export function checkRedshift(
  rs: z.infer<typeof redshiftSchema> | undefined,
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
