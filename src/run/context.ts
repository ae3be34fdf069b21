/**
 * What a run is given by the command that starts it, and what it is asked to move.
 */
import type { RuntimeSettings } from '../config/runtime.js';
import type { Config } from '../config/schema.js';
import type { Window } from '../core/window.js';
import type { Logger } from '../log.js';
import type { Lease } from '../state/lease.js';
import type { ObjectStore } from '../store/store.js';
import type { Backends, Warehouse } from '../warehouse/warehouse.js';
import type { ProgressMode } from './progress.js';
import type { BackfillSummary, RunSummary } from './summary.js';

export interface RunContext {
  config: Config;
  log: Logger;
  /** Fires on SIGTERM. */
  signal: AbortSignal;
  runtime: RuntimeSettings;
  progress: ProgressMode;
  /** Builds the stage and the warehouse the configuration names. */
  backends: Backends;
  /** Written with each finished run's summary line (the CLI prints it last). */
  onSummary?: (summary: RunSummary, line: string) => void;
  /** A backfill's total, after the summaries of its windows (the CLI prints it last). */
  onBackfillSummary?: (total: BackfillSummary) => void;
}

/** What to move: the next incremental window, or explicit backfill windows [from, to) over the cursor. */
export type RunRequest =
  | { kind: 'incremental' }
  | { kind: 'backfill'; from: string; to: string; step?: string };

/** What one window's run works with: the parts the whole run holds, and which window it is. */
export interface WindowArgs {
  store: ObjectStore;
  lease: Lease;
  warehouse: Warehouse;
  /** Fires on SIGTERM or a lost lease. */
  signal: AbortSignal;
  runId: string;
  /** The backfill window, or undefined for the next incremental window. */
  window: Window | undefined;
  request: RunRequest;
}
