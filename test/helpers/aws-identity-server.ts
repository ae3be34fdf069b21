/**
 * A local server answering as the AWS identity APIs are documented, for contract tests of the
 * real SDK credential providers:
 *
 * - STS (Query API, form-encoded POST, XML responses; reached through AWS_ENDPOINT_URL_STS):
 *   `AssumeRoleWithWebIdentity` issues temporary credentials when the web identity token is one
 *   the "OIDC provider" issued and the role trusts it, else 403 AccessDenied "Not authorized to
 *   perform sts:AssumeRoleWithWebIdentity"; `GetCallerIdentity` answers with the ARN and account
 *   of the access key that signed the request (403 InvalidClientTokenId for an unknown key).
 * - The EKS Pod Identity agent (`GET /v1/credentials`, the `Authorization` header carrying the
 *   projected token): JSON `AccessKeyId`, `SecretAccessKey`, `Token`, `AccountId`, `Expiration`;
 *   400 when no association exists, 401/403 for a wrong token.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { readBody } from './http.js';

export const ACCOUNT = '123456789012';
const NS = 'https://sts.amazonaws.com/doc/2011-06-15/';

/** Credentials the server issued or knows, by access key id. */
interface Principal {
  readonly arn: string;
  readonly userId: string;
  readonly secretAccessKey: string;
  readonly sessionToken?: string;
}

export class AwsIdentityServer {
  url = '';
  /** Web identity tokens the cluster's OIDC provider issued, with their subject. */
  readonly oidcTokens = new Map<string, string>();
  /** Role ARNs whose trust policy trusts the OIDC provider (for which subjects: undefined = any). */
  readonly trustingRoles = new Map<string, string | undefined>();
  /** Pod Identity: the projected token the agent accepts, and the role its association names (undefined: none). */
  podIdentity: { token: string; roleArn: string | undefined } | undefined;
  /** Every request body and header set, to prove no secret leaks elsewhere. */
  readonly calls: { path: string; action?: string; auth?: string }[] = [];
  /** Every token and secret this server handed out. */
  readonly issuedSecrets: string[] = [];
  private readonly principals = new Map<string, Principal>();
  private server!: Server;

  static async start(): Promise<AwsIdentityServer> {
    const s = new AwsIdentityServer();
    s.server = createServer((req, res) => {
      s.handle(req, res).catch((err: unknown) => {
        res.writeHead(500);
        res.end(String(err));
      });
    });
    await new Promise<void>((resolve) => s.server.listen(0, '127.0.0.1', resolve));
    s.url = `http://127.0.0.1:${(s.server.address() as AddressInfo).port}`;
    return s;
  }

  /** Registers long-term keys of an IAM user (static keys in the environment). */
  addUser(accessKeyId: string, secretAccessKey: string, name: string): void {
    this.principals.set(accessKeyId, {
      arn: `arn:aws:iam::${ACCOUNT}:user/${name}`,
      userId: `AIDA${name.toUpperCase()}`,
      secretAccessKey,
    });
  }

