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
/** Pages between two comparisons of the configured and the cheaper compression level. */
const LEVEL_TRIAL_PAGES = 32;
/** Room past the page size for the value that fills a page, and the page's level runs. */
const PAGE_SLACK = 64 * 1024 + MAX_PAGE_LEVELS / 4;

export interface ColumnOptions {
  /** Uncompressed bytes of values per data page. */
  pageBytes: number;
  /** Whether to try dictionary encoding. */
  dictionary: boolean;
  /** Largest dictionary before the column falls back to PLAIN for the rest of the row group. */
  dictionaryBytes: number;
  compress: CompressFn;
  /**
   * The same codec at a cheaper level. A column uses it while its pages come out no larger than
   * at the configured level (random text often compresses as well at zstd 1 as at 3, in half the
   * time); the two are compared on the column's first page and every LEVEL_TRIAL_PAGES after.
   */
  compressFast?: CompressFn;
  /** CompressionCodec id written in the footer. */
  codec: number;
}

/** A column chunk ready to be laid out in the file. */
export interface ColumnChunk {
  /**
   * Page headers and page bodies, in file order. They are views of the column's reused buffers:
   * lay them out before anything is appended to a column of the same writer again.
   */
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

  protected defs: Uint8Array<ArrayBuffer> = new Uint8Array(MAX_PAGE_LEVELS);
  protected reps: Uint8Array<ArrayBuffer> | undefined;
  protected levels = 0;
  protected nextRep = 0;
  /** PLAIN-encoded values of the current page, sized once so it never doubles past a page. */
  protected readonly vals: ByteSink;
  private readonly page: ByteSink;

  // Dictionary encoding. The first page is encoded both ways and the smaller after compression
  // wins; a column that loses once, or whose dictionary outgrows its limit, stays PLAIN, because
  // such data (names, ids, timestamps) will do the same again.
  private dict: ByteDictionary | undefined;
  private dictInChunk: ByteDictionary | undefined;
  private dictionaryUseful: boolean;
  /** Whether the current page is the trial page: its PLAIN bytes are kept beside the indices. */
  private trial: boolean;
  private indices = new Int32Array(MAX_PAGE_LEVELS);
  private indexCount = 0;
  /** Bytes the dictionary-encoded values of the page would take as PLAIN: decides when it is full. */
  private plainEquivalent = 0;
  private abandonAtRowEnd = false;
  private readonly lengthPrefix: number;

  // Row group state. The chunk's data pages, header and compressed body each, back to back; the
  // buffer is kept for the next row group.
  private readonly chunk = new ByteSink(64 * 1024);
  private chunkUncompressed = 0;
  private chunkLevels = 0;
  protected nullCount = 0;
  private usedEncodings = new Set<number>();
  /** Whether pages go through compressFast; decided on trial pages. */
  private fastLevel = false;
  /** Pages compressed since the last level trial; a trial is due when it reaches LEVEL_TRIAL_PAGES. */
  private pagesSinceTrial = LEVEL_TRIAL_PAGES;

  /**
   * `lengthPrefix` is 4 for BYTE_ARRAY, whose PLAIN form (and dictionary entries) put a length
   * before each value.
   */
  constructor(spec: ColumnSpec, options: ColumnOptions, dictionary = options.dictionary, lengthPrefix = 0) {
    this.spec = spec;
    this.options = options;
    const { maxDef, maxRep } = levelsOf(spec);
    this.maxDef = maxDef;
    this.maxRep = maxRep;
    this.flat = maxRep === 0;
    if (maxRep > 0) this.reps = new Uint8Array(MAX_PAGE_LEVELS);
    this.vals = new ByteSink(options.pageBytes + PAGE_SLACK);
    this.page = new ByteSink(options.pageBytes + PAGE_SLACK);
    this.dictionaryUseful = dictionary;
    this.trial = dictionary;
    this.lengthPrefix = lengthPrefix;
    if (dictionary) this.dict = new ByteDictionary(lengthPrefix);
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
    if (this.abandonAtRowEnd) this.abandonDictionary();
    else this.rowDone();
  }

