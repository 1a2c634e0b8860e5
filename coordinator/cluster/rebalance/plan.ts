// Which experts each worker should hold, from the load the cluster measured (EPLB-style, as in
// DeepSeek's expert-parallel load balancer, adapted to kmoe's placement unit): a worker holds an
// expert in every MoE layer, so the unit placed is the expert and its load is summed over layers.
//  1. Replicas: every expert gets one; the worker slots left go, one at a time, to the expert with
//     the highest load per replica (at most one replica per worker).
//  2. Packing: replicas in decreasing load per replica, each to the worker with a free slot whose
//     expected load (plus a small penalty when it does not hold the expert yet) is lowest; then
//     workers with equal slots swap targets where that keeps more of what they hold (fewer loads).
// Whether a plan is worth applying is the caller's call (run.ts: --min-gain on the busiest worker).
// An expert's load is assumed to split evenly across its replicas (k-aware balancing splits by
// measured cost; even is what it converges to on equal workers). Pure: no Redis, no clock.

import { printable } from '../../../shared/text/printable.js';
import { RebalanceError } from '../errors.js';

export interface RebalanceWorker {
  readonly id: string;
  readonly experts: readonly number[];
  /** Experts this worker may hold after the rebalance. */
  readonly slots: number;
}

export interface RebalanceInput {
  readonly workers: readonly RebalanceWorker[];
  readonly numExperts: number;
  /** Per expert, pairs/s summed over layers and over the workers that hold it. */
  readonly expertLoad: readonly number[];
  /**
   * Relative penalty (of the mean load per worker) for giving a worker an expert it does not hold
   * yet: moves cost a load, so a move must buy more balance than this. Default 0.05.
   */
  readonly movePenalty?: number;
}

/** Expected max and mean load (pairs/s) per worker, and max/mean. */
export interface Balance {
  readonly max: number;
  readonly mean: number;
  readonly imbalance: number;
}

export interface WorkerChange {
  readonly id: string;
  readonly load: readonly number[];
  readonly unload: readonly number[];
}

export interface RebalancePlan {
  /** worker id -> experts it holds afterwards, ascending. */
  readonly target: ReadonlyMap<string, readonly number[]>;
  /** Per worker with something to do. Loads run before any unload (coverage never drops). */
  readonly changes: readonly WorkerChange[];
  /** Replicas per expert afterwards. */
  readonly replicas: readonly number[];
  readonly before: Balance;
  readonly after: Balance;
}

