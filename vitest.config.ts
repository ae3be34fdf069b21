import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    testTimeout: 120_000,
    hookTimeout: 180_000,
    pool: 'forks',
    // Files share one PostgreSQL server; two at a time keeps a 2-core machine busy but not thrashing.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