  /** Whether values go to the dictionary only: no PLAIN copy is needed (past the trial page). */
  protected get dictionaryOnly(): boolean {
    return this.dict !== undefined && !this.trial;
  }

  /**
   * Called by every appender once it has written one value's PLAIN bytes at vals[start..]; `key`
   * is where the value's own bytes are (for byte arrays, after the length prefix).
   */
  protected valueWritten(start: number, keyOffset = 0): void {
    if (this.dict) {
      const end = this.vals.length;
      // Past the trial page the value lives in the dictionary only; its bytes stay readable in the
      // buffer until the next write, long enough for the dictionary to copy them.
      if (!this.trial) this.vals.length = start;
      this.dictionaryValue(this.vals.buf, start + keyOffset, end - start - keyOffset, end - start);
      return;
    }
    this.level(this.maxDef);
    if (this.flat) this.rowDone();
  }

  /** Adds one value, src[off, off+len), to the dictionary; `plainBytes` is its PLAIN size. */
  protected dictionaryValue(src: Uint8Array, off: number, len: number, plainBytes: number): void {
    const dict = this.dict as ByteDictionary;
    if (this.indexCount === this.indices.length) this.indices = grow32(this.indices);
    this.indices[this.indexCount++] = dict.add(src, off, len);
    this.plainEquivalent += plainBytes;
    this.level(this.maxDef);
    if (dict.bytes > this.options.dictionaryBytes) {
      // A list is finished first: pages start where rows start.
      if (this.flat) this.abandonDictionary();
      else this.abandonAtRowEnd = true;
    } else if (this.flat) this.rowDone();
  }

  private abandonDictionary(): void {
    // Pages already cut stay dictionary-encoded; the rest of the chunk is PLAIN.
    this.abandonAtRowEnd = false;
    if (this.trial) this.dropDictionary();
    this.flushPage();
    this.dict = undefined;
    this.dictionaryUseful = false;
  }

  /** Ends dictionary mode for the rest of the chunk; the page's PLAIN bytes are still in `vals`. */
  private dropDictionary(): void {
    this.dict = undefined;
    this.indexCount = 0;
    this.plainEquivalent = 0;
    this.trial = false;
  }

  /** On the trial page, keeps the dictionary only if indices + dictionary compress smaller than PLAIN. */
  private decideDictionary(): void {
    const dict = this.dict;
    if (!this.trial || !dict) return;
    this.trial = false;
    // Mostly distinct values gain nothing from a dictionary, whatever the sizes say.
    if (dict.count * 2 > this.indexCount) {
      this.dropDictionary();
      this.dictionaryUseful = false;
      return;
    }
    const indices = new ByteSink(this.indexCount + 16);
    this.writeIndices(indices, dict);
    // The dictionary page is written once per row group, which spans several pages of a column:
    // it is counted at a quarter against the one page of indices.
    const dictionarySize = this.compressed(indices.view()) + this.compressed(dict.data.view()) / 4;
    const plainSize = this.compressed(this.vals.view());
    if (plainSize <= dictionarySize) {
      // Data that compresses better plain (unique ids, timestamps) stays so: stop trying.
      this.dropDictionary();
      this.dictionaryUseful = false;
    } else {
      this.vals.length = 0;
    }
  }

  private compressed(bytes: Buffer): number {
    return this.options.compress(bytes).length;
  }

  private writeIndices(out: ByteSink, dict: ByteDictionary): void {
    const width = Math.max(1, bitWidth(dict.count - 1));
    out.byte(width);
    writeHybrid(out, this.indices, this.indexCount, width);
  }

  /** Records the levels of one value slot. */
  protected level(def: number): void {
    if (this.levels === this.defs.length) {
      this.defs = grow8(this.defs);
      if (this.reps) this.reps = grow8(this.reps);
    }
    this.defs[this.levels] = def;
    if (this.reps) {
      this.reps[this.levels] = this.nextRep;
      this.nextRep = 1;
    }
    this.levels++;
  }

