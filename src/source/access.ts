/**
 * What the PostgreSQL source needs and whether it has it: the grants `nightshift iam` prints, and
 * the source check of `nightshift check` (reachable, SELECT on the table, the cursor and key
 * columns present), which reads no rows.
 */
import type { SourceConfig } from '../config/schema.js';
import { configError, identityError, NightshiftError, toNightshiftError } from '../errors.js';
import type { AccessNeeds } from '../identity/principal.js';
import { describeSource } from './connection.js';
import { connect, openSnapshot } from './postgres.js';
import { quoteIdent } from './types.js';

function tableParts(table: string): { schema: string; name: string } {
  const parts = table.split('.');
  return parts.length === 2 ? { schema: parts[0], name: parts[1] } : { schema: 'public', name: parts[0] };
}

/** The least-privilege grants for the source: CONNECT, USAGE on the schema, SELECT on the table. */
export function sourceAccess(config: SourceConfig): AccessNeeds {
  const { user, host, database } = describeSource(config);
  const role = quoteIdent(user);
  const grants = [{ permission: 'CONNECT', on: `database ${database}`, why: 'open the export session' }];
  const sql = [`GRANT CONNECT ON DATABASE ${quoteIdent(database)} TO ${role};`];
  if (config.table) {
    const { schema, name } = tableParts(config.table);
    const qualified = `${quoteIdent(schema)}.${quoteIdent(name)}`;
    grants.push(
      { permission: 'USAGE', on: `schema ${schema}`, why: 'resolve the table' },
      {
        permission: config.columns ? `SELECT (${config.columns.join(', ')})` : 'SELECT',
        on: `table ${schema}.${name}`,
        why: 'count and COPY the window; read-only, REPEATABLE READ',
      },
    );
    sql.push(
      `GRANT USAGE ON SCHEMA ${quoteIdent(schema)} TO ${role};`,
      config.columns
        ? `GRANT SELECT (${config.columns.map(quoteIdent).join(', ')}) ON ${qualified} TO ${role};`
        : `GRANT SELECT ON ${qualified} TO ${role};`,
    );
  } else {
    grants.push({
      permission: 'SELECT',
      on: 'every table source.query reads (and USAGE on their schemas)',
      why: 'run the query; nightshift cannot tell which tables it reads',
    });
    sql.push('-- and GRANT USAGE / SELECT on each schema and table that source.query reads');
  }
  sql.push(
    `-- nothing else: no INSERT, UPDATE, DELETE, DDL, or superuser. A read-only role helps:`,
    `ALTER ROLE ${role} SET default_transaction_read_only = on;`,
  );
  return {
    part: 'source',
    target: `PostgreSQL database ${database} on ${host}`,
    principal: `role ${user}`,
    grants,
    documents: [{ title: 'as the table owner or an admin', language: 'sql', text: sql.join('\n') }],
  };
}

/**
 * Connects, checks the privileges, selects the configured columns with LIMIT 0 and checks the
 * cursor and key columns. Returns a one-line description; throws a NightshiftError with the fix.
 */
export async function checkSource(config: SourceConfig): Promise<string> {
  const { user, host, database } = describeSource(config);
  if (config.table) await checkTablePrivilege(config, user);
  let snapshot: Awaited<ReturnType<typeof openSnapshot>> | undefined;
  try {
    snapshot = await openSnapshot(config);
    const columns = await snapshot.describeSource();
    await snapshot.cursorInfo(columns);
    const what = config.table ? `SELECT on ${config.table}` : 'source.query runs';
    const keys = [config.cursor, ...(config.key ?? [])].filter(Boolean).join(', ');
    return `${user}@${host}/${database}: ${what}, ${columns.length} columns${keys ? `, cursor and key (${keys}) present` : ''}`;
  } catch (err) {
    throw withGrantHint(toNightshiftError(err), config);
  } finally {
    await snapshot?.close();
  }
}

async function checkTablePrivilege(config: SourceConfig, user: string): Promise<void> {
  const client = await connect(config, 'check');
  try {
    const table = config.table as string;
    const { schema } = tableParts(table);
    // Schema USAGE first: without it even looking the table up is refused.
    const usage = await client.query<{ usage: boolean | null }>(
      "SELECT has_schema_privilege(oid, 'USAGE') AS usage FROM pg_namespace WHERE nspname = $1",
      [schema],
    );
    if (usage.rows[0]?.usage === false) {
      throw identityError(`role ${user} has no USAGE on schema ${schema}`, {
        hint: `GRANT USAGE ON SCHEMA ${quoteIdent(schema)} TO ${quoteIdent(user)}; (nightshift iam prints every grant)`,
      });
    }
    const r = await client.query<{ oid: string | null }>('SELECT to_regclass($1)::oid::text AS oid', [table]);
    const row = r.rows[0];
    if (!row.oid) {
      throw configError(`source.table: ${table} does not exist (or ${user} cannot see it)`, {
        hint: 'check the name and schema (schema.table), or grant USAGE on the schema',
      });
    }
    const select = await client.query<{ ok: boolean }>(
      `SELECT has_table_privilege($1::oid, 'SELECT') OR coalesce(bool_and(has_column_privilege($1::oid, a.attnum, 'SELECT')), false) AS ok
       FROM pg_attribute a WHERE a.attrelid = $1::oid AND a.attnum > 0 AND NOT a.attisdropped
         AND ($2::text[] IS NULL OR a.attname = ANY($2::text[]))`,
      [row.oid, config.columns ?? null],
    );
    if (!select.rows[0]?.ok) {
      throw identityError(`role ${user} has no SELECT privilege on ${table}`, {
        hint: `GRANT SELECT ON ${table.split('.').map(quoteIdent).join('.')} TO ${quoteIdent(user)}; (nightshift iam prints every grant)`,
      });
    }
  } finally {
    await client.end().catch(() => undefined);
  }
}

function withGrantHint(e: NightshiftError, config: SourceConfig): NightshiftError {
  if (e.code === 'identity' && !e.hint) {
    const { user } = describeSource(config);
    return new NightshiftError('identity', e.message, {
      cause: e.cause ?? e,
      hint: `check the password and pg_hba.conf for ${user}, and the grants nightshift iam prints`,
    });
  }
  return e;
}

/** The size of the source table on disk (heap, TOAST, indexes excluded), or undefined for a query. */
export async function sourceTableBytes(config: SourceConfig): Promise<number | undefined> {
  if (!config.table) return undefined;
  const client = await connect(config, 'check');
  try {
    const r = await client.query<{ bytes: string | null }>(
      'SELECT pg_table_size(to_regclass($1))::text AS bytes',
      [config.table],
    );
    return r.rows[0]?.bytes == null ? undefined : Number(r.rows[0].bytes);
  } finally {
    await client.end().catch(() => undefined);
  }
}
