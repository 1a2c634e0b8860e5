// `kmoe bench adaptive-k-time` end to end: native top-K and a candidate routing decoded in the same
// rounds, the figures derived from the samples as documented (speed-up, saving, ideal, fraction of
// the ideal), prompts cut from a corpus shorter than the streams' distinct offsets need, and a
// corpus too short for one prompt refused by name.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { median } from '../../../coordinator/bench/report/quantiles.js';
import { runCli } from '../../helpers/cli.js';
import { MODEL_DIR, ROOT } from '../../helpers/paths.js';

const dir = mkdtempSync(join(tmpdir(), 'kmoe-bench-akt-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** The first `n` ids of valid.man as a corpus file of its own. */
function corpus(n: number): string {
  const ids = readFileSync(join(ROOT, 'data/eval/valid.man.u16'));
  const file = join(dir, `ids-${n}.u16`);
  writeFileSync(file, ids.subarray(0, 2 * n));
  return file;
}

interface Round {
  msPerToken: number;
  activations: number;
  nativeActivations: number;
  expertMs: number;
  wallMs: number;
}

describe('kmoe bench adaptive-k-time', () => {
  it('times native and candidate in the same rounds and derives the ideal from the measured share', async () => {
    const out = join(dir, 'time.json');
    // 40 ids: 5 streams' offsets (0, 997, ...) run past the end and wrap.
    const args = ['--routing', 'skip:0.3', '--streams', '1,5', '--tokens', '3', '--repeats', '2'];
    const r = await runCli([
      'bench',
      'adaptive-k-time',
      '--model',
      MODEL_DIR,
      ...args,
      '--ids',
      corpus(40),
      '--out',
      out,
    ]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\| streams \| ms\/token native \| ms\/token skip:0.3 \|/m);
    const json = JSON.parse(readFileSync(out, 'utf8')) as {
      native: string;
      routing: string;
      rows: {
        streams: number;
        msPerTokenNative: number;
        msPerTokenCandidate: number;
        speedup: number;
        saving: number;
        expertShareNative: number;
        idealSpeedup: number;
        gainVsIdeal: number | null;
        samples: { native: Round[]; candidate: Round[] };
      }[];
    };
    expect(json).toMatchObject({ native: 'topk:2', routing: 'skip:0.3' });
    expect(json.rows.map((x) => x.streams)).toEqual([1, 5]);
    for (const row of json.rows) {
      expect(row.samples.native).toHaveLength(2);
      expect(row.samples.candidate).toHaveLength(2);
      expect(row.msPerTokenNative).toBeCloseTo(median(row.samples.native.map((s) => s.msPerToken)), 10);
      expect(row.speedup).toBeCloseTo(row.msPerTokenNative / row.msPerTokenCandidate, 10);
      for (const s of [...row.samples.native, ...row.samples.candidate]) {
        // 3 steps x streams x 4 MoE layers x K = 2.
        expect(s.nativeActivations).toBe(3 * row.streams * 4 * 2);
        expect(s.msPerToken).toBeCloseTo(s.wallMs / (3 * row.streams), 10);
        expect(s.expertMs).toBeGreaterThan(0);
        expect(s.expertMs).toBeLessThan(s.wallMs);
      }
      for (const s of row.samples.native) expect(s.activations).toBe(s.nativeActivations);
      const c = row.samples.candidate[0]!;
      expect(c.activations).toBeLessThan(c.nativeActivations);
      expect(row.saving).toBeCloseTo(1 - c.activations / c.nativeActivations, 10);
      const share = median(row.samples.native.map((s) => s.expertMs / s.wallMs));
      expect(row.expertShareNative).toBeCloseTo(share, 10);
      expect(row.idealSpeedup).toBeCloseTo(1 / (1 - share * row.saving), 10);
      expect(row.gainVsIdeal).toBeCloseTo((row.speedup - 1) / (row.idealSpeedup - 1), 10);
    }
  });

  it('names a corpus too short for one prompt', async () => {
    const r = await runCli([
      'bench',
      'adaptive-k-time',
      '--model',
      MODEL_DIR,
      '--routing',
      'skip:0.3',
      '--streams',
      '2',
      '--tokens',
      '2',
      '--repeats',
      '1',
      '--ids',
      corpus(10),
      '--out',
      join(dir, 'short.json'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /kmoe bench adaptive-k-time: error: batched decode needs a corpus of at least 16 token ids for its prompts; got 10/,
    );
    expect(r.stderr).toMatch(/hint: give --ids a .u16 corpus of 16 or more token ids/);
    expect(r.stderr).not.toMatch(/unexpected error|at .*\.ts:\d+/);
  });
});
