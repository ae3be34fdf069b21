/**
 * The embedded DuckDB warehouse: the default, for local runs, backfills into a file, and tests.
 * A load is one transaction: create the table from the Parquet schema when missing, remove what
 * the window (append) or the keys (merge) replace, insert the run's files, compare the inserted
 * count with the files' rows, and only then commit.
 */
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { DuckDBConnection, DuckDBInstance, DuckDBValue } from '@duckdb/node-api';
import type { Config } from '../../config/schema.js';
import { failpoint } from '../../core/failpoint.js';
import { type Window, windowPredicate } from '../../core/window.js';
import { configError, internalError, NightshiftError, validationError } from '../../errors.js';
import { type AccessNeeds, type Identity, localIdentity } from '../../identity/principal.js';
import type { ObjectStore } from '../../store/store.js';
import type {
  LoadMode,
  LoadPlan,
  LoadRequest,
  LoadResult,
  LoadSession,
  StagedFile,
  Warehouse,
} from '../warehouse.js';

export interface DuckDbOptions {
  path: string;
  memoryLimitMb: number;
  threads: number;
  /** Storage format of a new file (storage_compatibility_version); DuckDB's own default when unset. */
  storageVersion?: string;
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
  /** Small parts, so that loading starts while the export is still running. */
  readonly preferredPartMb = 32;
  private readonly options: DuckDbOptions;
  private readonly store: ObjectStore;
  private instance: DuckDBInstance | undefined;

  constructor(options: DuckDbOptions, store: ObjectStore) {
    this.options = options;
    this.store = store;
  }