  async close(): Promise<void> {
    this.server.closeAllConnections?.();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private issue(roleArn: string, session: string): { id: string; p: Principal } {
    const id = `ASIA${randomBytes(8).toString('hex').toUpperCase()}`;
    const role = roleArn.split('/').pop() ?? 'role';
    const p: Principal = {
      arn: `arn:aws:sts::${ACCOUNT}:assumed-role/${role}/${session}`,
      userId: `AROA${role.toUpperCase()}:${session}`,
      secretAccessKey: randomBytes(20).toString('base64'),
      sessionToken: `FwoG${randomBytes(32).toString('base64')}`,
    };
    this.principals.set(id, p);
    this.issuedSecrets.push(p.secretAccessKey, p.sessionToken as string);
    return { id, p };
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', this.url);
    const body = new URLSearchParams((await readBody(req)).toString());
    if (req.method === 'GET' && url.pathname === '/v1/credentials') return this.agent(req, res);
    const action = body.get('Action') ?? '';
    this.calls.push({ path: url.pathname, action, auth: req.headers.authorization });
    if (action === 'AssumeRoleWithWebIdentity') return this.assumeRole(body, res);
    if (action === 'GetCallerIdentity') return this.callerIdentity(req, res);
    return stsError(res, 400, 'InvalidAction', `Could not find operation ${action}`);
  }

  private assumeRole(body: URLSearchParams, res: ServerResponse): undefined {
    const token = body.get('WebIdentityToken') ?? '';
    const roleArn = body.get('RoleArn') ?? '';
    const subject = this.oidcTokens.get(token);
    if (!subject)
      return stsError(
        res,
        400,
        'InvalidIdentityToken',
        "Couldn't retrieve verification key from your identity provider",
      );
    const trusted =
      this.trustingRoles.has(roleArn) && (this.trustingRoles.get(roleArn) ?? subject) === subject;
    if (!trusted)
      return stsError(res, 403, 'AccessDenied', 'Not authorized to perform sts:AssumeRoleWithWebIdentity');
    const session = body.get('RoleSessionName') ?? 'session';
    const { id, p } = this.issue(roleArn, session);
    const expiration = new Date(Date.now() + 3600_000).toISOString();
    xml(
      res,
      200,
      `<AssumeRoleWithWebIdentityResponse xmlns="${NS}"><AssumeRoleWithWebIdentityResult><SubjectFromWebIdentityToken>${subject}</SubjectFromWebIdentityToken><Audience>sts.amazonaws.com</Audience><AssumedRoleUser><Arn>${p.arn}</Arn><AssumedRoleId>${p.userId}</AssumedRoleId></AssumedRoleUser><Credentials><SessionToken>${p.sessionToken}</SessionToken><SecretAccessKey>${p.secretAccessKey}</SecretAccessKey><Expiration>${expiration}</Expiration><AccessKeyId>${id}</AccessKeyId></Credentials><Provider>oidc.eks.eu-west-1.amazonaws.com/id/TEST</Provider></AssumeRoleWithWebIdentityResult><ResponseMetadata><RequestId>${randomBytes(8).toString('hex')}</RequestId></ResponseMetadata></AssumeRoleWithWebIdentityResponse>`,
    );
  }

  private callerIdentity(req: IncomingMessage, res: ServerResponse): undefined {
    const keyId = /Credential=([^/]+)\//.exec(req.headers.authorization ?? '')?.[1] ?? '';
    const p = this.principals.get(keyId);
    if (!p)
      return stsError(
        res,
        403,
        'InvalidClientTokenId',
        'The security token included in the request is invalid.',
      );
    xml(
      res,
      200,
      `<GetCallerIdentityResponse xmlns="${NS}"><GetCallerIdentityResult><Arn>${p.arn}</Arn><UserId>${p.userId}</UserId><Account>${ACCOUNT}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>${randomBytes(8).toString('hex')}</RequestId></ResponseMetadata></GetCallerIdentityResponse>`,
    );
  }

  /** The Pod Identity agent: the token must be the projected one, and an association must exist. */
  private agent(req: IncomingMessage, res: ServerResponse): undefined {
    this.calls.push({ path: '/v1/credentials', auth: req.headers.authorization });
    const config = this.podIdentity;
    const json = (status: number, body: unknown): undefined => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify(body));
    };
    if (!req.headers.authorization) return json(401, { message: 'Missing authorization token' });
    if (!config || req.headers.authorization !== config.token)
      return json(403, { message: 'Invalid authorization token' });
    if (!config.roleArn)
      return json(400, {
        message:
          'Service account token cannot be exchanged for credentials: no Pod Identity association for this service account',
      });
    const { id, p } = this.issue(config.roleArn, `eks-pod-${randomBytes(3).toString('hex')}`);
    json(200, {
      AccessKeyId: id,
      SecretAccessKey: p.secretAccessKey,
      Token: p.sessionToken,
      AccountId: ACCOUNT,
      Expiration: new Date(Date.now() + 3600_000).toISOString(),
    });
  }
}

function xml(res: ServerResponse, status: number, body: string): undefined {
  res.writeHead(status, { 'content-type': 'text/xml' });
  res.end(body);
}

function stsError(res: ServerResponse, status: number, code: string, message: string): undefined {
  xml(
    res,
    status,
    `<ErrorResponse xmlns="${NS}"><Error><Type>Sender</Type><Code>${code}</Code><Message>${message}</Message></Error><RequestId>${randomBytes(8).toString('hex')}</RequestId></ErrorResponse>`,
  );
}
