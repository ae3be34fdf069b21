/**
 * The logger: pino JSON lines on stdout that Cloud Logging (`severity`, `time`, `msg`) and
 * CloudWatch read as they are; readable lines on a terminal. Every line's string values pass
 * through the redactor, so a secret that reaches a message (a driver error quoting a URL) is
 * still hidden.
 */
import { createRequire } from 'node:module';
import { type DestinationStream, type Logger, type LoggerOptions, pino } from 'pino';
import { redactor } from './config/redact.js';
import { NightshiftError } from './errors.js';

export type { Logger } from 'pino';

/** Cloud Logging's LogSeverity names for pino's levels. */
const SEVERITY: Record<string, string> = {
  trace: 'DEBUG',
  debug: 'DEBUG',
  info: 'INFO',
  warn: 'WARNING',
  error: 'ERROR',
  fatal: 'CRITICAL',
};

export interface LoggerSettings {
  level?: string;
  /** `json` lines, `pretty` lines, or `auto`: pretty when stdout is a terminal. */
  format?: 'auto' | 'json' | 'pretty';
  /** Where lines go (default: stdout, synchronously, so nothing is lost at exit). */
  destination?: DestinationStream;
}

/** Whether log lines are readable text rather than JSON. */
export function isPretty(format: LoggerSettings['format'] = 'auto'): boolean {
  return format === 'pretty' || (format === 'auto' && process.stdout.isTTY === true);
}

/** Serializes errors with their code, hint and cause chain; never the stack of a known error. */
export function serializeError(err: unknown): Record<string, unknown> {
  if (!(err instanceof Error)) return { message: String(err) };
  const out: Record<string, unknown> = { type: err.name, message: err.message };
  if (err instanceof NightshiftError) {
    out.code = err.code;
    if (err.hint) out.hint = err.hint;
  } else {
    out.stack = err.stack;
  }
  const cause = (err as { cause?: unknown }).cause;
  if (cause !== undefined && cause !== err) out.cause = serializeError(cause);
  return out;
}

function baseOptions(level: string): LoggerOptions {
  return {
    level,
    messageKey: 'msg',
    timestamp: pino.stdTimeFunctions.isoTime,
    base: undefined,
    formatters: {
      level: (label) => ({ severity: SEVERITY[label] ?? 'DEFAULT', level: label }),
    },
    serializers: { err: serializeError },
    // Callers redact values before they log them; this last net works on the string values of
    // the serialised line, so it can never break the JSON (a secret `0000` inside a count).
    hooks: { streamWrite: (line) => redactor.redactJson(line) },
  };
}

/** Creates the process logger. */
export function createLogger(settings: LoggerSettings = {}): Logger {
  const level = settings.level ?? 'info';
  if (settings.destination) return pino(baseOptions(level), settings.destination);
  if (isPretty(settings.format)) {
    // pino-pretty is loaded only for terminals: JSON runs in pods never pay for it.
    const require = createRequire(import.meta.url);
    const pretty = require('pino-pretty') as typeof import('pino-pretty');
    const stream = pretty.build({
      colorize: process.stdout.isTTY === true,
      sync: true,
      translateTime: 'SYS:HH:MM:ss',
      ignore: 'severity,level,job,run_id',
      messageKey: 'msg',
      customPrettifiers: {},
    });
    return pino(baseOptions(level), stream);
  }
  return pino(baseOptions(level), pino.destination({ dest: 1, sync: true }));
}

/** Writes one JSON line to stdout as it is, redacted: the run summary's line in pretty mode. */
export function writeRawLine(line: string): void {
  process.stdout.write(`${redactor.redactJson(line)}\n`);
}
