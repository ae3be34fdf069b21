/**
 * A local server answering as Google Cloud's documented APIs do, for contract tests that drive the
 * real @google-cloud/storage (and its google-auth-library) against it. One process, one port:
 *
 * - Cloud Storage JSON API (`/storage/v1`, `/upload/storage/v1`): in-memory buckets and objects;
 *   objects.get (metadata, `alt=media` with `Range`, `generation`), objects.list (prefix,
 *   delimiter, maxResults, pageToken), objects.delete, objects.patch (holds, contentType,
 *   metadata), objects.insert with `uploadType=media|multipart|resumable` (resumable sessions:
 *   308 + `Range` until the last byte, `bytes * /total` status queries, DELETE -> 499, a finished
 *   session answers its object again). Preconditions ifGenerationMatch (0: must not exist),
 *   ifGenerationNotMatch, ifMetagenerationMatch are checked when the write commits, synchronously,
 *   so of two concurrent creates with ifGenerationMatch=0 exactly one wins and the other gets 412
 *   `conditionNotMet`. crc32c/md5Hash sent in metadata or `X-Goog-Hash` are verified (400 on a
 *   mismatch). Errors use the JSON API error body `{error: {code, message, errors: [{domain,
 *   reason, message}]}}`.
 * - Auth: storage requests need `Authorization: Bearer <token this server issued>` (401 otherwise).
 *   A resumable session URI needs none, as in GCS (the upload id is the capability). With `iam` on,
 *   each principal needs the storage.objects.* permission the method is documented to need (an
 *   overwrite needs storage.objects.delete too), else 403 naming it.
 * - The GCE/GKE metadata server (`/computeMetadata/v1/...`, `Metadata-Flavor: Google` both ways),
 *   reached by the library through `GCE_METADATA_HOST=127.0.0.1:PORT`.
 * - Google STS (`POST /v1/token`, RFC 8693 token exchange) and IAM Credentials
 *   (`POST /v1/projects/-/serviceAccounts/EMAIL:generateAccessToken`), for `external_account`
 *   (Workload Identity Federation) credentials files: see `externalAccountFile`.
 * - Faults (`failNext`): 503 backendError, 429 rateLimitExceeded, a reset socket, or a lost answer
 *   (the write is done, then the socket is destroyed).
 *
 * References: https://cloud.google.com/storage/docs/json_api/v1/objects,
 * https://cloud.google.com/storage/docs/performing-resumable-uploads,
 * https://cloud.google.com/storage/docs/json_api/v1/status-codes,
 * https://cloud.google.com/compute/docs/metadata/querying-metadata,
 * https://cloud.google.com/iam/docs/reference/sts/rest/v1/TopLevel/token,
 * https://cloud.google.com/iam/docs/reference/credentials/rest/v1/projects.serviceAccounts/generateAccessToken
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readBody, sendJson } from './http.js';

/** The storage.objects.* permissions the server knows. */
export type Permission =
  | 'storage.objects.create'
  | 'storage.objects.get'
  | 'storage.objects.list'
  | 'storage.objects.delete'
  | 'storage.objects.update';

/** How the next matching storage requests fail. */
export type FaultKind = 'http503' | 'http429' | 'reset' | 'lost';

/** Which requests a fault applies to (all storage requests when empty). */
export interface FaultFilter {
  /** HTTP method, e.g. 'PUT'. */
  method?: string;
  /** Substring of the path plus query string, e.g. 'uploadType=multipart'. */
  path?: string;
}

/** An object as the server holds it. */
export interface StoredObject {
  bucket: string;
  name: string;
  data: Buffer;
  /** Increasing and unique per write, as a decimal string (GCS generations are int64). */
  generation: string;
  metageneration: number;
  contentType: string;
  storageClass: string;
  temporaryHold: boolean;
  eventBasedHold: boolean;
  /** Base64 of the MD5 digest. */
  md5Hash: string;
  /** Base64 of the big-endian CRC32C. */
  crc32c: string;
  timeCreated: string;
  updated: string;
  /** Custom metadata (`metadata` in the resource). */
  metadata?: Record<string, string>;
}

/** The GCE/GKE metadata server's identity; undefined: not a GCE host (404 everywhere). */
export interface MetadataConfig {
  /** The attached service account (GKE: the Workload Identity service account). */
  email: string;
  /** Project id. */
  project: string;
  /** Numeric project id (default 123456789012). */
  numericProject?: string;
  /** GKE cluster name (instance/attributes/cluster-name); absent on plain GCE. */
  cluster?: string;
  /** When set, the token endpoint answers this instead (GKE without the IAM binding). */
  tokenError?: { status: number; body: unknown };
}

/** A recorded request. */
export interface Call {
  method: string;
  path: string;
  query: Record<string, string>;
  /** The principal a bearer token mapped to, if any. */
  principal?: string;
}

interface Fault {
  kind: FaultKind;
  left: number;
  filter: FaultFilter;
}

interface Session {
  id: string;
  bucket: string;
  name: string;
  principal: string | undefined;
  query: URLSearchParams;
  resource: Json;
  contentType: string;
  received: Buffer[];
  size: number;
  state: 'open' | 'done' | 'cancelled';
  result?: StoredObject;
}

/** An error answered in the JSON API error format. */
class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
    readonly extra: Record<string, string> = {},
  ) {
    super(message);
  }
}

// biome-ignore lint/suspicious/noExplicitAny: request bodies are arbitrary JSON
type Json = any;

