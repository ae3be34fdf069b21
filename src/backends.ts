/**
 * The backends a job can choose: the one place that maps `stage.url`'s scheme and
 * `warehouse.type` to an implementation. Each backend is a folder (`store/s3/`,
 * `warehouse/bigquery/`, ...) whose index exports `create`; a backend's module, and the cloud SDK
 * it brings, is loaded only when a job chooses it. The commands hand these factories to the run,
 * the preflight and the demo, which know only the ports (`store/store.ts`,
 * `warehouse/warehouse.ts`).
 */
import type { Config } from './config/schema.js';
import { configError } from './errors.js';
import type { StoreFactory } from './store/store.js';
import type { Backends, WarehouseFactory } from './warehouse/warehouse.js';

type Loader<F> = () => Promise<{ create: F }>;

/** Stages by the scheme of `stage.url`. */
const STAGES: Record<string, Loader<StoreFactory>> = {
  file: () => import('./store/local/index.js'),
  s3: () => import('./store/s3/index.js'),
  gs: () => import('./store/gcs/index.js'),
};

/** Warehouses by `warehouse.type`: a type the schema accepts and this table lacks fails to compile. */
const WAREHOUSES: Record<Config['warehouse']['type'], Loader<WarehouseFactory>> = {
  duckdb: () => import('./warehouse/duckdb/index.js'),
  bigquery: () => import('./warehouse/bigquery/index.js'),
  snowflake: () => import('./warehouse/snowflake/index.js'),
  redshift: () => import('./warehouse/redshift/index.js'),
};

/** The object store for `stage.url`. */
export const createStore: StoreFactory = async (config) => {
  const url = config.stage.url;
  const load = STAGES[url.slice(0, url.indexOf(':'))];
  if (!load) {
    throw configError(`stage.url: unsupported scheme in ${url}`, {
      hint: 'set NIGHTSHIFT_STAGE_URL to file:///absolute/path, s3://bucket/prefix or gs://bucket/prefix',
    });
  }
  return (await load()).create(config);
};

/** The warehouse for `warehouse.type`, over the job's stage. */
export const createWarehouse: WarehouseFactory = async (config, store) =>
  (await WAREHOUSES[config.warehouse.type]()).create(config, store);

export const backends: Backends = { createStore, createWarehouse };
