/**
 * The S3 stage's least-privilege policy: the one `nightshift iam` prints, the one docs/stage-s3.md shows
 * (run-s3.e2e.test.ts runs a job against a server enforcing exactly that documented policy).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { s3Policy } from '../src/store/s3/index.js';
import { runCli, tempDir, writeConfig } from './helpers/env.js';

const tmp = tempDir('ns-s3-iam-');
afterAll(() => tmp.cleanup());

function config(s3: Record<string, unknown> = {}) {
  return writeConfig(
    tmp.dir,
    {
      job: 'orders',
      source: {
        url: 'postgres://exporter:pw@db.example:5432/app',
        table: 'public.orders',
        cursor: 'ts',
        key: ['id'],
      },
      stage: { url: 's3://example-bucket/nightshift', s3 },
      warehouse: { table: 'analytics.orders', duckdb: { path: join(tmp.dir, 'w.duckdb') } },
    },
    `iam-${Object.keys(s3).length}.yaml`,
  );
}

/** The JSON block of the stage part of `nightshift iam`'s Markdown. */
function stagePolicy(stdout: string): unknown {
  const stage = stdout.slice(stdout.indexOf('## stage'));
  const block = /```json\n([\s\S]*?)\n```/.exec(stage)?.[1];
  return JSON.parse(block ?? 'null');
}

describe('S3 stage IAM policy', () => {
  it('docs/stage-s3.md shows the policy the code generates', () => {
    const readme = readFileSync(join(import.meta.dirname, '..', 'docs', 'stage-s3.md'), 'utf8');
    const block = /<!-- s3-policy:begin -->\n```json\n([\s\S]*?)\n```\n<!-- s3-policy:end -->/.exec(
      readme,
    )?.[1];
    expect(block).toBe(
      JSON.stringify(s3Policy({ bucket: 'example-bucket', prefix: 'nightshift', job: 'orders' }), null, 2),
    );
  });

  it('nightshift iam prints it for an s3:// stage, scoped to the job prefix; a run deletes nothing', async () => {
    const r = await runCli(['iam', '--config', config()]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('## stage: stage s3://example-bucket/nightshift');
    const policy = stagePolicy(r.stdout) as { Statement: { Action: string | string[]; Resource: string }[] };
    expect(policy).toEqual(s3Policy({ bucket: 'example-bucket', prefix: 'nightshift', job: 'orders' }));
    const deletes = policy.Statement.filter((s) => [s.Action].flat().includes('s3:DeleteObject'));
    expect(deletes.map((s) => s.Resource)).toEqual([
      'arn:aws:s3:::example-bucket/nightshift/orders/preflight/*',
    ]);
    expect(JSON.stringify(policy)).not.toMatch(/"s3:\*"|"Resource":"\*"/);
  });

  it('adds KMS for SSE-KMS and s3:PutObjectRetention for Object Lock', async () => {
    const key = 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab';
    const r = await runCli([
      'iam',
      '--config',
      config({
        server_side_encryption: 'aws:kms',
        kms_key_id: key,
        object_lock_mode: 'COMPLIANCE',
        object_lock_retention: '30d',
      }),
    ]);
    expect(r.code, r.stderr).toBe(0);
    const text = JSON.stringify(stagePolicy(r.stdout));
    expect(text).toContain(
      '"Action":["kms:GenerateDataKey","kms:Decrypt"],"Resource":"arn:aws:kms:eu-west-1',
    );
    expect(text).toContain(
      '"Action":"s3:PutObjectRetention","Resource":"arn:aws:s3:::example-bucket/nightshift/orders/*"',
    );
  });
});
