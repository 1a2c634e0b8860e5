// EngineClient's worker events (drops, connections) are replayed to listeners added late, until
// the owner says every listener is in: then none are kept, so a long-running server does not hold
// every join, leave and reconnect it ever saw (a hostile review of slot pruning found 400 events
// kept after 200 join/leave cycles, and one more per reconnect for ever).

import { describe, expect, it } from 'vitest';
import { EngineClient } from '../../../coordinator/engine/engine-client.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { startWorker } from '../../helpers/worker-process.js';

const settings = { device: 'cpu' as const, threads: 1, expertWeights: 'fp32' as const };
const CYCLES = 20;

describe('worker events of a long-running engine', () => {
  it('reach the listeners added before forgetPastWorkerEvents, are not kept, and a later listener is refused', async () => {
    const [a, d] = await Promise.all([startWorker('0-7'), startWorker('0-7')]);
    const engine = await EngineClient.start({
      modelDir: MODEL_DIR,
      settings,
      experts: { kind: 'remote', workers: [a.url], wireDtype: 'fp32', timeoutMs: 5000 },
    });
    const ups: string[] = [];
    const downs: string[] = [];
    engine.onWorkerUp((e) => ups.push(e.url));
    engine.onWorkerDown((e) => downs.push(e.url));
    engine.forgetPastWorkerEvents();
    try {
      for (let i = 0; i < CYCLES; i++) {
        await engine.joinWorker(d.url);
        expect(await engine.leaveWorker(d.url, 'test: gone')).toBe(true);
      }
      await new Promise((r) => setTimeout(r, 200));
      expect(ups).toEqual(Array.from({ length: CYCLES }, () => d.url));
      expect(downs).toEqual(Array.from({ length: CYCLES }, () => d.url));
      // Nothing is kept for listeners still to come ...
      const feeds = engine as unknown as { up: { seen: unknown }; down: { seen: unknown } };
      expect([feeds.up.seen, feeds.down.seen]).toEqual([undefined, undefined]);
      // ... so adding one now would miss events without knowing: refused.
      expect(() => engine.onWorkerUp(() => {})).toThrow(/before EngineClient.forgetPastWorkerEvents/);
    } finally {
      await engine.close();
      await Promise.all([a.stop(), d.stop()]);
    }
  }, 120_000);
});
