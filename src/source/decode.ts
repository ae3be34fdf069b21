/**
 * Decodes PostgreSQL `COPY ... (FORMAT binary)` into the Parquet column writers, value by value,
 * without materializing rows. Binary formats are each type's `*send` function; see
 * src/backend/utils/adt/ in PostgreSQL and the COPY manual page ("Binary Format").
 */
import { NightshiftError, validationError } from '../errors.js';
import { viewOf } from '../parquet/bytes.js';
import type {
  BooleanColumn,
  ByteArrayColumn,
  ColumnWriter,
  FixedColumn,
  FloatingColumn,
  Int32Column,
  Int64Column,
} from '../parquet/column.js';
import type { PartWriter } from '../parquet/writer.js';
import { CLAMP, type ColumnPlan } from './types.js';

/** Decodes one value at p (len bytes) of `b`, whose DataView is `v` (big-endian reads in one load). */
type Decode = (v: DataView, b: Buffer, p: number, len: number) => void;
type DecodeNull = () => void;

const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');
const TWO32 = 4294967296;
/** Microseconds from 1970-01-01 to 2000-01-01 (PostgreSQL's epoch), as high/low halves. */
const EPOCH_SHIFT_HI = 220417;
const EPOCH_SHIFT_LO = 993517568;
/** Days from 1970-01-01 to 2000-01-01. */
const EPOCH_SHIFT_DAYS = 10957;

export type InfinityPolicy = 'clamp' | 'null' | 'error';

function splitBig(v: bigint): [number, number] {
  return [Number(BigInt.asIntN(64, v) >> 32n), Number(v & 0xffffffffn)];
}

const [MAX_HI, MAX_LO] = splitBig(CLAMP.maxMicros);
const [MIN_HI, MIN_LO] = splitBig(CLAMP.minMicros);
const POW10 = Array.from({ length: 23 }, (_, i) => 10 ** i);
const POW10N = Array.from({ length: 80 }, (_, i) => 10n ** BigInt(i));

/** Decodes COPY binary chunks into a PartWriter. */
export class CopyBinaryDecoder {
  private readonly decoders: Decode[];
  private readonly nulls: DecodeNull[];
  private readonly writer: PartWriter;
  private readonly columnCount: number;
  private headerDone = false;
  /** The last input buffer and its DataView (the socket reuses one buffer read after read). */
  private input: Buffer | undefined;
  private view: DataView | undefined;
  private trailerSeen = false;
  /** Bytes of COPY data received. */
  bytes = 0;

  constructor(plans: readonly ColumnPlan[], writer: PartWriter, infinity: InfinityPolicy) {
    this.writer = writer;
    this.columnCount = plans.length;
    this.decoders = [];
    this.nulls = [];
    plans.forEach((plan, i) => {
      const column = writer.columns[i];
      const element = valueDecoder(plan, column, infinity);
      if (plan.array) {
        this.decoders.push(arrayDecoder(plan, column, element));
        this.nulls.push(() => column.appendNullList());
      } else {
        this.decoders.push(element);
        this.nulls.push(() => column.appendNull());
      }
    });
  }

  /** Whether the end-of-data trailer arrived. */
  get complete(): boolean {
    return this.trailerSeen;
  }

  /**
   * Decodes one CopyData message, b[start, end). PostgreSQL sends one row per message in
   * copy-out (the header rides with the first row, the trailer comes alone), so rows are decoded
   * in place without scanning ahead; a row that runs past its message is a protocol error.
   */
  decodeMessage(b: Buffer, start: number, end: number): void {
    this.bytes += end - start;
    if (b !== this.input) {
      this.input = b;
      this.view = viewOf(b);
    }
    const v = this.view as DataView;
    let p = start;
    if (!this.headerDone) p = this.header(b, p, end);
    const decoders = this.decoders;
    const nulls = this.nulls;
    const fields = this.columnCount;
    while (p < end) {
      const n = v.getInt16(p);
      p += 2;
      if (n === -1) {
        this.trailerSeen = true;
        continue;
      }
      if (n !== fields) throw new Error(`COPY row has ${n} fields, expected ${fields}`);
      for (let f = 0; f < fields; f++) {
        const l = v.getInt32(p);
        p += 4;
        if (l < 0) nulls[f]();
        else {
          decoders[f](v, b, p, l);
          p += l;
        }
      }
      if (p > end) throw new Error('a COPY row runs past the end of its CopyData message');
      this.writer.endRow();
    }
  }

