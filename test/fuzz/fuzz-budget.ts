// How many cases a fuzz suite runs and what it checks between batches. `npm test` runs the
// default counts; `npm run fuzz` (or KMOE_FUZZ_CASES=N) runs N cases per suite, KMOE_FUZZ_SEED
// replays a run (every failure message names its seed and batch).

import { readFileSync } from 'node:fs';
import { expect } from 'vitest';

/** Cases per suite: KMOE_FUZZ_CASES, or the suite's bounded default. */
export function fuzzCases(defaultCases: number): number {
  const env = process.env['KMOE_FUZZ_CASES'];
  if (env === undefined || env === '') return defaultCases;
  const n = Number(env);
  if (!Number.isInteger(n) || n < 1)
    throw new Error(`KMOE_FUZZ_CASES must be a positive integer, got '${env}'`);
  return n;
}

/** The base seed of this run: KMOE_FUZZ_SEED, else a fresh one (printed, so a failure can be replayed). */
export function fuzzSeed(): number {
  const env = process.env['KMOE_FUZZ_SEED'];
  const seed = env ? Number(env) : Math.floor(Math.random() * 2 ** 31);
  console.log(`fuzz seed ${seed} (replay with KMOE_FUZZ_SEED=${seed})`);
  return seed;
}

/** Resident set size of a process in MiB, from /proc (Linux). */
export function rssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!kib) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return Number(kib[1]) / 1024;
}

/**
 * Memory must stay bounded: under twice the resident size after warm-up plus 200 MiB (generous:
 * V8 grows its heap lazily and returns it late; a leak per case grows without bound).
 */
export function expectBoundedRss(pid: number, baselineMiB: number, what: string): number {
  const now = rssMiB(pid);
  expect(
    now,
    `${what}: RSS ${now.toFixed(0)} MiB vs ${baselineMiB.toFixed(0)} MiB after warm-up`,
  ).toBeLessThan(2 * baselineMiB + 200);
  return now;
}

/** Splits `total` cases into `batches` counts that sum to it. */
export function batchSizes(total: number, batches: number): number[] {
  const n = Math.max(1, Math.min(batches, total));
  return Array.from({ length: n }, (_, i) => Math.floor(((i + 1) * total) / n) - Math.floor((i * total) / n));
}

/** A test's timeout for `cases` cases: the default two minutes, or 50 ms per case for long runs. */
export function caseTimeout(cases: number): number {
  return Math.max(120_000, cases * 50);
}
