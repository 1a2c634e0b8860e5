// ClusterHealth: coverage from the placement and the workers lost so far, fed by the membership
// (process exits) and by dropped connections; replicas keep experts covered.

import { afterEach, describe, expect, it, vi } from 'vitest';
import { ClusterHealth } from '../../../coordinator/cluster/cluster-health.js';
import { StaticMembership } from '../../../coordinator/cluster/membership.js';
import type { WorkerDown, WorkerUp } from '../../../coordinator/cluster/remote-expert-backend.js';

const A = 'ws://127.0.0.1:4001';
const B = 'ws://127.0.0.1:4002';
const C = 'ws://127.0.0.1:4003';

function setup(
  reportsExits: boolean,
  placement = [
    { url: A, experts: [0, 1, 2, 3] },
    { url: B, experts: [4, 5, 6, 7] },
  ],
  description = 'remote experts on 2 workers',
) {
  const membership = new StaticMembership(placement.map((w) => w.url));
  let drop: (e: WorkerDown) => void = () => {};
  let up: (e: WorkerUp) => void = () => {};
  const health = ClusterHealth.watch({
    description,
    numExperts: 8,
    placement,
    membership,
    connections: (listener) => {
      drop = listener;
    },
    connectionsUp: (listener) => {
      up = listener;
    },
    reportsExits,
    exitGraceMs: 1000,
  });
  return { health, membership, drop: (e: WorkerDown) => drop(e), up: (e: WorkerUp) => up(e) };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('ClusterHealth', () => {
  it('is covered while every worker is up, and covered without workers (in-process experts)', () => {
    expect(setup(false).health.coverage()).toEqual({
      description: 'remote experts on 2 workers',
      covered: true,
    });
    expect(setup(false, []).health.coverage().covered).toBe(true);
  });

  it('names the experts of a remote worker whose connection dropped, at once', () => {
    const { health, drop } = setup(false);
    drop({ url: B, reason: 'closed the connection (code 1006)', drained: false });
    expect(health.coverage()).toEqual({
      description: 'remote experts on 2 workers',
      covered: false,
      missing: [4, 5, 6, 7],
      detail: `experts 4-7 have no live worker: worker ${B} closed the connection (code 1006)`,
    });
  });

  it('counts a reconnected or joined worker with the experts it holds now', () => {
    const { health, drop, up } = setup(false);
    drop({ url: B, reason: 'closed the connection (code 1006)', drained: false });
    // B came back at the same URL with fewer experts: 6-7 are still missing.
    up({ url: B, experts: [4, 5], why: 'connected' });
    expect(health.coverage()).toMatchObject({ covered: false, missing: [6, 7] });
    up({ url: C, experts: [6, 7], why: 'connected' });
    expect(health.coverage()).toEqual({ description: 'remote experts on 2 workers', covered: true });
  });

  it('keeps replicated experts covered and names only the orphans', () => {
    const { health, drop } = setup(false, [
      { url: A, experts: [0, 1, 2, 3, 4] },
      { url: B, experts: [3, 4, 5, 6, 7] },
      { url: C, experts: [7] },
    ]);
    drop({ url: B, reason: 'closed the connection', drained: false });
    const c = health.coverage();
    expect(c.covered).toBe(false);
    expect(c.missing).toEqual([5, 6]);
    drop({ url: C, reason: 'closed the connection', drained: false });
    expect(health.coverage().missing).toEqual([5, 6, 7]);
  });

  it('prefers the exit of a process it started to the dropped connection, within the grace period', () => {
    vi.useFakeTimers();
    const { health, membership, drop } = setup(true);
    drop({ url: A, reason: 'closed the connection (code 1006)', drained: false });
    expect(health.coverage().covered).toBe(true);
    membership.leave({ url: A, reason: `worker 0 (${A}) exited (SIGKILL)` });
    expect(health.coverage()).toMatchObject({
      covered: false,
      missing: [0, 1, 2, 3],
      detail: `experts 0-3 have no live worker: worker 0 (${A}) exited (SIGKILL)`,
    });
  });

  it('counts a dropped connection of a process it started once the grace period passes', () => {
    vi.useFakeTimers();
    const { health, drop } = setup(true);
    drop({ url: A, reason: 'closed the connection (code 1006)', drained: false });
    vi.advanceTimersByTime(999);
    expect(health.coverage().covered).toBe(true);
    vi.advanceTimersByTime(1);
    expect(health.coverage()).toMatchObject({ covered: false, missing: [0, 1, 2, 3] });
  });

  it('describes the live workers and what they hold now, and names only the departures that explain a gap', () => {
    const start = `remote experts on 2 workers (${A}: 0-3; ${B}: 4-7), bf16 wire, k-aware balancing`;
    const { health, drop, up } = setup(false, undefined, start);
    expect(health.coverage().description).toBe(start);
    // A rebalance: A gives up 3 and takes 4; C joins with 3.
    up({ url: A, experts: [0, 1, 2, 4], why: 'holdings' });
    up({ url: C, experts: [3], why: 'connected' });
    expect(health.coverage()).toEqual({
      description: `remote experts on 3 workers (${A}: 0-2,4; ${B}: 4-7; ${C}: 3), bf16 wire, k-aware balancing`,
      covered: true,
    });
    // C leaves: only its departure explains the missing expert, not B's old one.
    drop({ url: B, reason: 'closed the connection (code 1006)', drained: false });
    up({ url: B, experts: [4, 5, 6, 7], why: 'connected' });
    drop({ url: C, reason: 'closed the connection (code 1006)', drained: false });
    const c = health.coverage();
    expect(c).toMatchObject({ covered: false, missing: [3] });
    expect(c.description).toBe(
      `remote experts on 2 workers (${A}: 0-2,4; ${B}: 4-7), bf16 wire, k-aware balancing`,
    );
    if (c.covered) throw new Error('expected a gap');
    expect(c.detail).toBe(`experts 3 have no live worker: worker ${C} closed the connection (code 1006)`);
  });
});

describe('ClusterHealth under membership churn', () => {
  it('remembers the latest 64 departures: a gap is explained by the latest first, the rest counted', () => {
    const { health, membership, up } = setup(false);
    // 20,000 workers holding B's experts join and leave (a registry's churn); each is forgotten
    // once 64 later departures are remembered.
    for (let i = 0; i < 20_000; i++) {
      const url = `ws://127.0.0.1:5000/churn-${i}`;
      up({ url, experts: [4, 5, 6, 7], why: 'connected' });
      membership.leave({ url, reason: `worker churn-${i} deregistered` });
    }
    expect(health.coverage().covered).toBe(true);
    membership.leave({ url: B, reason: 'worker b heartbeat expired', expired: true });
    // Before: every one of the 20,000 departures was kept and walked at each /ready, and the detail
    // counted them all ("and 19998 more workers") after the oldest.
    expect(health.coverage().detail).toBe(
      'experts 4-7 have no live worker: worker b heartbeat expired; worker churn-19999 deregistered; worker churn-19998 deregistered; and 61 more workers',
    );
  });

  it('a departed worker that joins again is covered and no longer counted among departures', () => {
    const { health, membership, up } = setup(false);
    membership.leave({ url: B, reason: 'worker b deregistered' });
    expect(health.coverage().covered).toBe(false);
    up({ url: B, experts: [4, 5, 6, 7], why: 'connected' });
    expect(health.coverage().covered).toBe(true);
  });
});
