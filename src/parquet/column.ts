/**
 * Column writers: values are appended one at a time in PLAIN encoding (or as dictionary indices),
 * a data page is cut and compressed whenever it reaches the page size, and the compressed pages
 * of the current row group are kept until the writer lays the row group out in the file.
 * Memory per column is one page of values, one dictionary, and the compressed row group.
 */
import { ByteSink } from './bytes.js';
import type { CompressFn } from './compress.js';
import { bitWidth, writeHybrid, writePlainBooleans } from './encoding.js';
import { type ColumnSpec, levelsOf, Physical } from './schema.js';
import { CompactWriter } from './thrift.js';

/** Parquet Encoding ids. */
export const Encoding = { PLAIN: 0, RLE: 3, RLE_DICTIONARY: 8 } as const;
const PageType = { DATA_PAGE: 0, DICTIONARY_PAGE: 2 } as const;

/** Levels per page before it is cut, whatever its byte size. */
const MAX_PAGE_LEVELS = 64 * 1024;

export interface ColumnOptions {
  /** Uncompressed bytes of values per data page. */
  pageBytes: number;
  /** Whether to try dictionary encoding (byte arrays only). */
  dictionary: boolean;
  /** Largest dictionary before the column falls back to PLAIN for the rest of the row group. */
  dictionaryBytes: number;
  compress: CompressFn;
  /** CompressionCodec id written in the footer. */
  codec: number;
}

/** A column chunk ready to be laid out in the file. */
export interface ColumnChunk {
  /** Page headers and page bodies, in file order. */
  readonly buffers: Uint8Array[];
  /** Sum of the buffer lengths. */
  readonly compressedBytes: number;
  readonly uncompressedBytes: number;
  /** Writes ColumnChunk.meta_data given where the chunk starts in the file. */
  readonly writeMeta: (w: CompactWriter, fileOffset: number) => void;
}

export abstract class ColumnWriter {
  readonly spec: ColumnSpec;
  protected readonly options: ColumnOptions;
  protected readonly maxDef: number;
  protected readonly maxRep: number;
  /** Whether each append ends a row for this column (false for lists, ended by endList). */
  protected readonly flat: boolean;

  protected defs = new Uint8Array(MAX_PAGE_LEVELS);
  protected reps: Uint8Array | undefined;
  protected levels = 0;
  protected nextRep = 0;
  /** PLAIN-encoded values of the current page. */
  protected readonly vals = new ByteSink(64 * 1024);

  // Row group state.
  private pages: Uint8Array[] = [];
  private chunkCompressed = 0;
  private chunkUncompressed = 0;
  private chunkLevels = 0;
  protected nullCount = 0;
  private usedEncodings = new Set<number>();

  constructor(spec: ColumnSpec, options: ColumnOptions) {
    this.spec = spec;
    this.options = options;
    const { maxDef, maxRep } = levelsOf(spec);
    this.maxDef = maxDef;
    this.maxRep = maxRep;
    this.flat = maxRep === 0;
    if (maxRep > 0) this.reps = new Uint8Array(MAX_PAGE_LEVELS);
  }

  /** A NULL value (a NULL column, or a NULL list element inside startList/endList). */
  appendNull(): void {
    if (this.flat) {
      this.level(0);
      this.nullCount++;
      this.rowDone();
    } else {
      this.level(this.maxDef - 1);
      this.nullCount++;
    }
  }

  /** A NULL list. */
  appendNullList(): void {
    this.nextRep = 0;
    this.level(0);
    this.nullCount++;
    this.rowDone();
  }

  /** An empty list. */
  appendEmptyList(): void {
    this.nextRep = 0;
    this.level(1);
    this.rowDone();
  }

  /** Starts a non-empty list: elements follow, then endList(). */
  startList(): void {
    this.nextRep = 0;
  }

  endList(): void {
    this.rowDone();
  }

  /** Records the levels of one value slot. */
  protected level(def: number): void {
    if (this.levels === this.defs.length) this.growLevels();
    this.defs[this.levels] = def;
    if (this.reps) {
      this.reps[this.levels] = this.nextRep;
      this.nextRep = 1;
    }
    this.levels++;
  }

