/**
 * The one place test time limits come from. A limit here is how long something may take on a
 * quiet 2-core machine, times NIGHTSHIFT_TEST_TIME_FACTOR (default 1): a busy or slower machine
 * sets the factor (CI under load: 3) instead of anyone editing a number in a test. Limits only
 * bound how long a test waits before it fails; no test asserts on how long something took.
 */

/** NIGHTSHIFT_TEST_TIME_FACTOR, a positive number; 1 when unset. */
export const TIME_FACTOR: number = (() => {
  const raw = process.env.NIGHTSHIFT_TEST_TIME_FACTOR;
  if (raw === undefined || raw === '') return 1;
  const factor = Number(raw);
  if (!Number.isFinite(factor) || factor <= 0)
    throw new Error(`NIGHTSHIFT_TEST_TIME_FACTOR=${raw} is not a positive number (e.g. 1, 2.5)`);
  return factor;
})();

/** A limit of `ms` on a quiet machine, scaled by the factor. */
export const scaled = (ms: number): number => Math.round(ms * TIME_FACTOR);

/** The named limits the suite uses, already scaled. */
export const LIMITS = {
  /** One test (vitest testTimeout). */
  test: scaled(120_000),
  /** One hook: servers, databases, builds (vitest hookTimeout). */
  hook: scaled(180_000),
  /** One run of the CLI as a child process. */
  cliRun: scaled(120_000),
  /** Something a test waits for that normally happens within a second or two. */
  condition: scaled(30_000),
  /** A production install (npm ci --omit=dev), when not cached. */
  install: scaled(600_000),
  /** A server or child process to start listening. */
  startup: scaled(60_000),
} as const;

/**
 * Polls `condition` until it holds; fails, naming `what`, after `timeoutMs` (scaled already:
 * pass a LIMITS member or scaled(...)).
 */
export async function until(
  condition: () => boolean | Promise<boolean>,
  options: { what?: string; timeoutMs?: number; everyMs?: number } = {},
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? LIMITS.condition;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() > deadline)
      throw new Error(`gave up after ${timeoutMs} ms waiting for ${options.what ?? 'a condition'}`);
    await new Promise((resolve) => setTimeout(resolve, options.everyMs ?? 10));
  }
}
