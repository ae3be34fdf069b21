/**
 * The embedded DuckDB warehouse: the default, for local runs, backfills into a file, and tests.
 * A load is one transaction: create the table from the Parquet schema when missing, remove what
 * the window (append) or the keys (merge) replace, insert the run's files, compare the inserted
 * count with the files' rows, and only then commit.
 */
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { DuckDBConnection, DuckDBInstance, DuckDBValue } from '@duckdb/node-api';
import { configError, NightshiftError, validationError } from '../errors.js';
import { type Window, windowPredicate } from '../run/window.js';
import type { ObjectStore } from '../store/store.js';
import type { LoadRequest, LoadResult, Warehouse } from './warehouse.js';

export interface DuckDbOptions {
  path: string;
  memoryLimitMb: number;
  threads: number;
  /** Where files from a remote stage are downloaded before loading. */
  tempDir: string;
}

const quote = (name: string) => `"${name.replaceAll('"', '""')}"`;
const literal = (text: string) => `'${text.replaceAll("'", "''")}'`;

/** `schema.table` or `table` (schema `main`). */
function splitTable(table: string): { schema: string; name: string; sql: string } {
  const parts = table.split('.');
  if (parts.length > 2 || parts.some((p) => !p)) {
    throw configError(`warehouse.table: "${table}" is not a table name; use table or schema.table`);
  }
  const [schema, name] = parts.length === 2 ? parts : ['main', parts[0]];
  return { schema, name, sql: `${quote(schema)}.${quote(name)}` };
}

export class DuckDbWarehouse implements Warehouse {
  readonly kind = 'duckdb';
  private readonly options: DuckDbOptions;
  private readonly store: ObjectStore;
  private instance: DuckDBInstance | undefined;

  constructor(options: DuckDbOptions, store: ObjectStore) {
    this.options = options;
    this.store = store;
  }

  private async connect(): Promise<DuckDBConnection> {
    if (!this.instance) {
      const { DuckDBInstance } = await import('@duckdb/node-api');
      await mkdir(dirname(this.options.path), { recursive: true });
      try {
        this.instance = await DuckDBInstance.create(this.options.path, {
          memory_limit: `${this.options.memoryLimitMb}MB`,
          threads: String(this.options.threads),
          autoinstall_known_extensions: 'false',
          temp_directory: join(this.options.tempDir, 'duckdb-spill'),
        });
      } catch (err) {
        const message = (err as Error).message;
        if (/lock/i.test(message)) {
          throw new NightshiftError(
            'transient',
            `the DuckDB file ${this.options.path} is in use by another process`,
            {
              cause: err,
              hint: 'close other programs that have it open (a DuckDB shell, a notebook) and run again',
            },
          );
        }
        throw configError(`cannot open the DuckDB file ${this.options.path}: ${message}`, { cause: err });
      }
    }
    const con = await this.instance.connect();
    // Bounds without an offset, and TIMESTAMPTZ output, are in UTC whatever the host's zone.
    await con.run("SET TimeZone = 'UTC'");
    return con;
  }

  /** Local paths of the files; a remote stage's files are downloaded first. */
  private async localFiles(request: LoadRequest): Promise<{ paths: string[]; cleanup: () => Promise<void> }> {
    const local = this.store.localPath?.bind(this.store);
    if (local) return { paths: request.files.map((f) => local(f.key)), cleanup: async () => {} };
    const dir = join(this.options.tempDir, `load-${request.runId}`);
    await mkdir(dir, { recursive: true });
    const paths: string[] = [];
    for (const [i, file] of request.files.entries()) {
      request.signal?.throwIfAborted();
      const path = join(dir, `part-${String(i).padStart(5, '0')}.parquet`);
      await this.store.download(file.key, path);
      paths.push(path);
    }
    return { paths, cleanup: () => rm(dir, { recursive: true, force: true }) };
  }

