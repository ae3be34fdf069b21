/**
 * Failpoints: named places in a run where the reliability tests stop the process exactly there
 * (SIGKILL, as a node eviction or OOM kill would) or stall it (to let a lease expire). Off unless
 * NIGHTSHIFT_FAILPOINTS names them: `after-manifest`, `before-commit=sleep:4000`, `mid-copy=kill`.
 */

type Action = { kind: 'kill' } | { kind: 'sleep'; ms: number };

const active = new Map<string, Action>();

/** Parses `name[=kill|sleep:ms],...` (from the runtime settings). */
export function configureFailpoints(spec: string | undefined): void {
  active.clear();
  for (const item of (spec ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean)) {
    const [name, action = 'kill'] = item.split('=');
    const sleep = /^sleep:(\d+)$/.exec(action);
    active.set(name, sleep ? { kind: 'sleep', ms: Number(sleep[1]) } : { kind: 'kill' });
  }
}

/** Stops or stalls here when this failpoint is configured; otherwise returns at once. */
export async function failpoint(name: string): Promise<void> {
  const action = active.get(name);
  if (!action) return;
  if (action.kind === 'kill') {
    process.kill(process.pid, 'SIGKILL');
    await new Promise(() => undefined);
  }
  if (action.kind === 'sleep') await new Promise((r) => setTimeout(r, action.ms));
}
