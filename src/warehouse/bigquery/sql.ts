/**
 * What the BigQuery warehouse sends, built from plain data so that it can be read and tested on
 * its own: table references, job ids, the load configuration, the partition a window fills, and
 * the scripts that replace a window or merge keys in one transaction. Identifiers are quoted;
 * values (window bounds, row counts) are always query parameters.
 */
import { createHash } from 'node:crypto';
import { type Window, windowPredicate } from '../../core/window.js';
import { configError } from '../../errors.js';
import type { ColumnSpec } from '../../parquet/schema.js';
import type { LoadRequest } from '../warehouse.js';

/** A table as the REST API names it. */
export interface TableRef {
  readonly projectId: string;
  readonly datasetId: string;
  readonly tableId: string;
}

/** One column of a BigQuery table schema (REST `TableFieldSchema`). */
export interface FieldSchema {
  name: string;
  type: string;
  mode?: string;
  fields?: FieldSchema[];
}

/** Partitioning and clustering of a table, as tables.get returns and load jobs accept them. */
export interface TableLayout {
  timePartitioning?: {
    type: string;
    field?: string;
    expirationMs?: string;
    requirePartitionFilter?: boolean;
  };
  rangePartitioning?: Record<string, unknown>;
  clustering?: { fields: string[] };
}

/** A named query parameter (REST `QueryParameter`). */
export interface QueryParameter {
  name: string;
  parameterType: { type: string };
  parameterValue: { value: string };
}

/** Quotes an identifier or path element: `name`, with backslash and backtick escaped. */
export const quote = (name: string) => `\`${name.replaceAll('\\', '\\\\').replaceAll('`', '\\`')}\``;

/** The table's full, quoted name. */
export const tableSql = (t: TableRef) => `${quote(t.projectId)}.${quote(t.datasetId)}.${quote(t.tableId)}`;

/** `project:dataset.table`, the form BigQuery's own messages use. */
export const tableText = (t: TableRef) => `${t.projectId}:${t.datasetId}.${t.tableId}`;

const DATASET_RE = /^[A-Za-z0-9_]{1,1024}$/;

/** Parses `dataset.table` or `project.dataset.table`; the project defaults to `project`. */
export function parseTable(table: string, project: string): TableRef {
  const parts = table.split('.');
  if (parts.length === 3 && parts[0])
    return checkTable({ projectId: parts[0], datasetId: parts[1], tableId: parts[2] }, table);
  if (parts.length === 2)
    return checkTable({ projectId: project, datasetId: parts[0], tableId: parts[1] }, table);
  throw configError(`warehouse.table: "${table}" is not a BigQuery table`, {
    hint: 'use dataset.table or project.dataset.table',
  });
}