  /** Whether staged files are read in place (a local stage) rather than downloaded. */
  get isLocal(): boolean {
    return this.store.localPath !== undefined;
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
          // Row order inside a load does not matter to a table, and without it DuckDB inserts in
          // parallel within a small memory limit.
          preserve_insertion_order: 'false',
          temp_directory: join(this.options.tempDir, 'duckdb-spill'),
          ...(this.options.storageVersion && { storage_compatibility_version: this.options.storageVersion }),
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

  /** Local paths of the files; a remote stage's files are downloaded first (into `dir`). */
  async localFiles(files: readonly StagedFile[], dir: string, signal?: AbortSignal): Promise<string[]> {
    const local = this.store.localPath?.bind(this.store);
    if (local) return files.map((f) => local(f.key));
    await mkdir(dir, { recursive: true });
    const paths: string[] = [];
    for (const file of files) {
      signal?.throwIfAborted();
      const path = join(dir, file.key.replaceAll('/', '_'));
      await this.store.download(file.key, path);
      paths.push(path);
    }
    return paths;
  }

  async load(request: LoadRequest): Promise<LoadResult> {
    const session = await this.begin(request);
    try {
      await session.add(request.files);
    } catch (err) {
      await session.abort();
      throw err;
    }
    return session.commit(request.expectedRows);
  }

  async begin(plan: LoadPlan): Promise<LoadSession> {
    return new DuckDbLoadSession(this, plan, join(this.options.tempDir, `load-${plan.runId}`));
  }

  /** A connection with an open transaction (the load session's). */
  async transaction(table: string): Promise<DuckDBConnection> {
    const con = await this.connect();
    try {
      await con.run('BEGIN TRANSACTION');
      return con;
    } catch (err) {
      con.closeSync();
      throw translate(err, table);
    }
  }

  async tableExists(con: DuckDBConnection, table: { schema: string; name: string }): Promise<boolean> {
    const n = await scalar(
      con,
      'SELECT count(*) FROM information_schema.tables WHERE table_schema = $1 AND table_name = $2',
      [table.schema, table.name],
    );
    return n > 0;
  }

  /** The window predicate with each bound cast to the table's own column type. */
  async predicate(
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

  /** Runs a read-only query on the warehouse file and returns rows as objects (the demo's report). */
  select(sql: string): Promise<Record<string, unknown>[]> {
    return this.query(sql);
  }

  /** Runs a query on the warehouse file and returns rows as objects. */
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

  async identity(): Promise<Identity> {
    return localIdentity(`the DuckDB file ${this.options.path}`);
  }

  accessNeeded(table: string, mode: LoadMode): AccessNeeds {
    const { path, tempDir } = this.options;
    return {
      part: 'warehouse',
      target: `DuckDB file ${path}, table ${table} (${mode})`,
      grants: [
        { permission: 'read, write, create', on: path, why: 'the database file, created when missing' },
        {
          permission: 'write, create, delete',
          on: `${dirname(path)}/`,
          why: "DuckDB's write-ahead log beside the file",
        },
        {
          permission: 'write, create, delete',
          on: join(tempDir, 'duckdb-spill'),
          why: 'spill when a load exceeds memory_limit_mb',
        },
        ...(this.isLocal
          ? []
          : [
              {
                permission: 'write, delete',
                on: `${tempDir}/`,
                why: 'parts downloaded from the stage for the load',
              },
            ]),
      ],
    };
  }
}

/**
 * One DuckDB transaction that takes parts as they are staged. The table is created from the first
 * file's Parquet schema; the window (append) or the whole table (replace) is cleared at the first
 * file, and merge removes the keys of each file before inserting it. Nothing is visible before
 * commit, which checks the inserted count first.
 */
class DuckDbLoadSession implements LoadSession {
  private con: DuckDBConnection | undefined;
  private tableIsNew = false;
  private inserted = 0;
  private replaced = 0;
  private closed = false;
  private readonly table: ReturnType<typeof splitTable>;
  private readonly onAbort = () => this.con?.interrupt();

  constructor(
    private readonly warehouse: DuckDbWarehouse,
    private readonly plan: LoadPlan,
    private readonly downloads: string,
  ) {
    this.table = splitTable(plan.table);
    plan.signal?.addEventListener('abort', this.onAbort, { once: true });
  }

  /** Opens the transaction at the first file, so a run that stages nothing never touches the file. */
  private async prepare(firstFile: string): Promise<DuckDBConnection> {
    const con = await this.warehouse.transaction(this.plan.table);
    this.con = con;
    const { table, plan } = this;
    const source = parquetFiles([firstFile]);
    await con.run(`CREATE SCHEMA IF NOT EXISTS ${quote(table.schema)}`);
    const exists = await this.warehouse.tableExists(con, table);
    if (plan.mode === 'replace') {
      this.replaced = exists ? await scalar(con, `SELECT count(*) FROM ${table.sql}`) : 0;
      await con.run(`CREATE OR REPLACE TABLE ${table.sql} AS SELECT * FROM ${source} LIMIT 0`);
      this.tableIsNew = true;
    } else if (!exists) {
      await con.run(`CREATE TABLE ${table.sql} AS SELECT * FROM ${source} LIMIT 0`);
      this.tableIsNew = true;
    } else if (plan.mode === 'append') {
      const { sql, values } = await this.warehouse.predicate(con, table, plan.window);
      this.replaced = await scalar(con, `DELETE FROM ${table.sql} WHERE ${sql}`, values);
    }
    return con;
  }

  async add(files: readonly StagedFile[]): Promise<void> {
    if (!files.length) return;
    try {
      // An interrupt reaches only a statement that is running: a stop that came between them is seen here.
      this.plan.signal?.throwIfAborted();
      const paths = await this.warehouse.localFiles(files, this.downloads, this.plan.signal);
      const con = this.con ?? (await this.prepare(paths[0]));
      const source = parquetFiles(paths);
      if (this.plan.mode === 'merge' && !this.tableIsNew) {
        const keys = this.plan.key.map(quote);
        const on = keys.map((k) => `${this.table.sql}.${k} = s.${k}`).join(' AND ');
        this.replaced += await scalar(
          con,
          `DELETE FROM ${this.table.sql} USING (SELECT DISTINCT ${keys.join(', ')} FROM ${source}) AS s WHERE ${on}`,
        );
      }
      this.inserted += await scalar(con, `INSERT INTO ${this.table.sql} BY NAME SELECT * FROM ${source}`);
      await failpoint('load-submitted');
    } catch (err) {
      throw this.explain(err);
    } finally {
      if (!this.warehouse.isLocal) await rm(this.downloads, { recursive: true, force: true });
    }
  }

  async commit(expectedRows: number): Promise<LoadResult> {
    try {
      if (this.inserted !== expectedRows) {
        throw validationError(
          `DuckDB inserted ${this.inserted} rows but the files hold ${expectedRows}; the load was rolled back`,
        );
      }
      // The last point a stop can still roll the load back; COMMIT itself is not interrupted.
      this.plan.signal?.throwIfAborted();
      await this.con?.run('COMMIT');
      // The committed rows are folded from the WAL into the file now, within the load's timing and
      // the run's peak memory, rather than when the file closes after the summary. A failure here
      // loses nothing: DuckDB takes the WAL in when the file closes or next opens.
      await this.con?.run('CHECKPOINT').catch(() => undefined);
      return { rowsLoaded: this.inserted, rowsReplaced: this.replaced };
    } catch (err) {
      await this.abort();
      throw this.explain(err);
    } finally {
      this.close();
    }
  }

  async abort(): Promise<void> {
    if (this.closed) return;
    await this.con?.run('ROLLBACK').catch(() => undefined);
    this.close();
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.plan.signal?.removeEventListener('abort', this.onAbort);
    this.con?.closeSync();
  }

  private explain(err: unknown): Error {
    if (this.plan.signal?.aborted && !(err instanceof NightshiftError)) {
      return new NightshiftError('terminated', 'the DuckDB load was interrupted', { cause: err });
    }
    return translate(err, this.plan.table);
  }
}

/**
 * The staged files as a table. A local stage's paths hold dt=/run= folders, which DuckDB would
 * otherwise read back as two extra columns (hive partitioning).
 */
function parquetFiles(paths: readonly string[]): string {
  return `read_parquet([${paths.map(literal).join(', ')}], hive_partitioning = false)`;
}

async function scalar(con: DuckDBConnection, sql: string, values?: DuckDBValue[]): Promise<number> {
  const reader = await con.runAndReadAll(sql, values);
  const rows = reader.getRows();
  return Number(rows[0]?.[0] ?? 0);
}

function translate(err: unknown, table: string): Error {
  if (err instanceof NightshiftError) return err;
  const message = (err as Error).message ?? String(err);
  if (/Out of Memory Error/i.test(message)) {
    // The same load fails the same way on a retry: a configuration matter, not a transient one.
    return configError(
      `DuckDB ran out of memory and spill space loading into ${table}: ${message.split('\n')[0]}`,
      {
        cause: err,
        hint: 'raise warehouse.duckdb.memory_limit_mb (and the pod memory limit), or give temp_dir more room: DuckDB spills a load there until it commits',
      },
    );
  }
  if (/Binder Error|Conversion Error|Catalog Error|column/i.test(message)) {
    return configError(`DuckDB could not load into ${table}: ${message}`, {
      cause: err,
      hint: 'the table and the exported columns disagree; align the table, or load into a new table',
    });
  }
  return internalError(`DuckDB load into ${table} failed: ${message}`, { cause: err });
}

/** The embedded DuckDB warehouse for `warehouse.type: duckdb`. */
export async function create(config: Config, store: ObjectStore): Promise<Warehouse> {
  const duckdb = config.warehouse.duckdb;
  if (!duckdb) throw configError('warehouse.duckdb.path is required for warehouse.type duckdb');
  return new DuckDbWarehouse(
    {
      path: duckdb.path,
      memoryLimitMb: duckdb.memory_limit_mb,
      threads: duckdb.threads,
      storageVersion: duckdb.storage_version,
      tempDir: config.temp_dir,
    },
    store,
  );
}
