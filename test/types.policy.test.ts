/**
 * The documented type policies, end to end: infinity, NaN in DECIMAL columns, multi-dimensional
 * arrays, unconstrained numeric, and types with no mapping (fail before any data moves).
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { duckQuery } from './helpers/duck.js';
import { freshDatabase, runCli, sql, tempDir, writeConfig } from './helpers/env.js';

const tmp = tempDir('ns-policy-');
let dbUrl: string;
let n = 0;

beforeAll(async () => {
  dbUrl = await freshDatabase();
});
afterAll(() => tmp.cleanup());

/** Creates a table from `columns` and `rows`, runs one export of it, and returns what happened. */
async function exportTable(columns: string, rows: string, source: Record<string, unknown> = {}) {
  const table = `p${++n}`;
  await sql(
    dbUrl,
    `CREATE TABLE ${table} (id int PRIMARY KEY, ts timestamptz NOT NULL DEFAULT '2024-01-01', ${columns})`,
  );
  await sql(dbUrl, `INSERT INTO ${table} VALUES ${rows}`);
  const dir = join(tmp.dir, table);
  const warehouse = join(dir, 'w.duckdb');
  const config = writeConfig(
    tmp.dir,
    {
      job: table,
      source: { url: dbUrl, table, cursor: 'ts', key: ['id'], ...source },
      stage: { url: pathToFileURL(join(dir, 'stage')).href },
      warehouse: { table, duckdb: { path: warehouse } },
      temp_dir: join(dir, 'tmp'),
      log: { format: 'json' },
    },
    `${table}.yaml`,
  );
  const result = await runCli(['run', '--config', config]);
  const loaded = async (select: string) =>
    existsSync(warehouse) ? duckQuery(warehouse, `SELECT ${select} FROM ${table} ORDER BY id`) : undefined;
  return { result, loaded, stage: join(dir, 'stage', table) };
}

const message = (r: { summary?: Record<string, unknown> }) => JSON.stringify(r.summary?.error ?? null);

