/**
 * The Warehouse port: load exactly a run's staged Parquet files with the warehouse's own bulk
 * load, idempotently per window, and report how many rows it loaded.
 */
import type { Config } from '../config/schema.js';
import type { Window } from '../core/window.js';
import type { AccessNeeds, Identity } from '../identity/principal.js';
import type { ColumnSpec } from '../parquet/schema.js';
import type { ObjectStore, StoreFactory } from '../store/store.js';

/** One staged part file, as the run manifest lists it. */
export interface StagedFile {
  /** Object key relative to the stage root. */
  readonly key: string;
  /** URL the warehouse reads it from. */
  readonly url: string;
  readonly rows: number;
  readonly bytes: number;
  readonly sha256: string;
}

export type LoadMode = 'append' | 'merge' | 'replace';

export interface LoadRequest {
  readonly job: string;
  readonly runId: string;
  /** Target table, `schema.table` or `table`. */
  readonly table: string;
  readonly mode: LoadMode;
  /** Exactly the files of this run; never a prefix or a glob. */
  readonly files: readonly StagedFile[];
  /** The Parquet columns of the files, in order. */
  readonly columns: readonly ColumnSpec[];
  /** The window the files hold: `append` replaces the warehouse's rows in it. */
  readonly window: Window;
  /** Key columns `merge` upserts on. */
  readonly key: readonly string[];
  /** Rows the files hold: a warehouse that can check inside its transaction rolls back on a difference. */
  readonly expectedRows: number;
  /** Fires on SIGTERM. */
  readonly signal?: AbortSignal;
}

export interface LoadResult {
  /** Rows the warehouse reports it loaded. */
  readonly rowsLoaded: number;
  /** Rows removed first (the window's old rows in `append`, replaced keys in `merge`). */
  readonly rowsReplaced?: number;
  /** The warehouse's id for the load (job id, query id). */
  readonly loadId?: string;
}

/** What a load is about before its files are known: for loads that start while the export runs. */
export type LoadPlan = Omit<LoadRequest, 'files' | 'expectedRows'>;

/** A load whose transaction stays open while files are added; nothing is visible before commit. */
export interface LoadSession {
  /** Loads more staged files into the open transaction. */
  add(files: readonly StagedFile[]): Promise<void>;
  /** Compares the rows loaded with `expectedRows`, then commits, or rolls back and throws (exit 3). */
  commit(expectedRows: number): Promise<LoadResult>;
  /** Rolls back everything added. */
  abort(): Promise<void>;
}

export interface Warehouse {
  /** Backend name for logs and the summary. */
  readonly kind: string;

  /** Part file size (MB) this warehouse loads best, used when parquet.part_size_mb is not set. */
  readonly preferredPartMb?: number;

  /** Loads the request's files into its table in one transaction. */
  load(request: LoadRequest): Promise<LoadResult>;

  /**
   * Starts a load that takes each part as soon as it is staged, so loading overlaps the export.
   * Warehouses whose bulk load takes the whole file list at once leave this out.
   */
  begin?(plan: LoadPlan): Promise<LoadSession>;

  /** Rows the table holds in a window (validation and tests); undefined if the table is missing. */
  countWindow?(table: string, window: Window): Promise<number | undefined>;

  /** Checks the warehouse can be reached and written (preflight). */
  check?(table: string): Promise<void>;

  /** Releases connections. */
  close(): Promise<void>;
  /** Runs a read-only query and returns its rows as objects (reports such as the demo's). */
  select?(sql: string): Promise<Record<string, unknown>[]>;

  /** Who the warehouse is reached as (mechanism and principal), for `whoami`; never a secret. */
  identity?(): Promise<Identity>;

  /** The least-privilege access loading `table` in `mode` needs, for `nightshift iam`. */
  accessNeeded?(table: string, mode: LoadMode): AccessNeeds;
}

/** Builds the warehouse a job's configuration names, over its stage (see src/backends.ts). */
export type WarehouseFactory = (config: Config, store: ObjectStore) => Promise<Warehouse>;

/** The factories the run, the preflight and the demo are handed: they know only the ports. */
export interface Backends {
  createStore: StoreFactory;
  createWarehouse: WarehouseFactory;
}
