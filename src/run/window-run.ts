/**
 * One window's run, as named steps over one small state: claim the checkpoint, plan the window
 * in a snapshot, export it to staged parts, write the manifest, load exactly those files,
 * validate what the warehouse loaded, commit the checkpoint. Nothing moves the checkpoint but a
 * validated load; any failure leaves it where it was and the next run redoes the window.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { untilAborted } from '../core/abort.js';
import { failpoint } from '../core/failpoint.js';
import { partBytes } from '../core/parts.js';
import { makeTempDir } from '../core/temp-dir.js';
import { describeWindow, type Window } from '../core/window.js';
import { NightshiftError, toNightshiftError, validationError } from '../errors.js';
import type { Logger } from '../log.js';
import { openSnapshot, type Snapshot } from '../source/postgres.js';
import type { ColumnPlan } from '../source/types.js';
import {
  assertClaim,
  type ClaimedCheckpoint,
  claimCheckpoint,
  commitCheckpoint,
} from '../state/checkpoint.js';
import type { LoadPlan, LoadResult, LoadSession } from '../warehouse/warehouse.js';
import type { RunContext, WindowArgs } from './context.js';
import { exportWindow, startCount } from './export.js';
import { buildManifest, type RunManifest, writeManifest } from './manifest.js';
import { planWindow } from './plan.js';
import {
  emptyFacts,
  type Facts,
  type Outcome,
  type RunStatus,
  type RunSummary,
  summarize,
  timer,
} from './summary.js';
import { Uploader } from './uploader.js';

/**
 * How long a warehouse load may take to stop after SIGTERM before the run stops waiting: the
 * watchdog ends the process at 9.5 s, and releasing the lease and writing the summary need the rest.
 */
const LOAD_STOP_GRACE_MS = 6_000;

/** What the steps of one window's run share. */
interface WindowRun {
  ctx: RunContext;
  args: WindowArgs;
  log: Logger;
  facts: Facts;
  /** Records the time since the last lap under a stage name. */
  lap: (stage: string) => void;
  started: number;
  /** This run's own folder under temp_dir, removed at the end whatever happens. */
  tempDir: string;
  claimed?: ClaimedCheckpoint;
  snapshot?: Snapshot;
  uploader?: Uploader;
  /** A warehouse load that takes parts as they are staged (DuckDB), open until commit or abort. */
  session?: LoadSession;
}

/** A planned window with the column plans of its export. */
interface Planned {
  window: Window;
  plans: ColumnPlan[];
}

/** Runs one window end to end and returns its summary; never throws. */
export async function runWindow(ctx: RunContext, args: WindowArgs): Promise<RunSummary> {
  const facts = emptyFacts(args.runId);
  const run: WindowRun = {
    ctx,
    args,
    log: ctx.log.child({ job: ctx.config.job, run_id: args.runId }),
    facts,
    lap: timer(facts),
    started: Date.now(),
    tempDir: join(ctx.config.temp_dir, `nightshift-${args.runId}`),
  };
  // On SIGTERM, cut the connection: a planning query on a big table would otherwise run on.
  const cut = () => run.snapshot?.destroy();
  args.signal.addEventListener('abort', cut, { once: true });
  try {
    await claim(run);
    const planned = await plan(run);
    if (!planned) return outcome(run, undefined, 'no_new_rows');
    const loadPlan = await exportParts(run, planned);
    const manifest = await stageManifest(run, planned);
    const loaded = await load(run, loadPlan);
    validateLoad(run, loaded);
    await commit(run, planned.window);
    const summary = outcome(run);
    await writeManifest(args.store, { ...manifest, summary });
    return summary;
  } catch (err) {
    return outcome(run, await failure(run, err));
  } finally {
    args.signal.removeEventListener('abort', cut);
    await run.snapshot?.close().catch(() => undefined);
    await rm(run.tempDir, { recursive: true, force: true }).catch(() => undefined);
  }
}

