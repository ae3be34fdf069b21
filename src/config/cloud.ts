/**
 * The environment that decides a pod's ambient cloud identity: what EKS (IRSA, Pod Identity),
 * GKE (Workload Identity) and Workload Identity Federation put there. Read here, as all
 * environment is; the identity code and the stores get these values through their constructors.
 * Secret values (keys, tokens) are carried only to the SDKs, never logged: the redactor already
 * knows them from their variable names.
 */

/** The AWS variables of the SDK's default credential chain, plus region and STS endpoint. */
export interface AwsEnvironment {
  /** AWS_ACCESS_KEY_ID: static keys (a local run, a CI job). */
  readonly accessKeyId?: string;
  /** AWS_SECRET_ACCESS_KEY. Secret. */
  readonly secretAccessKey?: string;
  /** AWS_SESSION_TOKEN, with temporary static keys. Secret. */
  readonly sessionToken?: string;
  /** AWS_PROFILE: a named profile of ~/.aws/config (SSO, credential_process). */
  readonly profile?: string;
  /** AWS_REGION, else AWS_DEFAULT_REGION. */
  readonly region?: string;
  /** AWS_WEB_IDENTITY_TOKEN_FILE: IRSA's projected service account token. */
  readonly webIdentityTokenFile?: string;
  /** AWS_ROLE_ARN: the role IRSA assumes with that token. */
  readonly roleArn?: string;
  /** AWS_ROLE_SESSION_NAME. */
  readonly roleSessionName?: string;
  /** AWS_CONTAINER_CREDENTIALS_FULL_URI: EKS Pod Identity agent (or an ECS task endpoint). */
  readonly containerCredentialsFullUri?: string;
  /** AWS_CONTAINER_CREDENTIALS_RELATIVE_URI: ECS task role. */
  readonly containerCredentialsRelativeUri?: string;
  /** AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE: Pod Identity's projected token for the agent. */
  readonly containerAuthorizationTokenFile?: string;
  /** AWS_ENDPOINT_URL_STS, else AWS_ENDPOINT_URL: where STS is reached (VPC endpoint, tests). */
  readonly stsEndpoint?: string;
  /** AWS_ENDPOINT_URL_S3, else AWS_ENDPOINT_URL: an S3-compatible server or a VPC endpoint. */
  readonly s3Endpoint?: string;
  /** AWS_EC2_METADATA_DISABLED=true: no instance metadata fallback. */
  readonly ec2MetadataDisabled: boolean;
}

/** The GCP variables of Application Default Credentials. */
export interface GcpEnvironment {
  /** GOOGLE_APPLICATION_CREDENTIALS: a key, `authorized_user` or `external_account` file. */
  readonly credentialsFile?: string;
  /** GCE_METADATA_HOST (or GCE_METADATA_IP): another metadata server address. */
  readonly metadataHost?: string;
  /** GOOGLE_CLOUD_PROJECT, else GCLOUD_PROJECT. */
  readonly project?: string;
  /** gcloud's application default credentials file (`gcloud auth application-default login`). */
  readonly gcloudAdcFile?: string;
  /** KUBERNETES_SERVICE_HOST is set: a metadata server here is GKE's (Workload Identity). */
  readonly kubernetes: boolean;
}

export interface CloudEnvironment {
  readonly aws: AwsEnvironment;
  readonly gcp: GcpEnvironment;
}

const value = (env: NodeJS.ProcessEnv, name: string): string | undefined => env[name] || undefined;

/** The identity-relevant environment. */
export function cloudEnvironment(env: NodeJS.ProcessEnv = process.env): CloudEnvironment {
  return {
    aws: {
      accessKeyId: value(env, 'AWS_ACCESS_KEY_ID'),
      secretAccessKey: value(env, 'AWS_SECRET_ACCESS_KEY'),
      sessionToken: value(env, 'AWS_SESSION_TOKEN'),
      profile: value(env, 'AWS_PROFILE'),
      region: value(env, 'AWS_REGION') ?? value(env, 'AWS_DEFAULT_REGION'),
      webIdentityTokenFile: value(env, 'AWS_WEB_IDENTITY_TOKEN_FILE'),
      roleArn: value(env, 'AWS_ROLE_ARN'),
      roleSessionName: value(env, 'AWS_ROLE_SESSION_NAME'),
      containerCredentialsFullUri: value(env, 'AWS_CONTAINER_CREDENTIALS_FULL_URI'),
      containerCredentialsRelativeUri: value(env, 'AWS_CONTAINER_CREDENTIALS_RELATIVE_URI'),
      containerAuthorizationTokenFile: value(env, 'AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE'),
      stsEndpoint: value(env, 'AWS_ENDPOINT_URL_STS') ?? value(env, 'AWS_ENDPOINT_URL'),
      s3Endpoint: value(env, 'AWS_ENDPOINT_URL_S3') ?? value(env, 'AWS_ENDPOINT_URL'),
      ec2MetadataDisabled: value(env, 'AWS_EC2_METADATA_DISABLED')?.toLowerCase() === 'true',
    },
    gcp: {
      credentialsFile: value(env, 'GOOGLE_APPLICATION_CREDENTIALS'),
      metadataHost: value(env, 'GCE_METADATA_HOST') ?? value(env, 'GCE_METADATA_IP'),
      project: value(env, 'GOOGLE_CLOUD_PROJECT') ?? value(env, 'GCLOUD_PROJECT'),
      gcloudAdcFile: gcloudAdcFile(env),
      kubernetes: value(env, 'KUBERNETES_SERVICE_HOST') !== undefined,
    },
  };
}

/** Where gcloud keeps application default credentials: CLOUDSDK_CONFIG, else ~/.config/gcloud. */
function gcloudAdcFile(env: NodeJS.ProcessEnv): string | undefined {
  const dir = value(env, 'CLOUDSDK_CONFIG') ?? (value(env, 'HOME') && `${env.HOME}/.config/gcloud`);
  return dir ? `${dir}/application_default_credentials.json` : undefined;
}

/**
 * Silences the AWS SDK's Node version notice: it is written to stderr in unstructured lines, once
 * per process, that releases after January 2027 need Node 22. The pinned release runs on 20, and
 * without the notice every line a pod writes stays JSON. Called before an AWS SDK is imported.
 */
export function quietAwsSdk(env: NodeJS.ProcessEnv = process.env): void {
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
}

/**
 * Turns off snowflake-sdk's platform detection: at import it probes cloud metadata endpoints and
 * calls AWS STS to report the platform in its login telemetry; a load needs none of it, and it
 * adds requests nobody asked for (and egress the NetworkPolicy does not open). Called before the
 * SDK is imported.
 */
export function quietSnowflakeSdk(env: NodeJS.ProcessEnv = process.env): void {
  env.SNOWFLAKE_DISABLE_PLATFORM_DETECTION ??= 'true';
}
