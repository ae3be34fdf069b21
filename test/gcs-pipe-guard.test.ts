/**
 * The Cloud Storage stage's guard for teeny-request on Node 22+ (src/store/gcs/pipe-guard.ts):
 * `stream.pipeline` into a destroyed stream, called as teeny-request calls it (CommonJS, with a
 * callback), reports to the callback instead of throwing. Node 20 never threw; on Node 24 (the
 * image's, and CI's second pass) this fails without the guard.
 */
import { createRequire } from 'node:module';
import { PassThrough } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { guardPipelineIntoDestroyed } from '../src/store/gcs/pipe-guard.js';

const require = createRequire(import.meta.url);

describe('the pipeline guard of the Cloud Storage stage', () => {
  it('a pipeline into a destroyed stream reports to its callback, and other calls are unchanged', async () => {
    guardPipelineIntoDestroyed();
    guardPipelineIntoDestroyed(); // installed once, however often the store loads
    const stream = require('node:stream') as typeof import('node:stream');
    const destroyed = new PassThrough();
    destroyed.destroy();
    const reported = await new Promise<unknown>((resolve) => {
      stream.pipeline(new PassThrough(), destroyed, (err) => resolve(err));
    });
    expect(reported).toBeInstanceOf(Error);
    // An ordinary pipeline still flows, and its promise form still works.
    const out: Buffer[] = [];
    const sink = new PassThrough();
    sink.on('data', (c: Buffer) => out.push(c));
    const source = new PassThrough();
    const done = new Promise<unknown>((resolve) => stream.pipeline(source, sink, resolve));
    source.end('abc');
    expect(await done).toBeUndefined();
    expect(Buffer.concat(out).toString()).toBe('abc');
    const { promisify } = await import('node:util');
    const viaPromise = new PassThrough();
    const drained = new PassThrough();
    drained.resume();
    const p = promisify(stream.pipeline)(viaPromise, drained);
    viaPromise.end('x');
    await expect(p).resolves.toBeUndefined();
  });
});
