/**
 * The pod's ambient GCP identity through Application Default Credentials: which mechanism applies
 * (a credentials file of some type, or the metadata server of GKE Workload Identity or a GCE VM),
 * whether it yields a token, and which principal that token stands for. A failure says what that
 * mechanism needs instead of the library's "Could not load the default credentials". Nothing here
 * returns or logs a key or token: only names, paths and the token's subject.
 */
import { readFile } from 'node:fs/promises';
import type { GcpEnvironment } from '../config/cloud.js';
import { identityError, NightshiftError, transientError } from '../errors.js';
import type { Identity } from './principal.js';

export type GcpMechanism =
  | 'service account key file'
  | 'gcloud user credentials'
  | 'impersonated service account'
  | 'Workload Identity Federation (file-sourced token)'
  | 'Workload Identity Federation (URL-sourced token)'
  | 'Workload Identity Federation (executable-sourced token)'
  | 'Workload Identity Federation (AWS)'
  | 'GKE Workload Identity'
  | 'GCE metadata server';

/** What ADC found before asking for a token: the mechanism and the facts about it worth showing. */
export interface GcpSetup {
  readonly mechanism: GcpMechanism;
  /** The credentials file, when one applies. */
  readonly file?: string;
  /** An `external_account` file's `credential_source.file`: the OIDC token it reads. */
  readonly tokenFile?: string;
  /** An `external_account` file's audience (the workload identity pool provider). */
  readonly audience?: string;
  /** The service account an `external_account` file impersonates, from its URL. */
  readonly impersonates?: string;
}

/** The fields of a credentials file this module looks at; the secret ones are never read out. */
interface CredentialsFile {
  type?: string;
  client_email?: string;
  audience?: string;
  service_account_impersonation_url?: string;
  source_credentials?: { type?: string };
  credential_source?: { file?: string; url?: string; executable?: unknown; environment_id?: string };
}

const NO_CREDENTIALS_HINT =
  'on GKE, enable Workload Identity on the cluster and node pool and run the pod with its Kubernetes service account; with Workload Identity Federation elsewhere, set GOOGLE_APPLICATION_CREDENTIALS to the external_account file (gcloud iam workload-identity-pools create-cred-config); for a local run, gcloud auth application-default login';

/** `.../serviceAccounts/sa@p.iam.gserviceaccount.com:generateAccessToken` -> the email. */
function impersonatedEmail(url: string | undefined): string | undefined {
  return url ? /serviceAccounts\/([^/:]+):generateAccessToken/.exec(url)?.[1] : undefined;
}

/** The mechanism a credentials file selects, by its `type` and `credential_source`. */
function fileMechanism(json: CredentialsFile): GcpMechanism {
  switch (json.type) {
    case 'service_account':
      return 'service account key file';
    case 'authorized_user':
      return 'gcloud user credentials';
    case 'impersonated_service_account':
      return 'impersonated service account';
    case 'external_account': {
      const source = json.credential_source ?? {};
      if (source.environment_id?.startsWith('aws')) return 'Workload Identity Federation (AWS)';
      if (source.executable) return 'Workload Identity Federation (executable-sourced token)';
      if (source.url) return 'Workload Identity Federation (URL-sourced token)';
      return 'Workload Identity Federation (file-sourced token)';
    }
    default:
      throw identityError(
        `the credentials file has type ${JSON.stringify(json.type)}, which ADC does not know`,
        {
          hint: 'expected service_account, authorized_user, impersonated_service_account or external_account',
        },
      );
  }
}

async function readCredentialsFile(path: string, why: string): Promise<CredentialsFile> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw identityError(
      `${why} names ${path}, which cannot be read (${(err as NodeJS.ErrnoException).code})`,
      {
        cause: err,
        hint: 'mount the credentials file (a ConfigMap for an external_account file, which holds no secret) at that path, or unset the variable so the pod identity is used',
      },
    );
  }
  try {
    return JSON.parse(text) as CredentialsFile;
  } catch (err) {
    throw identityError(`${path} (${why}) is not JSON`, {
      cause: err,
      hint: 'generate it again (gcloud iam workload-identity-pools create-cred-config, or gcloud auth application-default login)',
    });
  }
}

