import { defineConfig } from 'vitest/config';

// Integration tests start real processes, onnxruntime sessions and redis-server: run test files
// one at a time (2 cores). Timeouts are several times a test's idle run time (the longest, one
// full-corpus perplexity case of `npm run test:full`, takes ~35 s idle), so a busy or slower
// machine makes the suite slower, never red.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Compiles dist/ once, before any file runs (test/helpers/build-dist.ts).
    globalSetup: ['test/helpers/build-dist.ts'],
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
