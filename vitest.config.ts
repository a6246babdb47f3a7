import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/ts/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 120_000,
    // Tests launch real torchrun ranks: on a 2-core machine run files one at a time.
    fileParallelism: false,
  },
});
