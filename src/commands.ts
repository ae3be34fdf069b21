/**
 * What each CLI command does once its arguments are parsed: load the configuration, build the
 * logger, wire SIGTERM, run, and print the result. Returns the process exit code.
 */

import { backends } from './backends.js';
import { loadConfig, redactedConfig } from './config/load.js';
import { redactor } from './config/redact.js';
import { runtimeSettings } from './config/runtime.js';
import type { Config } from './config/schema.js';
import { terminationSignal } from './core/abort.js';
import { configureFailpoints } from './core/failpoint.js';
import { configError, EXIT_CODES } from './errors.js';
import { createLogger, isPretty, type Logger, writeRawLine } from './log.js';
import { executeRun, type RunRequest } from './run/pipeline.js';
import type { ProgressMode } from './run/progress.js';
import type { RunSummary } from './run/summary.js';

export interface CommandArgs {
  configPath: string | undefined;
  overrides: Record<string, unknown>;
  values: Record<string, string | boolean | undefined>;
}

function setup(args: CommandArgs): { config: Config; log: Logger } {
  const { config } = loadConfig({ path: args.configPath, overrides: args.overrides });
  const log = createLogger({ level: config.log.level, format: config.log.format });
  warnShortSecrets(log);
  return { config, log };
}

/** Says which secrets are too short to be hidden wherever they appear (stderr without a logger). */
function warnShortSecrets(log?: Logger): void {
  const warning = redactor.shortSecretWarning();
  if (!warning) return;
  if (log) log.warn(warning);
  else process.stderr.write(`nightshift: warning: ${warning}\n`);
}

function progressMode(config: Config): ProgressMode {
  const setting = config.log.progress;
  if (setting === 'off') return 'off';
  const tty = process.stderr.isTTY === true;
  if (setting === 'on') return tty ? 'tty' : 'log';
  return tty && isPretty(config.log.format) ? 'tty' : 'log';
}

function printSummary(config: Config, log: Logger, summary: RunSummary, line: string): void {
  if (isPretty(config.log.format)) {
    const rows = summary.rows_loaded ?? summary.rows_written;
    const what = `${summary.status}: ${rows.toLocaleString('en-US')} rows, ${summary.files} files, ${(summary.bytes / 1e6).toFixed(1)} MB in ${(summary.duration_ms / 1000).toFixed(1)} s`;
    log.info({ window: summary.window?.text ?? null }, what);
    writeRawLine(line);
    return;
  }
  const level =
    summary.exit_code === 0 ? 'info' : summary.exit_code === EXIT_CODES.lease_held.exit ? 'warn' : 'error';
  log[level](summary, 'run summary');
}

async function runRequest(args: CommandArgs, request: RunRequest): Promise<number> {
  const { config, log } = setup(args);
  const runtime = runtimeSettings();
  configureFailpoints(runtime.failpoints);
  const term = terminationSignal(log);
  try {
    const summaries = await executeRun(
      {
        config,
        log,
        signal: term.signal,
        runtime,
        progress: progressMode(config),
        backends,
        onSummary: (summary, line) => printSummary(config, log, summary, line),
        onBackfillSummary: (total) => {
          const level =
            total.exit_code === 0
              ? 'info'
              : total.exit_code === EXIT_CODES.lease_held.exit
                ? 'warn'
                : 'error';
          log[level](total, 'backfill summary');
        },
      },
      request,
    );
    return summaries[summaries.length - 1].exit_code;
  } finally {
    term.dispose();
  }
}

function requireString(values: CommandArgs['values'], name: string): string {
  const v = values[name];
  if (typeof v !== 'string' || !v) {
    throw configError(`backfill needs --${name}`, {
      hint: 'nightshift backfill --from 2024-01-01 --to 2024-02-01 --step 1d',
    });
  }
  return v;
}

export const commands = {
  run: (args: CommandArgs) => runRequest(args, { kind: 'incremental' }),

  backfill: (args: CommandArgs) =>
    runRequest(args, {
      kind: 'backfill',
      from: requireString(args.values, 'from'),
      to: requireString(args.values, 'to'),
      step: typeof args.values.step === 'string' ? args.values.step : undefined,
    }),

  plan: async (args: CommandArgs) => {
    const { config } = loadConfig({ path: args.configPath, overrides: args.overrides });
    const { planNext } = await import('./run/plan.js');
    const report = await planNext(config, backends);
    warnShortSecrets();
    process.stdout.write(`${JSON.stringify(redactor.redactValue(report), null, 2)}\n`);
    return 0;
  },

  config: async (args: CommandArgs) => {
    if (args.values.reference) {
      const { configReference } = await import('./config/reference.js');
      process.stdout.write(`${configReference()}\n`);
      return 0;
    }
    const { config, origin } = loadConfig({ path: args.configPath, overrides: args.overrides });
    process.stdout.write(`${JSON.stringify({ origin, config: redactedConfig(config) }, null, 2)}\n`);
    warnShortSecrets();
    return 0;
  },

  check: async (args: CommandArgs) => {
    const { runChecks } = await import('./preflight/check.js');
    const code = await runChecks(
      { path: args.configPath, overrides: args.overrides },
      (line) => process.stdout.write(`${redactor.redact(line)}\n`),
      backends,
    );
    warnShortSecrets();
    return code;
  },

  whoami: async (args: CommandArgs) => {
    const { config } = loadConfig({ path: args.configPath, overrides: args.overrides });
    const { whoami } = await import('./preflight/report.js');
    const { lines, code } = await whoami(config, backends);
    process.stdout.write(`${redactor.redact(lines.join('\n'))}\n`);
    warnShortSecrets();
    return code;
  },

  iam: async (args: CommandArgs) => {
    const { config } = loadConfig({ path: args.configPath, overrides: args.overrides });
    const { iam } = await import('./preflight/report.js');
    process.stdout.write(`${redactor.redact((await iam(config, backends)).join('\n'))}\n`);
    warnShortSecrets();
    return 0;
  },

  demo: async (args: CommandArgs) => {
    const { runDemo } = await import('./demo/demo.js');
    const rows = typeof args.values.rows === 'string' ? Number(args.values.rows) : 1_000_000;
    if (!Number.isInteger(rows) || rows < 1)
      throw configError(`--rows ${args.values.rows} must be a positive integer`);
    const dir = typeof args.values.dir === 'string' ? args.values.dir : '.nightshift-demo';
    return runDemo({ rows, dir, overrides: args.overrides }, backends);
  },
};
