/** Stopping on SIGTERM does not wait for a warehouse job that ignores the signal. */
import { describe, expect, it } from 'vitest';
import { untilAborted } from '../src/core/abort.js';
import { NightshiftError } from '../src/errors.js';

describe('untilAborted', () => {
  it('rejects with the signal reason at once, though the work never settles', async () => {
    const controller = new AbortController();
    const never = new Promise<number>(() => undefined);
    const waiting = untilAborted(never, controller.signal);
    const reason = new NightshiftError('terminated', 'stopped by SIGTERM');
    setTimeout(() => controller.abort(reason), 20);
    // The work never settles: were the abort not enough, this would wait until the test's limit.
    await expect(waiting).rejects.toBe(reason);
  });

  it('settles like the work when no signal comes, and swallows a late failure after an abort', async () => {
    const controller = new AbortController();
    await expect(untilAborted(Promise.resolve(7), controller.signal)).resolves.toBe(7);
    await expect(untilAborted(Promise.reject(new Error('load failed')), controller.signal)).rejects.toThrow(
      'load failed',
    );
    let fail: (err: Error) => void = () => undefined;
    const late = new Promise<number>((_, reject) => {
      fail = reject;
    });
    const waiting = untilAborted(late, controller.signal);
    controller.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow('stop');
    fail(new Error('the job failed later')); // must not surface as an unhandled rejection
    await new Promise((r) => setTimeout(r, 10));
  });

  it("gives work graceMs to stop by itself, so an adapter's own account wins", async () => {
    const controller = new AbortController();
    const ownAccount = new NightshiftError('terminated', 'stopped by SIGTERM; load job job_1 left running');
    const honours = new Promise<number>((_, reject) => {
      controller.signal.addEventListener('abort', () => setTimeout(() => reject(ownAccount), 50));
    });
    const waiting = untilAborted(honours, controller.signal, { graceMs: 2000 });
    controller.abort(new Error('stopped by SIGTERM'));
    await expect(waiting).rejects.toBe(ownAccount);
    // Work that ignores the signal is given up on once the grace is over.
    const other = new AbortController();
    const started = Date.now();
    const stuck = untilAborted(new Promise<number>(() => undefined), other.signal, { graceMs: 100 });
    other.abort(new Error('stop'));
    await expect(stuck).rejects.toThrow('stop');
    expect(Date.now() - started).toBeGreaterThanOrEqual(95);
  });

  it('releases what abandoned work resolves to later', async () => {
    const controller = new AbortController();
    let resolveLate: (v: string) => void = () => undefined;
    const late = new Promise<string>((resolve) => {
      resolveLate = resolve;
    });
    const released: string[] = [];
    const waiting = untilAborted(late, controller.signal, { release: (v) => released.push(v) });
    controller.abort(new Error('stop'));
    await expect(waiting).rejects.toThrow('stop');
    resolveLate('lease');
    await new Promise((r) => setTimeout(r, 10));
    expect(released).toEqual(['lease']);
  });

  it('rejects at once when the signal already fired', async () => {
    const controller = new AbortController();
    controller.abort(new Error('already'));
    await expect(untilAborted(new Promise(() => undefined), controller.signal)).rejects.toThrow('already');
  });
});