/** Fault kinds that answer with a status rather than breaking the connection. */
const FAULT_ANSWERS = {
  http503: [503, 'backendError', 'We encountered an internal error. Please try again.'],
  http429: [
    429,
    'rateLimitExceeded',
    'The rate of change requests to the object exceeds the rate limit. Please reduce the rate of create, update, and delete requests.',
  ],
} as const;

const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0x82f63b78 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/** CRC32C (Castagnoli) of the bytes, base64 of its big-endian 4 bytes, as GCS reports it. */
export function crc32c(data: Buffer): string {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC_TABLE[(crc ^ data[i]) & 0xff] ^ (crc >>> 8);
  const out = Buffer.alloc(4);
  out.writeUInt32BE((crc ^ 0xffffffff) >>> 0);
  return out.toString('base64');
}

function md5(data: Buffer): string {
  return createHash('md5').update(data).digest('base64');
}

/** Options of `externalAccountFile`. */
export interface ExternalAccountOptions {
  /** The server's url (token_url and the impersonation url point at it). */
  url: string;
  /** The workload identity provider audience. */
  audience: string;
  /** Path of the file holding the OIDC subject token (a projected service account token). */
  tokenFile: string;
  /** Service account to impersonate through IAM Credentials; omit for direct resource access. */
  impersonate?: string;
}

/** An `external_account` credentials file (JSON object) that federates through this server. */
export function externalAccountFile(opts: ExternalAccountOptions): Record<string, unknown> {
  return {
    type: 'external_account',
    audience: opts.audience,
    subject_token_type: 'urn:ietf:params:oauth:token-type:jwt',
    token_url: `${opts.url}/v1/token`,
    credential_source: { file: opts.tokenFile },
    ...(opts.impersonate
      ? {
          service_account_impersonation_url: `${opts.url}/v1/projects/-/serviceAccounts/${opts.impersonate}:generateAccessToken`,
        }
      : {}),
  };
}

