/**
 * The run end to end on a Cloud Storage stage: the built CLI as a process, a real PostgreSQL, a
 * DuckDB warehouse, and a `gs://` stage on the local server that answers as the Cloud Storage
 * JSON API, the GKE metadata server and IAM are documented (test/helpers/gcp-server.ts). The
 * pod's identity is GKE Workload Identity: the auth library finds the metadata server through
 * GCE_METADATA_HOST, as on a node it finds 169.254.169.254.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freshDatabase, jsonLines, tempDir } from './helpers/env.js';
import { GcpServer, type Permission } from './helpers/gcp-server.js';
import { scaled } from './helpers/time.js';
import { failsThenRecovers, raceRounds, tripsJob } from './helpers/trips-job.js';

const SA = 'nightshift@acme-data.iam.gserviceaccount.com';
let dbUrl: string;
let server: GcpServer;
const tmp = tempDir('ns-gcs-e2e-');

beforeAll(async () => {
  [dbUrl, server] = await Promise.all([freshDatabase(), GcpServer.start()]);
  server.createBucket('example-bucket');
  server.metadata = { email: SA, project: 'acme-data', cluster: 'data' };
});
afterAll(async () => {
  await server?.close();
  tmp.cleanup();
});

const gkeEnv = () => ({
  GCE_METADATA_HOST: server.host,
  KUBERNETES_SERVICE_HOST: '10.0.0.1',
  GOOGLE_APPLICATION_CREDENTIALS: undefined,
});

function newJob(rows: number, gcs: Record<string, unknown> = {}, overrides: Record<string, unknown> = {}) {
  return tripsJob({
    dbUrl,
    root: tmp.dir,
    rows,
    stage: () => ({
      url: 'gs://example-bucket/nightshift',
      gcs: { api_endpoint: server.url, chunk_size_mb: 1, ...gcs },
    }),
    overrides,
    env: gkeEnv,
  });
}

/** The permissions of the role docs/stage-gcs.md gives. */
function readmePermissions(): Permission[] {
  const readme = readFileSync(join(import.meta.dirname, '..', 'docs', 'stage-gcs.md'), 'utf8');
  const block = /<!-- gcs-role:begin -->\n```sh\n([\s\S]*?)\n```\n<!-- gcs-role:end -->/.exec(readme)?.[1];
  const list = block && /--permissions (\S+)/.exec(block)?.[1];
  if (!list) throw new Error('docs/stage-gcs.md has no Cloud Storage role block');
  return list.split(',') as Permission[];
}

