import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DuckDBInstance } from '@duckdb/node-api';
import { asyncBufferFromFile, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { afterAll, describe, expect, it } from 'vitest';
import {
  type BooleanColumn,
  ByteArrayColumn,
  type ColumnOptions,
  type FloatingColumn,
  type Int32Column,
  Int64Column,
} from '../src/parquet/column.js';
import { CODEC_ID, createCompressor } from '../src/parquet/compress.js';
import { Physical } from '../src/parquet/schema.js';
import { PartWriter } from '../src/parquet/writer.js';

const dir = mkdtempSync(join(tmpdir(), 'ns-parquet-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function writeSample(rows: number, codec: 'zstd' | 'gzip' | 'none', rowGroupBytes = 1 << 20) {
  const writer = new PartWriter({
    dir,
    fileName: (i) => `sample-${codec}-${rows}-${i}.parquet`,
    columns: [
      { name: 'id', physical: Physical.INT64, logical: { kind: 'int', bits: 64, signed: true } },
      { name: 'n', physical: Physical.INT32, logical: { kind: 'int', bits: 32, signed: true } },
      { name: 'name', physical: Physical.BYTE_ARRAY, logical: { kind: 'string' } },
      { name: 'x', physical: Physical.DOUBLE, logical: { kind: 'none' } },
      { name: 'flag', physical: Physical.BOOLEAN, logical: { kind: 'none' } },
      { name: 'tags', physical: Physical.BYTE_ARRAY, logical: { kind: 'string' }, list: true },
    ],
    codec,
    level: 3,
    partBytes: 1 << 30,
    rowGroupBytes,
    pageBytes: 64 * 1024,
    dictionary: true,
    createdBy: 'nightshift test',
  });
  const [id, n, name, x, flag, tags] = writer.columns as [
    Int64Column,
    Int32Column,
    ByteArrayColumn,
    FloatingColumn,
    BooleanColumn,
    ByteArrayColumn,
  ];
  const dbl = Buffer.alloc(8);
  for (let i = 0; i < rows; i++) {
    id.append(i % 3 === 0 ? -1 : 0, i * 7);
    if (i % 5 === 0) n.appendNull();
    else n.append(i - 1000);
    name.appendString(i % 4 === 0 ? `unique-${i}` : `name-${i % 10}`);
    dbl.writeDoubleBE(i / 4);
    x.appendBE(dbl, 0);
    if (i % 7 === 0) flag.appendNull();
    else flag.append(i % 2 === 0);
    if (i % 6 === 0) tags.appendNullList();
    else if (i % 6 === 1) tags.appendEmptyList();
    else {
      tags.startList();
      tags.appendString('a');
      tags.appendNull();
      tags.appendString(`t${i % 3}`);
      tags.endList();
    }
    writer.endRow();
  }
  return writer.finish();
}

function expected(i: number) {
  const hi = i % 3 === 0 ? -1 : 0;
  return {
    id: BigInt(hi) * 2n ** 32n + BigInt(i * 7),
    n: i % 5 === 0 ? null : i - 1000,
    name: i % 4 === 0 ? `unique-${i}` : `name-${i % 10}`,
    x: i / 4,
    flag: i % 7 === 0 ? null : i % 2 === 0,
    tags: i % 6 === 0 ? null : i % 6 === 1 ? [] : ['a', null, `t${i % 3}`],
  };
}

describe('PartWriter', () => {
  for (const codec of ['zstd', 'gzip', 'none'] as const) {
    it(`writes ${codec} files DuckDB and hyparquet read back exactly`, async () => {
      const rows = 50_000;
      const parts = writeSample(rows, codec);
      expect(parts).toHaveLength(1);
      expect(parts[0].rows).toBe(rows);
      const db = await DuckDBInstance.create(':memory:');
      const con = await db.connect();
      const reader = await con.runAndReadAll(
        `select id, n, name, x, flag, tags from read_parquet('${parts[0].path}') order by x`,
      );
      const got = reader.getRowObjectsJS();
      expect(got).toHaveLength(rows);
      for (const i of [0, 1, 2, 3, 4, 5, 6, 7, 999, 12345, rows - 1]) {
        expect(got[i]).toEqual(expected(i));
      }
      const file = await asyncBufferFromFile(parts[0].path);
      const objects = await parquetReadObjects({ file, compressors });
      expect(objects).toHaveLength(rows);
      for (const i of [0, 1, 6, 7, 4321, rows - 1]) {
        const e = expected(i);
        // hyparquet reports a NULL list as undefined.
        expect({ ...objects[i], tags: objects[i].tags ?? null }).toEqual(e);
      }
    });
  }

  it('rolls row groups and keeps statistics DuckDB can use', async () => {
    const parts = writeSample(200_000, 'zstd', 256 * 1024);
    const db = await DuckDBInstance.create(':memory:');
    const con = await db.connect();
    const meta = await con.runAndReadAll(
      `select count(distinct row_group_id) as groups, min(stats_min_value) filter (where path_in_schema = 'n') as nmin
       from parquet_metadata('${parts[0].path}')`,
    );
    const [row] = meta.getRowObjectsJS();
    expect(Number(row.groups)).toBeGreaterThan(2);
    const sums = await con.runAndReadAll(
      `select count(*) c, sum(n) s, count(tags) t from read_parquet('${parts[0].path}')`,
    );
    const [s] = sums.getRowObjectsJS();
    expect(s.c).toBe(200_000n);
    let expectSum = 0n;
    let tagsNonNull = 0n;
    for (let i = 0; i < 200_000; i++) {
      if (i % 5 !== 0) expectSum += BigInt(i - 1000);
      if (i % 6 !== 0) tagsNonNull++;
    }
    expect(s.s).toBe(expectSum);
    expect(s.t).toBe(tagsNonNull);
  });
});

describe('definition levels', () => {
  /** Rows of one nullable INT64 column `v` (NULL where `isNull`), in pages of 64 KiB. */
  function writeNullable(name: string, rows: number, isNull: (i: number) => boolean): string {
    const writer = new PartWriter({
      dir,
      fileName: () => `${name}.parquet`,
      columns: [{ name: 'v', physical: Physical.INT64, logical: { kind: 'int', bits: 64, signed: true } }],
      codec: 'zstd',
      level: 3,
      partBytes: 1 << 30,
      rowGroupBytes: 1 << 20,
      pageBytes: 64 * 1024,
      dictionary: false,
      createdBy: 'nightshift test',
    });
    const [v] = writer.columns as [Int64Column];
    for (let i = 0; i < rows; i++) {
      if (isNull(i)) v.appendNull();
      else v.append(0, i);
      writer.endRow();
    }
    return writer.finish()[0].path;
  }

  async function readBack(path: string): Promise<(bigint | null)[]> {
    const file = await asyncBufferFromFile(path);
    const objects = await parquetReadObjects({ file, compressors });
    return objects.map((o) => (o.v as bigint | undefined) ?? null);
  }

  it('keeps the values before a NULL that comes in the middle of a page, and pages of under 8 values', async () => {
    // 8192 values fill a 64 KiB page: NULLs at 1000 and 1001 fall mid-page, the last page holds 3.
    const rows = 3 * 8192 + 3;
    const nulls = new Set([1000, 1001, 8192 * 2 + 5, rows - 2]);
    const got = await readBack(writeNullable('levels-mid-page', rows, (i) => nulls.has(i)));
    expect(got).toHaveLength(rows);
    const wrong = got.flatMap((v, i) => (v === (nulls.has(i) ? null : BigInt(i)) ? [] : [i]));
    expect(wrong).toEqual([]);
    for (const few of [1, 5, 7, 8]) {
      const small = await readBack(writeNullable(`levels-${few}`, few, () => false));
      expect(small).toEqual(Array.from({ length: few }, (_, i) => BigInt(i)));
    }
  });
});

describe('memory', () => {
  it('holds one row group, not the part: a part of many row groups takes no more memory than one', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const writer = new PartWriter({
      dir,
      fileName: (i) => `memory-${i}.parquet`,
      columns: [{ name: 'blob', physical: Physical.BYTE_ARRAY, logical: { kind: 'none' } }],
      codec: 'zstd',
      level: 1,
      partBytes: 1 << 30,
      rowGroupBytes: 1 << 20,
      pageBytes: 64 * 1024,
      dictionary: false,
      createdBy: 'nightshift test',
    });
    const [blob] = writer.columns as [ByteArrayColumn];
    // Incompressible values: each 1 MiB row group is about 1 MiB in the file.
    const value = randomBytes(1 << 20);
    const writeRowGroups = (n: number) => {
      for (let i = 0; i < n * 1024; i++) {
        blob.append(value, (i * 1031) % (value.length - 1024), 1000);
        writer.endRow();
      }
    };
    // Compressed pages are native buffers, freed by finalizers that run after the collection.
    const retained = async () => {
      for (let i = 0; i < 3; i++) {
        gc();
        await setImmediate();
      }
      return process.memoryUsage().arrayBuffers;
    };
    writeRowGroups(4);
    const early = await retained();
    writeRowGroups(32);
    const late = await retained();
    const [part] = writer.finish();
    expect(part.bytes).toBeGreaterThan(35 << 20);
    // 32 MiB more written into the same part; the writer keeps footer numbers, not pages.
    expect(late - early).toBeLessThan(4 << 20);
  });
});

describe('dictionary encoding', () => {
  it('keeps a dictionary where it compresses better and writes PLAIN where it does not', async () => {
    const writer = new PartWriter({
      dir,
      fileName: () => 'adaptive.parquet',
      columns: [
        { name: 'seq', physical: Physical.INT64, logical: { kind: 'int', bits: 64, signed: true } },
        { name: 'code', physical: Physical.INT64, logical: { kind: 'int', bits: 64, signed: true } },
        { name: 'label', physical: Physical.BYTE_ARRAY, logical: { kind: 'string' } },
      ],
      codec: 'zstd',
      level: 3,
      partBytes: 1 << 30,
      rowGroupBytes: 4 << 20,
      pageBytes: 64 * 1024,
      dictionary: true,
      createdBy: 'nightshift test',
    });
    const [seq, code, label] = writer.columns as [Int64Column, Int64Column, ByteArrayColumn];
    let state = 12345;
    const random = () => {
      state = (Math.imul(state, 1103515245) + 12345) >>> 0;
      return state;
    };
    const labels = ['alpha', 'beta', 'gamma', 'delta', 'epsilon', 'zeta', 'eta', 'theta'];
    // 300 arbitrary 64-bit values in random order: an index is ~9 bits, a PLAIN value 64.
    const codes = Array.from({ length: 300 }, () => [random() | 0, random()] as const);
    const rows = 300_000;
    for (let i = 0; i < rows; i++) {
      seq.append(0, i * 1000 + (random() % 1000));
      const [hi, lo] = codes[random() % 300];
      code.append(hi, lo);
      label.appendString(labels[random() % 8]);
      writer.endRow();
    }
    const [part] = writer.finish();
    const db = await DuckDBInstance.create(':memory:');
    const con = await db.connect();
    const meta = await con.runAndReadAll(
      `select path_in_schema as col, string_agg(distinct encodings, ';') as enc
       from parquet_metadata('${part.path}') group by 1 order by 1`,
    );
    const encodings = Object.fromEntries(meta.getRowObjectsJS().map((r) => [r.col, String(r.enc)]));
    expect(encodings.code).toContain('RLE_DICTIONARY');
    expect(encodings.label).toContain('RLE_DICTIONARY');
    expect(encodings.seq).not.toContain('RLE_DICTIONARY');
    const check = await con.runAndReadAll(
      `select count(*) as n, count(distinct seq) as s, sum(code) as c from read_parquet('${part.path}')`,
    );
    const [row] = check.getRowObjectsJS();
    expect(row.n).toBe(BigInt(rows));
    expect(row.s).toBe(BigInt(rows));
  });

  it('compresses a column at zstd level 1 only where its pages come out no larger than at the configured level', () => {
    const level3 = createCompressor('zstd', 3);
    const options = (adaptive: boolean): ColumnOptions => ({
      pageBytes: 1 << 20,
      dictionary: false,
      dictionaryBytes: 1 << 20,
      compress: level3,
      compressFast: adaptive ? createCompressor('zstd', 1) : undefined,
      codec: CODEC_ID.zstd,
    });
    const text = { name: 'driver', physical: Physical.BYTE_ARRAY, logical: { kind: 'string' } } as const;
    const ints = {
      name: 'fare',
      physical: Physical.INT64,
      logical: { kind: 'int', bits: 64, signed: true },
    } as const;
    const sizes = (adaptive: boolean) => {
      const driver = new ByteArrayColumn(text, options(adaptive));
      const fare = new Int64Column(ints, options(adaptive));
      const md5 = (g: number) => createHash('md5').update(String(g)).digest('hex');
      for (let g = 1; g <= 200_000; g++) {
        // Names like the bench's: md5 prefixes. zstd 1 packs them smaller than zstd 3, in half the time.
        const last = md5(g * 3).slice(0, 5);
        driver.appendString(`${md5(g).slice(0, 6)} ${last[0].toUpperCase()}${last.slice(1)}`);
        // A period of 9000 values inside 1 MiB pages: zstd 3 finds the repeats, zstd 1 far fewer.
        fare.append(0, ((g * 37) % 9000) + 350);
      }
      return { driver: driver.finishChunk().compressedBytes, fare: fare.finishChunk().compressedBytes };
    };
    const fixed = sizes(false);
    const adaptive = sizes(true);
    expect(adaptive.driver).toBeLessThan(fixed.driver);
    expect(adaptive.fare).toBe(fixed.fare);
  });
});
