/**
 * The Redshift SQL building blocks (names, types, the window predicate, COPY, the manifest, the
 * ClientToken), the translation of Redshift and Data API errors into exit codes, and the
 * `warehouse.redshift` configuration rules.
 */
import { describe, expect, it } from 'vitest';
import { configSchema } from '../src/config/schema.js';
import type { Window } from '../src/core/window.js';
import { NightshiftError } from '../src/errors.js';
import { type ColumnSpec, Physical } from '../src/parquet/schema.js';
import { apiError, type ErrorScope, statementFailure } from '../src/warehouse/redshift/errors.js';
import {
  castType,
  clientToken,
  copyManifest,
  copyStatement,
  createdColumns,
  resolveParts,
  stagingType,
  stepKind,
  tableName,
  targetType,
  windowCondition,
} from '../src/warehouse/redshift/sql.js';

function thrown(fn: () => unknown): NightshiftError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NightshiftError);
    return err as NightshiftError;
  }
  throw new Error('expected an error');
}

const spec = (
  logical: ColumnSpec['logical'],
  physical: ColumnSpec['physical'],
  list = false,
): ColumnSpec => ({
  name: 'c',
  physical,
  logical,
  ...(list ? { list: true } : {}),
});

describe('Redshift SQL', () => {
  it('resolves names as Redshift does by default: unquoted folded to lower case, quoted kept', () => {
    expect(resolveParts('Raw.Trips', 'k')).toEqual(['raw', 'trips']);
    expect(resolveParts('"My Schema"."a.b"', 'k')).toEqual(['My Schema', 'a.b']);
    expect(tableName('trips', 'public').sql).toBe('"public"."trips"');
    expect(tableName('Trips', '"Odd"').sql).toBe('"Odd"."trips"');
    expect(tableName('raw."say ""hi"""', 'public')).toEqual({
      schema: 'raw',
      name: 'say "hi"',
      sql: '"raw"."say ""hi"""',
    });
  });

  it('refuses names that would need quoting, and more than schema.table (exit 2)', () => {
    for (const bad of ['a;drop table x', 'db.s.t', 'a..b', '"open', 'a.']) {
      expect(thrown(() => tableName(bad, 'public')).exitCode, bad).toBe(2);
    }
  });

  it('types new columns from the Parquet columns, and stages JSON as text and UUIDs as bytes', () => {
    const cases: [ColumnSpec, string, string][] = [
      [spec({ kind: 'int', bits: 16, signed: true }, Physical.INT32), 'SMALLINT', 'SMALLINT'],
      [spec({ kind: 'int', bits: 32, signed: true }, Physical.INT32), 'INTEGER', 'INTEGER'],
      [spec({ kind: 'int', bits: 64, signed: true }, Physical.INT64), 'BIGINT', 'BIGINT'],
      [spec({ kind: 'int', bits: 64, signed: false }, Physical.INT64), 'DECIMAL(20,0)', 'DECIMAL(20,0)'],
      [
        spec({ kind: 'decimal', precision: 38, scale: 9 }, Physical.FIXED_LEN_BYTE_ARRAY),
        'DECIMAL(38,9)',
        'DECIMAL(38,9)',
      ],
      [spec({ kind: 'timestamp', utc: true }, Physical.INT64), 'TIMESTAMPTZ', 'TIMESTAMPTZ'],
      [spec({ kind: 'timestamp', utc: false }, Physical.INT64), 'TIMESTAMP', 'TIMESTAMP'],
      [spec({ kind: 'date' }, Physical.INT32), 'DATE', 'DATE'],
      [spec({ kind: 'time', utc: false }, Physical.INT64), 'TIME', 'TIME'],
      [spec({ kind: 'string' }, Physical.BYTE_ARRAY), 'VARCHAR(65535)', 'VARCHAR(65535)'],
      [spec({ kind: 'json' }, Physical.BYTE_ARRAY), 'SUPER', 'VARCHAR(65535)'],
      [spec({ kind: 'uuid' }, Physical.FIXED_LEN_BYTE_ARRAY), 'VARCHAR(36)', 'VARBYTE(16)'],
      [spec({ kind: 'none' }, Physical.BYTE_ARRAY), 'VARBYTE(1024000)', 'VARBYTE(1024000)'],
      [spec({ kind: 'none' }, Physical.BOOLEAN), 'BOOLEAN', 'BOOLEAN'],
      [spec({ kind: 'none' }, Physical.FLOAT), 'REAL', 'REAL'],
      [spec({ kind: 'none' }, Physical.DOUBLE), 'DOUBLE PRECISION', 'DOUBLE PRECISION'],
      [spec({ kind: 'string' }, Physical.BYTE_ARRAY, true), 'SUPER', 'SUPER'],
    ];
    for (const [column, target, staging] of cases) {
      expect([targetType(column), stagingType(column)], JSON.stringify(column)).toEqual([target, staging]);
    }
  });

  it('describes created columns as SVV_COLUMNS does, and casts bounds to each type', () => {
    const columns = createdColumns([
      { ...spec({ kind: 'decimal', precision: 12, scale: 2 }, Physical.INT64), name: 'fare' },
      { ...spec({ kind: 'timestamp', utc: true }, Physical.INT64), name: 'at' },
      { ...spec({ kind: 'uuid' }, Physical.FIXED_LEN_BYTE_ARRAY), name: 'ride' },
      { ...spec({ kind: 'none' }, Physical.DOUBLE), name: 'x' },
    ]);
    expect([...columns.values()]).toEqual([
      { name: 'fare', dataType: 'numeric', precision: 12, scale: 2 },
      { name: 'at', dataType: 'timestamp with time zone', length: null },
      { name: 'ride', dataType: 'character varying', length: 36 },
      { name: 'x', dataType: 'double precision', length: null },
    ]);
    expect([...columns.values()].map(castType)).toEqual([
      'DECIMAL(12,2)',
      'TIMESTAMPTZ',
      'VARCHAR(36)',
      'DOUBLE PRECISION',
    ]);
    expect(castType({ name: 'c', dataType: 'character', length: 3 })).toBe('CHAR(3)');
    expect(castType({ name: 'c', dataType: 'timestamp without time zone' })).toBe('TIMESTAMP');
  });

  it('binds window bounds as named parameters; an empty string (which the Data API refuses) as a literal', () => {
    const columns = new Map([
      ['updated_at', { name: 'updated_at', dataType: 'timestamp with time zone' }],
      ['code', { name: 'Code', dataType: 'character varying', length: 20 }],
    ]);
    const window: Window = {
      columns: ['updated_at', 'code'],
      types: ['timestamp with time zone', 'text'],
      lower: { values: ['2024-05-01 00:00:00+00', ''], inclusive: false },
      upper: { values: ['2024-05-02 00:00:00+05:30', "x'); DROP TABLE t; --"], inclusive: true },
    };
    const { sql, parameters } = windowCondition(window, columns, '"public"."t"');
    expect(sql).toBe(
      `(("updated_at" > CAST(:w1 AS TIMESTAMPTZ)) OR ("updated_at" = CAST(:w1 AS TIMESTAMPTZ) AND "Code" > CAST('' AS VARCHAR(20)))) AND (("updated_at" < CAST(:w2 AS TIMESTAMPTZ)) OR ("updated_at" = CAST(:w2 AS TIMESTAMPTZ) AND "Code" <= CAST(:w3 AS VARCHAR(20))))`,
    );
    expect(parameters).toEqual([
      { name: 'w1', value: '2024-05-01 00:00:00+00:00' },
      { name: 'w2', value: '2024-05-02 00:00:00+05:30' },
      { name: 'w3', value: "x'); DROP TABLE t; --" },
    ]);
    expect(
      thrown(() => windowCondition({ ...window, columns: ['nope', 'code'] }, columns, 't')).message,
    ).toContain('t has no column nope');
  });

  it('COPYs through the manifest with the IAM role, and refuses what it cannot quote safely', () => {
    const base = {
      staging: '"s"',
      manifestUrl: 's3://b/p/job/data/dt=2024-05-01/run=x/_redshift.manifest',
      iamRole: 'arn:aws:iam::123456789012:role/copy',
      serializeToJson: false,
    };
    expect(copyStatement(base)).toBe(
      [
        'COPY "s"',
        "FROM 's3://b/p/job/data/dt=2024-05-01/run=x/_redshift.manifest'",
        "IAM_ROLE 'arn:aws:iam::123456789012:role/copy'",
        'FORMAT AS PARQUET',
        'MANIFEST',
        'STATUPDATE OFF',
      ].join('\n'),
    );
    expect(copyStatement({ ...base, iamRole: 'default', serializeToJson: true })).toContain(
      'IAM_ROLE default\nFORMAT AS PARQUET\nMANIFEST\nSERIALIZETOJSON\n',
    );
    expect(thrown(() => copyStatement({ ...base, manifestUrl: 'file:///tmp/m' })).exitCode).toBe(2);
    expect(thrown(() => copyStatement({ ...base, iamRole: "arn:aws:iam::1:role/x' --" })).exitCode).toBe(2);
    expect(thrown(() => copyStatement({ ...base, manifestUrl: 's3://b/it\\s' })).exitCode).toBe(2);
  });

  it('writes a manifest of exactly the files, mandatory, with their sizes', () => {
    const files = [
      { key: 'a/part-00000.parquet', url: 's3://b/a/part-00000.parquet', rows: 3, bytes: 1234, sha256: 'x' },
      { key: 'a/part-00001.parquet', url: 's3://b/a/part-00001.parquet', rows: 1, bytes: 99, sha256: 'y' },
    ];
    expect(JSON.parse(copyManifest(files))).toEqual({
      entries: [
        { url: 's3://b/a/part-00000.parquet', mandatory: true, meta: { content_length: 1234 } },
        { url: 's3://b/a/part-00001.parquet', mandatory: true, meta: { content_length: 99 } },
      ],
    });
  });

  it('derives ClientTokens that are stable, distinct, and shaped as UUIDs', () => {
    expect(clientToken('a', 'b')).toBe(clientToken('a', 'b'));
    expect(clientToken('a', 'b')).not.toBe(clientToken('ab'));
    expect(clientToken('a')).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  });

  it('tells the statements of the load apart by their text', () => {
    expect(
      [
        'SET statement_timeout TO 1',
        'CREATE TABLE x',
        'CREATE TEMP TABLE y',
        'COPY y',
        'SELECT pg_last_copy_count() AS n',
        'DELETE FROM x',
        'INSERT INTO x',
        'VACUUM',
      ].map(stepKind),
    ).toEqual(['settings', 'create', 'staging', 'copy', 'check', 'delete', 'insert', undefined]);
  });
});

