#!/usr/bin/env node
/**
 * The `nightshift` command: argument parsing, dispatch, exit code. Command implementations are
 * imported only when their command runs, so `--version` and `--help` start fast.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { redactor } from './config/redact.js';
import { earlyLogFormat, runtimeSettings } from './config/runtime.js';
import { EXIT_CODES, NightshiftError, toNightshiftError } from './errors.js';

const COMMANDS = ['run', 'plan', 'backfill', 'check', 'whoami', 'iam', 'demo', 'config', 'help'] as const;
type Command = (typeof COMMANDS)[number];

const GLOBAL_OPTIONS = {
  config: { type: 'string', short: 'c' },
  'log-level': { type: 'string' },
  'log-format': { type: 'string' },
  progress: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean', short: 'V' },
} as const;

const COMMAND_OPTIONS = {
  backfill: { from: { type: 'string' }, to: { type: 'string' }, step: { type: 'string' } },
  demo: { rows: { type: 'string' }, dir: { type: 'string' } },
  config: { reference: { type: 'boolean' } },
} as const;

const GLOBAL_HELP = `Options for every command:
  -c, --config <file>     YAML config (default: $NIGHTSHIFT_CONFIG; keys can also come from NIGHTSHIFT_* variables)
      --log-level <level> trace, debug, info, warn or error (log.level)
      --log-format <fmt>  json, pretty or auto (log.format)
      --progress <when>   on, off or auto (log.progress)
  -h, --help              this help
  -V, -v, --version       the version`;

const EXIT_HELP = `Exit codes:
${Object.values(EXIT_CODES)
  .map((e) => `  ${String(e.exit).padEnd(4)} ${e.meaning}${e.retry ? ' (retry)' : ''}`)
  .join('\n')}`;

const HELP: Record<Command | 'main', string> = {
  main: `nightshift: move a window of PostgreSQL rows into Parquet, a stage, and a warehouse, exactly once.

Usage: nightshift <command> [options]

Commands:
  run        export the next window after the checkpoint, load it, validate, move the checkpoint
  plan       print the window, columns and object paths the next run would use; moves nothing
  backfill   export and load explicit windows [--from, --to); leaves the checkpoint alone
  check      preflight: config, identity, source, stage, warehouse, temp space; moves no data
  whoami     who each part of the job acts as (cloud identity, database role, local user)
  iam        the least-privilege grants and policies the configured job needs
  demo       run the whole path on an embedded PostgreSQL and DuckDB (no cloud, nothing to install)
  config     print the effective configuration, secrets hidden
  help       help for a command: nightshift help backfill

${GLOBAL_HELP}

${EXIT_HELP}

Examples:
  nightshift demo                                  the whole path on this machine, nothing to set up
  nightshift check --config nightshift.yaml        preflight before the first run
  nightshift run --config nightshift.yaml          what the CronJob runs
  nightshift backfill --config nightshift.yaml --from 2024-01-01 --to 2024-02-01 --step 1d
  nightshift config --reference                    every configuration key

Docs, in the source repository: README.md, docs/configuration.md (every key, also printed by
nightshift config --reference), docs/kubernetes.md (deployment), docs/troubleshooting.md (each
exit code and its fix).`,
  run: `Usage: nightshift run [--config file]

Takes the job's lease, plans the window after the checkpoint (up to the newest row source.lag
allows), counts and exports it from one PostgreSQL snapshot into Parquet parts under temp_dir,
uploads them to the stage, loads exactly those files into the warehouse, checks that the source
count, the rows written and the rows loaded agree, and only then moves the checkpoint.
The last stdout line is the run summary (JSON); the exit code says what happened.

Examples:
  nightshift run --config /etc/nightshift/nightshift.yaml
  NIGHTSHIFT_CONFIG=nightshift.yaml nightshift run --log-format pretty --progress on

${GLOBAL_HELP}

${EXIT_HELP}`,
  plan: `Usage: nightshift plan [--config file]

Prints, as JSON, what the next run would do: the checkpoint, the window, how many rows it holds,
each column's PostgreSQL and Parquet type, the object paths, and the COPY statement.
Takes no lease and writes nothing.

Examples:
  nightshift plan --config nightshift.yaml
  nightshift plan --config nightshift.yaml | jq '.window, .rows'

${GLOBAL_HELP}

${EXIT_HELP}`,
  backfill: `Usage: nightshift backfill --from <value> --to <value> [--step <size>] [--config file]

Exports and loads the cursor range [from, to), split into windows of --step, each as its own run
with its own manifest and summary. In append mode each window replaces the warehouse's rows in
that range, so a backfill can be repeated. The incremental checkpoint is left alone; the job's
lease is held, so scheduled runs wait (exit 4) until the backfill ends.

  --from <value>   first cursor value included: 2024-01-01, 2024-01-01T06:00:00Z, or an integer
  --to <value>     first cursor value excluded
  --step <size>    window size: a duration (1d, 6h) for time cursors, a number for integer cursors

The arguments are checked before the database and the lease (exit 2 at once); after the windows'
summaries, one "backfill summary" line gives the totals.

Examples:
  nightshift backfill --config nightshift.yaml --from 2024-01-01 --to 2024-02-01 --step 1d
  nightshift backfill --config nightshift.yaml --from 1 --to 5000000 --step 1000000

${GLOBAL_HELP}

${EXIT_HELP}`,
  check: `Usage: nightshift check [--config file]

Checks, without moving data, what a run needs: the configuration, the container's memory and
heap, the identity of each part, the source (reachable, SELECT on the table, the cursor and key
columns), the stage (writes, reads back and deletes a probe object), the warehouse (reachable,
can write), and the free space in temp_dir against the expected export. One line per check, with
the fix when it fails. Exits with the first failure's code (2 config, 5 identity or permission,
75 transient), 0 when all pass.

Examples:
  nightshift check --config nightshift.yaml
  kubectl create job nightshift-check --from=cronjob/nightshift --dry-run=client -o json \\
    | jq '.spec.template.spec.containers[0].args = ["check"]' | kubectl apply -f -

${GLOBAL_HELP}

${EXIT_HELP}`,
  whoami: `Usage: nightshift whoami [--config file]

Prints who each part of the job acts as: the PostgreSQL role, and for the stage and the warehouse
the identity mechanism (Workload Identity, IRSA, a key file, or none for local files) and the
principal. Never prints a secret. A part that fails is printed with FAIL and its fix, the others
are still reported, and the exit code is the first failure's.

Example:
  nightshift whoami --config nightshift.yaml

${GLOBAL_HELP}

${EXIT_HELP}`,
  iam: `Usage: nightshift iam [--config file]

Prints, as Markdown, the least-privilege access the configured job needs: the PostgreSQL grants
(CONNECT, USAGE on the schema, SELECT on the table), and what the stage and the warehouse need,
in their own terms (filesystem paths, IAM policy JSON, roles, grants).

Example:
  nightshift iam --config nightshift.yaml > access.md

${GLOBAL_HELP}

${EXIT_HELP}`,
  demo: `Usage: nightshift demo [--rows N] [--dir path]

Starts an embedded PostgreSQL, fills a trips table (1,000,000 rows by default), runs the real
\`run\` path into <dir>/stage and <dir>/warehouse.duckdb, prints the summary and rows per region
from DuckDB, then inserts more rows and runs again to show that only the new rows move.

  --rows N     rows in the first fill (default 1000000)
  --dir path   where the stage, the warehouse and the database live (default ./.nightshift-demo)

Examples:
  nightshift demo
  nightshift demo --rows 200000 --dir /tmp/nightshift-demo

${GLOBAL_HELP}

${EXIT_HELP}`,
  config: `Usage: nightshift config [--config file] [--reference]

Loads and validates the configuration (file, \${VAR} interpolation, NIGHTSHIFT_* overrides) and
prints it as JSON with secrets replaced. Exit 2 with the key and the fix when it is invalid.

  --reference   print the reference of every configuration key (Markdown) instead

Examples:
  nightshift config --config nightshift.yaml
  NIGHTSHIFT_SOURCE_TABLE=public.orders nightshift config --config nightshift.yaml
  nightshift config --reference > configuration.md

${GLOBAL_HELP}

${EXIT_HELP}`,
  help: `Usage: nightshift help [command]

Examples:
  nightshift help backfill
  nightshift backfill --help

${EXIT_HELP}`,
};

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

interface Parsed {
  command: Command;
  values: Record<string, string | boolean | undefined>;
}

function parse(input: string[]): Parsed | { help: string } | { version: true } {
  // -v is what most tools answer with their version; here it is the same as -V.
  const argv = input.map((a) => (a === '-v' ? '-V' : a));
  const first = argv.find((a) => !a.startsWith('-'));
  const command = (first ?? 'help') as Command;
  if (!COMMANDS.includes(command)) {
    throw new NightshiftError('config', `unknown command "${first}"`, {
      hint: `commands are: ${COMMANDS.join(', ')}; see nightshift --help`,
    });
  }
  const options: ParseArgsConfig['options'] = {
    ...GLOBAL_OPTIONS,
    ...(COMMAND_OPTIONS[command as keyof typeof COMMAND_OPTIONS] ?? {}),
  };
  let values: Record<string, string | boolean | undefined>;
  let positionals: string[];
  try {
    const result = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
    values = result.values as Record<string, string | boolean | undefined>;
    positionals = result.positionals;
  } catch (err) {
    throw new NightshiftError('config', (err as Error).message, { hint: `see nightshift ${command} --help` });
  }
  if (values.version) return { version: true };
  if (command === 'help') {
    const topic = positionals[1];
    if (topic !== undefined && !COMMANDS.includes(topic as Command)) {
      throw new NightshiftError('config', `no help for "${topic}": it is not a command`, {
        hint: `commands are: ${COMMANDS.join(', ')}`,
      });
    }
    return { help: HELP[(topic as Command) ?? 'main'] };
  }
  if (values.help || !first) return { help: HELP[first ? command : 'main'] };
  if (positionals.length > 1) {
    throw new NightshiftError('config', `unexpected argument "${positionals[1]}"`, {
      hint: `see nightshift ${command} --help`,
    });
  }
  return { command, values };
}

/** CLI flags that map onto configuration keys. */
function overrides(values: Parsed['values']): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  if (typeof values['log-level'] === 'string') out['log.level'] = values['log-level'];
  if (typeof values['log-format'] === 'string') out['log.format'] = values['log-format'];
  if (typeof values.progress === 'string') out['log.progress'] = values.progress;
  return out;
}

