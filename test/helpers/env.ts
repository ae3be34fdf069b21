/**
 * Shared test plumbing: a fresh database per test file on the shared server, temp dirs, YAML
 * configs, and running the built CLI as a real process (exit codes, stdout, stderr).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import pg from 'pg';
import { inject } from 'vitest';
import { stringify } from 'yaml';
import { LIMITS } from './time.js';

export const CLI = resolve(import.meta.dirname, '../../dist/src/cli.js');

/** A new, empty database on the test server; returns its URL. */
export async function freshDatabase(): Promise<string> {
  const admin = new pg.Client({ connectionString: inject('pgUrl') });
  await admin.connect();
  const name = `t_${randomBytes(5).toString('hex')}`;
  try {
    await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.end();
  }
  const url = new URL(inject('pgUrl'));
  url.pathname = `/${name}`;
  return url.href;
}

/** Runs SQL against a database URL, after optional session settings. */
export async function sql<T extends pg.QueryResultRow = Record<string, unknown>>(
  url: string,
  text: string,
  values?: unknown[],
  session: string[] = [],
): Promise<T[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    for (const statement of session) await client.query(statement);
    const r = await client.query<T>(text, values);
    return r.rows;
  } finally {
    await client.end();
  }
}

/** A temp dir removed by the returned cleanup. */
export function tempDir(prefix = 'ns-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Writes a config object as YAML and returns its path. */
export function writeConfig(dir: string, config: unknown, name = 'nightshift.yaml'): string {
  const path = join(dir, name);
  writeFileSync(path, typeof config === 'string' ? config : stringify(config));
  return path;
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The last stdout line parsed as JSON, when it is JSON. */
  summary: Record<string, unknown> | undefined;
}

/** Collects a child's output and, when it ends, its exit and the last stdout line as JSON. */
export function childOutcome(child: ChildProcess): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    let stdout = '';
    let stderr = '';
    child.stdout?.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr?.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code, signal) => {
      const lines = stdout.trim().split('\n');
      let summary: Record<string, unknown> | undefined;
      try {
        summary = JSON.parse(lines[lines.length - 1]) as Record<string, unknown>;
      } catch {
        summary = undefined;
      }
      resolvePromise({ code, signal, stdout, stderr, summary });
    });
  });
}

/** Starts the built CLI with a clean environment plus `env`; `done` settles when it exits. */
export function spawnCli(
  args: string[],
  env: Record<string, string | undefined> = {},
): { child: ChildProcess; done: Promise<CliResult> } {
  const child = spawn(process.execPath, [CLI, ...args], {
    env: { PATH: process.env.PATH, HOME: process.env.HOME, TZ: 'UTC', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { child, done: childOutcome(child) };
}

/**
 * Runs a program to its end without blocking the test worker. A worker stuck in spawnSync or
 * execFileSync cannot read vitest's answers to its task updates: past 60 s the run reports
 * "[vitest-worker]: Timeout calling onTaskUpdate" although every test passed. Past `timeoutMs`
 * the program is killed (SIGKILL) and its result says so.
 */
export async function runProgram(
  command: string,
  args: string[],
  options: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<CliResult> {
  const child = spawn(command, args, {
    cwd: options.cwd,
    env: options.env ?? process.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const timer = options.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), options.timeoutMs) : undefined;
  try {
    return await childOutcome(child);
  } finally {
    clearTimeout(timer);
  }
}

/** Runs the built CLI with a clean environment plus `env`. */
export async function runCli(
  args: string[],
  env: Record<string, string | undefined> = {},
  options: { onSpawn?: (pid: number) => void; timeoutMs?: number } = {},
): Promise<CliResult> {
  const { child, done } = spawnCli(args, env);
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? LIMITS.cliRun);
  if (child.pid) options.onSpawn?.(child.pid);
  try {
    return await done;
  } finally {
    clearTimeout(timer);
  }
}

/** Parses every JSON line of a run's stdout. */
export function jsonLines(stdout: string): Record<string, unknown>[] {
  return stdout
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}
