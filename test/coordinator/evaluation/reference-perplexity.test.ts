// Every (corpus, routing policy) pair of the independent reference: perplexity within 0.1% and
// average experts per token (overall and per layer) within 0.001. Both sides compute in float32;
// the only differences are summation order (~1e-7 relative in perplexity) and tokens whose router
// entropy or probability mass sits within float32 rounding of a threshold (a handful of the ~10^6
// token-layer decisions, far below 0.001 in avg K).

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineClient } from '../../../coordinator/engine/engine-client.js';
import { evaluatePerplexity } from '../../../coordinator/evaluation/perplexity.js';
import { readU16Ids } from '../../../shared/data/token-ids.js';
import { EVAL_DIR, MODEL_DIR, perplexityReferences } from '../../helpers/paths.js';

let engine: EngineClient;
const corpora = new Map<string, Uint16Array>();

beforeAll(async () => {
  engine = await EngineClient.start({
    modelDir: MODEL_DIR,
    settings: { device: 'cpu', threads: 2, expertWeights: 'fp32' },
  });
  for (const r of perplexityReferences()) {
    if (!corpora.has(r.file)) corpora.set(r.file, await readU16Ids(`${EVAL_DIR}/${r.file}`));
  }
});

afterAll(async () => {
  await engine?.close();
});

describe('perplexity and average K against the reference', () => {
  it.each(perplexityReferences().map((r) => [`${r.file} ${r.routing}`, r] as const))(
    '%s',
    async (_name, ref) => {
      const report = await evaluatePerplexity(engine, corpora.get(ref.file)!, { routing: ref.routing });
      expect(report.tokens).toBe(ref.tokensScored);
      expect(Math.abs(report.perplexity / ref.ppl - 1)).toBeLessThan(1e-3);
      expect(Math.abs(report.avgK - ref.avgK)).toBeLessThan(1e-3);
      report.avgKPerLayer.forEach((k, layer) => {
        expect(Math.abs(k - ref.avgKPerLayer[String(layer)]!)).toBeLessThan(1e-3);
      });
      expect(report.savingVsNative).toBeCloseTo(1 - ref.avgK / 2, 3);
    },
  );
});
