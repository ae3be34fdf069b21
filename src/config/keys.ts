/**
 * The list of configuration keys, read off the schema: the environment overrides and the
 * reference in docs/configuration.md both come from here, so neither can drift from what is validated.
 */
import type { z } from 'zod';
import { configSchema } from './schema.js';

/** One configuration key. */
export interface ConfigKey {
  /** Dotted path, `source.cursor`. */
  readonly path: string;
  /** The environment variable that overrides it, `NIGHTSHIFT_SOURCE_CURSOR`. */
  readonly env: string | undefined;
  /** What it is for. */
  readonly description: string;
  /** Its default, when it has one. */
  readonly defaultValue: unknown;
  /** Whether it must be given. */
  readonly required: boolean;
}

type AnySchema = z.ZodType & { def: { type: string; [k: string]: unknown }; description?: string };

function unwrap(schema: AnySchema): { inner: AnySchema; optional: boolean; defaultValue: unknown } {
  let inner = schema;
  let optional = false;
  let defaultValue: unknown;
  for (;;) {
    const { type } = inner.def;
    if (type === 'default' || type === 'prefault') {
      optional = true;
      defaultValue ??= inner.def.defaultValue;
      inner = inner.def.innerType as AnySchema;
    } else if (type === 'optional' || type === 'nullable') {
      optional = true;
      inner = inner.def.innerType as AnySchema;
    } else {
      return { inner, optional, defaultValue };
    }
  }
}

function walk(schema: AnySchema, prefix: string[], parentRequired: boolean, out: ConfigKey[]): void {
  const { inner, optional, defaultValue } = unwrap(schema);
  const description = schema.description ?? inner.description ?? '';
  const required = parentRequired && !optional;
  const objectShape =
    inner.def.type === 'object' ? (inner.def.shape as Record<string, AnySchema>) : undefined;
  if (objectShape) {
    for (const [name, child] of Object.entries(objectShape)) walk(child, [...prefix, name], required, out);
    return;
  }
  const isRecord = inner.def.type === 'record';
  out.push({
    path: prefix.join('.'),
    env: isRecord ? undefined : `NIGHTSHIFT_${prefix.join('_').toUpperCase()}`,
    description,
    defaultValue: isObjectDefault(defaultValue) ? undefined : defaultValue,
    required,
  });
}

function isObjectDefault(value: unknown): boolean {
  return (
    typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length > 0
  );
}

/** Descriptions of the sections (objects) of the configuration, by dotted path. */
export function configSections(): Map<string, string> {
  const sections = new Map<string, string>();
  const visit = (schema: AnySchema, prefix: string[]) => {
    const { inner } = unwrap(schema);
    if (inner.def.type !== 'object') return;
    if (prefix.length > 0) sections.set(prefix.join('.'), schema.description ?? inner.description ?? '');
    for (const [name, child] of Object.entries(inner.def.shape as Record<string, AnySchema>)) {
      visit(child, [...prefix, name]);
    }
  };
  visit(configSchema as unknown as AnySchema, []);
  return sections;
}

let cached: ConfigKey[] | undefined;

/** Every leaf key of the configuration, in schema order. */
export function configKeys(): readonly ConfigKey[] {
  if (!cached) {
    cached = [];
    walk(configSchema as unknown as AnySchema, [], true, cached);
  }
  return cached;
}