export function planRebalance(input: RebalanceInput): RebalancePlan {
  const { workers, numExperts: E, expertLoad } = input;
  const W = workers.length;
  if (W === 0) throw new RebalanceError('no ready workers in the registry');
  if (expertLoad.length !== E)
    throw new RebalanceError(`expected ${E} expert loads, got ${expertLoad.length}`);
  for (const w of workers) {
    if (!Number.isInteger(w.slots) || w.slots < 1)
      throw new RebalanceError(`worker ${printable(w.id)}: slots must be a positive integer, got ${w.slots}`);
    const bad = w.experts.find((e) => !Number.isInteger(e) || e < 0 || e >= E);
    if (bad !== undefined)
      throw new RebalanceError(`worker ${printable(w.id)} holds expert ${bad}, but the model has ${E}`);
  }
  const slots = workers.reduce((a, w) => a + Math.min(w.slots, E), 0);
  if (slots < E)
    throw new RebalanceError(
      `the workers have ${slots} expert slots in all, fewer than the ${E} experts every request may need`,
    );

  // 1. Replica counts: greedy on load per replica (ties: fewer replicas, then lower index).
  const replicas = new Array<number>(E).fill(1);
  for (let extra = slots - E; extra > 0; extra--) {
    let best = -1;
    for (let e = 0; e < E; e++) {
      if (replicas[e]! >= W) continue;
      if (
        best < 0 ||
        expertLoad[e]! / replicas[e]! > expertLoad[best]! / replicas[best]! ||
        (expertLoad[e]! / replicas[e]! === expertLoad[best]! / replicas[best]! &&
          replicas[e]! < replicas[best]!)
      )
        best = e;
    }
    if (best < 0) break;
    replicas[best]!++;
  }

  // 2. Packing, heaviest replica first.
  const units: { expert: number; load: number }[] = [];
  for (let e = 0; e < E; e++)
    for (let r = 0; r < replicas[e]!; r++) units.push({ expert: e, load: expertLoad[e]! / replicas[e]! });
  // Sole replicas of an expert before extra replicas of the same load: coverage is placed first.
  units.sort((a, b) => b.load - a.load || replicas[a.expert]! - replicas[b.expert]! || a.expert - b.expert);
  const total = expertLoad.reduce((a, b) => a + b, 0);
  const penalty = (input.movePenalty ?? 0.05) * (total / W);
  const held = workers.map((w) => new Set(w.experts));
  const assigned = workers.map(() => new Set<number>());
  const load = new Float64Array(W);
  const free = workers.map((w) => Math.min(w.slots, E));
  const placed = new Array<number>(E).fill(0);
  for (const u of units) {
    let best = -1;
    let bestScore = Number.POSITIVE_INFINITY;
    for (let w = 0; w < W; w++) {
      if (free[w]! === 0 || assigned[w]!.has(u.expert)) continue;
      const score = load[w]! + u.load + (held[w]!.has(u.expert) ? 0 : penalty);
      if (score < bestScore) {
        best = w;
        bestScore = score;
      }
    }
    // Only an extra replica can find every free slot on workers that already have its expert.
    if (best < 0) continue;
    assigned[best]!.add(u.expert);
    free[best]!--;
    load[best]! += u.load;
    placed[u.expert]!++;
  }
  const missing = placed.indexOf(0);
  if (missing >= 0) throw new RebalanceError(`internal: expert ${missing} was not placed`);
  keepWhatIsHeld(assigned, held, workers);

  const target = new Map<string, readonly number[]>();
  const changes: WorkerChange[] = [];
  workers.forEach((w, i) => {
    const next = [...assigned[i]!].sort((a, b) => a - b);
    target.set(w.id, next);
    const add = next.filter((e) => !held[i]!.has(e));
    const drop = [...held[i]!].filter((e) => !assigned[i]!.has(e)).sort((a, b) => a - b);
    if (add.length > 0 || drop.length > 0) changes.push({ id: w.id, load: add, unload: drop });
  });
  return {
    target,
    changes,
    replicas: placed,
    before: expectedBalance(
      workers.map((w) => w.experts),
      expertLoad,
    ),
    after: expectedBalance(
      workers.map((w) => target.get(w.id)!),
      expertLoad,
    ),
  };
}

/**
 * Workers with the same slots are interchangeable bins: swap their targets wherever that keeps more
 * of what they hold now (fewer loads, same balance).
 */
function keepWhatIsHeld(
  assigned: Set<number>[],
  held: Set<number>[],
  workers: readonly RebalanceWorker[],
): void {
  const overlap = (t: Set<number>, h: Set<number>) => [...t].filter((e) => h.has(e)).length;
  for (let improved = true; improved; ) {
    improved = false;
    for (let i = 0; i < workers.length; i++) {
      for (let j = i + 1; j < workers.length; j++) {
        if (workers[i]!.slots !== workers[j]!.slots) continue;
        const now = overlap(assigned[i]!, held[i]!) + overlap(assigned[j]!, held[j]!);
        const swapped = overlap(assigned[j]!, held[i]!) + overlap(assigned[i]!, held[j]!);
        if (swapped > now) {
          [assigned[i], assigned[j]] = [assigned[j]!, assigned[i]!];
          improved = true;
        }
      }
    }
  }
}

/** Per-worker load if each expert's load splits evenly over the workers holding it. */
export function expectedBalance(
  holdings: readonly (readonly number[])[],
  expertLoad: readonly number[],
): Balance {
  const holders = new Array<number>(expertLoad.length).fill(0);
  for (const h of holdings) for (const e of new Set(h)) holders[e]!++;
  const loads = holdings.map((h) => [...new Set(h)].reduce((a, e) => a + expertLoad[e]! / holders[e]!, 0));
  const max = Math.max(0, ...loads);
  const mean = loads.length === 0 ? 0 : loads.reduce((a, b) => a + b, 0) / loads.length;
  return { max, mean, imbalance: mean > 0 ? max / mean : 1 };
}
