/**
 * The checkpoint: `<job>/state/checkpoint.json`, the watermark the next window starts after.
 * It is only ever written with compare-and-swap. A run first claims it (rewrites it unchanged
 * but for its lease's fencing token), then commits against the version it claimed: a run whose
 * lease was taken over finds the checkpoint claimed by the new holder and cannot commit.
 */

import type { Bound } from '../core/window.js';
import { configError, leaseHeldError } from '../errors.js';
import { type ObjectStore, PreconditionFailedError } from '../store/store.js';
import { putState } from './conditional.js';

export interface CheckpointRecord {
  version: 1;
  job: string;
  /** Columns of the watermark: the cursor, then the key columns. */
  columns: string[];
  /** The newest (cursor, key) tuple loaded; undefined before the first load. */
  watermark: string[] | null;
  /** Fencing token of the lease that last claimed or committed the checkpoint. */
  fence: number;
  /** The run that moved the watermark last. */
  run_id: string | null;
  committed_at: string | null;
  /** Rows loaded by all committed runs. */
  rows_total: number;
}

export const checkpointKey = (job: string) => `${job}/state/checkpoint.json`;

/** A checkpoint claimed by a run: the version it will compare-and-swap against. */
export interface ClaimedCheckpoint {
  readonly record: CheckpointRecord;
  readonly etag: string;
}

export async function readCheckpoint(
  store: ObjectStore,
  job: string,
): Promise<{ record: CheckpointRecord; etag: string } | undefined> {
  const current = await store.get(checkpointKey(job));
  if (!current) return undefined;
  let record: CheckpointRecord;
  try {
    record = JSON.parse(current.body.toString('utf8')) as CheckpointRecord;
  } catch (err) {
    throw configError(`the checkpoint ${store.urlOf(checkpointKey(job))} is not valid JSON`, {
      cause: err,
      hint: 'restore it from the latest run manifest under runs/, or delete it to start from source.start',
    });
  }
  if (record.version !== 1 || record.job !== job) {
    throw configError(`the checkpoint ${store.urlOf(checkpointKey(job))} belongs to another job or version`);
  }
  return { record, etag: current.info.etag };
}

/** Rewrites the checkpoint with this run's fencing token, fencing out any earlier holder. */
export async function claimCheckpoint(
  store: ObjectStore,
  job: string,
  columns: string[],
  fence: number,
): Promise<ClaimedCheckpoint> {
  const current = await readCheckpoint(store, job);
  if (current && current.record.columns.join(',') !== columns.join(',') && current.record.watermark) {
    throw configError(
      `the checkpoint of job ${job} is over (${current.record.columns.join(', ')}) but source.cursor/key are (${columns.join(', ')})`,
      { hint: 'restore the previous cursor and key, or run this under a new job name' },
    );
  }
  const record: CheckpointRecord = current
    ? { ...current.record, fence }
    : { version: 1, job, columns, watermark: null, fence, run_id: null, committed_at: null, rows_total: 0 };
  try {
    const info = await putState(
      store,
      checkpointKey(job),
      record,
      current ? { ifMatch: current.etag } : { ifNoneMatch: true },
    );
    return { record, etag: info.etag };
  } catch (err) {
    if (err instanceof PreconditionFailedError) {
      throw leaseHeldError('another run claimed the checkpoint at the same moment', { cause: err });
    }
    throw err;
  }
}

/**
 * Fails (lease_held) when anyone claimed the checkpoint since this run did: a run that was paused
 * past its lease checks this right before loading, so it cannot overwrite its successor's load.
 */
export async function assertClaim(store: ObjectStore, claimed: ClaimedCheckpoint): Promise<void> {
  const current = await store.get(checkpointKey(claimed.record.job));
  if (current?.info.etag !== claimed.etag) {
    throw leaseHeldError('another run claimed the checkpoint: this run lost its lease and does not load');
  }
}

/** Moves the watermark; fails (lease_held) if anyone claimed the checkpoint since. */
export async function commitCheckpoint(
  store: ObjectStore,
  claimed: ClaimedCheckpoint,
  update: { watermark: Bound; runId: string; rows: number; now?: Date },
): Promise<CheckpointRecord> {
  const record: CheckpointRecord = {
    ...claimed.record,
    watermark: [...update.watermark.values],
    run_id: update.runId,
    committed_at: (update.now ?? new Date()).toISOString(),
    rows_total: claimed.record.rows_total + update.rows,
  };
  try {
    await putState(store, checkpointKey(record.job), record, {
      ifMatch: claimed.etag,
    });
  } catch (err) {
    if (err instanceof PreconditionFailedError) {
      throw leaseHeldError(
        'the checkpoint was claimed by another run: this run lost its lease and does not commit',
        {
          cause: err,
        },
      );
    }
    throw err;
  }
  return record;
}
