/**
 * The SQL the Redshift warehouse sends through the Data API, built from parts it can vouch for:
 * identifiers quoted, values passed as named parameters (`:name`), and the two literals COPY takes
 * only as text (the manifest URL and the IAM role) checked before use. Pure functions, so tests
 * compare the exact text sent.
 */
import { createHash } from 'node:crypto';
import { type Window, windowPredicate } from '../../core/window.js';
import { configError } from '../../errors.js';
import { type ColumnSpec, Physical } from '../../parquet/schema.js';
import { type NameDialect, quote, resolveColumn as sharedResolveColumn, splitName } from '../names.js';
import type { LoadMode, StagedFile } from '../warehouse.js';

export { quote };

/** The widest VARCHAR: Redshift counts its length in bytes, at most 65535. */
export const MAX_VARCHAR = 'VARCHAR(65535)';
/** The widest VARBYTE every Redshift release accepts. */
const MAX_VARBYTE = 'VARBYTE(1024000)';

export const REDSHIFT_NAMES: NameDialect = {
  name: 'Redshift',
  fold: (part) => part.toLowerCase(),
  example: '"my table"',
};

/** Splits `a."B.c"` into parts resolved as Redshift resolves them (unquoted: lower case). */
export const resolveParts = (text: string, key: string): string[] => splitName(text, key, REDSHIFT_NAMES, 3);

/** A schema-qualified table. */
export interface TableName {
  readonly schema: string;
  readonly name: string;
  /** `"schema"."name"` */
  readonly sql: string;
}

/** Resolves `table` or `schema.table` (the default schema when it has none). */
export function tableName(text: string, defaultSchema: string): TableName {
  const parts = resolveParts(text, 'warehouse.table');
  if (parts.length > 2) {
    throw configError(`warehouse.table: ${text} has ${parts.length} parts; use table or schema.table`, {
      hint: 'the database is warehouse.redshift.database',
    });
  }
  const schema = parts.length === 2 ? parts[0] : resolveParts(defaultSchema, 'warehouse.redshift.schema')[0];
  const name = parts[parts.length - 1];
  return { schema, name, sql: `${quote(schema)}.${quote(name)}` };
}

function intType(bits: number, signed: boolean): string {
  if (bits <= 8 || (bits === 16 && signed)) return 'SMALLINT';
  if (bits === 16 || (bits === 32 && signed)) return 'INTEGER';
  if (bits === 32 || signed) return 'BIGINT';
  return 'DECIMAL(20,0)';
}

function physicalType(spec: ColumnSpec): string {
  switch (spec.physical) {
    case Physical.BOOLEAN:
      return 'BOOLEAN';
    case Physical.INT32:
      return 'INTEGER';
    case Physical.INT64:
      return 'BIGINT';
    case Physical.FLOAT:
      return 'REAL';
    case Physical.DOUBLE:
      return 'DOUBLE PRECISION';
    default:
      return MAX_VARBYTE;
  }
}

/** The Redshift type of a target column created for a Parquet column. */
export function targetType(spec: ColumnSpec): string {
  if (spec.list) return 'SUPER';
  const l = spec.logical;
  switch (l.kind) {
    case 'json':
      return 'SUPER';
    case 'string':
    case 'enum':
      return MAX_VARCHAR;
    case 'uuid':
      return 'VARCHAR(36)';
    case 'date':
      return 'DATE';
    case 'time':
      return 'TIME';
    case 'timestamp':
      // An instant (timestamptz) is what TIMESTAMPTZ holds; a wall-clock time is TIMESTAMP.
      return l.utc ? 'TIMESTAMPTZ' : 'TIMESTAMP';
    case 'decimal':
      return `DECIMAL(${l.precision},${l.scale})`;
    case 'int':
      return intType(l.bits, l.signed);
    default:
      return physicalType(spec);
  }
}

/**
 * The type of a staging column: what COPY lands the Parquet value as. COPY matches columns by
 * position and type, so JSON (a Parquet string) lands as text for JSON_PARSE, and a UUID as its
 * 16 bytes; the INSERT from the staging table converts both.
 */
export function stagingType(spec: ColumnSpec): string {
  if (spec.list) return 'SUPER';
  if (spec.logical.kind === 'json') return MAX_VARCHAR;
  if (spec.logical.kind === 'uuid') return 'VARBYTE(16)';
  return targetType(spec);
}

/** A column of an existing table, as SVV_COLUMNS describes it. */
export interface TableColumn {
  readonly name: string;
  /** `bigint`, `character varying`, `numeric`, `timestamp with time zone`, `super`, ... */
  readonly dataType: string;
  readonly length?: number | null;
  readonly precision?: number | null;
  readonly scale?: number | null;
}

