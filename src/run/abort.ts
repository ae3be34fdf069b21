/**
 * Waiting on work that may not stop when asked: a warehouse job already submitted runs on in the
 * warehouse whatever this process does. On SIGTERM the run must still end within its 10 s, so it
 * stops waiting; the next run reconciles the job (loads are idempotent per window and the
 * checkpoint did not move).
 */

/** Settles like `work`, or rejects with the signal's reason as soon as it fires. */
export function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    work.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => {
      // Whatever the abandoned work ends with is no longer anyone's concern.
      work.catch(() => undefined);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