/** The workload identity pool principal of a subject, from a provider audience. */
export function federatedPrincipal(audience: string, subject: string): string {
  const pool = audience.replace(/^\/\/iam\.googleapis\.com\//, '').replace(/\/providers\/.*$/, '');
  return `principal://iam.googleapis.com/${pool}/subject/${subject}`;
}

export class GcpServer {
  url = '';
  /** Every request (method, path, query), never headers or bodies. */
  readonly calls: Call[] = [];
  /** Every token this server handed out (metadata, STS, IAM Credentials, issueToken). */
  readonly issuedTokens: string[] = [];
  /** When true, storage requests need the principal's granted permissions. */
  iam = false;
  /** The metadata server's identity; undefined: answers 404 (not a GCE host). */
  metadata: MetadataConfig | undefined;
  private readonly buckets = new Map<string, Map<string, StoredObject>>();
  private readonly bucketCreated = new Map<string, number>();
  private readonly tokens = new Map<string, string>();
  private readonly grants = new Map<string, Set<string>>();
  private readonly oidc = new Map<string, { audience: string; subject: string }>();
  private readonly impersonation = new Map<string, Set<string>>();
  private readonly sessions = new Map<string, Session>();
  private readonly faults: Fault[] = [];
  private lastGeneration = BigInt(Date.now()) * 1000n;
  private server: Server | undefined;

  /** Starts a server on a free port of 127.0.0.1. */
  static async start(): Promise<GcpServer> {
    const s = new GcpServer();
    s.server = createServer((req, res) => {
      s.handle(req, res).catch((err: unknown) => {
        if (err instanceof ApiError) return s.fail(res, err);
        s.fail(res, new ApiError(500, 'backendError', String(err)));
      });
    });
    await new Promise<void>((resolve) => s.server?.listen(0, '127.0.0.1', resolve));
    s.url = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}`;
    return s;
  }

  /** Stops the server, dropping open connections. */
  async close(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => this.server?.close(() => resolve()));
  }

  /** `host:port`, the value GCE_METADATA_HOST takes. */
  get host(): string {
    return this.url.replace(/^http:\/\//, '');
  }

  /** Creates an empty bucket (idempotent). */
  createBucket(name: string): void {
    if (!this.buckets.has(name)) this.buckets.set(name, new Map());
    if (!this.bucketCreated.has(name)) this.bucketCreated.set(name, Date.now());
  }

  /** Issues a bearer token for a principal (a service account email or federated principal). */
  issueToken(principal: string, prefix = 'ya29.c.'): string {
    const token = `${prefix}${randomBytes(24).toString('base64url')}`;
    this.tokens.set(token, principal);
    this.issuedTokens.push(token);
    return token;
  }

  /** Grants storage permissions to a principal (checked when `iam` is on). */
  grant(principal: string, permissions: Permission[]): void {
    const set = this.grants.get(principal) ?? new Set();
    for (const p of permissions) set.add(p);
    this.grants.set(principal, set);
  }

  /** Withdraws every permission of a principal. */
  revoke(principal: string): void {
    this.grants.delete(principal);
  }

  /** Registers an OIDC token the workload identity provider trusts, for that audience. */
  trustOidcToken(token: string, audience: string, subject: string): void {
    this.oidc.set(token, { audience, subject });
  }

  /** Lets a federated subject (or its principal, or an email) impersonate a service account. */
  allowImpersonation(subjectOrPrincipal: string, serviceAccount: string): void {
    const set = this.impersonation.get(serviceAccount) ?? new Set();
    set.add(subjectOrPrincipal);
    this.impersonation.set(serviceAccount, set);
  }

  /** The next `n` storage requests matching `filter` fail as `kind`. */
  failNext(n: number, kind: FaultKind, filter: FaultFilter = {}): void {
    this.faults.push({ kind, left: n, filter });
  }

  /** Drops the faults not used up yet. */
  clearFaults(): void {
    this.faults.length = 0;
  }

  /** Resumable sessions created and neither finished nor cancelled. */
  pendingUploads(): number {
    return [...this.sessions.values()].filter((s) => s.state === 'open').length;
  }

  /** The live objects of a bucket, in name order. */
  objectsOf(bucket: string): StoredObject[] {
    const objects = this.buckets.get(bucket);
    if (!objects) return [];
    return [...objects.values()].sort(byName);
  }

  /** One live object, or undefined. */
  object(bucket: string, name: string): StoredObject | undefined {
    return this.buckets.get(bucket)?.get(name);
  }

  /** Stores an object directly (test setup), as a write without preconditions would. */
  put(bucket: string, name: string, data: Buffer | string, extra: Partial<StoredObject> = {}): StoredObject {
    this.createBucket(bucket);
    const body = typeof data === 'string' ? Buffer.from(data) : data;
    return this.commit(bucket, name, body, { ...extra });
  }

  // ---- dispatch ----

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const u = new URL(req.url ?? '/', 'http://x');
    const path = u.pathname;
    const principal = this.principalOf(req);
    this.calls.push({ method: req.method ?? '', path, query: Object.fromEntries(u.searchParams), principal });
    if (path.startsWith('/computeMetadata/')) return this.metadataServer(req, res, path);
    if (path === '/v1/token' && req.method === 'POST') return this.sts(req, res);
    const gat = /^\/v1\/projects\/-\/serviceAccounts\/([^/:]+):generateAccessToken$/.exec(path);
    if (gat && req.method === 'POST') return this.generateAccessToken(req, res, decodeURIComponent(gat[1]));
    // The gcloud CLI sends resumable uploads to /resumable/upload/storage/v1/..., which Cloud
    // Storage answers as /upload/storage/v1/...
    if (path.startsWith('/resumable/upload/storage/v1/')) u.pathname = path.slice('/resumable'.length);
    // Media downloads at /download/storage/v1/... (the mediaLink of an object) are objects.get.
    if (path.startsWith('/download/storage/v1/')) u.pathname = path.slice('/download'.length);
    if (u.pathname.startsWith('/storage/v1/') || u.pathname.startsWith('/upload/storage/v1/')) {
      return this.storage(req, res, u, principal);
    }
    this.fail(res, new ApiError(404, 'notFound', `Not Found: ${path}`));
  }

  private principalOf(req: IncomingMessage): string | undefined {
    const m = /^Bearer (.+)$/i.exec(req.headers.authorization ?? '');
    return m ? this.tokens.get(m[1]) : undefined;
  }

  /** Takes the fault the request triggers, if any. */
  private takeFault(req: IncomingMessage, u: URL): Fault | undefined {
    const target = `${u.pathname}${u.search}`;
    const fault = this.faults.find(
      (f) =>
        f.left > 0 &&
        (!f.filter.method || f.filter.method === req.method) &&
        (!f.filter.path || target.includes(f.filter.path)),
    );
    if (fault) fault.left--;
    return fault;
  }

  private async storage(req: IncomingMessage, res: ServerResponse, u: URL, principal: string | undefined) {
    const fault = this.takeFault(req, u);
    if (fault?.kind === 'reset') {
      req.socket.destroy();
      return;
    }
    if (fault && fault.kind !== 'lost') {
      await readBody(req);
      const [status, reason, message] = FAULT_ANSWERS[fault.kind];
      return this.fail(res, new ApiError(status, reason, message));
    }
    const answer = fault?.kind === 'lost' ? lostAnswer(res) : res;
    const uploadId = u.searchParams.get('upload_id');
    if (uploadId && u.pathname.startsWith('/upload/')) return this.session(req, answer, uploadId);
    const bucketGet = /^\/storage\/v1\/b\/([^/]+)$/.exec(u.pathname);
    if (bucketGet && req.method === 'GET')
      return this.bucketGet(answer, decodeURIComponent(bucketGet[1]), principal);
    const m = /^(\/upload)?\/storage\/v1\/b\/([^/]+)\/o(?:\/(.+))?$/.exec(u.pathname);
    if (!m) throw new ApiError(404, 'notFound', `Not Found: ${u.pathname}`);
    const bucket = decodeURIComponent(m[2]);
    const name = m[3] === undefined ? undefined : decodeURIComponent(m[3]);
    const method = req.method ?? 'GET';
    const permission = permissionOf(method, !!m[1], name);
    if (!req.headers.authorization) {
      throw new ApiError(
        401,
        'required',
        `Anonymous caller does not have ${permission} access to the Google Cloud Storage ${name === undefined && method === 'GET' ? 'bucket' : 'object'}.`,
        { locationType: 'header', location: 'Authorization' },
      );
    }
    if (!principal) {
      throw new ApiError(401, 'authError', 'Invalid Credentials', {
        locationType: 'header',
        location: 'Authorization',
      });
    }
    const objects = this.buckets.get(bucket);
    if (!objects) throw new ApiError(404, 'notFound', 'The specified bucket does not exist.');
    this.require(principal, permission, name === undefined && method === 'GET' ? 'bucket' : 'object');
    if (m[1] && method === 'POST') return this.insert(req, answer, u, bucket, principal);
    if (name === undefined && method === 'GET') return this.list(answer, u, objects);
    if (name === undefined)
      throw new ApiError(405, 'methodNotAllowed', `Method ${method} is not allowed on objects.`);
    const body = await readBody(req);
    if (method === 'GET') return this.get(req, answer, u, bucket, name, objects);
    if (method === 'DELETE') return this.remove(answer, u, bucket, name, objects);
    if (method === 'PATCH' || method === 'PUT') return this.patch(body, answer, u, bucket, name, objects);
    throw new ApiError(405, 'methodNotAllowed', `Method ${method} is not allowed on an object.`);
  }

  /** buckets.get: the bucket resource (the gcloud CLI reads it before it writes). */
  private bucketGet(res: ServerResponse, bucket: string, principal: string | undefined): void {
    if (!principal)
      throw new ApiError(
        401,
        'required',
        'Anonymous caller does not have storage.buckets.get access to the Google Cloud Storage bucket.',
      );
    if (!this.buckets.has(bucket))
      throw new ApiError(404, 'notFound', 'The specified bucket does not exist.');
    const created = new Date(Number(this.bucketCreated.get(bucket) ?? Date.now())).toISOString();
    sendJson(res, 200, {
      kind: 'storage#bucket',
      selfLink: `${this.url}/storage/v1/b/${encodeURIComponent(bucket)}`,
      id: bucket,
      name: bucket,
      projectNumber: this.metadata?.numericProject ?? '123456789012',
      metageneration: '1',
      location: 'EUROPE-WEST1',
      storageClass: 'STANDARD',
      etag: 'CAE=',
      timeCreated: created,
      updated: created,
      locationType: 'region',
      iamConfiguration: { uniformBucketLevelAccess: { enabled: true } },
    });
  }

  private require(principal: string | undefined, permission: Permission, kind: 'bucket' | 'object') {
    if (!this.iam || (principal && this.grants.get(principal)?.has(permission))) return;
    throw new ApiError(
      403,
      'forbidden',
      `${principal} does not have ${permission} access to the Google Cloud Storage ${kind}. Permission '${permission}' denied on resource (or it may not exist).`,
    );
  }

  // ---- objects.get / list / delete / patch ----

  private get(
    req: IncomingMessage,
    res: ServerResponse,
    u: URL,
    bucket: string,
    name: string,
    objects: Map<string, StoredObject>,
  ) {
    const obj = targetOf(u, bucket, name, objects);
    if (u.searchParams.get('alt') !== 'media') return sendJson(res, 200, resource(obj, this.url));
    const headers: Record<string, string> = {
      'Content-Type': obj.contentType,
      'X-Goog-Hash': `crc32c=${obj.crc32c},md5=${obj.md5Hash}`,
      'X-Goog-Generation': obj.generation,
      'X-Goog-Metageneration': String(obj.metageneration),
      'X-Goog-Stored-Content-Encoding': 'identity',
      'X-Goog-Stored-Content-Length': String(obj.data.length),
      ETag: etag(obj),
    };
    const range = /^bytes=(\d*)-(\d*)$/.exec(req.headers.range ?? '');
    if (range && obj.data.length > 0) {
      const start = range[1] === '' ? Math.max(0, obj.data.length - Number(range[2])) : Number(range[1]);
      const end =
        range[1] === '' || range[2] === ''
          ? obj.data.length - 1
          : Math.min(Number(range[2]), obj.data.length - 1);
      if (start > end)
        throw new ApiError(416, 'requestedRangeNotSatisfiable', 'The requested range cannot be satisfied.');
      res.writeHead(206, {
        ...headers,
        'Content-Range': `bytes ${start}-${end}/${obj.data.length}`,
        'Content-Length': end - start + 1,
      });
      res.end(obj.data.subarray(start, end + 1));
      return;
    }
    res.writeHead(200, { ...headers, 'Content-Length': obj.data.length });
    res.end(obj.data);
  }

  private list(res: ServerResponse, u: URL, objects: Map<string, StoredObject>) {
    const prefix = u.searchParams.get('prefix') ?? '';
    const delimiter = u.searchParams.get('delimiter') ?? '';
    const max = Math.min(Number(u.searchParams.get('maxResults') ?? 1000) || 1000, 1000);
    const token = u.searchParams.get('pageToken');
    const after = token ? Buffer.from(token, 'base64url').toString() : undefined;
    const items: Json[] = [];
    const prefixes: string[] = [];
    let last: string | undefined;
    let more = false;
    for (const obj of [...objects.values()].sort(byName)) {
      if (!obj.name.startsWith(prefix)) continue;
      const cut = delimiter ? obj.name.indexOf(delimiter, prefix.length) : -1;
      const key = cut >= 0 ? obj.name.slice(0, cut + delimiter.length) : obj.name;
      if (after !== undefined && key <= after) continue;
      if (key === last) continue;
      if (items.length + prefixes.length >= max) {
        more = true;
        break;
      }
      if (cut >= 0) prefixes.push(key);
      else items.push(resource(obj, this.url));
      last = key;
    }
    sendJson(res, 200, {
      kind: 'storage#objects',
      ...(items.length ? { items } : {}),
      ...(prefixes.length ? { prefixes } : {}),
      ...(more && last !== undefined ? { nextPageToken: Buffer.from(last).toString('base64url') } : {}),
    });
  }

  private remove(
    res: ServerResponse,
    u: URL,
    bucket: string,
    name: string,
    objects: Map<string, StoredObject>,
  ) {
    const obj = targetOf(u, bucket, name, objects);
    refuseHeld(obj);
    objects.delete(name);
    res.writeHead(204);
    res.end();
  }

  /** objects.patch: holds, contentType, storageClass and custom metadata; metageneration + 1. */
  private patch(
    raw: Buffer,
    res: ServerResponse,
    u: URL,
    bucket: string,
    name: string,
    objects: Map<string, StoredObject>,
  ) {
    const obj = targetOf(u, bucket, name, objects);
    const body: Json = raw.length ? JSON.parse(raw.toString()) : {};
    if (typeof body.temporaryHold === 'boolean') obj.temporaryHold = body.temporaryHold;
    if (typeof body.eventBasedHold === 'boolean') obj.eventBasedHold = body.eventBasedHold;
    if (typeof body.contentType === 'string') obj.contentType = body.contentType;
    if (body.metadata && typeof body.metadata === 'object') {
      const merged: Record<string, string> = { ...obj.metadata };
      for (const [k, v] of Object.entries(body.metadata)) {
        if (v === null) delete merged[k];
        else merged[k] = String(v);
      }
      obj.metadata = merged;
    }
    obj.metageneration++;
    obj.updated = new Date().toISOString();
    sendJson(res, 200, resource(obj, this.url));
  }

  // ---- objects.insert ----

  private async insert(req: IncomingMessage, res: ServerResponse, u: URL, bucket: string, principal: string) {
    const type = u.searchParams.get('uploadType') ?? 'media';
    const body = await readBody(req);
    if (type === 'resumable') return this.startSession(req, res, u, bucket, principal, body);
    let meta: Json = {};
    let data = body;
    if (type === 'multipart') [meta, data] = parseMultipart(req.headers['content-type'] ?? '', body);
    const name = u.searchParams.get('name') ?? meta.name;
    if (!name)
      throw new ApiError(400, 'required', 'Required', { locationType: 'parameter', location: 'name' });
    if (type === 'media' && req.headers['content-type']) meta.contentType ??= req.headers['content-type'];
    if (type === 'multipart' && !meta.contentType)
      meta.contentType = partType(req.headers['content-type'] ?? '', body);
    this.requireHoldPermission(principal, meta);
    const obj = this.commitChecked(
      bucket,
      name,
      data,
      meta,
      u.searchParams,
      principal,
      req.headers['x-goog-hash'],
    );
    sendJson(res, 200, resource(obj, this.url));
  }

  /**
   * Placing a hold needs storage.objects.update ("Use object holds", required permissions), also
   * when the hold comes with the upload; modelled so, as the stricter reading of the documentation.
   */
  private requireHoldPermission(principal: string, meta: Json): void {
    if (meta.temporaryHold === true || meta.eventBasedHold === true)
      this.require(principal, 'storage.objects.update', 'object');
  }

  private startSession(
    req: IncomingMessage,
    res: ServerResponse,
    u: URL,
    bucket: string,
    principal: string,
    body: Buffer,
  ) {
    const meta: Json = body.length ? JSON.parse(body.toString()) : {};
    const name = u.searchParams.get('name') ?? meta.name;
    if (!name)
      throw new ApiError(400, 'required', 'Required', { locationType: 'parameter', location: 'name' });
    this.requireHoldPermission(principal, meta);
    const id = randomBytes(18).toString('base64url');
    const contentType = String(
      req.headers['x-upload-content-type'] ?? meta.contentType ?? 'application/octet-stream',
    );
    this.sessions.set(id, {
      id,
      bucket,
      name,
      principal,
      query: u.searchParams,
      resource: meta,
      contentType,
      received: [],
      size: 0,
      state: 'open',
    });
    const location = `${this.url}/upload/storage/v1/b/${encodeURIComponent(bucket)}/o?uploadType=resumable&name=${encodeURIComponent(name)}&upload_id=${id}`;
    res.writeHead(200, { Location: location, 'X-GUploader-UploadID': id, 'Content-Length': 0 });
    res.end();
  }

  private async session(req: IncomingMessage, res: ServerResponse, id: string) {
    const s = this.sessions.get(id);
    const body = await readBody(req);
    if (!s) throw new ApiError(404, 'notFound', 'No such upload session.');
    if (req.method === 'DELETE') {
      if (s.state === 'open') s.state = 'cancelled';
      res.writeHead(499, { 'Content-Length': 0 });
      res.end();
      return;
    }
    if (s.state === 'cancelled') throw new ApiError(404, 'notFound', 'The upload session was cancelled.');
    if (s.state === 'done' && s.result) return sendJson(res, 200, resource(s.result, this.url));
    if (req.method !== 'PUT')
      throw new ApiError(405, 'methodNotAllowed', 'Only PUT and DELETE apply to an upload session.');
    const range = parseContentRange(String(req.headers['content-range'] ?? ''), body.length);
    if (!range) throw new ApiError(400, 'invalid', `Invalid Content-Range: ${req.headers['content-range']}`);
    if (range.start !== undefined) {
      if (range.start > s.size)
        throw new ApiError(
          400,
          'invalid',
          `Chunk starts at ${range.start} but only ${s.size} bytes were received.`,
        );
      // Bytes already persisted are not taken twice (a retried chunk overlaps).
      const fresh = body.subarray(s.size - range.start);
      s.received.push(fresh);
      s.size += fresh.length;
    }
    const total = range.total ?? (range.start !== undefined && range.openEnded ? s.size : undefined);
    if (total === undefined || s.size < total) {
      const headers: Record<string, string | number> = { 'Content-Length': 0 };
      if (s.size > 0) headers.Range = `bytes=0-${s.size - 1}`;
      res.writeHead(308, headers);
      res.end();
      return;
    }
    if (s.size > total)
      throw new ApiError(400, 'invalid', `Received ${s.size} bytes, more than the declared ${total}.`);
    const data = Buffer.concat(s.received);
    const meta = { ...s.resource, contentType: s.resource.contentType ?? s.contentType };
    try {
      s.result = this.commitChecked(
        s.bucket,
        s.name,
        data,
        meta,
        s.query,
        s.principal,
        req.headers['x-goog-hash'],
      );
    } catch (err) {
      // A failed commit ends the session: GCS does not let it be retried into success.
      s.state = 'cancelled';
      throw err;
    }
    s.state = 'done';
    sendJson(res, 200, resource(s.result, this.url));
  }

  /** Verifies hashes, permissions and preconditions, then writes: all synchronously. */
  private commitChecked(
    bucket: string,
    name: string,
    data: Buffer,
    meta: Json,
    query: URLSearchParams,
    principal: string | undefined,
    hashHeader: string | string[] | undefined,
  ): StoredObject {
    const given = parseHashes(hashHeader);
    const expectCrc = meta.crc32c ?? given.crc32c;
    const expectMd5 = meta.md5Hash ?? given.md5;
    const actualCrc = crc32c(data);
    const actualMd5 = md5(data);
    if (expectCrc && expectCrc !== actualCrc) {
      throw new ApiError(
        400,
        'invalid',
        `Provided CRC32C "${expectCrc}" doesn't match calculated CRC32C "${actualCrc}".`,
      );
    }
    if (expectMd5 && expectMd5 !== actualMd5) {
      throw new ApiError(
        400,
        'invalid',
        `Provided MD5 hash "${expectMd5}" doesn't match calculated MD5 hash "${actualMd5}".`,
      );
    }
    const objects = this.buckets.get(bucket);
    if (!objects) throw new ApiError(404, 'notFound', 'The specified bucket does not exist.');
    const existing = objects.get(name);
    if (existing) this.require(principal, 'storage.objects.delete', 'object');
    if (existing) checkPreconditions(existing, query);
    else if (query.get('ifGenerationMatch') !== null && query.get('ifGenerationMatch') !== '0')
      throw conditionNotMet();
    else if (query.get('ifMetagenerationMatch') !== null) throw conditionNotMet();
    if (existing) refuseHeld(existing);
    return this.commit(bucket, name, data, meta);
  }

  private commit(bucket: string, name: string, data: Buffer, meta: Json): StoredObject {
    const now = new Date().toISOString();
    const nowMicros = BigInt(Date.now()) * 1000n;
    this.lastGeneration = nowMicros > this.lastGeneration ? nowMicros : this.lastGeneration + 1n;
    const obj: StoredObject = {
      bucket,
      name,
      data,
      generation: String(this.lastGeneration),
      metageneration: 1,
      contentType: meta.contentType ?? 'application/octet-stream',
      storageClass: meta.storageClass ?? 'STANDARD',
      temporaryHold: meta.temporaryHold === true,
      eventBasedHold: meta.eventBasedHold === true,
      md5Hash: md5(data),
      crc32c: crc32c(data),
      timeCreated: now,
      updated: now,
      ...(meta.metadata ? { metadata: meta.metadata } : {}),
    };
    this.createBucket(bucket);
    this.buckets.get(bucket)?.set(name, obj);
    return obj;
  }

  private fail(res: ServerResponse, err: ApiError): void {
    if (res.headersSent || res.destroyed) return;
    sendJson(res, err.status, {
      error: {
        code: err.status,
        message: err.message,
        errors: [{ message: err.message, domain: 'global', reason: err.reason, ...err.extra }],
      },
    });
  }

  // ---- metadata server ----

  private metadataServer(req: IncomingMessage, res: ServerResponse, path: string) {
    const text = (status: number, body: string, type = 'application/text') => {
      res.writeHead(status, { 'Metadata-Flavor': 'Google', 'Content-Type': type });
      res.end(body);
    };
    const m = this.metadata;
    if (!m) {
      res.writeHead(404, { 'Content-Type': 'text/html' });
      res.end('Not Found');
      return;
    }
    if (req.headers['metadata-flavor'] !== 'Google') {
      return text(403, 'Missing required header "Metadata-Flavor": "Google"\n', 'text/html');
    }
    const rel = path.replace(/^\/computeMetadata\/v1\/?/, '');
    const sa = /^instance\/service-accounts\/([^/]+)\/([a-z-]+)$/.exec(rel);
    if (sa && (sa[1] === 'default' || sa[1] === m.email)) {
      if (sa[2] === 'email') return text(200, m.email);
      if (sa[2] === 'token') {
        if (m.tokenError) {
          const body =
            typeof m.tokenError.body === 'string' ? m.tokenError.body : JSON.stringify(m.tokenError.body);
          return text(
            m.tokenError.status,
            body,
            typeof m.tokenError.body === 'string' ? 'text/plain' : 'application/json',
          );
        }
        const token = this.issueToken(m.email);
        return text(
          200,
          JSON.stringify({ access_token: token, expires_in: 3599, token_type: 'Bearer' }),
          'application/json',
        );
      }
      if (sa[2] === 'scopes') return text(200, 'https://www.googleapis.com/auth/cloud-platform\n');
    }
    const values: Record<string, string | undefined> = {
      '': 'instance/\noauth/\nproject/\n',
      instance: 'attributes/\nhostname\nid\nservice-accounts/\nzone\n',
      'instance/': 'attributes/\nhostname\nid\nservice-accounts/\nzone\n',
      'instance/service-accounts': `default/\n${m.email}/\n`,
      'instance/service-accounts/': `default/\n${m.email}/\n`,
      'instance/zone': `projects/${m.numericProject ?? '123456789012'}/zones/europe-west1-b`,
      'instance/attributes/cluster-name': m.cluster,
      'project/project-id': m.project,
      'project/numeric-project-id': m.numericProject ?? '123456789012',
      'universe/universe-domain': 'googleapis.com',
    };
    const value = values[rel];
    if (value === undefined) return text(404, 'Not Found\n', 'text/html');
    text(200, value);
  }

  // ---- STS and IAM Credentials ----

  private async sts(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const form = new URLSearchParams((await readBody(req)).toString());
    const oauthError = (error: string, description: string) =>
      sendJson(res, 400, { error, error_description: description });
    if (form.get('grant_type') !== 'urn:ietf:params:oauth:grant-type:token-exchange') {
      return oauthError(
        'unsupported_grant_type',
        `Invalid value for "grant_type": ${form.get('grant_type')}`,
      );
    }
    if (
      form.get('subject_token_type') !== 'urn:ietf:params:oauth:token-type:jwt' &&
      form.get('subject_token_type') !== 'urn:ietf:params:oauth:token-type:id_token'
    ) {
      return oauthError(
        'invalid_request',
        `Invalid value for "subject_token_type": ${form.get('subject_token_type')}`,
      );
    }
    if (form.get('requested_token_type') !== 'urn:ietf:params:oauth:token-type:access_token') {
      return oauthError(
        'invalid_request',
        `Invalid value for "requested_token_type": ${form.get('requested_token_type')}`,
      );
    }
    const trusted = this.oidc.get(form.get('subject_token') ?? '');
    if (!trusted)
      return oauthError(
        'invalid_grant',
        'The token is not trusted by the workload identity pool provider (unknown issuer or invalid signature).',
      );
    if (trusted.audience !== form.get('audience')) {
      return oauthError(
        'invalid_grant',
        `The audience in ID Token does not match the expected audience ${form.get('audience')}.`,
      );
    }
    const token = this.issueToken(federatedPrincipal(trusted.audience, trusted.subject), 'ya29.d.');
    sendJson(res, 200, {
      access_token: token,
      issued_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      token_type: 'Bearer',
      expires_in: 3600,
    });
  }

  private async generateAccessToken(req: IncomingMessage, res: ServerResponse, email: string): Promise<void> {
    const body: Json = JSON.parse((await readBody(req)).toString() || '{}');
    const caller = this.principalOf(req);
    const googleError = (code: number, status: string, message: string, details?: Json[]) =>
      sendJson(res, code, { error: { code, message, status, ...(details ? { details } : {}) } });
    if (!caller) {
      return googleError(
        401,
        'UNAUTHENTICATED',
        'Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
      );
    }
    const subject = caller.replace(/^.*\/subject\//, '');
    const allowed = this.impersonation.get(email);
    if (!allowed || !(allowed.has(caller) || allowed.has(subject))) {
      return googleError(
        403,
        'PERMISSION_DENIED',
        "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        [
          {
            '@type': 'type.googleapis.com/google.rpc.ErrorInfo',
            reason: 'IAM_PERMISSION_DENIED',
            domain: 'iam.googleapis.com',
            metadata: { permission: 'iam.serviceAccounts.getAccessToken' },
          },
        ],
      );
    }
    const lifetime = Number(String(body.lifetime ?? '3600s').replace(/s$/, '')) || 3600;
    sendJson(res, 200, {
      accessToken: this.issueToken(email),
      expireTime: new Date(Date.now() + lifetime * 1000).toISOString().replace(/\.\d+Z$/, 'Z'),
    });
  }
}

