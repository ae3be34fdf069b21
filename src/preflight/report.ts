/**
 * `nightshift whoami` and `nightshift iam`: who each part of the job acts as, and the
 * least-privilege access it needs. The source's part is PostgreSQL's; the stage's and the
 * warehouse's come from their optional port members (`identity?`, `accessNeeded?`), so a cloud
 * store or warehouse brings its own identity and policy (IAM policy JSON, GCP roles, grants).
 */
import type { Config } from '../config/schema.js';
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

/** The lines `nightshift whoami` prints. */
export async function whoami(config: Config, backends: Backends): Promise<string[]> {
  const { user, host, database } = describeSource(config.source);
  const lines = [
    `source     PostgreSQL ${database} on ${host}`,
    `           role ${user}, password from the configuration (never shown)`,
  ];
  await withBackends(config, backends, async (store, warehouse) => {
    lines.push(...identityLine('stage', store.url, await store.identity?.(), 'this store'));
    const what = `${warehouse.kind} ${config.warehouse.table}`;
    lines.push(...identityLine('warehouse', what, await warehouse.identity?.(), warehouse.kind));
  });
  return lines;
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
