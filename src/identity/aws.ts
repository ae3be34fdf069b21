/**
 * The pod's ambient AWS identity: which mechanism of the SDK's default chain applies (static keys,
 * IRSA, EKS Pod Identity, a profile, ECS, instance metadata), the credentials provider for it,
 * and who STS says the credentials belong to. Each mechanism gets its own provider rather than the
 * whole chain, so a failure says what that mechanism needs instead of "could not load credentials
 * from any providers". Nothing here returns or logs a key or token, only names and paths.
 */
import { access } from 'node:fs/promises';
import type { AwsCredentialIdentity, AwsCredentialIdentityProvider } from '@aws-sdk/types';
import type { AwsEnvironment } from '../config/cloud.js';
import { identityError, NightshiftError, transientError } from '../errors.js';
import type { Identity } from './principal.js';

export type AwsMechanism =
  | 'static keys (environment)'
  | 'IRSA (web identity token)'
  | 'EKS Pod Identity'
  | 'AWS profile'
  | 'ECS task role'
  | 'EC2 instance metadata'
  | 'none';

/** Which credentials the SDK's default chain would use, in the chain's own order. */
export function awsMechanism(env: AwsEnvironment): AwsMechanism {
  if (env.accessKeyId && env.secretAccessKey) return 'static keys (environment)';
  if (env.profile) return 'AWS profile';
  if (env.webIdentityTokenFile && env.roleArn) return 'IRSA (web identity token)';
  if (env.containerCredentialsFullUri && env.containerAuthorizationTokenFile) return 'EKS Pod Identity';
  if (env.containerCredentialsRelativeUri || env.containerCredentialsFullUri) return 'ECS task role';
  if (!env.ec2MetadataDisabled) return 'EC2 instance metadata';
  return 'none';
}

const NO_CREDENTIALS_HINT =
  'on EKS, annotate the service account with eks.amazonaws.com/role-arn (IRSA) or create a Pod Identity association for it; elsewhere set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY';

/** The hint for a credentials failure of one mechanism: the likely fix, by what failed. */
export function awsIdentityHint(mechanism: AwsMechanism, env: AwsEnvironment, err?: unknown): string {
  const code =
    (err as { name?: string; Code?: string } | undefined)?.Code ?? (err as Error | undefined)?.name;
  const status = (err as { $metadata?: { httpStatusCode?: number } } | undefined)?.$metadata?.httpStatusCode;
  switch (mechanism) {
    case 'IRSA (web identity token)':
      if (code === 'AccessDenied' || code === 'InvalidIdentityToken' || status === 403)
        return `the role ${env.roleArn} does not trust this token: its trust policy must allow sts:AssumeRoleWithWebIdentity for the cluster's OIDC provider (oidc.eks.<region>.amazonaws.com/id/...) with the condition <provider>:sub = system:serviceaccount:<namespace>:<service account>, and the cluster's OIDC provider must exist in IAM`;
      if (code === 'ExpiredTokenException')
        return 'the projected service account token expired: check the node clock and the kubelet token refresh';
      return `read the token file ${env.webIdentityTokenFile}: it is projected only when the service account is annotated with eks.amazonaws.com/role-arn and the pod is (re)created after that, with automountServiceAccountToken not false`;
    case 'EKS Pod Identity':
      return `the EKS Pod Identity agent (${env.containerCredentialsFullUri}) refused: create a Pod Identity association for this namespace and service account (aws eks create-pod-identity-association), check the eks-pod-identity-agent add-on runs on the node, and that the role's trust policy allows pods.eks.amazonaws.com (sts:AssumeRole, sts:TagSession)`;
    case 'static keys (environment)':
      return 'the access key is unknown, disabled or its secret is wrong: check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, or remove them so the pod identity is used';
    case 'AWS profile':
      return `check the profile ${env.profile} in ~/.aws/config (run aws sts get-caller-identity --profile ${env.profile})`;
    case 'ECS task role':
      return 'give the ECS task a task role';
    case 'EC2 instance metadata':
      return `no other credentials were found and the instance metadata service gave none: ${NO_CREDENTIALS_HINT}`;
    default:
      return NO_CREDENTIALS_HINT;
  }
}