async function main(argv: string[]): Promise<number> {
  const parsed = parse(argv);
  if ('version' in parsed) {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if ('help' in parsed) {
    process.stdout.write(`${parsed.help}\n`);
    return 0;
  }
  const { commands } = await import('./commands.js');
  return commands[parsed.command as Exclude<Command, 'help'>]({
    configPath: typeof parsed.values.config === 'string' ? parsed.values.config : undefined,
    overrides: overrides(parsed.values),
    values: parsed.values,
  });
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    const e = toNightshiftError(err);
    // Errors before the logger exists (usage, config) go to stderr as one readable line.
    process.stderr.write(redactor.redact(`nightshift: ${e.message}${e.hint ? `\n  fix: ${e.hint}` : ''}\n`));
    if (e.code === 'internal' && e.cause instanceof Error)
      process.stderr.write(redactor.redact(`${e.cause.stack}\n`));
    process.exitCode = e.exitCode;
    return reportEarlyFailure(e, process.argv.slice(2));
  },
);

/**
 * With JSON logs, a failure before the job's logger exists also reaches the log pipeline: one
 * error line with its severity, then a summary line (status `config_error` for exit 2), the
 * last line on stdout as after a run, and in the pod's termination message.
 */
async function reportEarlyFailure(e: NightshiftError, argv: string[]): Promise<void> {
  const flagAt = argv.findIndex((a) => a === '--log-format' || a.startsWith('--log-format='));
  const flag =
    flagAt < 0 ? undefined : argv[flagAt].includes('=') ? argv[flagAt].split('=')[1] : argv[flagAt + 1];
  const { createLogger, isPretty } = await import('./log.js');
  if (isPretty(earlyLogFormat(flag) as 'auto')) return;
  const log = createLogger({ format: 'json' });
  const command = argv.find((a) => !a.startsWith('-'));
  const error = { code: e.code, message: e.message, ...(e.hint ? { hint: e.hint } : {}) };
  log.error({ err: e }, e.message);
  const summary = {
    command: command && (COMMANDS as readonly string[]).includes(command) ? command : null,
    status: e.code === 'config' ? 'config_error' : 'failed',
    exit_code: e.exitCode,
    error,
  };
  log.error(summary, 'run summary');
  const { terminationLog } = runtimeSettings();
  if (existsSync(terminationLog)) {
    try {
      writeFileSync(terminationLog, redactor.redact(JSON.stringify(summary)));
    } catch {
      // Kubernetes shows the pod's log instead.
    }
  }
}
