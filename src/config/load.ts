/**
 * Loading the configuration: a YAML file (`--config` or NIGHTSHIFT_CONFIG), `${VAR}` and
 * `${file:/path}` interpolation, `NIGHTSHIFT_<PATH>` environment overrides, then validation with
 * messages that name the key, what was given and what is expected. The only module that reads
 * the environment.
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml, YAMLParseError } from 'yaml';
import type { z } from 'zod';
import { configError } from '../errors.js';
import { configKeys } from './keys.js';
import { hideUrlPassword, type PgUrlParts, parsePgUrl } from './pg-url.js';
import { REDACTED, type Redactor, redactor as sharedRedactor } from './redact.js';
import { type Config, configSchema, SECRET_KEYS } from './schema.js';

export interface LoadOptions {
  /** Path of the YAML file; when absent, NIGHTSHIFT_CONFIG, and when that is absent, env only. */
  path?: string;
  /** The environment to read (default: process.env). */
  env?: NodeJS.ProcessEnv;
  /** Values that override both file and environment, by dotted path (CLI flags). */
  overrides?: Record<string, unknown>;
  /** Where secrets found while loading are registered (default: the process-wide redactor). */
  redactor?: Redactor;
}

export interface LoadedConfig {
  config: Config;
  /** Where the configuration came from, for the log. */
  origin: string;
}

const INTERPOLATION = /\$\$\{|\$\{([^}]*)\}/g;
const SECRET_VAR = /(PASS|SECRET|TOKEN|PRIVATE|CREDENTIAL|KEY|AUTH)/i;

/** Loads, interpolates and validates the configuration. Throws a config error (exit 2). */
export function loadConfig(options: LoadOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const redactor = options.redactor ?? sharedRedactor;
  redactor.addFromEnv(env);
  const path = options.path ?? env.NIGHTSHIFT_CONFIG;
  const raw = path ? readYaml(path) : {};
  const interpolated = interpolateTree(raw, [], env, redactor);
  applyEnvOverrides(interpolated, env);
  for (const [key, value] of Object.entries(options.overrides ?? {}))
    setPath(interpolated, key.split('.'), value);
  const result = configSchema.safeParse(interpolated);
  if (!result.success) {
    throw configError(formatIssues(result.error, interpolated, path), {
      hint: path
        ? 'see the configuration reference in docs/configuration.md'
        : 'no config file was given: pass --config /path/to/nightshift.yaml or set NIGHTSHIFT_CONFIG (or set every required key as a NIGHTSHIFT_* variable); `nightshift demo` runs without one',
    });
  }
  registerSecrets(result.data, redactor);
  return { config: result.data, origin: path ? `file ${path} + environment` : 'environment' };
}

function readYaml(path: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw configError(`cannot read the config file ${path}: ${(err as Error).message}`, {
      cause: err,
      hint: 'pass --config /path/to/nightshift.yaml or set NIGHTSHIFT_CONFIG',
    });
  }
  let doc: unknown;
  try {
    doc = parseYaml(text, { prettyErrors: true });
  } catch (err) {
    const where = err instanceof YAMLParseError && err.linePos ? ` at line ${err.linePos[0].line}` : '';
    throw configError(`${path} is not valid YAML${where}: ${(err as Error).message.split('\n')[0]}`, {
      cause: err,
    });
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) {
    throw configError(`${path} must hold a YAML mapping (key: value lines), got ${describe(doc)}`);
  }
  return doc as Record<string, unknown>;
}

function interpolateTree(node: unknown, path: string[], env: NodeJS.ProcessEnv, redactor: Redactor): unknown {
  if (typeof node === 'string') return interpolate(node, path.join('.'), env, redactor);
  if (Array.isArray(node)) return node.map((v, i) => interpolateTree(v, [...path, String(i)], env, redactor));
  if (node && typeof node === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(node)) out[k] = interpolateTree(v, [...path, k], env, redactor);
    return out;
  }
  return node;
}

/** Replaces `${VAR}`, `${VAR:-default}` and `${file:/path}`; `$${` is a literal `${`. */
export function interpolate(text: string, key: string, env: NodeJS.ProcessEnv, redactor: Redactor): string {
  return text.replace(INTERPOLATION, (match, expr: string | undefined) => {
    if (expr === undefined) return '${';
    if (expr.startsWith('file:')) {
      const file = expr.slice(5);
      try {
        const content = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
        registerValue(content, match, redactor);
        return content;
      } catch (err) {
        throw configError(`${key}: cannot read ${match}: ${(err as Error).message}`, {
          cause: err,
          hint: 'mount the secret file at that path, or change the reference',
        });
      }
    }
    const [name, fallback] = splitDefault(expr);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw configError(
        `${key}: ${match} is not a valid reference; use \${VAR}, \${VAR:-default} or \${file:/path}`,
      );
    }
    const value = env[name];
    if (value === undefined || value === '') {
      if (fallback !== undefined) {
        if (SECRET_KEYS.includes(key)) registerValue(fallback, match, redactor);
        return fallback;
      }
      throw configError(`${key}: environment variable ${name} is not set`, {
        hint: `set ${name}, or give a default with \${${name}:-value}`,
      });
    }
    if (SECRET_VAR.test(name) || SECRET_KEYS.includes(key)) registerValue(value, match, redactor);
    return value;
  });
}

