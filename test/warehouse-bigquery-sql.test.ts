/**
 * The pure parts of the BigQuery warehouse: which partition a window fills exactly, how
 * PostgreSQL-printed bounds are read, table names, and the configuration rules.
 */
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config/load.js';
import { parseInstant, parseTable, quote, windowPartition } from '../src/warehouse/bigquery/sql.js';
import { ONE_DAY } from './helpers/bigquery-cases.js';

const DAY = { timePartitioning: { type: 'DAY', field: 'updated_at' } };

describe('BigQuery partition of a window', () => {
  it('one UTC day of a table day-partitioned on the window column', () => {
    expect(windowPartition(ONE_DAY, DAY)).toBe('20240101');
  });

  it('a date cursor, and bounds with a zone offset that fall on UTC midnight', () => {
    const date = {
      ...ONE_DAY,
      types: ['date'],
      lower: { values: ['2024-02-29'], inclusive: true },
      upper: { values: ['2024-03-01'], inclusive: false },
    };
    expect(windowPartition(date, DAY)).toBe('20240229');
    const offset = {
      ...ONE_DAY,
      lower: { values: ['2024-01-01 02:00:00+02'], inclusive: true },
      upper: { values: ['2024-01-02 02:00:00+02:00'], inclusive: false },
    };
    expect(windowPartition(offset, DAY)).toBe('20240101');
  });

  it('none for two days, a partial day, other bounds, other partitioning, or more columns', () => {
    const two = { ...ONE_DAY, upper: { values: ['2024-01-03 00:00:00+00'], inclusive: false } };
    const partial = { ...ONE_DAY, upper: { values: ['2024-01-01 23:59:59.999999+00'], inclusive: false } };
    const inclusive = { ...ONE_DAY, upper: { values: ['2024-01-02 00:00:00+00'], inclusive: true } };
    const shifted = {
      ...ONE_DAY,
      lower: { values: ['2024-01-01 00:00:00+01'], inclusive: true },
      upper: { values: ['2024-01-02 00:00:00+01'], inclusive: false },
    };
    for (const w of [two, partial, inclusive, shifted]) expect(windowPartition(w, DAY)).toBeUndefined();
    expect(
      windowPartition(ONE_DAY, { timePartitioning: { type: 'HOUR', field: 'updated_at' } }),
    ).toBeUndefined();
    expect(windowPartition(ONE_DAY, { timePartitioning: { type: 'DAY' } })).toBeUndefined();
    expect(windowPartition(ONE_DAY, undefined)).toBeUndefined();
    expect(windowPartition({ ...ONE_DAY, columns: ['updated_at', 'id'] }, DAY)).toBeUndefined();
  });

  it('reads PostgreSQL timestamps, with fractions and offsets', () => {
    expect(parseInstant('2024-01-01')).toBe(Date.UTC(2024, 0, 1));
    expect(parseInstant('2024-01-01 00:00:00.000+00')).toBe(Date.UTC(2024, 0, 1));
    expect(parseInstant('2024-01-01 05:30:00+05:30')).toBe(Date.UTC(2024, 0, 1));
    expect(parseInstant('2023-12-31 19:00:00-05')).toBe(Date.UTC(2024, 0, 1));
    expect(parseInstant('2024-01-01 00:00:00.5+00')).toBeUndefined();
    expect(parseInstant('17')).toBeUndefined();
  });
});

describe('BigQuery names', () => {
  it('dataset.table and project.dataset.table', () => {
    expect(parseTable('analytics.orders', 'p')).toEqual({
      projectId: 'p',
      datasetId: 'analytics',
      tableId: 'orders',
    });
    expect(parseTable('other-proj.analytics.orders', 'p')).toEqual({
      projectId: 'other-proj',
      datasetId: 'analytics',
      tableId: 'orders',
    });
  });

  it('refuses a bare table, a decorator, and a bad dataset', () => {
    for (const t of ['orders', 'analytics.orders$20240101', 'ana-lytics.orders', 'a.b.c.d']) {
      expect(() => parseTable(t, 'p')).toThrow(/not a BigQuery table/);
    }
  });

  it('quotes identifiers with backticks, escaping backslash and backtick', () => {
    expect(quote('a`b\\c')).toBe('`a\\`b\\\\c`');
  });
});

describe('BigQuery configuration', () => {
  const env = {
    NIGHTSHIFT_JOB: 'orders',
    NIGHTSHIFT_SOURCE_URL: 'postgres://u@h/db',
    NIGHTSHIFT_SOURCE_TABLE: 'orders',
    NIGHTSHIFT_SOURCE_CURSOR: 'updated_at',
    NIGHTSHIFT_SOURCE_KEY: '[id]',
    NIGHTSHIFT_STAGE_URL: 'file:///tmp/stage',
    NIGHTSHIFT_WAREHOUSE_TYPE: 'bigquery',
    NIGHTSHIFT_WAREHOUSE_TABLE: 'analytics.orders',
  };

  it('a BigQuery warehouse needs a gs:// stage', () => {
    expect(() => loadConfig({ env })).toThrow(/gs:\/\/bucket\/prefix/);
  });

  it('rejects an unknown key and a bad job id prefix', () => {
    expect(() => loadConfig({ env: { ...env, NIGHTSHIFT_WAREHOUSE_BIGQUERY_JOB_ID_PREFIX: 'a b' } })).toThrow(
      /job_id_prefix/,
    );
  });
});
