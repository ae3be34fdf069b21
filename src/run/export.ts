/**
 * The export step: COPY the window out of the snapshot through the decoder into Parquet parts
 * under the temp dir, handing each closed part to the uploader; and the source count it is
 * checked against.
 */
import type { Config } from '../config/schema.js';
import { failpoint } from '../core/failpoint.js';
import { partFileName } from '../core/layout.js';
import { noSpaceForParts } from '../core/parts.js';
import type { Window } from '../core/window.js';
import type { Logger } from '../log.js';
import { PartWriter } from '../parquet/writer.js';
import { CopyBinaryDecoder } from '../source/decode.js';
import { checkMaxRows, countInSnapshot, type Snapshot } from '../source/postgres.js';
import type { ColumnPlan } from '../source/types.js';
import type { RunContext } from './context.js';
import { Progress } from './progress.js';
import type { Uploader } from './uploader.js';

/** The window's row count as far as it is known before the export ends. */
export interface SourceCount {
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
export async function startCount(
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
  const estimate = snapshot.estimate(window);
  // Read after the export starts; a run that fails before (or closes the snapshot under it) must
  // not leave the rejection unhandled, which would end the process before its summary.
  estimate.catch(() => undefined);
  return { total: estimate, exact: false };
}

/** Streams the window through the decoder into part files, uploading each as it closes. */
export interface ExportOptions {
  tempDir: string;
  uploader: Uploader;
  count: SourceCount;
  /** Write one (empty) part even when the window has no rows. */
  atLeastOne: boolean;
  partBytes: number;
  signal: AbortSignal;
}

export async function exportWindow(
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
