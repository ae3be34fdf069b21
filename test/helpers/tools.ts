/**
 * Programs some tests need that npm cannot install: bubblewrap for the pod simulation, Python
 * moto's moto_server as a second S3, the Google Cloud and AWS CLIs as second clients of the test
 * servers. Where one is missing, its tests are skipped and the run says so, naming the package
 * that brings it. NIGHTSHIFT_TEST_REQUIRE (a comma-separated list of tool names, or `all`) turns
 * such a skip into a failing test: CI sets it, so a skip cannot pass there unnoticed.
 */
import { it } from 'vitest';
import { runProgram } from './env.js';
import { LIMITS } from './time.js';

/** A program the tests run, how to tell it works, and where to get it. */
interface Tool {
  /** How to install it on Debian (or where it comes from). */
  readonly install: string;
  /** Why it cannot run here, or undefined when it can. */
  readonly probe: () => Promise<string | undefined>;
}

/** Runs `command args`; the reason it failed, or undefined. */
async function runs(command: string, args: string[]): Promise<string | undefined> {
  const r = await runProgram(command, args, { timeoutMs: LIMITS.startup }).catch((err: Error) => err);
  if (r instanceof Error) return `${command} is not installed (${r.message})`;
  if (r.code !== 0)
    return `${command} ${args.join(' ')} failed: ${(r.stderr || r.stdout).trim().slice(0, 300)}`;
  return undefined;
}

export const TOOLS = {
  bwrap: {
    install: 'apt-get install bubblewrap',
    probe: () => runs('bwrap', ['--ro-bind', '/', '/', '--dev', '/dev', 'true']),
  },
  moto_server: {
    install: "pip install 'moto[server]>=5.2' (Python moto; Debian's python3-moto is older)",
    probe: () => runs('moto_server', ['--help']),
  },
  gcloud: {
    install: 'the Google Cloud CLI (Debian package google-cloud-cli from packages.cloud.google.com)',
    probe: () => runs('gcloud', ['--version']),
  },
  bq: {
    install: 'the Google Cloud CLI (Debian package google-cloud-cli), which has bq',
    probe: () => runs('bq', ['version']),
  },
  aws: {
    install: 'apt-get install awscli, or pip install awscli',
    probe: () => runs('aws', ['--version']),
  },
} satisfies Record<string, Tool>;

export type ToolName = keyof typeof TOOLS;

const checked = new Map<ToolName, Promise<string | undefined>>();

/** The tools NIGHTSHIFT_TEST_REQUIRE names. */
function required(): Set<string> {
  const raw = process.env.NIGHTSHIFT_TEST_REQUIRE ?? '';
  const names = raw
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  return new Set(names.includes('all') ? Object.keys(TOOLS) : names);
}

/**
 * Why `name` cannot run here (tests that need it skip), or undefined when it can. A missing tool
 * prints a notice with its package; when NIGHTSHIFT_TEST_REQUIRE names it, a failing test is
 * registered as well. Await it at the top level of a test file.
 */
export async function missingTool(name: ToolName): Promise<string | undefined> {
  if (!checked.has(name)) checked.set(name, TOOLS[name].probe());
  const reason = await checked.get(name);
  if (!reason) return undefined;
  const notice = `${name} is not available, so its tests are skipped: ${reason}. Install: ${TOOLS[name].install}`;
  process.stderr.write(`\n[nightshift tests] ${notice}\n`);
  if (required().has(name)) {
    it(`needs ${name} (NIGHTSHIFT_TEST_REQUIRE names it)`, () => {
      throw new Error(notice);
    });
  }
  return reason;
}
