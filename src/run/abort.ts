/**
 * Waiting on work that may not stop when asked: a warehouse job already submitted runs on in the
 * warehouse whatever this process does. On SIGTERM the run must still end within its 10 s, so it
 * stops waiting; the next run reconciles the job (loads are idempotent per window and the
 * checkpoint did not move).
 */

/**
 * Settles like `work`, or rejects with the signal's reason as soon as it fires. `release` is
 * called with what abandoned work resolves to later (a connection to close, a lease to release).
 */
export function untilAborted<T>(
  work: Promise<T>,
  signal: AbortSignal,
  release?: (value: T) => unknown,
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
    const onAbort = () => {
      abandon();
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
