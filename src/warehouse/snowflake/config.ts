/**
 * The settings of the Snowflake warehouse (`warehouse.snowflake`) and their cross-field rules,
 * beside the backend that reads them; config/schema.ts composes them into the configuration.
 */
import { z } from 'zod';
import { duration } from '../../config/fields.js';

export const snowflakeSchema = z
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

/** Cross-field rules of `warehouse.snowflake`. */
export function checkSnowflake(sf: z.infer<typeof snowflakeSchema> | undefined, ctx: z.RefinementCtx): void {
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
