/**
 * Runs one measured program in its own child process: wall time, its stdout, and its peak RSS,
 * so that every figure of the bench is one program's alone (the bench's own memory never counts).
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';

export interface ChildFigures {
  /** Wall time from spawn to exit. */
  ms: number;
  stdout: string;
  /**
   * The child's peak resident set in MB: the kernel's high-water mark (VmHWM), read every 20 ms
   * while it runs, or what the child reported itself when that is higher (a Node child prints
   * process.resourceUsage().maxRSS as `max_rss_kb` in its last JSON line, which is exact).
   */
  peakRssMb: number;
}

/** VmHWM of a live process in kB, or 0 once it is gone (or off Linux). */
function highWaterKb(pid: number): number {
  try {
    const match = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return match ? Number(match[1]) : 0;
  } catch {
    return 0;
  }
}

/** What a Node child reported as its own peak, from the last line of its stdout. */
function reportedKb(stdout: string): number {
  const last = stdout.trim().split('\n').pop() ?? '';
  try {
    const value = (JSON.parse(last) as { max_rss_kb?: unknown }).max_rss_kb;
    return typeof value === 'number' ? value : 0;
  } catch {
    return 0;
  }
}

/** Runs `command args`, rejecting on a non-zero exit with the tail of its output. */
export function runMeasured(
  command: string,
  args: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
): Promise<ChildFigures> {
  return new Promise((resolve, reject) => {
    const started = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    let stdout = '';
    let stderr = '';
    let peakKb = 0;
    const poll = setInterval(() => {
      if (child.pid) peakKb = Math.max(peakKb, highWaterKb(child.pid));
    }, 20);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    child.on('error', (err) => {
      clearInterval(poll);
      reject(err);
    });
    child.on('close', (code) => {
      clearInterval(poll);
      const ms = performance.now() - started;
      if (code !== 0) {
        reject(new Error(`${command} exited ${code}: ${(stderr || stdout).slice(-2000)}`));
        return;
      }
      const kb = Math.max(peakKb, reportedKb(stdout));
      resolve({ ms, stdout, peakRssMb: Math.round(kb / 1024) });
    });
  });
}

/** Ends a Node child's output: its own peak RSS, for runMeasured. */
export function reportOwnPeak(figures: Record<string, unknown>): void {
  process.stdout.write(`${JSON.stringify({ ...figures, max_rss_kb: process.resourceUsage().maxRSS })}\n`);
}