const scope: ErrorScope = {
  target: 'workgroup analytics',
  database: 'dev',
  region: 'eu-west-1',
  auth: 'IAM',
  iamRole: 'arn:aws:iam::123456789012:role/copy',
};

describe('Redshift errors', () => {
  it('translates Redshift error texts into exit codes with what to fix', () => {
    const ctx = { action: 'insert into "raw"."t"', privilege: 'INSERT on "raw"."t"' };
    const cases: [string, number, RegExp | undefined][] = [
      [
        'ERROR: 1023 DETAIL: Serializable isolation violation on table - 1, transactions forming the cycle are: 2, 3',
        75,
        /retries/,
      ],
      ['ERROR: deadlock detected', 75, /retries/],
      ['ERROR: permission denied for relation t', 5, /INSERT on "raw"."t"/],
      ['ERROR: permission denied for schema raw', 5, /grants/],
      [
        'ERROR: User arn:aws:redshift-serverless:eu-west-1:1:dbuser:analytics/IAMR:x is not authorized to assume IAM Role arn:aws:iam::1:role/copy',
        5,
        /associate the role/,
      ],
      ['ERROR: S3ServiceException:Access Denied,Status 403,Error AccessDenied,Rid 1', 5, /s3:GetObject/],
      [
        'ERROR: S3ServiceException:The S3 bucket addressed by the query is in a different region from this cluster.,Status 301,Error PermanentRedirect',
        2,
        /eu-west-1/,
      ],
      [
        'ERROR: Problem reading manifest file - S3ServiceException:The specified key does not exist.,Status 404,Error NoSuchKey',
        2,
        /lifecycle/,
      ],
      [
        'ERROR: S3ServiceException:The specified bucket does not exist,Status 404,Error NoSuchBucket',
        2,
        /bucket/,
      ],
      ['ERROR: schema "raw" does not exist', 2, /CREATE SCHEMA raw/],
      ['ERROR: relation "t" already exists', 2, /cannot see its columns/],
      [
        'ERROR: duplicate key value violates unique constraint "pg_type_typname_nsp_index"',
        75,
        /created the same table/,
      ],
      [
        "ERROR: Spectrum Scan Error: incompatible Parquet schema for column 'fare'",
        2,
        /align the column types/,
      ],
      ['ERROR: value too long for type character varying(8)', 2, /align the column types/],
      ['ERROR: Invalid JSON: unexpected character', 2, /align the column types/],
      ["ERROR: Query (184) cancelled on user's request", 75, /statement_timeout/],
      ['ERROR: canceling statement due to statement timeout', 75, /statement_timeout/],
      ['ERROR: Unsupported compression codec ZSTD', 2, /parquet.compression/],
      ['ERROR: Disk Full', 75, undefined],
      ['ERROR: something nobody expected', 1, undefined],
    ];
    for (const [text, exit, hint] of cases) {
      const err = statementFailure(text, ctx, scope);
      expect([err.exitCode, err.message], text).toEqual([
        exit,
        `Redshift could not insert into "raw"."t": ${text}`,
      ]);
      if (hint) expect(err.hint, text).toMatch(hint);
    }
  });

  it('translates Data API exceptions', () => {
    const ctx = { action: 'load 1 files into "raw"."t"' };
    const sdk = (name: string, message: string, status = 400, fault = 'client') =>
      Object.assign(new Error(message), { name, $fault: fault, $metadata: { httpStatusCode: status } });
    const cases: [unknown, number, RegExp][] = [
      [sdk('ThrottlingException', 'Rate exceeded'), 75, /ThrottlingException: Rate exceeded/],
      [sdk('ActiveStatementsExceededException', 'too many'), 75, /too many/],
      [sdk('InternalServerException', 'oops', 500, 'server'), 75, /oops/],
      [sdk('BatchExecuteStatementException', 'env', 500, 'server'), 75, /env/],
      [
        sdk('AccessDeniedException', 'User: x is not authorized to perform: redshift-data:ExecuteStatement'),
        5,
        /not authorized/,
      ],
      [
        sdk('UnrecognizedClientException', 'The security token included in the request is invalid.'),
        5,
        /credentials/,
      ],
      [sdk('CredentialsProviderError', 'Could not load credentials from any providers'), 5, /credentials/],
      [
        sdk(
          'DatabaseConnectionException',
          'FATAL: password authentication failed for user "x"',
          500,
          'server',
        ),
        5,
        /cannot connect/,
      ],
      [sdk('DatabaseConnectionException', 'Connection reset', 500, 'server'), 75, /connection/],
      [sdk('ValidationException', 'Workgroup analytics not found.'), 2, /analytics not found/],
      [sdk('ValidationException', "Redshift endpoint doesn't exist in this region."), 2, /region/],
      [sdk('ResourceNotFoundException', 'Query does not exist.'), 2, /does not exist/],
      [Object.assign(new Error('Region is missing'), { name: 'Error' }), 2, /no AWS Region/],
      [Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }), 75, /socket hang up/],
    ];
    for (const [err, exit, message] of cases) {
      const e = apiError(err, ctx, scope);
      expect(e.exitCode, e.message).toBe(exit);
      expect(e.message).toMatch(message);
      // The SDK's request and response never travel along as the cause.
      expect(Object.keys((e.cause as object) ?? {})).not.toContain('$metadata');
    }
    const denied = apiError(sdk('AccessDeniedException', 'not authorized to perform'), ctx, scope);
    expect(denied.hint).toContain('redshift-serverless:GetCredentials');
    const secret = apiError(sdk('AccessDeniedException', 'no'), ctx, { ...scope, auth: 'secret arn:x' });
    expect(secret.hint).toContain('secretsmanager:GetSecretValue');
    const cluster = apiError(sdk('AccessDeniedException', 'no'), ctx, { ...scope, target: 'cluster c' });
    expect(cluster.hint).toContain('redshift:GetClusterCredentialsWithIAM');
  });
});

