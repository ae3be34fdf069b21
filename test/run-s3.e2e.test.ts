/**
 * The run end to end on an S3 stage: the built CLI as a process, a real PostgreSQL, a DuckDB
 * warehouse, and an `s3://` stage on s3rver behind the proxy that enforces S3's conditional
 * writes, checksums and (when given) an IAM policy (test/helpers/s3-proxy.ts). Static test keys
 * in the environment; STS GetCallerIdentity answered by a local server (AWS_ENDPOINT_URL_STS).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { s3Policy } from '../src/store/s3/index.js';
import { AwsIdentityServer } from './helpers/aws-identity-server.js';
import { freshDatabase, jsonLines, tempDir } from './helpers/env.js';
import { type PolicyDocument, S3Proxy } from './helpers/s3-proxy.js';
import { failsThenRecovers, raceRounds, tripsJob } from './helpers/trips-job.js';

const KEY_ID = 'AKIAE2ETESTKEY000001';
const SECRET = 'e2e-secret-access-key-not-real-000000';
let dbUrl: string;
let proxy: S3Proxy;
let sts: AwsIdentityServer;
const tmp = tempDir('ns-s3-e2e-');

beforeAll(async () => {
  [dbUrl, proxy, sts] = await Promise.all([
    freshDatabase(),
    S3Proxy.start('example-bucket'),
    AwsIdentityServer.start(),
  ]);
  sts.addUser(KEY_ID, SECRET, 'nightshift-e2e');
});
afterAll(async () => {
  await Promise.all([proxy?.close(), sts?.close()]);
  tmp.cleanup();
});

const awsEnv = () => ({
  AWS_ACCESS_KEY_ID: KEY_ID,
  AWS_SECRET_ACCESS_KEY: SECRET,
  AWS_REGION: 'eu-west-1',
  AWS_ENDPOINT_URL_S3: proxy.url,
  AWS_ENDPOINT_URL_STS: sts.url,
  AWS_EC2_METADATA_DISABLED: 'true',
});

function newJob(rows: number, s3: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
  return tripsJob({
    dbUrl,
    root: tmp.dir,
    rows,
    stage: () => ({
      url: 's3://example-bucket/nightshift',
      s3: { force_path_style: true, request_checksum: 'when_required', part_size_mb: 5, ...s3 },
    }),
    overrides,
    env: awsEnv,
  });
}

/** The policy docs/stage-s3.md shows, for this job (it is written for job `orders`). */
function readmePolicy(job: string): PolicyDocument {
  const readme = readFileSync(join(import.meta.dirname, '..', 'docs', 'stage-s3.md'), 'utf8');
  const block = /<!-- s3-policy:begin -->\n```json\n([\s\S]*?)\n```\n<!-- s3-policy:end -->/.exec(
    readme,
  )?.[1];
  if (!block) throw new Error('docs/stage-s3.md has no S3 policy block');
  return JSON.parse(block.replaceAll('nightshift/orders/', `nightshift/${job}/`)) as PolicyDocument;
}

function without(policy: PolicyDocument, action: string): PolicyDocument {
  return {
    ...policy,
    Statement: policy.Statement.map((s) => ({
      ...s,
      Action: (Array.isArray(s.Action) ? s.Action : [s.Action]).filter((a) => a !== action),
    })).filter((s) => s.Action.length > 0),
  };
}

