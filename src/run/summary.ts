/**
 * The run summary: the last line on stdout, the `summary` of the run manifest, the pod's
 * termination message (cut to Kubernetes' 4096 bytes) and, under Airflow, the XCom return value.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { redactor } from '../config/redact.js';
import type { RuntimeSettings } from '../config/runtime.js';
import { describeWindow, type Window } from '../core/window.js';
import { type ErrorCode, EXIT_CODES, type NightshiftError } from '../errors.js';
import { heapLimitMb } from '../memory.js';
import type { StagedFile } from '../warehouse/warehouse.js';
import type { RunContext, RunRequest } from './context.js';

export type RunStatus =
  | 'succeeded'
  | 'no_new_rows'
  | 'failed'
  | 'validation_failed'
  | 'lease_held'
  | 'terminated';

export interface RunSummary {
  job: string;
  run_id: string;
  command: 'run' | 'backfill';
  status: RunStatus;
  exit_code: number;
  window: { columns: string[]; lower: string[] | null; upper: string[] | null; text: string } | null;
  rows_source: number | null;
  rows_written: number;
  rows_loaded: number | null;
  rows_replaced: number | null;
  files: number;
  bytes: number;
  duration_ms: number;
  /** Peak resident memory of the process so far, for sizing the pod's memory limit. */
  peak_rss_mb: number;
  /** The V8 heap limit the process ran with (the entrypoint sizes it to the container's limit). */
  heap_limit_mb: number;
  stage: string;
  warehouse: { type: string; table: string; mode: string };
  checkpoint: { before: string[] | null; after: string[] | null };
  timings_ms: Record<string, number>;
  error?: { code: ErrorCode; message: string; hint?: string };
}

/** A backfill's total over its windows: printed after their summaries, so it is the last line. */
export interface BackfillSummary {
  job: string;
  command: 'backfill';
  /** The run's outcome: the last window's status (a backfill stops at its first failed window). */
  status: RunStatus;
  exit_code: number;
  from: string;
  to: string;
  step: string | null;
  windows_planned: number;
  windows_succeeded: number;
  /** Windows that ran and failed (0 or 1), and windows never started (after a failure, or when the lease was held). */
  windows_failed: number;
  windows_not_run: number;
  rows_loaded: number;
  files: number;
  bytes: number;
  duration_ms: number;
  peak_rss_mb: number;
  run_ids: string[];
  error?: RunSummary['error'];
}

/** Adds up a backfill's window summaries; `planned` is 0 when it failed before its windows were known. */
export function backfillTotal(
  request: { from: string; to: string; step?: string },
  planned: number,
  summaries: readonly RunSummary[],
  started: number,
): BackfillSummary {
  const last = summaries[summaries.length - 1];
  const ran = summaries.filter((s) => s.window !== null);
  const succeeded = ran.filter((s) => s.exit_code === 0).length;
  const failed = ran.length - succeeded;
  return {
    job: last.job,
    command: 'backfill',
    status: last.status,
    exit_code: last.exit_code,
    from: request.from,
    to: request.to,
    step: request.step ?? null,
    windows_planned: planned,
    windows_succeeded: succeeded,
    windows_failed: failed,
    windows_not_run: Math.max(0, planned - succeeded - failed),
    rows_loaded: summaries.reduce((n, s) => n + (s.rows_loaded ?? 0), 0),
    files: summaries.reduce((n, s) => n + s.files, 0),
    bytes: summaries.reduce((n, s) => n + s.bytes, 0),
    duration_ms: Date.now() - started,
    peak_rss_mb: last.peak_rss_mb,
    run_ids: summaries.map((s) => s.run_id),
    ...(last.error ? { error: last.error } : {}),
  };
}

/** Kubernetes keeps at most this many bytes of a termination message. */
const TERMINATION_LIMIT = 4096;

const STATUS_OF: Record<ErrorCode, RunStatus> = {
  internal: 'failed',
  config: 'failed',
  validation: 'validation_failed',
  lease_held: 'lease_held',
  identity: 'failed',
  transient: 'failed',
  terminated: 'terminated',
};

export function statusOf(err: NightshiftError): RunStatus {
  return STATUS_OF[err.code];
}

export function exitCodeOfStatus(status: RunStatus, err?: NightshiftError): number {
  if (err) return EXIT_CODES[err.code].exit;
  return status === 'succeeded' || status === 'no_new_rows' ? 0 : EXIT_CODES.internal.exit;
}

export function windowSummary(window: Window | undefined): RunSummary['window'] {
  if (!window) return null;
  return {
    columns: [...window.columns],
    lower: window.lower ? [...window.lower.values] : null,
    upper: window.upper ? [...window.upper.values] : null,
    text: describeWindow(window),
  };
}

