/**
 * The least-privilege access the Snowflake warehouse needs for one job, as `nightshift iam` prints
 * it: the roles and grants docs/warehouse-snowflake.md lists, filled in with the job's own names. A pure function of
 * the parsed options, so the command needs no login.
 */
import type { AccessNeeds } from '../../identity/principal.js';
import type { LoadMode } from '../warehouse.js';

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
