// Membership changes reaching the engine: a worker that joins while the engine runs
// (EngineClient.joinWorker, what `kmoe serve` does on Membership.onJoin) is connected and routed to
// from the next step, and restores experts whose only holder died; a worker that leaves
// (leaveWorker) gets no more work. Real worker processes, fp32 wire: logits within 1e-5 relative
// of the same step before the change (same expert weights, fp32 sums in another grouping).

import { describe, expect, it } from 'vitest';
import { EngineClient } from '../../../coordinator/engine/engine-client.js';
import { MODEL_DIR, referenceCases } from '../../helpers/paths.js';
import { relativeError } from '../../helpers/relative-error.js';
import { startWorker } from '../../helpers/worker-process.js';

const settings = { device: 'cpu' as const, threads: 1, expertWeights: 'fp32' as const };

describe('workers joining and leaving a running engine', () => {
  it('routes to a joined worker, restores lost experts with it, and stops routing to one that left', async () => {
    const [a, b] = await Promise.all([startWorker('0-3'), startWorker('4-7')]);
    const engine = await EngineClient.start({
      modelDir: MODEL_DIR,
      settings,
      experts: { kind: 'remote', workers: [a.url, b.url], wireDtype: 'fp32', timeoutMs: 5000 },
    });
    const d = await startWorker('4-7');
    const tokens = referenceCases()[0]!.ids.slice(0, 16);
    let n = 0;
    const step = async () => {
      const seqId = `s${n++}`;
      const r = await engine.step([{ seqId, tokens }]);
      await engine.release([seqId]);
      return r.logits;
    };
    try {
      const before = await step();
      b.child.kill('SIGKILL');
      await b.stop();
      await expect(step()).rejects.toThrow(/experts [4-7][-,4-7]* have no live worker/);

      expect(await engine.joinWorker(d.url)).toEqual({ url: d.url, experts: [4, 5, 6, 7] });
      expect(relativeError(await step(), before)).toBeLessThan(1e-5);
      const stats = await engine.dispatchStats(true);
      expect(stats!.workers.map((w) => w.url)).toEqual([a.url, b.url, d.url]);

      // d leaves: nothing else holds 4-7, so the next step fails naming them, without touching d.
      // The error names b, which failed, not d, which left (it named every slot not live).
      expect(await engine.leaveWorker(d.url)).toBe(true);
      await expect(step()).rejects.toThrow(
        new RegExp(`experts [4-7][-,4-7]* have no live worker \\(failed: ${b.url}\\)$`),
      );
      // ...and joins again: served again.
      await engine.joinWorker(d.url);
      expect(relativeError(await step(), before)).toBeLessThan(1e-5);
    } finally {
      await engine.close();
      await Promise.all([a.stop(), b.stop(), d.stop()]);
    }
  });
});
