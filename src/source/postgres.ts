/**
 * The PostgreSQL source: one REPEATABLE READ, READ ONLY snapshot in which the window's upper
 * bound is chosen, the window is counted, and the window is exported with COPY (FORMAT binary).
 * Identifiers are quoted; values are bound as parameters (for COPY, which takes none, the server
 * itself quotes them with format('%L')).
 */
import pg from 'pg';
import type { SourceConfig } from '../config/schema.js';
import { type Bound, type PredicateDialect, type Window, windowPredicate } from '../core/window.js';
import { configError, toNightshiftError, validationError } from '../errors.js';
import { openConnection, stallError } from './connection.js';
import { type CopyDataSink, type CopyOutOptions, CopyStalledError, copyOut } from './copy-out.js';
import {
  type ColumnPlan,
  chooseExpr,
  type DescribedColumn,
  type NumericMeasure,
  needsMeasure,
  OID,
  type PgTypeInfo,
  planColumn,
  quoteIdent,
} from './types.js';

/** What kind of values the cursor holds. */
export type CursorKind = 'timestamptz' | 'timestamp' | 'date' | 'integer' | 'numeric';

export interface CursorInfo {
  readonly kind: CursorKind;
  /** format_type of the cursor column. */
  readonly type: string;
  /** format_type of each key column. */
  readonly keyTypes: readonly string[];
}

export interface SourceOptions {
  config: SourceConfig;
}

const SESSION_SETTINGS = [
  "SET TimeZone = 'UTC'",
  "SET DateStyle = 'ISO, YMD'",
  "SET IntervalStyle = 'iso_8601'",
  'SET extra_float_digits = 3',
  "SET bytea_output = 'hex'",
];

/** Splits `schema.table` into quoted parts; `table` alone stays unqualified. */
export function quoteTable(name: string): string {
  const parts = name.split('.');
  if (parts.length > 2 || parts.some((p) => p.length === 0)) {
    throw configError(`source.table: "${name}" is not a table name; use table or schema.table`);
  }
  return parts.map(quoteIdent).join('.');
}

/** PostgreSQL rendering of window predicates: bound values as `$n::type` parameters. */
function pgParams(window: Window, params: unknown[]): PredicateDialect {
  return {
    quote: quoteIdent,
    param: (value, index) => {
      params.push(value);
      return `$${params.length}::${window.types[index]}`;
    },
  };
}

/** One open snapshot. Close it in `finally`. */
export class Snapshot {
  private readonly client: pg.Client;
  private readonly config: SourceConfig;
  private readonly relation: string;
  private exportedSnapshot: string | undefined;
  private typeCache = new Map<number, PgTypeInfo>();
  private closed = false;

  constructor(client: pg.Client, config: SourceConfig, exportedSnapshot?: string) {
    this.client = client;
    this.config = config;
    this.exportedSnapshot = exportedSnapshot;
    this.relation = config.table ? quoteTable(config.table) : `(${config.query}) AS nightshift_source`;
  }

  /** The connection's server version, e.g. 150004. */
  async serverVersion(): Promise<number> {
    const r = await this.client.query<{ v: string }>('SHOW server_version_num');
    return Number(r.rows[0].v);
  }

  /** Describes the columns the export selects (before casts). */
  async describeSource(): Promise<DescribedColumn[]> {
    const list = this.config.columns?.map(quoteIdent).join(', ') ?? '*';
    return this.describe(`SELECT ${list} FROM ${this.relation}`);
  }

  private async describe(select: string): Promise<DescribedColumn[]> {
    const result = await this.client.query({ text: `${select} LIMIT 0`, rowMode: 'array' });
    const fields = result.fields;
    if (fields.length === 0) throw configError('the source selects no columns');
    const seen = new Set<string>();
    for (const f of fields) {
      if (seen.has(f.name))
        throw configError(`the source has two columns named ${f.name}; alias one in source.query`);
      seen.add(f.name);
    }
    const formatted = await this.client.query<{ f: string }>(
      'SELECT format_type(t, m) AS f FROM unnest($1::oid[], $2::int[]) WITH ORDINALITY AS x(t, m, i) ORDER BY i',
      [fields.map((f) => f.dataTypeID), fields.map((f) => f.dataTypeModifier)],
    );
    await this.loadTypes(fields.map((f) => f.dataTypeID));
    return fields.map((f, i) => ({
      name: f.name,
      typeOid: f.dataTypeID,
      typmod: f.dataTypeModifier,
      formatted: formatted.rows[i].f,
    }));
  }

