/**
 * A real S3 HTTP server for tests: s3rver in this process, behind a thin proxy that enforces what
 * s3rver ignores, the way Amazon S3 documents it:
 *
 * - conditional writes (PutObject and CompleteMultipartUpload API references, "Conditional
 *   requests" in the S3 User Guide):
 *   `If-None-Match: *` answers 412 PreconditionFailed when the key exists; `If-Match: <etag>`
 *   answers 412 when the ETag differs and 404 NoSuchKey when there is no object, on PutObject,
 *   CompleteMultipartUpload and DeleteObject; GetObject `If-Match` answers 412 too. Writes to one key are serialized, as S3 does, so
 *   of two conditional writes racing on a key exactly one wins. These answers are checked against
 *   moto_server's in test/store-s3-moto.test.ts.
 * - checksums ("Checking object integrity"): `x-amz-checksum-sha256` on PutObject and UploadPart
 *   is checked against the body (400 BadDigest when it differs) and echoed back as S3 does, and
 *   the part checksums given to CompleteMultipartUpload must match the parts (400 InvalidPart).
 * - multipart uploads are tracked (s3rver cannot list them), so a test can count those left
 *   pending, that is, parts still billed; AbortMultipartUpload, which s3rver lacks, is answered
 *   here (204, or 404 NoSuchUpload for an upload no longer in progress).
 * - a policy mode: any request whose IAM action an identity policy document does not allow gets
 *   403 AccessDenied, and a missing object reads as 403 unless s3:ListBucket is allowed on the
 *   bucket ("You must have s3:ListBucket to get a 404 rather than a 403").
 * - a fault mode: 500 InternalError, 503 SlowDown or a reset connection on chosen requests.
 * - ListObjectsV2 paging: s3rver makes its continuation tokens with DES, which OpenSSL 3 refuses,
 *   so a listing longer than a page fails there; the proxy pages through s3rver's V1 listing
 *   (markers) and answers V2 with an opaque continuation token, 1000 keys a page, as S3 does.
 *
 * s3rver checks V4 signatures only against its own key, so the proxy records the access key id
 * of each request and forwards it unsigned.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer, type IncomingMessage, request, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import S3rver from 's3rver';
import { readBody } from './http.js';

/** One request as the proxy saw it. */
export interface SeenRequest {
  readonly method: string;
  readonly bucket: string;
  readonly key: string;
  readonly query: URLSearchParams;
  readonly headers: IncomingMessage['headers'];
  /** The IAM action S3 authorizes the request as. */
  readonly action: string;
  /** The access key id in the request's signature. */
  readonly accessKeyId: string | undefined;
  /** The Host header path style: `path` (`host/bucket/key`) or `virtual` (`bucket.host/key`). */
  readonly style: 'path' | 'virtual';
}

export interface Fault {
  /** Which requests: an IAM action (`s3:PutObject`), optionally narrowed. */
  readonly action: string;
  readonly match?: (req: SeenRequest) => boolean;
  /**
   * What the server does instead of answering; or before answering: `stall` holds the request,
   * `corrupt` flips a byte of the body as if the network had.
   */
  /** `lost`: the request is carried out, then the connection is reset before the answer (a lost response). */
  readonly kind: 'InternalError' | 'SlowDown' | 'reset' | 'stall' | 'corrupt' | 'lost';
  /** How long a `stall` holds the request. */
  readonly ms?: number;
  /** How many matching requests fail (Infinity: all). */
  times: number;
}

/** An IAM identity policy document (the subset S3 stage policies use). */
export interface PolicyDocument {
  Version?: string;
  Statement: {
    Effect: 'Allow' | 'Deny';
    Action: string | string[];
    Resource: string | string[];
    Condition?: Record<string, Record<string, string | string[]>>;
  }[];
}

const xmlError = (code: string, message: string) =>
  `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>proxy</RequestId></Error>`;