function outcome(run: WindowRun, err?: NightshiftError, okStatus?: RunStatus): RunSummary {
  const o: Outcome = {
    ctx: run.ctx,
    request: run.args.request,
    facts: run.facts,
    started: run.started,
    stage: run.args.store.url,
    err,
    okStatus,
  };
  return summarize(o);
}

/** Claim: an incremental run fences the checkpoint with its lease token before it reads anything. */
async function claim(run: WindowRun): Promise<void> {
  const { config } = run.ctx;
  if (run.args.request.kind !== 'incremental' || config.warehouse.mode === 'replace') return;
  const columns = [config.source.cursor, ...(config.source.key ?? [])].filter((c): c is string => !!c);
  run.claimed = await claimCheckpoint(run.args.store, config.job, columns, run.args.lease.token);
  run.facts.checkpointBefore = run.claimed.record.watermark;
}

/** Plan: open the snapshot, find the window after the checkpoint and how each column is exported. */
async function plan(run: WindowRun): Promise<Planned | undefined> {
  const { config } = run.ctx;
  const { signal } = run.args;
  run.snapshot = await untilAborted(openSnapshot(config.source), signal, {
    release: (late) => late.destroy(),
  });
  if (signal.aborted) run.snapshot.destroy();
  const snapshot = run.snapshot;
  const described = await snapshot.describeSource();
  const cursor = await snapshot.cursorInfo(described);
  const window = await planWindow(snapshot, config, cursor, run.claimed?.record.watermark, run.args.window);
  run.facts.window = window;
  run.lap('plan');
  if (!window) {
    run.log.info({ watermark: run.facts.checkpointBefore }, 'no new rows since the checkpoint');
    if (config.validation.min_rows > 0) {
      throw validationError(`no new rows, fewer than validation.min_rows (${config.validation.min_rows})`, {
        hint: 'check that the source is still being written, or lower validation.min_rows',
      });
    }
    return undefined;
  }
  run.log.info({ window: describeWindow(window), snapshot: snapshot.snapshotId ?? null }, 'window planned');
  await failpoint('after-snapshot');
  const measured = await snapshot.measureNumerics(described, window);
  const plans = await snapshot.planColumns(described, measured);
  run.lap('describe');
  return { window, plans };
}

/**
 * Export: COPY the window into parts and stage each as it closes; a warehouse that loads parts
 * as they are staged starts its transaction first. Returns the load plan once every part is
 * staged and the counts agree.
 */
async function exportParts(run: WindowRun, { window, plans }: Planned): Promise<LoadPlan> {
  const { config } = run.ctx;
  const { args, facts } = run;
  const snapshot = run.snapshot as Snapshot;
  // The temp dir first: a run that cannot write its parts asks the source nothing more.
  await makeTempDir(run.tempDir, 0o700);
  const count = await startCount(snapshot, config, window, args.signal);
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
  run.session = await args.warehouse.begin?.(loadPlan);
  const loading = run.session;
  run.uploader = new Uploader({
    store: args.store,
    job: config.job,
    runId: args.runId,
    signal: args.signal,
    onStaged: loading && ((file) => loading.add([file])),
  });
  const exported = await exportWindow(run.ctx, run.log, snapshot, plans, window, {
    tempDir: run.tempDir,
    uploader: run.uploader,
    count,
    atLeastOne: args.request.kind !== 'incremental' || config.warehouse.mode === 'replace',
    partBytes: partBytes(config, args.warehouse.preferredPartMb),
    signal: args.signal,
  });
  facts.rowsWritten = exported.rows;
  facts.rowsSource = exported.copied;
  if (count.exact) {
    const counted = await count.total;
    if (counted !== exported.copied) {
      throw validationError(`count(*) found ${counted} rows in the window but COPY sent ${exported.copied}`);
    }
  }
  // Export: until every part is staged; what a streaming warehouse still needs after that is load.
  await run.uploader.uploaded();
  run.lap('export');
  facts.files = await run.uploader.finish();
  run.lap('load');
  await snapshot.close();
  run.snapshot = undefined;
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
  return loadPlan;
}