describe('nightshift run on an S3 stage', () => {
  it('loads, then a rerun moves nothing; the objects are where the layout says; the identity is logged', async () => {
    const job = await newJob(20_000, { part_size_mb: 5 });
    const first = await job.run();
    expect(first.code, first.stdout.slice(-1500)).toBe(0);
    // Every line a pod writes is JSON: the AWS SDK's Node version notice is kept off stderr.
    expect(first.stderr).toBe('');
    expect(first.summary).toMatchObject({ status: 'succeeded', rows_source: 20_000, rows_loaded: 20_000 });
    expect(await job.facts()).toEqual(await job.sourceFacts());
    const identity = jsonLines(first.stdout).find((l) => l.msg === 'stage identity');
    expect(identity?.identity).toMatchObject({
      mechanism: 'static keys (environment)',
      principal: 'arn:aws:iam::123456789012:user/nightshift-e2e',
    });
    const runId = String(first.summary?.run_id);
    const keys = proxy.requests.filter((r) => r.method === 'PUT').map((r) => r.key);
    expect(keys).toContain(`nightshift/${job.config.job}/state/lease.json`);
    expect(keys).toContain(`nightshift/${job.config.job}/state/checkpoint.json`);
    expect(keys).toContain(`nightshift/${job.config.job}/runs/${runId}.json`);
    expect(
      keys.some((k) =>
        new RegExp(
          `^nightshift/${job.config.job}/data/dt=\\d{4}-\\d\\d-\\d\\d/run=${runId}/part-00000\\.parquet$`,
        ).test(k),
      ),
    ).toBe(true);
    expect(proxy.accessKeyIds()).toEqual(new Set([KEY_ID]));
    expect(first.stdout + first.stderr).not.toContain(SECRET);

    const again = await job.run();
    expect(again.code).toBe(0);
    expect(again.summary).toMatchObject({ status: 'no_new_rows', files: 0 });
    expect(await job.facts()).toEqual(await job.sourceFacts());
    expect(proxy.pendingUploads()).toBe(0);
  });

  it('works with exactly the documented policy, and exits 5 when one action is taken out of it', async () => {
    const job = await newJob(3000);
    proxy.policy = readmePolicy(job.config.job);
    try {
      const ok = await job.run();
      expect(ok.code, ok.stdout.slice(-1500)).toBe(0);
      expect(await job.facts()).toEqual(await job.sourceFacts());
      const check = await job.run(['check']);
      expect(check.code, check.stdout + check.stderr).toBe(0);
      expect(proxy.requests.some((r) => r.action === 's3:DeleteObject')).toBe(true);
      for (const action of ['s3:PutObject', 's3:GetObject', 's3:ListBucket']) {
        const denied = await newJob(100);
        proxy.policy = without(readmePolicy(denied.config.job), action);
        const r = await denied.run();
        expect(r.code, `${action}: ${r.stdout.slice(-800)}`).toBe(5);
        expect(JSON.stringify(r.summary)).toMatch(/AccessDenied/);
        expect(JSON.stringify(r.summary)).toContain('nightshift iam');
      }
    } finally {
      proxy.policy = undefined;
    }
  });

  it('Object Lock needs s3:PutObjectRetention: the policy nightshift iam prints works, the base policy exits 5', async () => {
    const lock = { object_lock_mode: 'GOVERNANCE', object_lock_retention: '1d' };
    const job = await newJob(300, lock);
    const settings = { object_lock_mode: 'GOVERNANCE' as const };
    proxy.policy = s3Policy({
      bucket: 'example-bucket',
      prefix: 'nightshift',
      job: job.config.job,
      settings,
    }) as unknown as PolicyDocument;
    try {
      const ok = await job.run();
      expect(ok.code, ok.stdout.slice(-800)).toBe(0);
      const denied = await newJob(300, lock);
      proxy.policy = readmePolicy(denied.config.job);
      const r = await denied.run();
      expect(r.code, r.stdout.slice(-800)).toBe(5);
    } finally {
      proxy.policy = undefined;
    }
  });

  it('a policy for another prefix is refused with exit 5 naming the bucket and the action', async () => {
    const job = await newJob(50);
    proxy.policy = readmePolicy('some-other-job');
    try {
      const r = await job.run();
      expect(r.code).toBe(5);
      expect(JSON.stringify(r.summary)).toMatch(
        /s3:(PutObject|GetObject) on s3:\/\/example-bucket\/nightshift\//,
      );
    } finally {
      proxy.policy = undefined;
    }
  });

  it('no AWS credentials at all: exit 5 before the lease, naming what to set up', async () => {
    const job = await newJob(10);
    const env = { ...awsEnv(), AWS_ACCESS_KEY_ID: undefined, AWS_SECRET_ACCESS_KEY: undefined };
    const before = proxy.requests.length;
    const r = await job.run(['run'], env);
    expect(r.code, r.stdout.slice(-800)).toBe(5);
    expect(JSON.stringify(r.summary)).toMatch(/no AWS credentials/);
    expect(JSON.stringify(r.summary)).toMatch(/eks\.amazonaws\.com\/role-arn/);
    expect(proxy.requests.length).toBe(before);
  });

  it('SIGTERM during a multipart upload of a part file: exit 143, the upload aborted, a rerun loads every row once', async () => {
    // Uncompressed, 120k rows make one part file of more than two 5 MiB parts.
    const job = await newJob(
      120_000,
      { part_size_mb: 5 },
      { parquet: { compression: 'none', part_size_mb: 256 } },
    );
    proxy.faults.push({
      action: 's3:PutObject',
      match: (r) => r.query.has('partNumber'),
      kind: 'stall',
      ms: 1500,
      times: 2,
    });
    const start = proxy.requests.length;
    let pid = 0;
    const running = job.run(['run'], awsEnv(), {
      onSpawn: (p) => {
        pid = p;
      },
    });
    while (!proxy.requests.slice(start).some((r) => r.query.has('partNumber'))) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    process.kill(pid, 'SIGTERM');
    const stopped = await running;
    proxy.faults.length = 0;
    expect(stopped.code, stopped.stdout.slice(-1500)).toBe(143);
    const seen = proxy.requests.slice(start);
    expect(seen.some((r) => r.query.has('uploads'))).toBe(true);
    expect(seen.some((r) => r.action === 's3:AbortMultipartUpload')).toBe(true);
    expect(proxy.pendingUploads()).toBe(0);
    const rerun = await job.run();
    expect(rerun.code, rerun.stdout.slice(-1500)).toBe(0);
    expect(rerun.summary).toMatchObject({ rows_loaded: 120_000 });
    expect(await job.facts()).toEqual(await job.sourceFacts());
    expect(proxy.pendingUploads()).toBe(0);
  });

  it('S3 errors that outlast the SDK retries exit 75; fewer are carried through', async () => {
    const job = await newJob(500, { max_attempts: 3 });
    proxy.faults.push({ action: 's3:PutObject', kind: 'SlowDown', times: 2 });
    proxy.faults.push({ action: 's3:GetObject', kind: 'reset', times: 2 });
    const carried = await job.run();
    expect(carried.code, carried.stdout.slice(-1500)).toBe(0);
    expect(await job.facts()).toEqual(await job.sourceFacts());

    await job.insert(501, 600);
    proxy.faults.push({
      action: 's3:PutObject',
      match: (r) => r.key.includes('/data/'),
      kind: 'InternalError',
      times: Infinity,
    });
    await failsThenRecovers(job, () => {
      proxy.faults.length = 0;
    });
  });

  it('two runs started at the same moment, many times over: exactly one loads each window, nothing lost or doubled', async () => {
    await raceRounds(await newJob(2000), 6, 2000, 'S3 stage');
  });
});
