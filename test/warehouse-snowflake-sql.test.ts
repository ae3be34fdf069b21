/** The Snowflake SQL building blocks: name resolution, quoting, bounds, and file paths. */
import { describe, expect, it } from 'vitest';
import { configSchema } from '../src/config/schema.js';
import { NightshiftError } from '../src/errors.js';
import {
  boundValue,
  chunks,
  commonDirectory,
  literal,
  newColumnName,
  objectName,
  resolveParts,
  stagePath,
} from '../src/warehouse/snowflake/sql.js';

const defaults = { database: 'ANALYTICS', schema: 'RAW' };

describe('Snowflake SQL', () => {
  it('resolves names as Snowflake does: unquoted upper-cased, quoted kept', () => {
    expect(resolveParts('raw.trips', 'k', 3)).toEqual(['RAW', 'TRIPS']);
    expect(resolveParts('"Mixed Case"."a.b"', 'k', 3)).toEqual(['Mixed Case', 'a.b']);
    expect(resolveParts('"say ""hi"""', 'k', 1)).toEqual(['say "hi"']);
    expect(objectName('trips', 'k', defaults).sql).toBe('"ANALYTICS"."RAW"."TRIPS"');
    expect(objectName('other.trips', 'k', defaults).sql).toBe('"ANALYTICS"."OTHER"."TRIPS"');
    expect(objectName('db.s.t', 'k', defaults).sql).toBe('"DB"."S"."T"');
  });

  it('refuses names that would need quoting, and too many parts (exit 2)', () => {
    for (const bad of ['a;drop table x', 'a.b.c.d', 'a..b', '"open']) {
      const err = (() => {
        try {
          resolveParts(bad, 'warehouse.table', 3);
        } catch (e) {
          return e;
        }
      })();
      expect(err, bad).toBeInstanceOf(NightshiftError);
      expect((err as NightshiftError).exitCode).toBe(2);
    }
  });

  it('escapes literals, including backslashes', () => {
    expect(literal("it's")).toBe("'it''s'");
    expect(literal('a\\b')).toBe("'a\\\\b'");
  });

  it('names new columns the way a PostgreSQL user expects to query them', () => {
    expect(newColumnName('trip_id')).toBe('TRIP_ID');
    expect(newColumnName('CamelCase')).toBe('CamelCase');
    expect(newColumnName('with space')).toBe('with space');
  });

  it('writes timestamptz bounds as ISO 8601 with a full offset', () => {
    expect(boundValue('2024-05-01 00:01:00.5+00', 'timestamp with time zone')).toBe(
      '2024-05-01T00:01:00.5+00:00',
    );
    expect(boundValue('2024-05-01 00:01:00+05:30', 'timestamp with time zone')).toBe(
      '2024-05-01T00:01:00+05:30',
    );
    expect(boundValue('2024-05-01 00:01:00', 'timestamp without time zone')).toBe('2024-05-01 00:01:00');
    expect(boundValue('42', 'bigint')).toBe('42');
  });

  it('finds the run directory and splits file lists into chunks of 1,000', () => {
    expect(
      commonDirectory([
        'j/data/dt=2024-01-01/run=x/part-00000.parquet',
        'j/data/dt=2024-01-01/run=x/part-00001.parquet',
      ]),
    ).toBe('j/data/dt=2024-01-01/run=x/');
    expect(commonDirectory(['j/a/x.parquet', 'j/b/y.parquet'])).toBe('j/');
    expect(chunks([...Array(2001).keys()], 1000).map((c) => c.length)).toEqual([1000, 1000, 1]);
    expect(() => stagePath("j/da'ta/")).toThrow(NightshiftError);
    expect(stagePath('j/data/dt=2024-01-01/run=20240101T000000Z-abcdef/')).toBe(
      'j/data/dt=2024-01-01/run=20240101T000000Z-abcdef/',
    );
  });
});

describe('Snowflake configuration', () => {
  const base = {
    job: 'trips',
    source: { url: 'postgres://u@h/db', table: 't', cursor: 'updated_at', key: ['id'] },
    stage: { url: 'file:///tmp/stage' },
  };
  const sf = {
    account: 'acme-analytics',
    warehouse: 'LOAD_WH',
    database: 'ANALYTICS',
    stage: 'NIGHTSHIFT_STAGE',
  };

  it('needs a user and a key file for SNOWFLAKE_JWT, a provider (and token file for OIDC) for WORKLOAD_IDENTITY', () => {
    const issues = (snowflake: Record<string, unknown>) => {
      const r = configSchema.safeParse({ ...base, warehouse: { type: 'snowflake', table: 't', snowflake } });
      return r.success ? [] : r.error.issues.map((i) => i.path.join('.'));
    };
    expect(issues(sf)).toEqual(['warehouse.snowflake.user', 'warehouse.snowflake.private_key_path']);
    expect(issues({ ...sf, user: 'svc', private_key_path: '/k.p8' })).toEqual([]);
    expect(issues({ ...sf, authenticator: 'WORKLOAD_IDENTITY' })).toEqual([
      'warehouse.snowflake.workload_identity_provider',
    ]);
    expect(issues({ ...sf, authenticator: 'WORKLOAD_IDENTITY', workload_identity_provider: 'OIDC' })).toEqual(
      ['warehouse.snowflake.token_path'],
    );
    expect(issues({ ...sf, authenticator: 'WORKLOAD_IDENTITY', workload_identity_provider: 'GCP' })).toEqual(
      [],
    );
    const parsed = configSchema.parse({
      ...base,
      warehouse: {
        type: 'snowflake',
        table: 't',
        snowflake: { ...sf, user: 'svc', private_key_path: '/k.p8' },
      },
    });
    expect(parsed.warehouse.snowflake).toMatchObject({
      schema: 'PUBLIC',
      lock_timeout: 600_000,
      statement_timeout: 7_200_000,
    });
  });
});
