// Each new family's graphs, layer plan and native routing, run through onnxruntime directly
// (test/shared/families/graph-forward.ts, no engine), against what Hugging Face transformers
// computes for the tiny checkpoints: logits within 1e-3 for prefill and token-by-token decode,
// routing traces identical, greedy continuations identical.

import { describe, expect, it } from 'vitest';
import { GraphForward, maxAbsDiff, referenceCases, referenceGreedy } from '../graph-forward.js';

const MODELS = ['tiny-qwen2-moe', 'tiny-qwen3-moe', 'tiny-olmoe', 'tiny-deepseek-v3'] as const;
const TOL = 1e-3;

describe.each(MODELS)('%s through its family graphs', (model) => {
  it('prefill: logits within 1e-3 of transformers and the routing trace identical', async () => {
    for (const c of await referenceCases(model)) {
      const f = await GraphForward.open(model);
      try {
        const logits = await f.step(c.ids);
        expect(maxAbsDiff(logits, c.logits), c.name).toBeLessThan(TOL);
        expect(c.trace.moeLayers).toEqual(f.plan.flatMap((l, i) => (l.kind === 'moe' ? [i] : [])));
        for (const t of c.trace.layers) {
          const routes = f.routes[t.layer]!;
          expect(
            routes.map((r) => r.experts),
            `${c.name} layer ${t.layer}`,
          ).toEqual(t.experts);
          if (t.groups !== undefined) expect(routes.map((r) => r.groups)).toEqual(t.groups);
          const w = routes.flatMap((r) => r.weights);
          expect(maxAbsDiff(w, t.weights.flat()), `${c.name} layer ${t.layer} weights`).toBeLessThan(1e-5);
        }
      } finally {
        await f.close();
      }
    }
  });

  it('decode: one token at a time through the KV cache gives the prefill logits', async () => {
    const [c] = await referenceCases(model);
    const f = await GraphForward.open(model);
    try {
      const V = c!.vocab;
      const n = 24;
      const first = await f.step(c!.ids.slice(0, 8));
      expect(maxAbsDiff(first, c!.logits.subarray(0, 8 * V))).toBeLessThan(TOL);
      for (let t = 8; t < n; t++) {
        const logits = await f.step([c!.ids[t]!]);
        expect(maxAbsDiff(logits, c!.logits.subarray(t * V, (t + 1) * V)), `position ${t}`).toBeLessThan(TOL);
      }
    } finally {
      await f.close();
    }
  });

  it('greedy continuations are identical', async () => {
    for (const g of await referenceGreedy(model)) {
      const f = await GraphForward.open(model);
      try {
        const V = f.ckpt.config.vocabSize;
        let logits = await f.step(g.promptIds);
        let last = logits.subarray(logits.length - V);
        const got: number[] = [];
        for (let i = 0; i < g.greedyIds.length; i++) {
          let best = 0;
          for (let v = 1; v < V; v++) if (last[v]! > last[best]!) best = v;
          got.push(best);
          if (i + 1 < g.greedyIds.length) {
            logits = await f.step([best]);
            last = logits;
          }
        }
        expect(got, g.name).toEqual(g.greedyIds);
      } finally {
        await f.close();
      }
    }
  });
});