  async load(request: LoadRequest): Promise<LoadResult> {
    const table = splitTable(request.table);
    const { paths, cleanup } = await this.localFiles(request);
    const con = await this.connect();
    const files = `[${paths.map(literal).join(', ')}]`;
    const source = `read_parquet(${files})`;
    const onAbort = () => con.interrupt();
    request.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      await con.run('BEGIN TRANSACTION');
      await con.run(`CREATE SCHEMA IF NOT EXISTS ${quote(table.schema)}`);
      let replaced = 0;
      if (request.mode === 'replace') {
        replaced = (await this.tableExists(con, table))
          ? await scalar(con, `SELECT count(*) FROM ${table.sql}`)
          : 0;
        await con.run(`CREATE OR REPLACE TABLE ${table.sql} AS SELECT * FROM ${source} LIMIT 0`);
      } else if (!(await this.tableExists(con, table))) {
        await con.run(`CREATE TABLE ${table.sql} AS SELECT * FROM ${source} LIMIT 0`);
      } else if (request.mode === 'append') {
        const { sql, values } = await this.predicate(con, table, request.window);
        replaced = await scalar(con, `DELETE FROM ${table.sql} WHERE ${sql}`, values);
      } else {
        const keys = request.key.map(quote);
        const join = keys.map((k) => `${table.sql}.${k} = s.${k}`).join(' AND ');
        replaced = await scalar(
          con,
          `DELETE FROM ${table.sql} USING (SELECT DISTINCT ${keys.join(', ')} FROM ${source}) AS s WHERE ${join}`,
        );
      }
      const inserted = await scalar(con, `INSERT INTO ${table.sql} BY NAME SELECT * FROM ${source}`);
      if (inserted !== request.expectedRows) {
        await con.run('ROLLBACK');
        throw validationError(
          `DuckDB inserted ${inserted} rows but the files hold ${request.expectedRows}; the load was rolled back`,
        );
      }
      await con.run('COMMIT');
      return { rowsLoaded: inserted, rowsReplaced: replaced };
    } catch (err) {
      await con.run('ROLLBACK').catch(() => undefined);
      if (request.signal?.aborted)
        throw new NightshiftError('terminated', 'the DuckDB load was interrupted', { cause: err });
      throw translate(err, request.table);
    } finally {
      request.signal?.removeEventListener('abort', onAbort);
      con.closeSync();
      await cleanup();
    }
  }

  private async tableExists(
    con: DuckDBConnection,
    table: { schema: string; name: string },
  ): Promise<boolean> {
    const n = await scalar(
      con,
      'SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2',
      [table.schema, table.name],
    );
    return n > 0;
  }

  /** The window predicate with each bound cast to the table's own column type. */
  private async predicate(
    con: DuckDBConnection,
    table: { schema: string; name: string },
    window: Window,
  ): Promise<{ sql: string; values: DuckDBValue[] }> {
    const reader = await con.runAndReadAll(
      'SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = $1 AND table_name = $2',
      [table.schema, table.name],
    );
    const types = new Map(reader.getRows().map(([name, type]) => [String(name), String(type)]));
    const values: DuckDBValue[] = [];
    const sql = windowPredicate(window, {
      quote,
      param: (value, index) => {
        const type = types.get(window.columns[index]);
        if (!type) {
          throw configError(
            `warehouse.table ${table.schema}.${table.name} has no column ${window.columns[index]}, which the window is defined on`,
          );
        }
        values.push(value);
        return `CAST($${values.length} AS ${type})`;
      },
    });
    return { sql, values };
  }

  async countWindow(tableName: string, window: Window): Promise<number | undefined> {
    const table = splitTable(tableName);
    const con = await this.connect();
    try {
      if (!(await this.tableExists(con, table))) return undefined;
      const { sql, values } = await this.predicate(con, table, window);
      return await scalar(con, `SELECT count(*) FROM ${table.sql} WHERE ${sql}`, values);
    } finally {
      con.closeSync();
    }
  }

  async check(tableName: string): Promise<void> {
    splitTable(tableName);
    const con = await this.connect();
    try {
      await con.run('CREATE TEMP TABLE nightshift_check AS SELECT 1 AS ok');
      await con.run('DROP TABLE nightshift_check');
    } finally {
      con.closeSync();
    }
  }

  /** Runs a query on the warehouse file and returns rows as objects (the demo's report). */
  async query(sql: string): Promise<Record<string, unknown>[]> {
    const con = await this.connect();
    try {
      const reader = await con.runAndReadAll(sql);
      return reader.getRowObjectsJson() as Record<string, unknown>[];
    } finally {
      con.closeSync();
    }
  }

  async close(): Promise<void> {
    this.instance?.closeSync();
    this.instance = undefined;
  }
}

async function scalar(con: DuckDBConnection, sql: string, values?: DuckDBValue[]): Promise<number> {
  const reader = await con.runAndReadAll(sql, values);
  const rows = reader.getRows();
  return Number(rows[0]?.[0] ?? 0);
}

function translate(err: unknown, table: string): Error {
  if (err instanceof NightshiftError) return err;
  const message = (err as Error).message ?? String(err);
  if (/Binder Error|Conversion Error|Catalog Error|column/i.test(message)) {
    return configError(`DuckDB could not load into ${table}: ${message}`, {
      cause: err,
      hint: 'the table and the exported columns disagree; align the table, or load into a new table',
    });
  }
  return new NightshiftError('internal', `DuckDB load into ${table} failed: ${message}`, { cause: err });
}
