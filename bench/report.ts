/** The bench's figures as the Performance table of the docs (Markdown). */

type Figures = Record<string, number | undefined>;

/** "median (min-max)" of one figure over the rounds, or "-" when no round has it. */
function spread(rounds: Figures[], key: string, unit: string): string {
  const xs = rounds.map((r) => r[key]).filter((x): x is number => x !== undefined);
  if (!xs.length) return '-';
  const lo = Math.min(...xs);
  const hi = Math.max(...xs);
  const median = [...xs].sort((a, b) => a - b)[xs.length >> 1];
  return lo === hi ? `${median}${unit}` : `${median}${unit} (${lo}-${hi})`;
}

/**
 * One row per program: its time, its ratio to PostgreSQL alone (the server's COPY time divided by
 * the program's, so higher is faster and 1.0x is the server's own speed), and its peak RSS.
 */
export function performanceTable(rows: number, rounds: Figures[], slice: number): string {
  const row = (label: string, key: string, time = `${key}_s`) => ({ label, time, key });
  const entries = [
    row(
      "PostgreSQL alone: the server's `COPY (SELECT * FROM trips) TO '/dev/null' (FORMAT binary)`",
      'server_limit',
    ),
    row("a client: `psql \\copy (...) TO '/dev/null' (format binary)`", 'psql', 'psql_limit_s'),
    row(
      'peer (a), by hand: `psql \\copy (...) TO file (format csv)`, then DuckDB `read_csv` -> Parquet zstd',
      'csv_duckdb',
    ),
    row(
      `peer (b), the design card's stack: pg + pg-cursor -> parquetjs-lite (${slice.toLocaleString('en-US')}-row slice, scaled)`,
      'pg_cursor_parquetjs',
    ),
    row('nightshift: export to the stage (Parquet parts, checksummed)', 'export'),
    row('nightshift: full `nightshift run` into DuckDB (load, validation, checkpoint)', 'run'),
  ];
  const lines = [
    `${rows.toLocaleString('en-US')} rows, ${rounds.length} rounds: median (range)`,
    '',
    '| what | time | x PostgreSQL alone | peak RSS |',
    '|---|---|---|---|',
  ];
  for (const { label, time, key } of entries) {
    const ratio = key === 'server_limit' ? '1.00x' : spread(rounds, `${key}_ratio_to_server_limit`, 'x');
    const rss = spread(rounds, key === 'run' ? 'peak_rss_mb' : `${key}_peak_rss_mb`, ' MB');
    lines.push(`| ${label} | ${spread(rounds, time, ' s')} | ${ratio} | ${rss} |`);
  }
  return lines.join('\n');
}
