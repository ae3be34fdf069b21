/**
 * The `trips` table the demo, the tests and the benchmark use: the shape of
 * ../shared/bench/trips.sql (bigint, timestamptz, double, numeric(10,2), text, jsonb, boolean, and
 * an indexed `updated_at` cursor), deterministic for a given row range.
 */
import type pg from 'pg';

export const TRIPS_DDL = `
CREATE TABLE IF NOT EXISTS trips (
  trip_id bigint PRIMARY KEY,
  rider_id bigint NOT NULL,
  started_at timestamptz NOT NULL,
  ended_at timestamptz,
  distance_km double precision,
  fare_usd numeric(10,2),
  region text,
  status text,
  driver_name text,
  payload jsonb,
  is_shared boolean,
  updated_at timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS trips_updated_at ON trips (updated_at, trip_id);`;

/** Rows `first..last` (inclusive), as ../shared/bench/trips.sql generates them. */
export const TRIPS_INSERT = `
INSERT INTO trips
SELECT g,
  (g::bigint * 7919) % 250000 + 1,
  timestamptz '2023-01-01 00:00:00+00' + (g * interval '6 seconds'),
  timestamptz '2023-01-01 00:00:00+00' + (g * interval '6 seconds') + ((5 + (g % 55)) * interval '1 minute') + ((g % 60) * interval '1 second'),
  round(((g % 4000) / 100.0 + 0.5)::numeric, 3)::double precision,
  (((g * 37) % 9000) / 100.0 + 3.50)::numeric(10,2),
  (ARRAY['us-east','us-west','eu-central','ap-south','sa-east'])[1 + g % 5],
  CASE WHEN g % 20 = 0 THEN 'cancelled' WHEN g % 50 = 1 THEN 'disputed' ELSE 'completed' END,
  substr(md5(g::text), 1, 6) || ' ' || initcap(substr(md5((g*3)::text), 1, 5)),
  CASE WHEN g % 10 = 0 THEN NULL ELSE jsonb_build_object('surge', ((g % 30) / 10.0)::numeric, 'app', 'v' || (g % 7), 'rating', g % 5 + 1) END,
  CASE WHEN g % 13 = 0 THEN NULL ELSE (g % 4 = 0) END,
  timestamptz '2023-01-01 00:00:00+00' + (g * interval '6 seconds') + interval '1 hour'
FROM generate_series($1::bigint, $2::bigint) g`;

/** Creates the table if needed and inserts rows first..last. */
export async function fillTrips(client: pg.Client, first: number, last: number): Promise<void> {
  await client.query(TRIPS_DDL);
  await client.query(TRIPS_INSERT, [first, last]);
  await client.query('ANALYZE trips');
}
