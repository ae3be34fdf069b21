/**
 * PostgreSQL -> Parquet type mapping. Each exported column gets a plan: the SQL expression that
 * selects it (the column itself, or a cast PostgreSQL does exactly), the binary decoder that
 * reads it from COPY, and the Parquet column it becomes. A type with no mapping fails here,
 * before any data moves, naming the column and the config key that casts it.
 */
import { configError } from '../errors.js';
import { type ColumnSpec, Physical } from '../parquet/schema.js';

/** How a value arrives in COPY binary and is written. */
export type DecoderKind =
  | 'bool'
  | 'int2'
  | 'int4'
  | 'int8'
  | 'oid'
  | 'float4'
  | 'float8'
  | 'decimal'
  | 'text'
  | 'bytea'
  | 'jsonb'
  | 'uuid'
  | 'date'
  | 'time'
  | 'timestamp';

/** One exported column. */
export interface ColumnPlan {
  /** Source column name (and Parquet column name). */
  readonly name: string;
  /** SQL expression in the export SELECT, already quoted. */
  readonly expr: string;
  /** PostgreSQL type of the exported value, as format_type() prints it. */
  readonly pgType: string;
  /** Decoder of the (element) values. */
  readonly decoder: DecoderKind;
  /** Decimal precision/scale for `decimal`. */
  readonly precision?: number;
  readonly scale?: number;
  /** Whether values are arrays (written as LIST). */
  readonly array: boolean;
  /** The Parquet column. */
  readonly parquet: ColumnSpec;
  /** How the value is represented when that is a policy choice (for docs/types.md and the manifest). */
  readonly note?: string;
}

/** What the catalog says about a type. */
export interface PgTypeInfo {
  oid: number;
  name: string;
  /** b base, c composite, d domain, e enum, p pseudo, r range, m multirange */
  typtype: string;
  /** pg_type.typcategory: A array, S string, N numeric, ... */
  category: string;
  /** Element type of an array type, else 0. */
  elem: number;
  /** Base type of a domain, else 0. */
  base: number;
  /** typmod of a domain's base type. */
  baseTypmod: number;
}

/** A column as described by the export query. */
export interface DescribedColumn {
  name: string;
  typeOid: number;
  typmod: number;
  /** format_type(oid, typmod). */
  formatted: string;
}

export const OID = {
  bool: 16,
  bytea: 17,
  char: 18,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  oid: 26,
  json: 114,
  xml: 142,
  float4: 700,
  float8: 701,
  money: 790,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  time: 1083,
  timestamp: 1114,
  timestamptz: 1184,
  interval: 1186,
  timetz: 1266,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
} as const;

/** Types written from their PostgreSQL text form (exact), as STRING. */
const TEXT_CAST_OIDS = new Set<number>([
  OID.xml,
  OID.interval,
  OID.timetz,
  650, // cidr
  869, // inet
  829, // macaddr
  774, // macaddr8
  1560, // bit
  1562, // varbit
  3614, // tsvector
  3615, // tsquery
  600, // point
  601, // lseg
  602, // path
  603, // box
  604, // polygon
  628, // line
  718, // circle
  3220, // pg_lsn
  22, // int2vector
  30, // oidvector
  2970, // txid_snapshot
  5038, // pg_snapshot
  28, // xid
  5069, // xid8
  29, // cid
  24, // regproc
  2205, // regclass
  2206, // regtype
]);

const NATIVE_TEXT_OIDS = new Set<number>([OID.text, OID.varchar, OID.bpchar, OID.name, OID.char]);

/** Clamp bounds for infinite dates/timestamps: what BigQuery, Snowflake and Redshift accept. */
export const CLAMP = {
  /** 9999-12-31T23:59:59.999999Z in microseconds since 1970. */
  maxMicros: 253402300799999999n,
  /** 0001-01-01T00:00:00Z in microseconds since 1970. */
  minMicros: -62135596800000000n,
  /** 9999-12-31 in days since 1970. */
  maxDays: 2932896,
  /** 0001-01-01 in days since 1970. */
  minDays: -719162,
} as const;

