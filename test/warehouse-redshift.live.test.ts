/**
 * The Redshift cases of the contract suite, against a real workgroup or cluster. Runs when these
 * are set (skipped otherwise):
 *
 *   NIGHTSHIFT_TEST_REDSHIFT_WORKGROUP   a Serverless workgroup (or _CLUSTER, a provisioned cluster)
 *   NIGHTSHIFT_TEST_REDSHIFT_DATABASE    its database
 *   NIGHTSHIFT_TEST_REDSHIFT_IAM_ROLE    the COPY role, associated with it, that may read the stage
 *   NIGHTSHIFT_TEST_REDSHIFT_STAGE       s3://bucket/prefix in the same Region, writable by the caller
 *   optional _REGION (default: AWS_REGION), _SCHEMA (public), _SECRET_ARN, _DB_USER
 *
 * plus AWS credentials of the default chain (environment, profile, SSO, or a pod's role). The
 * database user needs USAGE and CREATE on the schema; the tables the suite creates are dropped
 * after it, and the objects it uploads deleted. The Parquet parts are written by DuckDB under
 * nightshift's layout and uploaded with PutObject; the manifest goes through a minimal S3 writer
 * (the two calls the warehouse makes of its store: put and urlOf).
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { RedshiftData } from '@aws-sdk/client-redshift-data';
import { DeleteObjectCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe, expect, it } from 'vitest';
import type { ObjectInfo, ObjectStore } from '../src/store/store.js';
import { type RedshiftOptions, RedshiftWarehouse } from '../src/warehouse/redshift/index.js';
import type { LoadRequest, StagedFile } from '../src/warehouse/warehouse.js';
import { tempDir } from './helpers/env.js';
import {
  failure,
  stageParts,
  type Trip,
  trips,
  tripsLoadRequest,
  tripWindow,
} from './helpers/warehouse-fixtures.js';

const env = process.env;
const STAGE = env.NIGHTSHIFT_TEST_REDSHIFT_STAGE?.replace(/\/$/, '');
const REGION = env.NIGHTSHIFT_TEST_REDSHIFT_REGION ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
const credentials = Boolean(
  (env.NIGHTSHIFT_TEST_REDSHIFT_WORKGROUP || env.NIGHTSHIFT_TEST_REDSHIFT_CLUSTER) &&
    env.NIGHTSHIFT_TEST_REDSHIFT_DATABASE &&
    env.NIGHTSHIFT_TEST_REDSHIFT_IAM_ROLE &&
    STAGE?.startsWith('s3://') &&
    REGION,
);

/** The stage bucket, and the key prefix under it. */
function stageParts3(): { bucket: string; prefix: string } {
  const m = /^s3:\/\/([^/]+)\/?(.*)$/.exec(STAGE ?? '');
  return { bucket: m?.[1] ?? '', prefix: m?.[2] ? `${m[2]}/` : '' };
}

