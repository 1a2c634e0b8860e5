// Which worker holds which experts, and the baseline rule for which worker computes each expert of
// a batch: an expert held by several live workers goes, per layer and batch, whole to the one with
// the least work so far in that batch (deterministic: same decision, same choice). The K-aware rule
// that splits experts per (token, expert) pair is in balance.ts.

import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';
import { formatExpertSet } from '../../shared/protocol/expert-set.js';
import { listed } from '../../shared/text/listed.js';
import { printable } from '../../shared/text/printable.js';
import { PlacementError } from './errors.js';

export interface WorkerExperts {
  readonly url: string;
  readonly experts: readonly number[];
  /**
   * The worker left the membership: its slot stays (indices are stable) but it is no longer
   * expected back, so an error does not name it among the failed.
   */
  readonly left?: boolean;
}

/** Failed workers named one by one in a "no live worker" error; the others are counted. */
const FAILED_NAMED = 3;
/**
 * Workers listed one by one with their experts (a start-up error, the backend's description); the
 * others are counted: a registry may list thousands, and its records chose the URLs (quoted).
 */
const WORKERS_LISTED = 8;

/** "ws://a: 0-3; ws://b: 4-7": the first WORKERS_LISTED workers, URLs quoted, then a count. */
export function describeWorkers(workers: readonly WorkerExperts[]): string {
  return listed(workers, WORKERS_LISTED, (w) => `${printable(w.url, 100)}: ${formatExpertSet(w.experts)}`);
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
    const table = PlacementTable.of(workers, numExperts);
    const missing = table.holders.flatMap((h, e) => (h.length === 0 ? [e] : []));
    if (missing.length > 0) {
      const held = listed(
        workers,
        WORKERS_LISTED,
        (w) => `${printable(w.url, 100)} holds ${formatExpertSet(w.experts) || 'none'}`,
      );
      throw new PlacementError(
        `experts ${formatExpertSet(missing)} of ${numExperts} are held by no worker (${workers.length === 0 ? 'none connected' : held})`,
        { missing, hint: 'start workers whose --experts cover every expert, or use kmoe local-cluster' },
      );
    }
    return table;
  }

  /**
   * The table as it is, gaps allowed: the cluster's view while workers come and go (an expert
   * nobody holds fails only the batches that use it, in `assign`).
   */
  static of(workers: readonly WorkerExperts[], numExperts: number): PlacementTable {
    const holders: number[][] = Array.from({ length: numExperts }, () => []);
    workers.forEach((w, i) => {
      for (const e of w.experts) {
        if (!Number.isInteger(e) || e < 0 || e >= numExperts)
          throw new PlacementError(
            `worker ${printable(w.url, 100)} claims expert ${e}, but the model has ${numExperts}`,
            {
              missing: [],
              hint: 'the worker runs another model: check its --model',
            },
          );
        holders[e]!.push(i);
      }
    });
    return new PlacementTable(workers, numExperts, holders);
  }

  /** The workers holding expert e, ascending (live or not). */
  holdersOf(e: number): readonly number[] {
    return this.holders[e]!;
  }

  /** Fails naming the experts of `pairs` that no live worker holds (none: returns). */
  checkCovered(pairs: ExpertAssignment, live: readonly boolean[]): void {
    const total = pairs.offsets[pairs.numTokens]!;
    const orphans: number[] = [];
    const seen = new Uint8Array(this.numExperts);
    for (let j = pairs.offsets[0]!; j < total; j++) {
      const e = pairs.experts[j]!;
      if (seen[e]) continue;
      seen[e] = 1;
      if (!this.holders[e]!.some((w) => live[w])) orphans.push(e);
    }
    if (orphans.length > 0)
      throw this.orphaned(
        orphans.sort((a, b) => a - b),
        live,
      );
  }

  /**
   * The error for experts no live worker holds, naming the workers that hold them and failed (not
   * those that left, nor failed workers holding other experts): the first FAILED_NAMED, quoted
   * (a registry record chose the URL), then their count, so the message stays short however many
   * workers a registry listed.
   */
  private orphaned(orphans: readonly number[], live: readonly boolean[]): PlacementError {
    const holders = new Set<number>();
    for (const e of orphans) for (const w of this.holders[e]!) holders.add(w);
    const failed = [...holders]
      .sort((a, b) => a - b)
      .filter((w) => !live[w] && this.workers[w]!.left !== true)
      .map((w) => this.workers[w]!.url);
    const named = failed.slice(0, FAILED_NAMED).map((u) => printable(u, 100));
    const more = failed.length - named.length;
    const why =
      failed.length > 0
        ? `failed: ${named.join(', ')}${more > 0 ? ` and ${more.toLocaleString('en-US')} more` : ''}`
        : holders.size > 0
          ? 'the workers holding them left'
          : 'no worker holds them';
    return new PlacementError(`experts ${formatExpertSet(orphans)} have no live worker (${why})`, {
      missing: orphans,
      hint: 'serving resumes by itself once a worker holding them is up again (the coordinator reconnects to known URLs with backoff, and adds workers that join)',
    });
  }

  /** "ws://a: 0-3; ws://b: 4-7" (the first WORKERS_LISTED, then a count) */
  describe(): string {
    return describeWorkers(this.workers);
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
    if (orphans.length > 0) throw this.orphaned(orphans, live);
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