/** SVV_COLUMNS' names of the types `targetType` creates. */
const DATA_TYPES: Readonly<Record<string, string>> = {
  VARCHAR: 'character varying',
  DECIMAL: 'numeric',
  TIMESTAMPTZ: 'timestamp with time zone',
  TIMESTAMP: 'timestamp without time zone',
  TIME: 'time without time zone',
  VARBYTE: 'binary varying',
};

/** A column created as `targetType(spec)`, as SVV_COLUMNS describes it. */
export function createdColumn(spec: ColumnSpec): TableColumn {
  const m = /^([A-Z ]+?)(?:\((\d+)(?:,(\d+))?\))?$/.exec(targetType(spec));
  if (!m) throw new Error(`internal: unparsable type ${targetType(spec)}`);
  const dataType = DATA_TYPES[m[1]] ?? m[1].toLowerCase();
  const n = m[2] === undefined ? null : Number(m[2]);
  if (dataType === 'numeric') return { name: spec.name, dataType, precision: n, scale: Number(m[3] ?? 0) };
  return { name: spec.name, dataType, length: n };
}

/** The columns of a table created from the Parquet columns. */
export function createdColumns(columns: readonly ColumnSpec[]): Map<string, TableColumn> {
  return new Map(columns.map((c) => [c.name, createdColumn(c)]));
}

/** The SQL type a bound value is cast to so that it compares as the column's own type. */
export function castType(column: TableColumn): string {
  const t = column.dataType.toLowerCase();
  switch (t) {
    case 'numeric':
    case 'decimal':
      return `DECIMAL(${column.precision ?? 18},${column.scale ?? 0})`;
    case 'character varying':
      return column.length ? `VARCHAR(${column.length})` : MAX_VARCHAR;
    case 'character':
      return `CHAR(${column.length ?? 1})`;
    case 'timestamp with time zone':
      return 'TIMESTAMPTZ';
    case 'timestamp without time zone':
      return 'TIMESTAMP';
    case 'time without time zone':
      return 'TIME';
    case 'time with time zone':
      return 'TIMETZ';
    default:
      return t.toUpperCase();
  }
}

/** The table column a Parquet column loads into (exact name, else the one equal ignoring case). */
export const resolveColumn = (
  columns: ReadonlyMap<string, TableColumn>,
  name: string,
  table: string,
): TableColumn => sharedResolveColumn(columns, name, table, (n) => n);

/** 16 bytes -> the canonical 8-4-4-4-12 lower-case text PostgreSQL prints. */
function uuidText(bytes: string): string {
  const hex = `LOWER(TO_HEX(${bytes}))`;
  const part = (from: number, len: number) => `SUBSTRING(${hex}, ${from}, ${len})`;
  return [part(1, 8), part(9, 4), part(13, 4), part(17, 4), part(21, 12)].join(" || '-' || ");
}

/** The expression that turns a staging column into the value the target column takes. */
export function insertExpression(spec: ColumnSpec, staging: string, target: TableColumn): string {
  const t = target.dataType.toLowerCase();
  if (!spec.list && spec.logical.kind === 'json' && t === 'super') return `JSON_PARSE(${staging})`;
  if (!spec.list && spec.logical.kind === 'uuid' && (t === 'character varying' || t === 'character')) {
    return uuidText(staging);
  }
  return staging;
}

/** A named Data API parameter; values are always strings, never empty. */
export interface SqlParameter {
  readonly name: string;
  readonly value: string;
}

/** A window bound as Redshift parses it: a timestamptz offset written out in full (`+00:00`). */
export function boundValue(value: string, pgType: string | undefined): string {
  if (pgType === 'timestamp with time zone' && /[+-]\d{2}$/.test(value)) return `${value}:00`;
  return value;
}

/** The window predicate over the target's columns, with its parameters (`:w1`, `:w2`, ...). */
export function windowCondition(
  window: Window,
  columns: ReadonlyMap<string, TableColumn>,
  table: string,
): { sql: string; parameters: SqlParameter[] } {
  const parameters: SqlParameter[] = [];
  const sql = windowPredicate(window, {
    quote: (name) => quote(resolveColumn(columns, name, table).name),
    param: (value, index) => {
      const type = castType(resolveColumn(columns, window.columns[index], table));
      const text = boundValue(value, window.types[index]);
      // The Data API rejects an empty parameter value; an empty string is the one literal that
      // needs no escaping.
      if (text === '') return `CAST('' AS ${type})`;
      parameters.push({ name: `w${parameters.length + 1}`, value: text });
      return `CAST(:w${parameters.length} AS ${type})`;
    },
  });
  return { sql, parameters };
}

