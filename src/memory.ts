/**
 * The container's memory limit and the V8 heap size that follows from it. Node sizes its heap
 * from the host's memory, not the cgroup's: in a 1 GiB pod on a 64 GiB node the heap could grow
 * until the kernel's OOM killer ends the pod (exit 137, no summary, no lease release).
 */
import { readFileSync } from 'node:fs';
import { getHeapStatistics } from 'node:v8';

/** Share of the container's memory the V8 heap may use; the rest is DuckDB, zstd, sockets, code. */
const HEAP_SHARE = 0.6;
/** The heap is never made smaller than this: a run cannot work in less. */
const MIN_HEAP_MB = 128;
/** A cgroup v1 "no limit" is a page-rounded 2^63-1; anything this large is no limit. */
const NO_LIMIT = 2 ** 60;

/** The container's memory limit in bytes (cgroup v2, then v1), or undefined when there is none. */
export function containerMemoryLimit(root = '/sys/fs/cgroup'): number | undefined {
  for (const file of [`${root}/memory.max`, `${root}/memory/memory.limit_in_bytes`]) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch {
      continue;
    }
    if (text === 'max') return undefined;
    const bytes = Number(text);
    return Number.isFinite(bytes) && bytes > 0 && bytes < NO_LIMIT ? bytes : undefined;
  }
  return undefined;
}

/** The --max-old-space-size (MiB) for a memory limit. */
export function heapMbFor(limitBytes: number): number {
  return Math.max(MIN_HEAP_MB, Math.floor((limitBytes * HEAP_SHARE) / 2 ** 20));
}

/** This process's V8 heap limit in MiB. */
export function heapLimitMb(): number {
  return Math.round(getHeapStatistics().heap_size_limit / 2 ** 20);
}
