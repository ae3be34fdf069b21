/**
 * SQL names as the warehouses that follow the SQL standard resolve them (Snowflake folds unquoted
 * names to upper case, Redshift to lower case): parsing `a."B.c"` from the config into its parts,
 * quoting, and finding the table column an exported column loads into.
 */
import { configError } from '../errors.js';

/** A double-quoted identifier. */
export const quote = (id: string): string => `"${id.replaceAll('"', '""')}"`;

const UNQUOTED = /^[A-Za-z_][A-Za-z0-9_$]*$/;

/** How one warehouse resolves names. */
export interface NameDialect {
  /** `Snowflake`, `Redshift`: for messages. */
  readonly name: string;
  /** What an unquoted part becomes. */
  readonly fold: (part: string) => string;
  /** Example of a quoted name, for the hint. */
  readonly example: string;
}

/**
 * Splits `a.b."C.d"` into at most `max` parts: an unquoted part is folded as the dialect does, a
 * double-quoted part (with `""` for a quote) is kept as written.
 */
export function splitName(text: string, key: string, dialect: NameDialect, max: number): string[] {
  const parts: string[] = [];
  let i = 0;
  while (i < text.length) {
    if (text[i] === '"') {
      const [part, next] = quotedPart(text, i, key);
      parts.push(part);
      i = next;
    } else {
      const dot = text.indexOf('.', i);
      const end = dot < 0 ? text.length : dot;
      const part = text.slice(i, end);
      if (!UNQUOTED.test(part)) {
        throw configError(`${key}: "${part}" in ${text} is not a ${dialect.name} name`, {
          hint: `use letters, digits, _ and $, or double-quote the name as it was created: ${dialect.example}`,
        });
      }
      parts.push(dialect.fold(part));
      i = end;
    }
    if (i >= text.length) break;
    if (text[i] !== '.') throw configError(`${key}: expected "." after a quoted name in ${text}`);
    i++;
    if (i >= text.length) throw configError(`${key}: ${text} ends with "."`);
  }
  if (parts.length === 0 || parts.length > max) {
    throw configError(`${key}: ${text} should have 1 to ${max} dot-separated parts`);
  }
  return parts;
}

/** The quoted part starting at `start`, and the index after its closing quote. */
function quotedPart(text: string, start: number, key: string): [string, number] {
  let part = '';
  let j = start + 1;
  for (; j < text.length; j++) {
    if (text[j] === '"' && text[j + 1] === '"') {
      part += '"';
      j++;
    } else if (text[j] === '"') break;
    else part += text[j];
  }
  if (j >= text.length || !part)
    throw configError(`${key}: ${text} has an unterminated or empty quoted name`);
  return [part, j + 1];
}

/**
 * The table column a Parquet column loads into: the exact name, else the one name equal to it
 * ignoring case (an unquoted, folded column for a PostgreSQL lower-case one). `newName` is how a
 * column created for it would be named, for the hint.
 */
export function resolveColumn<C extends { readonly name: string }>(
  columns: ReadonlyMap<string, C>,
  name: string,
  table: string,
  newName: (name: string) => string,
): C {
  const exact = columns.get(name);
  if (exact) return exact;
  const folded = [...columns.values()].filter((c) => c.name.toLowerCase() === name.toLowerCase());
  if (folded.length === 1) return folded[0];
  if (folded.length > 1) {
    throw configError(`${table} has several columns named ${name} in different cases`, {
      hint: 'rename the columns so that each exported column matches one of them',
    });
  }
  throw configError(`${table} has no column ${name}, which the export holds`, {
    hint: `add it (ALTER TABLE ${table} ADD COLUMN ${quote(newName(name))} <type>), or load into a new table`,
  });
}
