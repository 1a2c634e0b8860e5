// bench expert's arithmetic and bookkeeping (no speed is asserted: figures live in the benchmark).

import { describe, expect, it } from 'vitest';
import {
  expertFlops,
  expertWeightBytes,
  runExpertBench,
  synthExpertWeights,
} from '../../../coordinator/scale/expert-bench.js';
import { synthValues } from '../../../coordinator/scale/prng.js';
import { bf16ToF32 } from '../../../shared/dtype.js';

describe('bench expert', () => {
  it('counts 8x22B expert FLOPs and weight bytes by hand', () => {
    const x22 = { hidden: 6144, ffn: 16384 };
    // 3 matmuls of 2 x 6144 x 16384 per token = 603,979,776 FLOP
    expect(expertFlops(x22, 1)).toBe(603_979_776);
    expect(expertFlops(x22, 512)).toBe(512 * 603_979_776);
    // 3 x 6144 x 16384 = 301,989,888 weights: fp32 1,207,959,552 B; int8 (1 + 4/32 B) 339,738,624 B
    expect(expertWeightBytes(x22, 'fp32')).toBe(1_207_959_552);
    expect(expertWeightBytes(x22, 'int8')).toBe(339_738_624);
  });

  it('uses the weights kmoe synth writes for expert 0 of layer 0', () => {
    const w = synthExpertWeights({ hidden: 32, ffn: 64 }, 5);
    expect(w.w2.shape).toEqual([32, 64]);
    expect(w.w2.data).toEqual(
      bf16ToF32(synthValues(5, 'model.layers.0.block_sparse_moe.experts.0.w2.weight', 32 * 64)),
    );
  });

  it('reports every point with figures derived from its own timing', async () => {
    const r = await runExpertBench({
      shape: { hidden: 64, ffn: 128 },
      formats: ['fp32', 'int8'],
      batches: [1, 8],
      settings: { device: 'cpu', threads: 1 },
      seed: 0,
      secondsPerPoint: 0.01,
      peakGemm: { m: 32, k: 64, n: 64 },
      bandwidthBytes: 1 << 20,
    });
    expect(r.points.map((x) => [x.format, x.batch])).toEqual([
      ['fp32', 1],
      ['fp32', 8],
      ['int8', 1],
      ['int8', 8],
    ]);
    for (const x of r.points) {
      expect(x.seconds).toBeGreaterThan(0);
      expect(x.tokensPerSecond).toBeCloseTo(x.batch / x.seconds, 6);
      expect(x.gflopPerSecond).toBeCloseTo((6 * x.batch * 64 * 128) / x.seconds / 1e9, 6);
      expect(x.fractionOfPeak).toBeCloseTo(x.gflopPerSecond / r.peak.gflopPerSecond, 9);
      expect(x.fractionOfBandwidth).toBeCloseTo(x.weightGBPerSecond / r.bandwidth.gbPerSecond, 9);
    }
    expect(r.bandwidth.bytes).toBe(1 << 20);
  });
});
