/**
 * Secret redaction by value. Paths are not enough: a password also shows up inside a connection
 * URL or in a driver's error message. Every writer of logs, summaries, manifests and the
 * termination log passes its values through one Redactor before it serialises them, so a
 * replacement only ever changes the inside of a string: never a number, a key or the JSON
 * around it.
 *
 * A secret shorter than MIN_SECRET_LENGTH is not replaced by value: `0000` or `test` would take
 * pieces out of row counts, file names and job names. Such a secret is hidden only where it
 * stands (the password of a URL, the secret configuration keys), and `shortSecretWarning()` says
 * so.
 */

export const REDACTED = '[REDACTED]';

/**
 * Secrets at least this long are replaced wherever they appear. Eight characters: a value that
 * long seldom occurs by chance in the text nightshift prints (names, paths, run ids, counts),
 * while `0000`, `test` or `admin` occur everywhere.
 */
export const MIN_SECRET_LENGTH = 8;

/** Environment variable names whose values are treated as secrets wherever they appear. */
const SECRET_ENV_NAME = /(PASS|SECRET|TOKEN|PRIVATE|CREDENTIAL|_KEY$|^KEY$|AUTH)/i;

/**
 * Names that say where a secret is, not what it is (AWS_WEB_IDENTITY_TOKEN_FILE,
 * AWS_CONTAINER_CREDENTIALS_FULL_URI): their values are paths and endpoints `whoami` shows.
 */
const SECRET_LOCATION_NAME = /(_FILE|_URI)$/i;

/**
 * `scheme://user:password@`: whatever the password, it is never printed. The password runs to
 * the last `@` before a `/`, a space or a quote, so an unencoded `@` in it is hidden too.
 */
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s/:@"'?#]*:)([^\s/"']*)@/gi;

/** A JSON string literal, for the fallback when a line is not one JSON value. */
const JSON_STRING = /"(?:[^"\\]|\\.)*"/g;

export class Redactor {
  private readonly secrets = new Set<string>();
  /** Where each secret too short to replace by value came from. */
  private readonly short = new Set<string>();
  private pattern: RegExp | undefined;
  /** The same alternatives without the global flag, for test(). */
  private probe: RegExp | undefined;

  /**
   * Registers a secret, and the forms it takes in URLs and JSON. `origin` says where it came
   * from (`source.password`, `AWS_SECRET_ACCESS_KEY`) for the warning about short secrets.
   */
  add(secret: string | undefined, origin = 'a secret'): void {
    if (!secret) return;
    if (secret.length < MIN_SECRET_LENGTH) {
      this.short.add(origin);
      return;
    }
    const forms = [
      secret,
      JSON.stringify(secret).slice(1, -1),
      encodeURIComponent(secret),
      userinfoForm(secret),
    ];
    for (const line of secret.split(/\r?\n/)) if (line.trim().length >= 16) forms.push(line.trim());
    for (const form of forms) if (form.length >= MIN_SECRET_LENGTH) this.secrets.add(form);
    this.pattern = undefined;
    this.probe = undefined;
  }

  /** Registers the password of a URL (`scheme://user:password@host`), if it has one. */
  addUrlPassword(url: string, origin = 'the password of a URL'): void {
    const match = /^[a-z][a-z0-9+.-]*:\/\/[^/@:?#]*:([^/]*)@/i.exec(url);
    if (!match) return;
    const raw = match[1];
    this.add(raw, origin);
    try {
      this.add(decodeURIComponent(raw), origin);
    } catch {
      // a malformed escape: the raw form is already registered
    }
  }

  /** Registers every environment value whose variable name says it is a secret. */
  addFromEnv(env: NodeJS.ProcessEnv): void {
    for (const [name, value] of Object.entries(env)) {
      if (value && SECRET_ENV_NAME.test(name) && !SECRET_LOCATION_NAME.test(name)) this.add(value, name);
    }
  }

  /** How many forms of secrets are replaced by value. */
  get size(): number {
    return this.secrets.size;
  }

  /**
   * The warning to print when some secrets are too short to be replaced by value, naming where
   * they came from (never what they are); undefined when there are none.
   */
  shortSecretWarning(): string | undefined {
    if (this.short.size === 0) return undefined;
    return `secrets shorter than ${MIN_SECRET_LENGTH} characters (${[...this.short].join(', ')}) are hidden only where they stand (the password of a URL, secret configuration keys): replacing them wherever they appear would mangle names, paths and numbers, so a message that quotes one would show it; use longer secrets`;
  }

  /** Replaces every registered secret in one string, and any password written into a URL. */
  redact(text: string): string {
    text = text.replace(URL_PASSWORD, `$1${REDACTED}@`);
    if (this.secrets.size === 0) return text;
    return text.replace(this.patterns().pattern, REDACTED);
  }

  /**
   * A deep copy of `value` with every string redacted: strings inside arrays and plain objects,
   * never keys, numbers or other values (a Date stays a Date).
   */
  redactValue<T>(value: T): T {
    if (typeof value === 'string') return this.redact(value) as T;
    if (Array.isArray(value)) return value.map((v) => this.redactValue(v)) as T;
    if (isPlainObject(value)) {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = this.redactValue(v);
      return out as T;
    }
    return value;
  }

  /**
   * Serialised JSON (one log line, with or without its newline) with the secrets in its string
   * values replaced. The last net behind the writers that redact before serialising: it
   * parses, redacts values and serialises again, so its output is always valid JSON.
   */
  redactJson(text: string): string {
    if (!this.mayHold(text)) return text;
    const newline = text.endsWith('\n') ? '\n' : '';
    try {
      return `${JSON.stringify(this.redactValue(JSON.parse(text)))}${newline}`;
    } catch {
      // Not one JSON value: redact each string literal as a whole, which keeps the JSON around it.
      return text.replace(JSON_STRING, (literal) => {
        try {
          return JSON.stringify(this.redact(JSON.parse(literal) as string));
        } catch {
          return literal;
        }
      });
    }
  }

  /** Whether `text` may hold something to replace: a cheap test before parsing. */
  private mayHold(text: string): boolean {
    if (text.includes('://')) return true;
    return this.secrets.size > 0 && this.patterns().probe.test(text);
  }

  private patterns(): { pattern: RegExp; probe: RegExp } {
    if (!this.pattern || !this.probe) {
      const sorted = [...this.secrets].sort((a, b) => b.length - a.length);
      const source = sorted.map(escapeRegExp).join('|');
      this.pattern = new RegExp(source, 'g');
      this.probe = new RegExp(source);
    }
    return { pattern: this.pattern, probe: this.probe };
  }
}

/** The form WHATWG URL gives a password in userinfo (`new URL(...).password`). */
function userinfoForm(secret: string): string {
  try {
    const url = new URL('postgres://u@h');
    url.password = secret;
    return url.password;
  } catch {
    return secret;
  }
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The process-wide redactor that logs and every output writer share. */
export const redactor = new Redactor();
