/**
 * The run manifest, `<job>/runs/<run_id>.json`: the files a run staged (rows, bytes, sha256),
 * the window they hold, the column mapping, and, once the run ends, its summary. A load reads
 * its file list from here, never from a listing, so files of another run are never loaded.
 */
import { redactor } from '../config/redact.js';
import { manifestKey } from '../core/layout.js';
import type { Window } from '../core/window.js';
import type { ColumnPlan } from '../source/types.js';
import type { ObjectStore } from '../store/store.js';
import type { StagedFile } from '../warehouse/warehouse.js';
import type { RunSummary } from './summary.js';

export interface RunManifest {
  version: 1;
  job: string;
  run_id: string;
  created_at: string;
  stage: string;
  window: Window | null;
  columns: { name: string; pg_type: string; parquet: string; note?: string }[];
  files: StagedFile[];
  rows: number;
  bytes: number;
  summary?: RunSummary;
}

function parquetTypeName(plan: ColumnPlan): string {
  const { physical, logical, list } = plan.parquet;
  const names = [
    'BOOLEAN',
    'INT32',
    'INT64',
    'INT96',
    'FLOAT',
    'DOUBLE',
    'BYTE_ARRAY',
    'FIXED_LEN_BYTE_ARRAY',
  ];
  let text = names[physical];
  if (logical.kind === 'decimal') text += ` DECIMAL(${logical.precision},${logical.scale})`;
  else if (logical.kind === 'timestamp' || logical.kind === 'time') {
    text += ` ${logical.kind.toUpperCase()}(MICROS, utc=${logical.utc})`;
  } else if (logical.kind === 'int') text += ` INT(${logical.bits})`;
  else if (logical.kind !== 'none') text += ` ${logical.kind.toUpperCase()}`;
  return list ? `LIST<${text}>` : text;
}

export function buildManifest(args: {
  job: string;
  runId: string;
  stage: string;
  window: Window | undefined;
  plans: readonly ColumnPlan[];
  files: StagedFile[];
}): RunManifest {
  return {
    version: 1,
    job: args.job,
    run_id: args.runId,
    created_at: new Date().toISOString(),
    stage: args.stage,
    window: args.window ?? null,
    columns: args.plans.map((p) => ({
      name: p.name,
      pg_type: p.pgType,
      parquet: parquetTypeName(p),
      ...(p.note ? { note: p.note } : {}),
    })),
    files: args.files,
    rows: args.files.reduce((n, f) => n + f.rows, 0),
    bytes: args.files.reduce((n, f) => n + f.bytes, 0),
  };
}

export async function writeManifest(store: ObjectStore, manifest: RunManifest): Promise<void> {
  // Values, not the serialised text: a short secret must never edit a count or a file name.
  const body = JSON.stringify(redactor.redactValue(manifest), null, 2);
  await store.put(manifestKey(manifest.job, manifest.run_id), body, { contentType: 'application/json' });
}
