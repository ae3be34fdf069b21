/**
 * The settings of a Cloud Storage stage (`stage.gcs`), beside the backend that reads them;
 * config/schema.ts composes them into the configuration. Imports nothing but zod and config/fields.ts.
 */
import { z } from 'zod';

export const gcsStageSchema = z
  .strictObject({
    project: z
      .string()
      .min(1)
      .optional()
      .describe('Project for requests that need one. Default: the project of the credentials.'),
    api_endpoint: z
      .string()
      .regex(/^https?:\/\//, 'expected an http(s) URL')
      .optional()
      .describe(
        'Cloud Storage JSON API endpoint, for Private Service Connect (`https://storage-myendpoint.p.googleapis.com`). Default: the public endpoint.',
      ),
    storage_class: z
      .enum(['STANDARD', 'NEARLINE', 'COLDLINE', 'ARCHIVE'])
      .optional()
      .describe('Storage class of part files. Default: the bucket default.'),
    temporary_hold: z
      .boolean()
      .default(false)
      .describe(
        'Place a temporary hold on each part file: it cannot be deleted or replaced until the hold is released. The role then also needs `storage.objects.update`.',
      ),
    event_based_hold: z
      .boolean()
      .default(false)
      .describe(
        "Place an event-based hold on each part file: the bucket's retention period starts when the hold is released. The role then also needs `storage.objects.update`.",
      ),
    chunk_size_mb: z
      .number()
      .int()
      .min(1)
      .max(1024)
      .default(16)
      .describe(
        'Part files are resumable uploads sent in chunks of this size; a chunk that fails is resent from where the server says it stopped.',
      ),
    max_attempts: z
      .number()
      .int()
      .min(1)
      .max(20)
      .default(5)
      .describe(
        'Attempts per Cloud Storage request, retried with exponential backoff on 429, 5xx and network errors; then the run exits 75.',
      ),
  })
  .describe(
    'Cloud Storage stage settings (`stage.url: gs://bucket/prefix`). Credentials come from Application Default Credentials.',
  );

/** The Cloud Storage settings when the config has no `stage.gcs` block. */
export const gcsStageDefaults = () => gcsStageSchema.parse({});