function checkTable(ref: TableRef, text: string): TableRef {
  if (!DATASET_RE.test(ref.datasetId) || !ref.tableId || /[$`]/.test(ref.tableId)) {
    throw configError(`warehouse.table: "${text}" is not a BigQuery table`, {
      hint: 'the dataset takes letters, digits and "_"; the table no "$" (partition decorators are chosen by nightshift)',
    });
  }
  return ref;
}

/**
 * A digest of what a load is: the job, target, mode, window, keys and the files' contents (not
 * their URLs, which change per run). A rerun of the same window with the same data gets the same
 * job ids, so it finds the jobs of an interrupted run instead of loading twice.
 */
export function loadDigest(request: LoadRequest, route: string): string {
  const h = createHash('sha256');
  h.update(
    JSON.stringify({
      job: request.job,
      table: request.table,
      mode: request.mode,
      route,
      window: request.window,
      key: request.key,
      files: request.files.map((f) => [f.sha256, f.rows]),
    }),
  );
  return h.digest('hex').slice(0, 32);
}

/** Job ids allow letters, digits, `_` and `-`. */
export const slug = (text: string) => text.replace(/[^A-Za-z0-9_-]/g, '_');

/** Labels allow lowercase letters, digits, `_` and `-`, at most 63 characters. */
export const labelValue = (text: string) =>
  text
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, '_')
    .slice(0, 63);

/** The Parquet load options every load uses. */
export function loadConfiguration(args: {
  uris: readonly string[];
  destination: TableRef;
  create: boolean;
  layout?: TableLayout;
}): Record<string, unknown> {
  return {
    sourceUris: [...args.uris],
    sourceFormat: 'PARQUET',
    destinationTable: { ...args.destination },
    // Every load replaces its destination (a staging table, one partition, or the whole table),
    // so a retried load never appends twice.
    writeDisposition: 'WRITE_TRUNCATE',
    createDisposition: args.create ? 'CREATE_IF_NEEDED' : 'CREATE_NEVER',
    // BigQuery picks the first of these that holds the column's precision and scale, so
    // DECIMAL(38,20) becomes BIGNUMERIC and wider values stay exact as STRING; never rounded.
    decimalTargetTypes: ['NUMERIC', 'BIGNUMERIC', 'STRING'],
    parquetOptions: { enableListInference: true, enumAsString: true },
    maxBadRecords: 0,
    ...(args.layout ?? {}),
  };
}

/** Whether the files hold columns a load alone cannot type right: JSON lands as STRING. */
export const needsConversion = (columns: readonly ColumnSpec[]) =>
  columns.some((c) => c.logical.kind === 'json');

/**
 * The `YYYYMMDD` partition a window fills exactly, when the table is day-partitioned on the
 * window's only column and the window is [midnight, next midnight). Otherwise undefined.
 */
export function windowPartition(window: Window, layout: TableLayout | undefined): string | undefined {
  const tp = layout?.timePartitioning;
  if (tp?.type !== 'DAY' || !tp.field || window.columns.length !== 1) return undefined;
  if (tp.field !== window.columns[0] || !window.lower || !window.upper) return undefined;
  if (!window.lower.inclusive || window.upper.inclusive) return undefined;
  const lo = parseInstant(window.lower.values[0]);
  const hi = parseInstant(window.upper.values[0]);
  const day = 86_400_000;
  if (lo === undefined || hi === undefined || lo % day !== 0 || hi - lo !== day) return undefined;
  return new Date(lo).toISOString().slice(0, 10).replaceAll('-', '');
}

const INSTANT_RE =
  /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2}):(\d{2})(\.\d+)?)?(Z|[+-]\d{2}(?::?\d{2})?)?$/;

/** Milliseconds of a date or timestamp as PostgreSQL prints it; a value without a zone is read as UTC. */
export function parseInstant(text: string): number | undefined {
  const m = INSTANT_RE.exec(text);
  if (!m) return undefined;
  const [, y, mo, d, h = '0', mi = '0', s = '0', frac = '', zone = 'Z'] = m;
  // A fraction of a second is never a partition boundary.
  if (frac && Number(frac) !== 0) return undefined;
  const ms = Date.UTC(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
  const z = /^([+-])(\d{2}):?(\d{2})?$/.exec(zone);
  const offsetMinutes = z ? (z[1] === '-' ? -1 : 1) * (Number(z[2]) * 60 + Number(z[3] ?? 0)) : 0;
  return ms - offsetMinutes * 60_000;
}

/** Standard SQL type of a schema field (the REST API reports legacy names). */
export function sqlType(field: FieldSchema): string {
  const legacy: Record<string, string> = {
    INTEGER: 'INT64',
    FLOAT: 'FLOAT64',
    BOOLEAN: 'BOOL',
    DECIMAL: 'NUMERIC',
    BIGDECIMAL: 'BIGNUMERIC',
  };
  return legacy[field.type] ?? field.type;
}

/** The window predicate over a table, each bound a STRING parameter cast to the column's type. */
export function windowCondition(
  window: Window,
  fields: ReadonlyMap<string, FieldSchema>,
  table: string,
  alias = '',
): { sql: string; params: QueryParameter[] } {
  const params: QueryParameter[] = [];
  const sql = windowPredicate(window, {
    quote: (c) => `${alias}${quote(c)}`,
    param: (value, index) => {
      const column = window.columns[index];
      const field = fields.get(column);
      if (!field) {
        throw configError(`BigQuery table ${table} has no column ${column}, which the window is defined on`, {
          hint: 'load into a table created by nightshift, or add the column',
        });
      }
      const name = `w${params.length}`;
      params.push({ name, parameterType: { type: 'STRING' }, parameterValue: { value } });
      return castBound(`@${name}`, window.types[index] ?? '', sqlType(field));
    },
  });
  return { sql, params };
}

/** A PostgreSQL-printed bound as a value of the column's BigQuery type. */
function castBound(param: string, pgType: string, type: string): string {
  if (type === 'BYTES' && pgType === 'uuid') return `FROM_HEX(REPLACE(${param}, '-', ''))`;
  if (type === 'BYTES' && pgType === 'bytea') return `FROM_HEX(SUBSTR(${param}, 3))`;
  return type === 'STRING' ? param : `CAST(${param} AS ${type})`;
}

/** The expression that turns a staged column into the target column's type. */
function convert(name: string, staged: FieldSchema | undefined, target: FieldSchema | undefined): string {
  const col = `s.${quote(name)}`;
  if (target?.type !== 'JSON' || staged?.type !== 'STRING') return col;
  // JSON arrives from Parquet as STRING; parsed exactly: a number JSON cannot hold fails the load.
  if (staged.mode === 'REPEATED') {
    return `ARRAY(SELECT PARSE_JSON(e) FROM UNNEST(${col}) AS e WITH OFFSET AS o ORDER BY o)`;
  }
  return `PARSE_JSON(${col})`;
}

export interface ApplyArgs {
  mode: LoadRequest['mode'];
  target: TableRef;
  staging: TableRef;
  /** Staged columns, in file order. */
  staged: readonly FieldSchema[];
  targetFields: ReadonlyMap<string, FieldSchema>;
  window: Window;
  key: readonly string[];
  expectedRows: number;
}

/**
 * One multi-statement query: a transaction that removes what the load replaces (the window's
 * rows, the whole table, or the keys present), inserts the staged rows, and rolls back unless it
 * inserted exactly the expected count; then drops the staging table and returns the counts.
 */
export function applyScript(args: ApplyArgs): { sql: string; params: QueryParameter[] } {
  const target = tableSql(args.target);
  const staging = tableSql(args.staging);
  const names = args.staged.map((f) => f.name);
  const stagedBy = new Map(args.staged.map((f) => [f.name, f]));
  const missing = names.filter((n) => !args.targetFields.has(n));
  if (missing.length) {
    throw configError(`BigQuery table ${tableText(args.target)} has no column ${missing.join(', ')}`, {
      hint: 'add the columns to the table (ALTER TABLE ... ADD COLUMN) or load into a new table',
    });
  }
  const cols = names.map(quote).join(', ');
  const exprs = names.map((n) => convert(n, stagedBy.get(n), args.targetFields.get(n))).join(', ');
  const params: QueryParameter[] = [
    {
      name: 'expected_rows',
      parameterType: { type: 'INT64' },
      parameterValue: { value: String(args.expectedRows) },
    },
  ];
  const check = [
    'IF inserted != @expected_rows THEN',
    '  ROLLBACK TRANSACTION;',
    "  RAISE USING MESSAGE = FORMAT('nightshift: inserted %d rows but the files hold %d; rolled back', inserted, @expected_rows);",
    'END IF;',
  ];
  let body: string[];
  if (args.mode === 'merge') {
    body = mergeBody(args, target, staging, names, exprs, cols, stagedBy);
  } else {
    let where = 'TRUE';
    if (args.mode === 'append') {
      const cond = windowCondition(args.window, args.targetFields, tableText(args.target));
      where = cond.sql;
      params.push(...cond.params);
    }
    body = [
      `DELETE FROM ${target} WHERE ${where};`,
      'SET replaced = @@row_count;',
      `INSERT INTO ${target} (${cols}) SELECT ${exprs} FROM ${staging} AS s;`,
      'SET inserted = @@row_count;',
    ];
  }
  const sql = [
    'DECLARE replaced INT64 DEFAULT 0;',
    'DECLARE inserted INT64 DEFAULT 0;',
    'DECLARE rows_before INT64 DEFAULT 0;',
    'BEGIN TRANSACTION;',
    ...body,
    ...check,
    'COMMIT TRANSACTION;',
    `DROP TABLE IF EXISTS ${staging};`,
    'SELECT replaced AS rows_replaced, inserted AS rows_loaded;',
  ].join('\n');
  return { sql, params };
}

function mergeBody(
  args: ApplyArgs,
  target: string,
  staging: string,
  names: readonly string[],
  exprs: string,
  cols: string,
  stagedBy: ReadonlyMap<string, FieldSchema>,
): string[] {
  if (!args.key.length) throw configError('warehouse.mode merge needs source.key');
  for (const k of args.key) {
    if (!stagedBy.has(k)) throw configError(`merge key ${k} is not among the exported columns`);
  }
  const on = args.key.map((k) => `t.${quote(k)} = s.${quote(k)}`).join(' AND ');
  const keys = new Set(args.key);
  const set = names
    .filter((n) => !keys.has(n))
    .map((n) => `${quote(n)} = ${convert(n, stagedBy.get(n), args.targetFields.get(n))}`);
  return [
    // COUNT(*) of a whole table reads metadata only: it bills no bytes.
    `SET rows_before = (SELECT COUNT(*) FROM ${target});`,
    `MERGE ${target} AS t USING ${staging} AS s ON ${on}`,
    ...(set.length ? [`WHEN MATCHED THEN UPDATE SET ${set.join(', ')}`] : []),
    `WHEN NOT MATCHED THEN INSERT (${cols}) VALUES (${exprs});`,
    'SET inserted = @@row_count;',
    `SET replaced = inserted - ((SELECT COUNT(*) FROM ${target}) - rows_before);`,
  ];
}

/** The schema a created target gets: the staged schema, with JSON columns typed JSON. */
export function targetSchema(staged: readonly FieldSchema[], columns: readonly ColumnSpec[]): FieldSchema[] {
  const json = new Set(columns.filter((c) => c.logical.kind === 'json').map((c) => c.name));
  return staged.map((f) => (json.has(f.name) && f.type === 'STRING' ? { ...f, type: 'JSON' } : { ...f }));
}
