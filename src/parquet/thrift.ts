/**
 * Thrift compact protocol, write side only: what Parquet page headers and file footers need.
 * Spec: https://github.com/apache/thrift/blob/master/doc/specs/thrift-compact-protocol.md
 */
import { ByteSink } from './bytes.js';

/** Compact protocol type ids. */
export const T = {
  TRUE: 1,
  FALSE: 2,
  BYTE: 3,
  I16: 4,
  I32: 5,
  I64: 6,
  DOUBLE: 7,
  BINARY: 8,
  LIST: 9,
  STRUCT: 12,
} as const;

export class CompactWriter {
  readonly out: ByteSink;
  private lastField = 0;
  private readonly stack: number[] = [];

  constructor(out = new ByteSink(1024)) {
    this.out = out;
  }

  private fieldHeader(id: number, type: number): void {
    const delta = id - this.lastField;
    if (delta > 0 && delta <= 15) {
      this.out.byte((delta << 4) | type);
    } else {
      this.out.byte(type);
      this.zigzag(id);
    }
    this.lastField = id;
  }

  private zigzag(v: number | bigint): void {
    const n = BigInt(v);
    const z = n >= 0n ? n << 1n : (-n << 1n) - 1n;
    if (z < BigInt(Number.MAX_SAFE_INTEGER)) {
      this.out.varint(Number(z));
      return;
    }
    let rest = z;
    while (rest >= 0x80n) {
      this.out.byte(Number(rest & 0x7fn) | 0x80);
      rest >>= 7n;
    }
    this.out.byte(Number(rest));
  }

  i8(id: number, v: number): this {
    this.fieldHeader(id, T.BYTE);
    this.out.byte(v & 0xff);
    return this;
  }

  i32(id: number, v: number): this {
    this.fieldHeader(id, T.I32);
    this.zigzag(v);
    return this;
  }

  i64(id: number, v: number | bigint): this {
    this.fieldHeader(id, T.I64);
    this.zigzag(v);
    return this;
  }

  bool(id: number, v: boolean): this {
    this.fieldHeader(id, v ? T.TRUE : T.FALSE);
    return this;
  }

  binary(id: number, v: Uint8Array | string): this {
    this.fieldHeader(id, T.BINARY);
    this.rawBinary(v);
    return this;
  }

  private rawBinary(v: Uint8Array | string): void {
    const bytes = typeof v === 'string' ? Buffer.from(v, 'utf8') : v;
    this.out.varint(bytes.length);
    this.out.bytes(bytes);
  }

  /** Opens a nested struct field; close it with `end()`. */
  struct(id: number): this {
    this.fieldHeader(id, T.STRUCT);
    this.stack.push(this.lastField);
    this.lastField = 0;
    return this;
  }

  /** Ends the current struct (writes STOP). */
  end(): this {
    this.out.byte(0);
    this.lastField = this.stack.pop() ?? 0;
    return this;
  }

  /** A list of structs; `each` writes the fields of one element. */
  structList<E>(id: number, items: readonly E[], each: (w: this, item: E) => void): this {
    this.listHeader(id, T.STRUCT, items.length);
    for (const item of items) {
      this.stack.push(this.lastField);
      this.lastField = 0;
      each(this, item);
      this.end();
    }
    return this;
  }

  i32List(id: number, items: readonly number[]): this {
    this.listHeader(id, T.I32, items.length);
    for (const v of items) this.zigzag(v);
    return this;
  }

  stringList(id: number, items: readonly string[]): this {
    this.listHeader(id, T.BINARY, items.length);
    for (const v of items) this.rawBinary(v);
    return this;
  }

  private listHeader(id: number, elemType: number, size: number): void {
    this.fieldHeader(id, T.LIST);
    if (size < 15) this.out.byte((size << 4) | elemType);
    else {
      this.out.byte(0xf0 | elemType);
      this.out.varint(size);
    }
  }

  /** Starts a top-level struct (the page header or the file footer). */
  begin(): this {
    this.lastField = 0;
    return this;
  }

  /** Ends the top-level struct in place, after what the sink already held. */
  close(): void {
    this.out.byte(0);
  }

  /** Ends the top-level struct and returns its bytes. */
  finish(): Buffer {
    this.out.byte(0);
    return this.out.copy();
  }
}