/** Whether a constrained numeric typmod has a Parquet DECIMAL form (0 <= scale <= precision <= 38). */
function decimalFits(typmod: number): boolean {
  const t = numericTypmod(typmod);
  return t !== undefined && t.scale >= 0 && t.scale <= t.precision && t.precision <= 38;
}

/** Decodes a numeric typmod into precision and scale (PostgreSQL 15 allows a negative scale). */
export function numericTypmod(typmod: number): { precision: number; scale: number } | undefined {
  if (typmod < 4) return undefined;
  const t = typmod - 4;
  const precision = (t >> 16) & 0xffff;
  let scale = t & 0x7ff;
  if (scale & 0x400) scale -= 0x800;
  return { precision, scale };
}

const quoteIdent = (name: string) => `"${name.replaceAll('"', '""')}"`;

/** A first-pass decision for one described column: the expression to select it by. */
export interface ExprChoice {
  expr: string;
  note?: string;
}

/**
 * Chooses the SELECT expression for a column: itself, a user cast, or a cast to text/jsonb for
 * types whose exact form is their text. Throws a config error for types with no mapping.
 */
export function chooseExpr(
  col: DescribedColumn,
  types: ReadonlyMap<number, PgTypeInfo>,
  casts: Readonly<Record<string, string>>,
  measured: ReadonlyMap<string, NumericMeasure>,
): ExprChoice {
  const ident = quoteIdent(col.name);
  const cast = casts[col.name];
  if (cast !== undefined) {
    const target = cast.trim().toLowerCase();
    if (!/^[a-z_][a-z0-9_ ]*(\(\s*\d+(\s*,\s*-?\d+)?\s*\))?(\[\])?$/.test(target)) {
      throw configError(
        `source.casts.${col.name}: "${cast}" is not a type name; use e.g. text, jsonb, numeric(20,4)`,
      );
    }
    if (target === 'json' || target === 'jsonb')
      return { expr: `to_jsonb(${ident})`, note: 'cast: to_jsonb' };
    return { expr: `${ident}::${target}`, note: `cast: ${target}` };
  }
  const info = resolveDomain(col.typeOid, col.typmod, types);
  const type = types.get(info.oid);
  if (!type) return unsupported(col);
  if (type.category === 'A' && type.elem) {
    const elem = resolveDomain(type.elem, info.typmod, types);
    const elemType = types.get(elem.oid);
    if (!elemType) return unsupported(col);
    if (elemType.typtype === 'c') return { expr: `to_jsonb(${ident})`, note: 'composite array as JSON' };
    if (elem.oid === OID.numeric && !decimalFits(elem.typmod)) {
      return { expr: `${ident}::text[]`, note: 'numeric[] without a DECIMAL form as exact strings' };
    }
    if (elem.oid === OID.money)
      return { expr: `${ident}::numeric[]::text[]`, note: 'money[] as exact strings' };
    if (nativeKind(elem.oid, elem.typmod, elemType)) {
      return elem.oid === type.elem ? { expr: ident } : { expr: `${ident}::${baseArrayName(elemType)}` };
    }
    if (textCastable(elem.oid, elemType)) return { expr: `${ident}::text[]`, note: 'elements as text' };
    return unsupported(col);
  }
  if (type.typtype === 'c') return { expr: `to_jsonb(${ident})`, note: 'composite as JSON' };
  if (info.oid === OID.money) {
    const m = measured.get(col.name);
    return m && numericFitsDecimal(m)
      ? { expr: `${ident}::numeric`, note: 'money as its numeric value' }
      : { expr: `${ident}::numeric::text`, note: 'money as its exact numeric text' };
  }
  if (info.oid === OID.numeric && !numericTypmod(info.typmod)) {
    const m = measured.get(col.name);
    if (!m || !numericFitsDecimal(m))
      return { expr: `${ident}::text`, note: 'unconstrained numeric as exact string' };
  } else if (info.oid === OID.numeric && !decimalFits(info.typmod)) {
    return { expr: `${ident}::text`, note: `${col.formatted} has no DECIMAL form: exact string` };
  }
  if (nativeKind(info.oid, info.typmod, type))
    return { expr: info.oid === col.typeOid ? ident : `${ident}::${type.name}` };
  if (textCastable(info.oid, type)) return { expr: `${ident}::text`, note: `${type.name} as text` };
  return unsupported(col);
}

