"""Run nightshift from Airflow: each DAG run exports and loads exactly its data interval, with the
same image, security settings and objects as the CronJob in k8s/overlays.

Each task runs `nightshift backfill --from <data_interval_start> --to <data_interval_end>`: the
window is the DAG run's interval, [start, end) on source.cursor, and loading it again (a retry, a
clear, a catchup run) replaces that window rather than adding rows. The incremental checkpoint of
the CronJob is left alone. The run writes its summary to /airflow/xcom/return.json
(do_xcom_push), and the `loaded` task reads it from XCom.

The pod uses what an overlay makes, less its CronJob: two schedulers on one job would only take
turns on its lease. Render the overlay with k8s/components/without-cronjob added to it:
    kubectl apply -k <a folder whose kustomization.yaml holds
        resources: [<repo>/k8s/overlays/gke]
        components: [<repo>/k8s/components/without-cronjob]>
That gives the ServiceAccount (Workload Identity or IRSA), the ConfigMaps nightshift-config and
nightshift-params (the pod's environment, which nightshift.yaml reads) and the NetworkPolicy,
which applies to these pods through their app.kubernetes.io/name label.

Exit codes (README, "Exit codes"; docs/troubleshooting.md): 0 done; 4 means another run holds the job's lease, which is
not a failure of this task: skip_on_exit_code marks it skipped. Retries are for 1, 75 and 143;
Airflow cannot retry by exit code, so keep retries low: a config (2), validation (3) or
permission (5) failure fails again the same way.
"""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.decorators import task
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

# IMAGE in the overlay's params.env.
IMAGE = "us-docker.pkg.dev/my-project/nightshift/nightshift:0.1.0"
NAMESPACE = "data-pipeline"

with DAG(
    dag_id="nightshift_trips",
    schedule="7 * * * *",
    start_date=datetime(2024, 1, 1),
    # True loads every interval since start_date, one DAG run (one window) each, oldest first.
    catchup=False,
    # One window at a time: a second would wait on the lease and exit 4.
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["nightshift", "export"],
) as dag:
    export_trips = KubernetesPodOperator(
        task_id="export_trips",
        name="nightshift-trips",
        namespace=NAMESPACE,
        image=IMAGE,
        # Templated: the interval as ISO 8601 with its UTC offset, e.g. 2024-01-01T07:00:00+00:00.
        arguments=[
            "backfill",
            "--from",
            "{{ data_interval_start }}",
            "--to",
            "{{ data_interval_end }}",
        ],
        labels={"app.kubernetes.io/name": "nightshift", "app.kubernetes.io/component": "export"},
        # The ServiceAccount of k8s/overlays/gke or eks: Workload Identity or IRSA, no keys.
        service_account_name="nightshift",
        env_vars={"NIGHTSHIFT_CONFIG": "/etc/nightshift/nightshift.yaml"},
        # params.env of the overlay: the values nightshift.yaml reads as ${NAME}.
        env_from=[
            k8s.V1EnvFromSource(config_map_ref=k8s.V1ConfigMapEnvSource(name="nightshift-params"))
        ],
        do_xcom_push=True,
        skip_on_exit_code=[4],
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        execution_timeout=timedelta(minutes=55),
        # nightshift stops within 10 s of SIGTERM; give it 15 before SIGKILL.
        termination_grace_period=15,
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "500m", "memory": "512Mi", "ephemeral-storage": "1Gi"},
            limits={"memory": "1Gi", "ephemeral-storage": "5Gi"},
        ),
        security_context=k8s.V1PodSecurityContext(
            run_as_non_root=True,
            run_as_user=65532,
            run_as_group=65532,
            fs_group=65532,
            seccomp_profile=k8s.V1SeccompProfile(type="RuntimeDefault"),
        ),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False,
            read_only_root_filesystem=True,
            run_as_non_root=True,
            privileged=False,
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        # Secrets as files readable by the pod's group only (0440). For Snowflake key-pair login
        # add the Secret nightshift-snowflake (key rsa_key.p8) at /var/run/secrets/snowflake the
        # same way, as k8s/components/snowflake-key does.
        volumes=[
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="4Gi")),
            k8s.V1Volume(
                name="config",
                config_map=k8s.V1ConfigMapVolumeSource(name="nightshift-config"),
            ),
            k8s.V1Volume(
                name="postgres",
                secret=k8s.V1SecretVolumeSource(
                    secret_name="nightshift-postgres",
                    default_mode=0o440,
                    items=[k8s.V1KeyToPath(key="password", path="password")],
                ),
            ),
        ],
        volume_mounts=[
            k8s.V1VolumeMount(name="tmp", mount_path="/tmp"),
            k8s.V1VolumeMount(name="config", mount_path="/etc/nightshift", read_only=True),
            k8s.V1VolumeMount(
                name="postgres", mount_path="/var/run/secrets/nightshift/postgres", read_only=True
            ),
        ],
    )

    @task
    def loaded(summary: dict) -> int:
        """The run summary from XCom: the rows the interval loaded (validated against the source)."""
        if summary["status"] not in ("succeeded", "no_new_rows"):
            raise ValueError(f"nightshift {summary['run_id']} ended {summary['status']}")
        window = (summary.get("window") or {}).get("text", "")
        print(
            f"{summary['job']}: {summary['rows_loaded']} rows loaded for {window}"
            f" into {summary['warehouse']['table']} (run {summary['run_id']})"
        )
        return summary["rows_loaded"] or 0

    loaded(export_trips.output)
