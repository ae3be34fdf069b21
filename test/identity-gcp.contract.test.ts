/**
 * Contract tests of the ambient GCP identity: the real @google-cloud/storage and its auth library
 * against a local server answering as the GKE metadata server, Google STS and IAM Credentials
 * are documented (test/helpers/gcp-server.ts). Each mechanism names its principal, never a token,
 * and each failure exits 5 with the likely fix.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { GcpEnvironment } from '../src/config/cloud.js';
import { gcsStageDefaults } from '../src/config/schema.js';
import type { NightshiftError } from '../src/errors.js';
import { GcsStore } from '../src/store/gcs/index.js';
import { externalAccountFile, GcpServer } from './helpers/gcp-server.js';

const BUCKET = 'id-bucket';
const AUDIENCE =
  '//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/eks/providers/cluster';
const SA = 'nightshift@acme-data.iam.gserviceaccount.com';
let server: GcpServer;
let dir: string;
let files = 0;

/** An OIDC token as a projected service account token looks (unsigned here; the server trusts it by value). */
function oidcToken(subject: string): string {
  const part = (o: object) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${part({ alg: 'RS256' })}.${part({ sub: subject, aud: AUDIENCE })}.c2lnbmF0dXJl`;
}

async function store(env: GcpEnvironment): Promise<GcsStore> {
  return new GcsStore({
    url: `gs://${BUCKET}/identity`,
    settings: { ...gcsStageDefaults(), api_endpoint: server.url, max_attempts: 2 },
    env,
  });
}

/** An external_account file reading `token` from a token file; `tokenFile: null` leaves the file out. */
async function federation(options: { token?: string; impersonate?: string; tokenFile?: null }) {
  const n = ++files;
  const tokenFile = join(dir, `token${n}`);
  if (options.tokenFile !== null) await writeFile(tokenFile, options.token ?? '');
  const credentialsFile = join(dir, `external${n}.json`);
  await writeFile(
    credentialsFile,
    JSON.stringify(
      externalAccountFile({
        url: server.url,
        audience: AUDIENCE,
        tokenFile,
        impersonate: options.impersonate,
      }),
    ),
  );
  return { credentialsFile, tokenFile };
}

beforeAll(async () => {
  server = await GcpServer.start();
  server.createBucket(BUCKET);
  dir = await mkdtemp(join(tmpdir(), 'ns-gcp-id-'));
});
afterAll(async () => {
  await server?.close();
  await rm(dir, { recursive: true, force: true });
});

