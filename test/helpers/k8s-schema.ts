/**
 * A strict check of Kubernetes manifests against the API schema of a pinned Kubernetes version:
 * the models of @kubernetes/client-node 1.0.0 (pinned exactly in package.json), generated from
 * Kubernetes v1.32.0's OpenAPI spec. Each model becomes a JSON Schema with its required
 * properties and `additionalProperties: false`, so a misspelled or misplaced field fails, which
 * kubernetes-models' validators (open objects) and kubectl's client-side dry run (which needs a
 * server for the schema) do not catch. v1.32 is the oldest version the manifests claim to work on,
 * so a field only newer servers know fails here too.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

export const KUBERNETES_VERSION = 'v1.32.0';

export type JsonSchema = {
  type?: string | string[];
  properties?: Record<string, JsonSchema>;
  required?: string[];
  additionalProperties?: boolean | JsonSchema;
  items?: JsonSchema;
  $ref?: string;
  format?: string;
};

/** The API group/version each kind the manifests may use belongs to. */
const KINDS: Record<string, string> = {
  CronJob: 'batch/v1',
  Job: 'batch/v1',
  ConfigMap: 'v1',
  Secret: 'v1',
  ServiceAccount: 'v1',
  PersistentVolumeClaim: 'v1',
  NetworkPolicy: 'networking.k8s.io/v1',
};

const models = join(
  dirname(createRequire(import.meta.url).resolve('@kubernetes/client-node/package.json')),
  'dist/gen/models',
);

interface Attribute {
  baseName: string;
  type: string;
  format: string;
}

const definitions = new Map<string, JsonSchema>();

/** The JSON Schema of one model, e.g. V1CronJob, built from its generated class. */
export function modelSchema(name: string): JsonSchema {
  const known = definitions.get(name);
  if (known) return known;
  const js = readFileSync(join(models, `${name}.js`), 'utf8');
  const dts = readFileSync(join(models, `${name}.d.ts`), 'utf8');
  const map = /attributeTypeMap = (\[[\s\S]*?\]);/.exec(js);
  if (!map) throw new Error(`${name}: no attributeTypeMap in the generated model`);
  const attributes = JSON.parse(map[1]) as Attribute[];
  const required = [...dts.matchAll(/^\s+'([^']+)':/gm)].map((m) => m[1]);
  const schema: JsonSchema = { type: 'object', properties: {}, additionalProperties: false, required };
  definitions.set(name, schema);
  for (const a of attributes) (schema.properties as Record<string, JsonSchema>)[a.baseName] = typeSchema(a);
  return schema;
}

function typeSchema({ type, format }: { type: string; format: string }): JsonSchema {
  const array = /^Array<(.+)>$/.exec(type);
  if (array) return { type: 'array', items: typeSchema({ type: array[1], format: '' }) };
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map) return { type: 'object', additionalProperties: typeSchema({ type: map[1], format: '' }) };
  switch (type) {
    case 'string':
    case 'Date':
      return { type: 'string', format };
    case 'number':
      return { type: format.startsWith('int') ? 'integer' : 'number' };
    case 'boolean':
      return { type: 'boolean' };
    case 'IntOrString':
      return { type: ['integer', 'string'] };
    case 'any':
    case 'object':
      return {};
    default:
      if (/^V\d/.test(type)) return { $ref: type };
      throw new Error(`unknown model type ${type}`);
  }
}

function typeOf(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (value === null) return 'null';
  if (typeof value === 'number') return Number.isInteger(value) ? 'integer' : 'number';
  return typeof value;
}

/** Validates a value; returns one message per violation, each with its path. */
export function validateAgainst(schema: JsonSchema, value: unknown, path = ''): string[] {
  if (schema.$ref) return validateAgainst(modelSchema(schema.$ref), value, path);
  const errors: string[] = [];
  const actual = typeOf(value);
  const types = schema.type === undefined ? undefined : [schema.type].flat();
  if (types && !types.includes(actual) && !(actual === 'integer' && types.includes('number'))) {
    return [`${path || '/'}: expected ${types.join(' or ')}, got ${actual}`];
  }
  if (actual === 'array' && schema.items) {
    (value as unknown[]).forEach((item, i) => {
      errors.push(...validateAgainst(schema.items as JsonSchema, item, `${path}/${i}`));
    });
  }
  if (actual === 'object') {
    const object = value as Record<string, unknown>;
    for (const name of schema.required ?? []) {
      if (object[name] === undefined) errors.push(`${path}/${name}: required`);
    }
    for (const [key, child] of Object.entries(object)) {
      const property = schema.properties?.[key];
      if (property) errors.push(...validateAgainst(property, child, `${path}/${key}`));
      else if (schema.additionalProperties === false) errors.push(`${path}/${key}: unknown field`);
      else if (typeof schema.additionalProperties === 'object')
        errors.push(...validateAgainst(schema.additionalProperties, child, `${path}/${key}`));
    }
  }
  return errors;
}

/** Validates one manifest (any kind in KINDS) against the pinned Kubernetes schema. */
export function validateManifest(doc: Record<string, unknown>): string[] {
  const kind = String(doc.kind);
  const apiVersion = String(doc.apiVersion);
  const expected = KINDS[kind];
  if (!expected) return [`${kind}: not a kind these manifests may use`];
  if (apiVersion !== expected) return [`${kind}: apiVersion ${apiVersion}, expected ${expected}`];
  const version = apiVersion.split('/').pop() as string;
  const model = `${version[0].toUpperCase()}${version.slice(1)}${kind}`;
  return validateAgainst(modelSchema(model), doc).map((e) => `${kind} ${e}`);
}
