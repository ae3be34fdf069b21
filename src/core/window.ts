/**
 * Windows: the range of rows one run moves. The source selects a window and the warehouse
 * replaces it, so both render the same predicate, each with its own quoting and parameters.
 */

/** A bound of a window: values of the bound columns, as PostgreSQL prints them. */
export interface Bound {
  /** Values for the window's columns, in order (cursor first, then key columns). */
  readonly values: readonly string[];
  /** Whether rows equal to the bound are inside the window. */
  readonly inclusive: boolean;
}

/**
 * A lexicographic range over `columns`. Incremental windows range over (cursor, key...) with an
 * exclusive lower and an inclusive upper bound; backfill windows over the cursor alone,
 * [from, to). A window with neither bound is the whole source.
 */
export interface Window {
  readonly columns: readonly string[];
  /** PostgreSQL type of each column (format_type), for casting the bound values. */
  readonly types: readonly string[];
  readonly lower?: Bound;
  readonly upper?: Bound;
}

/** How a dialect spells identifiers and bound values. */
export interface PredicateDialect {
  quote(identifier: string): string;
  /** Renders the value of window column `index` (a parameter or a literal). */
  param(value: string, index: number): string;
}

/** Builds `(a > $1) OR (a = $1 AND b > $2)`-style lexicographic comparisons. */
export function lexicographic(
  columns: readonly string[],
  params: readonly string[],
  op: '>' | '>=' | '<' | '<=',
): string {
  const strict = op === '>' || op === '>=' ? '>' : '<';
  const terms: string[] = [];
  for (let i = 0; i < columns.length; i++) {
    const eqs = columns.slice(0, i).map((c, j) => `${c} = ${params[j]}`);
    const last = i === columns.length - 1 ? op : strict;
    terms.push([...eqs, `${columns[i]} ${last} ${params[i]}`].join(' AND '));
  }
  return terms.length === 1 ? terms[0] : `(${terms.map((t) => `(${t})`).join(' OR ')})`;
}

/** The WHERE condition selecting a window's rows. */
export function windowPredicate(window: Window, dialect: PredicateDialect): string {
  const cols = window.columns.map((c) => dialect.quote(c));
  const parts: string[] = [];
  const render = (bound: Bound) => bound.values.map((v, i) => dialect.param(v, i));
  if (window.lower) {
    const n = window.lower.values.length;
    parts.push(lexicographic(cols.slice(0, n), render(window.lower), window.lower.inclusive ? '>=' : '>'));
  }
  if (window.upper) {
    const n = window.upper.values.length;
    parts.push(lexicographic(cols.slice(0, n), render(window.upper), window.upper.inclusive ? '<=' : '<'));
  }
  return parts.length ? parts.join(' AND ') : 'TRUE';
}

/** A short human form of a window, for logs: `(2024-01-01, 17) .. (2024-01-02, 99)]`. */
export function describeWindow(window: Window): string {
  if (!window.lower && !window.upper) return 'all rows';
  const fmt = (b: Bound | undefined, open: boolean) =>
    b
      ? `${open ? (b.inclusive ? '[' : '(') : ''}${b.values.join(', ')}${open ? '' : b.inclusive ? ']' : ')'}`
      : '';
  return `${fmt(window.lower, true) || '(-inf'} .. ${fmt(window.upper, false) || '+inf)'}`;
}