/** Checks, before any call, what a mechanism needs on this machine (IRSA's token file). */
async function precheck(mechanism: AwsMechanism, env: AwsEnvironment): Promise<void> {
  if (env.roleArn && !env.webIdentityTokenFile && mechanism !== 'static keys (environment)') {
    throw identityError(`AWS_ROLE_ARN is set (${env.roleArn}) but AWS_WEB_IDENTITY_TOKEN_FILE is not`, {
      hint: 'annotate the service account with eks.amazonaws.com/role-arn so the EKS webhook projects the token and sets both variables, and recreate the pod',
    });
  }
  if (mechanism === 'IRSA (web identity token)') {
    await access(env.webIdentityTokenFile as string).catch((err: unknown) => {
      throw identityError(`IRSA: the web identity token file ${env.webIdentityTokenFile} is absent`, {
        cause: err,
        hint: awsIdentityHint(mechanism, env),
      });
    });
  }
  if (mechanism === 'EKS Pod Identity') {
    await access(env.containerAuthorizationTokenFile as string).catch((err: unknown) => {
      throw identityError(
        `EKS Pod Identity: the token file ${env.containerAuthorizationTokenFile} is absent`,
        {
          cause: err,
          hint: 'the Pod Identity webhook projects it when a Pod Identity association exists for the service account; recreate the pod after creating the association',
        },
      );
    });
  }
  if (mechanism === 'none')
    throw identityError('no AWS credentials: none of the default chain applies', {
      hint: NO_CREDENTIALS_HINT,
    });
}

export interface AwsIdentitySetup {
  readonly env: AwsEnvironment;
  /** Region for STS (the stage's region). */
  readonly region: string;
  /** A custom S3 endpoint (MinIO, R2): without an STS endpoint too, there is no STS to ask. */
  readonly s3Endpoint?: string;
}

/** The credentials provider of the mechanism that applies, with STS at AWS_ENDPOINT_URL_STS. */
export async function awsCredentials(setup: AwsIdentitySetup): Promise<AwsCredentialIdentityProvider> {
  const { env, region } = setup;
  const mechanism = awsMechanism(env);
  const providers = await import('@aws-sdk/credential-providers');
  const clientConfig = { region, ...(env.stsEndpoint ? { endpoint: env.stsEndpoint } : {}) };
  let provider: AwsCredentialIdentityProvider;
  switch (mechanism) {
    case 'static keys (environment)': {
      const creds: AwsCredentialIdentity = {
        accessKeyId: env.accessKeyId as string,
        secretAccessKey: env.secretAccessKey as string,
        ...(env.sessionToken ? { sessionToken: env.sessionToken } : {}),
      };
      provider = async () => creds;
      break;
    }
    case 'IRSA (web identity token)':
      provider = providers.fromTokenFile({
        webIdentityTokenFile: env.webIdentityTokenFile,
        roleArn: env.roleArn,
        roleSessionName: env.roleSessionName ?? `nightshift-${Date.now()}`,
        clientConfig,
      });
      break;
    case 'EKS Pod Identity':
    case 'ECS task role':
      provider = providers.fromHttp({
        awsContainerCredentialsFullUri: env.containerCredentialsFullUri,
        awsContainerCredentialsRelativeUri: env.containerCredentialsRelativeUri,
        awsContainerAuthorizationTokenFile: env.containerAuthorizationTokenFile,
      });
      break;
    case 'AWS profile':
      provider = providers.fromIni({ profile: env.profile, clientConfig });
      break;
    case 'EC2 instance metadata':
      provider = providers.fromInstanceMetadata({ timeout: 1000, maxRetries: 1 });
      break;
    default:
      provider = async () => {
        throw identityError('no AWS credentials', { hint: NO_CREDENTIALS_HINT });
      };
  }
  return wrapProvider(provider, mechanism, env);
}

/** Runs the mechanism's precheck once, and turns provider failures into identity errors with a hint. */
function wrapProvider(
  provider: AwsCredentialIdentityProvider,
  mechanism: AwsMechanism,
  env: AwsEnvironment,
): AwsCredentialIdentityProvider {
  let checked: Promise<void> | undefined;
  return async (options) => {
    checked ??= precheck(mechanism, env);
    await checked;
    try {
      return await provider(options);
    } catch (err) {
      throw credentialsError(err, mechanism, env);
    }
  };
}

const NETWORK_CODES = [
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EAI_AGAIN',
  'ENOTFOUND',
  'EHOSTUNREACH',
  'ENETUNREACH',
];

