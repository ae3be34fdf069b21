/** The container memory limit as the entrypoint reads it, and the heap size it picks. */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { containerMemoryLimit, heapMbFor } from '../src/memory.js';
import { tempDir } from './helpers/env.js';

const tmp = tempDir('ns-memory-');
afterAll(() => tmp.cleanup());

function cgroup(files: Record<string, string>): string {
  const root = join(tmp.dir, String(Math.random()).slice(2));
  for (const [path, content] of Object.entries(files)) {
    mkdirSync(join(root, path, '..'), { recursive: true });
    writeFileSync(join(root, path), content);
  }
  return root;
}

describe('containerMemoryLimit', () => {
  it('reads cgroup v2 memory.max, and "max" as no limit', () => {
    expect(containerMemoryLimit(cgroup({ 'memory.max': '1073741824\n' }))).toBe(2 ** 30);
    expect(containerMemoryLimit(cgroup({ 'memory.max': 'max\n' }))).toBeUndefined();
  });

  it("reads cgroup v1's limit_in_bytes, where a page-rounded 2^63 means no limit", () => {
    expect(containerMemoryLimit(cgroup({ 'memory/memory.limit_in_bytes': '536870912' }))).toBe(2 ** 29);
    expect(
      containerMemoryLimit(cgroup({ 'memory/memory.limit_in_bytes': '9223372036854771712' })),
    ).toBeUndefined();
  });

  it('finds no limit where there is no cgroup file', () => {
    expect(containerMemoryLimit(join(tmp.dir, 'none'))).toBeUndefined();
  });
});

describe('heapMbFor', () => {
  it('gives the heap 60% of the limit, never less than 128 MiB', () => {
    expect(heapMbFor(2 ** 30)).toBe(614);
    expect(heapMbFor(4 * 2 ** 30)).toBe(2457);
    expect(heapMbFor(128 * 2 ** 20)).toBe(128);
  });
});
