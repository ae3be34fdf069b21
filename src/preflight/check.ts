/**
 * `nightshift check`: a preflight that moves no data. Each check prints one line, and the fix when
 * it fails; the exit code is the first failure's, per the contract (2 config, 5 identity or
 * permission, 75 transient). What a backend can check about itself comes from its optional port
 * members (`identity?`, `check?`), so new stores and warehouses add checks without changing this.
 */

import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { loadConfig } from '../config/load.js';
import type { Config } from '../config/schema.js';
import { partBytes, tempSpaceNeeded } from '../core/parts.js';
import { notWritable } from '../core/temp-dir.js';
import { configError, EXIT_CODES, NightshiftError, toNightshiftError } from '../errors.js';
import type { Identity } from '../identity/principal.js';
import { containerMemoryLimit, heapLimitMb } from '../memory.js';
import { checkSource, sourceTableBytes } from '../source/access.js';
import type { ObjectStore } from '../store/store.js';
import type { Backends, Warehouse } from '../warehouse/warehouse.js';

/** What the checks share: the configuration and the backends, opened once. */
export interface CheckContext {
  readonly config: Config;
  store(): Promise<ObjectStore>;
  warehouse(): Promise<Warehouse>;
}

/** One preflight check: resolves with what it found, or throws a NightshiftError with the fix. */
export interface Check {
  readonly name: string;
  /** `skip` instead of `ok`: the check could not be made, which is not a failure. */
  run(ctx: CheckContext): Promise<string | { skipped: string }>;
}

export interface CheckResult {
  readonly name: string;
  readonly status: 'ok' | 'skip' | 'FAIL';
  readonly detail: string;
  readonly fix?: string;
  readonly exit?: number;
}

const MiB = 2 ** 20;

const mb = (bytes: number) =>
  bytes < 10 * MiB
    ? `${(bytes / MiB).toFixed(1)} MiB`
    : `${Math.round(bytes / MiB).toLocaleString('en-US')} MiB`;

export const CHECKS: readonly Check[] = [
  {
    name: 'memory',
    async run() {
      const limit = containerMemoryLimit();
      const heap = heapLimitMb();
      if (!limit) return `no container memory limit; V8 heap limit ${heap} MiB`;
      if (heap * MiB >= limit) {
        throw configError(
          `the V8 heap limit (${heap} MiB) is not below the container's memory limit (${mb(limit)})`,
          {
            hint: 'drop --max-old-space-size from NODE_OPTIONS: the entrypoint sets it to 60% of the limit',
          },
        );
      }
      return `container limit ${mb(limit)}, V8 heap limit ${heap} MiB`;
    },
  },
  {
    name: 'identity',
    async run(ctx) {
      const parts: [string, { identity?: () => Promise<Identity> }][] = [
        ['stage', await ctx.store()],
        ['warehouse', await ctx.warehouse()],
      ];
      const lines: string[] = [];
      for (const [part, backend] of parts) {
        const id = await backend.identity?.();
        const note = id?.details?.note;
        if (id) lines.push(`${part}: ${id.mechanism} as ${id.principal}${note ? ` (${note})` : ''}`);
      }
      return lines.length ? lines.join('; ') : { skipped: 'no backend reports an identity' };
    },
  },
  {
    name: 'source',
    run: (ctx) => checkSource(ctx.config.source),
  },
  {
    name: 'stage',
    async run(ctx) {
      const store = await ctx.store();
      const key = `${ctx.config.job}/preflight/probe-${randomBytes(6).toString('hex')}.txt`;
      const body = `nightshift check ${new Date().toISOString()}\n`;
      try {
        await store.put(key, body, { ifNoneMatch: true, contentType: 'text/plain' });
        const back = await store.get(key);
        if (back?.body.toString('utf8') !== body)
          throw new Error(`read back ${key} differs from what was written`);
        await store.delete(key);
        if (await store.get(key)) throw new Error(`${key} still exists after delete`);
      } catch (err) {
        const e = toNightshiftError(err);
        throw new NightshiftError(e.code === 'internal' ? 'identity' : e.code, `${store.url}: ${e.message}`, {
          cause: err,
          hint:
            e.hint ?? 'give the pod write, read and delete on the stage: nightshift iam prints what it needs',
        });
      }
      return `${store.url}: wrote, read back and deleted ${key}`;
    },
  },
  {
    name: 'warehouse',
    async run(ctx) {
      const warehouse = await ctx.warehouse();
      if (!warehouse.check) return { skipped: `${warehouse.kind} offers no preflight check` };
      await warehouse.check(ctx.config.warehouse.table);
      return `${warehouse.kind}: reachable, can create and drop a table (for ${ctx.config.warehouse.table})`;
    },
  },
  {
    name: 'temp space',
    run: checkTempSpace,
  },
];

/**
 * The temp dir must be writable (a read-only root without the emptyDir fails here) and hold the
 * parts on disk at once (src/core/parts.ts: a few parts, fewer when the whole export is smaller).
 * The export's size comes from the last run's manifest, else from the table's size on disk.
 */
