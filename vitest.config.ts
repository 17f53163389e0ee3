import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['tests/**/*.test.ts'],
    globalSetup: ['tests/helpers/global-setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Integration tests start their own servers; two cores, so keep files from piling up.
    fileParallelism: true,
    maxWorkers: 2,
    minWorkers: 1,
  },
});
