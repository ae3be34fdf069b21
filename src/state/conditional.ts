/**
 * Conditional writes of the small state objects (the lease, the checkpoint) that stay correct when
 * a response is lost. The SDKs retry a request whose answer never came; when the first attempt
 * was applied, the retry's condition no longer holds (HTTP 412) although the write is this run's.
 * The object is then read back: if it holds exactly the bytes this write sent, the write won.
 *
 * That read-back is only sound if no other writer can ever send the same bytes, so every write
 * carries a `write_id` drawn at random for it: two runs that build the same record (the same
 * fencing token over the same checkpoint) still send different bytes, and only one of them can
 * find its own bytes in the object. It also keeps S3 and local etags (content hashes) unique per
 * write, so a compare-and-swap cannot match an older version that happened to hold equal content.
 */
import { randomUUID } from 'node:crypto';
import { type ObjectInfo, type ObjectStore, PreconditionFailedError } from '../store/store.js';

export type WriteCondition = { readonly ifMatch: string } | { readonly ifNoneMatch: true };

export async function putState(
  store: ObjectStore,
  key: string,
  record: object,
  condition: WriteCondition,
): Promise<ObjectInfo> {
  const body = JSON.stringify({ ...record, write_id: randomUUID() }, null, 2);
  try {
    return await store.put(key, body, { contentType: 'application/json', ...condition });
  } catch (err) {
    if (!(err instanceof PreconditionFailedError)) throw err;
    const current = await store.get(key);
    if (current?.body.toString('utf8') === body) return current.info;
    throw err;
  }
}
