/**
 * The settings of the DuckDB warehouse (`warehouse.duckdb`), beside the backend that reads them;
 * config/schema.ts composes them into the configuration.
 */
import { z } from 'zod';

export const duckdbSchema = z
  .strictObject({
    path: z.string().min(1).describe('DuckDB database file; created when missing.'),
    memory_limit_mb: z
      .number()
      .int()
      .min(64)
      .default(96)
      .describe(
        "DuckDB memory_limit during the load: what DuckDB's buffer manager holds before it writes out or spills; its readers and threads use memory beyond it.",
      ),
    threads: z.number().int().min(1).default(2).describe('DuckDB threads during the load.'),
    storage_version: z
      .string()
      .regex(/^(v\d+\.\d+\.\d+|latest)$/, 'a DuckDB version such as v1.3.0, or latest')
      .default('v1.3.0')
      .describe(
        'Storage format of a new DuckDB file, named by the oldest DuckDB release that must open it. From v1.3.0 DuckDB stores text with DICT_FSST, which takes a fifth less CPU to load; set v1.0.0 to share the file with older DuckDB releases. An existing file keeps the format it was created with.',
      ),
  })
  .describe('The embedded DuckDB warehouse.');