function baseArrayName(elemType: PgTypeInfo): string {
  return `${quoteIdent(elemType.name)}[]`;
}

function unsupported(col: DescribedColumn): never {
  throw configError(
    `column ${col.name} has type ${col.formatted}, which nightshift cannot write to Parquet as it is`,
    {
      hint: `cast it: set source.casts.${col.name} to a type it maps (text, jsonb, bytea, numeric(p,s)), e.g. casts: {${col.name}: text}`,
    },
  );
}

function resolveDomain(
  oid: number,
  typmod: number,
  types: ReadonlyMap<number, PgTypeInfo>,
): { oid: number; typmod: number } {
  let current = { oid, typmod };
  for (let depth = 0; depth < 16; depth++) {
    const t = types.get(current.oid);
    if (t?.typtype !== 'd') return current;
    current = { oid: t.base, typmod: t.baseTypmod >= 0 ? t.baseTypmod : current.typmod };
  }
  return current;
}

function textCastable(oid: number, type: PgTypeInfo): boolean {
  return TEXT_CAST_OIDS.has(oid) || type.category === 'S' || type.typtype === 'r' || type.typtype === 'm';
}

function nativeKind(oid: number, typmod: number, type: PgTypeInfo): DecoderKind | undefined {
  if (type.typtype === 'e') return 'text';
  switch (oid) {
    case OID.bool:
      return 'bool';
    case OID.int2:
      return 'int2';
    case OID.int4:
      return 'int4';
    case OID.int8:
      return 'int8';
    case OID.oid:
      return 'oid';
    case OID.float4:
      return 'float4';
    case OID.float8:
      return 'float8';
    case OID.numeric: {
      const t = numericTypmod(typmod);
      if (!t) return 'decimal';
      return t.scale >= 0 && t.scale <= t.precision && t.precision <= 38 ? 'decimal' : undefined;
    }
    case OID.bytea:
      return 'bytea';
    case OID.json:
      return 'text';
    case OID.jsonb:
      return 'jsonb';
    case OID.uuid:
      return 'uuid';
    case OID.date:
      return 'date';
    case OID.time:
      return 'time';
    case OID.timestamp:
    case OID.timestamptz:
      return 'timestamp';
    default:
      return NATIVE_TEXT_OIDS.has(oid) ? 'text' : undefined;
  }
}

/** Measured precision and scale of an unconstrained numeric column in the window. */
export interface NumericMeasure {
  /** Largest number of digits left of the point. */
  intDigits: number;
  /** Largest scale. */
  scale: number;
  /** Whether NaN or +/-Infinity occur (they have no DECIMAL form). */
  special: boolean;
}

/**
 * Second pass, on the described export query: the decoder and Parquet column of each expression.
 * `measured` gives the precision of unconstrained numeric columns under the `auto` policy.
 */
