/**
 * A guard for a defect of teeny-request 9 (the HTTP layer of @google-cloud/storage 7) on Node 22
 * and later. In stream mode it pipes the response into its request stream from inside a promise
 * callback, `stream.pipeline(response, request, () => {})`. When the SDK's retry has already
 * destroyed that request stream (a 503 on a read, then the retry), Node 20 reported this to the
 * pipeline's callback, which ignores it; Node 22+ throws ERR_STREAM_UNABLE_TO_PIPE instead, and
 * from that callback it becomes an unhandled rejection that ends the process with exit 1 in the
 * middle of a run. Installed when the Cloud Storage stage loads: `stream.pipeline` called with a
 * callback reports that one error to the callback again, as on Node 20; every other error, and
 * every call without a callback, is unchanged. (teeny-request 10 has the same code.)
 */
import stream from 'node:stream';
import { promisify } from 'node:util';

const GUARDED = Symbol.for('nightshift.pipelineGuard');

export function guardPipelineIntoDestroyed(): void {
  const target = stream as unknown as Record<PropertyKey, unknown>;
  const original = stream.pipeline as unknown as ((...args: unknown[]) => unknown) &
    Record<PropertyKey, unknown>;
  if (original[GUARDED]) return;
  const guarded = (...args: unknown[]): unknown => {
    try {
      return original(...args);
    } catch (err) {
      const callback = args[args.length - 1];
      if (
        (err as NodeJS.ErrnoException).code !== 'ERR_STREAM_UNABLE_TO_PIPE' ||
        typeof callback !== 'function'
      )
        throw err;
      process.nextTick(callback as (e: unknown) => void, err);
      return args[args.length - 2];
    }
  };
  Object.defineProperty(guarded, promisify.custom, {
    value: original[promisify.custom as unknown as string],
  });
  Object.defineProperty(guarded, GUARDED, { value: true });
  target.pipeline = guarded;
}
