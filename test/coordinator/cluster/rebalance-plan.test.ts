// The rebalance planner on its own: every expert covered, slots respected, no two replicas of an
// expert on one worker, hot experts replicated first, the busiest worker's expected load lowered on
// a skewed cluster, and nothing moved on a balanced one.

import { describe, expect, it } from 'vitest';
import { RebalanceError } from '../../../coordinator/cluster/errors.js';
import {
  expectedBalance,
  planRebalance,
  type RebalanceWorker,
} from '../../../coordinator/cluster/rebalance/plan.js';

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

describe('planRebalance', () => {
  it('replicates the hot expert and moves load off the busiest worker', () => {
    // Expert 0 carries half of all traffic; worker a holds it alone with 0-3.
    const load = [400, 50, 50, 50, 50, 50, 50, 100];
    const workers: RebalanceWorker[] = [
      { id: 'a', experts: [0, 1, 2, 3], slots: 4 },
      { id: 'b', experts: [4, 5, 6, 7], slots: 4 },
      { id: 'c', experts: [4, 5], slots: 4 },
    ];
    const plan = planRebalance({ workers, numExperts: 8, expertLoad: load });
    // 12 slots for 8 experts, 4 extra, each to the highest load per replica: 0 (400), 0 (200), then
    // 0 is on all 3 workers, so 7 (100), then the 50s tie and the one with fewer replicas and the
    // lowest index wins: 1.
    expect(plan.replicas).toEqual([3, 2, 1, 1, 1, 1, 1, 2]);
    expect(plan.before.max).toBeCloseTo(400 + 150, 6);
    expect(plan.after.max).toBeLessThan(plan.before.max * 0.6);
    // Worker-level expectations agree with the helper on the target.
    const after = expectedBalance([...plan.target.values()], load);
    expect(after.max).toBeCloseTo(plan.after.max, 9);
    // Changes are exactly the differences between now and the target.
    for (const w of workers) {
      const target = plan.target.get(w.id)!;
      const none: readonly number[] = [];
      const change = plan.changes.find((c) => c.id === w.id) ?? { load: none, unload: none };
      expect(
        [...w.experts.filter((e) => !change.unload.includes(e)), ...change.load].sort((a, b) => a - b),
      ).toEqual(target);
    }
  });

  it('a balanced cluster: no gain to be had (the runner then changes nothing)', () => {
    const plan = planRebalance({
      workers: [
        { id: 'a', experts: [0, 1, 2, 3], slots: 4 },
        { id: 'b', experts: [4, 5, 6, 7], slots: 4 },
      ],
      numExperts: 8,
      expertLoad: [10, 10, 10, 10, 10, 10, 10, 10],
    });
    expect(plan.after.max).toBeCloseTo(plan.before.max, 9);
    expect(plan.after.imbalance).toBeCloseTo(1, 9);
  });

  it('random clusters: coverage, slots, one replica per worker, changes that lead to the target', () => {
    const random = rng(7);
    for (let trial = 0; trial < 300; trial++) {
      const E = 2 + Math.floor(random() * 62);
      const W = 1 + Math.floor(random() * 6);
      // A valid current placement: expert e on worker e % W, plus random extra replicas.
      const holdings = Array.from({ length: W }, () => new Set<number>());
      for (let e = 0; e < E; e++) holdings[e % W]!.add(e);
      for (let k = 0; k < E; k++) holdings[Math.floor(random() * W)]!.add(Math.floor(random() * E));
      const workers = holdings.map((h, i) => ({
        id: `w${i}`,
        experts: [...h].sort((a, b) => a - b),
        slots: Math.max(1, h.size + Math.floor(random() * 3) - 1),
      }));
      const slots = workers.reduce((a, w) => a + Math.min(w.slots, E), 0);
      // Zipf-like skew.
      const load = Array.from({ length: E }, (_, e) => 1000 / (1 + ((e * 7) % E)) ** (random() * 1.5));
      if (slots < E) {
        expect(() => planRebalance({ workers, numExperts: E, expertLoad: load })).toThrow(RebalanceError);
        continue;
      }
      const plan = planRebalance({ workers, numExperts: E, expertLoad: load });
      const covered = new Array<number>(E).fill(0);
      for (const w of workers) {
        const t = plan.target.get(w.id)!;
        expect(t.length).toBeLessThanOrEqual(w.slots);
        expect(new Set(t).size).toBe(t.length);
        for (const e of t) covered[e]!++;
      }
      expect(covered.every((n) => n >= 1)).toBe(true);
      expect(covered).toEqual(plan.replicas);
      expect(plan.replicas.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(slots);
      for (const c of plan.changes) {
        const now = workers.find((w) => w.id === c.id)!.experts;
        for (const e of c.load) expect(now).not.toContain(e);
        for (const e of c.unload) expect(now).toContain(e);
      }
    }
  });

  it('refuses too few slots and out-of-range experts, naming them', () => {
    expect(() =>
      planRebalance({
        workers: [{ id: 'a', experts: [0], slots: 1 }],
        numExperts: 2,
        expertLoad: [1, 1],
      }),
    ).toThrow(/1 expert slots in all, fewer than the 2 experts/);
    expect(() =>
      planRebalance({
        workers: [{ id: 'a', experts: [0, 9], slots: 2 }],
        numExperts: 2,
        expertLoad: [1, 1],
      }),
    ).toThrow(/worker a holds expert 9, but the model has 2/);
    // A worker id is registry text: quoted.
    expect(() =>
      planRebalance({
        workers: [{ id: 'a\n\u202eb', experts: [0, 9], slots: 2 }],
        numExperts: 2,
        expertLoad: [1, 1],
      }),
    ).toThrow(/^worker a\\n\\u202eb holds expert 9, but the model has 2$/);
  });
});
