/**
 * The manifests under k8s/: every overlay renders offline with `kubectl kustomize`, every object
 * validates strictly against the Kubernetes API schema (unknown fields fail), and what the
 * manifests promise (exit code policy, hardening, identity, egress) agrees with the code.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { configSchema } from '../src/config/schema.js';
import { EXIT_CODES } from '../src/errors.js';
import { TERMINATION_DEADLINE_MS } from '../src/run/abort.js';
import { runProgram, tempDir } from './helpers/env.js';
import { KUBERNETES_VERSION, validateManifest } from './helpers/k8s-schema.js';

const ROOT = resolve(import.meta.dirname, '..');

/** A program's stdout; its stderr in the error when it fails. Never spawnSync: see runProgram. */
async function output(command: string, args: string[]): Promise<string> {
  const r = await runProgram(command, args);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return r.stdout;
}
/** A kubectl with kustomize v5: $KUBECTL (.ci/run sets it), else what tools/kubectl.sh finds. */
const KUBECTL = process.env.KUBECTL || (await output('sh', [join(ROOT, 'tools/kubectl.sh')])).trim();
const OVERLAYS = ['gke', 'eks', 'local'] as const;
const tmp = tempDir('ns-k8s-');
afterAll(() => tmp.cleanup());

// biome-ignore lint/suspicious/noExplicitAny: manifests are free-form YAML, read by path
type Doc = Record<string, any>;

async function kustomize(dir: string): Promise<Doc[]> {
  const out = await output(KUBECTL, ['kustomize', dir]);
  return parseAllDocuments(out).map((d) => d.toJS() as Doc);
}

const rendered = Object.fromEntries(
  await Promise.all(OVERLAYS.map(async (o) => [o, await kustomize(join(ROOT, 'k8s/overlays', o))])),
) as Record<(typeof OVERLAYS)[number], Doc[]>;
const find = (docs: Doc[], kind: string) => docs.find((d) => d.kind === kind) as Doc;
const podSpec = (docs: Doc[]) => find(docs, 'CronJob').spec.jobTemplate.spec.template.spec;

/** Exit codes of the contract that Kubernetes should (not) retry. */
const contract = Object.values(EXIT_CODES).filter((e) => e.exit !== 0);
const noRetry = contract.filter((e) => !e.retry).map((e) => e.exit);
const retry = contract.filter((e) => e.retry).map((e) => e.exit);

describe(`k8s/ manifests, strictly against the Kubernetes ${KUBERNETES_VERSION} schema`, () => {
  for (const overlay of OVERLAYS) {
    it(`overlay ${overlay} renders and every object validates`, () => {
      const docs = rendered[overlay];
      expect(docs.map((d) => d.kind).sort()).toEqual(
        [
          'ConfigMap',
          'CronJob',
          'NetworkPolicy',
          'ServiceAccount',
          ...(overlay === 'local' ? ['PersistentVolumeClaim'] : []),
        ].sort(),
      );
      for (const doc of docs) expect(validateManifest(doc)).toEqual([]);
    });
  }

  it('the IRSA component renders on the base and validates', async () => {
    const dir = join(tmp.dir, 'irsa');
    mkdirSync(dir, { recursive: true });
    writeFileSync(
      join(dir, 'kustomization.yaml'),
      `resources: [${relative(dir, join(ROOT, 'k8s/base'))}]\ncomponents: [${relative(dir, join(ROOT, 'k8s/components/irsa-projected-token'))}]\n`,
    );
    const docs = await kustomize(dir);
    for (const doc of docs) expect(validateManifest(doc)).toEqual([]);
    const spec = podSpec(docs);
    expect(spec.automountServiceAccountToken).toBe(false);
    const token = spec.volumes.find((v: Doc) => v.name === 'aws-iam-token');
    expect(token.projected.sources[0].serviceAccountToken.audience).toBe('sts.amazonaws.com');
  });

  it('rejects a misspelled field, a misplaced field and a wrong type', () => {
    const cronJob = structuredClone(find(rendered.gke, 'CronJob'));
    const container = cronJob.spec.jobTemplate.spec.template.spec.containers[0];
    container.securityContext.readOnlyRootFileSystem = true;
    cronJob.spec.podFailurePolicy = { rules: [] };
    cronJob.spec.jobTemplate.spec.backoffLimit = '3';
    delete cronJob.spec.schedule;
    const errors = validateManifest(cronJob);
    expect(errors).toEqual(
      expect.arrayContaining([
        'CronJob /spec/jobTemplate/spec/template/spec/containers/0/securityContext/readOnlyRootFileSystem: unknown field',
        'CronJob /spec/podFailurePolicy: unknown field',
        'CronJob /spec/jobTemplate/spec/backoffLimit: expected integer, got string',
        'CronJob /spec/schedule: required',
      ]),
    );
    expect(errors, errors.join('\n')).toHaveLength(4);
    expect(validateManifest({ ...find(rendered.gke, 'NetworkPolicy'), apiVersion: 'v1' })).toEqual([
      'NetworkPolicy: apiVersion v1, expected networking.k8s.io/v1',
    ]);
  });
});

