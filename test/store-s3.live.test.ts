/**
 * The shared ObjectStore suite against a real S3 bucket, run only when one is given:
 *   NIGHTSHIFT_TEST_S3_URL   s3://bucket/prefix the tests may write under (each test uses a fresh
 *                            sub-prefix and deletes it afterwards)
 * plus AWS credentials from the default chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile,
 * IRSA) and AWS_REGION. Pending multipart uploads are counted with ListMultipartUploads, so the
 * credentials need s3:ListBucketMultipartUploads on the bucket besides the stage policy.
 */
import { randomBytes } from 'node:crypto';
import { AbortMultipartUploadCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import { afterAll, describe } from 'vitest';
import { cloudEnvironment } from '../src/config/cloud.js';
import { s3StageDefaults } from '../src/config/schema.js';
import { BucketPath } from '../src/store/bucket-path.js';
import { S3Store } from '../src/store/s3/index.js';
import { objectStoreSuite } from './helpers/store-suite.js';

const STAGE_URL = process.env.NIGHTSHIFT_TEST_S3_URL?.replace(/\/$/, '');
const env = cloudEnvironment(process.env).aws;
const credentials = Boolean(
  STAGE_URL?.startsWith('s3://') &&
    (env.accessKeyId || env.profile || env.webIdentityTokenFile || env.containerCredentialsFullUri),
);

describe.skipIf(!credentials)('S3 stage live', () => {
  const { bucket } = credentials ? new BucketPath(STAGE_URL as string, 's3') : { bucket: '' };
  const client = credentials ? new S3Client({ region: env.region }) : undefined;
  afterAll(() => client?.destroy());

  /** Multipart uploads in progress under a prefix (aborted after counting, so none stays billed). */
  async function pending(prefix: string): Promise<number> {
    const out = await client?.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `${prefix}/` }));
    const uploads = out?.Uploads ?? [];
    for (const u of uploads)
      await client?.send(
        new AbortMultipartUploadCommand({ Bucket: bucket, Key: u.Key, UploadId: u.UploadId }),
      );
    return uploads.length;
  }

  objectStoreSuite(
    `s3 live (${STAGE_URL})`,
    async () => {
      const url = `${STAGE_URL}/live-${randomBytes(4).toString('hex')}`;
      const store = new S3Store({ url, settings: { ...s3StageDefaults(), part_size_mb: 5 }, env });
      return {
        store,
        pendingUploads: () => pending(store.prefix),
        dispose: async () => {
          const cleanup = new S3Store({ url, settings: s3StageDefaults(), env });
          for await (const o of cleanup.list('')) await cleanup.delete(o.key);
          await cleanup.close();
        },
      };
    },
    { largeFileBytes: 11 * 1024 * 1024, raceRounds: 5, verifiesChecksums: true },
  );
});
