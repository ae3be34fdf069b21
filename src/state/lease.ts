/**
 * The run lease: `<job>/state/lease.json`, created only if absent and taken over only with a
 * compare-and-swap once its holder let it expire or released it. Each acquisition increments a
 * fencing token that the checkpoint records. A lease that cannot be renewed is lost, and a run
 * that lost its lease stops before it can move the checkpoint.
 */
import { hostname } from 'node:os';
import { leaseHeldError, type NightshiftError, toNightshiftError } from '../errors.js';
import { type ObjectStore, PreconditionFailedError } from '../store/store.js';
import { putState } from './conditional.js';

/** What lease.json holds. */
export interface LeaseRecord {
  job: string;
  run_id: string;
  holder: string;
  token: number;
  acquired_at: string;
  expires_at: string;
  released: boolean;
}

export interface LeaseOptions {
  store: ObjectStore;
  job: string;
  runId: string;
  ttlMs: number;
  /** Called once when the lease is lost (renewal refused or expired). */
  onLost?: (err: NightshiftError) => void;
  /** Clock, for tests. */
  now?: () => number;
}

export const leaseKey = (job: string) => `${job}/state/lease.json`;

/** Who holds the lease: the pod name in Kubernetes (HOSTNAME), plus the process id. */
export function holderName(): string {
  return `${hostname()}/${process.pid}`;
}

export class Lease {
  readonly token: number;
  private etag: string;
  private record: LeaseRecord;
  private readonly options: LeaseOptions;
  private timer: NodeJS.Timeout | undefined;
  private lostError: NightshiftError | undefined;
  private released = false;
  private renewing: Promise<void> | undefined;

  private constructor(options: LeaseOptions, record: LeaseRecord, etag: string) {
    this.options = options;
    this.record = record;
    this.etag = etag;
    this.token = record.token;
  }

  /** Takes the lease or throws a lease_held error (exit 4) naming the holder. */
  static async acquire(options: LeaseOptions): Promise<Lease> {
    const { store, job } = options;
    const now = options.now ?? Date.now;
    const key = leaseKey(job);
    for (let attempt = 0; attempt < 3; attempt++) {
      const current = await store.get(key);
      const previous = current ? parseLease(current.body) : undefined;
      if (previous && !previous.released && Date.parse(previous.expires_at) > now()) {
        throw heldBy(previous, store.url);
      }
      const record: LeaseRecord = {
        job,
        run_id: options.runId,
        holder: holderName(),
        token: (previous?.token ?? 0) + 1,
        acquired_at: new Date(now()).toISOString(),
        expires_at: new Date(now() + options.ttlMs).toISOString(),
        released: false,
      };
      try {
        const info = await putState(
          store,
          key,
          record,
          current ? { ifMatch: current.info.etag } : { ifNoneMatch: true },
        );
        const lease = new Lease(options, record, info.etag);
        lease.schedule();
        return lease;
      } catch (err) {
        // Someone else wrote the lease between our read and our write: read it again.
        if (!(err instanceof PreconditionFailedError)) throw err;
      }
    }
    const latest = await store.get(key);
    const holder = latest ? parseLease(latest.body) : undefined;
    throw holder ? heldBy(holder, store.url) : leaseHeldError(`lost the race for the lease ${key}`);
  }

  /** The run that holds this lease. */
  get runId(): string {
    return this.record.run_id;
  }

  /** When the lease expires unless renewed. */
  get expiresAt(): string {
    return this.record.expires_at;
  }

  /** Throws the lease_held error if the lease was lost. */
  assertHeld(): void {
    if (this.lostError) throw this.lostError;
    const now = (this.options.now ?? Date.now)();
    if (Date.parse(this.record.expires_at) <= now) {
      this.lose(leaseHeldError(`the lease expired at ${this.record.expires_at} before it could be renewed`));
      throw this.lostError;
    }
  }

  private schedule(): void {
    const every = Math.max(1000, Math.floor(this.options.ttlMs / 3));
    this.timer = setInterval(() => {
      this.renewing ??= this.renew().finally(() => {
        this.renewing = undefined;
      });
    }, every);
    this.timer.unref();
  }

  /** Extends the expiry with a compare-and-swap; a refused swap means another run took over. */
  async renew(): Promise<void> {
    if (this.released || this.lostError) return;
    const now = (this.options.now ?? Date.now)();
    const next = { ...this.record, expires_at: new Date(now + this.options.ttlMs).toISOString() };
    try {
      const info = await putState(this.options.store, leaseKey(this.options.job), next, {
        ifMatch: this.etag,
      });
      this.record = next;
      this.etag = info.etag;
    } catch (err) {
      if (err instanceof PreconditionFailedError) {
        this.lose(leaseHeldError('another run took over the lease while this run held it'));
      } else if (Date.parse(this.record.expires_at) <= now) {
        this.lose(
          leaseHeldError(`could not renew the lease before it expired: ${toNightshiftError(err).message}`),
        );
      }
      // Otherwise a transient failure: the next tick tries again before the lease expires.
    }
  }

  private lose(err: NightshiftError): void {
    if (this.lostError) return;
    this.lostError = err;
    this.stop();
    this.options.onLost?.(err);
  }

  private stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  /** Marks the lease released (compare-and-swap), so the next run need not wait for expiry. */
  async release(): Promise<void> {
    this.stop();
    await this.renewing;
    if (this.released || this.lostError) return;
    this.released = true;
    const now = (this.options.now ?? Date.now)();
    const next = { ...this.record, released: true, expires_at: new Date(now).toISOString() };
    try {
      await putState(this.options.store, leaseKey(this.options.job), next, {
        ifMatch: this.etag,
      });
    } catch (err) {
      // Nothing to undo: a lease we cannot release simply expires.
      if (!(err instanceof PreconditionFailedError)) throw toNightshiftError(err);
    }
  }
}

function parseLease(body: Buffer): LeaseRecord | undefined {
  try {
    const record = JSON.parse(body.toString('utf8')) as LeaseRecord;
    return typeof record.token === 'number' && typeof record.expires_at === 'string' ? record : undefined;
  } catch {
    return undefined;
  }
}

function heldBy(record: LeaseRecord, stageUrl: string): NightshiftError {
  return leaseHeldError(
    `another run holds the lease of job ${record.job}: run ${record.run_id} on ${record.holder}, until ${record.expires_at}`,
    {
      hint: `wait for it to finish; if that run is dead its lease expires at ${record.expires_at}. To take over at once, delete ${stageUrl.replace(/\/$/, '')}/${leaseKey(record.job)}`,
    },
  );
}
