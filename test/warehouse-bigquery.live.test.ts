/**
 * The BigQuery contract cases against a real project, run only when credentials are given:
 *   NIGHTSHIFT_TEST_BIGQUERY_PROJECT   project that runs the jobs
 *   NIGHTSHIFT_TEST_BIGQUERY_DATASET   a dataset the tests may create tables in (dropped after)
 *   NIGHTSHIFT_TEST_GCS_STAGE          gs://bucket/prefix in the dataset's location
 * plus Application Default Credentials (`gcloud auth application-default login`, or Workload
 * Identity). Real Parquet files are written by nightshift's writer and uploaded with the JSON API.
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BigQuery } from '@google-cloud/bigquery';
import { afterAll, describe, expect, it } from 'vitest';
import type { Window } from '../src/core/window.js';
import { NightshiftError } from '../src/errors.js';
import type { ByteArrayColumn, Int64Column } from '../src/parquet/column.js';
import { type ColumnSpec, Physical } from '../src/parquet/schema.js';
import { PartWriter } from '../src/parquet/writer.js';
import { BigQueryWarehouse } from '../src/warehouse/bigquery/index.js';
import type { LoadRequest, StagedFile } from '../src/warehouse/warehouse.js';

const PROJECT = process.env.NIGHTSHIFT_TEST_BIGQUERY_PROJECT;
const DATASET = process.env.NIGHTSHIFT_TEST_BIGQUERY_DATASET;
const STAGE = process.env.NIGHTSHIFT_TEST_GCS_STAGE?.replace(/\/$/, '');
const credentials = Boolean(PROJECT && DATASET && STAGE?.startsWith('gs://'));

const COLUMNS: ColumnSpec[] = [
  { name: 'id', physical: Physical.INT64, logical: { kind: 'int', bits: 64, signed: true } },
  { name: 'updated_at', physical: Physical.INT64, logical: { kind: 'timestamp', utc: true } },
  { name: 'amount', physical: Physical.INT64, logical: { kind: 'decimal', precision: 18, scale: 2 } },
  { name: 'payload', physical: Physical.BYTE_ARRAY, logical: { kind: 'json' } },
];
const DAY_US = 86_400_000_000;
const JAN1_US = Date.UTC(2024, 0, 1) * 1000;

describe.skipIf(!credentials)('BigQuery warehouse live', () => {
  const bq = new BigQuery({ projectId: PROJECT });
  // Collected even when skipped: make the temp dir only when the suite will run.
  const dir = credentials ? mkdtempSync(join(tmpdir(), 'ns-bq-live-')) : '';
  const suffix = randomBytes(4).toString('hex');
  const tables: string[] = [];
  const uploaded: string[] = [];

  const warehouse = (options: { partitionBy?: string } = {}) =>
    new BigQueryWarehouse(bq, {
      project: PROJECT ?? '',
      createTable: true,
      partitionType: 'DAY',
      maximumBytesBilled: 10 * 1024 ** 3,
      timeoutMs: 600_000,
      jobIdPrefix: `nightshift_test_${suffix}`,
      ...options,
    });

  /** Writes rows [from, to) spread over one day from `dayUs`, and uploads them. */
  async function stage(name: string, from: number, to: number, dayUs = JAN1_US): Promise<StagedFile> {
    const writer = new PartWriter({
      dir,
      fileName: () => `${name}.parquet`,
      columns: COLUMNS,
      codec: 'zstd',
      level: 3,
      partBytes: 1 << 30,
      rowGroupBytes: 1 << 24,
      pageBytes: 1 << 16,
      dictionary: true,
      createdBy: 'nightshift live test',
    });
    const [id, ts, amount, payload] = writer.columns as [
      Int64Column,
      Int64Column,
      Int64Column,
      ByteArrayColumn,
    ];
    const put = (col: Int64Column, v: number) => col.append(Math.floor(v / 2 ** 32), (v % 2 ** 32) >>> 0);
    for (let i = from; i < to; i++) {
      put(id, i);
      put(ts, dayUs + Math.floor(((i - from) * DAY_US) / (to - from)));
      put(amount, i * 100 + 1);
      payload.appendString(JSON.stringify({ i, big: '12345678901234567890' }));
      writer.endRow();
    }
    const [part] = writer.finish(true);
    const key = `nightshift-live-${suffix}/${name}.parquet`;
    await upload(key, readFileSync(part.path));
    return { key, url: `${STAGE}/${key}`, rows: part.rows, bytes: part.bytes, sha256: part.sha256 };
  }

  async function upload(key: string, body: Buffer): Promise<void> {
    const [, bucket, ...prefix] = (STAGE ?? '').replace('gs://', '/').split('/');
    const name = [...prefix, key].filter(Boolean).join('/');
    const token = await bq.authClient.getAccessToken();
    const res = await fetch(
      `https://storage.googleapis.com/upload/storage/v1/b/${bucket}/o?uploadType=media&name=${encodeURIComponent(name)}`,
      { method: 'POST', headers: { Authorization: `Bearer ${token}` }, body },
    );
    if (!res.ok) throw new Error(`upload of ${name} failed: ${res.status} ${await res.text()}`);
    uploaded.push(name);
  }

  function request(table: string, files: StagedFile[], overrides: Partial<LoadRequest> = {}): LoadRequest {
    tables.push(table);
    const window: Window = {
      columns: ['updated_at'],
      types: ['timestamp with time zone'],
      lower: { values: ['2024-01-01 00:00:00+00'], inclusive: true },
      upper: { values: ['2024-01-02 00:00:00+00'], inclusive: false },
    };
    return {
      job: `live-${suffix}`,
      runId: `20240102T000000Z-${suffix.slice(0, 6)}`,
      table: `${DATASET}.${table}`,
      mode: 'append',
      files,
      columns: COLUMNS,
      window,
      key: ['id'],
      expectedRows: files.reduce((n, f) => n + f.rows, 0),
      ...overrides,
    };
  }

  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true });
    for (const t of new Set(tables)) {
      await bq
        .dataset(DATASET ?? '')
        .table(t)
        .delete()
        .catch(() => undefined);
    }
  });

  it('append via staging (JSON columns), then a rerun of the same window finds the earlier jobs', async () => {
    const files = [await stage('a0', 0, 50), await stage('a1', 50, 80)];
    const req = request(`orders_${suffix}`, files);
    const first = await warehouse({ partitionBy: 'updated_at' }).load(req);
    expect(first.rowsLoaded).toBe(80);
    const [meta] = await bq
      .dataset(DATASET ?? '')
      .table(`orders_${suffix}`)
      .getMetadata();
    expect(meta.schema.fields.find((f: { name: string }) => f.name === 'payload')?.type).toBe('JSON');
    expect(meta.timePartitioning).toMatchObject({ type: 'DAY', field: 'updated_at' });
    const second = await warehouse({ partitionBy: 'updated_at' }).load(req);
    expect(second.loadId).toBe(first.loadId);
    expect(await warehouse().countWindow(req.table, req.window)).toBe(80);
  });

  it('merge upserts on the key', async () => {
    const table = `merge_${suffix}`;
    await warehouse().load(request(table, [await stage('m0', 0, 20)], { mode: 'merge' }));
    const result = await warehouse().load(request(table, [await stage('m1', 10, 30)], { mode: 'merge' }));
    expect(result).toMatchObject({ rowsLoaded: 20, rowsReplaced: 10 });
  });

  it('replace reports the rows it replaced', async () => {
    const table = `replace_${suffix}`;
    await warehouse().load(request(table, [await stage('r0', 0, 7)], { mode: 'replace' }));
    const result = await warehouse().load(request(table, [await stage('r1', 0, 5)], { mode: 'replace' }));
    expect(result).toMatchObject({ rowsLoaded: 5, rowsReplaced: 7 });
  });

  it('a file that does not exist fails the load with exit 2', async () => {
    const missing: StagedFile = {
      key: 'nope',
      url: `${STAGE}/nightshift-live-${suffix}/nope.parquet`,
      rows: 1,
      bytes: 1,
      sha256: 'x',
    };
    const err = await warehouse()
      .load(request(`missing_${suffix}`, [missing], { mode: 'replace' }))
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NightshiftError);
    expect((err as NightshiftError).exitCode).toBe(2);
  });

  it('a query over maximum_bytes_billed fails with exit 2', async () => {
    const wh = new BigQueryWarehouse(bq, {
      project: PROJECT ?? '',
      createTable: true,
      partitionType: 'DAY',
      maximumBytesBilled: 1,
      timeoutMs: 600_000,
      jobIdPrefix: `nightshift_test_${suffix}`,
    });
    const req = request(`orders_${suffix}`, []);
    const err = await wh.countWindow(req.table, req.window).catch((e: unknown) => e);
    // A tiny table may bill the 10 MB minimum, over a 1-byte cap.
    expect((err as NightshiftError).exitCode).toBe(2);
  });
});
