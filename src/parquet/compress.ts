/** Page compression codecs. Parquet's GZIP is a gzip stream; ZSTD is a zstd frame. */
import { createRequire } from 'node:module';
import { gzipSync } from 'node:zlib';

export type Codec = 'zstd' | 'gzip' | 'none';

/** CompressionCodec ids in the Parquet footer. */
export const CODEC_ID: Record<Codec, number> = { none: 0, gzip: 2, zstd: 6 };

export type CompressFn = (data: Uint8Array) => Uint8Array;

interface ZstdCompressor {
  setParameters(p: { compressionLevel?: number }): void;
  compress(data: Uint8Array): Buffer;
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
      // zstd-napi is CommonJS; one Compressor per writer keeps its context warm between pages.
      const require = createRequire(import.meta.url);
      const { Compressor } = require('zstd-napi') as { Compressor: new () => ZstdCompressor };
      const zstd = new Compressor();
      zstd.setParameters({ compressionLevel: level });
      return (data) => zstd.compress(data);
    }
  }
}