const STATUS: Record<string, number> = {
  AccessDenied: 403,
  InvalidAccessKeyId: 403,
  PreconditionFailed: 412,
  ConditionalRequestConflict: 409,
  BadDigest: 400,
  InvalidPart: 400,
  InternalError: 500,
  SlowDown: 503,
  NotImplemented: 501,
  NoSuchUpload: 404,
  NoSuchKey: 404,
};

/** `arn:aws:s3:::bucket/*` style matching: `*` any run of characters, `?` one. */
function globMatch(pattern: string, value: string): boolean {
  const re = new RegExp(
    `^${pattern
      .replace(/[.+^${}()|[\]\\]/g, '\\$&')
      .replace(/\*/g, '.*')
      .replace(/\?/g, '.')}$`,
  );
  return re.test(value);
}

const list = (v: string | string[]) => (Array.isArray(v) ? v : [v]);

/** IAM evaluation: an explicit Deny wins, then any Allow; conditions on absent keys do not match. */
export function policyAllows(
  policy: PolicyDocument,
  action: string,
  resource: string,
  context: Record<string, string>,
): boolean {
  const applies = (s: PolicyDocument['Statement'][number]) =>
    list(s.Action).some((a) => globMatch(a.toLowerCase(), action.toLowerCase())) &&
    list(s.Resource).some((r) => globMatch(r, resource)) &&
    Object.entries(s.Condition ?? {}).every(([op, entries]) =>
      Object.entries(entries).every(([key, values]) => {
        const actual = context[key];
        if (actual === undefined) return false;
        if (op === 'StringEquals') return list(values).includes(actual);
        if (op === 'StringLike') return list(values).some((v) => globMatch(v, actual));
        throw new Error(`condition operator ${op} is not modelled`);
      }),
    );
  if (policy.Statement.some((s) => s.Effect === 'Deny' && applies(s))) return false;
  return policy.Statement.some((s) => s.Effect === 'Allow' && applies(s));
}

/** The IAM action of an S3 REST request (Service Authorization Reference, Amazon S3). */
function actionOf(method: string, key: string, query: URLSearchParams): string {
  if (!key) {
    if (query.has('uploads')) return 's3:ListBucketMultipartUploads';
    return method === 'GET' || method === 'HEAD' ? 's3:ListBucket' : `s3:${method}Bucket`;
  }
  if (method === 'DELETE') return query.has('uploadId') ? 's3:AbortMultipartUpload' : 's3:DeleteObject';
  if (method === 'GET' || method === 'HEAD')
    return query.has('uploadId') ? 's3:ListMultipartUploadParts' : 's3:GetObject';
  if (query.has('retention')) return 's3:PutObjectRetention';
  return 's3:PutObject';
}

interface Upstream {
  readonly status: number;
  readonly headers: IncomingMessage['headers'];
  body: Buffer;
}

export class S3Proxy {
  /** Every request, in arrival order. */
  readonly requests: SeenRequest[] = [];
  /** Faults still to inject. */
  readonly faults: Fault[] = [];
  /** When set, requests are authorized against this identity policy. */
  policy: PolicyDocument | undefined;
  /**
   * The answer to `If-Match` on a key that does not exist: 404 NoSuchKey, as S3 (and moto)
   * answer; 412 to check that a client takes either for a lost compare-and-swap.
   */
  ifMatchOnMissing: 'PreconditionFailed' | 'NoSuchKey' = 'NoSuchKey';
  /** When set, only these access key ids are accepted (others: 403 InvalidAccessKeyId). */
  knownKeys: Set<string> | undefined;
  /** Headers of the last write of each key (what reached the "bucket"). */
  readonly writeHeaders = new Map<string, IncomingMessage['headers']>();
  readonly bucket: string;
  private readonly pending = new Map<string, { key: string; parts: Map<number, string> }>();
  private readonly locks = new Map<string, Promise<void>>();
  private server!: Server;
  private s3rver!: S3rver;
  private upstreamPort = 0;
  private dir = '';
  url = '';