/** Manifest: the list of exactly the files this run staged, written before anything loads them. */
async function stageManifest(run: WindowRun, { window, plans }: Planned): Promise<RunManifest> {
  const manifest = buildManifest({
    job: run.ctx.config.job,
    runId: run.args.runId,
    stage: run.args.store.url,
    window,
    plans,
    files: run.facts.files,
  });
  await writeManifest(run.args.store, manifest);
  run.lap('manifest');
  await failpoint('after-manifest');
  return manifest;
}

/** Load: exactly the manifest's files, and only while the run still holds its lease and claim. */
async function load(run: WindowRun, loadPlan: LoadPlan): Promise<LoadResult> {
  const { args, facts } = run;
  args.signal.throwIfAborted();
  run.log.info(
    { files: facts.files.length, rows: facts.rowsWritten, table: run.ctx.config.warehouse.table },
    'loading',
  );
  await failpoint('before-load');
  // A run paused past its lease must not load over its successor's rows.
  args.lease.assertHeld();
  if (run.claimed) await assertClaim(args.store, run.claimed);
  // A load session (DuckDB) is interrupted and rolled back by the signal itself. A warehouse
  // gets LOAD_STOP_GRACE_MS to stop by itself and say what it left running; after that its job
  // is left for the next run to reconcile, so SIGTERM never waits past the pod's grace period.
  const loaded = run.session
    ? await run.session.commit(facts.rowsWritten)
    : await untilAborted(
        args.warehouse.load({ ...loadPlan, files: facts.files, expectedRows: facts.rowsWritten }),
        args.signal,
        { graceMs: LOAD_STOP_GRACE_MS },
      );
  run.session = undefined;
  facts.rowsLoaded = loaded.rowsLoaded;
  facts.rowsReplaced = loaded.rowsReplaced ?? null;
  run.lap('load');
  await failpoint('after-load');
  return loaded;
}

/** Validate: the warehouse loaded exactly the rows the source snapshot sent. */
function validateLoad(run: WindowRun, loaded: LoadResult): void {
  if (loaded.rowsLoaded !== run.facts.rowsSource) {
    throw validationError(
      `the warehouse loaded ${loaded.rowsLoaded} rows but the source snapshot counted ${run.facts.rowsSource}`,
      { hint: 'the checkpoint did not move; the next run replaces this window' },
    );
  }
}

/** Commit: move the checkpoint to the window's upper bound, by compare-and-swap on the claim. */
async function commit(run: WindowRun, window: Window): Promise<void> {
  if (!run.claimed || !window.upper) return;
  await failpoint('before-commit');
  run.args.lease.assertHeld();
  const record = await commitCheckpoint(run.args.store, run.claimed, {
    watermark: window.upper,
    runId: run.args.runId,
    rows: run.facts.rowsLoaded ?? 0,
  });
  run.facts.checkpointAfter = record.watermark;
  run.lap('commit');
  await failpoint('after-commit');
}

/** What stopped the run, after undoing what it had open: the snapshot, uploads, a load session. */
async function failure(run: WindowRun, err: unknown): Promise<NightshiftError> {
  const { signal } = run.args;
  // A signal that arrived with the failure it caused (Ctrl-C reaches a local server too, which
  // ends the session) is handled first: one turn of the event loop.
  await setImmediate();
  // When the run was stopped (SIGTERM, lost lease), the stop is what happened; an adapter that
  // already said what it left behind ("load job left running") keeps its own words.
  const stopped = signal.aborted && !(err instanceof NightshiftError && err.code === 'terminated');
  const e = toNightshiftError(stopped ? (signal.reason ?? err) : err);
  run.snapshot?.destroy();
  if (run.uploader) run.facts.files = await run.uploader.settle();
  await run.session?.abort().catch(() => undefined);
  return e;
}
