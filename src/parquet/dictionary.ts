/**
 * The dictionary of a dictionary-encoded column chunk: distinct values in first-seen order, found
 * again through a hash table, kept in the exact layout of the dictionary page body.
 */
import { ByteSink, grow32 } from './bytes.js';

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