/** Which credentials ADC would use, in ADC's own order, with the facts to check before using them. */
export async function gcpSetup(env: GcpEnvironment): Promise<GcpSetup> {
  const file = env.credentialsFile ?? (env.gcloudAdcFile && (await readable(env.gcloudAdcFile)));
  if (!file) return { mechanism: env.kubernetes ? 'GKE Workload Identity' : 'GCE metadata server' };
  const json = await readCredentialsFile(
    file,
    env.credentialsFile ? 'GOOGLE_APPLICATION_CREDENTIALS' : 'the gcloud application default credentials',
  );
  const mechanism = fileMechanism(json);
  const setup: GcpSetup = {
    mechanism,
    file,
    ...(json.credential_source?.file ? { tokenFile: json.credential_source.file } : {}),
    ...(json.audience ? { audience: json.audience } : {}),
  };
  const impersonates = impersonatedEmail(json.service_account_impersonation_url);
  return impersonates ? { ...setup, impersonates } : setup;
}

async function readable(path: string): Promise<string | undefined> {
  return (await readFile(path).then(
    () => true,
    () => false,
  ))
    ? path
    : undefined;
}

/** The hint for a failure of one mechanism: the likely fix, by what failed. */
export function gcpIdentityHint(setup: GcpSetup, err?: unknown): string {
  const text = errorText(err);
  switch (setup.mechanism) {
    case 'GKE Workload Identity':
      if (/iam\.serviceAccounts\.getAccessToken|PERMISSION_DENIED|403/.test(text))
        return 'the Kubernetes service account may not act as the Google service account it is annotated with: gcloud iam service-accounts add-iam-policy-binding GSA_EMAIL --role roles/iam.workloadIdentityUser --member "serviceAccount:PROJECT_ID.svc.id.goog[NAMESPACE/KSA]"';
      return 'check the iam.gke.io/gcp-service-account annotation on the Kubernetes service account, that the node pool runs the GKE metadata server (--workload-metadata=GKE_METADATA), and that the cluster has a workload pool (--workload-pool=PROJECT_ID.svc.id.goog)';
    case 'GCE metadata server':
      return `no credentials file is set and no metadata server answered: ${NO_CREDENTIALS_HINT}`;
    case 'Workload Identity Federation (file-sourced token)':
    case 'Workload Identity Federation (URL-sourced token)':
    case 'Workload Identity Federation (executable-sourced token)':
    case 'Workload Identity Federation (AWS)':
      if (/generateAccessToken|iam\.serviceAccounts|403|PERMISSION_DENIED/.test(text) && setup.impersonates)
        return `the federated identity may not impersonate ${setup.impersonates}: grant it roles/iam.workloadIdentityUser on that service account (member principal://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/POOL/subject/SUBJECT)`;
      if (/invalid_grant|invalid_request|unauthorized_client|audience|issuer/i.test(text))
        return `the workload identity pool provider ${setup.audience ?? ''} does not accept this token: check the provider's issuer URI and allowed audiences, its attribute condition, and that the token file holds a current token for that audience`;
      return 'check the external_account file (gcloud iam workload-identity-pools create-cred-config) and that the token source is there';
    case 'service account key file':
      return 'the key may be disabled or deleted (gcloud iam service-accounts keys list); better: remove the key file and use Workload Identity';
    case 'gcloud user credentials':
      return 'run gcloud auth application-default login again';
    default:
      return NO_CREDENTIALS_HINT;
  }
}

/** Before any request: the files a mechanism reads must be there. */
export async function precheckGcp(setup: GcpSetup): Promise<void> {
  if (!setup.tokenFile) return;
  try {
    await readFile(setup.tokenFile);
  } catch (err) {
    throw identityError(
      `${setup.mechanism}: the token file ${setup.tokenFile} named by ${setup.file} is absent`,
      {
        cause: err,
        hint: 'mount a projected service account token with the pool provider as audience at that path (a serviceAccountToken projected volume), or fix credential_source.file',
      },
    );
  }
}

const NETWORK_CODES = ['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EAI_AGAIN', 'ENOTFOUND', 'EHOSTUNREACH'];

function errorText(err: unknown): string {
  if (!err) return '';
  const e = err as { message?: string; response?: { status?: number; data?: unknown } };
  const data = e.response?.data;
  return `${e.message ?? String(err)} ${e.response?.status ?? ''} ${typeof data === 'string' ? data : JSON.stringify(data ?? '')}`;
}

/** The HTTP status of a failed auth request, when it got a response. */
function statusOf(err: unknown): number | undefined {
  const e = err as { status?: number; code?: unknown; response?: { status?: number } };
  return e.response?.status ?? e.status ?? (typeof e.code === 'number' ? e.code : undefined);
}

