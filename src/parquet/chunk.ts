/**
 * One column's chunk of the current row group: its compressed data pages, each after its page
 * header, back to back in one buffer kept from row group to row group, and what the footer needs
 * to say about the chunk once it is laid out.
 */
import { ByteSink } from './bytes.js';
import type { ColumnSpec } from './schema.js';
import { CompactWriter } from './thrift.js';

/** Parquet Encoding ids. */
export const Encoding = { PLAIN: 0, RLE: 3, RLE_DICTIONARY: 8 } as const;
const PageType = { DATA_PAGE: 0, DICTIONARY_PAGE: 2 } as const;

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

/** What ends a chunk besides its data pages. */
export interface ChunkEnd {
  /** The dictionary page, when data pages used one: its body, compressed body and entry count. */
  dictionary?: { body: Uint8Array; compressed: Uint8Array; count: number };
  nullCount: number;
  /** Statistics [min, max] in PLAIN encoding, when the column tracks them. */
  stats?: [Uint8Array, Uint8Array];
}

export class ChunkBuilder {
  /** Data pages, header and compressed body each, back to back. */
  private readonly pages = new ByteSink(64 * 1024);
  private uncompressed = 0;
  private levels = 0;
  private encodings = new Set<number>();

  constructor(
    private readonly spec: ColumnSpec,
    private readonly codec: number,
  ) {}

  /** Appends one data page: `bodyBytes` uncompressed, `levels` level slots, values in `encoding`. */
  addDataPage(bodyBytes: number, compressed: Uint8Array, levels: number, encoding: number): void {
    this.encodings.add(encoding);
    const start = this.pages.length;
    new CompactWriter(this.pages)
      .begin()
      .i32(1, PageType.DATA_PAGE)
      .i32(2, bodyBytes)
      .i32(3, compressed.length)
      .struct(5)
      .i32(1, levels)
      .i32(2, encoding)
      .i32(3, Encoding.RLE)
      .i32(4, Encoding.RLE)
      .end()
      .close();
    const headerBytes = this.pages.length - start;
    this.pages.bytes(compressed);
    this.uncompressed += headerBytes + bodyBytes;
    this.levels += levels;
  }

  /** Uncompressed bytes of the pages so far. */
  get uncompressedBytes(): number {
    return this.uncompressed;
  }

  /** Ends the chunk and starts the next; the returned buffers stay valid until the next page. */
  finish({ dictionary, nullCount, stats }: ChunkEnd): ColumnChunk {
    const buffers: Uint8Array[] = [];
    let compressedBytes = this.pages.length;
    let uncompressedBytes = this.uncompressed;
    let dictionaryBytes = 0;
    if (dictionary) {
      const header = new CompactWriter(new ByteSink(64))
        .begin()
        .i32(1, PageType.DICTIONARY_PAGE)
        .i32(2, dictionary.body.length)
        .i32(3, dictionary.compressed.length)
        .struct(7)
        .i32(1, dictionary.count)
        .i32(2, Encoding.PLAIN)
        .end()
        .finish();
      buffers.push(header, dictionary.compressed);
      dictionaryBytes = header.length + dictionary.compressed.length;
      compressedBytes += dictionaryBytes;
      uncompressedBytes += header.length + dictionary.body.length;
      this.encodings.add(Encoding.PLAIN);
    }
    buffers.push(this.pages.view());
    const encodings = [...this.encodings, Encoding.RLE].filter((e, i, a) => a.indexOf(e) === i);
    const levelsTotal = this.levels;
    const { spec, codec } = this;
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
    this.pages.reset();
    this.uncompressed = 0;
    this.levels = 0;
    this.encodings = new Set();
    return { buffers, compressedBytes, uncompressedBytes, writeMeta };
  }
}
