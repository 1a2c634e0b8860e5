// Linear substitutes applied to a batch by one onnxruntime graph per MoE layer (the engine's
// SubstituteBatchKernel): the graph's output equals the weighted substitutes computed directly, a
// skip policy given the kernel routes exactly as without it and gives the same prior, batches of
// fewer than two skipped pairs stay on the JS path, and overflowing tables are still named.

import { describe, expect, it } from 'vitest';
import { SubstituteGraphs } from '../../../coordinator/moe/substitute-graphs.js';
import { defaultSessionSettings } from '../../../shared/onnx/session.js';
import {
  type ExpertSubstitutes,
  encodeExpertSubstitutes,
  type SubstituteBatchKernel,
} from '../../../shared/routing/expert-substitutes.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';
import { direct, randomSubstitutes, values } from '../../helpers/substitutes.js';
import { routerInput, softmax, TINY_MIXTRAL } from '../../shared/routing/helpers.js';

const settings = { ...defaultSessionSettings(), threads: 1 };

/** The real graphs, counting how often a policy hands them a batch. */
class CountingGraphs implements SubstituteBatchKernel {
  calls = 0;
  prepared = 0;
  private readonly graphs = new SubstituteGraphs(settings);
  apply(...args: Parameters<SubstituteBatchKernel['apply']>): void {
    this.calls++;
    this.graphs.apply(...args);
  }
  prepare(s: ExpertSubstitutes): void {
    this.prepared++;
    this.graphs.prepare(s);
  }
}

function expectClose(got: Float32Array, want: ArrayLike<number>): void {
  expect(got.length).toBe(want.length);
  let worst = 0;
  let scale = 0;
  for (let i = 0; i < want.length; i++) {
    worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
    scale = Math.max(scale, Math.abs(want[i]!));
  }
  expect(worst).toBeLessThanOrEqual(1e-5 * Math.max(scale, 1));
}

describe('substitute graphs', () => {
  it('compute sum over experts of w[t, e] x (up (down x) + bias), as computed directly', () => {
    const H = 48;
    const E = 8;
    const s = randomSubstitutes(3, E, 8, H);
    const n = 5;
    const x = values(n * H, 21);
    // Row 0 skips nothing, row 1 one expert, row 2 two, rows 3-4 assorted.
    const w = new Float32Array(n * E);
    w[1 * E + 3] = 0.25;
    w[2 * E + 0] = 0.1;
    w[2 * E + 7] = 0.4;
    w[3 * E + 5] = 0.33;
    w[4 * E + 2] = 0.05;
    const out = new Float32Array(n * H).fill(123);
    new SubstituteGraphs(settings).apply(s, 2, n, x, w, out);
    const want = new Float64Array(n * H);
    for (let t = 0; t < n; t++) {
      for (let e = 0; e < E; e++) {
        const weight = w[t * E + e]!;
        if (weight === 0) continue;
        const y = direct(s, 2, e, x.subarray(t * H, (t + 1) * H));
        for (let i = 0; i < H; i++) want[t * H + i]! += weight * y[i]!;
      }
    }
    expectClose(out, want);
    expect(Array.from(out.subarray(0, H))).toEqual(new Array(H).fill(0));
  });

  it('refuse buffers of the wrong size and a layer outside the table', () => {
    const s = randomSubstitutes(2, 4, 2, 8);
    const graphs = new SubstituteGraphs(settings);
    expect(() =>
      graphs.apply(s, 0, 2, new Float32Array(15), new Float32Array(8), new Float32Array(16)),
    ).toThrow(/x 15, weights 8, out 16 values for 2 rows of hidden 8 and 4 experts/);
    expect(() =>
      graphs.apply(s, 2, 1, new Float32Array(8), new Float32Array(4), new Float32Array(8)),
    ).toThrow(/MoE layer 2 is outside 0..1/);
  });
});

