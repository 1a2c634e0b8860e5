// Which failed connection attempts keep a reconnect's rank, on real attempts and a real event loop:
// a refusal seen late because this loop was busy is still quick (LoopLateness excuses the delay);
// a peer that takes its time while the loop idles is not. retry-starvation.test.ts has the
// scenario (a worker restarted behind 40 silent records); whether a busy loop cost the reconnect
// there depended on where the retry queue stood, so the rule is checked here.

import { afterAll, describe, expect, it } from 'vitest';
import { LoopLateness } from '../../../coordinator/cluster/loop-lateness.js';
import { quickFailure } from '../../../coordinator/cluster/quick-failure.js';
import { WorkerConnection } from '../../../coordinator/cluster/worker-connection.js';
import { LoopbackListeners } from '../../helpers/loopback-listeners.js';
import { restartablePort } from '../../helpers/ports.js';

const BOUND = 3000;
const listeners = new LoopbackListeners();

afterAll(() => listeners.close());

function busy(ms: number): void {
  const t0 = performance.now();
  while (performance.now() - t0 < ms);
}

/**
 * A handshake with `url` that fails, timed as the backend times it: elapsed ms and the loop's
 * lateness meanwhile. `meanwhile` runs right after the attempt starts.
 */
async function failedAttempt(url: string, meanwhile: () => void = () => {}) {
  const lateness = new LoopLateness();
  const watch = lateness.observe();
  const started = performance.now();
  const attempt = WorkerConnection.connect(url, {
    fingerprint: 'any',
    wire: 'fp32',
    model: { numLayers: 4, numExperts: 8, hidden: 256 },
    handshakeTimeoutMs: BOUND,
    client: 'quick-failure test',
  });
  meanwhile();
  const err = await attempt.then(
    () => {
      throw new Error('the handshake succeeded');
    },
    (e: unknown) => e,
  );
  const result = { err, elapsedMs: performance.now() - started, latenessMs: watch.lateness() };
  watch.end();
  return result;
}

describe('quickFailure', () => {
  it('a refusal seen 300 ms late because this loop was busy is quick', async () => {
    const r = await failedAttempt(`ws://127.0.0.1:${await restartablePort()}`, () => busy(300));
    expect(String(r.err)).toMatch(/ECONNREFUSED/);
    expect(r.elapsedMs).toBeGreaterThanOrEqual(300);
    expect(r.latenessMs).toBeGreaterThanOrEqual(250);
    expect(quickFailure(r.elapsedMs, r.latenessMs, BOUND)).toBe(true);
    // Timed alone (the rule before), it lost the rank.
    expect(quickFailure(r.elapsedMs, 0, BOUND)).toBe(false);
  });

  it('a refusal seen at once is quick', async () => {
    const r = await failedAttempt(`ws://127.0.0.1:${await restartablePort()}`);
    expect(quickFailure(r.elapsedMs, r.latenessMs, BOUND)).toBe(true);
  });

  it('a peer that accepts and closes 600 ms later, while this loop idles, is not quick', async () => {
    const port = await restartablePort();
    await listeners.silent(port, (s) => setTimeout(() => s.destroy(), 600));
    const r = await failedAttempt(`ws://127.0.0.1:${port}`);
    expect(r.elapsedMs).toBeGreaterThanOrEqual(590);
    expect(quickFailure(r.elapsedMs, r.latenessMs, BOUND)).toBe(false);
  });
});

describe('LoopLateness', () => {
  it('reports the longest stretch the loop was late since an observation began, and only since', async () => {
    const lateness = new LoopLateness();
    const first = lateness.observe();
    busy(400);
    await new Promise((r) => setTimeout(r, 100));
    expect(first.lateness()).toBeGreaterThanOrEqual(350);
    // A later observation does not inherit the earlier stretch.
    const second = lateness.observe();
    await new Promise((r) => setTimeout(r, 100));
    expect(second.lateness()).toBeLessThan(300);
    first.end();
    second.end();
  });
});
