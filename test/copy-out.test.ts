/**
 * The COPY reader against a real PostgreSQL, on both socket kinds it meets: the reusing socket
 * of pgSocket() (plain TCP, every read lands in the same buffer) and an ordinary socket (what pg
 * reads through when the connection uses TLS). Both must hand over exactly the bytes PostgreSQL
 * sent, with messages split across reads, while the consumer pauses reading, and give the
 * connection back to pg in working order.
 */
import { createHash } from 'node:crypto';
import { Socket } from 'node:net';
import pg from 'pg';
import { beforeAll, describe, expect, it } from 'vitest';
import { copyOut, pgSocket, reusesReadBuffer } from '../src/source/copy-out.js';
import { freshDatabase, sql } from './helpers/env.js';

let dbUrl: string;
const ROWS = 20_000;

beforeAll(async () => {
  dbUrl = await freshDatabase();
  // Rows from a few bytes to ~2 KB: CopyData messages straddle socket reads all the time.
  await sql(
    dbUrl,
    `CREATE TABLE wide AS
     SELECT g::bigint AS id, repeat(md5(g::text), (g * 7919) % 60) AS body, g % 3 = 0 AS flag
     FROM generate_series(1, ${ROWS}) g`,
  );
});

const STATEMENT = 'COPY (SELECT * FROM wide ORDER BY id) TO STDOUT (FORMAT binary)';

/** Reads the COPY through copyOut, pausing every `pauseEvery` reads; hashes the payloads in order. */
async function readCopy(client: pg.Client, pauseEvery: number) {
  const hash = createHash('sha256');
  let messages = 0;
  let reads = 0;
  let pauses = 0;
  const rows = await copyOut(
    client,
    STATEMENT,
    (b, start, end) => {
      hash.update(b.subarray(start, end));
      messages++;
    },
    {
      pauseWhile: () => {
        if (!pauseEvery || ++reads % pauseEvery !== 0) return undefined;
        pauses++;
        return new Promise((resolve) => setTimeout(resolve, 2));
      },
    },
  );
  return { rows, sha256: hash.digest('hex'), messages, pauses };
}

/**
 * sha256 of the binary COPY stream built by PostgreSQL from the rows: the signature, flags and
 * header extension length, each row (field count, then length and bytes of each field), the trailer.
 */
async function expectedHash(client: pg.Client): Promise<string> {
  const { rows } = await client.query<{ h: string }>(
    `SELECT encode(sha256(
       decode('5047434f50590aff0d0a00', 'hex') || int4send(0) || int4send(0)
       || string_agg(int2send(3::int2) || int4send(8) || int8send(id)
            || int4send(octet_length(body)) || convert_to(body, 'UTF8')
            || int4send(1) || boolsend(flag), ''::bytea ORDER BY id)
       || int2send((-1)::int2)), 'hex') AS h FROM wide`,
  );
  return rows[0].h;
}

const sockets = {
  'the reusing socket': () => pgSocket({}),
  'an ordinary socket (as under TLS)': () => new Socket(),
};

describe('COPY reader', () => {
  for (const [kind, stream] of Object.entries(sockets)) {
    it(`hands over every byte in order, pausing or not, on ${kind}, and gives the connection back`, async () => {
      const client = new pg.Client({ connectionString: dbUrl, stream });
      await client.connect();
      try {
        const expected = await expectedHash(client);
        for (const pauseEvery of [0, 2]) {
          const r = await readCopy(client, pauseEvery);
          expect(r.rows).toBe(ROWS);
          expect(r.messages).toBe(ROWS + 1); // one row per message, then the trailer alone
          expect(r.sha256).toBe(expected);
          if (pauseEvery) expect(r.pauses).toBeGreaterThan(5);
        }
        // The connection is pg's again, in working order.
        const after = await client.query('SELECT count(*)::int AS n FROM wide');
        expect(after.rows[0].n).toBe(ROWS);
      } finally {
        await client.end();
      }
    });
  }

  /**
   * Reads a COPY the server produces slowly (a row of 4 KB every 2 ms, flushed in 8 KB sends),
   * recording in order each read (the bytes of its messages) and each pause of the socket.
   */
  async function slowCopyEvents(stream: () => Socket): Promise<(number | 'pause')[]> {
    const client = new pg.Client({ connectionString: dbUrl, stream });
    await client.connect();
    const socket = (client as unknown as { connection: { stream: Socket } }).connection.stream;
    const events: (number | 'pause')[] = [];
    const pause = socket.pause.bind(socket);
    socket.pause = () => {
      events.push('pause');
      return pause();
    };
    let bytes = 0;
    try {
      const rows = await copyOut(
        client,
        "COPY (SELECT g, repeat('x', 4000), pg_sleep(0.002) FROM generate_series(1, 60) g) TO STDOUT (FORMAT binary)",
        (_b, start, end) => {
          bytes += end - start + 5;
        },
        {
          pauseWhile: () => {
            events.push(bytes);
            bytes = 0;
            return undefined;
          },
        },
      );
      expect(rows).toBe(60);
    } finally {
      await client.end();
    }
    return events;
  }

  it('waits after a short read on the reusing socket, so that the next read takes a batch', async () => {
    const events = await slowCopyEvents(() => pgSocket({}));
    // Every read short of 60 KiB but the last (which ends the COPY) is followed by a pause.
    const short = events.flatMap((e, i) =>
      typeof e === 'number' && e < 60 * 1024 && i < events.length - 1 ? [i] : [],
    );
    expect(short.length).toBeGreaterThan(3);
    expect(short.filter((i) => events[i + 1] !== 'pause')).toEqual([]);
    // An ordinary socket (TLS) hands over what one record holds, whatever waits: no batching.
    expect(await slowCopyEvents(() => new Socket())).not.toContain('pause');
  });

  it('gives TLS connections an ordinary socket to wrap', () => {
    expect(reusesReadBuffer(pgSocket({}))).toBe(true);
    expect(reusesReadBuffer(pgSocket({ ssl: true }))).toBe(false);
    expect(reusesReadBuffer(pgSocket({ ssl: { rejectUnauthorized: true } }))).toBe(false);
  });
});
