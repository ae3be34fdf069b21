/**
 * Second clients of our contract servers: the gcloud storage, bq and AWS CLIs, which we did not
 * write, pointed at the Cloud Storage, BigQuery and S3 test servers for the calls nightshift's
 * own SDKs make (upload small and resumable/multipart, conditional create, list, read, a load
 * job). A server that only answered our SDK's dialect would fail here. Each CLI's cases are
 * skipped with a notice where it is missing (test/helpers/tools.ts); CI requires them.
 *
 * What the CLIs needed of the servers, each as Cloud Storage answers it: a multipart boundary in
 * single quotes and LF line endings, the resumable path /resumable/upload/storage/v1/..., media
 * downloads at /download/storage/v1/..., buckets.get; and tables.list of BigQuery.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BigQueryContractServer, TOKEN } from './helpers/bigquery-server.js';
import { runProgram, tempDir } from './helpers/env.js';
import { GcpServer } from './helpers/gcp-server.js';
import { S3Proxy } from './helpers/s3-proxy.js';
import { LIMITS } from './helpers/time.js';
import { missingTool } from './helpers/tools.js';

const [noGcloud, noBq, noAws] = [
  await missingTool('gcloud'),
  await missingTool('bq'),
  await missingTool('aws'),
];
const tmp = tempDir('ns-cli-');
afterAll(() => tmp.cleanup());

const small = join(tmp.dir, 'small.json');
const large = join(tmp.dir, 'large.bin');
const largeData = randomBytes(9 * 1024 * 1024 + 123);
writeFileSync(small, '{"watermark":1}\n');
writeFileSync(large, largeData);

/** Runs a CLI with only the environment given (plus PATH and HOME). */
function cli(command: string, args: string[], env: Record<string, string>) {
  return runProgram(command, args, {
    cwd: tmp.dir,
    env: { PATH: process.env.PATH, HOME: tmp.dir, ...env },
    timeoutMs: LIMITS.cliRun,
  });
}

/** gcloud's own state in a temp folder: no login, the token from a file, no prompts. */
function gcloudEnv(tokenFile: string, overrides: Record<string, string>): Record<string, string> {
  return {
    CLOUDSDK_CONFIG: join(tmp.dir, 'gcloud'),
    CLOUDSDK_AUTH_ACCESS_TOKEN_FILE: tokenFile,
    CLOUDSDK_CORE_PROJECT: 'acme-data',
    CLOUDSDK_CORE_DISABLE_PROMPTS: '1',
    CLOUDSDK_CORE_DISABLE_USAGE_REPORTING: 'true',
    CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK: 'true',
    ...overrides,
  };
}

describe.skipIf(!!noGcloud)('gcloud storage against the Cloud Storage test server', () => {
  let server: GcpServer;
  let env: Record<string, string>;
  const gcloud = (...args: string[]) => cli('gcloud', ['storage', ...args], env);
  beforeAll(async () => {
    server = await GcpServer.start();
    server.createBucket('stage-bucket');
    const tokenFile = join(tmp.dir, 'gcs-token');
    writeFileSync(tokenFile, server.issueToken('nightshift@acme-data.iam.gserviceaccount.com'));
    env = gcloudEnv(tokenFile, { CLOUDSDK_API_ENDPOINT_OVERRIDES_STORAGE: `${server.url}/` });
  });
  afterAll(async () => {
    await server?.close();
  });

  it('uploads (multipart and resumable), creates only if absent, lists, reads and describes the bucket', async () => {
    const put = await gcloud('cp', small, 'gs://stage-bucket/job/state/checkpoint.json');
    expect(put.code, put.stderr).toBe(0);
    expect(server.object('stage-bucket', 'job/state/checkpoint.json')?.data.toString()).toBe(
      readFileSync(small, 'utf8'),
    );

    const again = await gcloud(
      'cp',
      '--if-generation-match=0',
      small,
      'gs://stage-bucket/job/state/checkpoint.json',
    );
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('412');
    const created = await gcloud(
      'cp',
      '--if-generation-match=0',
      small,
      'gs://stage-bucket/job/state/lease.json',
    );
    expect(created.code, created.stderr).toBe(0);

    const big = await gcloud('cp', large, 'gs://stage-bucket/job/data/part-00000.parquet');
    expect(big.code, big.stderr).toBe(0);
    expect(server.calls.some((c) => c.query.uploadType === 'resumable')).toBe(true);
    expect(server.object('stage-bucket', 'job/data/part-00000.parquet')?.data.equals(largeData)).toBe(true);

    const listed = await gcloud('ls', 'gs://stage-bucket/job/**');
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout.trim().split('\n').sort()).toEqual([
      'gs://stage-bucket/job/data/part-00000.parquet',
      'gs://stage-bucket/job/state/checkpoint.json',
      'gs://stage-bucket/job/state/lease.json',
    ]);

    const cat = await gcloud('cat', 'gs://stage-bucket/job/state/checkpoint.json');
    expect(cat.stdout).toBe(readFileSync(small, 'utf8'));
    const back = join(tmp.dir, 'back.bin');
    const download = await gcloud('cp', 'gs://stage-bucket/job/data/part-00000.parquet', back);
    expect(download.code, download.stderr).toBe(0);
    expect(readFileSync(back).equals(largeData)).toBe(true);

    const bucket = await gcloud('buckets', 'describe', 'gs://stage-bucket', '--format=value(name)');
    expect(bucket.stdout.trim(), bucket.stderr).toBe('stage-bucket');
  });
});