  private growLevels(): void {
    const grow = (a: Uint8Array) => {
      const b = new Uint8Array(a.length * 2);
      b.set(a);
      return b;
    };
    this.defs = grow(this.defs);
    if (this.reps) this.reps = grow(this.reps);
    this.growIndices(this.defs.length);
  }

  /** Hook for writers that keep per-level arrays (dictionary indices). */
  protected growIndices(_capacity: number): void {}

  /** Cuts a page once the current one is full; called where a row ends. */
  protected rowDone(): void {
    if (this.pageBytes() >= this.options.pageBytes || this.levels >= MAX_PAGE_LEVELS) this.flushPage();
  }

  /** Uncompressed bytes of values in the current page. */
  protected pageBytes(): number {
    return this.vals.length;
  }

  /** Bytes this column holds for the current row group, uncompressed. */
  bufferedBytes(): number {
    return this.chunkUncompressed + this.pageBytes() + this.levels;
  }

  /** Writes the values of the current page into `out` and returns the encoding used. */
  protected abstract writeValues(out: ByteSink): number;

  /** Statistics min/max in PLAIN encoding, when the column tracks them. */
  protected minMax(): [Uint8Array, Uint8Array] | undefined {
    return undefined;
  }

  /** Resets per-row-group statistics. */
  protected resetStats(): void {}

  /** The dictionary page body and entry count, when the chunk used one. */
  protected takeDictionary(): { body: Buffer; count: number } | undefined {
    return undefined;
  }

  private readonly page = new ByteSink(256 * 1024);

  /** Cuts the current page: levels and values, compressed, appended to the row group. */
  flushPage(): void {
    if (this.levels === 0) return;
    const page = this.page;
    page.reset();
    if (this.reps) this.writeLevels(page, this.reps, 1);
    this.writeLevels(page, this.defs, this.maxDef);
    const encoding = this.writeValues(page);
    this.usedEncodings.add(encoding);
    const body = page.view();
    const compressed = this.compress(body);
    const header = new CompactWriter(new ByteSink(64))
      .begin()
      .i32(1, PageType.DATA_PAGE)
      .i32(2, body.length)
      .i32(3, compressed.length)
      .struct(5)
      .i32(1, this.levels)
      .i32(2, encoding)
      .i32(3, Encoding.RLE)
      .i32(4, Encoding.RLE)
      .end()
      .finish();
    this.pages.push(header, compressed);
    this.chunkCompressed += header.length + compressed.length;
    this.chunkUncompressed += header.length + body.length;
    this.chunkLevels += this.levels;
    this.levels = 0;
    this.vals.shrink(64 * 1024);
    page.shrink(256 * 1024);
  }

  private compress(body: Buffer): Uint8Array {
    const out = this.options.compress(body);
    // The 'none' codec hands the view back; the page buffer is reused, so keep a copy.
    return out === body ? Buffer.from(body) : out;
  }

  private writeLevels(page: ByteSink, levels: Uint8Array, max: number): void {
    const at = page.length;
    page.uint32(0);
    writeHybrid(page, levels, this.levels, bitWidth(max));
    page.buf.writeUInt32LE(page.length - at - 4, at);
  }

  /** Ends the row group for this column and returns its chunk. */
  finishChunk(): ColumnChunk {
    this.flushPage();
    const buffers: Uint8Array[] = [];
    let compressedBytes = this.chunkCompressed;
    let uncompressedBytes = this.chunkUncompressed;
    const dictionary = this.takeDictionary();
    let dictionaryBytes = 0;
    if (dictionary) {
      const compressed = this.compress(dictionary.body);
      const header = new CompactWriter(new ByteSink(64))
        .begin()
        .i32(1, PageType.DICTIONARY_PAGE)
        .i32(2, dictionary.body.length)
        .i32(3, compressed.length)
        .struct(7)
        .i32(1, dictionary.count)
        .i32(2, Encoding.PLAIN)
        .end()
        .finish();
      buffers.push(header, compressed);
      dictionaryBytes = header.length + compressed.length;
      compressedBytes += dictionaryBytes;
      uncompressedBytes += header.length + dictionary.body.length;
      this.usedEncodings.add(Encoding.PLAIN);
    }
    buffers.push(...this.pages);
    const encodings = [...this.usedEncodings, Encoding.RLE].filter((e, i, a) => a.indexOf(e) === i);
    const levelsTotal = this.chunkLevels;
    const nullCount = this.nullCount;
    const stats = this.minMax();
    const spec = this.spec;
    const codec = this.options.codec;
    const writeMeta = (w: CompactWriter, fileOffset: number) => {
      w.i32(1, spec.physical)
        .i32List(2, encodings)
        .stringList(3, spec.list ? [spec.name, 'list', 'element'] : [spec.name])
        .i32(4, codec)
        .i64(5, levelsTotal)
        .i64(6, uncompressedBytes)
        .i64(7, compressedBytes)
        .i64(9, fileOffset + dictionaryBytes);
      if (dictionary) w.i64(11, fileOffset);
      w.struct(12).i64(3, nullCount);
      if (stats) w.binary(5, stats[1]).binary(6, stats[0]);
      w.end();
    };
    this.pages = [];
    this.chunkCompressed = 0;
    this.chunkUncompressed = 0;
    this.chunkLevels = 0;
    this.nullCount = 0;
    this.usedEncodings = new Set();
    this.resetStats();
    return { buffers, compressedBytes, uncompressedBytes, writeMeta };
  }
}

