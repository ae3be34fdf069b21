/**
 * Waiting for a job a warehouse runs on its side (a BigQuery job, a Redshift statement): read
 * its state with capped exponential backoff until it ends, the deadline passes, or the run is
 * stopped. What a deadline or a stop means (cancel, leave running, report) is the caller's.
 */
import { pause } from './abort.js';

export interface PollOptions<T> {
  /** Reads the job's state once; undefined when this read failed in a way worth another try. */
  read(): Promise<T | undefined>;
  /** Whether a state is final. */
  ended(state: T): boolean;
  /** First and longest wait between two reads (ms); each wait is 1.6 times the last. */
  initialMs: number;
  maxMs: number;
  /** When to stop waiting (ms since the epoch). */
  deadline: number;
  /** At the deadline: cancel the job and throw what the run should report. */
  onDeadline(): Promise<never>;
  /** When `signal` fires: return a final state, or throw what became of the job. */
  onStop(): Promise<T>;
  signal?: AbortSignal;
}

/** Reads until the job ends; a final state is returned even when the run was stopped meanwhile. */
export async function pollUntilEnded<T>(options: PollOptions<T>): Promise<T> {
  let delay = options.initialMs;
  for (;;) {
    const state = await options.read();
    if (state !== undefined && options.ended(state)) return state;
    if (options.signal?.aborted) return options.onStop();
    if (Date.now() >= options.deadline) return options.onDeadline();
    await pause(Math.min(delay, Math.max(0, options.deadline - Date.now())), options.signal);
    delay = Math.min(options.maxMs, Math.ceil(delay * 1.6));
  }
}
