/**
 * Process-level settings that are not part of a job's configuration: where Kubernetes and
 * Airflow look for a finished run's summary. Read from the environment here, as everything is.
 */
export interface RuntimeSettings {
  /** Kubernetes shows this file's content in the pod status (terminationMessagePath). */
  terminationLog: string;
  /** Airflow's KubernetesPodOperator reads `return.json` from here when XCom push is on. */
  xcomDir: string;
  /** Failpoints the reliability tests set (src/core/failpoint.ts); empty in production. */
  failpoints: string | undefined;
}

export function runtimeSettings(env: NodeJS.ProcessEnv = process.env): RuntimeSettings {
  return {
    terminationLog: env.NIGHTSHIFT_TERMINATION_LOG || '/dev/termination-log',
    xcomDir: env.NIGHTSHIFT_XCOM_DIR || '/airflow/xcom',
    failpoints: env.NIGHTSHIFT_FAILPOINTS || undefined,
  };
}

/** What the entrypoint needs before it starts the CLI. */
export interface LaunchSettings {
  /** NODE_OPTIONS as given: an explicit --max-old-space-size there wins over the computed one. */
  nodeOptions: string;
}

export function launchSettings(env: NodeJS.ProcessEnv = process.env): LaunchSettings {
  return { nodeOptions: env.NODE_OPTIONS ?? '' };
}

/**
 * The log format for a failure before the configuration is read (a usage or config error):
 * `--log-format`, else NIGHTSHIFT_LOG_FORMAT, else `auto` (JSON unless stdout is a terminal).
 */
export function earlyLogFormat(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  return flag ?? env.NIGHTSHIFT_LOG_FORMAT ?? 'auto';
}