/** Writes objects to the S3 stage: what the warehouse needs of a store (the manifest). */
class S3Writer implements ObjectStore {
  readonly url = STAGE ?? '';
  readonly written: string[] = [];
  constructor(private readonly s3: S3Client) {}
  urlOf(key: string): string {
    return `${this.url}/${key}`;
  }
  async put(key: string, body: string | Uint8Array): Promise<ObjectInfo> {
    const { bucket, prefix } = stageParts3();
    await this.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}${key}`, Body: body }));
    this.written.push(key);
    return { key, size: typeof body === 'string' ? Buffer.byteLength(body) : body.length, etag: '' };
  }
  async putFile(key: string, path: string): Promise<ObjectInfo> {
    return this.put(key, readFileSync(path));
  }
  async delete(key: string): Promise<void> {
    const { bucket, prefix } = stageParts3();
    await this.s3.send(new DeleteObjectCommand({ Bucket: bucket, Key: `${prefix}${key}` }));
  }
  async get(): Promise<undefined> {
    throw new Error('not used by the Redshift warehouse');
  }
  // biome-ignore lint/correctness/useYield: the warehouse never lists
  async *list(): AsyncIterable<ObjectInfo> {
    throw new Error('not used by the Redshift warehouse');
  }
  async download(): Promise<void> {
    throw new Error('not used by the Redshift warehouse');
  }
}

describe.skipIf(!credentials)('Redshift warehouse live', () => {
  // Collected even when skipped: make the temp dir and clients only when the suite will run.
  const tmp = credentials ? tempDir('ns-redshift-live-') : { dir: '', cleanup: () => undefined };
  const stageDir = join(tmp.dir, 'stage');
  if (credentials) mkdirSync(stageDir, { recursive: true });
  const suffix = randomBytes(3).toString('hex');
  const schema = env.NIGHTSHIFT_TEST_REDSHIFT_SCHEMA ?? 'public';
  const s3 = new S3Client({ region: REGION });
  const store = new S3Writer(s3);
  const tables: string[] = [];
  let counter = 0;

  const options = (more: Partial<RedshiftOptions> = {}): RedshiftOptions => ({
    workgroup: env.NIGHTSHIFT_TEST_REDSHIFT_WORKGROUP || undefined,
    cluster: env.NIGHTSHIFT_TEST_REDSHIFT_WORKGROUP ? undefined : env.NIGHTSHIFT_TEST_REDSHIFT_CLUSTER,
    database: env.NIGHTSHIFT_TEST_REDSHIFT_DATABASE ?? '',
    schema,
    secretArn: env.NIGHTSHIFT_TEST_REDSHIFT_SECRET_ARN || undefined,
    dbUser: env.NIGHTSHIFT_TEST_REDSHIFT_DB_USER || undefined,
    iamRole: env.NIGHTSHIFT_TEST_REDSHIFT_IAM_ROLE ?? '',
    region: REGION,
    statementTimeoutMs: 600_000,
    poll: { initialMs: 250, maxMs: 2_000 },
    ...more,
  });
  const warehouse = (more: Partial<RedshiftOptions> = {}) =>
    new RedshiftWarehouse(new RedshiftData({ region: REGION }), options(more), store);

  /** Runs SQL through the Data API as the suite's user and returns the rows. */
  async function sql(text: string): Promise<Record<string, unknown>[]> {
    const client = new RedshiftData({ region: REGION });
    const o = options();
    try {
      const { Id } = await client.executeStatement({
        Sql: text,
        Database: o.database,
        ...(o.workgroup ? { WorkgroupName: o.workgroup } : { ClusterIdentifier: o.cluster }),
        ...(o.secretArn ? { SecretArn: o.secretArn } : {}),
        ...(o.dbUser ? { DbUser: o.dbUser } : {}),
      });
      for (;;) {
        const d = await client.describeStatement({ Id });
        if (d.Status === 'FAILED' || d.Status === 'ABORTED') throw new Error(d.Error ?? d.Status);
        if (d.Status === 'FINISHED') {
          if (!d.HasResultSet) return [];
          const r = await client.getStatementResult({ Id });
          const names = (r.ColumnMetadata ?? []).map((c) => c.name ?? '');
          return (r.Records ?? []).map((rec) =>
            Object.fromEntries(
              rec.map((f, i) => [
                names[i],
                f.isNull ? null : (f.stringValue ?? f.longValue ?? f.doubleValue ?? f.booleanValue),
              ]),
            ),
          );
        }
        await new Promise((resolve) => setTimeout(resolve, 300));
      }
    } finally {
      client.destroy();
    }
  }

  /** Stages parts locally and uploads them to the same keys under the S3 stage. */
  async function stage(parts: Trip[][]): Promise<{ runId: string; files: StagedFile[] }> {
    const staged = await stageParts(stageDir, 'trips', parts);
    const files: StagedFile[] = [];
    for (const f of staged.files) {
      await store.putFile(f.key, join(stageDir, f.key));
      files.push({ ...f, url: store.urlOf(f.key), bytes: statSync(join(stageDir, f.key)).size });
    }
    return { runId: staged.runId, files };
  }

  function job() {
    const table = `nightshift_live_${suffix}_${++counter}`;
    tables.push(table);
    const request = (
      staged: { runId: string; files: StagedFile[] },
      more: Partial<LoadRequest> = {},
    ): LoadRequest => tripsLoadRequest(`${schema}.${table}`, staged, more);
    const rows = async () =>
      (
        await sql(
          `SELECT trip_id, CAST(fare_usd AS VARCHAR) AS fare, JSON_SERIALIZE(payload) AS payload, ride_id, JSON_SERIALIZE(tags) AS tags FROM "${schema}"."${table}" ORDER BY 1`,
        )
      ).map((r): Record<string, unknown> => ({ ...r, trip_id: Number(r.trip_id) }));
    const exists = async () =>
      (await sql(`SELECT 1 FROM svv_columns WHERE table_schema = '${schema}' AND table_name = '${table}'`))
        .length > 0;
    return { table, request, rows, exists };
  }

  afterAll(async () => {
    for (const table of tables)
      await sql(`DROP TABLE IF EXISTS "${schema}"."${table}"`).catch(() => undefined);
    for (const key of store.written) await store.delete(key).catch(() => undefined);
    s3.destroy();
    tmp.cleanup();
  });

  it('append creates the table from the Parquet columns and loads every value', async () => {
    const j = job();
    const wh = warehouse();
    const result = await wh.load(j.request(await stage([trips(1, 2), trips(3, 3)])));
    expect(result).toMatchObject({ rowsLoaded: 3, rowsReplaced: 0 });
    const rows = await j.rows();
    expect(rows.map((r) => [r.trip_id, r.fare, r.ride_id])).toEqual([
      [1, '11.00', '00000000-0000-4000-8000-000000000001'],
      [2, '12.00', '00000000-0000-4000-8000-000000000002'],
      [3, '13.00', '00000000-0000-4000-8000-000000000003'],
    ]);
    expect(JSON.parse(String(rows[0].payload))).toEqual({ surge: 1, app: 'v0' });
    expect(JSON.parse(String(rows[0].tags))).toEqual(['shared']);
    expect(await wh.countWindow(`${schema}.${j.table}`, tripWindow(2, 3))).toBe(2);
    await wh.close();
  });

  it('append replaces the window, merge replaces keys, replace replaces all', async () => {
    const j = job();
    const wh = warehouse();
    await wh.load(j.request(await stage([trips(1, 4)]), { window: tripWindow(1, 4) }));
    const appended = await wh.load(j.request(await stage([trips(2, 3, 50)]), { window: tripWindow(2, 3) }));
    expect(appended).toMatchObject({ rowsLoaded: 2, rowsReplaced: 2 });
    const merged = await wh.load(j.request(await stage([trips(4, 5, 70)]), { mode: 'merge' }));
    expect(merged).toMatchObject({ rowsLoaded: 2, rowsReplaced: 1 });
    expect((await j.rows()).map((r) => [r.trip_id, r.fare])).toEqual([
      [1, '11.00'],
      [2, '12.50'],
      [3, '13.50'],
      [4, '14.70'],
      [5, '15.70'],
    ]);
    const replaced = await wh.load(j.request(await stage([trips(9, 9)]), { mode: 'replace' }));
    expect(replaced).toMatchObject({ rowsLoaded: 1, rowsReplaced: 5 });
    expect((await j.rows()).map((r) => r.trip_id)).toEqual([9]);
    await wh.close();
  });

  it('the same load submitted again does not load twice', async () => {
    const j = job();
    const wh = warehouse();
    const request = j.request(await stage([trips(1, 3)]));
    const first = await wh.load(request);
    const second = await wh.load(request);
    expect(second.loadId).toBe(first.loadId);
    expect(await wh.countWindow(`${schema}.${j.table}`, tripWindow(1, 3))).toBe(3);
    await wh.close();
  });

  it('a count that differs from the files fails the check and rolls back, the new table too (exit 3)', async () => {
    const j = job();
    const wh = warehouse();
    const err = await failure(wh.load(j.request(await stage([trips(1, 3)]), { expectedRows: 4 })));
    await wh.close();
    expect(err.exitCode).toBe(3);
    expect(err.message).toContain("Redshift's COPY loaded 3 rows");
    expect(await j.exists()).toBe(false);
  });

  it('a COPY role not associated with the warehouse: exit 5', async () => {
    const j = job();
    const account = /^arn:aws[a-z-]*:iam::(\d{12}):/.exec(options().iamRole)?.[1] ?? '000000000000';
    const wh = warehouse({ iamRole: `arn:aws:iam::${account}:role/nightshift-not-associated-${suffix}` });
    const err = await failure(wh.load(j.request(await stage([trips(1, 2)]))));
    await wh.close();
    expect(err.exitCode).toBe(5);
    expect(err.message).toMatch(/not authorized to assume|AssumeRole|not associated/i);
  });

  it('a load that outlasts statement_timeout is stopped: exit 75', async () => {
    const j = job();
    const wh = warehouse({ statementTimeoutMs: 1 });
    const err = await failure(
      wh.load(j.request(await stage([trips(1, 200)]), { window: tripWindow(1, 200) })),
    );
    await wh.close();
    expect(err.exitCode).toBe(75);
  });
});
