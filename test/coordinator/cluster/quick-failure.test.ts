// Which failed connection attempts keep a reconnect's rank, on the errors real attempts give: a
// refusal (nothing listens: a worker restarting) stays quick when a busy event loop sees it late,
// up to half a bound; a peer that accepts and then fails the handshake is quick only when it is.
// retry-starvation.test.ts has the scenario (a worker restarted behind 40 silent records); whether
// a busy loop cost the reconnect there depended on where the retry queue stood, so the rule is
// checked here.

import { afterAll, describe, expect, it } from 'vitest';
import { quickFailure } from '../../../coordinator/cluster/quick-failure.js';
import { WorkerConnection } from '../../../coordinator/cluster/worker-connection.js';
import { LoopbackListeners } from '../../helpers/loopback-listeners.js';
import { restartablePort } from '../../helpers/ports.js';

const BOUND = 3000;
const listeners = new LoopbackListeners();

afterAll(() => listeners.close());

/** The error of a handshake with the worker at `url`. */
async function failureOf(url: string): Promise<unknown> {
  return WorkerConnection.connect(url, {
    fingerprint: 'any',
    wire: 'fp32',
    model: { numLayers: 4, numExperts: 8, hidden: 256 },
    handshakeTimeoutMs: BOUND,
    client: 'quick-failure test',
  }).then(
    () => {
      throw new Error('the handshake succeeded');
    },
    (err: unknown) => err,
  );
}

describe('quickFailure', () => {
  it('a refusal keeps the rank when seen late, up to half a bound', async () => {
    const refused = await failureOf(`ws://127.0.0.1:${await restartablePort()}`);
    expect(String(refused)).toMatch(/ECONNREFUSED/);
    expect(quickFailure(refused, 5, BOUND)).toBe(true);
    // A coordinator busy 250 ms saw it 250 ms late: before, that lost the rank.
    expect(quickFailure(refused, 250, BOUND)).toBe(true);
    expect(quickFailure(refused, BOUND / 2 - 1, BOUND)).toBe(true);
    expect(quickFailure(refused, BOUND / 2, BOUND)).toBe(false);
  });

  it('a peer that accepts and then closes is quick only within a twentieth of the bound', async () => {
    const port = await restartablePort();
    await listeners.silent(port, (s) => s.destroy());
    const closed = await failureOf(`ws://127.0.0.1:${port}`);
    expect(String(closed)).not.toMatch(/ECONNREFUSED/);
    expect(quickFailure(closed, BOUND / 20 - 1, BOUND)).toBe(true);
    expect(quickFailure(closed, BOUND / 20, BOUND)).toBe(false);
    expect(quickFailure(closed, 250, BOUND)).toBe(false);
    // At most 250 ms, whatever the bound.
    expect(quickFailure(closed, 250, 60_000)).toBe(false);
    expect(quickFailure(closed, 249, 60_000)).toBe(true);
  });
});
