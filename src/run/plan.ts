/**
 * Window planning: the next incremental window after the checkpoint, the whole source for
 * `replace`, or explicit backfill windows over the cursor; and the `plan` command's report of
 * what the next run would do, which moves nothing.
 */

import type { Config } from '../config/schema.js';
import { parseDuration } from '../config/schema.js';
import { dataPrefix, manifestKey, newRunId, partFileName } from '../core/layout.js';
import { describeWindow, type Window } from '../core/window.js';
import { configError } from '../errors.js';
import { type CursorInfo, openSnapshot, type Snapshot } from '../source/postgres.js';
import { type CheckpointRecord, checkpointKey, readCheckpoint } from '../state/checkpoint.js';
import { leaseKey } from '../state/lease.js';
import type { Backends } from '../warehouse/warehouse.js';
import { buildManifest } from './manifest.js';

/** Most windows one backfill may be split into. */
const MAX_BACKFILL_WINDOWS = 100_000;

/**
 * The window the next run moves: after the watermark (or source.start), up to the newest row
 * the lag allows; undefined when there is nothing new. `replace` moves the whole source.
 */
export async function planWindow(
  snapshot: Snapshot,
  config: Config,
  cursor: CursorInfo | undefined,
  watermark: readonly string[] | null | undefined,
  backfill: Window | undefined,
): Promise<Window | undefined> {
  if (backfill) return backfill;
  if (config.warehouse.mode === 'replace' || !cursor) return { columns: [], types: [] };
  await snapshot.checkCursorNulls();
  const columns = [config.source.cursor as string, ...(config.source.key ?? [])];
  const types = [cursor.type, ...cursor.keyTypes];
  let lower: Window | undefined;
  if (watermark) {
    lower = { columns, types, lower: { values: watermark, inclusive: false } };
  } else if (config.source.start !== undefined) {
    lower = { columns, types, lower: { values: [config.source.start], inclusive: false } };
  }
  const upper = await snapshot.upperBound(cursor, lower);
  if (!upper) return undefined;
  return { columns, types, lower: lower?.lower, upper };
}

/**
 * Checks a backfill's arguments as far as they can be without the database: --from and --to both
 * integers or both dates/times, --from before --to, --step of the same kind. Whether they suit
 * the cursor's type is for splitBackfill, once the type is read.
 */
export function checkBackfillArgs(from: string, to: string, step?: string): void {
  const integers = /^-?\d+$/.test(from) && /^-?\d+$/.test(to);
  if (integers) {
    if (BigInt(from) >= BigInt(to)) throw configError('backfill: --from must be before --to');
    if (step !== undefined) parseIntegerStep(step);
    return;
  }
  if (/^-?\d+$/.test(from) || /^-?\d+$/.test(to)) {
    throw configError(
      `backfill: --from ${from} and --to ${to} must both be integers or both dates or times`,
      {
        hint: 'nightshift backfill --from 2024-01-01 --to 2024-02-01 --step 1d',
      },
    );
  }
  if (parseTime(from, '--from') >= parseTime(to, '--to')) {
    throw configError('backfill: --from must be before --to');
  }
  if (step !== undefined) parseTimeStep(step);
}

/** Splits [from, to) on the cursor into windows of `step` (a duration, or a number for integers). */
export function splitBackfill(
  cursor: CursorInfo,
  column: string,
  from: string,
  to: string,
  step?: string,
): Window[] {
  const base = { columns: [column], types: [cursor.type] };
  const window = (lo: string, hi: string): Window => ({
    ...base,
    lower: { values: [lo], inclusive: true },
    upper: { values: [hi], inclusive: false },
  });
  if (cursor.kind === 'integer' || cursor.kind === 'numeric') {
    if (!/^-?\d+$/.test(from) || !/^-?\d+$/.test(to)) {
      throw configError(`backfill: --from and --to must be integers for the ${cursor.type} cursor ${column}`);
    }
    const lo = BigInt(from);
    const hi = BigInt(to);
    if (lo >= hi) throw configError('backfill: --from must be before --to');
    const size = step === undefined ? hi - lo : BigInt(parseIntegerStep(step));
    return collect(lo, hi, size, (a, b) => window(a.toString(), b.toString()));
  }
  const lo = parseTime(from, '--from');
  const hi = parseTime(to, '--to');
  if (lo >= hi) throw configError('backfill: --from must be before --to');
  const size = step === undefined ? hi - lo : parseTimeStep(step);
  if (cursor.kind === 'date' && size % 86_400_000 !== 0) {
    throw configError('backfill: --step must be whole days for a date cursor');
  }
  const render = (ms: number) => formatTime(ms, cursor.kind);
  return collect(lo, hi, size, (a, b) => window(render(a), render(b)));
}

function collect<T extends number | bigint>(lo: T, hi: T, size: T, make: (a: T, b: T) => Window): Window[] {
  const out: Window[] = [];
  let a = lo;
  const add = (x: T, y: T) =>
    (typeof x === 'bigint' ? x + (y as bigint) : (x as number) + (y as number)) as T;
  while (a < hi) {
    const next = add(a, size);
    const b = next < hi ? next : hi;
    out.push(make(a, b));
    a = b;
    if (out.length > MAX_BACKFILL_WINDOWS) {
      throw configError(`backfill: more than ${MAX_BACKFILL_WINDOWS} windows; use a larger --step`);
    }
  }
  return out;
}

