/**
 * Contract tests of the ambient AWS identity: the real SDK credential providers (web identity
 * token file, the container credentials endpoint) and the real STS client against a local server
 * that answers as STS and the EKS Pod Identity agent are documented to
 * (test/helpers/aws-identity-server.ts), and the S3 requests that follow against s3rver behind
 * the S3 proxy, which records which access key signed each request.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type AwsEnvironment, cloudEnvironment } from '../src/config/cloud.js';
import { s3StageDefaults } from '../src/config/schema.js';
import { awsIdentity, awsMechanism } from '../src/identity/aws.js';
import { S3Store } from '../src/store/s3/index.js';
import { ACCOUNT, AwsIdentityServer } from './helpers/aws-identity-server.js';
import { runCli, writeConfig } from './helpers/env.js';
import { S3Proxy } from './helpers/s3-proxy.js';

let sts: AwsIdentityServer;
let proxy: S3Proxy;
let dir: string;
const ROLE = `arn:aws:iam::${ACCOUNT}:role/nightshift-export`;
const SA_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.projected-service-account-token.signature-part-000';
const POD_TOKEN = 'eyJhbGciOiJSUzI1NiJ9.pod-identity-token.signature-part-111';

beforeAll(async () => {
  [sts, proxy] = await Promise.all([AwsIdentityServer.start(), S3Proxy.start()]);
  dir = await mkdtemp(join(tmpdir(), 'ns-aws-id-'));
  await writeFile(join(dir, 'sa-token'), SA_TOKEN);
  await writeFile(join(dir, 'pod-token'), POD_TOKEN);
  sts.oidcTokens.set(SA_TOKEN, 'system:serviceaccount:data:nightshift');
});
afterAll(async () => {
  await Promise.all([sts?.close(), proxy?.close()]);
  await rm(dir, { recursive: true, force: true });
});
beforeEach(() => {
  sts.trustingRoles.clear();
  sts.podIdentity = undefined;
});

const base = () => ({
  AWS_REGION: 'eu-west-1',
  AWS_ENDPOINT_URL_STS: sts.url,
  AWS_EC2_METADATA_DISABLED: 'true',
});
const irsaEnv = (tokenFile = join(dir, 'sa-token')) => ({
  ...base(),
  AWS_ROLE_ARN: ROLE,
  AWS_WEB_IDENTITY_TOKEN_FILE: tokenFile,
  AWS_ROLE_SESSION_NAME: 'nightshift-test',
});
const podEnv = () => ({
  ...base(),
  AWS_CONTAINER_CREDENTIALS_FULL_URI: `${sts.url}/v1/credentials`,
  AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: join(dir, 'pod-token'),
});

function store(vars: Record<string, string>): S3Store {
  const env: AwsEnvironment = cloudEnvironment(vars).aws;
  return new S3Store({
    url: `s3://${proxy.bucket}/identity`,
    settings: {
      ...s3StageDefaults(),
      endpoint: proxy.url,
      force_path_style: true,
      request_checksum: 'when_required',
    },
    env,
  });
}

/** Everything an error could show: message, hint, and its causes' messages. */
function errorText(err: unknown): string {
  const parts: string[] = [];
  for (
    let e = err as { message?: string; hint?: string; cause?: unknown } | undefined;
    e;
    e = e.cause as typeof e
  )
    parts.push(String(e.message), String(e.hint ?? ''));
  return parts.join('\n');
}

function expectNoSecret(text: string): void {
  for (const secret of [SA_TOKEN, POD_TOKEN, ...sts.issuedSecrets]) expect(text).not.toContain(secret);
}

describe('AWS identity contract: the mechanism comes from the environment', () => {
  it('follows the default chain order', () => {
    const m = (vars: Record<string, string>) => awsMechanism(cloudEnvironment(vars).aws);
    expect(m({ AWS_ACCESS_KEY_ID: 'A', AWS_SECRET_ACCESS_KEY: 'B', ...irsaEnv() })).toBe(
      'static keys (environment)',
    );
    expect(m(irsaEnv())).toBe('IRSA (web identity token)');
    expect(m(podEnv())).toBe('EKS Pod Identity');
    expect(m({ AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: '/v2/credentials/x' })).toBe('ECS task role');
    expect(m({ AWS_PROFILE: 'dev' })).toBe('AWS profile');
    expect(m({})).toBe('EC2 instance metadata');
    expect(m({ AWS_EC2_METADATA_DISABLED: 'true' })).toBe('none');
  });
});