  /** Loads pg_type rows for the given types, their elements and domain bases. */
  private async loadTypes(oids: number[]): Promise<void> {
    let pending = oids.filter((o) => !this.typeCache.has(o));
    while (pending.length) {
      const r = await this.client.query<{
        oid: number;
        typname: string;
        typtype: string;
        typcategory: string;
        typelem: number;
        typbasetype: number;
        typtypmod: number;
      }>(
        `SELECT oid::int, typname, typtype, typcategory, typelem::int, typbasetype::int, typtypmod
         FROM pg_type WHERE oid = ANY($1::oid[])`,
        [pending],
      );
      const next: number[] = [];
      for (const row of r.rows) {
        this.typeCache.set(row.oid, {
          oid: row.oid,
          name: row.typname,
          typtype: row.typtype,
          category: row.typcategory,
          elem: row.typelem,
          base: row.typbasetype,
          baseTypmod: row.typtypmod,
        });
        for (const o of [row.typelem, row.typbasetype]) if (o && !this.typeCache.has(o)) next.push(o);
      }
      pending = next;
    }
  }

  /** Cursor and key types; fails with a config error when they are missing or unusable. */
  async cursorInfo(described: readonly DescribedColumn[]): Promise<CursorInfo | undefined> {
    const { cursor, key } = this.config;
    if (!cursor) return undefined;
    const find = (name: string, configKey: string) => {
      const col = described.find((c) => c.name === name);
      if (!col) {
        throw configError(
          `${configKey}: column ${name} is not in the source (it has ${described.map((c) => c.name).join(', ')})`,
        );
      }
      return col;
    };
    const c = find(cursor, 'source.cursor');
    const keyCols = (key ?? []).map((k) => find(k, 'source.key'));
    const kinds: Record<number, CursorKind> = {
      [OID.timestamptz]: 'timestamptz',
      [OID.timestamp]: 'timestamp',
      [OID.date]: 'date',
      [OID.int2]: 'integer',
      [OID.int4]: 'integer',
      [OID.int8]: 'integer',
      [OID.numeric]: 'numeric',
    };
    let oid = c.typeOid;
    const domain = this.typeCache.get(oid);
    if (domain?.typtype === 'd') oid = domain.base;
    const kind = kinds[oid];
    if (!kind) {
      throw configError(
        `source.cursor: column ${cursor} has type ${c.formatted}; a cursor must be a timestamp, timestamptz, date or integer column`,
      );
    }
    return { kind, type: c.formatted, keyTypes: keyCols.map((k) => k.formatted) };
  }

  /** Fails (config error) when the cursor column can hold NULLs and does. */
  async checkCursorNulls(): Promise<void> {
    const { cursor, table } = this.config;
    if (!cursor) return;
    if (table) {
      const r = await this.client.query<{ notnull: boolean }>(
        'SELECT attnotnull AS notnull FROM pg_attribute WHERE attrelid = $1::regclass AND attname = $2',
        [quoteTable(table), cursor],
      );
      if (r.rows[0]?.notnull) return;
    }
    const r = await this.client.query(
      `SELECT 1 FROM ${this.relation} WHERE ${quoteIdent(cursor)} IS NULL LIMIT 1`,
    );
    if (r.rows.length > 0) {
      throw configError(`source.cursor: column ${cursor} holds NULLs; those rows would never be exported`, {
        hint: `make ${cursor} NOT NULL (or coalesce it in source.query), or choose another cursor column`,
      });
    }
  }

  /**
   * The newest (cursor, key) tuple a window may end on: past `lower`, at most `lag` behind the
   * snapshot's clock, and at most `maxRows` rows past `lower`. Undefined when nothing is new.
   */
  async upperBound(cursor: CursorInfo, lower: Window | undefined): Promise<Bound | undefined> {
    const { key = [], lag, max_rows_per_run: maxRows } = this.config;
    const columns = [this.config.cursor as string, ...key];
    const params: unknown[] = [];
    const param = (value: string, type: string) => {
      params.push(value);
      return `$${params.length}::${type}`;
    };
    const where: string[] = [];
    if (lower) where.push(windowPredicate(lower, pgParams(lower, params)));
    const cap = this.capExpression(cursor, lag, param);
    if (cap) where.push(`${quoteIdent(columns[0])} <= ${cap}`);
    // Aliased: ORDER BY a bare name would sort the text output column, "999" after "1000".
    const select = columns.map((c, i) => `${quoteIdent(c)}::text AS b${i}`).join(', ');
    const order = (dir: string) => columns.map((c) => `${quoteIdent(c)} ${dir}`).join(', ');
    const filter = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const first = async (sql: string) => {
      const r = await this.client.query({ text: sql, values: params, rowMode: 'array' });
      return r.rows.length ? { values: r.rows[0] as string[], inclusive: true } : undefined;
    };
    if (maxRows) {
      // The maxRows-th row in (cursor, key) order, or the newest one when fewer remain.
      const capped = await first(
        `SELECT ${select} FROM ${this.relation} ${filter} ORDER BY ${order('ASC')} OFFSET ${maxRows - 1} LIMIT 1`,
      );
      if (capped) return capped;
    }
    return first(`SELECT ${select} FROM ${this.relation} ${filter} ORDER BY ${order('DESC')} LIMIT 1`);
  }

