/**
 * The settings of an S3 stage (`stage.s3`), beside the backend that reads them; config/schema.ts
 * composes them into the configuration. Imports nothing but zod and config/fields.ts.
 */
import { z } from 'zod';
import { duration } from '../../config/fields.js';

export const s3StageSchema = z
  .strictObject({
    region: z
      .string()
      .min(1)
      .optional()
      .describe(
        'Region of the bucket (`eu-west-1`). Default: `AWS_REGION` or `AWS_DEFAULT_REGION` (EKS sets it), else `us-east-1`.',
      ),
    endpoint: z
      .string()
      .regex(/^https?:\/\//, 'expected an http(s) URL')
      .optional()
      .describe(
        'An S3-compatible endpoint instead of AWS S3: MinIO (`http://minio.minio:9000`), Cloudflare R2 (`https://<account>.r2.cloudflarestorage.com`), a VPC interface endpoint.',
      ),
    force_path_style: z
      .boolean()
      .default(false)
      .describe(
        'Address the bucket in the path (`https://host/bucket/key`) instead of the host name; MinIO needs it.',
      ),
    server_side_encryption: z
      .enum(['AES256', 'aws:kms', 'aws:kms:dsse'])
      .optional()
      .describe(
        'Server-side encryption of every object written: `AES256` (SSE-S3), `aws:kms` (SSE-KMS), `aws:kms:dsse`. Default: the bucket default encryption.',
      ),
    kms_key_id: z
      .string()
      .min(1)
      .optional()
      .describe(
        'KMS key (id, ARN or `alias/...`) for `aws:kms` encryption; the role then needs `kms:GenerateDataKey` and `kms:Decrypt` on it. Default: the AWS managed key `aws/s3`.',
      ),
    storage_class: z
      .enum(['STANDARD', 'STANDARD_IA', 'ONEZONE_IA', 'INTELLIGENT_TIERING', 'GLACIER_IR', 'EXPRESS_ONEZONE'])
      .optional()
      .describe(
        'Storage class of part files (manifests, the lease and the checkpoint stay in the default class: they are small and rewritten). Default: the bucket default, `STANDARD`.',
      ),
    object_lock_mode: z
      .enum(['GOVERNANCE', 'COMPLIANCE'])
      .optional()
      .describe(
        'Object Lock retention mode of part files, for a write-once archive; the bucket must have Object Lock enabled. Needs `object_lock_retention`.',
      ),
    object_lock_retention: duration
      .optional()
      .describe(
        'How long each part file stays locked from its upload (`365d`); the role then also needs `s3:PutObjectRetention`.',
      ),
    part_size_mb: z
      .number()
      .int()
      .min(5)
      .max(5120)
      .default(16)
      .describe(
        'Multipart part size. A part file up to this size is one PutObject; a larger one is a multipart upload of parts this size.',
      ),
    queue_size: z
      .number()
      .int()
      .min(1)
      .max(16)
      .default(4)
      .describe(
        'Parts of one file uploaded at once; each holds `part_size_mb` in memory (two files upload at a time).',
      ),
    max_attempts: z
      .number()
      .int()
      .min(1)
      .max(20)
      .default(5)
      .describe(
        'Attempts per S3 request, retried with exponential backoff and jitter on throttling, 5xx and network errors; then the run exits 75.',
      ),
    request_checksum: z
      .enum(['when_supported', 'when_required'])
      .default('when_supported')
      .describe(
        'When the SDK adds its own request checksum (`requestChecksumCalculation`). Part files always carry a SHA-256 checksum that S3 verifies. `when_required` for S3-compatible servers that do not decode `aws-chunked` bodies.',
      ),
  })
  .describe(
    'S3 stage settings (`stage.url: s3://bucket/prefix`). Credentials come from the AWS default chain.',
  );

/** The S3 settings when the config has no `stage.s3` block. */
export const s3StageDefaults = () => s3StageSchema.parse({});