describe('Redshift configuration', () => {
  const base = {
    job: 'trips',
    source: { url: 'postgres://u@h/db', table: 't', cursor: 'updated_at', key: ['id'] },
    stage: { url: 'file:///tmp/stage' },
  };
  const rs = { workgroup: 'analytics', database: 'dev', iam_role: 'arn:aws:iam::123456789012:role/copy' };
  const issues = (redshift: Record<string, unknown> | undefined) => {
    const r = configSchema.safeParse({ ...base, warehouse: { type: 'redshift', table: 't', redshift } });
    return r.success ? [] : r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`);
  };

  it('needs an s3:// stage, exactly one of workgroup or cluster, and db_user only with a cluster and IAM', () => {
    expect(issues(rs)).toEqual([
      'stage.url: warehouse.type redshift loads from Amazon S3: set stage.url to s3://bucket/prefix',
    ]);
    const more = (r: Record<string, unknown>) => issues(r).filter((i) => !i.startsWith('stage.url'));
    expect(more({ ...rs, cluster: 'prod' })).toEqual([
      'warehouse.redshift: give exactly one of warehouse.redshift.workgroup (Serverless) or cluster (provisioned)',
    ]);
    expect(more({ ...rs, db_user: 'etl' })).toEqual([
      'warehouse.redshift.db_user: db_user applies to a cluster with IAM authentication; drop it',
    ]);
    expect(more({ database: 'dev', iam_role: 'default', cluster: 'prod', db_user: 'etl' })).toEqual([]);
    expect(
      more({ ...rs, iam_role: 'arn:aws:iam::123456789012:role/a,arn:aws:iam::123456789012:role/b' }),
    ).toEqual([]);
    expect(more({ ...rs, iam_role: "arn:aws:iam::1:role/x'" })[0]).toMatch(/^warehouse.redshift.iam_role/);
    expect(more({ ...rs, region: 'mars' })[0]).toMatch(/^warehouse.redshift.region/);
    expect(issues(undefined)).toContain(
      'warehouse.redshift: warehouse.type redshift needs warehouse.redshift (workgroup or cluster, database, iam_role)',
    );
  });

  it('defaults the schema and the statement timeout', () => {
    const schema = configSchema.shape.warehouse.shape.redshift.unwrap();
    expect(schema.parse(rs)).toMatchObject({ schema: 'public', statement_timeout: 7_200_000 });
    expect(schema.parse({ ...rs, statement_timeout: '30m' }).statement_timeout).toBe(1_800_000);
  });
});