  private header(b: Buffer, p: number, end: number): number {
    if (end - p < 19 || !b.subarray(p, p + 11).equals(SIGNATURE)) {
      throw new Error('COPY data does not start with the binary format signature');
    }
    this.headerDone = true;
    return p + 19 + b.readUInt32BE(p + 15);
  }

  /** Checks that the stream ended where COPY data ends. */
  finish(): void {
    if (!this.trailerSeen) {
      throw new NightshiftError(
        'transient',
        'COPY stream ended before its trailer: the connection was cut mid-export',
      );
    }
  }
}

function valueDecoder(plan: ColumnPlan, column: ColumnWriter, infinity: InfinityPolicy): Decode {
  switch (plan.decoder) {
    case 'bool': {
      const c = column as BooleanColumn;
      return (_v, b, p) => c.append(b[p] !== 0);
    }
    case 'int2': {
      const c = column as Int32Column;
      return (v, _b, p) => c.append(v.getInt16(p));
    }
    case 'int4': {
      const c = column as Int32Column;
      return (v, _b, p) => c.append(v.getInt32(p));
    }
    case 'int8': {
      const c = column as Int64Column;
      return (v, _b, p) => c.append(v.getInt32(p), v.getUint32(p + 4));
    }
    case 'oid': {
      const c = column as Int64Column;
      return (v, _b, p) => c.append(0, v.getUint32(p));
    }
    case 'float4':
    case 'float8': {
      const c = column as FloatingColumn;
      return (v, _b, p) => c.appendView(v, p);
    }
    case 'text':
    case 'bytea': {
      const c = column as ByteArrayColumn;
      return (_v, b, p, len) => c.append(b, p, len);
    }
    case 'jsonb': {
      const c = column as ByteArrayColumn;
      return (_v, b, p, len) => {
        if (b[p] !== 1) throw new Error(`column ${plan.name}: unknown jsonb binary version ${b[p]}`);
        c.append(b, p + 1, len - 1);
      };
    }
    case 'uuid': {
      const c = column as FixedColumn;
      return (_v, b, p) => c.append(b, p);
    }
    case 'date':
      return dateDecoder(plan, column as Int32Column, infinity);
    case 'time': {
      const c = column as Int64Column;
      return (v, _b, p) => c.append(v.getInt32(p), v.getUint32(p + 4));
    }
    case 'timestamp':
      return timestampDecoder(plan, column as Int64Column, infinity);
    case 'decimal':
      return decimalDecoder(plan, column);
  }
}

function infiniteValue(plan: ColumnPlan, positive: boolean): never {
  throw validationError(
    `column ${plan.name} holds ${positive ? '' : '-'}infinity, and source.infinity is "error"`,
    { hint: 'set source.infinity to clamp or null, or filter the rows in source.query' },
  );
}

/**
 * A finite timestamp PostgreSQL holds (it goes to 294276 AD) but Parquet cannot: after
 * 294247-01-10T04:00:54.775807Z, past int64 microseconds since 1970. It follows source.infinity
 * as +infinity does instead of wrapping around to a date BC.
 */
function beyondRange(plan: ColumnPlan): never {
  throw validationError(
    `column ${plan.name} holds a timestamp past what Parquet can store (294247-01-10), and source.infinity is "error"`,
    {
      hint: 'set source.infinity to clamp (the latest value, as for infinity) or null, or filter the rows in source.query',
    },
  );
}

function dateDecoder(plan: ColumnPlan, c: Int32Column, infinity: InfinityPolicy): Decode {
  return (v, _b, p) => {
    const days = v.getInt32(p);
    if (days === 0x7fffffff || days === -0x80000000) {
      const positive = days > 0;
      if (infinity === 'clamp') c.append(positive ? CLAMP.maxDays : CLAMP.minDays);
      else if (infinity === 'null') c.appendNull();
      else infiniteValue(plan, positive);
      return;
    }
    // PostgreSQL's last date, 5874897-12-31, is 2,145,031,948 days after 2000: the shift fits int32.
    c.append(days + EPOCH_SHIFT_DAYS);
  };
}

