/**
 * The shared ObjectStore suite against a real Cloud Storage bucket, run only when one is given:
 *   NIGHTSHIFT_TEST_GCS_URL  gs://bucket/prefix the tests may write under (each test uses a fresh
 *                            sub-prefix and deletes it afterwards)
 * plus Application Default Credentials (GOOGLE_APPLICATION_CREDENTIALS, gcloud's application
 * default credentials, or a metadata server) with the role `nightshift iam` prints on that
 * prefix. Resumable sessions cannot be listed, so unfinished uploads are not counted here; the
 * contract tests count them.
 */

import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { cloudEnvironment } from '../src/config/cloud.js';
import { gcsStageDefaults } from '../src/config/schema.js';
import { GcsStore } from '../src/store/gcs/index.js';
import { objectStoreSuite } from './helpers/store-suite.js';

const STAGE_URL = process.env.NIGHTSHIFT_TEST_GCS_URL?.replace(/\/$/, '');
const env = cloudEnvironment(process.env).gcp;
const credentials = Boolean(
  STAGE_URL?.startsWith('gs://') &&
    (env.credentialsFile || (env.gcloudAdcFile && existsSync(env.gcloudAdcFile)) || env.metadataHost),
);

describe.skipIf(!credentials)('Cloud Storage stage live', () => {
  const fresh = () =>
    new GcsStore({
      url: `${STAGE_URL}/live-${randomBytes(4).toString('hex')}`,
      settings: { ...gcsStageDefaults(), chunk_size_mb: 1 },
      env,
    });

  it('names the identity it acts as, never a token', async () => {
    const id = await fresh().identity();
    expect(id.mechanism).not.toBe('');
    expect(id.principal).not.toMatch(/ya29\./);
  });

  objectStoreSuite(
    `gcs live (${STAGE_URL})`,
    async () => {
      const store = fresh();
      return {
        store,
        dispose: async () => {
          for await (const o of store.list('')) await store.delete(o.key);
          await store.close();
        },
      };
    },
    { largeFileBytes: 3 * 1024 * 1024 + 12345, raceRounds: 5, verifiesChecksums: true },
  );
});