describe('the CronJob keeps the promises of the exit code contract and the pod', () => {
  for (const overlay of OVERLAYS) {
    it(`${overlay}: podFailurePolicy is keyed on src/errors.ts EXIT_CODES`, () => {
      const job = find(rendered[overlay], 'CronJob').spec.jobTemplate.spec;
      const rules = job.podFailurePolicy.rules as Doc[];
      expect(rules[0]).toEqual({
        action: 'Ignore',
        onPodConditions: [{ type: 'DisruptionTarget', status: 'True' }],
      });
      const byAction = (action: string) => rules.find((r) => r.action === action)?.onExitCodes;
      expect(byAction('FailJob')).toEqual({ containerName: 'nightshift', operator: 'In', values: noRetry });
      expect(byAction('Count')).toEqual({ containerName: 'nightshift', operator: 'In', values: retry });
      expect(job.template.spec.restartPolicy).toBe('Never');
      expect(job.template.spec.containers.map((c: Doc) => c.name)).toEqual(['nightshift']);
      expect(job.backoffLimit).toBeGreaterThan(0);
    });
  }

  it('schedules without overlap and with bounded history', () => {
    for (const overlay of OVERLAYS) {
      const spec = find(rendered[overlay], 'CronJob').spec;
      expect(spec).toMatchObject({
        concurrencyPolicy: 'Forbid',
        timeZone: 'Etc/UTC',
        successfulJobsHistoryLimit: expect.any(Number),
        failedJobsHistoryLimit: expect.any(Number),
        startingDeadlineSeconds: expect.any(Number),
      });
      expect(spec.jobTemplate.spec.activeDeadlineSeconds).toBeGreaterThan(0);
      expect(spec.jobTemplate.spec.ttlSecondsAfterFinished).toBeGreaterThan(0);
    }
  });

  it('runs hardened: non-root, read-only root, no privileges, a size-limited /tmp, 512Mi/1Gi', () => {
    for (const overlay of OVERLAYS) {
      const spec = podSpec(rendered[overlay]);
      expect(spec.securityContext).toMatchObject({
        runAsNonRoot: true,
        seccompProfile: { type: 'RuntimeDefault' },
      });
      expect(spec.securityContext.runAsUser).toBeGreaterThan(0);
      const [c] = spec.containers;
      expect(c.securityContext).toMatchObject({
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ['ALL'] },
      });
      expect(c.resources.requests.memory).toBe('512Mi');
      expect(c.resources.limits.memory).toBe('1Gi');
      const tmpMount = c.volumeMounts.find((m: Doc) => m.mountPath === '/tmp');
      const tmpVolume = spec.volumes.find((v: Doc) => v.name === tmpMount.name);
      expect(tmpVolume.emptyDir.sizeLimit).toMatch(/^\d+Gi$/);
      expect(c.terminationMessagePath).toBe('/dev/termination-log');
      expect(c.terminationMessagePolicy).toBe('FallbackToLogsOnError');
      // The watchdog ends the process at TERMINATION_DEADLINE_MS; the kubelet must not SIGKILL first.
      expect(spec.terminationGracePeriodSeconds * 1000).toBeGreaterThan(TERMINATION_DEADLINE_MS);
      expect(spec.terminationGracePeriodSeconds).toBeLessThanOrEqual(30);
    }
  });

  it('mounts no API token, and carries the platform identity annotation', () => {
    const annotation = { gke: 'iam.gke.io/gcp-service-account', eks: 'eks.amazonaws.com/role-arn' };
    for (const overlay of OVERLAYS) {
      const sa = find(rendered[overlay], 'ServiceAccount');
      expect(sa.automountServiceAccountToken).toBe(false);
      expect(podSpec(rendered[overlay]).automountServiceAccountToken).toBe(false);
      expect(podSpec(rendered[overlay]).serviceAccountName).toBe(sa.metadata.name);
      const annotations = Object.keys(sa.metadata.annotations ?? {});
      if (overlay === 'local') expect(annotations).toEqual([]);
      else expect(annotations).toContain(annotation[overlay]);
    }
    expect(
      find(rendered.gke, 'ServiceAccount').metadata.annotations['iam.gke.io/gcp-service-account'],
    ).toMatch(/^[a-z][a-z0-9-]*@[A-Za-z0-9_-]+\.iam\.gserviceaccount\.com$/);
    expect(find(rendered.eks, 'ServiceAccount').metadata.annotations['eks.amazonaws.com/role-arn']).toMatch(
      /^arn:aws:iam::\d{12}:role\/.+$/,
    );
  });

  it('uses Secrets only for the PostgreSQL password and the Snowflake key', () => {
    for (const overlay of OVERLAYS) {
      const docs = rendered[overlay];
      expect(docs.some((d) => d.kind === 'Secret')).toBe(false);
      const spec = podSpec(docs);
      const secrets = spec.volumes.filter((v: Doc) => v.secret).map((v: Doc) => v.secret.secretName);
      expect(secrets).toEqual(
        overlay === 'eks' ? ['nightshift-postgres', 'nightshift-snowflake'] : ['nightshift-postgres'],
      );
      for (const env of spec.containers[0].env ?? []) expect(env.valueFrom).toBeUndefined();
      const config = find(docs, 'ConfigMap').data['nightshift.yaml'] as string;
      expect(config).not.toMatch(/postgres:\/\/[^:@/]+:[^$][^@]*@/);
    }
  });

  it('allows egress only to DNS, PostgreSQL, HTTPS and the platform identity endpoint', () => {
    const extra = { gke: [80, 988], eks: [80], local: [] } as const;
    for (const overlay of OVERLAYS) {
      const policy = find(rendered[overlay], 'NetworkPolicy').spec;
      expect(policy.policyTypes).toEqual(['Ingress', 'Egress']);
      expect(policy.ingress ?? []).toEqual([]);
      const podLabels = find(rendered[overlay], 'CronJob').spec.jobTemplate.spec.template.metadata.labels;
      expect(podLabels).toMatchObject(policy.podSelector.matchLabels);
      const ports = (policy.egress as Doc[]).flatMap((rule) => rule.ports.map((p: Doc) => p.port));
      expect(ports.sort((a, b) => a - b)).toEqual(
        [53, 53, 443, 5432, ...extra[overlay]].sort((a, b) => a - b),
      );
      for (const rule of policy.egress as Doc[]) {
        const wide = rule.to.some((t: Doc) => t.ipBlock?.cidr === '0.0.0.0/0');
        if (wide) expect(rule.ports).toEqual([{ protocol: 'TCP', port: 443 }]);
      }
    }
  });

  for (const overlay of OVERLAYS) {
    it(`${overlay}: the job configuration in the ConfigMap is valid nightshift configuration`, () => {
      const text = find(rendered[overlay], 'ConfigMap').data['nightshift.yaml'] as string;
      const spec = podSpec(rendered[overlay]);
      const path = spec.containers[0].env.find((e: Doc) => e.name === 'NIGHTSHIFT_CONFIG').value as string;
      const mount = spec.containers[0].volumeMounts.find((m: Doc) => path.startsWith(`${m.mountPath}/`));
      expect(spec.volumes.find((v: Doc) => v.name === mount.name).configMap.name).toBe('nightshift-config');
      // ${file:...} references must point at mounted files.
      for (const [, file] of text.matchAll(/\$\{file:([^}]+)\}/g)) {
        expect(spec.containers[0].volumeMounts.some((m: Doc) => file.startsWith(`${m.mountPath}/`))).toBe(
          true,
        );
      }
      // PROJECT_ID is the placeholder the deployment guide replaces with sed.
      const substituted = text.replaceAll('PROJECT_ID', 'my-project');
      const raw = parseYaml(substituted.replaceAll(/\$\{file:[^}]+\}/g, 'secret'));
      const result = configSchema.safeParse(raw);
      const issues = result.success ? [] : result.error.issues;
      // Every stage and warehouse of the overlays is in this build: each key is checked.
      expect(issues).toEqual([]);
      expect(raw.temp_dir).toBe('/tmp');
    });
  }
});

