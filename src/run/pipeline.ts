/**
 * One run, as data flows: lease -> checkpoint claim -> snapshot -> plan the window -> count and
 * COPY in the same snapshot -> Parquet parts under the temp dir -> upload each as it closes ->
 * manifest -> warehouse load of exactly those files -> validate the counts -> commit the
 * checkpoint -> release the lease -> summary. Nothing moves the checkpoint but a validated load.
 */
import { mkdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { redactedConfig } from '../config/load.js';
import type { RuntimeSettings } from '../config/runtime.js';
import type { Config } from '../config/schema.js';
import { untilAborted } from '../core/abort.js';
import { failpoint } from '../core/failpoint.js';
import { newRunId, partFileName } from '../core/layout.js';
import { noSpaceForParts, partBytes } from '../core/parts.js';
import { describeWindow, type Window } from '../core/window.js';
import { configError, NightshiftError, toNightshiftError, validationError } from '../errors.js';
import type { Logger } from '../log.js';
import { heapLimitMb } from '../memory.js';
import { PartWriter } from '../parquet/writer.js';
import { CopyBinaryDecoder } from '../source/decode.js';
import { checkMaxRows, countInSnapshot, openSnapshot, type Snapshot } from '../source/postgres.js';
import type { ColumnPlan } from '../source/types.js';
import {
  assertClaim,
  type ClaimedCheckpoint,
  claimCheckpoint,
  commitCheckpoint,
} from '../state/checkpoint.js';
import { Lease } from '../state/lease.js';
import type { ObjectStore } from '../store/store.js';
import type { Backends, LoadPlan, LoadSession, StagedFile, Warehouse } from '../warehouse/warehouse.js';
import { buildManifest, writeManifest } from './manifest.js';
import { backfillWindows, planWindow } from './plan.js';
import { Progress, type ProgressMode } from './progress.js';
import {
  exitCodeOfStatus,
  publishSummary,
  type RunStatus,
  type RunSummary,
  statusOf,
  summaryLine,
  windowSummary,
} from './summary.js';
import { Uploader } from './uploader.js';

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
}

/** What to move: the next incremental window, or explicit backfill windows [from, to) over the cursor. */
export type RunRequest =
  | { kind: 'incremental' }
  | { kind: 'backfill'; from: string; to: string; step?: string };