  /** Cuts a page once the current one is full; called where a row ends. */
  protected rowDone(): void {
    if (this.pageBytes() >= this.options.pageBytes || this.levels >= MAX_PAGE_LEVELS) this.flushPage();
  }

  /** Uncompressed bytes of values in the current page. */
  protected pageBytes(): number {
    return this.dict ? this.plainEquivalent : this.vals.length;
  }

  /** Bytes this column holds for the current row group, uncompressed. */
  bufferedBytes(): number {
    return this.chunkUncompressed + this.pageBytes() + this.levels;
  }

  /** Writes the values of the current page into `out`; returns the encoding used. */
  protected writeValues(out: ByteSink): number {
    this.decideDictionary();
    const dict = this.dict ?? this.dictInChunk;
    if (this.indexCount > 0 && dict) {
      this.dictInChunk = dict;
      this.writeIndices(out, dict);
      this.indexCount = 0;
      this.plainEquivalent = 0;
      return Encoding.RLE_DICTIONARY;
    }
    out.bytes(this.vals.buf, 0, this.vals.length);
    return Encoding.PLAIN;
  }

  /** Statistics min/max in PLAIN encoding, when the column tracks them. */
  protected minMax(): [Uint8Array, Uint8Array] | undefined {
    return undefined;
  }

  /** Resets per-row-group statistics. */
  protected resetStats(): void {}

  /** The chunk's dictionary page body and entry count, when pages used it; starts a new one. */
  private takeDictionary(): { body: Buffer; count: number } | undefined {
    const dict = this.dictInChunk;
    this.dictInChunk = undefined;
    if (this.dictionaryUseful) this.dict = new ByteDictionary(this.lengthPrefix);
    this.trial = this.dictionaryUseful;
    return dict && { body: dict.data.view(), count: dict.count };
  }

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
    const start = this.chunk.length;
    new CompactWriter(this.chunk)
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
      .close();
    const headerBytes = this.chunk.length - start;
    this.chunk.bytes(compressed);
    this.chunkUncompressed += headerBytes + body.length;
    this.chunkLevels += this.levels;
    this.levels = 0;
    // Keep the buffers for the next page; only an outsized value's growth is given back.
    this.vals.shrink(this.options.pageBytes + PAGE_SLACK);
    page.shrink(this.options.pageBytes + PAGE_SLACK);
  }

  private compress(body: Buffer): Uint8Array {
    const { compress, compressFast } = this.options;
    let out: Uint8Array;
    if (!compressFast) out = compress(body);
    else if (this.pagesSinceTrial++ < LEVEL_TRIAL_PAGES)
      out = (this.fastLevel ? compressFast : compress)(body);
    else {
      this.pagesSinceTrial = 1;
      const configured = compress(body);
      const fast = compressFast(body);
      this.fastLevel = fast.length <= configured.length;
      out = this.fastLevel ? fast : configured;
    }
    return out;
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
    let compressedBytes = this.chunk.length;
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
    buffers.push(this.chunk.view());
    const encodings = [...this.usedEncodings, Encoding.RLE].filter((e, i, a) => a.indexOf(e) === i);
    const levelsTotal = this.chunkLevels;
    const nullCount = this.nullCount;
    const stats = this.minMax();
    const spec = this.spec;
    const codec = this.options.codec;
    // The footer keeps this closure for the whole part: it holds numbers, not the page buffers.
    const hasDictionary = dictionary !== undefined;
    const writeMeta = (w: CompactWriter, fileOffset: number) => {
      w.i32(1, spec.physical)
        .i32List(2, encodings)
        .stringList(3, spec.list ? [spec.name, 'list', 'element'] : [spec.name])
        .i32(4, codec)
        .i64(5, levelsTotal)
        .i64(6, uncompressedBytes)
        .i64(7, compressedBytes)
        .i64(9, fileOffset + dictionaryBytes);
      if (hasDictionary) w.i64(11, fileOffset);
      w.struct(12).i64(3, nullCount);
      if (stats) w.binary(5, stats[1]).binary(6, stats[0]);
      w.end();
    };
    // The view in `buffers` stays valid until the next page is appended.
    this.chunk.reset();
    this.chunkUncompressed = 0;
    this.chunkLevels = 0;
    this.nullCount = 0;
    this.usedEncodings = new Set();
    this.resetStats();
    return { buffers, compressedBytes, uncompressedBytes, writeMeta };
  }
}

