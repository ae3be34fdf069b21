/**
 * Field types the configuration schema and the backends' own settings share: durations, column
 * names, job names.
 */
import { z } from 'zod';

/** A duration such as `90s`, `5m`, `1h30m`, `2d`, or a number of milliseconds. */
export const DURATION_RE = /^(\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;

export const duration = z
  .union([
    z.number().nonnegative(),
    z.string().regex(DURATION_RE, 'expected a duration such as 30s, 5m or 1h'),
  ])
  .transform((v) => (typeof v === 'number' ? v : parseDuration(v)));

/** Parses `1h30m` style durations into milliseconds. */
export function parseDuration(text: string): number {
  const units: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
  let total = 0;
  for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) total += Number(n) * units[unit];
  return total;
}

export const identifier = z.string().min(1, 'expected a column name');
export const jobName = z
  .string()
  .regex(/^[a-z0-9][a-z0-9_.-]{0,62}$/, 'expected lowercase letters, digits, ".", "_" or "-" (max 63)');