/** Whether a request never got an answer, or only a 5xx one. */
function unreachable(err: unknown): boolean {
  const e = err as { code?: string; name?: string; $metadata?: { httpStatusCode?: number } };
  const status = e.$metadata?.httpStatusCode;
  return (
    NETWORK_CODES.includes(e.code ?? '') ||
    e.name === 'TimeoutError' ||
    (status !== undefined && status >= 500)
  );
}

/** A failure of the credentials flow, as an exit-5 error (exit 75 when it was the network). */
export function credentialsError(
  err: unknown,
  mechanism: AwsMechanism,
  env: AwsEnvironment,
): NightshiftError {
  if (err instanceof NightshiftError) return err;
  const e = err as { name?: string; message?: string };
  const message = `${mechanism}: could not get AWS credentials: ${e.name ?? 'error'}: ${e.message ?? String(err)}`;
  // The Pod Identity agent runs on the node: out of reach means it is not installed there.
  if (unreachable(err) && mechanism !== 'EKS Pod Identity')
    return transientError(message, {
      cause: err,
      hint: 'STS or the credentials endpoint was unreachable; the next run retries',
    });
  return identityError(message, { cause: err, hint: awsIdentityHint(mechanism, env, err) });
}

/** `arn:aws:sts::123:assumed-role/name/session` -> the role name, for the details. */
function roleOf(arn: string): string | undefined {
  const match = /:assumed-role\/([^/]+)\//.exec(arn);
  return match?.[1];
}

/** The details worth showing for a mechanism: names and paths, never a secret. */
function mechanismDetails(mechanism: AwsMechanism, env: AwsEnvironment): Record<string, string> {
  const details: Record<string, string> = {};
  if (mechanism === 'IRSA (web identity token)' && env.webIdentityTokenFile)
    details.token_file = env.webIdentityTokenFile;
  if (mechanism === 'EKS Pod Identity' && env.containerAuthorizationTokenFile) {
    details.token_file = env.containerAuthorizationTokenFile;
    if (env.containerCredentialsFullUri) details.agent = env.containerCredentialsFullUri;
  }
  if (mechanism === 'AWS profile' && env.profile) details.profile = env.profile;
  return details;
}

/** An access key id shown by its last four characters: enough to tell keys apart. */
const maskKeyId = (id: string) => `${id.slice(0, 4)}…${id.slice(-4)}`;

/**
 * Who STS says the credentials are (GetCallerIdentity needs no permission), with the mechanism.
 * Getting the credentials must succeed (else exit 5); STS itself being out of reach (a private
 * subnet with an S3 endpoint only, or an S3-compatible server without STS) does not stop a run:
 * the principal is then given as unconfirmed.
 */
export async function awsIdentity(
  setup: AwsIdentitySetup,
  credentials: AwsCredentialIdentityProvider,
): Promise<Identity> {
  const { env, region } = setup;
  const mechanism = awsMechanism(env);
  const creds = await credentials();
  const details: Record<string, string> = { region, ...mechanismDetails(mechanism, env) };
  const unconfirmed = (why: string): Identity => ({
    mechanism,
    principal: env.roleArn ?? `access key ${maskKeyId(creds.accessKeyId)}`,
    details: { ...details, note: `principal not confirmed: ${why}` },
  });
  if (setup.s3Endpoint && !env.stsEndpoint)
    return unconfirmed(`${setup.s3Endpoint} is not AWS and no AWS_ENDPOINT_URL_STS is set`);
  const { STSClient, GetCallerIdentityCommand } = await import('@aws-sdk/client-sts');
  const sts = new STSClient({
    region,
    credentials: creds,
    maxAttempts: 3,
    ...(env.stsEndpoint ? { endpoint: env.stsEndpoint } : {}),
  });
  try {
    const who = await sts.send(new GetCallerIdentityCommand({}));
    const arn = who.Arn ?? 'unknown';
    const role = roleOf(arn) ?? (env.roleArn ? env.roleArn.split('/').pop() : undefined);
    return {
      mechanism,
      principal: arn,
      details: { account: who.Account ?? 'unknown', ...details, ...(role ? { role } : {}) },
    };
  } catch (err) {
    if (unreachable(err))
      return unconfirmed(`STS GetCallerIdentity was unreachable: ${(err as Error).message}`);
    throw credentialsError(err, mechanism, env);
  } finally {
    sts.destroy();
  }
}