async function checkTempSpace(ctx: CheckContext): Promise<string> {
  const { config } = ctx;
  let probe: string;
  try {
    // A run creates it when missing; so does the check, or it would fail where a run works.
    await mkdir(config.temp_dir, { recursive: true });
    probe = await mkdtemp(join(config.temp_dir, 'nightshift-check-'));
  } catch (err) {
    throw notWritable(config.temp_dir, err);
  }
  await rm(probe, { recursive: true, force: true });
  const fs = await statfs(config.temp_dir);
  const free = fs.bavail * fs.bsize;
  const warehouse = await ctx.warehouse();
  const part = partBytes(config, warehouse.preferredPartMb);
  const expected = await expectedExportBytes(ctx);
  const needed = tempSpaceNeeded(part, expected?.bytes);
  const basis = expected ? `${expected.what} ${mb(expected.bytes)}` : 'export size unknown';
  if (free < needed) {
    throw configError(`${config.temp_dir} has ${mb(free)} free, a run needs about ${mb(needed)} (${basis})`, {
      hint: `raise the emptyDir sizeLimit of ${config.temp_dir} to at least ${Math.ceil(needed / 2 ** 30)}Gi, or lower parquet.part_size_mb`,
    });
  }
  return `${config.temp_dir}: ${mb(free)} free, a run needs about ${mb(needed)} (${basis}; parts of ${mb(part)})`;
}

async function expectedExportBytes(ctx: CheckContext): Promise<{ bytes: number; what: string } | undefined> {
  const store = await ctx.store();
  let last: string | undefined;
  for await (const info of store.list(`${ctx.config.job}/runs/`)) last = info.key;
  if (last) {
    const manifest = await store.get(last);
    const parsed = manifest
      ? (JSON.parse(manifest.body.toString('utf8')) as { files?: { bytes: number }[] })
      : undefined;
    const bytes = parsed?.files?.reduce((n, f) => n + f.bytes, 0);
    if (bytes) return { bytes, what: 'the last run wrote' };
  }
  const table = await sourceTableBytes(ctx.config.source).catch(() => undefined);
  return table ? { bytes: table, what: 'the table takes' } : undefined;
}

/** Runs every check and prints one line each; returns the exit code. */
export async function runChecks(
  load: { path: string | undefined; overrides: Record<string, unknown> },
  write: (line: string) => void,
  backends: Backends,
  checks: readonly Check[] = CHECKS,
): Promise<number> {
  const results: CheckResult[] = [];
  const report = (r: CheckResult) => {
    results.push(r);
    write(`${r.status.padEnd(5)} ${r.name.padEnd(11)} ${r.detail}`);
    if (r.fix) write(`${' '.repeat(18)}fix: ${r.fix}`);
  };
  let config: Config;
  try {
    config = loadConfig({ path: load.path, overrides: load.overrides }).config;
    report({
      name: 'config',
      status: 'ok',
      detail: `job ${config.job}, ${config.source.table ?? 'source.query'} -> ${config.warehouse.type} ${config.warehouse.table}`,
    });
  } catch (err) {
    const e = toNightshiftError(err);
    report({
      name: 'config',
      status: 'FAIL',
      detail: e.message.replaceAll('\n', ' '),
      fix: e.hint,
      exit: e.exitCode,
    });
    write('the other checks need a valid configuration');
    return e.exitCode;
  }
  const ctx = context(config, backends);
  try {
    for (const check of checks) report(await runOne(check, ctx));
  } finally {
    await ctx.close();
  }
  const failed = results.filter((r) => r.status === 'FAIL');
  write(
    failed.length
      ? `${failed.length} of ${results.length} checks failed`
      : `all ${results.length} checks passed`,
  );
  return failed[0]?.exit ?? EXIT_CODES.ok.exit;
}

async function runOne(check: Check, ctx: CheckContext): Promise<CheckResult> {
  try {
    const found = await check.run(ctx);
    return typeof found === 'string'
      ? { name: check.name, status: 'ok', detail: found }
      : { name: check.name, status: 'skip', detail: found.skipped };
  } catch (err) {
    const e = toNightshiftError(err);
    return { name: check.name, status: 'FAIL', detail: e.message, fix: e.hint, exit: e.exitCode };
  }
}

function context(config: Config, backends: Backends): CheckContext & { close(): Promise<void> } {
  let store: Promise<ObjectStore> | undefined;
  let warehouse: Promise<Warehouse> | undefined;
  const ctx = {
    config,
    store: () => {
      store ??= backends.createStore(config);
      return store;
    },
    warehouse: () => {
      warehouse ??= ctx.store().then((s) => backends.createWarehouse(config, s));
      return warehouse;
    },
    close: async () => {
      await (await warehouse?.catch(() => undefined))?.close().catch(() => undefined);
      await (await store?.catch(() => undefined))?.close?.().catch(() => undefined);
    },
  };
  return ctx;
}