/** Mutable facts gathered while a window runs, turned into the summary at the end. */
interface Facts {
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

/**
 * How long a warehouse load may take to stop after SIGTERM before the run stops waiting: the
 * watchdog ends the process at 9.5 s, and releasing the lease and writing the summary need the rest.
 */
const LOAD_STOP_GRACE_MS = 6_000;

/** Runs the request and returns one summary per window run (the last decides the exit code). */
export async function executeRun(ctx: RunContext, request: RunRequest): Promise<RunSummary[]> {
  const { config, log } = ctx;
  const started = Date.now();
  const firstRunId = newRunId();
  log.info({ config: redactedConfig(config), request: request.kind }, 'nightshift run starting');
  const summaries: RunSummary[] = [];
  let store: ObjectStore | undefined;
  let lease: Lease | undefined;
  let warehouse: Warehouse | undefined;
  const stop = new AbortController();
  // The signal's own reason names what stopped the run (SIGTERM, Ctrl-C); the exit code is 143 either way.
  const onTerm = () =>
    stop.abort(
      ctx.signal.reason instanceof NightshiftError && ctx.signal.reason.code === 'terminated'
        ? ctx.signal.reason
        : new NightshiftError('terminated', 'stopped by SIGTERM'),
    );
  ctx.signal.addEventListener('abort', onTerm, { once: true });
  if (ctx.signal.aborted) onTerm();
  try {
    store = await ctx.backends.createStore(config);
    // Who the run acts as, before it touches anything: an identity failure exits 5 here.
    const stageIdentity = await store.identity?.();
    if (stageIdentity) log.info({ identity: stageIdentity, part: 'stage' }, 'stage identity');
    // A lease taken after SIGTERM gave up on it is released at once.
    lease = await untilAborted(
      Lease.acquire({
        store,
        job: config.job,
        runId: firstRunId,
        ttlMs: config.lease.ttl,
        onLost: (err) => stop.abort(err),
      }),
      stop.signal,
      { release: (late) => late.release() },
    );
    log.info({ token: lease.token, expires_at: lease.expiresAt }, 'lease acquired');
    await failpoint('after-lease');
    warehouse = await ctx.backends.createWarehouse(config, store);
    const warehouseIdentity = await warehouse.identity?.();
    if (warehouseIdentity) log.info({ identity: warehouseIdentity, part: 'warehouse' }, 'warehouse identity');
    const windows =
      request.kind === 'backfill'
        ? await backfillWindows(config, request.from, request.to, request.step)
        : [undefined];
    if (request.kind === 'backfill') log.info({ windows: windows.length }, 'backfill planned');
    for (const [i, window] of windows.entries()) {
      const runId = i === 0 ? firstRunId : newRunId();
      const summary = await runWindow(ctx, {
        store,
        lease,
        warehouse,
        signal: stop.signal,
        runId,
        window,
        request,
      });
      summaries.push(summary);
      if (summary.exit_code !== 0) break;
    }
  } catch (err) {
    // Failures before any window ran (lease, stage, config): one summary says so.
    const e = toNightshiftError(
      stop.signal.aborted && !(err instanceof NightshiftError) ? stop.signal.reason : err,
    );
    summaries.push(
      finish(ctx, request, emptyFacts(firstRunId), started, e, store?.url ?? ctx.config.stage.url),
    );
  } finally {
    ctx.signal.removeEventListener('abort', onTerm);
    await warehouse?.close().catch(() => undefined);
    if (lease) {
      await lease
        .release()
        .catch((err: unknown) => log.warn({ err }, 'could not release the lease; it will expire'));
    }
    await store?.close?.().catch(() => undefined);
  }
  const last = summaries[summaries.length - 1];
  // The process's peak so far, including closing the warehouse and the stage after the window.
  last.peak_rss_mb = peakRssMb();
  for (const summary of summaries) {
    ctx.onSummary?.(summary, summaryLine(summary));
  }
  await publishSummary(last, ctx.runtime);
  return summaries;
}

/** The process's peak resident memory so far, in MiB. */
function peakRssMb(): number {
  return Math.round(process.resourceUsage().maxRSS / 1024);
}

function emptyFacts(runId: string): Facts {
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

interface WindowArgs {
  store: ObjectStore;
  lease: Lease;
  warehouse: Warehouse;
  signal: AbortSignal;
  runId: string;
  /** The backfill window, or undefined for the next incremental window. */
  window: Window | undefined;
  request: RunRequest;
}

async function runWindow(ctx: RunContext, args: WindowArgs): Promise<RunSummary> {
  const { config } = ctx;
  const log = ctx.log.child({ job: config.job, run_id: args.runId });
  const started = Date.now();
  const facts = emptyFacts(args.runId);
  const tempDir = join(config.temp_dir, `nightshift-${args.runId}`);
  let snapshot: Snapshot | undefined;
  let cut: (() => void) | undefined;
  let uploader: Uploader | undefined;
  let session: LoadSession | undefined;
  let status: RunStatus = 'succeeded';
  try {
    const lap = timer(facts);
    const incremental = args.request.kind === 'incremental';
    const columns = [config.source.cursor, ...(config.source.key ?? [])].filter((c): c is string => !!c);
    let claimed: ClaimedCheckpoint | undefined;
    if (incremental && config.warehouse.mode !== 'replace') {
      claimed = await claimCheckpoint(args.store, config.job, columns, args.lease.token);
      facts.checkpointBefore = claimed.record.watermark;
    }
    // On SIGTERM, cut the connection: a planning query on a big table would otherwise run on.
    snapshot = await untilAborted(openSnapshot(config.source), args.signal, {
      release: (late) => late.destroy(),
    });
    const opened = snapshot;
    cut = () => opened.destroy();
    args.signal.addEventListener('abort', cut, { once: true });
    const described = await snapshot.describeSource();
    const cursor = await snapshot.cursorInfo(described);
    const window = await planWindow(snapshot, config, cursor, claimed?.record.watermark, args.window);
    facts.window = window;
    lap('plan');
    if (!window) {
      log.info({ watermark: facts.checkpointBefore }, 'no new rows since the checkpoint');
      if (config.validation.min_rows > 0) {
        throw validationError(`no new rows, fewer than validation.min_rows (${config.validation.min_rows})`, {
          hint: 'check that the source is still being written, or lower validation.min_rows',
        });
      }
      status = 'no_new_rows';
      return finish(ctx, args.request, facts, started, undefined, args.store.url, status);
    }
    log.info({ window: describeWindow(window), snapshot: snapshot.snapshotId ?? null }, 'window planned');
    await failpoint('after-snapshot');
    const measured = await snapshot.measureNumerics(described, window);
    const plans = await snapshot.planColumns(described, measured);
    lap('describe');

    const count = await startCount(snapshot, config, window, args.signal);
    await mkdir(tempDir, { recursive: true, mode: 0o700 });
    const loadPlan: LoadPlan = {
      job: config.job,
      runId: args.runId,
      table: config.warehouse.table,
      mode: config.warehouse.mode,
      columns: plans.map((p) => p.parquet),
      window,
      key: config.source.key ?? [],
      signal: args.signal,
    };
    // A warehouse that can load parts as they are staged starts its transaction now.
    session = await args.warehouse.begin?.(loadPlan);
    const loading = session;
    uploader = new Uploader({
      store: args.store,
      job: config.job,
      runId: args.runId,
      signal: args.signal,
      onStaged: loading && ((file) => loading.add([file])),
    });
    const atLeastOne = !incremental || config.warehouse.mode === 'replace';
    const exported = await exportWindow(ctx, log, snapshot, plans, window, {
      tempDir,
      uploader,
      count,
      atLeastOne,
      partBytes: partBytes(config, args.warehouse.preferredPartMb),
      signal: args.signal,
    });
    facts.rowsWritten = exported.rows;
    facts.rowsSource = exported.copied;
    if (count.exact) {
      const counted = await count.total;
      if (counted !== exported.copied) {
        throw validationError(
          `count(*) found ${counted} rows in the window but COPY sent ${exported.copied}`,
        );
      }
    }
    // Export: until every part is staged; what a streaming warehouse still needs after that is load.
    await uploader.uploaded();
    lap('export');
    facts.files = await uploader.finish();
    lap('load');
    await snapshot.close();
    snapshot = undefined;

    if (facts.rowsSource !== facts.rowsWritten) {
      throw validationError(
        `PostgreSQL sent ${facts.rowsSource} rows in the window but ${facts.rowsWritten} were written to Parquet`,
      );
    }
    if (facts.rowsSource < config.validation.min_rows) {
      throw validationError(
        `the window holds ${facts.rowsSource} rows, fewer than validation.min_rows (${config.validation.min_rows})`,
      );
    }
    const manifest = buildManifest({
      job: config.job,
      runId: args.runId,
      stage: args.store.url,
      window,
      plans,
      files: facts.files,
    });
    await writeManifest(args.store, manifest);
    lap('manifest');
    await failpoint('after-manifest');

    args.signal.throwIfAborted();
    log.info(
      { files: facts.files.length, rows: facts.rowsWritten, table: config.warehouse.table },
      'loading',
    );
    await failpoint('before-load');
    // A run paused past its lease must not load over its successor's rows.
    args.lease.assertHeld();
    if (claimed) await assertClaim(args.store, claimed);
    // A load session (DuckDB) is interrupted and rolled back by the signal itself. A warehouse
    // gets LOAD_STOP_GRACE_MS to stop by itself and say what it left running; after that its job
    // is left for the next run to reconcile, so SIGTERM never waits past the pod's grace period.
    const loaded = session
      ? await session.commit(facts.rowsWritten)
      : await untilAborted(
          args.warehouse.load({ ...loadPlan, files: facts.files, expectedRows: facts.rowsWritten }),
          args.signal,
          { graceMs: LOAD_STOP_GRACE_MS },
        );
    session = undefined;
    facts.rowsLoaded = loaded.rowsLoaded;
    facts.rowsReplaced = loaded.rowsReplaced ?? null;
    lap('load');
    await failpoint('after-load');
    if (loaded.rowsLoaded !== facts.rowsSource) {
      throw validationError(
        `the warehouse loaded ${loaded.rowsLoaded} rows but the source snapshot counted ${facts.rowsSource}`,
        { hint: 'the checkpoint did not move; the next run replaces this window' },
      );
    }

    if (claimed && window.upper) {
      await failpoint('before-commit');
      args.lease.assertHeld();
      const record = await commitCheckpoint(args.store, claimed, {
        watermark: window.upper,
        runId: args.runId,
        rows: facts.rowsLoaded,
      });
      facts.checkpointAfter = record.watermark;
      lap('commit');
      await failpoint('after-commit');
    }
    const summary = finish(ctx, args.request, facts, started, undefined, args.store.url, status);
    await writeManifest(args.store, { ...manifest, summary });
    return summary;
  } catch (err) {
    // A signal that arrived with the failure it caused (Ctrl-C reaches a local server too, which
    // ends the session) is handled first: one turn of the event loop.
    await setImmediate();
    // When the run was stopped (SIGTERM, lost lease), the stop is what happened; an adapter that
    // already said what it left behind ("load job left running") keeps its own words.
    const stopped = args.signal.aborted && !(err instanceof NightshiftError && err.code === 'terminated');
    const e = toNightshiftError(stopped ? (args.signal.reason ?? err) : err);
    snapshot?.destroy();
    if (uploader) facts.files = await uploader.settle();
    await session?.abort().catch(() => undefined);
    return finish(ctx, args.request, facts, started, e, args.store.url);
  } finally {
    if (cut) args.signal.removeEventListener('abort', cut);
    await snapshot?.close().catch(() => undefined);
    await rm(tempDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

/** Records how long each stage took (a stage timed twice adds up). */
function timer(facts: Facts): (stage: string) => void {
  let last = Date.now();
  return (stage) => {
    const now = Date.now();
    facts.timings[stage] = (facts.timings[stage] ?? 0) + now - last;
    last = now;
  };
}

/** The window's row count as far as it is known before the export ends. */
interface SourceCount {
  /** Resolves to the exact count (when `exact`) or the planner's estimate (for the ETA). */
  total: Promise<number>;
  /** Whether `total` is a count(*) of the snapshot rather than an estimate. */
  exact: boolean;
}

/**
 * The source count is the row count PostgreSQL reports for the COPY itself. Before the COPY:
 * validation.max_rows needs an exact count(*) first; validation.source_count: query runs one in
 * parallel on a second connection in the same snapshot, as an independent check; otherwise the
 * planner's estimate serves the ETA.
 */
async function startCount(
  snapshot: Snapshot,
  config: Config,
  window: Window,
  signal: AbortSignal,
): Promise<SourceCount> {
  signal.throwIfAborted();
  if (config.validation.max_rows !== undefined) {
    const n = await snapshot.count(window);
    checkMaxRows(n, config.validation.max_rows);
    return { total: Promise.resolve(n), exact: true };
  }
  if (config.validation.source_count === 'query') {
    const id = snapshot.snapshotId;
    const total = id ? countInSnapshot(config.source, id, window) : snapshot.count(window);
    // Awaited after the export; until then a failure must not go unhandled.
    total.catch(() => undefined);
    if (!id) await total;
    return { total, exact: true };
  }
  return { total: snapshot.estimate(window), exact: false };
}

/** Streams the window through the decoder into part files, uploading each as it closes. */
interface ExportOptions {
  tempDir: string;
  uploader: Uploader;
  count: SourceCount;
  /** Write one (empty) part even when the window has no rows. */
  atLeastOne: boolean;
  partBytes: number;
  signal: AbortSignal;
}

async function exportWindow(
  ctx: RunContext,
  log: Logger,
  snapshot: Snapshot,
  plans: readonly ColumnPlan[],
  window: Window,
  { tempDir, uploader, count, atLeastOne, partBytes, signal }: ExportOptions,
): Promise<{ rows: number; copied: number }> {
  const p = ctx.config.parquet;
  const writer = new PartWriter({
    dir: tempDir,
    fileName: partFileName,
    columns: plans.map((plan) => plan.parquet),
    codec: p.compression,
    level: p.compression_level,
    partBytes,
    rowGroupBytes: p.row_group_mb * 1024 * 1024,
    pageBytes: p.page_kb * 1024,
    dictionary: p.dictionary,
    createdBy: 'nightshift',
  });
  const decoder = new CopyBinaryDecoder(plans, writer, ctx.config.source.infinity);
  const progress = new Progress(log, ctx.progress);
  count.total.then(
    (n) => progress.setTotal(n, count.exact),
    () => undefined,
  );
  const statement = await snapshot.copyStatement(plans, window);
  log.debug({ statement }, 'COPY');
  progress.start();
  let copied: number;
  let midCopy = false;
  try {
    copied = await snapshot.copyInto(statement, (b, start, end) => decoder.decodeMessage(b, start, end), {
      signal,
      // After each socket read: hand closed parts to the uploader, and stop reading while it is full.
      pauseWhile: () => {
        if (!midCopy) {
          midCopy = true;
          return failpoint('mid-copy');
        }
        for (const part of writer.takeClosed()) uploader.add(part);
        progress.update(writer.rows, decoder.bytes);
        return uploader.whenRoom();
      },
    });
    signal.throwIfAborted();
    decoder.finish();
    for (const part of writer.finish(atLeastOne)) uploader.add(part);
  } catch (err) {
    writer.abort();
    throw noSpaceForParts(err, ctx.config.temp_dir, partBytes) ?? err;
  } finally {
    progress.stop();
  }
  log.info({ rows: writer.rows, copied, mb: Math.round(decoder.bytes / 1e6) }, 'export finished');
  return { rows: writer.rows, copied };
}

function finish(
  ctx: RunContext,
  request: RunRequest,
  facts: Facts,
  started: number,
  err: NightshiftError | undefined,
  stage: string,
  okStatus: RunStatus = 'succeeded',
): RunSummary {
  const status = err ? statusOf(err) : okStatus;
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
    const level = err.code === 'lease_held' || err.code === 'terminated' ? 'warn' : 'error';
    ctx.log[level]({ err }, err.message);
  }
  return summary;
}