describe('GCP identity: Workload Identity Federation (contract)', () => {
  it('a file-sourced token impersonating a service account: that service account, and the stage works', async () => {
    const token = oidcToken('system:serviceaccount:data:nightshift');
    server.trustOidcToken(token, AUDIENCE, 'system:serviceaccount:data:nightshift');
    server.allowImpersonation('system:serviceaccount:data:nightshift', SA);
    const { credentialsFile, tokenFile } = await federation({ token, impersonate: SA });
    const s = await store({ credentialsFile, kubernetes: true });
    const id = await s.identity();
    expect(id).toMatchObject({
      mechanism: 'Workload Identity Federation (file-sourced token)',
      principal: SA,
      details: { credentials_file: credentialsFile, token_file: tokenFile, audience: AUDIENCE },
    });
    await s.put('probe.json', '{}');
    expect(server.calls.at(-1)?.principal).toBe(SA);
    const shown = JSON.stringify(id);
    expect(shown).not.toContain(token);
    for (const issued of server.issuedTokens) expect(shown).not.toContain(issued);
  });

  it('without impersonation: the federated subject of the pool provider', async () => {
    const token = oidcToken('system:serviceaccount:data:direct');
    server.trustOidcToken(token, AUDIENCE, 'system:serviceaccount:data:direct');
    const { credentialsFile } = await federation({ token });
    const id = await (await store({ credentialsFile, kubernetes: true })).identity();
    expect(id.mechanism).toBe('Workload Identity Federation (file-sourced token)');
    expect(id.principal).toBe(`federated subject system:serviceaccount:data:direct of ${AUDIENCE}`);
  });

  it('the token file is absent: exit 5 before any request, naming the path', async () => {
    const { credentialsFile, tokenFile } = await federation({ tokenFile: null });
    const before = server.calls.length;
    const err = (await (
      await store({ credentialsFile, kubernetes: true })
    )
      .identity()
      .catch((e: unknown) => e)) as NightshiftError;
    expect(err.code).toBe('identity');
    expect(err.message).toContain(`the token file ${tokenFile}`);
    expect(err.hint).toMatch(/projected service account token/);
    expect(server.calls.length).toBe(before);
  });

  it('a token the pool provider does not trust: exit 5 naming the provider checks', async () => {
    const { credentialsFile } = await federation({ token: oidcToken('someone:else') });
    const err = (await (
      await store({ credentialsFile, kubernetes: true })
    )
      .identity()
      .catch((e: unknown) => e)) as NightshiftError;
    expect(err.code).toBe('identity');
    expect(err.hint).toMatch(/does not accept this token/);
  });

  it('impersonation not granted: exit 5 naming the service account and roles/iam.workloadIdentityUser', async () => {
    const token = oidcToken('system:serviceaccount:data:unbound');
    server.trustOidcToken(token, AUDIENCE, 'system:serviceaccount:data:unbound');
    const { credentialsFile } = await federation({
      token,
      impersonate: 'other@acme-data.iam.gserviceaccount.com',
    });
    const err = (await (
      await store({ credentialsFile, kubernetes: true })
    )
      .identity()
      .catch((e: unknown) => e)) as NightshiftError;
    expect(err.code).toBe('identity');
    expect(err.hint).toContain('other@acme-data.iam.gserviceaccount.com');
    expect(err.hint).toContain('roles/iam.workloadIdentityUser');
  });

  it('GOOGLE_APPLICATION_CREDENTIALS naming a file that is not there: exit 5 naming it', async () => {
    const missing = join(dir, 'nowhere.json');
    const err = (await (
      await store({ credentialsFile: missing, kubernetes: true })
    )
      .identity()
      .catch((e: unknown) => e)) as NightshiftError;
    expect(err.code).toBe('identity');
    expect(err.message).toContain(missing);
  });
});

describe('GCP identity: the GKE metadata server (contract)', () => {
  let saved: string | undefined;
  beforeAll(() => {
    saved = process.env.GCE_METADATA_HOST;
    process.env.GCE_METADATA_HOST = server.host;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.GCE_METADATA_HOST;
    else process.env.GCE_METADATA_HOST = saved;
  });

  it('an annotated Kubernetes service account: the Google service account', async () => {
    server.metadata = { email: SA, project: 'acme-data', cluster: 'data' };
    const id = await (await store({ kubernetes: true })).identity();
    expect(id).toMatchObject({
      mechanism: 'GKE Workload Identity',
      principal: SA,
      details: { project: 'acme-data' },
    });
  });

  it('no annotation: the Kubernetes service account acts as itself, and whoami says whom to grant roles to', async () => {
    server.metadata = { email: 'acme-data.svc.id.goog', project: 'acme-data', cluster: 'data' };
    const id = await (await store({ kubernetes: true })).identity();
    expect(id.principal).toBe('Kubernetes service account (workload pool acme-data.svc.id.goog)');
    expect(id.details?.note).toContain('principal://iam.googleapis.com/projects/PROJECT_NUMBER');
  });

  it('the IAM binding is missing: exit 5 with the add-iam-policy-binding command', async () => {
    server.metadata = {
      email: SA,
      project: 'acme-data',
      cluster: 'data',
      tokenError: {
        status: 403,
        body: "Unable to generate access token; IAM returned 403 Forbidden: Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
      },
    };
    const err = (await (
      await store({ kubernetes: true })
    )
      .identity()
      .catch((e: unknown) => e)) as NightshiftError;
    expect(err.code).toBe('identity');
    expect(err.message).toMatch(/^GKE Workload Identity: could not get a Google access token/);
    expect(err.hint).toContain('roles/iam.workloadIdentityUser');
    expect(err.hint).toContain('PROJECT_ID.svc.id.goog[NAMESPACE/KSA]');
    server.metadata = { email: SA, project: 'acme-data' };
  });
});
