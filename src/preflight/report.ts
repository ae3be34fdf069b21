/**
 * `nightshift whoami` and `nightshift iam`: who each part of the job acts as, and the
 * least-privilege access it needs. The source's part is PostgreSQL's; the stage's and the
 * warehouse's come from their optional port members (`identity?`, `accessNeeded?`), so a cloud
 * store or warehouse brings its own identity and policy (IAM policy JSON, GCP roles, grants).
 */
import type { Config } from '../config/schema.js';
import { type NightshiftError, toNightshiftError } from '../errors.js';
import type { AccessNeeds, Identity } from '../identity/principal.js';
import { sourceAccess } from '../source/access.js';
import { describeSource } from '../source/connection.js';
import type { ObjectStore } from '../store/store.js';
import type { Backends, Warehouse } from '../warehouse/warehouse.js';

async function withBackends<T>(
  config: Config,
  backends: Backends,
  fn: (store: ObjectStore, warehouse: Warehouse) => Promise<T>,
): Promise<T> {
  const store = await backends.createStore(config);
  try {
    const warehouse = await backends.createWarehouse(config, store);
    try {
      return await fn(store, warehouse);
    } finally {
      await warehouse.close();
    }
  } finally {
    await store.close?.();
  }
}

function identityLine(part: string, what: string, id: Identity | undefined, kind: string): string[] {
  const head = `${part.padEnd(10)} ${what}`;
  if (!id) return [head, `${' '.repeat(11)}identity: not reported by ${kind}`];
  const details = Object.entries(id.details ?? {}).map(([k, v]) => `${' '.repeat(11)}${k}: ${v}`);
  return [head, `${' '.repeat(11)}${id.mechanism} as ${id.principal}`, ...details];
}

/** A part whose identity could not be found: what failed and the fix, indented under its head. */
function failedLines(part: string, what: string, err: NightshiftError): string[] {
  const pad = ' '.repeat(11);
  return [
    `${part.padEnd(10)} ${what}`,
    `${pad}FAIL: ${err.message}`,
    ...(err.hint ? [`${pad}fix: ${err.hint}`] : []),
  ];
}

/**
 * The lines `nightshift whoami` prints, one block per part (source, stage, warehouse), and its
 * exit code: every part is reported even when one fails, and the first failure's code is the
 * command's.
 */
export async function whoami(config: Config, backends: Backends): Promise<{ lines: string[]; code: number }> {
  const { user, host, database } = describeSource(config.source);
  const lines = [
    `source     PostgreSQL ${database} on ${host}`,
    `           role ${user}, password from the configuration (never shown)`,
  ];
  let first: NightshiftError | undefined;
  const part = async (name: string, what: string, find: () => Promise<string[]>) => {
    try {
      lines.push(...(await find()));
    } catch (err) {
      const e = toNightshiftError(err);
      first ??= e;
      lines.push(...failedLines(name, what, e));
    }
  };
  let store: ObjectStore | undefined;
  await part('stage', config.stage.url, async () => {
    store = await backends.createStore(config);
    return identityLine('stage', store.url, await store.identity?.(), 'this store');
  });
  const what = `${config.warehouse.type} ${config.warehouse.table}`;
  if (store) {
    const stage = store;
    await part('warehouse', what, async () => {
      const warehouse = await backends.createWarehouse(config, stage);
      try {
        return identityLine(
          'warehouse',
          `${warehouse.kind} ${config.warehouse.table}`,
          await warehouse.identity?.(),
          warehouse.kind,
        );
      } finally {
        await warehouse.close();
      }
    });
    await store.close?.();
  } else {
    lines.push(
      `warehouse  ${what}`,
      `${' '.repeat(11)}not looked up: the warehouse is reached through the stage, which failed`,
    );
  }
  return { lines, code: first?.exitCode ?? 0 };
}

function renderAccess(needs: AccessNeeds): string[] {
  const lines = [`## ${needs.part}: ${needs.target}${needs.principal ? ` (as ${needs.principal})` : ''}`, ''];
  for (const g of needs.grants) lines.push(`- ${g.permission} on ${g.on}: ${g.why}`);
  for (const doc of needs.documents ?? [])
    lines.push('', `${doc.title}:`, '', `\`\`\`${doc.language}`, doc.text, '```');
  lines.push('');
  return lines;
}

/** The least-privilege access of every part of the job, as `nightshift iam` prints it (Markdown). */
export async function iam(config: Config, backends: Backends): Promise<string[]> {
  const parts: AccessNeeds[] = [sourceAccess(config.source)];
  const missing: string[] = [];
  await withBackends(config, backends, async (store, warehouse) => {
    const stage = store.accessNeeded?.(config.job);
    if (stage) parts.push(stage);
    else missing.push(`stage ${store.url}`);
    const wh = warehouse.accessNeeded?.(config.warehouse.table, config.warehouse.mode);
    if (wh) parts.push(wh);
    else missing.push(`warehouse ${warehouse.kind}`);
  });
  const lines = [
    `# Access for job ${config.job}`,
    '',
    'Nothing beyond this: no admin roles, no wildcard resources.',
    '',
  ];
  for (const part of parts) lines.push(...renderAccess(part));
  for (const what of missing) lines.push(`## ${what}: no access description available for it yet`, '');
  return lines;
}
