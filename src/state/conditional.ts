/**
 * Conditional writes of the small state objects (the lease, the checkpoint) that stay correct when
 * a response is lost. The SDKs retry a request whose answer never came; when the first attempt
 * was applied, the retry's condition no longer holds (HTTP 412) although the write is this run's.
 * The object is then read back: if it holds exactly the bytes this write sent, the write won.
 * Each record carries a run id, a fencing token or a timestamp, so no other writer sends the same
 * bytes.
 */
import { type ObjectInfo, type ObjectStore, PreconditionFailedError } from '../store/store.js';

export type WriteCondition = { readonly ifMatch: string } | { readonly ifNoneMatch: true };

export async function putState(
  store: ObjectStore,
  key: string,
  body: string,
  condition: WriteCondition,
): Promise<ObjectInfo> {
  try {
    return await store.put(key, body, { contentType: 'application/json', ...condition });
  } catch (err) {
    if (!(err instanceof PreconditionFailedError)) throw err;
    const current = await store.get(key);
    if (current?.body.toString('utf8') === body) return current.info;
    throw err;
  }
}
