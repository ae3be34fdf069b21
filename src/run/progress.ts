/**
 * Progress of a long export: rows, MB/s and ETA. On a terminal one status line on stderr is
 * redrawn a few times a second; elsewhere a `progress` log line is written every 10 seconds.
 */
import type { Logger } from '../log.js';

export type ProgressMode = 'tty' | 'log' | 'off';

const TTY_EVERY_MS = 250;
const LOG_EVERY_MS = 10_000;

export class Progress {
  private readonly log: Logger;
  private readonly mode: ProgressMode;
  private readonly out: NodeJS.WriteStream;
  private started = 0;
  private lastDraw = 0;
  private total: number | undefined;
  private exact = true;
  private rows = 0;
  private bytes = 0;
  private drawn = false;

  constructor(log: Logger, mode: ProgressMode, out: NodeJS.WriteStream = process.stderr) {
    this.log = log;
    this.mode = mode;
    this.out = out;
  }

  start(): void {
    this.started = Date.now();
    this.lastDraw = this.started;
  }

  /** The number of rows the window holds (or the planner's estimate of it), once known. */
  setTotal(total: number, exact: boolean): void {
    this.total = total;
    this.exact = exact;
  }

  /** Cheap enough to call for every COPY chunk: it draws only every so often. */
  update(rows: number, bytes: number): void {
    this.rows = rows;
    this.bytes = bytes;
    if (this.mode === 'off') return;
    const now = Date.now();
    if (now - this.lastDraw < (this.mode === 'tty' ? TTY_EVERY_MS : LOG_EVERY_MS)) return;
    this.lastDraw = now;
    this.draw(now);
  }

  private figures(now: number) {
    const seconds = Math.max(0.001, (now - this.started) / 1000);
    const rowsPerSecond = this.rows / seconds;
    const mbPerSecond = this.bytes / 1e6 / seconds;
    const eta =
      this.total && rowsPerSecond > 0 ? Math.max(0, (this.total - this.rows) / rowsPerSecond) : undefined;
    return { seconds, rowsPerSecond, mbPerSecond, eta };
  }

  private draw(now: number): void {
    const f = this.figures(now);
    if (this.mode === 'log') {
      this.log.info(
        {
          rows: this.rows,
          rows_total: this.total ?? null,
          rows_total_estimated: !this.exact,
          mb: Math.round(this.bytes / 1e6),
          mb_per_s: round1(f.mbPerSecond),
          rows_per_s: Math.round(f.rowsPerSecond),
          eta_s: f.eta === undefined ? null : Math.round(f.eta),
        },
        'progress',
      );
      return;
    }
    const pct = this.total ? ` ${((100 * this.rows) / Math.max(1, this.total)).toFixed(1)}%` : '';
    const of = this.total ? ` / ${this.exact ? '' : '~'}${this.total.toLocaleString('en-US')}` : '';
    const eta = f.eta === undefined ? '' : `  ETA ${clock(f.eta)}`;
    const line = `  ${this.rows.toLocaleString('en-US')}${of} rows${pct}  ${f.mbPerSecond.toFixed(1)} MB/s  ${Math.round(f.rowsPerSecond / 1000)}k rows/s${eta}`;
    this.out.write(`\r\x1b[2K${line}`);
    this.drawn = true;
  }

  /** Clears the status line. */
  stop(): void {
    if (this.drawn) this.out.write('\r\x1b[2K');
    this.drawn = false;
  }
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

function clock(seconds: number): string {
  const s = Math.round(seconds);
  const m = Math.floor(s / 60);
  return `${m}:${String(s % 60).padStart(2, '0')}`;
}
