/**
 * Fixtures shared by the Snowflake contract and live suites: a key pair, staged Parquet files
 * written by DuckDB under nightshift's layout, their column specs, and a window.
 */
import { generateKeyPairSync } from 'node:crypto';
import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DuckDBInstance } from '@duckdb/node-api';
import { expect } from 'vitest';
import { dataPrefix, newRunId, partFileName } from '../../src/core/layout.js';
import type { Window } from '../../src/core/window.js';
import { NightshiftError } from '../../src/errors.js';
import { type ColumnSpec, Physical } from '../../src/parquet/schema.js';
import type { LoadRequest, StagedFile } from '../../src/warehouse/warehouse.js';

/** A trip as the fixtures write it. */
export interface Trip {
  id: number;
  /** ISO instant. */
  updated: string;
  fare: string;
  region: string;
  payload: Record<string, unknown> | null;
  ride: string;
  tags: string[];
}

export const TRIP_COLUMNS: ColumnSpec[] = [
  { name: 'trip_id', physical: Physical.INT64, logical: { kind: 'int', bits: 64, signed: true } },
  { name: 'updated_at', physical: Physical.INT64, logical: { kind: 'timestamp', utc: true } },
  { name: 'fare_usd', physical: Physical.INT64, logical: { kind: 'decimal', precision: 10, scale: 2 } },
  { name: 'region', physical: Physical.BYTE_ARRAY, logical: { kind: 'string' } },
  { name: 'payload', physical: Physical.BYTE_ARRAY, logical: { kind: 'json' } },
  { name: 'ride_id', physical: Physical.FIXED_LEN_BYTE_ARRAY, typeLength: 16, logical: { kind: 'uuid' } },
  { name: 'tags', physical: Physical.BYTE_ARRAY, logical: { kind: 'string' }, list: true },
];

/** Trips `first..last`, updated one minute apart from 2024-05-01T00:00Z, fares shifted by `version`. */
export function trips(first: number, last: number, version = 0): Trip[] {
  const out: Trip[] = [];
  for (let id = first; id <= last; id++) {
    out.push({
      id,
      updated: new Date(Date.UTC(2024, 4, 1) + id * 60_000).toISOString(),
      fare: (10 + id + version / 100).toFixed(2),
      region: ['eu', 'us', 'ap'][id % 3],
      payload: id % 4 === 0 ? null : { surge: id % 3, app: `v${version}` },
      ride: `00000000-0000-4000-8000-${String(id).padStart(12, '0')}`,
      tags: id % 2 ? ['shared'] : [],
    });
  }
  return out;
}

function sqlRow(t: Trip): string {
  const payload = t.payload ? `'${JSON.stringify(t.payload)}'::JSON` : 'NULL::JSON';
  const tags = `[${t.tags.map((x) => `'${x}'`).join(', ')}]::VARCHAR[]`;
  return `(${t.id}::BIGINT, '${t.updated}'::TIMESTAMPTZ, ${t.fare}::DECIMAL(10,2), '${t.region}', ${payload}, '${t.ride}'::UUID, ${tags})`;
}

/** Writes parts (one per trips array) under `<stageDir>/<job>/data/...` and returns them as staged. */
export async function stageParts(
  stageDir: string,
  job: string,
  parts: Trip[][],
  runId = newRunId(),
): Promise<{ runId: string; files: StagedFile[] }> {
  const prefix = dataPrefix(job, runId);
  mkdirSync(join(stageDir, prefix), { recursive: true });
  const db = await DuckDBInstance.create(':memory:');
  const con = await db.connect();
  await con.run("SET TimeZone = 'UTC'");
  const files: StagedFile[] = [];
  try {
    for (const [i, rows] of parts.entries()) {
      const key = `${prefix}${partFileName(i)}`;
      const path = join(stageDir, key);
      const select = rows.length
        ? `SELECT * FROM (VALUES ${rows.map(sqlRow).join(', ')}) AS t(trip_id, updated_at, fare_usd, region, payload, ride_id, tags)`
        : `SELECT * FROM (VALUES ${sqlRow(trips(0, 0)[0])}) AS t(trip_id, updated_at, fare_usd, region, payload, ride_id, tags) LIMIT 0`;
      await con.run(`COPY (${select}) TO '${path}' (FORMAT parquet)`);
      files.push({ key, url: `s3://bucket/prefix/${key}`, rows: rows.length, bytes: 1, sha256: '' });
    }
  } finally {
    con.closeSync();
    db.closeSync();
  }
  return { runId, files };
}

/** Copies one staged file `count` times under a new run (for FILES chunking). */
export function cloneParts(
  stageDir: string,
  job: string,
  source: StagedFile,
  count: number,
): { runId: string; files: StagedFile[] } {
  const runId = newRunId();
  const prefix = dataPrefix(job, runId);
  mkdirSync(join(stageDir, prefix), { recursive: true });
  const files: StagedFile[] = [];
  for (let i = 0; i < count; i++) {
    const key = `${prefix}${partFileName(i)}`;
    copyFileSync(join(stageDir, source.key), join(stageDir, key));
    files.push({ ...source, key, url: `s3://bucket/prefix/${key}` });
  }
  return { runId, files };
}

/** The incremental window (updated_at, trip_id) of trips `first..last`. */
export function tripWindow(first: number, last: number): Window {
  const t = (id: number) =>
    new Date(Date.UTC(2024, 4, 1) + id * 60_000).toISOString().replace('T', ' ').replace('Z', '+00');
  return {
    columns: ['updated_at', 'trip_id'],
    types: ['timestamp with time zone', 'bigint'],
    lower: { values: [t(first - 1), String(first - 1)], inclusive: false },
    upper: { values: [t(last), String(last)], inclusive: true },
  };
}

/** An RSA key pair: the private key written as PKCS#8 PEM (optionally encrypted). */
export function keyPair(dir: string, passphrase?: string): { privateKeyPath: string; publicKey: string } {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', {
    modulusLength: 2048,
    publicKeyEncoding: { type: 'spki', format: 'pem' },
    privateKeyEncoding: passphrase
      ? { type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }
      : { type: 'pkcs8', format: 'pem' },
  });
  const privateKeyPath = join(dir, `rsa_key_${Math.random().toString(16).slice(2)}.p8`);
  writeFileSync(privateKeyPath, privateKey, { mode: 0o600 });
  return { privateKeyPath, publicKey };
}

/** A load request of the trips test job over staged files: append of window (1, 3] unless `more` says otherwise. */
export function tripsLoadRequest(
  table: string,
  staged: { runId: string; files: StagedFile[] },
  more: Partial<LoadRequest> = {},
): LoadRequest {
  return {
    job: 'trips',
    runId: staged.runId,
    table,
    mode: 'append',
    files: staged.files,
    columns: TRIP_COLUMNS,
    window: tripWindow(1, 3),
    key: ['trip_id'],
    expectedRows: staged.files.reduce((n, f) => n + f.rows, 0),
    ...more,
  };
}

/** The NightshiftError a promise rejects with; fails the test when it resolves or throws something else. */
export async function failure(promise: Promise<unknown>): Promise<NightshiftError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(NightshiftError);
    return err as NightshiftError;
  }
  throw new Error('expected the load to fail');
}
