/**
 * Golden test of type fidelity: a table holding the edge values of every mapped PostgreSQL type is
 * exported by a real run, and the staged Parquet file is read back by DuckDB and by hyparquet (an
 * independent reader). Each value is compared with what PostgreSQL itself returns for it.
 */
import { randomBytes } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { duckQuery } from './helpers/duck.js';
import { freshDatabase, runCli, sql, tempDir, writeConfig } from './helpers/env.js';

const tmp = tempDir('ns-golden-');
let dbUrl: string;
let parquetPath: string;
let warehousePath: string;
let pgRows: Record<string, unknown>[];
let duckRows: Record<string, unknown>[];
let duckTableRows: Record<string, unknown>[];
let hypRows: Record<string, unknown>[];

const LONG_TEXT = `${'long text ✓ '.repeat(90_000)}end`; // ~1.1 MB
const BIG_BYTEA = randomBytes(2 * 1024 * 1024);

const SETUP = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS integer CHECK (VALUE > 0);
CREATE TYPE pair AS (a int, b text);
CREATE TABLE golden (
  id int PRIMARY KEY,
  updated_at timestamptz NOT NULL DEFAULT '2024-01-01 00:00:00+00',
  c_int2 smallint, c_int4 integer, c_int8 bigint, c_oid oid,
  c_float4 real, c_float8 double precision,
  c_num9 numeric(9,2), c_num12 numeric(12,4), c_num18 numeric(18,6), c_num38 numeric(38,10),
  c_numfree numeric, c_numspecial numeric, c_numwide numeric(50,5), c_money money,
  c_bool boolean, c_text text, c_varchar varchar(20), c_char char(5), c_qchar "char", c_name name,
  c_bytea bytea, c_uuid uuid,
  c_date date, c_time time, c_timetz timetz, c_ts timestamp, c_tstz timestamptz, c_interval interval,
  c_json json, c_jsonb jsonb,
  c_int_arr int[], c_text_arr text[], c_ts_arr timestamptz[], c_num_arr numeric(10,2)[], c_uuid_arr uuid[],
  c_enum mood, c_domain posint, c_inet inet, c_cidr cidr, c_mac macaddr, c_bit bit varying(8), c_pair pair
);`;

const ROWS = `
INSERT INTO golden (id, c_int2, c_int4, c_int8, c_oid, c_float4, c_float8, c_num9, c_num12, c_num18, c_num38,
  c_numfree, c_numspecial, c_numwide, c_money, c_bool, c_text, c_varchar, c_char, c_qchar, c_name, c_bytea, c_uuid,
  c_date, c_time, c_timetz, c_ts, c_tstz, c_interval, c_json, c_jsonb,
  c_int_arr, c_text_arr, c_ts_arr, c_num_arr, c_uuid_arr, c_enum, c_domain, c_inet, c_cidr, c_mac, c_bit, c_pair)
