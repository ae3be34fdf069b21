/**
 * The one place that switches on backend kinds: stage URL -> ObjectStore, warehouse.type ->
 * Warehouse. Adapters get parsed config through their constructors; heavy SDKs are imported
 * only when their backend is chosen.
 */
import type { Config } from './config/schema.js';
import { configError } from './errors.js';
import { LocalStore } from './store/local.js';
import type { ObjectStore } from './store/store.js';
import type { Warehouse } from './warehouse/warehouse.js';

/** The object store for `stage.url`. */
export async function createStore(config: Config): Promise<ObjectStore> {
  const url = config.stage.url;
  const scheme = url.slice(0, url.indexOf(':'));
  switch (scheme) {
    case 'file':
      return new LocalStore(url);
    default:
      throw configError(`stage.url: unsupported scheme in ${url}`, {
        hint: 'set NIGHTSHIFT_STAGE_URL to file:///absolute/path',
      });
  }
}

/** The warehouse for `warehouse.type`. */
export async function createWarehouse(config: Config, store: ObjectStore): Promise<Warehouse> {
  const wh = config.warehouse;
  switch (wh.type) {
    case 'duckdb': {
      if (!wh.duckdb) throw configError('warehouse.duckdb.path is required for warehouse.type duckdb');
      const { DuckDbWarehouse } = await import('./warehouse/duckdb.js');
      return new DuckDbWarehouse(
        {
          path: wh.duckdb.path,
          memoryLimitMb: wh.duckdb.memory_limit_mb,
          threads: wh.duckdb.threads,
          tempDir: config.temp_dir,
        },
        store,
      );
    }
    case 'snowflake': {
      if (!wh.snowflake) throw configError('warehouse.type snowflake needs warehouse.snowflake');
      const { SnowflakeWarehouse } = await import('./warehouse/snowflake.js');
      return new SnowflakeWarehouse({ ...wh.snowflake, job: config.job });
    }
    default:
      throw configError(`warehouse.type ${wh.type} is not available in this build`, {
        hint: 'use warehouse.type: duckdb',
      });
  }
}
