/**
 * Secret redaction by value. Paths are not enough: a password also shows up inside a connection
 * URL, in a driver's error message, or JSON-escaped in a log line. Every writer of logs,
 * summaries, manifests and the termination log passes its text through one Redactor.
 */

export const REDACTED = '[REDACTED]';

/** Environment variable names whose values are treated as secrets wherever they appear. */
const SECRET_ENV_NAME = /(PASS|SECRET|TOKEN|PRIVATE|CREDENTIAL|_KEY$|^KEY$|AUTH)/i;

/**
 * Names that say where a secret is, not what it is (AWS_WEB_IDENTITY_TOKEN_FILE,
 * AWS_CONTAINER_CREDENTIALS_FULL_URI): their values are paths and endpoints `whoami` shows.
 */
const SECRET_LOCATION_NAME = /(_FILE|_URI)$/i;

/** `scheme://user:password@`: whatever the password, it is never printed. */
const URL_PASSWORD = /\b([a-z][a-z0-9+.-]*:\/\/[^\s/:@"']*:)([^\s@/"']+)@/gi;

/** Shorter values are not redacted: replacing "a" or "1" everywhere would destroy the logs. */
const MIN_SECRET_LENGTH = 4;

export class Redactor {
  private readonly secrets = new Set<string>();
  private pattern: RegExp | undefined;

  /** Registers a secret, and the forms it takes in URLs and JSON. */
  add(secret: string | undefined): void {
    if (!secret || secret.length < MIN_SECRET_LENGTH) return;
    const forms = [secret, JSON.stringify(secret).slice(1, -1), encodeURIComponent(secret)];
    for (const line of secret.split(/\r?\n/)) if (line.trim().length >= 16) forms.push(line.trim());
    for (const form of forms) this.secrets.add(form);
    this.pattern = undefined;
  }

  /** Registers the password of a URL (`scheme://user:password@host`), if it has one. */
  addUrlPassword(url: string): void {
    const match = /^[a-z][a-z0-9+.-]*:\/\/[^/@:]*:([^@/]*)@/i.exec(url);
    if (!match) return;
    this.add(match[1]);
    try {
      this.add(decodeURIComponent(match[1]));
    } catch {
      // a malformed escape: the raw form is already registered
    }
  }

  /** Registers every environment value whose variable name says it is a secret. */
  addFromEnv(env: NodeJS.ProcessEnv): void {
    for (const [name, value] of Object.entries(env)) {
      if (value && SECRET_ENV_NAME.test(name) && !SECRET_LOCATION_NAME.test(name)) this.add(value);
    }
  }

  /** Whether any secret is registered. */
  get size(): number {
    return this.secrets.size;
  }

  /** Replaces every registered secret in `text`, and any password written into a URL. */
  redact(text: string): string {
    text = text.replace(URL_PASSWORD, `$1${REDACTED}@`);
    if (this.secrets.size === 0) return text;
    if (!this.pattern) {
      const sorted = [...this.secrets].sort((a, b) => b.length - a.length);
      this.pattern = new RegExp(sorted.map(escapeRegExp).join('|'), 'g');
    }
    return text.replace(this.pattern, REDACTED);
  }

  /** A deep copy of `value` with every string redacted. */
  redactValue<T>(value: T): T {
    if (typeof value === 'string') return this.redact(value) as T;
    if (Array.isArray(value)) return value.map((v) => this.redactValue(v)) as T;
    if (value && typeof value === 'object') {
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) out[k] = this.redactValue(v);
      return out as T;
    }
    return value;
  }
}

function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** The process-wide redactor that logs and every output writer share. */
export const redactor = new Redactor();