  /** The newest cursor value the snapshot's clock allows, or undefined for no cap. */
  private capExpression(
    cursor: CursorInfo,
    lag: number,
    param: (value: string, type: string) => string,
  ): string | undefined {
    switch (cursor.kind) {
      case 'timestamptz':
        return `(now() - ${param(`${lag} milliseconds`, 'interval')})`;
      case 'timestamp':
        return `(localtimestamp - ${param(`${lag} milliseconds`, 'interval')})`;
      case 'date':
        // Only complete days: rows dated today can still arrive.
        return `((now() - ${param(`${lag} milliseconds`, 'interval')})::date - 1)`;
      default:
        if (!lag) return undefined;
        return `((SELECT max(${quoteIdent(this.config.cursor as string)}) FROM ${this.relation}) - ${param(String(lag), 'numeric')})`;
    }
  }

  /** Rows in the window, counted in this snapshot. */
  async count(window: Window): Promise<number> {
    const params: unknown[] = [];
    const where = windowPredicate(window, pgParams(window, params));
    const r = await this.client.query<{ n: string }>(
      `SELECT count(*) AS n FROM ${this.relation} WHERE ${where}`,
      params,
    );
    return Number(r.rows[0].n);
  }

  /** The planner's estimate of the window's rows (for an ETA; never for validation). */
  async estimate(window: Window): Promise<number> {
    const params: unknown[] = [];
    const where = windowPredicate(window, pgParams(window, params));
    const r = await this.client.query<{ 'QUERY PLAN': { Plan: { 'Plan Rows': number } }[] }>(
      `EXPLAIN (FORMAT JSON) SELECT 1 FROM ${this.relation} WHERE ${where}`,
      params,
    );
    return Math.round(r.rows[0]['QUERY PLAN'][0].Plan['Plan Rows']);
  }

  /** Precision and scale of unconstrained numeric columns in the window. */
  async measureNumerics(
    columns: readonly DescribedColumn[],
    window: Window,
  ): Promise<Map<string, NumericMeasure>> {
    const out = new Map<string, NumericMeasure>();
    const targets = columns.filter((c) => needsMeasure(c, this.typeCache, this.config.casts));
    if (!targets.length || this.config.numeric === 'string') return out;
    const params: unknown[] = [];
    const where = windowPredicate(window, pgParams(window, params));
    const aggregates = targets.flatMap((c, i) => {
      const v = `${quoteIdent(c.name)}::numeric`;
      const finite = `CASE WHEN ${v} IN ('NaN', 'Infinity', '-Infinity') THEN NULL ELSE ${v} END`;
      return [
        `coalesce(max(scale(${finite})), 0) AS s${i}`,
        `coalesce(max(length(trunc(abs(${finite}))::text)), 0) AS d${i}`,
        `coalesce(bool_or(${v} IN ('NaN', 'Infinity', '-Infinity')), false) AS x${i}`,
      ];
    });
    const r = await this.client.query(
      `SELECT ${aggregates.join(', ')} FROM ${this.relation} WHERE ${where}`,
      params,
    );
    const row = r.rows[0] as Record<string, unknown>;
    targets.forEach((c, i) => {
      out.set(c.name, {
        scale: Number(row[`s${i}`]),
        intDigits: Number(row[`d${i}`]),
        special: row[`x${i}`] === true,
      });
    });
    return out;
  }

  /** Plans every exported column: expression, decoder, Parquet type. */
  async planColumns(
    described: readonly DescribedColumn[],
    measured: Map<string, NumericMeasure>,
  ): Promise<ColumnPlan[]> {
    for (const name of Object.keys(this.config.casts)) {
      if (!described.some((c) => c.name === name)) {
        throw configError(`source.casts.${name}: the source has no column ${name}`);
      }
    }
    const exprs = described.map((c) => chooseExpr(c, this.typeCache, this.config.casts, measured));
    const final = await this.describe(
      `SELECT ${exprs.map((e, i) => `${e.expr} AS ${quoteIdent(described[i].name)}`).join(', ')} FROM ${this.relation}`,
    );
    return final.map((c, i) => planColumn(c, exprs[i], this.typeCache, measured));
  }

  /** The exported snapshot id a second connection can import, when the server allowed it. */
  get snapshotId(): string | undefined {
    return this.exportedSnapshot;
  }

