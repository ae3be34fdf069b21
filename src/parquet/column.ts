/**
 * The column writers of each physical type, which the row decoder appends values to; what they
 * share (levels, pages, dictionaries, chunks) is ColumnWriter in column-writer.ts.
 */
import type { ByteSink } from './bytes.js';
import { grow8 } from './bytes.js';
import { Encoding } from './chunk.js';
import { type ColumnOptions, ColumnWriter, MAX_PAGE_LEVELS } from './column-writer.js';
import { writePlainBooleans } from './encoding.js';
import { type ColumnSpec, Physical } from './schema.js';

export type { ColumnChunk } from './chunk.js';
export { Encoding } from './chunk.js';
export type { ColumnOptions } from './column-writer.js';
export { ColumnWriter } from './column-writer.js';
export { ByteDictionary } from './dictionary.js';

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
    // Both halves wrap modulo 2^32, as the two's complement bytes do.
    s.dv.setUint32(o, lo, true);
    s.dv.setInt32(o + 4, hi, true);
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

  /** Appends the `width` big-endian bytes at `src` offset `off`, as appendBE does, a word at a time. */
  appendView(src: DataView, off: number): void {
    const s = this.vals;
    const o = s.length;
    if (this.width === 4) {
      if (o + 4 > s.buf.length) s.ensure(4);
      s.dv.setUint32(o, src.getUint32(off), true);
      s.length = o + 4;
    } else {
      if (o + 8 > s.buf.length) s.ensure(8);
      s.dv.setUint32(o, src.getUint32(off + 4), true);
      s.dv.setUint32(o + 4, src.getUint32(off), true);
      s.length = o + 8;
    }
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
