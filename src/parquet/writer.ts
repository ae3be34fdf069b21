/**
 * The part-file writer: rows go into column writers, a row group is laid out in the file once
 * its columns hold `rowGroupBytes`, and a file is closed (footer, sha256) once it reaches
 * `partBytes`. Closed parts are announced at once so they can be uploaded while the next fills.
 * Memory is bounded by the row group size, not by the number of rows.
 */
import { createHash, type Hash } from 'node:crypto';
import { closeSync, fsyncSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ByteSink } from './bytes.js';
import {
  BooleanColumn,
  ByteArrayColumn,
  type ColumnChunk,
  type ColumnOptions,
  type ColumnWriter,
  FixedColumn,
  FloatingColumn,
  Int32Column,
  Int64Column,
} from './column.js';
import { PAGE_SLACK } from './column-writer.js';
import { CODEC_ID, type Codec, createCompressor, fastLevel } from './compress.js';
import { type ColumnSpec, Physical, writeSchemaElements } from './schema.js';
import { CompactWriter } from './thrift.js';

const MAGIC = Buffer.from('PAR1');

export interface PartWriterOptions {
  /** Directory part files are written to. */
  dir: string;
  /** File name of part `n`. */
  fileName: (index: number) => string;
  columns: readonly ColumnSpec[];
  codec: Codec;
  level: number;
  /** A part is closed after the row group that takes it past this size. */
  partBytes: number;
  /** Uncompressed bytes buffered before a row group is written. */
  rowGroupBytes: number;
  pageBytes: number;
  dictionary: boolean;
  /** Written into the footer's created_by. */
  createdBy: string;
  /** Extra footer key/value metadata. */
  metadata?: Record<string, string>;
}

/** A closed part file. */
export interface PartFile {
  readonly index: number;
  readonly path: string;
  readonly rows: number;
  readonly bytes: number;
  readonly sha256: string;
}

/** Maps a ColumnSpec to the writer class that takes its values. */
export type AnyColumnWriter =
  | Int32Column
  | Int64Column
  | FloatingColumn
  | BooleanColumn
  | FixedColumn
  | ByteArrayColumn;

function createColumn(spec: ColumnSpec, options: ColumnOptions): AnyColumnWriter {
  switch (spec.physical) {
    case Physical.INT32:
      return new Int32Column(spec, options);
    case Physical.INT64:
      return new Int64Column(spec, options);
    case Physical.FLOAT:
    case Physical.DOUBLE:
      return new FloatingColumn(spec, options);
    case Physical.BOOLEAN:
      return new BooleanColumn(spec, options);
    case Physical.FIXED_LEN_BYTE_ARRAY:
      return new FixedColumn(spec, options);
    case Physical.BYTE_ARRAY:
      return new ByteArrayColumn(spec, options);
  }
}

interface RowGroupMeta {
  rows: number;
  offset: number;
  compressed: number;
  uncompressed: number;
  /** What the footer needs of each chunk; its page buffers are let go once written. */
  chunks: { offset: number; writeMeta: ColumnChunk['writeMeta'] }[];
}

interface OpenFile {
  index: number;
  path: string;
  fd: number;
  offset: number;
  hash: Hash;
  rows: number;
  rowGroups: RowGroupMeta[];
}

/** How often (in rows) the buffered size is summed to decide on a row group. */
const SIZE_CHECK_ROWS = 512;

export class PartWriter {
  /** One writer per column, in schema order; the row decoder appends into these. */
  readonly columns: AnyColumnWriter[];
  private readonly options: PartWriterOptions;
  private file: OpenFile | undefined;
  private nextIndex = 0;
  private rowsInGroup = 0;
  private sinceCheck = 0;
  private readonly closed: PartFile[] = [];
  private totalRows = 0;

  constructor(options: PartWriterOptions) {
    this.options = options;
    const fast = fastLevel(options.codec, options.level);
    const columnOptions: ColumnOptions = {
      pageBytes: options.pageBytes,
      dictionary: options.dictionary,
      dictionaryBytes: Math.min(1024 * 1024, options.pageBytes),
      compress: createCompressor(options.codec, options.level),
      compressFast: fast === undefined ? undefined : createCompressor(options.codec, fast),
      codec: CODEC_ID[options.codec],
      pageScratch: new ByteSink(options.pageBytes + PAGE_SLACK),
    };
    this.columns = options.columns.map((spec) => createColumn(spec, columnOptions));
  }

  /** Rows written so far, in all parts. */
  get rows(): number {
    return this.totalRows;
  }

