/** Page compression codecs. Parquet's GZIP is a gzip stream; ZSTD is a zstd frame. */
import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';

export type Codec = 'zstd' | 'gzip' | 'none';

/** CompressionCodec ids in the Parquet footer. */
export const CODEC_ID: Record<Codec, number> = { none: 0, gzip: 2, zstd: 6 };

/**
 * Compresses one page. The result may be a view of a buffer the next call overwrites: copy it or
 * write it out before compressing again.
 */
export type CompressFn = (data: Uint8Array) => Uint8Array;

/** The parts of zstd-napi's native binding used here (ZSTD_compressCCtx, ZSTD_compressBound). */
interface ZstdBinding {
  CCtx: new () => { compress(dst: Uint8Array, src: Uint8Array, level: number): number };
  compressBound(size: number): number;
}

/**
 * The cheaper level a column may use instead of the configured one when its pages come out no
 * larger that way (see ColumnWriter): level 1 of zstd or gzip; none for 'none' or level 1 itself.
 */
export function fastLevel(codec: Codec, level: number): number | undefined {
  return codec !== 'none' && level > 1 ? 1 : undefined;
}

/** A compressor for pages, bound to one codec and level. */
export function createCompressor(codec: Codec, level: number): CompressFn {
  switch (codec) {
    case 'none':
      return (data) => data;
    case 'gzip':
      return (data) => gzipSync(data, { level: Math.min(level, 9) });
    case 'zstd': {
      // zstd-napi is CommonJS. One context per writer stays warm between pages, and pages are
      // compressed into one reused buffer: no allocation per page, nothing for the collector.
      const require = createRequire(import.meta.url);
      const zstd = require('zstd-napi/binding') as ZstdBinding;
      const context = new zstd.CCtx();
      let out = Buffer.alloc(0);
      return (data) => {
        const bound = zstd.compressBound(data.length);
        // Grown to the largest page so far; given back after an outsized one.
        if (out.length < bound || (out.length > 16 << 20 && bound < out.length / 4))
          out = Buffer.allocUnsafe(bound);
        return out.subarray(0, context.compress(out, data, level));
      };
    }
  }
}

/** Pages between two comparisons of the configured and the cheaper compression level. */
const LEVEL_TRIAL_PAGES = 32;

/**
 * One column's page compression. With a cheaper level at hand, the column uses it while its pages
 * come out no larger than at the configured level (random text often compresses as well at zstd
 * 1 as at 3, in half the time); the two are compared on the column's first page and every
 * LEVEL_TRIAL_PAGES after.
 */
export class PageCompressor {
  /** Whether pages go through `fast`; decided on trial pages. */
  private fastLevel = false;
  /** Pages compressed since the last level trial; a trial is due when it reaches LEVEL_TRIAL_PAGES. */
  private pagesSinceTrial = LEVEL_TRIAL_PAGES;

  constructor(
    private readonly configured: CompressFn,
    private readonly fast: CompressFn | undefined,
  ) {}

  /** Compresses one page; the result is valid until the next call (see CompressFn). */
  compress(body: Uint8Array): Uint8Array {
    const { configured, fast } = this;
    if (!fast) return configured(body);
    if (this.pagesSinceTrial++ < LEVEL_TRIAL_PAGES) return (this.fastLevel ? fast : configured)(body);
    this.pagesSinceTrial = 1;
    const atConfigured = configured(body);
    const atFast = fast(body);
    this.fastLevel = atFast.length <= atConfigured.length;
    return this.fastLevel ? atFast : atConfigured;
  }
}
