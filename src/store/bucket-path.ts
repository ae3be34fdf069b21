/**
 * Where a bucket-backed stage keeps its objects: the bucket and the prefix a stage URL names
 * (`s3://bucket/a/b`, `gs://bucket/a/b`), and the mapping between the port's keys (relative to the
 * stage) and the bucket's object names. Shared by the S3 and Cloud Storage stores.
 */
import { configError, internalError } from '../errors.js';

export class BucketPath {
  /** The stage URL, normalised (no trailing slash). */
  readonly url: string;
  readonly bucket: string;
  /** The prefix under the bucket, without leading or trailing slash; '' for the bucket root. */
  readonly prefix: string;
  private readonly scheme: string;

  /** Parses `<scheme>://bucket/prefix`; anything else is a configuration error. */
  constructor(url: string, scheme: 's3' | 'gs') {
    const match = new RegExp(`^${scheme}://([^/]+)/?(.*)$`).exec(url);
    if (!match?.[1]) throw configError(`stage.url: ${url} is not a ${scheme}://bucket/prefix URL`);
    this.scheme = scheme;
    this.bucket = match[1];
    this.prefix = (match[2] ?? '').replace(/\/+$/, '');
    this.url = `${scheme}://${this.bucket}${this.prefix ? `/${this.prefix}` : ''}`;
  }

  /** The object name of a key; a key with `..` or an empty segment is a bug, never a path. */
  nameOf(key: string): string {
    if (key.split('/').some((part) => part === '..' || part === ''))
      throw internalError(`invalid object key ${key}`);
    return this.prefix ? `${this.prefix}/${key}` : key;
  }

  /** The key of an object name under the prefix. */
  keyOf(name: string): string {
    return this.prefix ? name.slice(this.prefix.length + 1) : name;
  }

  /** The full name of a listing prefix (which may be '' or end in '/'). */
  listPrefix(prefix: string): string {
    return this.prefix ? `${this.prefix}/${prefix}` : prefix;
  }

  /** The URL of one object, as a warehouse reads it. */
  urlOf(key: string): string {
    return `${this.scheme}://${this.bucket}/${this.nameOf(key)}`;
  }
}
