/**
 * Waiting on work that may not stop when asked: a warehouse job already submitted runs on in the
 * warehouse whatever this process does. On SIGTERM the run must still end within its 10 s, so it
 * stops waiting; the next run reconciles the job (loads are idempotent per window and the
 * checkpoint did not move). And the signals themselves: SIGTERM and Ctrl-C turn into the run's
 * AbortSignal.
 */
import { EXIT_CODES, NightshiftError } from '../errors.js';
import type { Logger } from '../log.js';

/** After SIGTERM, a run that has not finished cleanly by then is ended regardless. */
export const TERMINATION_DEADLINE_MS = 9_500;

/** SIGTERM (and Ctrl-C) abort the run; a hard deadline guarantees the pod ends in time. */
export function terminationSignal(log: Logger): { signal: AbortSignal; dispose: () => void } {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    if (controller.signal.aborted) return;
    log.warn({ signal: name }, 'stopping: aborting uploads, releasing the lease');
    controller.abort(new NightshiftError('terminated', `stopped by ${name}`));
    setTimeout(() => {
      log.error('did not stop cleanly in time; exiting');
      process.exit(EXIT_CODES.terminated.exit);
    }, TERMINATION_DEADLINE_MS).unref();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    },
  };
}

export interface UntilAbortedOptions<T> {
  /** Called with what abandoned work resolves to later (a connection to close, a lease to release). */
  release?: (value: T) => unknown;
  /**
   * How long work may take to stop by itself once the signal fired: an adapter that honours the
   * signal answers with its own account ("load job left running"), which beats the bare reason.
   */
  graceMs?: number;
}

/** Settles like `work`, or rejects with the signal's reason once it fires (after `graceMs`). */
export function untilAborted<T>(
  work: Promise<T>,
  signal: AbortSignal,
  { release, graceMs = 0 }: UntilAbortedOptions<T> = {},
): Promise<T> {
  const abandon = () => {
    // Whatever the abandoned work ends with is no longer anyone's concern, but what it holds is.
    work.then(
      (value) => Promise.resolve(release?.(value)).catch(() => undefined),
      () => undefined,
    );
  };
  if (signal.aborted) {
    abandon();
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const giveUp = () => {
      abandon();
      reject(signal.reason);
    };
    const onAbort = () => {
      if (graceMs > 0) timer = setTimeout(giveUp, graceMs);
      else giveUp();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener('abort', onAbort);
    };
    work.then(
      (value) => {
        done();
        resolve(value);
      },
      (err: unknown) => {
        done();
        reject(err);
      },
    );
  });
}

/** Waits `ms`, or less when `signal` aborts first (never rejects): a poll loop's pause. */
export function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