/** Key of the COPY manifest of a run: in the run's data folder, hidden from folder readers (`_`). */
export function manifestKey(dataPrefix: string): string {
  return `${dataPrefix}_redshift.manifest`;
}

/**
 * The COPY manifest: exactly the run's files, each mandatory (COPY fails rather than skip one),
 * with its size, which COPY needs for Parquet.
 */
export function copyManifest(files: readonly StagedFile[]): string {
  const entries = files.map((f) => ({ url: f.url, mandatory: true, meta: { content_length: f.bytes } }));
  return `${JSON.stringify({ entries }, null, 2)}\n`;
}

/** Whether text can be a COPY argument as is: no quote, backslash or control character. */
function safeText(text: string): boolean {
  return text.length > 0 && ![...text].some((c) => c === "'" || c === '\\' || c.charCodeAt(0) < 0x20);
}

/** A string literal of text checked to need no escaping. */
export function safeLiteral(text: string, what: string): string {
  if (!safeText(text)) {
    throw configError(`${what} ${JSON.stringify(text)} has characters COPY cannot take`, {
      hint: 'use a stage path and role name without quotes or backslashes',
    });
  }
  return `'${text}'`;
}

/** The COPY of the run's files (through their manifest) into the staging table. */
export function copyStatement(options: {
  staging: string;
  manifestUrl: string;
  iamRole: string;
  serializeToJson: boolean;
}): string {
  if (!options.manifestUrl.startsWith('s3://')) {
    throw configError(`Redshift loads from Amazon S3 only, not ${options.manifestUrl}`, {
      hint: 'set stage.url to s3://bucket/prefix',
    });
  }
  const role =
    options.iamRole === 'default' ? 'default' : safeLiteral(options.iamRole, 'warehouse.redshift.iam_role');
  return [
    `COPY ${options.staging}`,
    `FROM ${safeLiteral(options.manifestUrl, 'the manifest URL')}`,
    `IAM_ROLE ${role}`,
    'FORMAT AS PARQUET',
    'MANIFEST',
    // Nested Parquet values (LIST columns) load into SUPER columns only when serialized.
    ...(options.serializeToJson ? ['SERIALIZETOJSON'] : []),
    // The staging table is read once, in full: statistics would only cost time.
    'STATUPDATE OFF',
  ].join('\n');
}

/**
 * The check between COPY and the DML: it returns the rows COPY loaded in this session, and
 * fails (division by zero) when they differ from the rows the files hold, which rolls the whole
 * transaction back before anything is visible.
 */
export function checkStatement(): string {
  return 'SELECT pg_last_copy_count() AS rows_loaded, 1 / (CASE WHEN pg_last_copy_count() = CAST(:expected_rows AS BIGINT) THEN 1 ELSE 0 END) AS rows_match';
}

/** What one statement of the load transaction does, so a failure can be told apart. */
export type StepKind = 'settings' | 'create' | 'staging' | 'copy' | 'check' | 'delete' | 'insert';

/** Which step a statement of the load transaction is, read off its text. */
export function stepKind(sql: string): StepKind | undefined {
  const head = sql.trimStart().slice(0, 40).toUpperCase();
  if (head.startsWith('SET ')) return 'settings';
  if (head.startsWith('CREATE TEMP ')) return 'staging';
  if (head.startsWith('CREATE TABLE')) return 'create';
  if (head.startsWith('COPY ')) return 'copy';
  if (head.startsWith('SELECT PG_LAST_COPY_COUNT()')) return 'check';
  if (head.startsWith('DELETE ')) return 'delete';
  if (head.startsWith('INSERT ')) return 'insert';
  return undefined;
}

export interface Step {
  readonly kind: StepKind;
  readonly sql: string;
}

/** Everything the load transaction needs to know. */
export interface LoadSql {
  readonly mode: LoadMode;
  readonly target: TableName;
  /** Columns of the target; undefined when the load creates the table. */
  readonly existing: ReadonlyMap<string, TableColumn> | undefined;
  readonly columns: readonly ColumnSpec[];
  readonly key: readonly string[];
  readonly window: Window;
  readonly staging: string;
  /** The COPY statement, or undefined when there are no files. */
  readonly copy: string | undefined;
  readonly expectedRows: number;
  readonly statementTimeoutMs: number;
}

/** The staging table: the Parquet columns in file order (COPY maps Parquet columns by position). */
export function createStaging(staging: string, columns: readonly ColumnSpec[]): string {
  return `CREATE TEMP TABLE ${staging} (${columns.map((c) => `${quote(c.name)} ${stagingType(c)}`).join(', ')})`;
}