function parseIntegerStep(step: string): number {
  if (!/^\d+$/.test(step) || Number(step) <= 0) {
    throw configError(`backfill: --step ${step} must be a positive integer for an integer cursor`);
  }
  return Number(step);
}

function parseTimeStep(step: string): number {
  const ms = /^(\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/.test(step) ? parseDuration(step) : Number.NaN;
  if (!(ms > 0)) throw configError(`backfill: --step ${step} is not a duration such as 1d, 6h or 15m`);
  return ms;
}

function parseTime(text: string, flag: string): number {
  const iso = /^\d{4}-\d{2}-\d{2}$/.test(text) ? `${text}T00:00:00Z` : text;
  const hasZone = /(Z|[+-]\d{2}(:?\d{2})?)$/.test(iso);
  const ms = Date.parse(hasZone || !iso.includes('T') ? iso : `${iso}Z`);
  if (Number.isNaN(ms)) {
    throw configError(
      `backfill: ${flag} ${text} is not a date or time; use 2024-01-01 or 2024-01-01T06:00:00Z`,
    );
  }
  return ms;
}

/** PostgreSQL-readable UTC text for a cursor bound. */
function formatTime(ms: number, kind: CursorInfo['kind']): string {
  const iso = new Date(ms).toISOString();
  if (kind === 'date') return iso.slice(0, 10);
  const text = `${iso.slice(0, 10)} ${iso.slice(11, 23)}`;
  return kind === 'timestamptz' ? `${text}+00` : text;
}

/** What `nightshift plan` reports. */
export interface PlanReport {
  job: string;
  stage: string;
  checkpoint: { url: string; watermark: string[] | null; committed_at: string | null; run_id: string | null };
  lease: string;
  window: { text: string; lower: string[] | null; upper: string[] | null } | null;
  rows: number;
  columns: { name: string; pg_type: string; parquet: string; note?: string }[];
  objects: { data: string; manifest: string };
  warehouse: { type: string; table: string; mode: string };
  copy: string | null;
}

/** Plans the next incremental run without taking the lease or touching anything. */
export async function planNext(config: Config, backends: Backends): Promise<PlanReport> {
  const store = await backends.createStore(config);
  const checkpoint =
    config.warehouse.mode === 'replace' ? undefined : await readCheckpoint(store, config.job);
  const record: CheckpointRecord | undefined = checkpoint?.record;
  const snapshot = await openSnapshot(config.source);
  try {
    const described = await snapshot.describeSource();
    const cursor = await snapshot.cursorInfo(described);
    const window = await planWindow(snapshot, config, cursor, record?.watermark, undefined);
    const runId = newRunId();
    const base = store.url.replace(/\/$/, '');
    const report: PlanReport = {
      job: config.job,
      stage: store.url,
      checkpoint: {
        url: `${base}/${checkpointKey(config.job)}`,
        watermark: record?.watermark ?? null,
        committed_at: record?.committed_at ?? null,
        run_id: record?.run_id ?? null,
      },
      lease: `${base}/${leaseKey(config.job)}`,
      window: null,
      rows: 0,
      columns: [],
      objects: {
        data: `${base}/${dataPrefix(config.job, runId)}${partFileName(0)}`,
        manifest: `${base}/${manifestKey(config.job, runId)}`,
      },
      warehouse: { type: config.warehouse.type, table: config.warehouse.table, mode: config.warehouse.mode },
      copy: null,
    };
    if (!window) return report;
    const measured = await snapshot.measureNumerics(described, window);
    const plans = await snapshot.planColumns(described, measured);
    report.window = {
      text: describeWindow(window),
      lower: window.lower ? [...window.lower.values] : null,
      upper: window.upper ? [...window.upper.values] : null,
    };
    report.rows = await snapshot.count(window);
    report.columns = buildManifest({
      job: config.job,
      runId,
      stage: store.url,
      window,
      plans,
      files: [],
    }).columns;
    report.copy = await snapshot.copyStatement(plans, window);
    return report;
  } finally {
    await snapshot.close();
    await store.close?.();
  }
}

/** The backfill windows for [from, to) split by step, typed by the cursor column. */
export async function backfillWindows(
  config: Config,
  from: string,
  to: string,
  step?: string,
): Promise<Window[]> {
  if (!config.source.cursor)
    throw configError('backfill needs source.cursor: the column the windows are ranges of');
  if (config.warehouse.mode === 'replace') {
    throw configError('backfill replaces windows; warehouse.mode replace reloads the whole table instead');
  }
  const snapshot = await openSnapshot(config.source);
  try {
    const cursor = await snapshot.cursorInfo(await snapshot.describeSource());
    if (!cursor) throw configError('backfill needs source.cursor');
    return splitBackfill(cursor, config.source.cursor, from, to, step);
  } finally {
    await snapshot.close();
  }
}
