import { defineConfig } from 'vitest/config';

// Integration tests start real processes, onnxruntime sessions and redis-server: run test files
// one at a time (2 cores; two at a time exposed a race in serve.test's metrics check, README
// Tests). Timeouts are several times a test's idle run time (the longest, one full-corpus
// perplexity case of `npm run test:full`, takes ~35 s idle), so a busy or slower machine makes
// the suite slower, never red.
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Compiles dist/ once, before any file runs: the kmoe processes tests start run it.
    globalSetup: ['test/helpers/build-dist.ts'],
    fileParallelism: false,
    testTimeout: 300_000,
    hookTimeout: 300_000,
  },
});