function grow8(a: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(a.length * 2);
  b.set(a);
  return b;
}

function grow32(a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

/** INT32 values: int, smallint, date, decimal(p<=9). Tracks min/max. */
export class Int32Column extends ColumnWriter {
  private min = 0;
  private max = 0;
  private seen = false;

  append(v: number): void {
    const s = this.vals;
    const start = s.length;
    if (start + 4 > s.buf.length) s.ensure(4);
    s.buf.writeInt32LE(v, start);
    s.length = start + 4;
    if (!this.seen) {
      this.min = this.max = v;
      this.seen = true;
    } else if (v < this.min) this.min = v;
    else if (v > this.max) this.max = v;
    this.valueWritten(start);
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
    const o = s.length;
    if (o + 8 > s.buf.length) s.ensure(8);
    const b = s.buf;
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
    this.valueWritten(o);
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
    const o = s.length;
    if (o + w > s.buf.length) s.ensure(w);
    const b = s.buf;
    for (let i = 0; i < w; i++) b[o + i] = src[off + w - 1 - i];
    s.length = o + w;
    this.valueWritten(o);
  }
}

/** BOOLEAN values, bit-packed; never dictionary-encoded. */
export class BooleanColumn extends ColumnWriter {
  private bits = new Uint8Array(MAX_PAGE_LEVELS);
  private count = 0;

  constructor(spec: ColumnSpec, options: ColumnOptions) {
    super(spec, options, false);
  }

  append(v: boolean): void {
    if (this.count === this.bits.length) this.bits = grow8(this.bits);
    this.bits[this.count++] = v ? 1 : 0;
    this.level(this.maxDef);
    if (this.flat) this.rowDone();
  }

  protected override pageBytes(): number {
    return this.count >> 3;
  }

  protected override writeValues(out: ByteSink): number {
    writePlainBooleans(out, this.bits, this.count);
    this.count = 0;
    return Encoding.PLAIN;
  }
}

/** FIXED_LEN_BYTE_ARRAY values: uuid, decimals wider than 18 digits. */
export class FixedColumn extends ColumnWriter {
  append(src: Uint8Array, off: number): void {
    const start = this.vals.length;
    this.vals.bytes(src, off, off + (this.spec.typeLength ?? 0));
    this.valueWritten(start);
  }
}

/** BYTE_ARRAY values (text, json, bytea): PLAIN is a 4-byte length, then the bytes. */
export class ByteArrayColumn extends ColumnWriter {
  constructor(spec: ColumnSpec, options: ColumnOptions) {
    super(spec, options, options.dictionary, 4);
  }

  append(src: Uint8Array, off: number, len: number): void {
    if (this.dictionaryOnly) {
      this.dictionaryValue(src, off, len, len + 4);
      return;
    }
    const s = this.vals;
    const start = s.length;
    if (start + len + 4 > s.buf.length) s.ensure(len + 4);
    const b = s.buf;
    b[start] = len;
    b[start + 1] = len >>> 8;
    b[start + 2] = len >>> 16;
    b[start + 3] = len >>> 24;
    const o = start + 4;
    if (len < 48) {
      for (let i = 0; i < len; i++) b[o + i] = src[off + i];
    } else {
      b.set(src.subarray(off, off + len), o);
    }
    s.length = o + len;
    this.valueWritten(start, 4);
  }

  /** Appends a JS string as UTF-8. */
  appendString(text: string): void {
    const bytes = Buffer.from(text, 'utf8');
    this.append(bytes, 0, bytes.length);
  }
}

/**
 * An insertion-ordered set of values with an open-addressing hash table. Entries are kept in
 * PLAIN form back to back (with a 4-byte length before each when `lengthPrefix` is 4), which is
 * exactly the dictionary page body; values are hashed and compared without the prefix.
 */
export class ByteDictionary {
  readonly data = new ByteSink(64 * 1024);
  count = 0;
  private readonly lengthPrefix: number;
  /** Where entry i's value bytes start, and how long they are. */
  private starts = new Int32Array(1024);
  private lengths = new Int32Array(1024);
  private hashes = new Int32Array(1024);
  private table = new Int32Array(2048);
  private mask = 2047;
  private source: Uint8Array | undefined;
  private sourceView: DataView | undefined;
  private entries: Uint8Array | undefined;
  private entriesView: DataView | undefined;

  constructor(lengthPrefix = 0) {
    this.lengthPrefix = lengthPrefix;
  }

  /** Bytes of the dictionary page body. */
  get bytes(): number {
    return this.data.length;
  }

  /** Returns the index of the value b[off, off+len), adding it when new. */
  add(b: Uint8Array, off: number, len: number): number {
    const src = this.viewOf(b);
    const h = hashBytes(src, b, off, off + len);
    const data = this.dataView();
    let slot = h & this.mask;
    for (;;) {
      const entry = this.table[slot];
      if (entry === 0) break;
      const i = entry - 1;
      if (
        this.hashes[i] === h &&
        this.lengths[i] === len &&
        sameBytes(data, this.starts[i], src, b, off, len)
      )
        return i;
      slot = (slot + 1) & this.mask;
    }
    const index = this.count++;
    if (index === this.starts.length) {
      this.starts = grow32(this.starts);
      this.lengths = grow32(this.lengths);
      this.hashes = grow32(this.hashes);
    }
    if (this.lengthPrefix) this.data.uint32(len);
    this.starts[index] = this.data.length;
    this.lengths[index] = len;
    this.hashes[index] = h;
    this.data.bytes(b, off, off + len);
    this.table[slot] = index + 1;
    if (this.count * 2 > this.mask) this.rehash();
    return index;
  }

  /** A DataView of the source buffer: values are hashed and compared four bytes per read. */
  private viewOf(b: Uint8Array): DataView {
    if (b !== this.source) {
      this.source = b;
      this.sourceView = new DataView(b.buffer, b.byteOffset, b.byteLength);
    }
    return this.sourceView as DataView;
  }

  /** A DataView of the entries' buffer, which moves when it grows. */
  private dataView(): DataView {
    const buf = this.data.buf;
    if (buf !== this.entries) {
      this.entries = buf;
      this.entriesView = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    }
    return this.entriesView as DataView;
  }

  private rehash(): void {
    const size = (this.mask + 1) * 2;
    this.table = new Int32Array(size);
    this.mask = size - 1;
    for (let index = 0; index < this.count; index++) {
      let slot = this.hashes[index] & this.mask;
      while (this.table[slot] !== 0) slot = (slot + 1) & this.mask;
      this.table[slot] = index + 1;
    }
  }
}

/** A 32-bit hash of b[start, end), four bytes per read through `v` (b's DataView), murmur3-style. */
function hashBytes(v: DataView, b: Uint8Array, start: number, end: number): number {
  let h = Math.imul(end - start, 0x9e3779b1);
  let i = start;
  for (; i + 4 <= end; i += 4) {
    h = Math.imul(h ^ Math.imul(v.getInt32(i, true), 0xcc9e2d51), 0x1b873593);
    h = (h << 13) | (h >>> 19);
  }
  for (; i < end; i++) h = Math.imul(h ^ b[i], 0x85ebca6b);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  return h ^ (h >>> 13);
}

/** Whether the entry at data[ai..] equals b[bi, bi+len); `bv` is b's DataView. */
function sameBytes(
  data: DataView,
  ai: number,
  bv: DataView,
  b: Uint8Array,
  bi: number,
  len: number,
): boolean {
  let k = 0;
  for (; k + 4 <= len; k += 4) if (data.getInt32(ai + k, true) !== bv.getInt32(bi + k, true)) return false;
  for (; k < len; k++) if (data.getUint8(ai + k) !== b[bi + k]) return false;
  return true;
}