// ---- helpers ----

/** Lexicographic by UTF-16 code units; GCS orders by UTF-8 bytes, the same for the names tests use. */
function byName(a: StoredObject, b: StoredObject): number {
  return a.name < b.name ? -1 : a.name > b.name ? 1 : 0;
}

/**
 * The object a get, delete or patch acts on: the live one, or the generation `?generation=` names
 * (404 otherwise), once its `ifGenerationMatch`-style preconditions hold.
 */
function targetOf(u: URL, bucket: string, name: string, objects: Map<string, StoredObject>): StoredObject {
  const obj = objects.get(name);
  const generation = u.searchParams.get('generation');
  if (!obj || (generation && generation !== obj.generation)) throw noSuchObject(bucket, name);
  checkPreconditions(obj, u.searchParams);
  return obj;
}

function permissionOf(method: string, upload: boolean, name: string | undefined): Permission {
  if (upload || method === 'POST') return 'storage.objects.create';
  if (method === 'GET') return name === undefined ? 'storage.objects.list' : 'storage.objects.get';
  if (method === 'DELETE') return 'storage.objects.delete';
  return 'storage.objects.update';
}

/** A response whose answer is never delivered: the socket is destroyed when it would be sent. */
function lostAnswer(res: ServerResponse): ServerResponse {
  const destroy = () => res.socket?.destroy();
  res.writeHead = (() => {
    destroy();
    return res;
  }) as ServerResponse['writeHead'];
  res.end = (() => {
    destroy();
    return res;
  }) as ServerResponse['end'];
  return res;
}

