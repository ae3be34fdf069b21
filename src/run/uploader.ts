/**
 * Uploads part files as soon as they close, a bounded number at a time, and deletes each local
 * file once it is staged. The export waits when the queue is full, so /tmp never holds more
 * than the in-flight parts plus the one being written.
 */
import { rm } from 'node:fs/promises';
import type { PartFile } from '../parquet/writer.js';
import type { ObjectStore } from '../store/store.js';
import type { StagedFile } from '../warehouse/warehouse.js';
import { partKey } from './layout.js';

export class Uploader {
  private readonly store: ObjectStore;
  private readonly job: string;
  private readonly runId: string;
  private readonly signal: AbortSignal;
  private readonly maxInFlight: number;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly staged: StagedFile[] = [];
  private failure: unknown;
  /** Milliseconds spent with at least one upload running. */
  busyMs = 0;
  private busySince = 0;

  constructor(options: {
    store: ObjectStore;
    job: string;
    runId: string;
    signal: AbortSignal;
    maxInFlight?: number;
  }) {
    this.store = options.store;
    this.job = options.job;
    this.runId = options.runId;
    this.signal = options.signal;
    this.maxInFlight = options.maxInFlight ?? 2;
  }

  /** Starts uploading a closed part. */
  add(part: PartFile): void {
    if (this.inFlight.size === 0) this.busySince = Date.now();
    const key = partKey(this.job, this.runId, part.index);
    const task = this.store
      .putFile(key, part.path, {
        consume: true,
        signal: this.signal,
        sha256: part.sha256,
        contentType: 'application/vnd.apache.parquet',
      })
      .then(async () => {
        await rm(part.path, { force: true });
        this.staged.push({
          key,
          url: this.store.urlOf(key),
          rows: part.rows,
          bytes: part.bytes,
          sha256: part.sha256,
        });
      })
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => {
        this.inFlight.delete(task);
        if (this.inFlight.size === 0) this.busyMs += Date.now() - this.busySince;
      });
    this.inFlight.add(task);
  }

  /** Waits until fewer than the maximum uploads run; rethrows the first upload failure. */
  async waitForRoom(): Promise<void> {
    while (this.inFlight.size >= this.maxInFlight) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
  }

  /** Waits for every upload; returns the staged files in part order. */
  async finish(): Promise<StagedFile[]> {
    while (this.inFlight.size) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
    return [...this.staged].sort((a, b) => a.key.localeCompare(b.key));
  }

  /** Waits for running uploads to settle (they abort on the signal) and forgets failures. */
  async settle(): Promise<StagedFile[]> {
    while (this.inFlight.size) await Promise.race(this.inFlight);
    return [...this.staged];
  }
}
