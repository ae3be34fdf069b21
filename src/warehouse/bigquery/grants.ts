/**
 * The least-privilege access the BigQuery warehouse needs for one job, as `nightshift iam` prints
 * it: the roles and grants docs/warehouse-bigquery.md lists, filled in with the job's own names. A pure function of
 * the parsed options, so the command needs no login.
 */
import type { AccessNeeds } from '../../identity/principal.js';
import type { LoadMode } from '../warehouse.js';

/** `dataset.table` or `project.dataset.table` (backticks allowed) -> its parts. */
function bigQueryTable(table: string, project: string): { project: string; dataset: string; name: string } {
  const parts = table.replaceAll('`', '').split('.');
  const [p, dataset, name] = parts.length >= 3 ? parts : [project, parts[0], parts[1] ?? ''];
  return { project: p ?? project, dataset: dataset ?? '', name: name ?? '' };
}

const bucketOf = (stageUrl: string) => new URL(stageUrl).host;

export function bigQueryAccess(options: {
  project: string;
  stagingDataset?: string;
  stageUrl: string;
  table: string;
  mode: LoadMode;
}): AccessNeeds {
  const t = bigQueryTable(options.table, options.project);
  const datasets = [`${t.project}:${t.dataset}`];
  if (options.stagingDataset && options.stagingDataset !== t.dataset)
    datasets.push(`${options.project}:${options.stagingDataset}`);
  const bucket = options.stageUrl.startsWith('gs://')
    ? `gs://${bucketOf(options.stageUrl)}`
    : 'the stage bucket';
  const member = 'serviceAccount:SERVICE_ACCOUNT_EMAIL';
  return {
    part: 'warehouse',
    target: `BigQuery table ${t.project}.${t.dataset}.${t.name} (${options.mode})`,
    principal: 'the Google service account of the pod (see `nightshift whoami`)',
    grants: [
      {
        permission: 'roles/bigquery.jobUser',
        on: `project ${options.project}`,
        why: 'creating load and query jobs',
      },
      ...datasets.map((d) => ({
        permission: 'roles/bigquery.dataEditor',
        on: `dataset ${d}`,
        why: 'creating, writing, patching and dropping the target and staging tables',
      })),
      {
        permission: 'roles/storage.objectViewer',
        on: bucket,
        why: "BigQuery reads the staged files with the caller's identity",
      },
    ],
    documents: [
      {
        title: 'grant them (replace SERVICE_ACCOUNT_EMAIL)',
        language: 'shell',
        text: [
          `gcloud projects add-iam-policy-binding ${options.project} --member ${member} --role roles/bigquery.jobUser`,
          ...datasets.map(
            (d) => `bq add-iam-policy-binding --member ${member} --role roles/bigquery.dataEditor ${d}`,
          ),
          `gcloud storage buckets add-iam-policy-binding ${bucket} --member ${member} --role roles/storage.objectViewer`,
        ].join('\n'),
      },
    ],
  };
}
