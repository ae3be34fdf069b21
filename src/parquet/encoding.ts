/**
 * Parquet's RLE/bit-packing hybrid, used for definition and repetition levels and for dictionary
 * indices. Spec: https://parquet.apache.org/docs/file-format/data-pages/encodings/
 */
import type { ByteSink } from './bytes.js';

/** Bits needed to hold values up to `max`. */
export function bitWidth(max: number): number {
  return max === 0 ? 0 : 32 - Math.clz32(max);
}

/**
 * Appends `values[0..count)` in the hybrid encoding (without the 4-byte length prefix that level
 * streams carry). Runs of 8 or more equal values become RLE runs; the rest is bit-packed in groups
 * of 8, the last group padded with zeros, which readers ignore because they know the count.
 */
export function writeHybrid(out: ByteSink, values: ArrayLike<number>, count: number, width: number): void {
  if (count === 0) return;
  const valueBytes = (width + 7) >> 3;
  let i = 0;
  while (i < count) {
    const runEnd = runEndFrom(values, i, count);
    if (runEnd - i >= 8) {
      out.varint((runEnd - i) * 2);
      writeLE(out, values[i], valueBytes);
      i = runEnd;
      continue;
    }
    // Literal section: extend in groups of 8 until a run of 8+ starts at a group boundary.
    let end = i + 8;
    while (end < count && runEndFrom(values, end, count) - end < 8) end += 8;
    const literalEnd = Math.min(end, count);
    const groups = Math.ceil((literalEnd - i) / 8);
    out.varint(groups * 2 + 1);
    bitPack(out, values, i, literalEnd, groups * 8, width);
    i = literalEnd;
  }
}

/** Appends `count` (8 or more) copies of `value` as one RLE run, as writeHybrid writes such a run. */
export function writeRun(out: ByteSink, value: number, count: number, width: number): void {
  out.varint(count * 2);
  writeLE(out, value, (width + 7) >> 3);
}

function runEndFrom(values: ArrayLike<number>, start: number, count: number): number {
  const v = values[start];
  let j = start + 1;
  while (j < count && values[j] === v) j++;
  return j;
}

function writeLE(out: ByteSink, v: number, bytes: number): void {
  for (let b = 0; b < bytes; b++) out.byte((v >>> (8 * b)) & 0xff);
}

/** Bit-packs values[start..end) LSB first, padding with zeros up to `padded` values. */
function bitPack(
  out: ByteSink,
  values: ArrayLike<number>,
  start: number,
  end: number,
  padded: number,
  width: number,
): void {
  const totalBytes = (padded * width) >> 3;
  out.ensure(totalBytes);
  const buf = out.buf;
  const base = out.length;
  buf.fill(0, base, base + totalBytes);
  let bit = 0;
  for (let i = start; i < end; i++) {
    let v = values[i];
    let remaining = width;
    while (remaining > 0) {
      const byteIndex = base + (bit >> 3);
      const shift = bit & 7;
      const take = Math.min(8 - shift, remaining);
      buf[byteIndex] |= (v & ((1 << take) - 1)) << shift;
      v >>>= take;
      bit += take;
      remaining -= take;
    }
  }
  out.length = base + totalBytes;
}

/** Appends booleans in PLAIN encoding: bit-packed, LSB first, no header. */
export function writePlainBooleans(out: ByteSink, bits: Uint8Array, count: number): void {
  const n = (count + 7) >> 3;
  out.ensure(n);
  const buf = out.buf;
  const base = out.length;
  for (let i = 0; i < n; i++) {
    let byte = 0;
    const first = i * 8;
    const last = Math.min(first + 8, count);
    for (let j = first; j < last; j++) byte |= bits[j] << (j - first);
    buf[base + i] = byte;
  }
  out.length = base + n;
}