function etag(obj: StoredObject): string {
  return Buffer.from(`${obj.generation}/${obj.metageneration}`).toString('base64');
}

function resource(obj: StoredObject, url: string): Json {
  const b = encodeURIComponent(obj.bucket);
  const n = encodeURIComponent(obj.name);
  return {
    kind: 'storage#object',
    id: `${obj.bucket}/${obj.name}/${obj.generation}`,
    selfLink: `${url}/storage/v1/b/${b}/o/${n}`,
    mediaLink: `${url}/download/storage/v1/b/${b}/o/${n}?generation=${obj.generation}&alt=media`,
    name: obj.name,
    bucket: obj.bucket,
    generation: obj.generation,
    metageneration: String(obj.metageneration),
    contentType: obj.contentType,
    storageClass: obj.storageClass,
    size: String(obj.data.length),
    md5Hash: obj.md5Hash,
    crc32c: obj.crc32c,
    etag: etag(obj),
    timeCreated: obj.timeCreated,
    updated: obj.updated,
    timeStorageClassUpdated: obj.timeCreated,
    ...(obj.temporaryHold ? { temporaryHold: true } : {}),
    ...(obj.eventBasedHold ? { eventBasedHold: true } : {}),
    ...(obj.metadata ? { metadata: obj.metadata } : {}),
  };
}