  /** The COPY statement for the window, quoted by the server. */
  async copyStatement(plans: readonly ColumnPlan[], window: Window): Promise<string> {
    const values: string[] = [];
    // A NUL byte cannot occur in SQL text, so it marks the literal slots unambiguously.
    const where = windowPredicate(window, {
      quote: quoteIdent,
      param: (value, index) => {
        values.push(value);
        return `\u0000${values.length}\u0000::${window.types[index]}`;
      },
    });
    const select = plans.map((p) => `${p.expr} AS ${quoteIdent(p.name)}`).join(', ');
    const template = `COPY (SELECT ${select} FROM ${this.relation} WHERE ${where}) TO STDOUT (FORMAT binary)`;
    // Positional %n$L: a bound value appears more than once in a lexicographic comparison.
    // biome-ignore lint/suspicious/noControlCharactersInRegex: NUL cannot occur in SQL text, so it marks the slots.
    const escaped = template.replaceAll('%', '%%').replace(/\u0000(\d+)\u0000/g, '%$1$$L');
    const args = values.map((_, i) => `$${i + 2}::text`).join(', ');
    const r = await this.client.query<{ sql: string }>(`SELECT format($1${args ? `, ${args}` : ''}) AS sql`, [
      escaped,
      ...values,
    ]);
    return r.rows[0].sql;
  }

  /** Runs the window's COPY, feeding each CopyData message to `sink`; resolves with PostgreSQL's row count. */
  copyInto(statement: string, sink: CopyDataSink, options: CopyOutOptions = {}): Promise<number> {
    const stallTimeoutMs = this.config.stall_timeout || undefined;
    return copyOut(this.client, statement, sink, { stallTimeoutMs, ...options }).catch((err: unknown) => {
      throw err instanceof CopyStalledError ? stallError(this.config, err) : err;
    });
  }

  /** Ends the snapshot and the connection. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    try {
      await this.client.query('ROLLBACK');
    } catch {
      // the connection may already be gone; ending it is all that is left
    }
    await this.client.end().catch(() => undefined);
  }

  /** Cuts the connection at once (SIGTERM, or a COPY that must stop mid-stream). */
  destroy(): void {
    this.closed = true;
    const connection = (this.client as unknown as { connection?: { stream?: { destroy(): void } } })
      .connection;
    connection?.stream?.destroy();
  }
}

/**
 * Opens a connection with the session settings that make values exact and times UTC, within
 * source.connect_timeout.
 */
export function connect(config: SourceConfig, purpose: string): Promise<pg.Client> {
  return openConnection(config, purpose, async (client) => {
    for (const sql of SESSION_SETTINGS) await client.query(sql);
    // A client that goes away mid-query (SIGTERM cuts the socket) is noticed within a second, so
    // its query stops instead of running on with its snapshot held. PostgreSQL 14 and later.
    await client.query(
      "SELECT set_config('client_connection_check_interval', '1000', false) WHERE current_setting('server_version_num')::int >= 140000",
    );
  });
}

/** Opens the snapshot the whole run reads from. */
export async function openSnapshot(config: SourceConfig): Promise<Snapshot> {
  const client = await connect(config, 'export');
  const begin = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';
  try {
    await client.query(begin);
    // The first statement takes the snapshot; exporting it lets a second connection count the
    // window while this one streams it. Where exporting is refused, count on this connection.
    try {
      const r = await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s');
      return new Snapshot(client, config, r.rows[0].s);
    } catch {
      await client.query('ROLLBACK');
      await client.query(begin);
      await client.query('SELECT 1');
      return new Snapshot(client, config);
    }
  } catch (err) {
    await client.end().catch(() => undefined);
    throw toNightshiftError(err);
  }
}

/** Counts a window on a second connection that imports the exporting snapshot. */
export async function countInSnapshot(
  config: SourceConfig,
  snapshotId: string,
  window: Window,
): Promise<number> {
  const client = await connect(config, 'count');
  try {
    await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    await client.query(`SET TRANSACTION SNAPSHOT ${pg.escapeLiteral(snapshotId)}`);
    const snapshot = new Snapshot(client, config);
    return await snapshot.count(window);
  } finally {
    await client.query('ROLLBACK').catch(() => undefined);
    await client.end().catch(() => undefined);
  }
}

/** A window that exceeds validation.max_rows fails before any data moves. */
export function checkMaxRows(count: number, max: number | undefined): void {
  if (max !== undefined && count > max) {
    throw validationError(`the window holds ${count} rows, more than validation.max_rows (${max})`, {
      hint: 'raise validation.max_rows, or set source.max_rows_per_run to drain the backlog over several runs',
    });
  }
}
