/**
 * The one Warehouse suite: every warehouse (DuckDB, and BigQuery, Snowflake and Redshift against
 * their contract servers) runs these same cases through the port alone (load, begin, countWindow),
 * so the run can rely on the port's promises whatever the warehouse is: append replaces its
 * window, merge upserts on the key, replace leaves only the new rows, an empty window loads
 * nothing, a count that differs from the files' rows commits nothing (exit 3), and a stopped load
 * ends as terminated (exit 143). A warehouse file calls `warehouseSuite` with its target.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { LoadRequest, StagedFile, Warehouse } from '../../src/warehouse/warehouse.js';
import { until } from './time.js';
import { failure, type Trip, trips, tripsLoadRequest, tripWindow } from './warehouse-fixtures.js';

/** The suite's cases, by name. */
export type WarehouseCase =
  | 'append'
  | 'merge'
  | 'replace'
  | 'empty window'
  | 'count mismatch'
  | 'session count mismatch'
  | 'countWindow'
  | 'SIGTERM';

export interface WarehouseTarget {
  /** The warehouse under test, new for each case; the suite closes it. */
  warehouse(): Promise<Warehouse>;
  /** A table no case has used yet, named as the load request takes it (`schema.table`). */
  table(): string;
  /** Stages parts (one per trips array) where the warehouse reads them, as the run stages them. */
  stage(parts: Trip[][]): Promise<{ runId: string; files: StagedFile[] }>;
  /** Rows the table holds; 0 when it does not exist. */
  count(table: string): Promise<number>;
  /** The table's rows as [trip_id, fare_usd] text, by trip_id; absent where the backend keeps counts only. */
  rows?(table: string): Promise<[string, string][]>;
  /**
   * Makes the next load wait inside the warehouse until it is cancelled (or long enough for the
   * suite to stop it), and returns when that load is known to be under way there.
   */
  stall?(): () => boolean | Promise<boolean>;
  /** Cases this backend cannot show, each with the reason: they are skipped, not faked. */
  cannot?: Partial<Record<WarehouseCase, string>>;
  setup?(): Promise<void>;
  teardown?(): Promise<void>;
  beforeEach?(): void | Promise<void>;
  afterEach?(): void | Promise<void>;
}