describe('nightshift run on a Cloud Storage stage', () => {
  it('loads, then a rerun moves nothing; the objects are where the layout says; the identity is logged, no token', async () => {
    const job = await newJob(20_000);
    const first = await job.run();
    expect(first.code, first.stdout.slice(-1500)).toBe(0);
    expect(first.stderr).toBe('');
    expect(first.summary).toMatchObject({ status: 'succeeded', rows_source: 20_000, rows_loaded: 20_000 });
    expect(await job.facts()).toEqual(await job.sourceFacts());
    const identity = jsonLines(first.stdout).find((l) => l.msg === 'stage identity');
    expect(identity?.identity).toMatchObject({ mechanism: 'GKE Workload Identity', principal: SA });
    const runId = String(first.summary?.run_id);
    const names = server.objectsOf('example-bucket').map((o) => o.name);
    const root = `nightshift/${job.config.job}`;
    expect(names).toContain(`${root}/state/lease.json`);
    expect(names).toContain(`${root}/state/checkpoint.json`);
    expect(names).toContain(`${root}/runs/${runId}.json`);
    expect(
      names.some((k) =>
        new RegExp(`^${root}/data/dt=\\d{4}-\\d\\d-\\d\\d/run=${runId}/part-00000\\.parquet$`).test(k),
      ),
    ).toBe(true);
    for (const token of server.issuedTokens) expect(first.stdout + first.stderr).not.toContain(token);

    const again = await job.run();
    expect(again.code).toBe(0);
    expect(again.summary).toMatchObject({ status: 'no_new_rows', files: 0 });
    expect(await job.facts()).toEqual(await job.sourceFacts());
    expect(server.pendingUploads()).toBe(0);
  });

  it('holds need storage.objects.update: the role nightshift iam prints works, the documented base role exits 5', async () => {
    server.iam = true;
    try {
      const hold = { temporary_hold: true, event_based_hold: true };
      const job = await newJob(300, hold);
      const printed = await job.run(['iam']);
      expect(printed.code, printed.stderr).toBe(0);
      const role = /--permissions (\S+)/.exec(printed.stdout)?.[1]?.split(',') as Permission[];
      expect(role).toContain('storage.objects.update');
      server.grant(SA, role);
      const ok = await job.run();
      expect(ok.code, ok.stdout.slice(-800)).toBe(0);
      const parts = server
        .objectsOf('example-bucket')
        .filter((o) => o.name.startsWith(`nightshift/${job.config.job}/data/`));
      expect(parts.length).toBeGreaterThan(0);
      for (const part of parts) expect(part).toMatchObject({ temporaryHold: true, eventBasedHold: true });
      const denied = await newJob(300, hold);
      server.revoke(SA);
      server.grant(SA, readmePermissions());
      const r = await denied.run();
      expect(r.code, r.stdout.slice(-800)).toBe(5);
      expect(JSON.stringify(r.summary)).toContain('storage.objects.update');
    } finally {
      server.iam = false;
      server.revoke(SA);
    }
  });

  it('works with exactly the documented role, and exits 5 when one permission is taken out of it', async () => {
    server.iam = true;
    try {
      const job = await newJob(3000);
      server.grant(SA, readmePermissions());
      const ok = await job.run();
      expect(ok.code, ok.stdout.slice(-1500)).toBe(0);
      expect(await job.facts()).toEqual(await job.sourceFacts());
      const check = await job.run(['check']);
      expect(check.code, check.stdout + check.stderr).toBe(0);
      for (const permission of readmePermissions()) {
        const denied = await newJob(100);
        server.revoke(SA);
        server.grant(
          SA,
          readmePermissions().filter((p) => p !== permission),
        );
        // A run never lists (a missing object is a 404 to whoever may read it): `check` does,
        // to find the last manifest. A first run creates the lease and checkpoint; the second
        // must replace them.
        let r: Awaited<ReturnType<typeof denied.run>>;
        if (permission === 'storage.objects.list') {
          r = await denied.run(['check']);
          expect(r.code, `${permission}: ${r.stdout}`).toBe(5);
          expect(r.stdout).toContain(permission);
          continue;
        }
        const first = await denied.run();
        if (first.code === 0) await denied.insert(101, 110);
        r = first.code === 0 ? await denied.run() : first;
        expect(r.code, `${permission}: ${r.stdout.slice(-800)}`).toBe(5);
        expect(JSON.stringify(r.summary)).toContain(permission);
        expect(JSON.stringify(r.summary)).toContain('nightshift iam');
      }
    } finally {
      server.iam = false;
      server.revoke(SA);
    }
  });

  it('nightshift iam prints the role and binding for a gs:// stage', async () => {
    const job = await newJob(0);
    const r = await job.run(['iam']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('## stage: stage gs://example-bucket/nightshift');
    expect(r.stdout).toContain(`--permissions ${readmePermissions().join(',')}`);
    expect(r.stdout).toContain(`objects/nightshift/${job.config.job}/`);
  });

  it('no metadata server and no credentials file: exit 5 before the lease, naming what to set up', async () => {
    const job = await newJob(10);
    const before = server.calls.filter(
      (c) => c.path.startsWith('/storage') || c.path.startsWith('/upload'),
    ).length;
    const r = await job.run(['run'], {
      ...gkeEnv(),
      GCE_METADATA_HOST: '127.0.0.1:9',
      KUBERNETES_SERVICE_HOST: undefined,
    });
    expect(r.code, r.stdout.slice(-800)).toBe(5);
    expect(JSON.stringify(r.summary)).toMatch(/GOOGLE_APPLICATION_CREDENTIALS|Workload Identity/);
    expect(
      server.calls.filter((c) => c.path.startsWith('/storage') || c.path.startsWith('/upload')).length,
    ).toBe(before);
  });

  it('SIGTERM during a resumable upload of a part file: exit 143, the session cancelled, a rerun loads every row once', async () => {
    const job = await newJob(120_000, {}, { parquet: { compression: 'none', part_size_mb: 256 } });
    server.failNext(4, 'http503', { method: 'PUT', path: 'upload_id' });
    const start = server.calls.length;
    let pid = 0;
    const running = job.run(['run'], gkeEnv(), {
      onSpawn: (p) => {
        pid = p;
      },
    });
    while (!server.calls.slice(start).some((c) => c.method === 'PUT' && c.query.upload_id)) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    process.kill(pid, 'SIGTERM');
    const killedAt = Date.now();
    const stopped = await running;
    const stopMs = Date.now() - killedAt;
    server.clearFaults();
    expect(stopped.code, stopped.stdout.slice(-1500)).toBe(143);
    expect(stopMs).toBeLessThan(scaled(10_000));
    expect(server.calls.slice(start).some((c) => c.method === 'DELETE' && c.query.upload_id)).toBe(true);
    expect(server.pendingUploads()).toBe(0);
    const rerun = await job.run();
    expect(rerun.code, rerun.stdout.slice(-1500)).toBe(0);
    expect(rerun.summary).toMatchObject({ rows_loaded: 120_000 });
    expect(await job.facts()).toEqual(await job.sourceFacts());
    expect(server.pendingUploads()).toBe(0);
  });

  it('Cloud Storage errors that outlast the retries exit 75; fewer are carried through', async () => {
    const job = await newJob(500, { max_attempts: 3 });
    server.failNext(2, 'http503', { method: 'POST' });
    server.failNext(2, 'reset', { method: 'GET', path: '/storage/v1/' });
    const carried = await job.run();
    expect(carried.code, carried.stdout.slice(-1500)).toBe(0);
    expect(await job.facts()).toEqual(await job.sourceFacts());

    await job.insert(501, 600);
    server.failNext(1000, 'http503', { path: '%2Fdata%2F' });
    await failsThenRecovers(job, () => server.clearFaults());
  });

  it('two runs started at the same moment, many times over: exactly one loads each window, nothing lost or doubled', async () => {
    await raceRounds(await newJob(2000), 6, 2000, 'GCS stage');
  });
});
