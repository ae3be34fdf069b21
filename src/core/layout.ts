/**
 * Run ids and the object layout under the stage (all times UTC):
 *   <job>/data/dt=YYYY-MM-DD/run=<run_id>/part-00000.parquet
 *   <job>/runs/<run_id>.json
 *   <job>/state/checkpoint.json, <job>/state/lease.json
 */
import { randomBytes } from 'node:crypto';

/** `YYYYMMDDTHHMMSSZ-<6 hex>`: sortable by start time, unique across pods. */
export function newRunId(now: Date = new Date()): string {
  const stamp = now
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
  return `${stamp}-${randomBytes(3).toString('hex')}`;
}

/** The start time encoded in a run id. */
export function runIdTime(runId: string): Date {
  const m = /^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z-/.exec(runId);
  if (!m) throw new Error(`not a run id: ${runId}`);
  return new Date(`${m[1]}-${m[2]}-${m[3]}T${m[4]}:${m[5]}:${m[6]}Z`);
}

/** Folder of a run's data files. */
export function dataPrefix(job: string, runId: string): string {
  const day = runIdTime(runId).toISOString().slice(0, 10);
  return `${job}/data/dt=${day}/run=${runId}/`;
}

/** Key of part `index` of a run. */
export function partKey(job: string, runId: string, index: number): string {
  return `${dataPrefix(job, runId)}${partFileName(index)}`;
}

export function partFileName(index: number): string {
  return `part-${String(index).padStart(5, '0')}.parquet`;
}

/** Key of a run's manifest. */
export function manifestKey(job: string, runId: string): string {
  return `${job}/runs/${runId}.json`;
}
