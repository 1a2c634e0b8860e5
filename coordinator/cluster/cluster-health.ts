// The cluster's health as the serving side sees it, on the main thread: which workers are gone and
// which experts therefore have no live worker. The one source for /ready and for refusing
// generation with 503. Fed by the membership (a process exit, a deregistration) and by the engine
// thread's connections (a dropped socket), whichever comes first; a connection (re)established by
// the engine (a reconnect, a join) makes its experts count again.

import { formatExpertSet } from '../../shared/protocol/expert-set.js';
import { counted } from '../../shared/text/counted.js';
import type { Membership } from './membership.js';
import { describeWorkers } from './placement.js';
import type { WorkerDown, WorkerUp } from './remote-expert-backend.js';

/** Where the experts run and whether every expert has a live host right now. */
export interface ExpertCoverage {
  readonly description: string;
  readonly covered: boolean;
  /** Experts no live worker holds, ascending; absent when covered. */
  readonly missing?: readonly number[];
  /** Why not covered: the missing experts and what happened to their workers. */
  readonly detail?: string;
}

export interface ClusterHealthOptions {
  /** How experts run, for people (EngineInfo.experts). */
  readonly description: string;
  readonly numExperts: number;
  /** The workers and their experts (EngineInfo.placement); empty when experts are in-process. */
  readonly placement: readonly { readonly url: string; readonly experts: readonly number[] }[];
  readonly membership: Membership;
  /** Subscribes to dropped connections (EngineClient.onWorkerDown). */
  readonly connections: (listener: (e: WorkerDown) => void) => void;
  /** Subscribes to (re)established connections (EngineClient.onWorkerUp). */
  readonly connectionsUp?: (listener: (e: WorkerUp) => void) => void;
  /**
   * Whether the membership reports process exits itself (workers this process started). Then a
   * dropped connection counts after `exitGraceMs` unless the exit, which says why, comes first.
   */
  readonly reportsExits: boolean;
  readonly exitGraceMs?: number;
}

const DEFAULT_EXIT_GRACE_MS = 1000;
/** Workers whose departures are quoted in a "no live worker" detail; the others are counted. */
const DEPARTURES_NAMED = 3;
/**
 * Workers that left the membership whose experts and reasons are remembered to explain a gap in
 * /ready; older departures are forgotten (a registry can churn through thousands of workers).
 */
const MAX_REMEMBERED_DEPARTURES = 64;
/** How RemoteExpertBackend.description starts. */
const REMOTE = 'remote experts on ';

export class ClusterHealth {
  /** url -> what happened to it, in arrival order. */
  private readonly gone = new Map<string, string[]>();
  private readonly timers = new Map<string, NodeJS.Timeout>();

  /** url -> experts: the placement at the start plus the workers that joined since. */
  private readonly placement = new Map<string, readonly number[]>();
  /** URLs that left the membership and have not joined again, oldest first (at most MAX_REMEMBERED_DEPARTURES). */
  private readonly departed = new Set<string>();

  private constructor(private readonly options: ClusterHealthOptions) {
    for (const w of options.placement) this.placement.set(w.url, w.experts);
  }

  static watch(options: ClusterHealthOptions): ClusterHealth {
    const health = new ClusterHealth(options);
    options.membership.onLeave((e) => health.left(e.url, e.reason));
    options.connections((e) => health.dropped(e));
    options.connectionsUp?.((e) => health.joined(e.url, e.experts));
    return health;
  }

  /**
   * A worker is connected (again): its experts count as covered and what happened to its URL
   * before is forgotten.
   */
  joined(url: string, experts: readonly number[]): void {
    this.placement.set(url, experts);
    const t = this.timers.get(url);
    if (t) clearTimeout(t);
    this.timers.delete(url);
    this.gone.delete(url);
    this.departed.delete(url);
  }

  coverage(): ExpertCoverage {
    const { numExperts } = this.options;
    const placement = [...this.placement].map(([url, experts]) => ({ url, experts }));
    if (placement.length === 0) return { description: this.options.description, covered: true };
    const live = placement.filter((w) => !this.gone.has(w.url));
    const description = this.describe(live);
    const held = new Array<boolean>(numExperts).fill(false);
    for (const w of live) for (const e of w.experts) held[e] = true;
    const missing = held.flatMap((h, e) => (h ? [] : [e]));
    if (missing.length === 0) return { description, covered: true };
    // Only the departures that took a missing expert with them explain the gap.
    const lost = new Set(missing);
    // Members whose connection dropped first, then departures, the latest first.
    const recency = new Map([...this.departed].map((url, i) => [url, i]));
    const last = (url: string) => recency.get(url) ?? Number.MAX_SAFE_INTEGER;
    const departed = placement
      .filter((w) => this.gone.has(w.url) && w.experts.some((e) => lost.has(e)))
      .sort((a, b) => last(b.url) - last(a.url));
    // The first few, then a count: a registry can take thousands of workers away at once.
    const named = departed.slice(0, DEPARTURES_NAMED).flatMap((w) => this.gone.get(w.url)!);
    const more = departed.length - Math.min(departed.length, DEPARTURES_NAMED);
    const why =
      named.length === 0
        ? 'the connected workers do not hold them'
        : `${named.join('; ')}${more > 0 ? `; and ${counted(more, 'more worker')}` : ''}`;
    return {
      description,
      covered: false,
      missing,
      detail: `experts ${formatExpertSet(missing)} have no live worker: ${why}`,
    };
  }

  /**
   * The start-up description with its worker list replaced by the live workers and what each holds
   * now (joins, leaves and `kmoe cluster rebalance` change both).
   */
  private describe(live: readonly { url: string; experts: readonly number[] }[]): string {
    const d = this.options.description;
    // The start-up list ends at the last "), ": a URL holds no space (a quoted one shows it
    // escaped), but may hold ")", which a pattern up to the first ")" cut short.
    const end = d.lastIndexOf('), ');
    if (!d.startsWith(REMOTE) || end < 0) return d;
    return `${REMOTE}${counted(live.length, 'worker')} (${describeWorkers(live)}${d.slice(end)}`;
  }

  /** Stops pending timers (shutdown). */
  close(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** A worker left the membership: gone, and remembered among the latest departures only. */
  private left(url: string, reason: string): void {
    this.lost(url, reason);
    this.departed.delete(url);
    this.departed.add(url);
    if (this.departed.size <= MAX_REMEMBERED_DEPARTURES) return;
    const oldest = this.departed.values().next().value!;
    this.departed.delete(oldest);
    this.placement.delete(oldest);
    this.gone.delete(oldest);
    const t = this.timers.get(oldest);
    if (t) clearTimeout(t);
    this.timers.delete(oldest);
  }

  private dropped(e: WorkerDown): void {
    // A departure already forgotten (or a URL never taken in): nothing of it is kept.
    if (!this.placement.has(e.url)) return;
    const reason = `worker ${e.url} ${e.reason}`;
    if (!this.options.reportsExits) {
      this.lost(e.url, reason);
      return;
    }
    if (this.gone.has(e.url) || this.timers.has(e.url)) return;
    const timer = setTimeout(() => {
      this.timers.delete(e.url);
      this.lost(e.url, reason);
    }, this.options.exitGraceMs ?? DEFAULT_EXIT_GRACE_MS);
    timer.unref();
    this.timers.set(e.url, timer);
  }

  private lost(url: string, reason: string): void {
    const t = this.timers.get(url);
    if (t) {
      clearTimeout(t);
      this.timers.delete(url);
    }
    const reasons = this.gone.get(url);
    if (reasons) reasons.push(reason);
    else this.gone.set(url, [reason]);
  }
}
