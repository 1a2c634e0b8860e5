import { defineConfig } from 'vitest/config';

// Integration tests start real processes, onnxruntime sessions and redis-server: run test files
// one at a time (2 cores) and give them room.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
