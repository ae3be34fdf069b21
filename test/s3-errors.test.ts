/**
 * The S3 error table: errors shaped as the SDK raises them (its own S3ServiceException, Node's
 * network errors, the credential providers' CredentialsProviderError), mapped to exit codes.
 */
import { S3ServiceException } from '@aws-sdk/client-s3';
import { describe, expect, it } from 'vitest';
import { translateS3Error } from '../src/store/s3/errors.js';
import { PreconditionFailedError } from '../src/store/store.js';

const where = { bucket: 'example-bucket', action: 's3:PutObject', key: 'nightshift/orders/state/lease.json' };

function service(name: string, status: number): S3ServiceException {
  return new S3ServiceException({
    name,
    $fault: status >= 500 ? 'server' : 'client',
    $metadata: { httpStatusCode: status },
    message: `${name} from S3`,
  });
}

describe('S3 error translation', () => {
  const cases: [string, unknown, string][] = [
    ['AccessDenied', service('AccessDenied', 403), 'identity'],
    ['InvalidAccessKeyId', service('InvalidAccessKeyId', 403), 'identity'],
    ['SignatureDoesNotMatch', service('SignatureDoesNotMatch', 403), 'identity'],
    ['ExpiredToken', service('ExpiredToken', 400), 'identity'],
    ['KMS access denied', service('KMS.AccessDeniedException', 400), 'identity'],
    [
      'a credentials provider',
      Object.assign(new Error('Could not load credentials'), { name: 'CredentialsProviderError' }),
      'identity',
    ],
    ['NoSuchBucket', service('NoSuchBucket', 404), 'config'],
    ['Object Lock on a bucket without it', service('InvalidRequest', 400), 'config'],
    ['a wrong region', service('PermanentRedirect', 301), 'config'],
    ['SlowDown after retries', service('SlowDown', 503), 'transient'],
    ['InternalError after retries', service('InternalError', 500), 'transient'],
    ['a reset connection', Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 'transient'],
    ['a corrupted body', service('BadDigest', 400), 'transient'],
  ];
  for (const [what, err, code] of cases) {
    it(`${what} -> ${code}`, () => {
      const out = translateS3Error(err, where) as Error & { code: string; hint?: string; cause?: unknown };
      expect(out).toMatchObject({ code });
      expect(out.cause).toBe(err);
      expect(out.message).toContain('s3://example-bucket/nightshift/orders/state/lease.json');
    });
  }

  it('an identity error names the action, the resource and the policy to apply', () => {
    const out = translateS3Error(service('AccessDenied', 403), where) as Error & { hint: string };
    expect(out.message).toContain('s3:PutObject');
    expect(out.hint).toContain(
      'allow s3:PutObject on arn:aws:s3:::example-bucket/nightshift/orders/state/lease.json',
    );
    expect(out.hint).toContain('nightshift iam');
  });

  it('passes PreconditionFailedError through for the lease and checkpoint', () => {
    const lost = new PreconditionFailedError('orders/state/lease.json');
    expect(translateS3Error(lost, where)).toBe(lost);
  });
});