export function planColumn(
  col: DescribedColumn,
  expr: ExprChoice,
  types: ReadonlyMap<number, PgTypeInfo>,
  measured: ReadonlyMap<string, NumericMeasure>,
): ColumnPlan {
  const info = resolveDomain(col.typeOid, col.typmod, types);
  const type = types.get(info.oid);
  if (!type) return unsupported(col);
  const isArray = type.category === 'A' && type.elem !== 0;
  const target = isArray ? resolveDomain(type.elem, info.typmod, types) : info;
  const targetType = types.get(target.oid);
  const kind = targetType ? nativeKind(target.oid, target.typmod, targetType) : undefined;
  if (!kind || !targetType) return unsupported(col);
  const base = {
    name: col.name,
    expr: expr.expr,
    pgType: col.formatted,
    decoder: kind,
    array: isArray,
    note: expr.note,
  };
  const spec = (
    physical: ColumnSpec['physical'],
    logical: ColumnSpec['logical'],
    typeLength?: number,
  ): ColumnSpec => ({
    name: col.name,
    physical,
    logical,
    list: isArray || undefined,
    ...(typeLength === undefined ? {} : { typeLength }),
  });
  switch (kind) {
    case 'bool':
      return { ...base, parquet: spec(Physical.BOOLEAN, { kind: 'none' }) };
    case 'int2':
      return { ...base, parquet: spec(Physical.INT32, { kind: 'int', bits: 16, signed: true }) };
    case 'int4':
      return { ...base, parquet: spec(Physical.INT32, { kind: 'int', bits: 32, signed: true }) };
    case 'int8':
    case 'oid':
      return { ...base, parquet: spec(Physical.INT64, { kind: 'int', bits: 64, signed: true }) };
    case 'float4':
      return { ...base, parquet: spec(Physical.FLOAT, { kind: 'none' }) };
    case 'float8':
      return { ...base, parquet: spec(Physical.DOUBLE, { kind: 'none' }) };
    case 'decimal':
      return planDecimal(col, base, target.typmod, measured, spec);
    case 'text':
      return {
        ...base,
        parquet: spec(Physical.BYTE_ARRAY, target.oid === OID.json ? { kind: 'json' } : { kind: 'string' }),
        note: base.note ?? (targetType.typtype === 'e' ? 'enum label as string' : undefined),
      };
    case 'jsonb':
      return { ...base, parquet: spec(Physical.BYTE_ARRAY, { kind: 'json' }) };
    case 'bytea':
      return { ...base, parquet: spec(Physical.BYTE_ARRAY, { kind: 'none' }) };
    case 'uuid':
      return { ...base, parquet: spec(Physical.FIXED_LEN_BYTE_ARRAY, { kind: 'uuid' }, 16) };
    case 'date':
      return { ...base, parquet: spec(Physical.INT32, { kind: 'date' }) };
    case 'time':
      return { ...base, parquet: spec(Physical.INT64, { kind: 'time', utc: false }) };
    case 'timestamp':
      return {
        ...base,
        parquet: spec(Physical.INT64, { kind: 'timestamp', utc: target.oid === OID.timestamptz }),
      };
  }
}

type SpecFn = (
  physical: ColumnSpec['physical'],
  logical: ColumnSpec['logical'],
  typeLength?: number,
) => ColumnSpec;

function planDecimal(
  col: DescribedColumn,
  base: Omit<ColumnPlan, 'parquet'>,
  typmod: number,
  measured: ReadonlyMap<string, NumericMeasure>,
  spec: SpecFn,
): ColumnPlan {
  let ps = numericTypmod(typmod);
  let note = base.note;
  if (!ps) {
    const m = measured.get(col.name);
    if (!m) throw new Error(`internal: numeric column ${col.name} was not measured`);
    ps = { precision: 38, scale: Math.min(m.scale, 38) };
    note = `unconstrained numeric as DECIMAL(38,${ps.scale}) (measured)`;
  }
  const { precision, scale } = ps;
  const logical = { kind: 'decimal', precision, scale } as const;
  const parquet =
    precision <= 9
      ? spec(Physical.INT32, logical)
      : precision <= 18
        ? spec(Physical.INT64, logical)
        : spec(Physical.FIXED_LEN_BYTE_ARRAY, logical, 16);
  return { ...base, precision, scale, parquet, note };
}

/** Whether an unconstrained numeric column's measured values fit DECIMAL(38,s). */
export function numericFitsDecimal(m: NumericMeasure): boolean {
  return !m.special && m.scale <= 38 && m.intDigits + m.scale <= 38;
}

export { quoteIdent };

/** Whether a column is unconstrained numeric whose DECIMAL scale must be measured first. */
export function needsMeasure(
  col: DescribedColumn,
  types: ReadonlyMap<number, PgTypeInfo>,
  casts: Readonly<Record<string, string>>,
): boolean {
  if (casts[col.name] !== undefined) return false;
  const info = resolveDomain(col.typeOid, col.typmod, types);
  return (info.oid === OID.numeric && !numericTypmod(info.typmod)) || info.oid === OID.money;
}
