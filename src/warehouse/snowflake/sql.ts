/**
 * The SQL the Snowflake warehouse sends, built from parts it can vouch for: identifiers quoted,
 * names resolved the way Snowflake resolves them, values bound (`?`) wherever Snowflake accepts a
 * bind, and the few literals it cannot bind (stage paths, file names) checked and escaped.
 * Pure functions, so tests can compare the exact text sent.
 */

import { type Window, windowPredicate } from '../../core/window.js';
import { configError } from '../../errors.js';
import { type ColumnSpec, Physical } from '../../parquet/schema.js';
import { type NameDialect, quote, resolveColumn as sharedResolveColumn, splitName } from '../names.js';

export { quote };

/** Most files one COPY may list in FILES = (...). */
export const MAX_FILES_PER_COPY = 1000;

/** A single-quoted string literal; Snowflake treats backslash as an escape inside quotes. */
export const literal = (text: string): string => `'${text.replaceAll('\\', '\\\\').replaceAll("'", "''")}'`;

export const SNOWFLAKE_NAMES: NameDialect = {
  name: 'Snowflake',
  fold: (part) => part.toUpperCase(),
  example: '"My Table"',
};

/** Splits `a.b."C.d"` into parts resolved as Snowflake resolves them (unquoted: upper case). */
export const resolveParts = (text: string, key: string, max: number): string[] =>
  splitName(text, key, SNOWFLAKE_NAMES, max);

/** A fully qualified object name. */
export interface ObjectName {
  readonly database: string;
  readonly schema: string;
  readonly name: string;
  /** `"DB"."SCHEMA"."NAME"` */
  readonly sql: string;
}

/** Resolves `name`, `schema.name` or `database.schema.name` against the session's defaults. */
export function objectName(
  text: string,
  key: string,
  defaults: { database: string; schema: string },
): ObjectName {
  const parts = resolveParts(text, key, 3);
  const [database, schema, name] =
    parts.length === 3
      ? parts
      : parts.length === 2
        ? [defaults.database, parts[0], parts[1]]
        : [defaults.database, defaults.schema, parts[0]];
  return { database, schema, name, sql: [database, schema, name].map(quote).join('.') };
}

/**
 * The column name nightshift gives a new table: PostgreSQL's unquoted lower-case names become
 * Snowflake's unquoted upper-case ones (so `SELECT trip_id FROM trips` works), anything else is
 * kept exactly.
 */
export function newColumnName(parquetName: string): string {
  return /^[a-z_][a-z0-9_$]*$/.test(parquetName) ? parquetName.toUpperCase() : parquetName;
}

function intType(bits: number, signed: boolean): string {
  const digits = { 8: 3, 16: 5, 32: 10, 64: signed ? 19 : 20 }[bits] ?? 38;
  return `NUMBER(${digits},0)`;
}

/** The Snowflake type of a target column created for a Parquet column. */
export function targetType(spec: ColumnSpec): string {
  if (spec.list) return 'ARRAY';
  const l = spec.logical;
  switch (l.kind) {
    case 'json':
      return 'VARIANT';
    case 'string':
    case 'enum':
      return 'VARCHAR';
    case 'uuid':
      return 'VARCHAR(36)';
    case 'date':
      return 'DATE';
    case 'time':
      return 'TIME(6)';
    case 'timestamp':
      // An instant (timestamptz) is what TIMESTAMP_LTZ holds; a wall-clock time is NTZ.
      return l.utc ? 'TIMESTAMP_LTZ(6)' : 'TIMESTAMP_NTZ(6)';
    case 'decimal':
      return `NUMBER(${l.precision},${l.scale})`;
    case 'int':
      return intType(l.bits, l.signed);
    default:
      return physicalType(spec);
  }
}

function physicalType(spec: ColumnSpec): string {
  switch (spec.physical) {
    case Physical.BOOLEAN:
      return 'BOOLEAN';
    case Physical.INT32:
      return 'NUMBER(10,0)';
    case Physical.INT64:
      return 'NUMBER(19,0)';
    case Physical.FLOAT:
    case Physical.DOUBLE:
      return 'FLOAT';
    default:
      return 'BINARY';
  }
}

/**
 * The type of a staging column: what COPY lands the Parquet value as. JSON arrives as text (COPY
 * does not parse a Parquet JSON string into a VARIANT) and UUID as its 16 bytes; the INSERT from
 * the staging table converts both.
 */
export function stagingType(spec: ColumnSpec): string {
  if (spec.list) return 'ARRAY';
  if (spec.logical.kind === 'json') return 'VARCHAR';
  if (spec.logical.kind === 'uuid') return 'BINARY(16)';
  return targetType(spec);
}

/** A column of an existing table, as INFORMATION_SCHEMA.COLUMNS describes it. */
export interface TableColumn {
  readonly name: string;
  /** DATA_TYPE: NUMBER, TEXT, TIMESTAMP_LTZ, VARIANT, ... */
  readonly dataType: string;
  readonly precision?: number | null;
  readonly scale?: number | null;
}

