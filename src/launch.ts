#!/usr/bin/env node
/**
 * The image's entrypoint: sizes the V8 heap to the container's memory limit (src/memory.ts), then
 * runs the CLI. Under a limit the CLI runs in a child process started with --max-old-space-size;
 * without one, when the heap size was set explicitly, or for `--version`/`--help`, it runs in
 * this process, so those cost one Node start.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { launchSettings } from './config/runtime.js';
import { containerMemoryLimit, heapMbFor } from './memory.js';

/**
 * The young generation's semi-spaces, in MiB: Node 20's size at these heaps. Node 24's V8 grows
 * them to 64 MiB, and three count in the heap limit: 806 MiB instead of 662 in a 1 GiB pod,
 * taken from what DuckDB and zstd need outside the heap.
 */
const SEMI_SPACE_MB = 16;

/** Commands that print and exit: never worth a second process. */
const QUICK = new Set(['--version', '-V', '--help', '-h', 'help']);

const SIGNAL_NUMBERS: Partial<Record<NodeJS.Signals, number>> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGKILL: 9,
  SIGTERM: 15,
};

function heapAlreadySet(nodeOptions: string): boolean {
  return [...process.execArgv, ...nodeOptions.split(/\s+/)].some((a) => a.startsWith('--max-old-space-size'));
}

async function main(args: string[]): Promise<void> {
  const limit = containerMemoryLimit();
  const cli = fileURLToPath(new URL('./cli.js', import.meta.url));
  const quick = !args.length || args.some((a) => QUICK.has(a));
  if (!limit || quick || heapAlreadySet(launchSettings().nodeOptions)) {
    await import(cli);
    return;
  }
  const heap = [`--max-old-space-size=${heapMbFor(limit)}`, `--max-semi-space-size=${SEMI_SPACE_MB}`];
  const child = spawn(process.execPath, [...heap, cli, ...args], { stdio: 'inherit' });
  // The kubelet signals PID 1, this process; the run's own SIGTERM handling lives in the child.
  for (const signal of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) process.on(signal, () => child.kill(signal));
  child.on('error', (err) => {
    process.stderr.write(`nightshift: cannot start ${process.execPath}: ${err.message}\n`);
    process.exitCode = 1;
  });
  child.on('exit', (code, signal) => {
    process.exitCode = code ?? 128 + ((signal && SIGNAL_NUMBERS[signal]) || 0);
  });
}

await main(process.argv.slice(2));
