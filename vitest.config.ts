import { defineConfig } from 'vitest/config';
import { LIMITS } from './test/helpers/time.js';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    // Limits come from test/helpers/time.ts, scaled by NIGHTSHIFT_TEST_TIME_FACTOR.
    testTimeout: LIMITS.test,
    hookTimeout: LIMITS.hook,
    teardownTimeout: LIMITS.hook,
    pool: 'forks',
    // Files share one PostgreSQL server; two at a time keeps a 2-core machine busy but not thrashing.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