describe('AWS identity contract: IRSA (AssumeRoleWithWebIdentity through AWS_ENDPOINT_URL_STS)', () => {
  it('assumes the role with the projected token; S3 requests are signed with the issued key', async () => {
    sts.trustingRoles.set(ROLE, 'system:serviceaccount:data:nightshift');
    const s = store(irsaEnv());
    try {
      const who = await s.identity();
      expect(who).toMatchObject({
        mechanism: 'IRSA (web identity token)',
        principal: `arn:aws:sts::${ACCOUNT}:assumed-role/nightshift-export/nightshift-test`,
        details: {
          account: ACCOUNT,
          role: 'nightshift-export',
          token_file: join(dir, 'sa-token'),
          region: 'eu-west-1',
        },
      });
      const before = proxy.requests.length;
      await s.put('job/state/probe.json', '{}');
      const signer = proxy.requests.slice(before).map((r) => r.accessKeyId);
      expect(signer[0]).toMatch(/^ASIA/);
      expect(sts.calls.some((c) => c.action === 'AssumeRoleWithWebIdentity')).toBe(true);
      expectNoSecret(JSON.stringify(who));
    } finally {
      await s.close();
    }
  });

  it('the role does not trust the token: exit 5 naming the trust policy, no token shown', async () => {
    sts.trustingRoles.set(ROLE, 'system:serviceaccount:other:someone');
    const s = store(irsaEnv());
    try {
      const err = await s.identity().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'identity', exitCode: 5 });
      const text = errorText(err);
      expect(text).toMatch(/AccessDenied|Not authorized/);
      expect(text).toMatch(/trust policy/);
      expect(text).toMatch(/system:serviceaccount:<namespace>:<service account>/);
      expectNoSecret(text);
    } finally {
      await s.close();
    }
  });

  it('the token file is absent: exit 5 naming the annotation and automount', async () => {
    const s = store(irsaEnv(join(dir, 'no-such-token')));
    try {
      const err = await s.identity().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'identity' });
      expect(errorText(err)).toMatch(/no-such-token is absent/);
      expect(errorText(err)).toMatch(/eks\.amazonaws\.com\/role-arn/);
      expect(errorText(err)).toMatch(/automountServiceAccountToken/);
    } finally {
      await s.close();
    }
  });

  it('AWS_ROLE_ARN without a token file: the service account is not annotated', async () => {
    const s = store({ ...base(), AWS_ROLE_ARN: ROLE });
    try {
      const err = await s.put('job/x.json', '{}').catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'identity' });
      expect(errorText(err)).toMatch(/annotate the service account with eks\.amazonaws\.com\/role-arn/);
    } finally {
      await s.close();
    }
  });
});

describe('AWS identity contract: EKS Pod Identity (the agent endpoint with the projected token)', () => {
  it('gets credentials from the agent with the token file as Authorization; S3 is signed with them', async () => {
    sts.podIdentity = { token: POD_TOKEN, roleArn: ROLE };
    const s = store(podEnv());
    try {
      const who = await s.identity();
      expect(who.mechanism).toBe('EKS Pod Identity');
      expect(who.principal).toMatch(
        new RegExp(`^arn:aws:sts::${ACCOUNT}:assumed-role/nightshift-export/eks-pod-`),
      );
      expect(who.details).toMatchObject({ account: ACCOUNT, token_file: join(dir, 'pod-token') });
      expect(sts.calls.find((c) => c.path === '/v1/credentials')?.auth).toBe(POD_TOKEN);
      const before = proxy.requests.length;
      await s.put('job/state/pod.json', '{}');
      expect(proxy.requests[before]?.accessKeyId).toMatch(/^ASIA/);
      expectNoSecret(JSON.stringify(who));
    } finally {
      await s.close();
    }
  });

  it('no Pod Identity association (the agent answers 400): exit 5 naming the association', async () => {
    sts.podIdentity = { token: POD_TOKEN, roleArn: undefined };
    const s = store(podEnv());
    try {
      const err = await s.identity().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'identity' });
      expect(errorText(err)).toMatch(/create-pod-identity-association/);
      expectNoSecret(errorText(err));
    } finally {
      await s.close();
    }
  });

  it('the agent refuses the token (403): exit 5, the token never shown', async () => {
    sts.podIdentity = { token: 'another-token-entirely', roleArn: ROLE };
    const s = store(podEnv());
    try {
      const err = await s.identity().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'identity' });
      expectNoSecret(errorText(err));
    } finally {
      await s.close();
    }
  });
});

