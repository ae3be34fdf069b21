/** Reads a DuckDB warehouse file the way an analyst would, to check what a run loaded. */
import { DuckDBInstance } from '@duckdb/node-api';

export async function duckQuery(path: string, sql: string): Promise<Record<string, unknown>[]> {
  const instance = await DuckDBInstance.create(path, path === ':memory:' ? {} : { access_mode: 'READ_ONLY' });
  try {
    const con = await instance.connect();
    try {
      await con.run("SET TimeZone = 'UTC'");
      const reader = await con.runAndReadAll(sql);
      return reader.getRowObjectsJson() as Record<string, unknown>[];
    } finally {
      // A connection left open keeps the file locked against the next run.
      con.closeSync();
    }
  } finally {
    instance.closeSync();
  }
}

/** Count, distinct keys and a numeric sum of a table: enough to see loss or duplication. */
export async function tableFacts(
  path: string,
  table: string,
  key: string,
  sum: string,
): Promise<{ rows: number; keys: number; sum: string }> {
  const [row] = await duckQuery(
    path,
    `SELECT count(*) AS rows, count(DISTINCT ${key}) AS keys, coalesce(sum(${sum}), 0)::varchar AS s FROM ${table}`,
  );
  return { rows: Number(row.rows), keys: Number(row.keys), sum: String(row.s) };
}
