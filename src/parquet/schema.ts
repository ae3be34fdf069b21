/**
 * The Parquet column model the writer needs: physical types, logical annotations, and how a
 * column is written into the footer's schema (flat columns and 3-level LISTs).
 * Spec: https://github.com/apache/parquet-format/blob/master/LogicalTypes.md
 */
import type { CompactWriter } from './thrift.js';

export const Physical = {
  BOOLEAN: 0,
  INT32: 1,
  INT64: 2,
  FLOAT: 4,
  DOUBLE: 5,
  BYTE_ARRAY: 6,
  FIXED_LEN_BYTE_ARRAY: 7,
} as const;
export type PhysicalType = (typeof Physical)[keyof typeof Physical];

/** The logical annotation of a column's values. */
export type LogicalType =
  | { kind: 'none' }
  | { kind: 'string' }
  | { kind: 'json' }
  | { kind: 'enum' }
  | { kind: 'uuid' }
  | { kind: 'date' }
  | { kind: 'int'; bits: 8 | 16 | 32 | 64; signed: boolean }
  | { kind: 'decimal'; precision: number; scale: number }
  | { kind: 'timestamp'; utc: boolean }
  | { kind: 'time'; utc: boolean };

/** One column of a part file. */
export interface ColumnSpec {
  /** Column name as the warehouse will see it. */
  readonly name: string;
  /** Physical type of the (element) values. */
  readonly physical: PhysicalType;
  /** Byte length for FIXED_LEN_BYTE_ARRAY. */
  readonly typeLength?: number;
  /** Logical annotation of the (element) values. */
  readonly logical: LogicalType;
  /** When set, the column is a LIST whose elements have the physical/logical type above. */
  readonly list?: boolean;
}

/** Levels a column writes: max definition and repetition level. */
export function levelsOf(spec: ColumnSpec): { maxDef: number; maxRep: number } {
  // Top-level columns are always OPTIONAL; lists are optional group > repeated group > optional element.
  return spec.list ? { maxDef: 3, maxRep: 1 } : { maxDef: 1, maxRep: 0 };
}

/** The path of the leaf in the schema, as ColumnMetaData.path_in_schema wants it. */
export function pathInSchema(spec: ColumnSpec): string[] {
  return spec.list ? [spec.name, 'list', 'element'] : [spec.name];
}

const ConvertedType = {
  UTF8: 0,
  LIST: 3,
  ENUM: 4,
  DECIMAL: 5,
  DATE: 6,
  TIME_MICROS: 8,
  TIMESTAMP_MICROS: 10,
  INT_8: 15,
  INT_16: 16,
  INT_32: 17,
  INT_64: 18,
  UINT_8: 11,
  UINT_16: 12,
  UINT_32: 13,
  UINT_64: 14,
  JSON: 19,
} as const;

const Repetition = { REQUIRED: 0, OPTIONAL: 1, REPEATED: 2 } as const;

function convertedTypeOf(logical: LogicalType): number | undefined {
  switch (logical.kind) {
    case 'string':
      return ConvertedType.UTF8;
    case 'json':
      return ConvertedType.JSON;
    case 'enum':
      return ConvertedType.ENUM;
    case 'date':
      return ConvertedType.DATE;
    case 'decimal':
      return ConvertedType.DECIMAL;
    case 'timestamp':
      // TIMESTAMP_MICROS means UTC-normalized; a local timestamp has no converted type.
      return logical.utc ? ConvertedType.TIMESTAMP_MICROS : undefined;
    case 'time':
      return logical.utc ? ConvertedType.TIME_MICROS : undefined;
    case 'int': {
      const signed = {
        8: ConvertedType.INT_8,
        16: ConvertedType.INT_16,
        32: ConvertedType.INT_32,
        64: ConvertedType.INT_64,
      };
      const unsigned = {
        8: ConvertedType.UINT_8,
        16: ConvertedType.UINT_16,
        32: ConvertedType.UINT_32,
        64: ConvertedType.UINT_64,
      };
      return (logical.signed ? signed : unsigned)[logical.bits];
    }
    default:
      return undefined;
  }
}

function writeLogicalType(w: CompactWriter, logical: LogicalType): void {
  const fieldOf: Partial<Record<LogicalType['kind'], number>> = {
    string: 1,
    enum: 4,
    decimal: 5,
    date: 6,
    time: 7,
    timestamp: 8,
    int: 10,
    json: 12,
    uuid: 14,
  };
  const field = fieldOf[logical.kind];
  if (field === undefined) return;
  w.struct(10).struct(field);
  if (logical.kind === 'decimal') w.i32(1, logical.scale).i32(2, logical.precision);
  if (logical.kind === 'int') {
    w.i8(1, logical.bits).bool(2, logical.signed);
  }
  if (logical.kind === 'time' || logical.kind === 'timestamp') {
    w.bool(1, logical.utc);
    w.struct(2).struct(2).end().end(); // unit: MICROS
  }
  w.end().end();
}

/** Writes the SchemaElements of one column into the footer's schema list. */
export function writeSchemaElements(
  w: CompactWriter,
  spec: ColumnSpec,
  element: (fn: () => void) => void,
): void {
  const leaf = (name: string, repetition: number) =>
    element(() => {
      w.i32(1, spec.physical);
      if (spec.typeLength !== undefined) w.i32(2, spec.typeLength);
      w.i32(3, repetition);
      w.binary(4, name);
      const converted = convertedTypeOf(spec.logical);
      if (converted !== undefined) w.i32(6, converted);
      if (spec.logical.kind === 'decimal') w.i32(7, spec.logical.scale).i32(8, spec.logical.precision);
      writeLogicalType(w, spec.logical);
    });
  if (!spec.list) {
    leaf(spec.name, Repetition.OPTIONAL);
    return;
  }
  element(() => {
    w.i32(3, Repetition.OPTIONAL).binary(4, spec.name).i32(5, 1).i32(6, ConvertedType.LIST);
    w.struct(10).struct(3).end().end();
  });
  element(() => {
    w.i32(3, Repetition.REPEATED).binary(4, 'list').i32(5, 1);
  });
  leaf('element', Repetition.OPTIONAL);
}

/** How many schema elements a column takes (1, or 3 for a list). */
export function schemaElementCount(spec: ColumnSpec): number {
  return spec.list ? 3 : 1;
}
