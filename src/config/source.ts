/**
 * The `source` block of the configuration: where rows come from, how to connect, and how values
 * are exported; with the rule that the connection can be read.
 */
import { z } from 'zod';
import { duration, identifier } from './fields.js';
import { PgUrlError, parsePgUrl } from './pg-url.js';

export const sourceSchema = z
  .strictObject({
    url: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'expected a postgres:// connection URL')
      .optional()
      .describe(
        'PostgreSQL connection URL, `postgres://user:password@host:5432/db?sslmode=require`, with the libpq parameters `connect_timeout`, `sslmode`, `sslrootcert`, `sslcert`, `sslkey`, `application_name`, `options`, `keepalives`, `keepalives_idle` (others are refused). A password in it must be URL-encoded; `source.password` needs no encoding. Give this or `host`. Secret.',
      ),
    host: z
      .string()
      .min(1)
      .optional()
      .describe('Database host name, IP address or Unix socket directory; overrides the host of `url`.'),
    port: z
      .number()
      .int()
      .min(1)
      .max(65535)
      .optional()
      .describe('Database port; overrides the port of `url`. Default: 5432.'),
    database: z
      .string()
      .min(1)
      .optional()
      .describe('Database name; overrides the database of `url`. Default: the user name.'),
    user: z.string().min(1).optional().describe('Role to connect as; overrides the user of `url`.'),
    password: z
      .string()
      .optional()
      .describe(
        'Password of the role, as it is (no URL-encoding); overrides the password of `url`. From the environment or a mounted file: `${file:/var/run/secrets/pg/password}`. Secret.',
      ),
    connect_timeout: duration
      .optional()
      .describe(
        "Longest wait for a connection to be ready (TCP, TLS, authentication, session setup); then exit 75. Default: the URL's `connect_timeout`, else 30s. 0 waits for ever.",
      ),
    stall_timeout: duration
      .prefault('5m')
      .describe(
        'Longest a COPY may go without receiving a byte from the server before the run gives up (exit 75). Time the run itself pauses reading (uploads behind) does not count. 0 waits for ever.',
      ),
    table: z
      .string()
      .min(1)
      .optional()
      .describe('Table to export, `schema.table` or `table`. Give this or `query`.'),
    query: z
      .string()
      .min(1)
      .optional()
      .describe(
        'A SELECT whose rows are exported instead of a table; the window predicate is applied around it. Give this or `table`.',
      ),
    columns: z
      .array(identifier)
      .min(1)
      .optional()
      .describe('Columns to export (default: all columns of the table or query, in order).'),
    cursor: identifier
      .optional()
      .describe(
        'Incremental cursor column: a timestamp, timestamptz, date or integer column that grows as rows are inserted or updated. Required unless `warehouse.mode` is `replace`.',
      ),
    key: z
      .array(identifier)
      .min(1)
      .optional()
      .describe(
        'Unique key columns: the tiebreaker that orders rows sharing a cursor value, and the key `merge` upserts on. Required with `cursor`.',
      ),
    lag: z
      .union([duration, z.number()])
      .default(0)
      .describe(
        'How far behind the newest visible cursor value a window stops, so that transactions still open when the snapshot is taken (late commits) land in a later window. A duration for time cursors (`5m`), a number for integer cursors.',
      ),
    start: z
      .string()
      .optional()
      .describe(
        'Lower bound (exclusive) of the first window when there is no checkpoint yet, in the cursor type (`2024-01-01T00:00:00Z`, `0`). Default: from the beginning.',
      ),
    max_rows_per_run: z
      .number()
      .int()
      .positive()
      .optional()
      .describe(
        'Cap on rows per window; a backlog is then drained over several runs, each ending on a (cursor, key) boundary.',
      ),
    casts: z
      .record(z.string(), z.string().min(1))
      .default({})
      .describe(
        'Per-column SQL type to cast to before export, for types nightshift does not map (`{geom: text}`); `json`/`jsonb` wraps the column in `to_jsonb()`.',
      ),
    infinity: z
      .enum(['clamp', 'null', 'error'])
      .default('clamp')
      .describe(
        "What `infinity`/`-infinity` dates and timestamps (and timestamps after 294247-01-10, past Parquet's int64 microseconds) become: `clamp` to 9999-12-31 23:59:59.999999 / 0001-01-01, `null`, or `error`.",
      ),
    numeric: z
      .enum(['auto', 'string'])
      .default('auto')
      .describe(
        'Unconstrained `numeric` columns: `auto` measures the window and writes DECIMAL(38,s) when every value fits (else a string); `string` always writes the exact text.',
      ),
    statement_timeout: duration
      .default(0)
      .describe('PostgreSQL statement_timeout for the export session; 0 means none.'),
    application_name: z
      .string()
      .optional()
      .describe(
        "application_name the session shows in pg_stat_activity. Default: the URL's `application_name`, else `nightshift`.",
      ),
  })
  .describe('Where rows come from.');

/** The source needs somewhere to connect to, and a URL it can read without guessing. */
export function checkSourceConnection(src: z.infer<typeof sourceSchema>, ctx: z.RefinementCtx): void {
  if (!src.url && !src.host) {
    ctx.addIssue({
      code: 'custom',
      path: ['source', 'url'],
      message: 'give source.url, or source.host (with source.user, source.password, source.database)',
    });
  }
  if (!src.url) return;
  try {
    parsePgUrl(src.url);
  } catch (err) {
    if (!(err instanceof PgUrlError)) throw err;
    ctx.addIssue({ code: 'custom', path: ['source', 'url'], message: err.message });
  }
}