describe('type policies', () => {
  it('clamps infinite timestamps and dates by default', async () => {
    const { result, loaded } = await exportTable(
      't timestamptz, d date',
      `(1, default, 'infinity', '-infinity')`,
    );
    expect(result.code, result.stderr).toBe(0);
    expect(await loaded('t::varchar AS t, d::varchar AS d')).toEqual([
      { t: '9999-12-31 23:59:59.999999+00', d: '0001-01-01' },
    ]);
  });

  it('writes NULL for infinity with source.infinity: null', async () => {
    const { result, loaded } = await exportTable('t timestamp', `(1, default, 'infinity')`, {
      infinity: 'null',
    });
    expect(result.code).toBe(0);
    expect(await loaded('t')).toEqual([{ t: null }]);
  });

  it('fails with exit 3 for infinity with source.infinity: error, loading nothing', async () => {
    const { result, loaded, stage } = await exportTable('t timestamp', `(1, default, '-infinity')`, {
      infinity: 'error',
    });
    expect(result.code).toBe(3);
    expect(message(result)).toContain('column t holds -infinity');
    expect(await loaded('t')).toBeUndefined();
    expect(existsSync(join(stage, 'data'))).toBe(false);
  });

  it("timestamps and dates past Parquet's range follow source.infinity instead of wrapping to BC", async () => {
    // 294247-01-10T04:00:54Z is the last int64 microsecond since 1970; PostgreSQL goes to 294276.
    // Dates fit: PostgreSQL's last, in 5874897, is well inside int32 days since 1970.
    const rows = `(1, default, '294000-06-01 12:00:00', '5874000-01-01'), (2, default, '294270-01-01 00:00:00', '5874890-01-01')`;
    const clamped = await exportTable('t timestamp, d date', rows);
    expect(clamped.result.code, clamped.result.stdout.slice(-800)).toBe(0);
    expect(
      await clamped.loaded(
        "year(t) AS ty, t > TIMESTAMP '9999-12-31 23:59:59.999999' AS t_past, d::varchar AS d",
      ),
    ).toEqual([
      { ty: '294000', t_past: true, d: '5874000-01-01' },
      { ty: '9999', t_past: false, d: '5874890-01-01' },
    ]);
    const nulled = await exportTable('t timestamp, d date', rows, { infinity: 'null' });
    expect(nulled.result.code).toBe(0);
    expect(await nulled.loaded('t IS NULL AS t_null, d IS NULL AS d_null')).toEqual([
      { t_null: false, d_null: false },
      { t_null: true, d_null: false },
    ]);
    const refused = await exportTable('t timestamp', `(1, default, '294270-01-01 00:00:00')`, {
      infinity: 'error',
    });
    expect(refused.result.code).toBe(3);
    expect(message(refused.result)).toContain('column t holds a timestamp past what Parquet can store');
    expect(await refused.loaded('t')).toBeUndefined();
  });

  it('fails with exit 3 for NaN in a numeric(p,s) column and names the cast', async () => {
    const { result } = await exportTable('x numeric(10,2)', `(1, default, 'NaN')`);
    expect(result.code).toBe(3);
    expect(message(result)).toContain('column x holds numeric NaN');
    expect(message(result)).toContain('source.casts.x');
  });

  it('fails with exit 3 on a multi-dimensional array, and keeps its shape when cast to jsonb', async () => {
    const failed = await exportTable('a int[]', `(1, default, '{{1,2},{3,4}}')`);
    expect(failed.result.code).toBe(3);
    expect(message(failed.result)).toContain('2-dimensional array');
    const cast = await exportTable('a int[]', `(1, default, '{{1,2},{3,4}}')`, { casts: { a: 'jsonb' } });
    expect(cast.result.code, cast.result.stderr).toBe(0);
    expect(await cast.loaded('a::varchar AS a')).toEqual([{ a: '[[1, 2], [3, 4]]' }]);
  });

  it('writes unconstrained numeric as DECIMAL(38,s) when it fits and as exact text when not', async () => {
    const fits = await exportTable('x numeric', `(1, default, '12.5'), (2, default, '-0.000123')`);
    expect(fits.result.code).toBe(0);
    expect(await fits.loaded('typeof(x) AS t, x::varchar AS x')).toEqual([
      { t: 'DECIMAL(38,6)', x: '12.500000' },
      { t: 'DECIMAL(38,6)', x: '-0.000123' },
    ]);
    const huge = await exportTable('x numeric', `(1, default, '1e40'), (2, default, '1.5')`);
    expect(huge.result.code).toBe(0);
    expect(await huge.loaded('typeof(x) AS t, x')).toEqual([
      { t: 'VARCHAR', x: '10000000000000000000000000000000000000000' },
      { t: 'VARCHAR', x: '1.5' },
    ]);
    const text = await exportTable('x numeric', `(1, default, '2.25')`, { numeric: 'string' });
    expect(await text.loaded('typeof(x) AS t, x')).toEqual([{ t: 'VARCHAR', x: '2.25' }]);
  });

  it('fails before any data moves for a type with no mapping, naming the key that casts it', async () => {
    const { result, stage } = await exportTable('acl aclitem', `(1, default, 'postgres=r/postgres')`);
    expect(result.code).toBe(2);
    expect(message(result)).toContain('column acl has type aclitem');
    expect(message(result)).toContain('source.casts.acl');
    expect(existsSync(join(stage, 'data'))).toBe(false);
    const cast = await exportTable('acl aclitem', `(1, default, 'postgres=r/postgres')`, {
      casts: { acl: 'text' },
    });
    expect(cast.result.code).toBe(0);
    expect(await cast.loaded('acl')).toEqual([{ acl: 'postgres=r/postgres' }]);
  });
});