  /** Call after every column got its value for a row. */
  endRow(): void {
    this.rowsInGroup++;
    this.totalRows++;
    if (++this.sinceCheck < SIZE_CHECK_ROWS) return;
    this.sinceCheck = 0;
    let buffered = 0;
    for (const column of this.columns) buffered += column.bufferedBytes();
    if (buffered >= this.options.rowGroupBytes) this.flushRowGroup();
  }

  /** Parts closed since the last call. */
  takeClosed(): PartFile[] {
    return this.closed.splice(0, this.closed.length);
  }

  private openFile(): OpenFile {
    const index = this.nextIndex++;
    const path = join(this.options.dir, this.options.fileName(index));
    const fd = openSync(path, 'wx', 0o600);
    const file: OpenFile = { index, path, fd, offset: 0, hash: createHash('sha256'), rows: 0, rowGroups: [] };
    this.write(file, MAGIC);
    return file;
  }

  private write(file: OpenFile, data: Uint8Array): void {
    let done = 0;
    while (done < data.length) done += writeSync(file.fd, data, done, data.length - done);
    file.hash.update(data);
    file.offset += data.length;
  }

  /** Lays out the buffered row group in the current file; closes the file when it is full. */
  flushRowGroup(): void {
    if (this.rowsInGroup === 0) return;
    this.file ??= this.openFile();
    const file = this.file;
    const group: RowGroupMeta = {
      rows: this.rowsInGroup,
      offset: file.offset,
      compressed: 0,
      uncompressed: 0,
      chunks: [],
    };
    for (const column of this.columns) {
      const chunk = column.finishChunk();
      group.chunks.push({ offset: file.offset, writeMeta: chunk.writeMeta });
      for (const buffer of chunk.buffers) this.write(file, buffer);
      group.compressed += chunk.compressedBytes;
      group.uncompressed += chunk.uncompressedBytes;
    }
    file.rowGroups.push(group);
    file.rows += this.rowsInGroup;
    this.rowsInGroup = 0;
    if (file.offset >= this.options.partBytes) this.closeFile();
  }

  private closeFile(): void {
    const file = this.file;
    if (!file) return;
    this.file = undefined;
    const footer = this.footer(file);
    const tail = Buffer.allocUnsafe(8);
    tail.writeUInt32LE(footer.length, 0);
    MAGIC.copy(tail, 4);
    this.write(file, footer);
    this.write(file, tail);
    fsyncSync(file.fd);
    closeSync(file.fd);
    this.closed.push({
      index: file.index,
      path: file.path,
      rows: file.rows,
      bytes: file.offset,
      sha256: file.hash.digest('hex'),
    });
  }

  private footer(file: OpenFile): Buffer {
    const w = new CompactWriter(new ByteSink(4096)).begin();
    const columns = this.options.columns;
    w.i32(1, 1);
    const elements: (() => void)[] = [() => w.binary(4, 'schema').i32(5, columns.length)];
    for (const spec of columns) writeSchemaElements(w, spec, (fn) => elements.push(fn));
    w.structList(2, elements, (_w, fn) => fn());
    w.i64(3, file.rows);
    w.structList(4, file.rowGroups, (_w, group) => {
      w.structList(1, group.chunks, (_w2, { offset, writeMeta }) => {
        w.i64(2, offset).struct(3);
        writeMeta(w, offset);
        w.end();
      });
      w.i64(2, group.uncompressed).i64(3, group.rows).i64(5, group.offset).i64(6, group.compressed);
    });
    const metadata = Object.entries(this.options.metadata ?? {});
    if (metadata.length) w.structList(5, metadata, (_w, [k, v]) => w.binary(1, k).binary(2, v));
    w.binary(6, this.options.createdBy);
    // One ColumnOrder per leaf column: min/max statistics use the type's natural order.
    w.structList(7, columns, () => w.struct(1).end());
    return w.finish();
  }

  /**
   * Writes what is buffered and closes the last part. With `atLeastOne`, a run that wrote no
   * rows still produces one (empty) part, so a load can replace a window with nothing.
   */
  finish(atLeastOne = false): PartFile[] {
    this.flushRowGroup();
    if (atLeastOne && this.nextIndex === 0) this.file = this.openFile();
    this.closeFile();
    return this.takeClosed();
  }

  /** Stops writing and deletes the part being written (not the closed ones). */
  abort(): void {
    const file = this.file;
    this.file = undefined;
    if (!file) return;
    try {
      closeSync(file.fd);
    } finally {
      unlinkSync(file.path);
    }
  }
}

export type { ColumnWriter };