describe.skipIf(!!(noGcloud || noBq))('bq against the BigQuery test server', () => {
  let server: BigQueryContractServer;
  let env: Record<string, string>;
  let discovery: string;
  const bq = (...args: string[]) =>
    cli(
      'bq',
      [`--api=${server.url}`, `--discovery_file=${discovery}`, '--project_id=acme-data', ...args],
      env,
    );
  beforeAll(async () => {
    server = await new BigQueryContractServer().start();
    server.addDataset('acme-data', 'raw', 'EU');
    server.objects.set('gs://stage-bucket/job/data/part-00000.parquet', 7);
    server.inferredSchema = [{ name: 'trip_id', type: 'INTEGER' }];
    const tokenFile = join(tmp.dir, 'bq-token');
    writeFileSync(tokenFile, TOKEN);
    env = gcloudEnv(tokenFile, {});
    // BigQuery serves its discovery document; bq reads it from the API root unless given one. The
    // one bq ships, pointed at this server.
    const sdkRoot = (
      await cli('gcloud', ['info', '--format=value(installation.sdk_root)'], env)
    ).stdout.trim();
    const doc = JSON.parse(readFileSync(join(sdkRoot, 'platform/bq/discovery_next/bigquery.json'), 'utf8'));
    discovery = join(tmp.dir, 'bigquery-discovery.json');
    writeFileSync(
      discovery,
      JSON.stringify({ ...doc, rootUrl: `${server.url}/`, baseUrl: `${server.url}/bigquery/v2/` }),
    );
  });
  afterAll(async () => {
    await server?.stop();
  });

  it('shows the dataset, runs a Parquet load job to DONE, and lists and shows the table', async () => {
    const dataset = await bq('--format=json', 'show', 'raw');
    expect(dataset.code, dataset.stderr).toBe(0);
    expect(JSON.parse(dataset.stdout)).toMatchObject({ location: 'EU' });

    const load = await bq(
      'load',
      '--source_format=PARQUET',
      'raw.trips',
      'gs://stage-bucket/job/data/part-00000.parquet',
    );
    expect(load.code, load.stdout + load.stderr).toBe(0);
    expect(server.jobsOf('load')).toHaveLength(1);

    const tables = await bq('--format=json', 'ls', 'raw');
    expect(tables.code, tables.stderr).toBe(0);
    expect(
      JSON.parse(tables.stdout).map((t: { tableReference: { tableId: string } }) => t.tableReference.tableId),
    ).toEqual(['trips']);
    const table = await bq('--format=json', 'show', 'raw.trips');
    expect(JSON.parse(table.stdout)).toMatchObject({
      numRows: '7',
      schema: { fields: [{ name: 'trip_id' }] },
    });
  });
});

describe.skipIf(!!noAws)('the AWS CLI against the S3 test server (s3rver behind our proxy)', () => {
  let proxy: S3Proxy;
  let env: Record<string, string>;
  const aws = (...args: string[]) => cli('aws', ['--endpoint-url', proxy.url, ...args], env);
  beforeAll(async () => {
    proxy = await S3Proxy.start('cli-bucket');
    env = {
      AWS_ACCESS_KEY_ID: 'AKIDCLITEST',
      AWS_SECRET_ACCESS_KEY: 'cli-test-secret',
      AWS_DEFAULT_REGION: 'us-east-1',
      AWS_CONFIG_FILE: join(tmp.dir, 'aws-config'),
      AWS_SHARED_CREDENTIALS_FILE: join(tmp.dir, 'aws-credentials'),
      AWS_EC2_METADATA_DISABLED: 'true',
    };
  });
  afterAll(async () => {
    await proxy?.close();
  });

  it('uploads (single and multipart), creates only if absent, lists and downloads', async () => {
    const put = await aws('s3', 'cp', small, 's3://cli-bucket/job/state/checkpoint.json');
    expect(put.code, put.stderr).toBe(0);
    const big = await aws('s3', 'cp', large, 's3://cli-bucket/job/data/part-00000.parquet');
    expect(big.code, big.stderr).toBe(0);
    expect(proxy.requests.some((r) => r.query.has('uploadId'))).toBe(true);
    expect(proxy.pendingUploads()).toBe(0);

    const again = await aws(
      's3api',
      'put-object',
      '--bucket',
      'cli-bucket',
      '--key',
      'job/state/checkpoint.json',
      '--body',
      small,
      '--if-none-match',
      '*',
    );
    expect(again.code).not.toBe(0);
    expect(again.stderr).toContain('PreconditionFailed');

    const listed = await aws('s3', 'ls', '--recursive', 's3://cli-bucket/job/');
    expect(listed.code, listed.stderr).toBe(0);
    expect(listed.stdout).toContain('job/data/part-00000.parquet');
    expect(listed.stdout).toContain('job/state/checkpoint.json');

    const back = join(tmp.dir, 'back-s3.bin');
    const download = await aws('s3', 'cp', 's3://cli-bucket/job/data/part-00000.parquet', back);
    expect(download.code, download.stderr).toBe(0);
    expect(readFileSync(back).equals(largeData)).toBe(true);
  });
});
