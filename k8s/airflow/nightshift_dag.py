"""Run nightshift from Airflow: one KubernetesPodOperator task per schedule, the same image and
the same security settings as the CronJob in k8s/base. The run writes its summary to
/airflow/xcom/return.json (do_xcom_push), so downstream tasks can read rows_loaded, the window
and the status from XCom.

Exit codes (README, "Exit codes"): 0 done; 4 means another run holds the job's lease, which is
not a failure of this task: skip_on_exit_code marks it skipped. Retries are for 1, 75 and 143;
Airflow cannot retry by exit code, so keep retries low: a config (2), validation (3) or
permission (5) failure fails again the same way.
"""

from datetime import datetime, timedelta

from airflow import DAG
from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
from kubernetes.client import models as k8s

IMAGE = "us-docker.pkg.dev/PROJECT_ID/nightshift/nightshift:0.1.0"
NAMESPACE = "data-pipeline"

with DAG(
    dag_id="nightshift_trips",
    schedule="7 * * * *",
    start_date=datetime(2024, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": timedelta(minutes=5)},
    tags=["nightshift", "export"],
) as dag:
    export_trips = KubernetesPodOperator(
        task_id="export_trips",
        name="nightshift-trips",
        namespace=NAMESPACE,
        image=IMAGE,
        arguments=["run"],
        # The ServiceAccount of k8s/overlays/gke or eks: Workload Identity or IRSA, no keys.
        service_account_name="nightshift",
        env_vars={"NIGHTSHIFT_CONFIG": "/etc/nightshift/nightshift.yaml"},
        do_xcom_push=True,
        skip_on_exit_code=[4],
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        execution_timeout=timedelta(minutes=55),
        # nightshift stops within 10 s of SIGTERM; give it 15 before SIGKILL.
        termination_grace_period=15,
        container_resources=k8s.V1ResourceRequirements(
            requests={"cpu": "500m", "memory": "512Mi"},
            limits={"memory": "1Gi"},
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
            capabilities=k8s.V1Capabilities(drop=["ALL"]),
        ),
        volumes=[
            k8s.V1Volume(name="tmp", empty_dir=k8s.V1EmptyDirVolumeSource(size_limit="4Gi")),
            k8s.V1Volume(
                name="config",
                config_map=k8s.V1ConfigMapVolumeSource(name="nightshift-config"),
            ),
            k8s.V1Volume(
                name="postgres",
                secret=k8s.V1SecretVolumeSource(secret_name="nightshift-postgres", default_mode=0o440),
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