/** A failure to get a token, as an exit-5 error (exit 75 when the endpoint was down or unreachable). */
export function gcpCredentialsError(err: unknown, setup: GcpSetup): NightshiftError {
  if (err instanceof NightshiftError) return err;
  const e = err as { code?: string; message?: string };
  const status = statusOf(err);
  const message = `${setup.mechanism}: could not get a Google access token: ${(e.message ?? String(err)).split('\n')[0]}`;
  // With no credentials file, an unreachable metadata server means there is none: not transient.
  const noMetadataServer = !setup.file && /Could not load the default credentials/.test(e.message ?? '');
  if (!noMetadataServer && (NETWORK_CODES.includes(e.code ?? '') || (status !== undefined && status >= 500)))
    return transientError(message, {
      cause: err,
      hint: 'the token endpoint was unreachable or failing; the next run retries',
    });
  return identityError(message, { cause: err, hint: gcpIdentityHint(setup, err) });
}

/** What the identity code needs from the client's GoogleAuth; nothing that exposes a secret. */
export interface GoogleAuthLike {
  getAccessToken(): Promise<string | null | undefined>;
  getCredentials(): Promise<{ client_email?: string }>;
  getProjectId(): Promise<string>;
}

/** The `sub` claim of a JWT (an OIDC token's subject is no secret; the signature is not read). */
function tokenSubject(jwt: string): string | undefined {
  try {
    const payload = JSON.parse(Buffer.from(jwt.trim().split('.')[1] ?? '', 'base64url').toString('utf8'));
    return typeof payload.sub === 'string' ? payload.sub : undefined;
  } catch {
    return undefined;
  }
}

/** The details worth showing for a mechanism: names and paths, never a secret. */
async function details(setup: GcpSetup): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  if (setup.file) out.credentials_file = setup.file;
  if (setup.tokenFile) {
    out.token_file = setup.tokenFile;
    const sub = tokenSubject(await readFile(setup.tokenFile, 'utf8').catch(() => ''));
    if (sub) out.token_subject = sub;
  }
  if (setup.audience) out.audience = setup.audience;
  return out;
}

/** The principal a metadata server email stands for, and a note for Workload Identity without a GSA. */
function metadataPrincipal(email: string): { principal: string; note?: string } {
  if (email.endsWith('.svc.id.goog'))
    return {
      principal: `Kubernetes service account (workload pool ${email})`,
      note: 'no Google service account is annotated: the Kubernetes service account acts as itself, so grant roles to principal://iam.googleapis.com/projects/PROJECT_NUMBER/locations/global/workloadIdentityPools/PROJECT_ID.svc.id.goog/subject/ns/NAMESPACE/sa/KSA',
    };
  return { principal: email };
}

/**
 * Gets a token (so a broken identity fails here, exit 5, before the lease), then names who it
 * stands for: the service account email, or the federated subject when nothing is impersonated.
 */
export async function gcpIdentity(
  setup: GcpSetup,
  auth: GoogleAuthLike,
  project?: string,
): Promise<Identity> {
  await precheckGcp(setup);
  try {
    if (!(await auth.getAccessToken())) throw new Error('the credentials gave an empty access token');
  } catch (err) {
    throw gcpCredentialsError(err, setup);
  }
  const facts = await details(setup);
  // Only a key file and the metadata server know the project without another API call (for a
  // federated identity the library would ask Cloud Resource Manager, which a pod may not reach).
  const known =
    project ??
    (setup.file && setup.mechanism !== 'service account key file'
      ? undefined
      : await auth.getProjectId().catch(() => undefined));
  if (known) facts.project = known;
  if (setup.impersonates)
    return { mechanism: setup.mechanism, principal: setup.impersonates, details: facts };
  if (setup.mechanism.startsWith('Workload Identity Federation'))
    return {
      mechanism: setup.mechanism,
      principal: `federated subject ${facts.token_subject ?? '(unknown)'} of ${setup.audience ?? 'the pool provider'}`,
      details: facts,
    };
  const email = await auth
    .getCredentials()
    .then((c) => c.client_email)
    .catch(() => undefined);
  if (!email) return { mechanism: setup.mechanism, principal: 'unknown', details: facts };
  const { principal, note } = metadataPrincipal(email);
  return { mechanism: setup.mechanism, principal, details: note ? { ...facts, note } : facts };
}