describe('AWS identity contract: static keys and no credentials', () => {
  it('static keys: GetCallerIdentity names the IAM user', async () => {
    sts.addUser('AKIASTATICCONTRACT01', 'static-secret-value-000', 'ci-exporter');
    const s = store({
      ...base(),
      AWS_ACCESS_KEY_ID: 'AKIASTATICCONTRACT01',
      AWS_SECRET_ACCESS_KEY: 'static-secret-value-000',
    });
    try {
      expect(await s.identity()).toMatchObject({
        mechanism: 'static keys (environment)',
        principal: `arn:aws:iam::${ACCOUNT}:user/ci-exporter`,
      });
    } finally {
      await s.close();
    }
  });

  it('an S3-compatible endpoint without STS: the principal is the masked key id, unconfirmed, and the run is not stopped', async () => {
    const env = {
      AWS_ACCESS_KEY_ID: 'AKIAMINIOKEY00004321',
      AWS_SECRET_ACCESS_KEY: 'minio-secret-value-0000',
      AWS_EC2_METADATA_DISABLED: 'true',
    };
    const s = store(env);
    try {
      const who = await s.identity();
      expect(who.principal).toBe('access key AKIA…4321');
      expect(who.details?.note).toMatch(/not confirmed: .* is not AWS/);
      expect(JSON.stringify(who)).not.toContain('minio-secret-value-0000');
    } finally {
      await s.close();
    }
  });

  it('STS out of reach after the credentials were found (S3-only VPC endpoint): unconfirmed, not an error', async () => {
    const closed = await AwsIdentityServer.start();
    const deadUrl = closed.url;
    await closed.close();
    const env = cloudEnvironment({ ...irsaEnv(), AWS_ENDPOINT_URL_STS: deadUrl }).aws;
    const who = await awsIdentity({ env, region: 'eu-west-1' }, async () => ({
      accessKeyId: 'ASIAFROMTHEROLE00001',
      secretAccessKey: 'not-used-here-000000',
    }));
    expect(who).toMatchObject({ mechanism: 'IRSA (web identity token)', principal: ROLE });
    expect(who.details?.note).toMatch(/unreachable/);
  });

  it('nothing at all: exit 5 naming the annotation or association to create', async () => {
    const s = store({ AWS_EC2_METADATA_DISABLED: 'true', AWS_ENDPOINT_URL_STS: sts.url });
    try {
      const err = await s.identity().catch((e: unknown) => e);
      expect(err).toMatchObject({ code: 'identity' });
      expect(errorText(err)).toMatch(/eks\.amazonaws\.com\/role-arn.*Pod Identity association/s);
    } finally {
      await s.close();
    }
  });
});

describe('AWS identity contract: the CLI', () => {
  const config = () =>
    writeConfig(dir, {
      job: 'whoami-job',
      source: {
        url: 'postgres://exporter:pw@db.example:5432/app',
        table: 'public.t',
        cursor: 'ts',
        key: ['id'],
      },
      stage: {
        url: `s3://${proxy.bucket}/cli`,
        s3: { endpoint: proxy.url, force_path_style: true, request_checksum: 'when_required' },
      },
      warehouse: { table: 'analytics.t', duckdb: { path: join(dir, 'w.duckdb') } },
      temp_dir: pathToFileURL(dir).pathname,
    });

  it('whoami shows the IRSA mechanism and role, never the token', async () => {
    sts.trustingRoles.set(ROLE, undefined);
    const r = await runCli(['whoami', '--config', config()], irsaEnv());
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `IRSA (web identity token) as arn:aws:sts::${ACCOUNT}:assumed-role/nightshift-export/`,
    );
    expect(r.stdout).toContain(`token_file: ${join(dir, 'sa-token')}`);
    expectNoSecret(r.stdout + r.stderr);
  });

  it('whoami with a role that does not trust the cluster exits 5 with the fix, and still reports every part', async () => {
    const r = await runCli(['whoami', '--config', config()], irsaEnv());
    expect(r.code).toBe(5);
    expect(r.stdout + r.stderr).toMatch(/trust policy/);
    // The stage failed; the source role and the warehouse are reported all the same.
    expect(r.stdout).toMatch(/^stage {6}s3:\/\/.*\n {11}FAIL: .*\n {11}fix: /m);
    expect(r.stdout).toContain('role exporter, password from the configuration (never shown)');
    expect(r.stdout).toMatch(/^warehouse {2}duckdb analytics\.t\n {11}local filesystem as uid \d+/m);
    expectNoSecret(r.stdout + r.stderr);
  });
});