/** INT32 values: int, smallint, date, decimal(p<=9). Tracks min/max. */
export class Int32Column extends ColumnWriter {
  private min = 0;
  private max = 0;
  private seen = false;

  append(v: number): void {
    const s = this.vals;
    if (s.length + 4 > s.buf.length) s.ensure(4);
    s.buf.writeInt32LE(v, s.length);
    s.length += 4;
    if (!this.seen) {
      this.min = this.max = v;
      this.seen = true;
    } else if (v < this.min) this.min = v;
    else if (v > this.max) this.max = v;
    this.level(this.maxDef);
    if (this.flat) this.rowDone();
  }

  protected writeValues(out: ByteSink): number {
    out.bytes(this.vals.buf, 0, this.vals.length);
    return Encoding.PLAIN;
  }

  protected override minMax(): [Uint8Array, Uint8Array] | undefined {
    if (!this.seen) return undefined;
    const b = Buffer.allocUnsafe(8);
    b.writeInt32LE(this.min, 0);
    b.writeInt32LE(this.max, 4);
    return [b.subarray(0, 4), b.subarray(4, 8)];
  }

  protected override resetStats(): void {
    this.seen = false;
  }
}

/** INT64 values given as signed high and unsigned low 32-bit halves. Tracks min/max. */
export class Int64Column extends ColumnWriter {
  private minHi = 0;
  private minLo = 0;
  private maxHi = 0;
  private maxLo = 0;
  private seen = false;

  append(hi: number, lo: number): void {
    const s = this.vals;
    if (s.length + 8 > s.buf.length) s.ensure(8);
    const b = s.buf;
    const o = s.length;
    b[o] = lo;
    b[o + 1] = lo >>> 8;
    b[o + 2] = lo >>> 16;
    b[o + 3] = lo >>> 24;
    b[o + 4] = hi;
    b[o + 5] = hi >>> 8;
    b[o + 6] = hi >>> 16;
    b[o + 7] = hi >>> 24;
    s.length = o + 8;
    if (!this.seen) {
      this.minHi = this.maxHi = hi;
      this.minLo = this.maxLo = lo;
      this.seen = true;
    } else if (hi < this.minHi || (hi === this.minHi && lo < this.minLo)) {
      this.minHi = hi;
      this.minLo = lo;
    } else if (hi > this.maxHi || (hi === this.maxHi && lo > this.maxLo)) {
      this.maxHi = hi;
      this.maxLo = lo;
    }
    this.level(this.maxDef);
    if (this.flat) this.rowDone();
  }

  protected writeValues(out: ByteSink): number {
    out.bytes(this.vals.buf, 0, this.vals.length);
    return Encoding.PLAIN;
  }

  protected override minMax(): [Uint8Array, Uint8Array] | undefined {
    if (!this.seen) return undefined;
    const b = Buffer.allocUnsafe(16);
    b.writeUInt32LE(this.minLo >>> 0, 0);
    b.writeInt32LE(this.minHi | 0, 4);
    b.writeUInt32LE(this.maxLo >>> 0, 8);
    b.writeInt32LE(this.maxHi | 0, 12);
    return [b.subarray(0, 8), b.subarray(8, 16)];
  }

