import { defineConfig } from 'vitest/config';

// Integration tests start real processes, onnxruntime sessions and redis-server; each keeps about
// 1.3 of a 2-core machine busy, so two test files run at a time (every test takes its own free
// ports, temporary directories and Redis; checks that read gauges or time a failure allow for a
// loaded machine). Timeouts are several times a test's run time with a second file beside it (the
// longest, one full-corpus perplexity case of `npm run test:full`, takes ~35 s alone), so a busy
// or slower machine makes the suite slower, never red.
const TIMEOUTS = { testTimeout: 300_000, hookTimeout: 300_000 };

// These rebuild dist/, which every other file's kmoe processes run, so they go last, one at a time:
// the bin test runs `npm run build`, and `npx kmoe` in this project runs its prepare script (the
// build) before the command. A worker another file started while tsc rewrote dist/ once failed to
// import a half-written module (membership.js without its StaticMembership export).
const REBUILDS_DIST = ['test/coordinator/cli/bin.test.ts', 'test/shared/runtime/stop-with-parent.test.ts'];

export default defineConfig({
  test: {
    // Compiles dist/ once, before any file runs (test/helpers/build-dist.ts).
    globalSetup: ['test/helpers/build-dist.ts'],
    projects: [
      {
        test: {
          name: 'kmoe',
          include: ['test/**/*.test.ts'],
          exclude: REBUILDS_DIST,
          maxWorkers: 2,
          sequence: { groupOrder: 0 },
          ...TIMEOUTS,
        },
      },
      {
        test: {
          name: 'rebuilds-dist',
          include: REBUILDS_DIST,
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
          ...TIMEOUTS,
        },
      },
    ],
  },
});