/**
 * The target table, typed from the Parquet columns. Without IF NOT EXISTS: a table that exists
 * but that the user cannot see (SVV_COLUMNS shows only what it may use) must fail the load, not
 * be loaded into without its window being replaced.
 */
export function createTable(target: TableName, columns: readonly ColumnSpec[]): string {
  return `CREATE TABLE ${target.sql} (${columns.map((c) => `${quote(c.name)} ${targetType(c)}`).join(', ')})`;
}

/** The statements of the load transaction, in order, with their parameters. */
export function loadStatements(plan: LoadSql): { steps: Step[]; parameters: SqlParameter[] } {
  const columns = plan.existing ?? createdColumns(plan.columns);
  const steps: Step[] = [
    { kind: 'settings', sql: `SET statement_timeout TO ${Math.max(1, Math.round(plan.statementTimeoutMs))}` },
  ];
  const parameters: SqlParameter[] = [];
  if (!plan.existing) steps.push({ kind: 'create', sql: createTable(plan.target, plan.columns) });
  steps.push({ kind: 'staging', sql: createStaging(plan.staging, plan.columns) });
  if (plan.copy) {
    steps.push({ kind: 'copy', sql: plan.copy }, { kind: 'check', sql: checkStatement() });
    parameters.push({ name: 'expected_rows', value: String(plan.expectedRows) });
  }
  if (plan.existing) {
    const remove = deleteStatement(plan, columns);
    steps.push({ kind: 'delete', sql: remove.sql });
    parameters.push(...remove.parameters);
  }
  steps.push({ kind: 'insert', sql: insertStatement(plan, columns) });
  return { steps, parameters };
}

/** Deletes what the load replaces: the window (append), the keys of the files (merge), all (replace). */
function deleteStatement(
  plan: LoadSql,
  columns: ReadonlyMap<string, TableColumn>,
): { sql: string; parameters: SqlParameter[] } {
  const table = plan.target.sql;
  if (plan.mode === 'replace') return { sql: `DELETE FROM ${table}`, parameters: [] };
  if (plan.mode === 'append') {
    const { sql, parameters } = windowCondition(plan.window, columns, table);
    return { sql: `DELETE FROM ${table} WHERE ${sql}`, parameters };
  }
  const specs = new Map(plan.columns.map((c) => [c.name, c]));
  const keys = plan.key.map((k) => {
    const spec = specs.get(k);
    if (!spec) throw configError(`source.key column ${k} is not among the exported columns`);
    const column = resolveColumn(columns, k, table);
    return { column: quote(column.name), expr: insertExpression(spec, `s.${quote(k)}`, column) };
  });
  const select = keys.map((k) => `${k.expr} AS ${k.column}`).join(', ');
  const match = keys.map((k) => `${table}.${k.column} = k.${k.column}`).join(' AND ');
  return {
    sql: `DELETE FROM ${table} USING (SELECT DISTINCT ${select} FROM ${plan.staging} AS s) AS k WHERE ${match}`,
    parameters: [],
  };
}

/** Inserts the staging rows into the target, converting what COPY landed as text or bytes. */
function insertStatement(plan: LoadSql, columns: ReadonlyMap<string, TableColumn>): string {
  const pairs = plan.columns.map((spec) => {
    const column = resolveColumn(columns, spec.name, plan.target.sql);
    return { name: quote(column.name), expr: insertExpression(spec, `s.${quote(spec.name)}`, column) };
  });
  return `INSERT INTO ${plan.target.sql} (${pairs.map((p) => p.name).join(', ')}) SELECT ${pairs.map((p) => p.expr).join(', ')} FROM ${plan.staging} AS s`;
}

/** The query that describes a table's columns (SVV_COLUMNS: every user sees what it may use). */
export const DESCRIBE_SQL =
  'SELECT column_name, data_type, character_maximum_length, numeric_precision, numeric_scale FROM svv_columns WHERE table_schema = :schema AND table_name = :table ORDER BY ordinal_position';

/** The temporary staging table of a run: unqualified (temporary tables live in the session). */
export function stagingName(runId: string): string {
  return quote(`nightshift_staging_${runId.toLowerCase().replace(/[^a-z0-9]/g, '_')}`);
}

/**
 * A ClientToken derived from what a request does: a retry of the same request (a response lost
 * on the way back) gets the same statement back from the Data API instead of a second load.
 */
export function clientToken(...parts: string[]): string {
  const hex = createHash('sha256').update(parts.join('\u0000')).digest('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`;
}