  private constructor(bucket: string) {
    this.bucket = bucket;
  }

  /** Starts s3rver with one bucket and the proxy in front of it. */
  static async start(bucket = 'nightshift-test'): Promise<S3Proxy> {
    const proxy = new S3Proxy(bucket);
    proxy.dir = await mkdtemp(join(tmpdir(), 'ns-s3rver-'));
    proxy.s3rver = new S3rver({
      port: 0,
      address: '127.0.0.1',
      silent: true,
      directory: proxy.dir,
      configureBuckets: [{ name: bucket, configs: [] }],
    });
    const info = (await proxy.s3rver.run()) as AddressInfo;
    proxy.upstreamPort = info.port;
    proxy.server = createServer((req, res) => {
      proxy.handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) proxy.reply(res, 'InternalError', String(err));
        else res.destroy();
      });
    });
    await new Promise<void>((resolve) => proxy.server.listen(0, '127.0.0.1', resolve));
    proxy.url = `http://127.0.0.1:${(proxy.server.address() as AddressInfo).port}`;
    return proxy;
  }

  /** Multipart uploads started and neither completed nor aborted: parts S3 would keep billing. */
  pendingUploads(): number {
    return this.pending.size;
  }

  /** The file s3rver keeps an object's bytes in (`<dir>/<bucket>/<key>._S3rver_object`). */
  objectFile(key: string): string {
    const parts = key.split('/');
    const name = parts.pop() ?? '';
    return join(this.dir, this.bucket, ...parts, `${name}._S3rver_object`);
  }

  /** Access key ids that signed requests. */
  accessKeyIds(): Set<string> {
    return new Set(this.requests.map((r) => r.accessKeyId).filter((k): k is string => !!k));
  }

  async close(): Promise<void> {
    this.server.closeAllConnections?.();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    await this.s3rver.close();
    await rm(this.dir, { recursive: true, force: true });
  }

  private reply(
    res: ServerResponse,
    code: string,
    message: string,
    headers: Record<string, string> = {},
  ): void {
    const body = xmlError(code, message);
    res.writeHead(STATUS[code] ?? 400, {
      'content-type': 'application/xml',
      'content-length': Buffer.byteLength(body),
      ...headers,
    });
    res.end(body);
  }

  private parse(req: IncomingMessage): SeenRequest {
    const url = new URL(req.url ?? '/', 'http://proxy');
    const host = (req.headers.host ?? '').split(':')[0] ?? '';
    const virtual = host.startsWith(`${this.bucket}.`);
    const parts = url.pathname.slice(1).split('/');
    const bucket = virtual ? this.bucket : decodeURIComponent(parts.shift() ?? '');
    const key = (virtual ? url.pathname.slice(1) : parts.join('/'))
      .split('/')
      .map((s) => decodeURIComponent(s))
      .join('/');
    const method = req.method ?? 'GET';
    const auth = req.headers.authorization ?? '';
    return {
      method,
      bucket,
      key,
      query: url.searchParams,
      headers: req.headers,
      action: actionOf(method, key, url.searchParams),
      accessKeyId: /Credential=([^/]+)\//.exec(auth)?.[1],
      style: virtual ? 'virtual' : 'path',
    };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const seen = this.parse(req);
    const body = await readBody(req);
    this.requests.push(seen);
    const fault = this.faults.find(
      (f) => f.times > 0 && f.action === seen.action && (f.match?.(seen) ?? true),
    );
    let lose = false;
    if (fault?.kind === 'lost') {
      fault.times--;
      lose = true;
    } else if (fault?.kind === 'stall') {
      fault.times--;
      await new Promise((resolve) => setTimeout(resolve, fault.ms ?? 2000));
    } else if (fault?.kind === 'corrupt') {
      fault.times--;
      body[body.length >> 1] ^= 0xff;
    } else if (fault) {
      fault.times--;
      if (fault.kind === 'reset') return void req.socket.destroy();
      return this.reply(
        res,
        fault.kind,
        fault.kind === 'SlowDown'
          ? 'Please reduce your request rate.'
          : 'We encountered an internal error. Please try again.',
      );
    }
    if (this.knownKeys && !(seen.accessKeyId && this.knownKeys.has(seen.accessKeyId)))
      return this.reply(
        res,
        'InvalidAccessKeyId',
        'The AWS Access Key Id you provided does not exist in our records.',
      );
    if (!(await this.authorized(seen)))
      return this.reply(res, 'AccessDenied', `not authorized to perform ${seen.action}`);
    if (!seen.key || seen.bucket !== this.bucket) return this.forward(req, res, seen, body);
    if (seen.action === 's3:AbortMultipartUpload') return this.abortUpload(res, seen);
    await this.serialized(seen.key, async () => {
      const refusal = await this.check(seen, body);
      if (refusal) return this.reply(res, refusal[0], refusal[1]);
      await this.forward(req, res, seen, body, lose);
    });
  }

  /** The policy check, including S3's 403-for-missing-objects rule. */
  private async authorized(seen: SeenRequest): Promise<boolean> {
    const policy = this.policy;
    if (!policy) return true;
    const bucketArn = `arn:aws:s3:::${seen.bucket}`;
    if (!seen.key) {
      const context: Record<string, string> = {};
      if (seen.query.has('prefix')) context['s3:prefix'] = seen.query.get('prefix') ?? '';
      return policyAllows(policy, seen.action, bucketArn, context);
    }
    const actions = [seen.action];
    if (
      seen.headers['x-amz-object-lock-mode'] &&
      seen.action === 's3:PutObject' &&
      !seen.query.has('partNumber')
    )
      actions.push('s3:PutObjectRetention');
    if (!actions.every((a) => policyAllows(policy, a, `${bucketArn}/${seen.key}`, {}))) return false;
    if (seen.action === 's3:GetObject' && !(await this.head(seen.key)))
      return policyAllows(policy, 's3:ListBucket', bucketArn, {});
    return true;
  }

  /**
   * AbortMultipartUpload, which s3rver lacks: 204 for an upload in progress, 404 NoSuchUpload
   * otherwise (already completed or aborted), as S3 answers.
   */
  private abortUpload(res: ServerResponse, seen: SeenRequest): void {
    const id = seen.query.get('uploadId') ?? '';
    if (!this.pending.delete(id)) {
      this.reply(res, 'NoSuchUpload', 'The specified upload does not exist.');
      return;
    }
    res.writeHead(204);
    res.end();
  }

  /** Runs writes to one key one after another, as S3 orders them. */
  private async serialized(key: string, fn: () => Promise<void>): Promise<void> {
    const previous = this.locks.get(key) ?? Promise.resolve();
    const current = previous.then(fn, fn);
    this.locks.set(
      key,
      current.catch(() => undefined),
    );
    await current;
  }

  /** Preconditions and checksums; returns the S3 error to answer, if any. */
  private async check(seen: SeenRequest, body: Buffer): Promise<[string, string] | undefined> {
    const h = seen.headers;
    if (seen.method === 'DELETE' && !seen.query.has('uploadId')) return this.checkDelete(seen);
    if ((seen.method === 'GET' || seen.method === 'HEAD') && !seen.query.has('uploadId'))
      return this.checkRead(seen);
    if (seen.method !== 'PUT' && seen.method !== 'POST') return undefined;
    if (/^STREAMING-/.test(String(h['x-amz-content-sha256'] ?? '')) || h['x-amz-trailer'])
      return [
        'NotImplemented',
        'aws-chunked bodies are not decoded by this test server: use request_checksum when_required',
      ];
    const uploadId = seen.query.get('uploadId');
    if (uploadId && !this.pending.has(uploadId))
      return ['NoSuchUpload', 'The specified upload does not exist.'];
    const claimed = h['x-amz-checksum-sha256'];
    if (claimed && createHash('sha256').update(body).digest('base64') !== claimed)
      return ['BadDigest', 'The SHA256 you specified did not match the calculated checksum.'];
    if (seen.method === 'POST' && seen.query.has('uploadId')) {
      const upload = this.pending.get(seen.query.get('uploadId') ?? '');
      for (const m of body.toString().matchAll(/<Part>(.*?)<\/Part>/gs)) {
        const n = Number(/<PartNumber>(\d+)<\/PartNumber>/.exec(m[1] ?? '')?.[1]);
        const sum = /<ChecksumSHA256>(.*?)<\/ChecksumSHA256>/.exec(m[1] ?? '')?.[1];
        if (sum && upload?.parts.get(n) !== sum)
          return ['InvalidPart', `part ${n}: checksum differs from the uploaded part`];
      }
    }
    const ifNoneMatch = h['if-none-match'];
    const ifMatch = h['if-match'];
    const completes = seen.method === 'POST' && seen.query.has('uploadId');
    if ((seen.method === 'PUT' || completes) && (ifNoneMatch || ifMatch)) {
      const current = await this.head(seen.key);
      if (ifNoneMatch === '*' && current)
        return ['PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'];
      if (ifMatch && !current && this.ifMatchOnMissing === 'NoSuchKey')
        return ['NoSuchKey', 'The specified key does not exist.'];
      if (ifMatch && (!current || current.etag !== ifMatch))
        return ['PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'];
    }
    return undefined;
  }

  /** DeleteObject with `If-Match` (S3's conditional delete): 412 when the ETag differs. */
  private async checkDelete(seen: SeenRequest): Promise<[string, string] | undefined> {
    const ifMatch = seen.headers['if-match'];
    if (!ifMatch) return undefined;
    const current = await this.head(seen.key);
    if (!current) return ['NoSuchKey', 'The specified key does not exist.'];
    if (current.etag !== ifMatch)
      return ['PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'];
    return undefined;
  }

  /** GetObject/HeadObject with `If-Match` (412 when the ETag differs), which s3rver ignores. */
  private async checkRead(seen: SeenRequest): Promise<[string, string] | undefined> {
    const ifMatch = seen.headers['if-match'];
    if (!ifMatch) return undefined;
    const current = await this.head(seen.key);
    if (current && current.etag !== ifMatch)
      return ['PreconditionFailed', 'At least one of the pre-conditions you specified did not hold'];
    return undefined;
  }

  private async head(key: string): Promise<{ etag: string } | undefined> {
    const r = await this.upstream('HEAD', `/${this.bucket}/${encodeKey(key)}`, {}, Buffer.alloc(0));
    return r.status === 200 ? { etag: String(r.headers.etag ?? '') } : undefined;
  }

  private upstream(
    method: string,
    path: string,
    headers: IncomingMessage['headers'],
    body: Buffer,
  ): Promise<Upstream> {
    return new Promise((resolve, reject) => {
      const out = request(
        {
          host: '127.0.0.1',
          port: this.upstreamPort,
          method,
          path,
          headers: {
            ...headers,
            host: `127.0.0.1:${this.upstreamPort}`,
            'content-length': String(body.length),
          },
        },
        (r) => {
          readBody(r).then(
            (b) => resolve({ status: r.statusCode ?? 500, headers: r.headers, body: b }),
            reject,
          );
        },
      );
      out.on('error', reject);
      out.end(body);
    });
  }

  /** Sends the request on to s3rver unsigned, and records what S3 would track. */
  private async forward(
    req: IncomingMessage,
    res: ServerResponse,
    seen: SeenRequest,
    body: Buffer,
    lose = false,
  ): Promise<void> {
    const headers = { ...req.headers };
    for (const name of [
      'authorization',
      'x-amz-content-sha256',
      'x-amz-date',
      'x-amz-security-token',
      'if-match',
      'if-none-match',
      'transfer-encoding',
      'expect',
    ])
      delete headers[name];
    const v2 = !seen.key && seen.method === 'GET' && seen.query.get('list-type') === '2';
    const query = v2 ? listV1Query(seen.query) : seen.query;
    const path = `/${seen.bucket}${seen.key ? `/${encodeKey(seen.key)}` : ''}${query.size ? `?${query}` : ''}`;
    const r = await this.upstream(seen.method, path, headers, body);
    if (v2 && r.status === 200) r.body = listV2Body(r.body.toString(), seen.query);
    const extra: Record<string, string> = {};
    const uploadId = seen.query.get('uploadId');
    if (r.status < 300) {
      const checksum = seen.headers['x-amz-checksum-sha256'];
      if (checksum && typeof checksum === 'string') extra['x-amz-checksum-sha256'] = checksum;
      if (seen.method === 'PUT' && uploadId && checksum)
        this.pending.get(uploadId)?.parts.set(Number(seen.query.get('partNumber')), String(checksum));
      if (seen.method === 'PUT' && !uploadId) this.writeHeaders.set(seen.key, seen.headers);
      if (seen.method === 'POST' && seen.query.has('uploads')) {
        const id = /<UploadId>(.*?)<\/UploadId>/.exec(r.body.toString())?.[1];
        if (id) this.pending.set(id, { key: seen.key, parts: new Map() });
        this.writeHeaders.set(seen.key, seen.headers);
      }
      if (uploadId && (seen.method === 'POST' || seen.method === 'DELETE')) this.pending.delete(uploadId);
    }
    const headersOut: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(r.headers))
      if (v !== undefined && k !== 'transfer-encoding') headersOut[k] = v;
    if (seen.method !== 'HEAD') headersOut['content-length'] = String(r.body.length);
    if (lose) return void req.socket.destroy();
    res.writeHead(r.status, { ...headersOut, ...extra });
    res.end(seen.method === 'HEAD' ? undefined : r.body);
  }
}