describe('a skip policy with the substitute graphs', () => {
  const H = 32;
  const subs: ExpertSubstitutes = randomSubstitutes(4, 8, 6, H);
  const config = { kind: 'skip' as const, tau: 0.3, expertSubstitutes: encodeExpertSubstitutes(subs) };
  // 24 tokens with router rows of every confidence: some skip their second expert, some do not.
  const n = 24;
  const probs = Float32Array.from(
    Array.from({ length: n }, (_, t) =>
      softmax(Array.from({ length: 8 }, (_, j) => ((t * 7 + j * 13) % 11) * (t % 3 === 0 ? 0.9 : 0.3))),
    ).flat(),
  );
  const x = values(n * H, 5);

  it('routes as without them and gives the same prior, through one graph call per batch', () => {
    const kernel = new CountingGraphs();
    const js = createRoutingPolicy(config, TINY_MIXTRAL, 'js');
    const graph = createRoutingPolicy(config, { ...TINY_MIXTRAL, substituteKernel: kernel }, 'graph');
    for (const layer of [0, 3]) {
      const input = { ...routerInput(layer, 8, probs), x };
      const a = js.route(input);
      const b = graph.route(input);
      expect(Array.from(b.offsets)).toEqual(Array.from(a.offsets));
      expect(Array.from(b.experts)).toEqual(Array.from(a.experts));
      expect(Array.from(b.weights)).toEqual(Array.from(a.weights));
      const skipped = n * 2 - a.experts.length;
      expect(skipped).toBeGreaterThanOrEqual(4);
      expect(skipped).toBeLessThan(n);
      expectClose(b.prior!, a.prior!);
    }
    expect(kernel.calls).toBe(2);
    // The policy readied the graphs when it was created, not in its first batch.
    expect(kernel.prepared).toBe(1);
  });

  it('keeps a batch with a single skipped pair on the JS path', () => {
    const kernel = new CountingGraphs();
    const graph = createRoutingPolicy(config, { ...TINY_MIXTRAL, substituteKernel: kernel }, 'graph');
    // Token 0 skips expert 1 (0.2 / 0.7 < 0.3), token 1 keeps both.
    const two = Float32Array.from([
      0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0, 0, 0.4, 0.35, 0.05, 0.05, 0.05, 0.05, 0.05, 0,
    ]);
    const d = graph.route({ ...routerInput(1, 8, two), x: x.subarray(0, 2 * H) });
    expect(d.experts.length).toBe(3);
    expect(kernel.calls).toBe(0);
    const w = Math.fround(0.2) / (Math.fround(0.5) + Math.fround(0.2));
    const want = direct(subs, 1, 1, x.subarray(0, H)).map((v) => w * v);
    expectClose(d.prior!.subarray(0, H), want);
  });

  it('fails a token only for the experts it skips, whatever else the batch holds', () => {
    // Expert 0's substitute overflows on every input; the others are ordinary.
    const poisoned = randomSubstitutes(4, 8, 6, H);
    for (let l = 0; l < 4; l++) poisoned.down.fill(3e38, l * 8 * 6 * H, (l * 8 + 1) * 6 * H);
    const json = { ...config, tau: 0.5, expertSubstitutes: encodeExpertSubstitutes(poisoned) };
    const kernel = new CountingGraphs();
    const graph = createRoutingPolicy(json, { ...TINY_MIXTRAL, substituteKernel: kernel }, 'graph');
    const js = createRoutingPolicy(json, TINY_MIXTRAL, 'js');
    // Rank 1 expert 3; rank 2 expert 5, 6 or 0 (skipped: its native weight is below 1/2).
    const row = (second: number) =>
      Array.from({ length: 8 }, (_, j) => (j === 3 ? 0.5 : j === second ? 0.3 : 0.2 / 6));
    const safe = Float32Array.from([...row(5), ...row(6), ...row(5)]);
    const xs = x.subarray(0, 3 * H);
    const a = graph.route({ ...routerInput(1, 8, safe), x: xs });
    const b = js.route({ ...routerInput(1, 8, safe), x: xs });
    expect(kernel.calls).toBe(1);
    expectClose(a.prior!, b.prior!);
    const bad = Float32Array.from([...row(5), ...row(0), ...row(6)]);
    expect(() => graph.route({ ...routerInput(1, 8, bad), x: xs })).toThrow(
      /layer 1 token 1: the linear substitute of expert 0 is not finite for this input/,
    );
  });

  it('names the token and its skipped experts when finite tables overflow on an input', () => {
    const huge = randomSubstitutes(4, 8, 6, H);
    huge.down.fill(3e38);
    const policy = createRoutingPolicy(
      { ...config, expertSubstitutes: encodeExpertSubstitutes(huge) },
      { ...TINY_MIXTRAL, substituteKernel: new CountingGraphs() },
      'huge',
    );
    expect(() => policy.route({ ...routerInput(2, 8, probs), x: Float32Array.from(x, () => 1) })).toThrow(
      /layer 2 token \d+: the linear substitute of expert \d is not finite for this input; the profile's expertSubstitutes values are too large/,
    );
  });
});