/** Registers the shared cases for one warehouse. */
export function warehouseSuite(name: string, target: WarehouseTarget): void {
  describe(`Warehouse suite: ${name}`, () => {
    let warehouse: Warehouse | undefined;

    beforeAll(async () => {
      await target.setup?.();
    });
    afterAll(async () => {
      await target.teardown?.();
    });
    beforeEach(async () => {
      await target.beforeEach?.();
    });
    afterEach(async () => {
      await warehouse?.close();
      warehouse = undefined;
      await target.afterEach?.();
    });

    /** A case, or a skipped one where the backend cannot show it, its reason in the title. */
    const shown = (name: WarehouseCase, title: string, body: () => Promise<void>) => {
      const reason = target.cannot?.[name];
      it.skipIf(reason !== undefined)(`${name}: ${title}${reason ? ` (not here: ${reason})` : ''}`, body);
    };

    async function open(): Promise<{ wh: Warehouse; table: string }> {
      warehouse = await target.warehouse();
      return { wh: warehouse, table: target.table() };
    }

    /** The rows where the target can read them back; counts are asserted on every backend. */
    async function expectRows(table: string, rows: [string, string][]): Promise<void> {
      expect(await target.count(table)).toBe(rows.length);
      if (target.rows) expect(await target.rows(table)).toEqual(rows);
    }

    const ORIGINAL: [string, string][] = [
      ['1', '11.00'],
      ['2', '12.00'],
      ['3', '13.00'],
    ];

    shown(
      'append',
      'the files of a window load; the same window loaded again leaves each row once',
      async () => {
        const { wh, table } = await open();
        const request = tripsLoadRequest(table, await target.stage([trips(1, 2), trips(3, 3)]), {
          window: tripWindow(1, 3),
        });
        expect((await wh.load(request)).rowsLoaded).toBe(3);
        await expectRows(table, ORIGINAL);
        expect((await wh.load(request)).rowsLoaded).toBe(3);
        await expectRows(table, ORIGINAL);
      },
    );

    shown('merge', 'changed and new keys: one row per key, with the new values', async () => {
      const { wh, table } = await open();
      await wh.load(tripsLoadRequest(table, await target.stage([trips(1, 4)]), { mode: 'merge' }));
      const update = await target.stage([[...trips(2, 2, 9), ...trips(6, 6, 9)]]);
      const result = await wh.load(tripsLoadRequest(table, update, { mode: 'merge' }));
      expect(result.rowsLoaded).toBe(2);
      if (result.rowsReplaced !== undefined) expect(result.rowsReplaced).toBe(1);
      await expectRows(table, [
        ['1', '11.00'],
        ['2', '12.09'],
        ['3', '13.00'],
        ['4', '14.00'],
        ['6', '16.09'],
      ]);
    });

    shown('replace', 'the table holds exactly the rows of the new load', async () => {
      const { wh, table } = await open();
      await wh.load(tripsLoadRequest(table, await target.stage([trips(1, 4)]), { window: tripWindow(1, 4) }));
      const result = await wh.load(
        tripsLoadRequest(table, await target.stage([trips(7, 8)]), { mode: 'replace' }),
      );
      expect(result.rowsLoaded).toBe(2);
      if (result.rowsReplaced !== undefined) expect(result.rowsReplaced).toBe(4);
      await expectRows(table, [
        ['7', '17.00'],
        ['8', '18.00'],
      ]);
    });

    shown('empty window', 'a part with no rows loads 0 and leaves the table as it was', async () => {
      const { wh, table } = await open();
      await wh.load(tripsLoadRequest(table, await target.stage([trips(1, 3)]), { window: tripWindow(1, 3) }));
      const result = await wh.load(
        tripsLoadRequest(table, await target.stage([[]]), { window: tripWindow(4, 6) }),
      );
      expect(result.rowsLoaded).toBe(0);
      await expectRows(table, ORIGINAL);
    });

    shown(
      'count mismatch',
      'files holding other than expectedRows fail validation (exit 3) and commit nothing',
      async () => {
        const { wh, table } = await open();
        await wh.load(
          tripsLoadRequest(table, await target.stage([trips(1, 3)]), { window: tripWindow(1, 3) }),
        );
        const staged = await target.stage([trips(3, 5, 4)]);
        const err = await failure(
          wh.load(tripsLoadRequest(table, staged, { window: tripWindow(2, 5), expectedRows: 4 })),
        );
        expect(err.code).toBe('validation');
        expect(err.exitCode).toBe(3);
        await expectRows(table, ORIGINAL);
      },
    );

    shown(
      'session count mismatch',
      'a load session whose files hold other than expectedRows fails validation at commit (exit 3) and commits nothing',
      async () => {
        const { wh, table } = await open();
        if (!wh.begin) throw new Error(`${name} has no begin(): list 'session count mismatch' in its cannot`);
        await wh.load(
          tripsLoadRequest(table, await target.stage([trips(1, 3)]), { window: tripWindow(1, 3) }),
        );
        const {
          files: _files,
          expectedRows: _expected,
          ...plan
        } = tripsLoadRequest(
          table,
          { runId: (await target.stage([[]])).runId, files: [] },
          { window: tripWindow(2, 5) },
        );
        const session = await wh.begin(plan);
        await session.add((await target.stage([trips(3, 4, 4)])).files);
        await session.add((await target.stage([trips(5, 5, 4)])).files);
        const err = await failure(session.commit(4));
        expect(err.code).toBe('validation');
        expect(err.exitCode).toBe(3);
        await expectRows(table, ORIGINAL);
      },
    );

    shown(
      'countWindow',
      'counts the rows of a window, and answers undefined for a missing table',
      async () => {
        const { wh, table } = await open();
        if (!wh.countWindow)
          throw new Error(`${name} has no countWindow(): list 'countWindow' in its cannot`);
        await wh.load(
          tripsLoadRequest(table, await target.stage([trips(1, 6)]), { window: tripWindow(1, 6) }),
        );
        expect(await wh.countWindow(table, tripWindow(2, 4))).toBe(3);
        expect(await wh.countWindow(`${table}_missing`, tripWindow(2, 4))).toBeUndefined();
      },
    );

    shown('SIGTERM', 'a load stopped while the warehouse runs it ends terminated (exit 143)', async () => {
      const { wh, table } = await open();
      if (!target.stall) throw new Error(`${name} has no stall(): list 'SIGTERM' in its cannot`);
      const staged = await target.stage([trips(1, 2)]);
      const stop = new AbortController();
      const underway = target.stall();
      const request: LoadRequest = tripsLoadRequest(table, staged, { signal: stop.signal });
      const pending = wh.load(request);
      // Stopped only once the warehouse is running it, however busy the machine is.
      await until(underway, { what: `${name} to be running the load` });
      stop.abort();
      const err = await failure(pending);
      expect(err.code).toBe('terminated');
      expect(err.exitCode).toBe(143);
    });
  });
}
