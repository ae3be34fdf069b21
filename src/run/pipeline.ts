/**
 * A run, as data flows: lease -> checkpoint claim -> snapshot -> plan the window -> count and
 * COPY in the same snapshot -> Parquet parts under the temp dir -> upload each as it closes ->
 * manifest -> warehouse load of exactly those files -> validate the counts -> commit the
 * checkpoint -> release the lease -> summary. This file holds the run around its windows (the
 * stage, the lease, the warehouse, one window or a backfill's many); window-run.ts holds the
 * steps of one window. Nothing moves the checkpoint but a validated load.
 */
import { redactedConfig } from '../config/load.js';
import { untilAborted } from '../core/abort.js';
import { failpoint } from '../core/failpoint.js';
import { newRunId } from '../core/layout.js';
import type { Window } from '../core/window.js';
import { NightshiftError, toNightshiftError } from '../errors.js';
import { Lease } from '../state/lease.js';
import type { ObjectStore } from '../store/store.js';
import type { Warehouse } from '../warehouse/warehouse.js';
import type { RunContext, RunRequest } from './context.js';
import { backfillWindows, checkBackfillArgs } from './plan.js';
import {
  backfillTotal,
  emptyFacts,
  peakRssMb,
  publishSummary,
  type RunSummary,
  summarize,
  summaryLine,
} from './summary.js';
import { runWindow } from './window-run.js';

export type { RunContext, RunRequest } from './context.js';

/** Runs the request and returns one summary per window run (the last decides the exit code). */
export async function executeRun(ctx: RunContext, request: RunRequest): Promise<RunSummary[]> {
  const { config, log } = ctx;
  const started = Date.now();
  const firstRunId = newRunId();
  log.info(
    { config: redactedConfig(config), request: request.kind },
    request.kind === 'backfill' ? 'nightshift backfill starting' : 'nightshift run starting',
  );
  const summaries: RunSummary[] = [];
  let planned = 0;
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
    // A backfill's windows, before the stage and the lease: arguments that cannot work exit 2 at
    // once, without waiting for a lease another run holds.
    let windows: (Window | undefined)[] = [undefined];
    if (request.kind === 'backfill') {
      checkBackfillArgs(request.from, request.to, request.step);
      windows = await backfillWindows(config, request.from, request.to, request.step);
      planned = windows.length;
      log.info({ windows: windows.length }, 'backfill planned');
    }
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
      summarize({
        ctx,
        request,
        facts: emptyFacts(firstRunId),
        started,
        stage: store?.url ?? ctx.config.stage.url,
        err: e,
      }),
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
  if (request.kind === 'backfill')
    ctx.onBackfillSummary?.(backfillTotal(request, planned, summaries, started));
  await publishSummary(last, ctx.runtime);
  return summaries;
}