/**
 * Registers a value read from a file or the environment as a secret: a whole connection URL
 * (`url: ${file:/secrets/url}`) only for its password, anything else as it is.
 */
function registerValue(value: string, origin: string, redactor: Redactor): void {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(value))
    redactor.addUrlPassword(value, `the password of the URL in ${origin}`);
  else redactor.add(value, origin);
}

function splitDefault(expr: string): [string, string | undefined] {
  const at = expr.indexOf(':-');
  return at < 0 ? [expr, undefined] : [expr.slice(0, at), expr.slice(at + 2)];
}

/** `NIGHTSHIFT_SOURCE_CURSOR=updated_at` sets `source.cursor`; values are read as YAML scalars. */
function applyEnvOverrides(tree: unknown, env: NodeJS.ProcessEnv): void {
  for (const key of configKeys()) {
    if (!key.env) continue;
    const value = env[key.env];
    if (value === undefined || value === '') continue;
    // A secret is a string as given: NIGHTSHIFT_SOURCE_PASSWORD=0000 is not the number 0.
    setPath(tree, key.path.split('.'), SECRET_KEYS.includes(key.path) ? value : parseEnvValue(value));
  }
}

function parseEnvValue(value: string): unknown {
  try {
    const parsed: unknown = parseYaml(value);
    return typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? value : parsed;
  } catch {
    return value;
  }
}

function setPath(tree: unknown, path: string[], value: unknown): void {
  let node = tree as Record<string, unknown>;
  for (const part of path.slice(0, -1)) {
    if (typeof node[part] !== 'object' || node[part] === null) node[part] = {};
    node = node[part] as Record<string, unknown>;
  }
  node[path[path.length - 1]] = value;
}

function getPath(tree: unknown, path: readonly PropertyKey[]): unknown {
  let node = tree;
  for (const part of path) {
    if (typeof node !== 'object' || node === null) return undefined;
    node = (node as Record<PropertyKey, unknown>)[part];
  }
  return node;
}

function formatIssues(error: z.ZodError, input: unknown, file: string | undefined): string {
  const lines = error.issues.map((issue) => {
    const key = issue.path.join('.') || '(top level)';
    const given = getPath(input, issue.path);
    const secret = SECRET_KEYS.includes(key);
    const shown = given === undefined ? 'nothing' : secret ? 'a value (hidden: secret)' : describe(given);
    const envName = configKeys().find((k) => k.path === key)?.env;
    const where = envName ? ` (or ${envName})` : '';
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.map((k) => (issue.path.length ? `${key}.${k}` : k));
      return `unknown key ${keys.join(', ')}: check the spelling against the configuration reference`;
    }
    if (given === undefined && issue.code === 'invalid_type') return `${key}: required, set it${where}`;
    return `${key}: ${issue.message}; got ${shown}${where}`;
  });
  const origin = file ? ` in ${file}` : '';
  return `invalid configuration${origin}:\n  - ${lines.join('\n  - ')}`;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return `a list (${value.length} items)`;
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 80 ? `${value.slice(0, 77)}...` : value);
  return `${String(value)} (${typeof value})`;
}

function registerSecrets(config: Config, redactor: Redactor): void {
  for (const key of SECRET_KEYS) {
    const value = getPath(config, key.split('.'));
    if (typeof value !== 'string') continue;
    if (key === 'source.url') registerSourceUrl(value, redactor);
    else redactor.add(value, key);
  }
  const visit = (node: unknown) => {
    if (typeof node === 'string') redactor.addUrlPassword(node);
    else if (node && typeof node === 'object') Object.values(node).forEach(visit);
  };
  visit(config);
}

/** The password of source.url, as written and decoded (validation already parsed it). */
function registerSourceUrl(url: string, redactor: Redactor): void {
  let parts: PgUrlParts;
  try {
    parts = parsePgUrl(url);
  } catch {
    return;
  }
  const origin = 'the password in source.url';
  redactor.add(parts.rawPassword, origin);
  redactor.add(parts.password, origin);
}

/**
 * The configuration as it may be logged: the secret keys hidden where they stand, whatever
 * their length (a URL keeps everything but its password), then every string redacted by value.
 */
export function redactedConfig(config: Config, redactor: Redactor = sharedRedactor): Config {
  const copy = structuredClone(config);
  for (const key of SECRET_KEYS) {
    const path = key.split('.');
    const value = getPath(copy, path);
    if (typeof value !== 'string' || value === '') continue;
    setPath(copy, path, key === 'source.url' ? hideUrlPassword(value, REDACTED) : REDACTED);
  }
  return redactor.redactValue(copy);
}