function timestampDecoder(plan: ColumnPlan, c: Int64Column, infinity: InfinityPolicy): Decode {
  return (v, _b, p) => {
    let hi = v.getInt32(p);
    let lo = v.getUint32(p + 4);
    if ((hi === 0x7fffffff && lo === 0xffffffff) || (hi === -0x80000000 && lo === 0)) {
      const positive = hi > 0;
      if (infinity === 'clamp') {
        if (positive) c.append(MAX_HI, MAX_LO);
        else c.append(MIN_HI, MIN_LO);
      } else if (infinity === 'null') c.appendNull();
      else infiniteValue(plan, positive);
      return;
    }
    lo += EPOCH_SHIFT_LO;
    if (lo >= TWO32) {
      lo -= TWO32;
      hi += 1;
    }
    hi += EPOCH_SHIFT_HI;
    // PostgreSQL's timestamps reach 294276 AD: the shift to 1970 can pass int64 (never below it).
    if (hi > 0x7fffffff) {
      if (infinity === 'clamp') c.append(MAX_HI, MAX_LO);
      else if (infinity === 'null') c.appendNull();
      else beyondRange(plan);
      return;
    }
    c.append(hi, lo);
  };
}

const NUMERIC_NEG = 0x4000;
const NUMERIC_NAN = 0xc000;

function decimalDecoder(plan: ColumnPlan, column: ColumnWriter): Decode {
  const precision = plan.precision ?? 38;
  const scale = plan.scale ?? 0;
  const special = (sign: number): never => {
    const what = sign === NUMERIC_NAN ? 'NaN' : sign === 0xd000 ? 'Infinity' : '-Infinity';
    throw validationError(
      `column ${plan.name} holds numeric ${what}, which DECIMAL(${precision},${scale}) cannot hold`,
      { hint: `set source.casts.${plan.name} to text (exact string) or double precision` },
    );
  };
  if (precision <= 15) {
    // Every partial sum is below 10^15 < 2^53: double arithmetic is exact.
    const toNumber = (v: DataView, p: number): number => {
      const ndigits = v.getInt16(p);
      const weight = v.getInt16(p + 2);
      const sign = v.getUint16(p + 4);
      if (sign !== 0 && sign !== NUMERIC_NEG) special(sign);
      let acc = 0;
      for (let i = 0; i < ndigits; i++) {
        const d = v.getUint16(p + 8 + 2 * i);
        const e = 4 * (weight - i) + scale;
        if (e >= 0) acc += d * POW10[e];
        else acc += Math.trunc(d / POW10[-e]);
      }
      return sign === NUMERIC_NEG ? -acc : acc;
    };
    if (precision <= 9) {
      const c = column as Int32Column;
      return (v, _b, p) => c.append(toNumber(v, p));
    }
    const c = column as Int64Column;
    return (v, _b, p) => {
      const n = toNumber(v, p);
      const hi = Math.floor(n / TWO32);
      c.append(hi, n - hi * TWO32);
    };
  }
  const toBigInt = (v: DataView, p: number): bigint => {
    const ndigits = v.getInt16(p);
    const weight = v.getInt16(p + 2);
    const sign = v.getUint16(p + 4);
    if (sign !== 0 && sign !== NUMERIC_NEG) special(sign);
    let acc = 0n;
    for (let i = 0; i < ndigits; i++) {
      const d = BigInt(v.getUint16(p + 8 + 2 * i));
      const e = 4 * (weight - i) + scale;
      if (e >= 0) acc += d * POW10N[e];
      else acc += d / POW10N[-e];
    }
    return sign === NUMERIC_NEG ? -acc : acc;
  };
  if (precision <= 18) {
    const c = column as Int64Column;
    return (v, _b, p) => {
      const [hi, lo] = splitBig(toBigInt(v, p));
      c.append(hi, lo);
    };
  }
  const c = column as FixedColumn;
  const scratch = Buffer.alloc(16);
  return (v, _b, p) => {
    let n = BigInt.asUintN(128, toBigInt(v, p));
    for (let i = 15; i >= 0; i--) {
      scratch[i] = Number(n & 0xffn);
      n >>= 8n;
    }
    c.append(scratch, 0);
  };
}

function arrayDecoder(plan: ColumnPlan, column: ColumnWriter, element: Decode): Decode {
  return (v, b, p) => {
    const ndim = v.getInt32(p);
    if (ndim === 0) {
      column.appendEmptyList();
      return;
    }
    if (ndim > 1) {
      throw validationError(
        `column ${plan.name} holds a ${ndim}-dimensional array; only 1-dimensional arrays map to LIST`,
        {
          hint: `set source.casts.${plan.name} to jsonb to keep the nesting as JSON`,
        },
      );
    }
    const n = v.getInt32(p + 12);
    let q = p + 20;
    column.startList();
    for (let i = 0; i < n; i++) {
      const l = v.getInt32(q);
      q += 4;
      if (l < 0) column.appendNull();
      else {
        element(v, b, q, l);
        q += l;
      }
    }
    column.endList();
  };
}