function noSuchObject(bucket: string, name: string): ApiError {
  return new ApiError(404, 'notFound', `No such object: ${bucket}/${name}`);
}

function conditionNotMet(): ApiError {
  return new ApiError(
    412,
    'conditionNotMet',
    'At least one of the pre-conditions you specified did not hold.',
    {
      locationType: 'header',
      location: 'If-Match',
    },
  );
}

/** ifGenerationMatch / ifGenerationNotMatch / ifMetagenerationMatch against a live object. */
function checkPreconditions(obj: StoredObject, q: URLSearchParams): void {
  const gen = q.get('ifGenerationMatch');
  if (gen !== null && gen !== obj.generation) throw conditionNotMet();
  const notGen = q.get('ifGenerationNotMatch');
  if (notGen !== null && notGen === obj.generation) throw conditionNotMet();
  const meta = q.get('ifMetagenerationMatch');
  if (meta !== null && meta !== String(obj.metageneration)) throw conditionNotMet();
}

function refuseHeld(obj: StoredObject): void {
  const hold = obj.temporaryHold ? 'Temporary' : obj.eventBasedHold ? 'Event-Based' : undefined;
  if (hold) {
    throw new ApiError(
      403,
      'forbidden',
      `Object '${obj.bucket}/${obj.name}' is under active ${hold} hold and cannot be deleted, overwritten or archived until hold is removed.`,
    );
  }
}