describe('the Airflow DAG and the KubeVela component', () => {
  it('the DAG compiles and runs the image with XCom push and the same hardening', async () => {
    const path = join(ROOT, 'k8s/airflow/nightshift_dag.py');
    await output('python3', ['-m', 'py_compile', path]);
    const source = readFileSync(path, 'utf8');
    for (const needle of [
      'KubernetesPodOperator(',
      'do_xcom_push=True',
      'arguments=["run"]',
      `skip_on_exit_code=[${EXIT_CODES.lease_held.exit}]`,
      'read_only_root_filesystem=True',
      'allow_privilege_escalation=False',
      'drop=["ALL"]',
      'run_as_non_root=True',
      'empty_dir=k8s.V1EmptyDirVolumeSource(size_limit=',
      'termination_grace_period=15',
    ])
      expect(source).toContain(needle);
  });

  it('the component definition carries the same exit code policy as the CronJob', () => {
    const doc = parseYaml(readFileSync(join(ROOT, 'k8s/kubevela/nightshift-component.yaml'), 'utf8')) as Doc;
    expect(doc).toMatchObject({
      apiVersion: 'core.oam.dev/v1beta1',
      kind: 'ComponentDefinition',
      spec: { workload: { type: 'autodetects.core.oam.dev' } },
    });
    const cue = doc.spec.schematic.cue.template as string;
    expect(cue).toMatch(/output: \{\s+apiVersion: "batch\/v1"\s+kind: "CronJob"/);
    const values = (action: string) =>
      JSON.parse(
        new RegExp(`action: "${action}", onExitCodes: \\{[^}]*values: (\\[[^\\]]*\\])`).exec(cue)?.[1] ??
          'null',
      );
    expect(values('FailJob')).toEqual(noRetry);
    expect(values('Count')).toEqual(retry);
    for (const needle of [
      'DisruptionTarget',
      'readOnlyRootFilesystem: true',
      'automountServiceAccountToken: false',
      'concurrencyPolicy: "Forbid"',
    ])
      expect(cue).toContain(needle);
  });
});
