/**
 * What every column writer shares: values are appended one at a time in PLAIN encoding (or as
 * dictionary indices), a data page is cut and compressed whenever it reaches the page size, and
 * the compressed pages of the current row group are kept until the writer lays the row group out
 * in the file. Memory per column is one page of values, one dictionary, and the compressed row
 * group. The writers of each physical type are in column.ts.
 */
import { ByteSink, grow8, grow32 } from './bytes.js';
import { ChunkBuilder, type ColumnChunk, Encoding } from './chunk.js';
import { type CompressFn, PageCompressor } from './compress.js';
import { ByteDictionary } from './dictionary.js';
import { bitWidth, writeHybrid, writeRun } from './encoding.js';
import { type ColumnSpec, levelsOf } from './schema.js';

/** Levels per page before it is cut, whatever its byte size. */
export const MAX_PAGE_LEVELS = 64 * 1024;
/** Room past the page size for the value that fills a page, and the page's level runs. */
export const PAGE_SLACK = 64 * 1024 + MAX_PAGE_LEVELS / 4;

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
   * time); see PageCompressor.
   */
  compressFast?: CompressFn;
  /** CompressionCodec id written in the footer. */
  codec: number;
  /**
   * The buffer a page is assembled in before it is compressed, shared by the columns of one
   * writer (pages are cut one at a time and copied out compressed); a column without one gets
   * its own.
   */
  pageScratch?: ByteSink;
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
  /**
   * Whether every level of the current page is a flat column's present value: `defs` is then left
   * unwritten and the page gets one run of levels, as most pages of most columns have no NULL.
   */
  private allPresent: boolean;
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

  // Row group state: the chunk's pages so far, kept for the next row group.
  private readonly chunk: ChunkBuilder;
  private readonly pages: PageCompressor;
  protected nullCount = 0;

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
    this.page = options.pageScratch ?? new ByteSink(options.pageBytes + PAGE_SLACK);
    this.allPresent = this.flat;
    this.dictionaryUseful = dictionary;
    this.trial = dictionary;
    this.lengthPrefix = lengthPrefix;
    if (dictionary) this.dict = new ByteDictionary(lengthPrefix);
    this.chunk = new ChunkBuilder(spec, options.codec);
    this.pages = new PageCompressor(options.compress, options.compressFast);
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
    if (this.allPresent) {
      if (def === this.maxDef) {
        this.levels++;
        return;
      }
      this.writeOutPresent();
    }
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

  /** Ends the all-present mode of the page: `defs` gets the levels it skipped. */
  private writeOutPresent(): void {
    this.allPresent = false;
    while (this.defs.length < this.levels) this.defs = grow8(this.defs);
    this.defs.fill(this.maxDef, 0, this.levels);
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
    return this.chunk.uncompressedBytes + this.pageBytes() + this.levels;
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
    if (this.allPresent) this.writePresentLevels(page);
    else this.writeLevels(page, this.defs, this.maxDef);
    this.allPresent = this.flat;
    const encoding = this.writeValues(page);
    const body = page.view();
    this.chunk.addDataPage(body.length, this.pages.compress(body), this.levels, encoding);
    this.levels = 0;
    // Keep the buffers for the next page; only an outsized value's growth is given back.
    this.vals.shrink(this.options.pageBytes + PAGE_SLACK);
    page.shrink(this.options.pageBytes + PAGE_SLACK);
  }

  /** The levels of a page without NULLs: one run of maxDef, as writeHybrid would write it. */
  private writePresentLevels(page: ByteSink): void {
    if (this.levels < 8) this.writeOutPresent();
    const at = page.length;
    page.uint32(0);
    if (this.allPresent) writeRun(page, this.maxDef, this.levels, bitWidth(this.maxDef));
    else writeHybrid(page, this.defs, this.levels, bitWidth(this.maxDef));
    page.buf.writeUInt32LE(page.length - at - 4, at);
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
    const dictionary = this.takeDictionary();
    const chunk = this.chunk.finish({
      dictionary: dictionary && { ...dictionary, compressed: this.pages.compress(dictionary.body) },
      nullCount: this.nullCount,
      stats: this.minMax(),
    });
    this.nullCount = 0;
    this.resetStats();
    return chunk;
  }
}