  protected override resetStats(): void {
    this.seen = false;
  }
}

/** FLOAT and DOUBLE, copied bit for bit from big-endian input (NaN payloads, -0 kept). */
export class FloatingColumn extends ColumnWriter {
  private readonly width = this.spec.physical === Physical.FLOAT ? 4 : 8;

  /** Appends the `width` big-endian bytes at src[off..]. */
  appendBE(src: Uint8Array, off: number): void {
    const s = this.vals;
    const w = this.width;
    if (s.length + w > s.buf.length) s.ensure(w);
    const b = s.buf;
    const o = s.length;
    for (let i = 0; i < w; i++) b[o + i] = src[off + w - 1 - i];
    s.length = o + w;
    this.level(this.maxDef);
    if (this.flat) this.rowDone();
  }

  protected writeValues(out: ByteSink): number {
    out.bytes(this.vals.buf, 0, this.vals.length);
    return Encoding.PLAIN;
  }
}

/** BOOLEAN values. */
export class BooleanColumn extends ColumnWriter {
  private bits = new Uint8Array(MAX_PAGE_LEVELS);
  private count = 0;

  append(v: boolean): void {
    if (this.count === this.bits.length) {
      const next = new Uint8Array(this.bits.length * 2);
      next.set(this.bits);
      this.bits = next;
    }
    this.bits[this.count++] = v ? 1 : 0;
    this.level(this.maxDef);
    if (this.flat) this.rowDone();
  }

  protected override pageBytes(): number {
    return this.count >> 3;
  }

  protected writeValues(out: ByteSink): number {
    writePlainBooleans(out, this.bits, this.count);
    this.count = 0;
    return Encoding.PLAIN;
  }
}

/** FIXED_LEN_BYTE_ARRAY values: uuid, decimals wider than 18 digits. */
export class FixedColumn extends ColumnWriter {
  append(src: Uint8Array, off: number): void {
    const n = this.spec.typeLength ?? 0;
    this.vals.bytes(src, off, off + n);
    this.level(this.maxDef);
    if (this.flat) this.rowDone();
  }

  protected writeValues(out: ByteSink): number {
    out.bytes(this.vals.buf, 0, this.vals.length);
    return Encoding.PLAIN;
  }
}

/**
 * BYTE_ARRAY values (text, json, bytea, enums). Dictionary-encoded while the dictionary stays
 * under its size limit; past it the rest of the row group is PLAIN, and later row groups start
 * PLAIN too, because a column that overflowed once (names, ids, free text) will again.
 */
export class ByteArrayColumn extends ColumnWriter {
  private dict: ByteDictionary | undefined;
  private indices = new Int32Array(MAX_PAGE_LEVELS);
  private indexCount = 0;
  /** Page bytes the dictionary-encoded values would take as PLAIN: decides when a page is full. */
  private plainEquivalent = 0;
  private dictionaryUseful: boolean;
  private dictInChunk: ByteDictionary | undefined;
  private abandonAtRowEnd = false;

  constructor(spec: ColumnSpec, options: ColumnOptions) {
    super(spec, options);
    this.dictionaryUseful = options.dictionary;
    if (this.dictionaryUseful) this.dict = new ByteDictionary();
  }

  append(src: Uint8Array, off: number, len: number): void {
    const dict = this.dict;
    if (dict) {
      const index = dict.add(src, off, len);
      this.indices[this.indexCount++] = index;
      this.plainEquivalent += len + 4;
      this.level(this.maxDef);
      if (dict.bytes > this.options.dictionaryBytes) {
        // A list is finished first: pages start where rows start.
        if (this.flat) this.abandonDictionary();
        else this.abandonAtRowEnd = true;
      } else if (this.flat) this.rowDone();
      return;
    }
    const s = this.vals;
    if (s.length + len + 4 > s.buf.length) s.ensure(len + 4);
    const b = s.buf;
    let o = s.length;
    b[o] = len;
    b[o + 1] = len >>> 8;
    b[o + 2] = len >>> 16;
    b[o + 3] = len >>> 24;
    o += 4;
    if (len < 48) {
      for (let i = 0; i < len; i++) b[o + i] = src[off + i];
    } else {
      b.set(src.subarray(off, off + len), o);
    }
    s.length = o + len;
    this.level(this.maxDef);
    if (this.flat) this.rowDone();
  }

