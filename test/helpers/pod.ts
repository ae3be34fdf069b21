/**
 * The pod, without a container engine: the image's production install (`npm ci --omit=dev`,
 * pruned by tools/prune-production.sh, plus dist/src) run by bubblewrap the way Kubernetes runs
 * the image with readOnlyRootFilesystem and an emptyDir: as uid 1000 (a real, unprivileged uid),
 * the whole filesystem read-only, a size-limited tmpfs at /tmp, a writable volume at /mnt, a
 * container memory limit in /sys/fs/cgroup/memory.max, and the termination log file bound at
 * /dev/termination-log. The entrypoint is dist/src/launch.js, as in the image.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chownSync,
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { childOutcome, runProgram } from './env.js';

const ROOT = resolve(import.meta.dirname, '../..');
export const POD_UID = 1000;
/** Where production installs are kept between test runs; no parent folder has a node_modules. */
const PRODUCTION_CACHE = '/var/tmp/nightshift-production';

/** Total bytes of the files under a directory. */
export function treeBytes(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (entry.isFile()) total += statSync(join(entry.parentPath, entry.name)).size;
  }
  return total;
}

/**
 * The production install in a cache folder keyed by the lockfile, the scripts and the Node major
 * (the image's deps stage installs with the runtime's Node), with the current dist/src copied
 * in: `npm ci --omit=dev` as the Dockerfile runs it, then tools/prune-production.sh.
 */
export async function productionInstall(): Promise<string> {
  const inputs = ['package.json', 'package-lock.json', 'tools/prune-production.sh'].map((f) =>
    readFileSync(join(ROOT, f)),
  );
  const node = Buffer.from(`node ${process.versions.node.split('.')[0]}`);
  const key = createHash('sha256')
    .update(Buffer.concat([...inputs, node]))
    .digest('hex')
    .slice(0, 16);
  // Outside the repository: Node looks for packages in every parent's node_modules, and the
  // repository's holds the devDependencies the image must do without.
  const dir = join(PRODUCTION_CACHE, key);
  if (!existsSync(join(dir, '.complete'))) {
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir, { recursive: true });
    for (const f of ['package.json', 'package-lock.json']) cpSync(join(ROOT, f), join(dir, f));
    const install = await runProgram('npm', ['ci', '--omit=dev', '--no-audit', '--no-fund'], { cwd: dir });
    if (install.code !== 0) throw new Error(`npm ci --omit=dev failed:\n${install.stderr}`);
    const prune = await runProgram('sh', [
      join(ROOT, 'tools/prune-production.sh'),
      join(dir, 'node_modules'),
    ]);
    if (prune.code !== 0) throw new Error(`tools/prune-production.sh failed:\n${prune.stderr}`);
    writeFileSync(join(dir, '.complete'), '');
  }
  rmSync(join(dir, 'dist'), { recursive: true, force: true });
  cpSync(join(ROOT, 'dist/src'), join(dir, 'dist/src'), { recursive: true });
  return dir;
}

export interface PodOptions {
  /** The production install (productionInstall()). */
  app: string;
  /** Host folder mounted writable at /mnt (the stage, the warehouse, the config): owned by the pod's uid. */
  volume: string;
  /** Size of the /tmp tmpfs in bytes (the emptyDir's sizeLimit). */
  tmpBytes: number;
  /** The container's memory limit, as the cgroup shows it. */
  memoryLimitBytes?: number;
  env?: Record<string, string>;
}

export interface PodRun {
  code: number | null;
  stdout: string;
  stderr: string;
  /** What /tmp held when the command ended. */
  tmpAfter: string[];
  /** What the pod wrote to /dev/termination-log. */
  terminationMessage: string;
  /** The last stdout line as JSON, when it is. */
  summary: Record<string, unknown> | undefined;
}

/** Prepares the volume: owned by the pod's uid, with the termination log and the fake cgroup. */
function prepare(options: PodOptions): { cgroup: string; termination: string; status: string } {
  const pod = join(options.volume, '.pod');
  mkdirSync(join(pod, 'cgroup'), { recursive: true });
  writeFileSync(join(pod, 'cgroup/memory.max'), String(options.memoryLimitBytes ?? 'max'));
  const termination = join(pod, 'termination-log');
  writeFileSync(termination, '');
  const status = join(pod, 'status');
  rmSync(status, { recursive: true, force: true });
  mkdirSync(status);
  for (const entry of readdirSync(options.volume, { recursive: true })) {
    chownSync(join(options.volume, String(entry)), POD_UID, POD_UID);
  }
  chownSync(options.volume, POD_UID, POD_UID);
  return { cgroup: join(pod, 'cgroup'), termination, status };
}

/**
 * Starts `nightshift <args>` in the pod. `onStart` gets the pid of the entrypoint process (the
 * pod's main process, which the kubelet signals).
 */
export function runInPod(
  args: string[],
  options: PodOptions,
  onStart?: (entrypointPid: () => number | undefined) => void,
): Promise<PodRun> {
  const { cgroup, termination, status } = prepare(options);
  // A shell in the sandbox reports what /tmp holds after the entrypoint exits.
  const script = `node "$0" "$@"; code=$?; ls -A /tmp > /mnt/.pod/status/tmp; echo $code > /mnt/.pod/status/code; exit $code`;
  const bwrap = [
    '--reuid',
    String(POD_UID),
    '--regid',
    String(POD_UID),
    '--clear-groups',
    '--',
    'bwrap',
    '--ro-bind',
    '/',
    '/',
    '--dev',
    '/dev',
    '--proc',
    '/proc',
    '--size',
    String(options.tmpBytes),
    '--tmpfs',
    '/tmp',
    '--bind',
    options.volume,
    '/mnt',
    '--ro-bind',
    cgroup,
    '/sys/fs/cgroup',
    '--bind',
    termination,
    '/dev/termination-log',
    '--die-with-parent',
    '--chdir',
    '/',
    '/bin/sh',
    '-c',
    script,
    join(options.app, 'dist/src/launch.js'),
    ...args,
  ];
  const child = spawn('setpriv', bwrap, {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', TZ: 'UTC', ...options.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  onStart?.(() => (child.pid ? findEntrypoint(child.pid) : undefined));
  return childOutcome(child).then(({ code, stdout, stderr, summary }) => {
    const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : '');
    return {
      code,
      stdout,
      stderr,
      tmpAfter: read(join(status, 'tmp')).split('\n').filter(Boolean),
      terminationMessage: read(termination),
      summary,
    };
  });
}

/** The entrypoint's pid: the first descendant of `root` running launch.js. */
function findEntrypoint(root: number): number | undefined {
  const queue = [root];
  while (queue.length) {
    const pid = queue.shift() as number;
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
      if (cmdline[0]?.endsWith('node') && cmdline[1]?.endsWith('launch.js')) return pid;
      for (const task of readdirSync(`/proc/${pid}/task`)) {
        const children = readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim();
        if (children) queue.push(...children.split(' ').map(Number));
      }
    } catch {
      // the process ended while we looked
    }
  }
  return undefined;
}
