/**
 * Requests shared by the BigQuery contract and live suites: the columns a run exports, windows,
 * and staged files, built the way the pipeline builds them.
 */
import { createHash } from 'node:crypto';
import type { Window } from '../../src/core/window.js';
import { type ColumnSpec, Physical } from '../../src/parquet/schema.js';
import type { LoadRequest, StagedFile } from '../../src/warehouse/warehouse.js';

export const COLUMNS: ColumnSpec[] = [
  { name: 'id', physical: Physical.INT64, logical: { kind: 'int', bits: 64, signed: true } },
  { name: 'updated_at', physical: Physical.INT64, logical: { kind: 'timestamp', utc: true } },
  { name: 'amount', physical: Physical.INT64, logical: { kind: 'decimal', precision: 18, scale: 2 } },
  { name: 'tags', physical: Physical.BYTE_ARRAY, logical: { kind: 'string' }, list: true },
];

export const JSON_COLUMN: ColumnSpec = {
  name: 'payload',
  physical: Physical.BYTE_ARRAY,
  logical: { kind: 'json' },
};

/** An incremental window over (cursor, key): (lower] exclusive, upper inclusive. */
export const INCREMENTAL: Window = {
  columns: ['updated_at', 'id'],
  types: ['timestamp with time zone', 'bigint'],
  lower: { values: ['2024-01-01 00:00:00+00', '17'], inclusive: false },
  upper: { values: ['2024-01-02 06:00:00+00', '99'], inclusive: true },
};

/** A backfill window that is exactly one UTC day. */
export const ONE_DAY: Window = {
  columns: ['updated_at'],
  types: ['timestamp with time zone'],
  lower: { values: ['2024-01-01 00:00:00.000+00'], inclusive: true },
  upper: { values: ['2024-01-02 00:00:00.000+00'], inclusive: false },
};

/** Staged files under a gs:// stage, laid out as the run lays them out. */
export function stagedFiles(stage: string, runId: string, rows: readonly number[], seed = 'a'): StagedFile[] {
  return rows.map((n, i) => {
    const key = `orders/data/dt=2024-01-02/run=${runId}/part-${String(i).padStart(5, '0')}.parquet`;
    return {
      key,
      url: `${stage}/${key}`,
      rows: n,
      bytes: 1000 + n,
      sha256: createHash('sha256').update(`${seed}:${i}:${n}`).digest('hex'),
    };
  });
}

export function loadRequest(overrides: Partial<LoadRequest> & { files: StagedFile[] }): LoadRequest {
  return {
    job: 'orders',
    runId: '20240102T060000Z-abc123',
    table: 'analytics.orders',
    mode: 'append',
    columns: COLUMNS,
    window: INCREMENTAL,
    key: ['id'],
    expectedRows: overrides.files.reduce((n, f) => n + f.rows, 0),
    ...overrides,
  };
}