function parseHashes(header: string | string[] | undefined): { crc32c?: string; md5?: string } {
  const out: { crc32c?: string; md5?: string } = {};
  for (const part of [header ?? []].flat().join(',').split(',')) {
    const i = part.indexOf('=');
    if (i < 0) continue;
    const key = part.slice(0, i).trim().toLowerCase();
    if (key === 'crc32c' || key === 'md5') out[key] = part.slice(i + 1).trim();
  }
  return out;
}

/** `bytes a-b/total`, `bytes a-b/*`, `bytes a-* /total` (the library's single-chunk form), `bytes * /total|*`. */
function parseContentRange(
  header: string,
  length: number,
): { start?: number; total?: number; openEnded: boolean } | undefined {
  const m = /^bytes (\*|(\d+)-(\d+|\*))\/(\d+|\*)$/.exec(header.trim());
  if (!m) return length === 0 && header === '' ? { openEnded: false } : undefined;
  const total = m[4] === '*' ? undefined : Number(m[4]);
  if (m[1] === '*') return { total, openEnded: false };
  const start = Number(m[2]);
  if (m[3] !== '*' && Number(m[3]) - start + 1 !== length) return undefined;
  // With an end byte and no total, more chunks follow; `a-*` sends the rest in this request.
  return { start, total, openEnded: m[3] === '*' };
}

