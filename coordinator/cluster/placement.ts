// Which worker holds which experts, and which worker computes each expert of a batch. Replicas are
// allowed: an expert held by several live workers goes, per layer and batch, to the one with the
// least work so far in that batch (deterministic: same decision, same choice).

import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';
import { formatExpertSet } from '../../shared/protocol/expert-set.js';
import { PlacementError } from './errors.js';

export interface WorkerExperts {
  readonly url: string;
  readonly experts: readonly number[];
}

export class PlacementTable {
  private constructor(
    readonly workers: readonly WorkerExperts[],
    readonly numExperts: number,
    /** holders[e] = indices of the workers holding expert e, ascending. */
    private readonly holders: readonly (readonly number[])[],
  ) {}

  /** Fails, naming them, if some experts of the model are held by no worker. */
  static create(workers: readonly WorkerExperts[], numExperts: number): PlacementTable {
    const holders: number[][] = Array.from({ length: numExperts }, () => []);
    workers.forEach((w, i) => {
      for (const e of w.experts) {
        if (!Number.isInteger(e) || e < 0 || e >= numExperts)
          throw new PlacementError(`worker ${w.url} claims expert ${e}, but the model has ${numExperts}`, {
            missing: [],
            hint: 'the worker runs another model: check its --model',
          });
        holders[e]!.push(i);
      }
    });
    const missing = holders.flatMap((h, e) => (h.length === 0 ? [e] : []));
    if (missing.length > 0) {
      const held = workers.map((w) => `${w.url} holds ${formatExpertSet(w.experts) || 'none'}`).join('; ');
      throw new PlacementError(
        `experts ${formatExpertSet(missing)} of ${numExperts} are held by no worker (${held})`,
        { missing, hint: 'start workers whose --experts cover every expert, or use kmoe local-cluster' },
      );
    }
    return new PlacementTable(workers, numExperts, holders);
  }

  /** "ws://a: 0-3; ws://b: 4-7" */
  describe(): string {
    return this.workers.map((w) => `${w.url}: ${formatExpertSet(w.experts)}`).join('; ');
  }

  /**
   * assignment[e] = the worker that computes expert e for this batch, -1 for experts it does not
   * use. Experts with one live holder go there; replicated ones then go, most-used first, to the
   * live holder with the fewest pairs so far (ties: lower worker index). Dedup of tokens whose
   * experts share a worker is not optimised here, only compute balance.
   */
  assign(pairs: ExpertAssignment, live: readonly boolean[]): Int32Array {
    const E = this.numExperts;
    const counts = new Int32Array(E);
    const total = pairs.offsets[pairs.numTokens]!;
    for (let j = 0; j < total; j++) counts[pairs.experts[j]!]!++;
    const assignment = new Int32Array(E).fill(-1);
    const load = new Float64Array(this.workers.length);
    const replicated: number[] = [];
    const orphans: number[] = [];
    for (let e = 0; e < E; e++) {
      if (counts[e] === 0) continue;
      const alive = this.holders[e]!.filter((w) => live[w]);
      if (alive.length === 0) orphans.push(e);
      else if (alive.length === 1) {
        assignment[e] = alive[0]!;
        load[alive[0]!]! += counts[e]!;
      } else replicated.push(e);
    }
    if (orphans.length > 0) {
      const dead = this.workers.filter((_, i) => !live[i]).map((w) => w.url);
      throw new PlacementError(
        `experts ${formatExpertSet(orphans)} have no live worker (failed: ${dead.join(', ')})`,
        { missing: orphans, hint: 'restart the failed workers and start a new coordinator' },
      );
    }
    replicated.sort((a, b) => counts[b]! - counts[a]! || a - b);
    for (const e of replicated) {
      let best = -1;
      for (const w of this.holders[e]!) {
        if (live[w] && (best < 0 || load[w]! < load[best]!)) best = w;
      }
      assignment[e] = best;
      load[best]! += counts[e]!;
    }
    return assignment;
  }
}
