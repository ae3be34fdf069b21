/**
 * What a backend can say about who it acts as and what access it needs: the shapes behind
 * `nightshift whoami`, `nightshift check` and `nightshift iam`. Stores and warehouses offer them
 * through optional port members (`identity?`, `accessNeeded?`), so a cloud backend brings its own
 * identity and policy without the commands changing.
 */
import { userInfo } from 'node:os';

/** Who a backend acts as. Never a token, key or password: only names. */
export interface Identity {
  /** How the identity was found: `GKE Workload Identity`, `IRSA (web identity token)`, `local filesystem`. */
  readonly mechanism: string;
  /** The principal: a service account email, a role ARN, `uid 65532`. */
  readonly principal: string;
  /** More facts worth showing (project, account, token file path), never a secret. */
  readonly details?: Readonly<Record<string, string>>;
}

/** One permission a job needs, on what, and why. */
export interface Grant {
  readonly permission: string;
  readonly on: string;
  readonly why: string;
}

/** The least-privilege access one part of a job needs, in that platform's own terms. */
export interface AccessNeeds {
  /** The part: `source`, `stage`, `warehouse`. */
  readonly part: string;
  /** What it is: `PostgreSQL app on db:5432`, `stage file:///data/stage`. */
  readonly target: string;
  /** Who needs the access, when known: the database user, the service account, the role. */
  readonly principal?: string;
  readonly grants: readonly Grant[];
  /** Ready-to-apply text: SQL GRANTs, an IAM policy document, gcloud commands. */
  readonly documents?: readonly {
    title: string;
    language: 'sql' | 'json' | 'shell' | 'text';
    text: string;
  }[];
}

/** The identity of this process on the local machine: what a local stage or file runs as. */
export function localIdentity(what: string): Identity {
  const uid = process.getuid?.() ?? -1;
  const gid = process.getgid?.() ?? -1;
  let name = '';
  try {
    name = userInfo().username;
  } catch {
    // a uid without a passwd entry (as in a pod): the number is the identity
  }
  return {
    mechanism: 'local filesystem',
    principal: `uid ${uid}${name ? ` (${name})` : ''}, gid ${gid}`,
    details: { note: `${what} uses no cloud identity` },
  };
}
