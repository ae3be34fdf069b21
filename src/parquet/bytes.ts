/**
 * A growable little-endian byte buffer: the one place the writer appends raw bytes.
 * Methods write in place and grow by doubling, so the hot path allocates nothing per value.
 */
export class ByteSink {
  buf: Buffer;
  /** A DataView of `buf`, replaced with it: multi-byte values are written with one store each. */
  dv: DataView;
  length = 0;

  constructor(initialCapacity = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(initialCapacity);
    this.dv = viewOf(this.buf);
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    const need = this.length + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = Buffer.allocUnsafe(size);
    this.buf.copy(next, 0, 0, this.length);
    this.buf = next;
    this.dv = viewOf(next);
  }

  byte(v: number): void {
    this.ensure(1);
    this.buf[this.length++] = v;
  }

  int32(v: number): void {
    this.ensure(4);
    this.buf.writeInt32LE(v, this.length);
    this.length += 4;
  }

  uint32(v: number): void {
    this.ensure(4);
    this.buf.writeUInt32LE(v >>> 0, this.length);
    this.length += 4;
  }

  /** Unsigned LEB128 varint of a non-negative integer below 2^53. */
  varint(v: number): void {
    this.ensure(10);
    while (v >= 0x80) {
      this.buf[this.length++] = (v % 0x80) | 0x80;
      v = Math.floor(v / 0x80);
    }
    this.buf[this.length++] = v;
  }

  bytes(src: Uint8Array, start = 0, end = src.length): void {
    const n = end - start;
    this.ensure(n);
    if (n < 32) {
      const b = this.buf;
      let o = this.length;
      for (let i = start; i < end; i++) b[o++] = src[i];
    } else {
      this.buf.set(src.subarray(start, end), this.length);
    }
    this.length += n;
  }

  /** The bytes written so far (a view, valid until the next write). */
  view(): Buffer {
    return this.buf.subarray(0, this.length);
  }

  /** A copy of the bytes written so far. */
  copy(): Buffer {
    return Buffer.from(this.view());
  }

  reset(): void {
    this.length = 0;
  }

  /** Empties the sink, giving back memory when one wide value grew it past twice `capacity`. */
  shrink(capacity: number): void {
    if (this.buf.length > capacity * 2) {
      this.buf = Buffer.allocUnsafe(capacity);
      this.dv = viewOf(this.buf);
    }
    this.length = 0;
  }
}

/** A copy of `a` in twice the room. */
export function grow8(a: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(a.length * 2);
  b.set(a);
  return b;
}

/** A copy of `a` in twice the room. */
export function grow32(a: Int32Array<ArrayBuffer>): Int32Array<ArrayBuffer> {
  const b = new Int32Array(a.length * 2);
  b.set(a);
  return b;
}

/** A DataView of exactly the bytes of `b`. */
export function viewOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}