/** A ListObjectsV2 query as s3rver's V1 listing: the continuation token carries the last key. */
function listV1Query(v2: URLSearchParams): URLSearchParams {
  const v1 = new URLSearchParams();
  for (const name of ['prefix', 'delimiter', 'max-keys']) {
    const value = v2.get(name);
    if (value !== null) v1.set(name, value);
  }
  const token = v2.get('continuation-token');
  const after = token ? Buffer.from(token, 'base64url').toString('utf8') : v2.get('start-after');
  if (after) v1.set('marker', after);
  return v1;
}

/** s3rver's V1 listing answered as ListObjectsV2 (KeyCount, NextContinuationToken). */
function listV2Body(v1: string, v2: URLSearchParams): Buffer {
  const keys = [...v1.matchAll(/<Contents>[\s\S]*?<Key>(.*?)<\/Key>/g)].map((m) => m[1] ?? '');
  const truncated = /<IsTruncated>true<\/IsTruncated>/.test(v1);
  const last = keys[keys.length - 1];
  const token = v2.get('continuation-token');
  const extra = [
    `<KeyCount>${keys.length}</KeyCount>`,
    token ? `<ContinuationToken>${token}</ContinuationToken>` : '',
    truncated && last
      ? `<NextContinuationToken>${Buffer.from(unescapeXml(last)).toString('base64url')}</NextContinuationToken>`
      : '',
  ].join('');
  return Buffer.from(
    v1
      .replace(/<Marker>.*?<\/Marker>|<Marker\/>|<NextMarker>.*?<\/NextMarker>/g, '')
      .replace('<IsTruncated>', `${extra}<IsTruncated>`),
  );
}

const unescapeXml = (s: string) =>
  s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&');

const encodeKey = (key: string) => key.split('/').map(encodeURIComponent).join('/');