/** The summary as one JSON line, its string values redacted before it is serialised. */
export function summaryLine(summary: RunSummary): string {
  return JSON.stringify(redactor.redactValue({ msg: 'run summary', ...summary }));
}

/** The summary cut to fit a termination message: detail goes first, the contract fields stay. */
export function terminationMessage(summary: RunSummary): string {
  const full = summaryLine(summary);
  if (Buffer.byteLength(full) <= TERMINATION_LIMIT) return full;
  const slim: RunSummary = {
    ...summary,
    timings_ms: {},
    window: summary.window && { ...summary.window, text: '' },
  };
  if (slim.error) slim.error = { ...slim.error, hint: undefined };
  let line = summaryLine(slim);
  if (Buffer.byteLength(line) <= TERMINATION_LIMIT) return line;
  if (slim.window) slim.window = { ...slim.window, lower: null, upper: null };
  if (slim.error) slim.error = { ...slim.error, message: slim.error.message.slice(0, 1000) };
  line = summaryLine(slim);
  return Buffer.byteLength(line) <= TERMINATION_LIMIT ? line : line.slice(0, TERMINATION_LIMIT);
}

/** Writes the termination message and the Airflow XCom value where their locations exist. */
export async function publishSummary(summary: RunSummary, runtime: RuntimeSettings): Promise<void> {
  // Kubernetes creates the file; elsewhere there is nothing to write to.
  if (existsSync(runtime.terminationLog)) {
    await writeFile(runtime.terminationLog, terminationMessage(summary)).catch(() => undefined);
  }
  if (existsSync(runtime.xcomDir)) {
    await writeFile(join(runtime.xcomDir, 'return.json'), summaryLine(summary)).catch(() => undefined);
  }
}

/** Facts gathered while a window runs, turned into its summary at the end. */
export interface Facts {
  runId: string;
  window: Window | undefined;
  rowsSource: number | null;
  rowsWritten: number;
  rowsLoaded: number | null;
  rowsReplaced: number | null;
  files: StagedFile[];
  checkpointBefore: string[] | null;
  checkpointAfter: string[] | null;
  timings: Record<string, number>;
}

export function emptyFacts(runId: string): Facts {
  return {
    runId,
    window: undefined,
    rowsSource: null,
    rowsWritten: 0,
    rowsLoaded: null,
    rowsReplaced: null,
    files: [],
    checkpointBefore: null,
    checkpointAfter: null,
    timings: {},
  };
}

/** Returns a lap function that records how long each stage took (a stage timed twice adds up). */
export function timer(facts: Facts): (stage: string) => void {
  let last = Date.now();
  return (stage) => {
    const now = Date.now();
    facts.timings[stage] = (facts.timings[stage] ?? 0) + now - last;
    last = now;
  };
}

/** The process's peak resident memory so far, in MiB. */
export function peakRssMb(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

/** How a window's run ended, for its summary. */
export interface Outcome {
  ctx: Pick<RunContext, 'config' | 'log'>;
  request: RunRequest;
  facts: Facts;
  /** When the window's run started (ms since the epoch). */
  started: number;
  /** The stage's URL as the store reports it. */
  stage: string;
  /** What stopped it, if anything. */
  err?: NightshiftError;
  /** The status when nothing went wrong. */
  okStatus?: RunStatus;
}

/** The summary of a window's run; a failure is also logged, as a warning when it is not one. */
export function summarize({ ctx, request, facts, started, stage, err, okStatus }: Outcome): RunSummary {
  const status = err ? statusOf(err) : (okStatus ?? 'succeeded');
  const summary: RunSummary = {
    job: ctx.config.job,
    run_id: facts.runId,
    command: request.kind === 'backfill' ? 'backfill' : 'run',
    status,
    exit_code: exitCodeOfStatus(status, err),
    window: windowSummary(facts.window),
    rows_source: facts.rowsSource,
    rows_written: facts.rowsWritten,
    rows_loaded: facts.rowsLoaded,
    rows_replaced: facts.rowsReplaced,
    files: facts.files.length,
    bytes: facts.files.reduce((n, f) => n + f.bytes, 0),
    duration_ms: Date.now() - started,
    peak_rss_mb: peakRssMb(),
    heap_limit_mb: heapLimitMb(),
    stage,
    warehouse: {
      type: ctx.config.warehouse.type,
      table: ctx.config.warehouse.table,
      mode: ctx.config.warehouse.mode,
    },
    checkpoint: { before: facts.checkpointBefore, after: facts.checkpointAfter },
    timings_ms: facts.timings,
  };
  if (err) {
    summary.error = { code: err.code, message: err.message, ...(err.hint ? { hint: err.hint } : {}) };
    const level: 'warn' | 'error' = err.code === 'lease_held' || err.code === 'terminated' ? 'warn' : 'error';
    ctx.log[level]({ err }, err.message);
  }
  return summary;
}