/** The type a bound value is cast to so it compares with the column as the column's own type. */
export function castType(column: TableColumn): string {
  const t = column.dataType.toUpperCase();
  if (t === 'NUMBER' || t === 'DECIMAL' || t === 'FIXED') {
    return `NUMBER(${column.precision ?? 38},${column.scale ?? 0})`;
  }
  if (t === 'TEXT') return 'VARCHAR';
  return t;
}

/** The expression that turns a staging column into the value the target column takes. */
export function insertExpression(spec: ColumnSpec, staging: string, target: TableColumn): string {
  const t = target.dataType.toUpperCase();
  const semi = t === 'VARIANT' || t === 'OBJECT' || t === 'ARRAY';
  if (!spec.list && spec.logical.kind === 'json' && semi) return `PARSE_JSON(${staging})`;
  if (!spec.list && spec.logical.kind === 'uuid' && t === 'TEXT') {
    // 16 bytes -> the canonical 8-4-4-4-12 lower-case text PostgreSQL prints.
    const hex = `LOWER(HEX_ENCODE(${staging}))`;
    const part = (from: number, len: number) => `SUBSTR(${hex}, ${from}, ${len})`;
    return `${part(1, 8)} || '-' || ${part(9, 4)} || '-' || ${part(13, 4)} || '-' || ${part(17, 4)} || '-' || ${part(21, 12)}`;
  }
  return staging;
}

/** A window bound as Snowflake parses it: ISO 8601 with a full offset for timestamptz. */
export function boundValue(value: string, pgType: string | undefined): string {
  if (pgType !== 'timestamp with time zone') return value;
  const iso = value.replace(' ', 'T');
  return /[+-]\d{2}$/.test(iso) ? `${iso}:00` : iso;
}

/** The window predicate over the target table's columns, with its binds. */
export function windowCondition(
  window: Window,
  columns: ReadonlyMap<string, TableColumn>,
  table: string,
): { sql: string; binds: string[] } {
  const binds: string[] = [];
  const sql = windowPredicate(window, {
    quote: (name) => quote(resolveColumn(columns, name, table).name),
    param: (value, index) => {
      const column = resolveColumn(columns, window.columns[index], table);
      binds.push(boundValue(value, window.types[index]));
      // Numbered binds: the lexicographic predicate uses a bound value more than once.
      return `CAST(:${binds.length} AS ${castType(column)})`;
    },
  });
  return { sql, binds };
}

/** The table column a Parquet column loads into (exact name, else the one equal ignoring case). */
export const resolveColumn = (
  columns: ReadonlyMap<string, TableColumn>,
  name: string,
  table: string,
): TableColumn => sharedResolveColumn(columns, name, table, newColumnName);

/** The longest directory prefix shared by all keys (`job/data/dt=.../run=.../`). */
export function commonDirectory(keys: readonly string[]): string {
  if (keys.length === 0) return '';
  let prefix = keys[0].slice(0, keys[0].lastIndexOf('/') + 1);
  for (const key of keys) {
    while (!key.startsWith(prefix)) prefix = prefix.slice(0, prefix.slice(0, -1).lastIndexOf('/') + 1);
  }
  return prefix;
}

const SAFE_PATH = /^[A-Za-z0-9_.=/-]*$/;

/** Checks a stage path is one COPY can name without quoting (nightshift's layout always is). */
export function stagePath(path: string): string {
  if (!SAFE_PATH.test(path) || path.includes('//') || path.startsWith('/')) {
    throw configError(`stage path ${path} has characters a COPY cannot name unquoted`, {
      hint: 'use a job name of lowercase letters, digits, ".", "_" and "-"',
    });
  }
  return path;
}

/** Splits a list into chunks of at most `size`. */
export function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** The COPY of one chunk of files into the staging table. */
export function copyStatement(options: {
  staging: string;
  stage: string;
  directory: string;
  files: readonly string[];
}): string {
  // Load history is Snowflake's per-table memory of the files a COPY loaded (64 days), which
  // makes a COPY skip them. The staging table is new for every load, so its history is empty;
  // FORCE = TRUE states that the files are loaded whatever any history says (a retry in the same
  // session after a rollback, or files older than 64 days whose status Snowflake no longer
  // knows). Exactly-once comes from the DELETE + INSERT of the window in one transaction and
  // the checkpoint moving only after COMMIT, never from load history, so the files are never
  // COPYed into the target table itself.
  return [
    `COPY INTO ${options.staging}`,
    `FROM @${options.stage}/${stagePath(options.directory)}`,
    `FILES = (${options.files.map(literal).join(', ')})`,
    'FILE_FORMAT = (TYPE = PARQUET USE_LOGICAL_TYPE = TRUE BINARY_AS_TEXT = FALSE)',
    'MATCH_BY_COLUMN_NAME = CASE_SENSITIVE',
    'ON_ERROR = ABORT_STATEMENT',
    'FORCE = TRUE',
  ].join('\n');
}
