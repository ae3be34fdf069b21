/**
 * Uploads part files as soon as they close, a bounded number at a time, and deletes each local
 * file once it is staged. The export waits when the queue is full, so /tmp never holds more
 * than the in-flight parts plus the one being written.
 */
import { rm } from 'node:fs/promises';
import { failpoint } from '../core/failpoint.js';
import { partKey } from '../core/layout.js';
import type { PartFile } from '../parquet/writer.js';
import type { ObjectStore } from '../store/store.js';
import type { StagedFile } from '../warehouse/warehouse.js';

export class Uploader {
  private readonly store: ObjectStore;
  private readonly job: string;
  private readonly runId: string;
  private readonly signal: AbortSignal;
  private readonly maxInFlight: number;
  private readonly inFlight = new Set<Promise<void>>();
  private readonly staged: StagedFile[] = [];
  private failure: unknown;
  private readonly onStaged: ((file: StagedFile) => Promise<void>) | undefined;
  /** Loads of staged files, one after another, in staging order. */
  private loading: Promise<void> = Promise.resolve();

  constructor(options: {
    store: ObjectStore;
    job: string;
    runId: string;
    signal: AbortSignal;
    maxInFlight?: number;
    /** Called with each file once staged (a warehouse that loads while the export runs). */
    onStaged?: (file: StagedFile) => Promise<void>;
  }) {
    this.store = options.store;
    this.onStaged = options.onStaged;
    this.job = options.job;
    this.runId = options.runId;
    this.signal = options.signal;
    this.maxInFlight = options.maxInFlight ?? 2;
  }

  /** Starts uploading a closed part; once staged, it is handed to `onStaged`. */
  add(part: PartFile): void {
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
        const file = {
          key,
          url: this.store.urlOf(key),
          rows: part.rows,
          bytes: part.bytes,
          sha256: part.sha256,
        };
        this.staged.push(file);
        await failpoint('after-part-staged');
        const onStaged = this.onStaged;
        if (onStaged) this.loading = this.loading.then(() => (this.failure ? undefined : onStaged(file)));
        this.loading.catch((err: unknown) => {
          this.failure ??= err;
        });
      })
      .catch((err: unknown) => {
        this.failure ??= err;
      })
      .finally(() => {
        this.inFlight.delete(task);
      });
    this.inFlight.add(task);
  }

  /** A promise to wait on while the queue is full (undefined when there is room); rethrows upload failures. */
  whenRoom(): Promise<void> | undefined {
    if (this.failure) return Promise.reject(this.failure);
    if (this.inFlight.size < this.maxInFlight) return undefined;
    return (async () => {
      while (this.inFlight.size >= this.maxInFlight) await Promise.race(this.inFlight);
      if (this.failure) throw this.failure;
    })();
  }

  /** Waits for every upload (not for the loads of staged files); rethrows an upload failure. */
  async uploaded(): Promise<void> {
    while (this.inFlight.size) await Promise.race(this.inFlight);
    if (this.failure) throw this.failure;
  }

  /** Waits for every upload (and load of a staged file); returns the staged files in part order. */
  async finish(): Promise<StagedFile[]> {
    while (this.inFlight.size) await Promise.race(this.inFlight);
    await this.loading.catch(() => undefined);
    if (this.failure) throw this.failure;
    return [...this.staged].sort((a, b) => a.key.localeCompare(b.key));
  }

  /** Waits for running uploads to settle (they abort on the signal) and forgets failures. */
  async settle(): Promise<StagedFile[]> {
    while (this.inFlight.size) await Promise.race(this.inFlight);
    await this.loading.catch(() => undefined);
    return [...this.staged];
  }
}