VALUES
 (1, -32768, -2147483648, -9223372036854775808, 0, '-3.4028235e38', '-1.7976931348623157e308',
  -9999999.99, -99999999.9999, -999999999999.999999, -9999999999999999999999999999.9999999999,
  '-123.456789012345678901234567890', 'NaN', '-12345678901234567890123456789012345678901234.56789', '-92233720368547758.08',
  false, '', '', '', 'a', 'n', '\\x', '00000000-0000-0000-0000-000000000000',
  '4713-01-01 BC', '00:00:00', '00:00:00+14', '4713-01-01 00:00:00 BC', '4713-01-01 00:00:00+00 BC',
  '-178000000 years -3 days -04:05:06.000001', '{"b": null, "a": [1, 2.50, "x"], "a": 2}', '{"b": null, "a": [1, 2.50, "x"]}',
  '{}', '{}', '{}', '{}', '{}', 'sad', 1, '0.0.0.0', '0.0.0.0/0', '00:00:00:00:00:00', '', ROW(NULL, NULL)),
 (2, 32767, 2147483647, 9223372036854775807, 4294967295, '3.4028235e38', '1.7976931348623157e308',
  9999999.99, 99999999.9999, 999999999999.999999, 9999999999999999999999999999.9999999999,
  '98765.43210', 'Infinity', '12345678901234567890123456789012345678901234.56789', '92233720368547758.07',
  true, 'plain ascii', 'exactly twenty chars', 'ab', 'z', 'pg_catalog', '\\x00ff10', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '294246-12-31', '23:59:59.999999', '23:59:59.999999-12:59', '294246-12-31 23:59:59.999999', '294246-12-31 23:59:59.999999+00',
  '178000000 years 11 mons 30 days 23:59:59.999999', '[]', '[]',
  '{1,NULL,3}', '{"a","",NULL,"😀","with,comma","q\\"uote"}', '{"2024-02-29 12:00:00.000001+00",NULL}',
  '{1.50,NULL,-99999999.99}', '{00000000-0000-0000-0000-000000000001}',
  'happy', 2147483647, '2001:db8::1/64', '10.0.0.0/8', '08:00:2b:01:02:03', '10101', ROW(7, 'sev"en')),
 (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
  NULL, NULL, NULL, NULL, NULL),
 (4, 0, 0, 0, 1, 'NaN', 'NaN', 0, 0.0001, 0.000001, 0.0000000001,
  '0', '-Infinity', '0.00001', '0', true, $1, 'Unicode 𝄞😀 ünï', 'x', ' ', 'x', $2, '6ba7b810-9dad-11d1-80b4-00c04fd430c8',
  '1969-12-31', '24:00:00', '12:34:56.789+05:30', '1969-12-31 23:59:59.999999', '1969-12-31 23:59:59.999999+00',
  'P0D', '"a string"', '"a string"', '{-1}', '{NULL}', '{NULL}', '{NULL}', '{NULL}', 'ok', 42, '192.168.0.1/24',
  '192.168.0.0/16', 'ff:ff:ff:ff:ff:ff', '1', ROW(1, '')),
 (5, 1, 1, 1, 2, 'Infinity', 'Infinity', 0.01, 1, 1, 1,
  '1e-20', '0.5', '1', '0.01', false, E'tab\\tnewline\\nquote''backslash\\\\', 'v', 'abcde', E'\\\\', 'x',
  '\\x0001020304', '123e4567-e89b-12d3-a456-426614174000',
  '1970-01-01', '12:00:00', '00:00:00-00', '2000-01-01 00:00:00', '2000-01-01 00:00:00+00', '1 mon',
  '{"nested": {"deep": [true, false, null]}}', '{"nested": {"deep": [true, false, null]}}',
  '{2147483647,-2147483648}', '{"x"}', '{"infinity"}', '{0.01}', '{}', 'happy', 3, '::1', '::/0', '01:02:03:04:05:06', '0', ROW(-1, 'x')),
 (6, -1, -1, -1, 3, '-Infinity', '-Infinity', -0.01, -1, -1, -1,
  '-0.000000000000000000001', '1', '-1', '-0.01', true, 'x', 'x', 'x', 'x', 'x', '\\xff', '00000000-0000-0000-0000-0000000000ff',
  'infinity', '00:00:00.000001', '00:00:00.000001+00', 'infinity', 'infinity', '-1 mon 1 day', 'null', 'null',
  '{0}', '{"😀"}', '{"-infinity"}', '{1}', '{}', 'ok', 4, '1.2.3.4', '1.2.3.4/32', '00:00:00:00:00:01', '11111111', ROW(0, NULL)),
 (7, 2, 2, 2, 4, '-0', '-0', 0, 0, 0, 0,
  '0.0', '2', '0', '0', false, 'x', 'x', 'x', 'x', 'x', '\\x00', '00000000-0000-0000-0000-000000000002',
  '-infinity', '23:59:59', '23:59:59+00', '-infinity', '-infinity', '00:00:00.000001', '1.5e300', '1.5e300',
  NULL, NULL, NULL, NULL, NULL, 'sad', 5, '255.255.255.255', '255.255.255.255/32', 'ab:cd:ef:ab:cd:ef', NULL, NULL),
 (8, 3, 3, 3, 5, '1.17549435e-38', '5e-324', 0.01, 0.0001, 0.000001, 0.0000000001,
  '0.1', '3', '0.00001', '0.01', true, $3, 'x', 'x', 'x', 'x', $4, '00000000-0000-0000-0000-000000000003',
  '0001-01-01', '01:02:03', '01:02:03+01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00', '-00:00:00.000001', '0', '0',
  NULL, NULL, NULL, NULL, NULL, 'sad', 6, '0.0.0.1', '0.0.0.1/32', 'aa:aa:aa:aa:aa:aa', NULL, NULL),
 (9, 4, 4, 4, 6, '1e-45', '0.1', 0.01, 0.0001, 0.000001, 0.0000000001,
  '-0.1', '4', '0.00001', '0.01', true, 'x', 'x', 'x', 'x', 'x', '\\x00', '00000000-0000-0000-0000-000000000004',
  '9999-12-31', '01:02:03', '01:02:03+01', '9999-12-31 23:59:59.999999', '9999-12-31 23:59:59.999999+00', '1 day', '1', '1',
  NULL, NULL, NULL, NULL, NULL, 'sad', 7, '0.0.0.1', '0.0.0.1/32', 'aa:aa:aa:aa:aa:aa', NULL, NULL)`;

/** How a column's values are compared: PostgreSQL and DuckDB expressions with the same exact text form. */
interface Check {
  pg: string;
  duck: string;
  /** Normalizes what hyparquet returns to the same form. */
  hyp: (v: unknown) => unknown;
}

const str = (v: unknown) => (v === null || v === undefined ? null : String(v));
const hex = (v: unknown) =>
  v === null || v === undefined ? null : Buffer.from(v as Uint8Array).toString('hex');
const micros = (col: string) => `(extract(epoch from ${col}) * 1000000)::numeric(30,0)::text`;
/** Clamped infinity, as microseconds since 1970 and days since 1970. */
const MAX_US = '253402300799999999';
const MIN_US = '-62135596800000000';
const tsPg = (col: string) =>
  `CASE WHEN ${col} = 'infinity' THEN '${MAX_US}' WHEN ${col} = '-infinity' THEN '${MIN_US}' ELSE ${micros(col)} END`;
const datePg = (col: string) =>
  `CASE WHEN ${col} = 'infinity' THEN '2932896' WHEN ${col} = '-infinity' THEN '-719162' ELSE (${col} - date '1970-01-01')::text END`;
/** hyparquet's own decimal formula, applied to PostgreSQL's exact text. */
const decimalLikeHyparquet = (text: string | null, scale: number) => {
  if (text === null) return null;
  const negative = text.startsWith('-');
  const [intPart, frac = ''] = text.replace('-', '').split('.');
  const unscaled = BigInt(intPart + frac.padEnd(scale, '0').slice(0, scale)) * (negative ? -1n : 1n);
  return Number(unscaled) * 10 ** -scale;
};

const CHECKS: Record<string, Check> = {
  c_int2: { pg: 'c_int2::text', duck: 'c_int2::varchar', hyp: str },
  c_int4: { pg: 'c_int4::text', duck: 'c_int4::varchar', hyp: str },
  c_int8: { pg: 'c_int8::text', duck: 'c_int8::varchar', hyp: str },
  c_oid: { pg: 'c_oid::text', duck: 'c_oid::varchar', hyp: str },
  // float4/float8: the bit pattern, so NaN, -0 and subnormals are compared exactly.
  c_float4: { pg: "encode(float4send(c_float4), 'hex')", duck: 'c_float4::varchar', hyp: (v) => v },
  c_float8: { pg: "encode(float8send(c_float8), 'hex')", duck: 'c_float8::varchar', hyp: (v) => v },
  c_num9: { pg: 'c_num9::text', duck: 'c_num9::varchar', hyp: (v) => v },
  c_num12: { pg: 'c_num12::text', duck: 'c_num12::varchar', hyp: (v) => v },
  c_num18: { pg: 'c_num18::text', duck: 'c_num18::varchar', hyp: (v) => v },
  c_num38: { pg: 'c_num38::text', duck: 'c_num38::varchar', hyp: (v) => v },
  c_numfree: { pg: 'c_numfree::text', duck: 'c_numfree::varchar', hyp: (v) => v },
  c_numspecial: { pg: 'c_numspecial::text', duck: 'c_numspecial', hyp: str },
  c_numwide: { pg: 'c_numwide::text', duck: 'c_numwide', hyp: str },
  c_money: { pg: 'c_money::numeric::text', duck: 'c_money::varchar', hyp: (v) => v },
  c_bool: { pg: 'c_bool::text', duck: 'c_bool::varchar', hyp: str },
  c_text: { pg: 'c_text', duck: 'c_text', hyp: str },
  c_varchar: { pg: 'c_varchar', duck: 'c_varchar', hyp: str },
  c_char: { pg: 'rpad(c_char::text, 5)', duck: 'c_char', hyp: str },
  c_qchar: { pg: 'c_qchar::text', duck: 'c_qchar', hyp: str },
  c_name: { pg: 'c_name::text', duck: 'c_name', hyp: str },
  c_bytea: { pg: "encode(c_bytea, 'hex')", duck: 'lower(hex(c_bytea))', hyp: hex },
  c_uuid: { pg: 'c_uuid::text', duck: 'c_uuid::varchar', hyp: str },
  c_date: { pg: datePg('c_date'), duck: "(c_date - DATE '1970-01-01')::varchar", hyp: str },
  c_time: {
    pg: micros('c_time'),
    duck: "datediff('microsecond', TIME '00:00:00', c_time)::varchar",
    hyp: str,
  },
  c_timetz: { pg: 'c_timetz::text', duck: 'c_timetz', hyp: str },
  c_ts: { pg: tsPg('c_ts'), duck: 'epoch_us(c_ts)::varchar', hyp: str },
  c_tstz: { pg: tsPg('c_tstz'), duck: 'epoch_us(c_tstz)::varchar', hyp: str },
  c_interval: { pg: 'c_interval::text', duck: 'c_interval', hyp: str },
  c_json: { pg: 'c_json::text', duck: 'c_json::varchar', hyp: str },
  c_jsonb: { pg: 'c_jsonb::text', duck: 'c_jsonb::varchar', hyp: str },
  c_int_arr: { pg: 'to_json(c_int_arr)::text', duck: 'to_json(c_int_arr)::varchar', hyp: (v) => v },
  c_text_arr: { pg: 'to_json(c_text_arr)::text', duck: 'to_json(c_text_arr)::varchar', hyp: (v) => v },
  c_ts_arr: {
    pg: `CASE WHEN c_ts_arr IS NULL THEN NULL ELSE coalesce((SELECT json_agg(CASE WHEN e IS NULL THEN NULL ELSE ${tsPg('e')} END ORDER BY o)
         FROM unnest(c_ts_arr) WITH ORDINALITY u(e, o)), '[]')::text END`,
    duck: 'to_json(list_transform(c_ts_arr, x -> epoch_us(x)::varchar))::varchar',
    hyp: (v) => v,
  },
  c_num_arr: { pg: 'to_json(c_num_arr::text[])::text', duck: 'to_json(c_num_arr)::varchar', hyp: (v) => v },
  c_uuid_arr: { pg: 'to_json(c_uuid_arr)::text', duck: 'to_json(c_uuid_arr)::varchar', hyp: (v) => v },
  c_enum: { pg: 'c_enum::text', duck: 'c_enum', hyp: str },
  c_domain: { pg: 'c_domain::text', duck: 'c_domain::varchar', hyp: str },
  c_inet: { pg: 'c_inet::text', duck: 'c_inet', hyp: str },
  c_cidr: { pg: 'c_cidr::text', duck: 'c_cidr', hyp: str },
  c_mac: { pg: 'c_mac::text', duck: 'c_mac', hyp: str },
  c_bit: { pg: 'c_bit::text', duck: 'c_bit', hyp: str },
  c_pair: { pg: 'to_jsonb(c_pair)::text', duck: 'c_pair::varchar', hyp: str },
};

beforeAll(async () => {
  dbUrl = await freshDatabase();
  await sql(dbUrl, SETUP);
  await sql(dbUrl, ROWS, [LONG_TEXT, BIG_BYTEA, LONG_TEXT.slice(0, 70_000), Buffer.alloc(0)]);
  const dir = join(tmp.dir, 'job');
  warehousePath = join(dir, 'warehouse.duckdb');
  const config = writeConfig(tmp.dir, {
    job: 'golden',
    source: { url: dbUrl, table: 'golden', cursor: 'updated_at', key: ['id'] },
    stage: { url: pathToFileURL(join(dir, 'stage')).href },
    warehouse: { table: 'golden', duckdb: { path: warehousePath } },
    temp_dir: join(dir, 'tmp'),
    parquet: { page_kb: 64 },
    log: { format: 'json' },
  });
  const r = await runCli(['run', '--config', config]);
  if (r.code !== 0) throw new Error(`run failed: ${r.stderr}\n${r.stdout}`);
  const dataRoot = join(dir, 'stage', 'golden', 'data');
  const day = readdirSync(dataRoot)[0];
  const run = readdirSync(join(dataRoot, day))[0];
  parquetPath = join(dataRoot, day, run, 'part-00000.parquet');

  const order = 'ORDER BY id';
  pgRows = await sql(
    dbUrl,
    `SELECT id, ${Object.entries(CHECKS)
      .map(([c, k]) => `${k.pg} AS ${c}`)
      .join(', ')} FROM golden ${order}`,
    undefined,
    ['SET extra_float_digits = 3', "SET IntervalStyle = 'iso_8601'", "SET TimeZone = 'UTC'"],
  );
  const duckSelect = (from: string) =>
    `SELECT id, ${Object.entries(CHECKS)
      .map(([c, k]) => `${k.duck} AS ${c}`)
      .join(', ')} FROM ${from} ${order}`;
  duckRows = await duckQuery(':memory:', duckSelect(`read_parquet('${parquetPath}')`));
  duckTableRows = await duckQuery(warehousePath, duckSelect('golden'));
  const file = await asyncBufferFromFile(parquetPath);
  hypRows = (await parquetReadObjects({
    file,
    compressors,
    utf8: false,
    parsers: {
      timestampFromMicroseconds: (v: bigint) => v,
      dateFromDays: (v: number) => v,
      jsonFromBytes: (b: Uint8Array) => Buffer.from(b).toString('utf8'),
    },
  })) as Record<string, unknown>[];
  hypRows.sort((a, b) => Number(a.id) - Number(b.id));
});
afterAll(() => tmp.cleanup());

/** PostgreSQL's float4/float8send bytes as the number a reader gives back. */
function floatFromHex(hexText: string | null, width: 4 | 8): number | null {
  if (hexText === null) return null;
  const b = Buffer.from(hexText, 'hex');
  return width === 4 ? b.readFloatBE(0) : b.readDoubleBE(0);
}

describe('type fidelity: PostgreSQL -> Parquet -> DuckDB and hyparquet', () => {
  it('exports every row', () => {
    expect(pgRows.map((r) => r.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(duckRows).toHaveLength(9);
    expect(hypRows).toHaveLength(9);
  });

  it('writes the documented Parquet types', async () => {
    const schema = await duckQuery(
      ':memory:',
      `SELECT name, type, logical_type::varchar AS logical, converted_type FROM parquet_schema('${parquetPath}')`,
    );
    const byName = Object.fromEntries(schema.map((r) => [r.name, r]));
    expect(byName.c_int8).toMatchObject({ type: 'INT64' });
    expect(byName.c_num9).toMatchObject({ type: 'INT32', converted_type: 'DECIMAL' });
    expect(byName.c_num18).toMatchObject({ type: 'INT64', converted_type: 'DECIMAL' });
    expect(byName.c_num38).toMatchObject({ type: 'FIXED_LEN_BYTE_ARRAY', converted_type: 'DECIMAL' });
    expect(byName.c_numfree).toMatchObject({ type: 'FIXED_LEN_BYTE_ARRAY', converted_type: 'DECIMAL' });
    expect(byName.c_numspecial).toMatchObject({ type: 'BYTE_ARRAY', converted_type: 'UTF8' });
    expect(byName.c_uuid.logical).toContain('UUID');
    expect(byName.c_json).toMatchObject({ converted_type: 'JSON' });
    expect(byName.c_jsonb).toMatchObject({ converted_type: 'JSON' });
    expect(byName.c_tstz.logical).toMatch(/isAdjustedToUTC=(1|true)/i);
    expect(byName.c_ts.logical).toMatch(/isAdjustedToUTC=(0|false)/i);
    expect(byName.c_time.logical).toMatch(/TimeType.*isAdjustedToUTC=(0|false)/i);
    expect(byName.c_date).toMatchObject({ converted_type: 'DATE' });
    const duckTypes = await duckQuery(warehousePath, 'DESCRIBE golden');
    const t = Object.fromEntries(duckTypes.map((r) => [r.column_name, r.column_type]));
    expect(t).toMatchObject({
      c_num38: 'DECIMAL(38,10)',
      c_numfree: 'DECIMAL(38,27)',
      c_money: 'DECIMAL(38,2)',
      c_tstz: 'TIMESTAMP WITH TIME ZONE',
      c_ts: 'TIMESTAMP',
      c_json: 'JSON',
      c_uuid: 'UUID',
      c_int_arr: 'INTEGER[]',
    });
  });

  for (const column of Object.keys(CHECKS)) {
    it(`keeps ${column} exact`, () => {
      const check = CHECKS[column];
      for (let i = 0; i < pgRows.length; i++) {
        const pgValue = pgRows[i][column] as string | null;
        const where = `${column}, row id ${pgRows[i].id}`;
        if (column === 'c_float4' || column === 'c_float8') {
          const expected = floatFromHex(pgValue, column === 'c_float4' ? 4 : 8);
          expect(
            Object.is(hypRows[i][column] ?? null, expected),
            `${where}: hyparquet ${hypRows[i][column]} vs ${expected}`,
          ).toBe(true);
          const duck = duckRows[i][column] as string | null;
          const parsed =
            duck === null ? null : Number(duck === 'inf' ? 'Infinity' : duck === '-inf' ? '-Infinity' : duck);
          // DuckDB prints a FLOAT in its shortest float32 form: round that back to float32.
          const duckNumber = parsed === null || column === 'c_float8' ? parsed : Math.fround(parsed);
          expect(
            Object.is(duckNumber, expected) || (Number.isNaN(duckNumber) && Number.isNaN(expected)),
            `${where}: DuckDB ${duck}`,
          ).toBe(true);
          continue;
        }
        if (
          (column.startsWith('c_num') && !['c_numspecial', 'c_numwide', 'c_num_arr'].includes(column)) ||
          column === 'c_money'
        ) {
          expect(duckRows[i][column], `${where}: DuckDB`).toBe(
            pgValue === null ? null : normalizeDecimal(pgValue, duckRows[i][column]),
          );
          expect(duckTableRows[i][column], `${where}: DuckDB table`).toBe(duckRows[i][column]);
          const scale = Number(String(duckRows[i][column] ?? '').split('.')[1]?.length ?? 0);
          const hyp = hypRows[i][column];
          expect(hyp ?? null, `${where}: hyparquet`).toBe(decimalLikeHyparquet(pgValue, scale));
          continue;
        }
        if (column.endsWith('_arr')) {
          const expected = pgValue === null ? null : (JSON.parse(pgValue) as unknown[]);
          const duck = duckRows[i][column] === null ? null : JSON.parse(String(duckRows[i][column]));
          const hyp = normalizeHypList(column, hypRows[i][column]);
          if (column === 'c_num_arr') {
            const texts = expected as (string | null)[] | null;
            expect(duck, `${where}: DuckDB`).toEqual(
              texts?.map((t) => (t === null ? null : Number(t))) ?? null,
            );
            expect(hyp, `${where}: hyparquet`).toEqual(texts?.map((t) => decimalLikeHyparquet(t, 2)) ?? null);
          } else {
            expect(duck, `${where}: DuckDB`).toEqual(expected);
            expect(hyp, `${where}: hyparquet`).toEqual(expected);
          }
          continue;
        }
        expect(duckRows[i][column] ?? null, `${where}: DuckDB`).toBe(pgValue);
        expect(duckTableRows[i][column] ?? null, `${where}: DuckDB table`).toBe(pgValue);
        expect(check.hyp(hypRows[i][column]) ?? null, `${where}: hyparquet`).toBe(pgValue);
      }
    });
  }
});

/** PostgreSQL prints numeric with its display scale; DuckDB with the column's scale. */
function normalizeDecimal(pgText: string, duckText: unknown): string {
  const scale = String(duckText ?? '').split('.')[1]?.length ?? 0;
  const negative = pgText.startsWith('-');
  const [i, f = ''] = pgText.replace('-', '').split('.');
  const frac = f.padEnd(scale, '0').slice(0, scale);
  const intPart = i.replace(/^0+(?=\d)/, '');
  const zero = /^0*$/.test(intPart + frac);
  return `${negative && !zero ? '-' : ''}${intPart}${scale ? `.${frac}` : ''}`;
}

function normalizeHypList(column: string, value: unknown): unknown {
  if (value === undefined || value === null) return null;
  const list = value as unknown[];
  if (column === 'c_ts_arr') return list.map((v) => (v === null || v === undefined ? null : String(v)));
  return list.map((v) => (v === undefined ? null : v));
}