  /** Appends a JS string as UTF-8. */
  appendString(text: string): void {
    const bytes = Buffer.from(text, 'utf8');
    this.append(bytes, 0, bytes.length);
  }

  override endList(): void {
    if (this.abandonAtRowEnd) this.abandonDictionary();
    else this.rowDone();
  }

  private abandonDictionary(): void {
    // Values so far stay dictionary-encoded in pages already cut; the rest of the chunk is PLAIN.
    this.abandonAtRowEnd = false;
    this.flushPage();
    this.dict = undefined;
    this.dictionaryUseful = false;
  }

  protected override growIndices(capacity: number): void {
    if (this.indices.length >= capacity) return;
    const next = new Int32Array(capacity);
    next.set(this.indices);
    this.indices = next;
  }

  protected override pageBytes(): number {
    return this.dict ? this.plainEquivalent : this.vals.length;
  }

  protected writeValues(out: ByteSink): number {
    const dict = this.dict ?? this.dictInChunk;
    if (this.indexCount > 0 && dict) {
      this.dictInChunk = dict;
      const width = Math.max(1, bitWidth(dict.count - 1));
      out.byte(width);
      writeHybrid(out, this.indices, this.indexCount, width);
      this.indexCount = 0;
      this.plainEquivalent = 0;
      return Encoding.RLE_DICTIONARY;
    }
    out.bytes(this.vals.buf, 0, this.vals.length);
    return Encoding.PLAIN;
  }

  protected override takeDictionary(): { body: Buffer; count: number } | undefined {
    const dict = this.dictInChunk;
    this.dictInChunk = undefined;
    if (this.dictionaryUseful) this.dict = new ByteDictionary();
    if (!dict) return undefined;
    return { body: dict.data.view(), count: dict.count };
  }
}

/**
 * An insertion-ordered set of byte strings with an open-addressing hash table; entries are kept
 * PLAIN-encoded (4-byte length + bytes), which is exactly the dictionary page body.
 */
export class ByteDictionary {
  readonly data = new ByteSink(64 * 1024);
  count = 0;
  private offsets = new Int32Array(1024);
  private table = new Int32Array(2048);
  private mask = 2047;

  /** Bytes of the dictionary page body. */
  get bytes(): number {
    return this.data.length;
  }

  /** Returns the index of the bytes src[off..off+len), adding them when new. */
  add(src: Uint8Array, off: number, len: number): number {
    let h = 0x811c9dc5 ^ len;
    for (let i = 0; i < len; i++) h = Math.imul(h ^ src[off + i], 0x01000193);
    h ^= h >>> 15;
    const data = this.data.buf;
    let slot = h & this.mask;
    for (;;) {
      const entry = this.table[slot];
      if (entry === 0) break;
      const at = this.offsets[entry - 1];
      if (data.readUInt32LE(at) === len) {
        let same = true;
        for (let i = 0; i < len; i++) {
          if (data[at + 4 + i] !== src[off + i]) {
            same = false;
            break;
          }
        }
        if (same) return entry - 1;
      }
      slot = (slot + 1) & this.mask;
    }
    const index = this.count++;
    if (index === this.offsets.length) {
      const next = new Int32Array(this.offsets.length * 2);
      next.set(this.offsets);
      this.offsets = next;
    }
    this.offsets[index] = this.data.length;
    this.data.uint32(len);
    this.data.bytes(src, off, off + len);
    this.table[slot] = index + 1;
    if (this.count * 2 > this.mask) this.rehash();
    return index;
  }

  private rehash(): void {
    const size = (this.mask + 1) * 2;
    this.table = new Int32Array(size);
    this.mask = size - 1;
    const data = this.data.buf;
    for (let index = 0; index < this.count; index++) {
      const at = this.offsets[index];
      const len = data.readUInt32LE(at);
      let h = 0x811c9dc5 ^ len;
      for (let i = 0; i < len; i++) h = Math.imul(h ^ data[at + 4 + i], 0x01000193);
      h ^= h >>> 15;
      let slot = h & this.mask;
      while (this.table[slot] !== 0) slot = (slot + 1) & this.mask;
      this.table[slot] = index + 1;
    }
  }
}