function boundaryOf(contentType: string): string {
  // Quoted with double quotes as RFC 2046 has it, or single ones, as the gcloud CLI sends it.
  const m = /boundary=(?:"([^"]+)"|'([^']+)'|([^";\s]+))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2] ?? m?.[3];
  if (!boundary) throw new ApiError(400, 'invalid', 'Missing boundary in multipart Content-Type.');
  return boundary;
}

/**
 * The parts of a multipart/related body. Lines end in CRLF as RFC 2046 has it, or in a bare LF,
 * which Cloud Storage accepts too (the gcloud CLI sends LF).
 */
function splitMultipart(contentType: string, body: Buffer): { headers: string; body: Buffer }[] {
  const delim = Buffer.from(`--${boundaryOf(contentType)}`);
  const parts: { headers: string; body: Buffer }[] = [];
  let at = body.indexOf(delim);
  while (at >= 0) {
    const next = body.indexOf(delim, at + delim.length);
    if (next < 0) break;
    let start = at + delim.length;
    if (body[start] === 0x0d) start++;
    if (body[start] === 0x0a) start++;
    let end = next;
    if (body[end - 1] === 0x0a) end--;
    if (body[end - 1] === 0x0d) end--;
    const raw = body.subarray(start, end);
    const crlf = raw.indexOf('\r\n\r\n');
    const lf = raw.indexOf('\n\n');
    const [sep, width] = crlf >= 0 && (lf < 0 || crlf < lf) ? [crlf, 4] : [lf, 2];
    if (sep < 0) throw new ApiError(400, 'invalid', 'A multipart part has no blank line after its headers.');
    parts.push({ headers: raw.subarray(0, sep).toString(), body: raw.subarray(sep + width) });
    at = next;
  }
  if (parts.length !== 2)
    throw new ApiError(400, 'invalid', `A multipart upload needs 2 parts, got ${parts.length}.`);
  return parts;
}

function parseMultipart(contentType: string, body: Buffer): [Json, Buffer] {
  const [meta, media] = splitMultipart(contentType, body);
  return [JSON.parse(meta.body.toString() || '{}'), media.body];
}

function partType(contentType: string, body: Buffer): string {
  const media = splitMultipart(contentType, body)[1];
  return /content-type:\s*([^\r\n]+)/i.exec(media.headers)?.[1] ?? 'application/octet-stream';
}
