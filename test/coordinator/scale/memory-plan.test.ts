// kmoe plan's figures against hand-computed ones for the real Mixtral 8x22B and 8x7B configs.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { PlanError } from '../../../coordinator/scale/errors.js';
import {
  modelShape,
  type PlanRequest,
  parseByteSize,
  planMemory,
  WEIGHT_BYTES,
} from '../../../coordinator/scale/memory-plan.js';
import { readPlanModel } from '../../../coordinator/scale/plan-input.js';
import { presetConfig } from '../../../coordinator/scale/presets.js';
import { writeSyntheticCheckpoint } from '../../../coordinator/scale/synth.js';
import { parseModelConfig } from '../../../shared/model/config.js';
import { MODEL_DIR } from '../../helpers/paths.js';

const GiB = 2 ** 30;
const X22 = parseModelConfig(presetConfig('mixtral-8x22b'), 'mixtral-8x22b');
const X7 = parseModelConfig(presetConfig('mixtral-8x7b'), 'mixtral-8x7b');

describe('model shape from the config', () => {
  it('counts Mixtral 8x22B by hand', () => {
    // expert: w1, w3 16384 x 6144 and w2 6144 x 16384 = 3 x 6144 x 16384 = 301,989,888
    // dense per layer: q, o 6144 x 6144 = 2 x 37,748,736; k, v (8 x 128) x 6144 = 2 x 6,291,456;
    //   2 norms x 6144; gate 8 x 6144 = 49,152 -> 88,141,824; x 56 layers = 4,935,942,144
    // globals: embed + lm_head 2 x 32768 x 6144 = 402,653,184, final norm 6144
    // dense = 5,338,601,472; all = dense + 301,989,888 x 8 x 56 = 140,630,071,296 (the "141B")
    // KV values per token: 2 x 56 layers x 8 heads x 128 = 114,688
    const s = modelShape(X22);
    expect(s.paramsPerExpertLayer).toBe(301_989_888);
    expect(s.denseParams).toBe(5_338_601_472);
    expect(s.denseParams + s.paramsPerExpertLayer * 8 * 56).toBe(140_630_071_296);
    expect(s.kvValuesPerToken).toBe(114_688);
  });

  it('counts Mixtral 8x7B by hand', () => {
    // expert: 3 x 4096 x 14336 = 176,160,768
    // dense per layer: 2 x 4096^2 + 2 x 1024 x 4096 + 2 x 4096 + 8 x 4096 = 41,984,000; x 32 = 1,343,488,000
    // globals: 2 x 32000 x 4096 + 4096 = 262,148,096 -> dense 1,605,636,096
    // all = 1,605,636,096 + 176,160,768 x 256 = 46,702,792,704 (the "46.7B")
    // KV values per token: 2 x 32 x 8 x 128 = 65,536
    const s = modelShape(X7);
    expect(s.paramsPerExpertLayer).toBe(176_160_768);
    expect(s.denseParams).toBe(1_605_636_096);
    expect(s.denseParams + s.paramsPerExpertLayer * 8 * 32).toBe(46_702_792_704);
    expect(s.kvValuesPerToken).toBe(65_536);
  });

  // Every tiny family (tensor specs from the family, not Mixtral's): parameters as each model's
  // README states them, one routed expert = 3 x hidden 64 x its FFN 32 per MoE layer, shared experts
  // and dense layers on the coordinator, KV rows of the family's widths.
  it.each([
    // model, MoE layers, total parameters, KV values per token (layers x (key + value widths))
    ['tiny-qwen2-moe', 2, 2, 1_343_680, 2 * (32 + 32)],
    ['tiny-qwen3-moe', 3, 3, 1_194_624, 3 * (64 + 64)],
    ['tiny-olmoe', 2, 2, 1_344_000, 2 * (32 + 32)],
    // MLA: keys 4 heads x (nope 32 + rope 16) = 192, values 4 x 24 = 96; layer 0 dense.
    ['tiny-deepseek-v3', 3, 2, 846_512 + 2 * 16, 3 * (192 + 96)],
  ] as const)('counts %s from its family', async (name, layers, moeLayers, params, kv) => {
    const model = await readPlanModel(path.join(MODEL_DIR, '..', name));
    const s = model.shape;
    expect(s.numLayers).toBe(layers);
    expect(s.numMoeLayers).toBe(moeLayers);
    expect(s.paramsPerExpertLayer).toBe(3 * 64 * 32);
    expect(s.denseParams + s.paramsPerExpertLayer * s.numMoeLayers * s.numExperts).toBe(params);
    expect(s.kvValuesPerToken).toBe(kv);
    const plan = planMemory({ ...base22, shape: s, workers: 2, contexts: [64], batches: [1] });
    // One expert spans the MoE layers only.
    expect(plan.bytesPerExpert).toBe(3 * 64 * 32 * moeLayers * WEIGHT_BYTES[plan.expertFormat]);
    expect(plan.workers.map((w) => w.experts.length)).toEqual([s.numExperts / 2, s.numExperts / 2]);
  });

  it('prices weight formats with their block scales', () => {
    expect(WEIGHT_BYTES).toEqual({ fp32: 4, bf16: 2, fp16: 2, int8: 1.125, int4: 0.625 });
  });
});

// The published config.json files in test/fixtures/configs (sources in its README): kmoe plan's
// size summary, parameters and bytes per expert, against hand-computed figures (the derivations
// are in test/shared/families/published-configs.test.ts).
describe('published configs', () => {
  const CONFIGS = path.join(import.meta.dirname, '..', '..', 'fixtures', 'configs');
  it.each([
    // file, layers, MoE layers, experts, params per expert per layer, dense params, KV values per
    // token, bytes per expert in bf16 (params per expert per layer x MoE layers x 2)
    // Mixtral 8x7B: 3 x 4096 x 14336; KV 2 x 32 layers x 8 heads x 128; 176,160,768 x 32 x 2.
    ['Mixtral-8x7B-Instruct-v0.1', 32, 32, 8, 176_160_768, 1_605_636_096, 65_536, 11_274_289_152],
    // OLMoE: 3 x 2048 x 1024; KV 16 layers x (2048 + 2048); 6,291,456 x 16 x 2.
    ['OLMoE-1B-7B-0924', 16, 16, 64, 6_291_456, 476_710_912, 65_536, 201_326_592],
    // Qwen1.5-MoE: 3 x 2048 x 1408; the shared expert is dense (coordinator); KV 24 x 4096;
    // 8,650,752 x 24 x 2.
    ['Qwen1.5-MoE-A2.7B-Chat', 24, 24, 60, 8_650_752, 1_858_701_312, 98_304, 415_236_096],
  ] as const)('%s', async (name, layers, moeLayers, experts, perExpertLayer, dense, kv, bytes) => {
    const file = path.join(CONFIGS, `${name}.json`);
    const config = parseModelConfig(JSON.parse(await readFile(file, 'utf8')), file);
    const s = modelShape(config);
    expect([s.numLayers, s.numMoeLayers, s.numExperts]).toEqual([layers, moeLayers, experts]);
    expect(s.paramsPerExpertLayer).toBe(perExpertLayer);
    expect(s.denseParams).toBe(dense);
    expect(s.kvValuesPerToken).toBe(kv);
    const plan = planMemory({ ...base22, shape: s, contexts: [4096], batches: [1] });
    expect(plan.bytesPerExpert).toBe(bytes);
    // 4 workers share the experts evenly; the coordinator holds the dense weights in bf16.
    expect(plan.workers.map((w) => w.experts.length)).toEqual(Array(4).fill(experts / 4));
    expect(plan.coordinator.denseBytes).toBe(dense * 2);
  });
});

const base22: PlanRequest = {
  shape: modelShape(X22),
  workers: 4,
  device: 'cuda',
  expertWeights: 'bf16',
  denseWeights: 'bf16',
  kvDType: 'bf16',
  contexts: [65536, 4096],
  batches: [1, 8],
  memoryBytes: 80 * GiB,
  reserveBytes: 0,
};

describe('planMemory', () => {
  it('8x22B on 4 x 80 GiB GPUs, bf16 experts: 2 experts per worker fit', () => {
    const plan = planMemory(base22);
    // one expert, 56 layers, bf16: 301,989,888 x 56 x 2 = 33,822,867,456 B; 2 per worker = 67,645,734,912
    expect(plan.bytesPerExpert).toBe(33_822_867_456);
    expect(plan.workers.map((w) => [w.experts, w.totalBytes, w.fits])).toEqual([
      [[0, 1], 67_645_734_912, true],
      [[2, 3], 67_645_734_912, true],
      [[4, 5], 67_645_734_912, true],
      [[6, 7], 67_645_734_912, true],
    ]);
    // 80 GiB = 85,899,345,920 B: floor(85,899,345,920 / 33,822,867,456) = 2 experts per device
    expect(plan.expertsPerDevice).toBe(2);
    // dense bf16: 5,338,601,472 x 2 = 10,677,202,944 B
    expect(plan.coordinator.denseBytes).toBe(10_677_202_944);
    // KV bf16 per token: 114,688 x 2 = 229,376 B
    //   65536 x 1: 15,032,385,536 -> total 25,709,588,480, fits
    //   65536 x 8: 120,259,084,288 -> total 130,936,287,232 > 80 GiB;
    //     longest context at batch 8: floor((85,899,345,920 - 10,677,202,944) / (229,376 x 8)) = 40,992
    //   4096 x 1: 939,524,096; 4096 x 8: 7,516,192,768
    expect(
      plan.coordinator.kv.map((k) => [k.context, k.batch, k.kvBytes, k.totalBytes, k.fits, k.maxContext]),
    ).toEqual([
      [65536, 1, 15_032_385_536, 25_709_588_480, true, 65536],
      [4096, 1, 939_524_096, 10_677_202_944 + 939_524_096, true, 65536],
      [65536, 8, 120_259_084_288, 130_936_287_232, false, 40_992],
      [4096, 8, 7_516_192_768, 10_677_202_944 + 7_516_192_768, true, 40_992],
    ]);
    expect(plan.fits).toBe(false);
    expect(plan.problems).toHaveLength(1);
    expect(plan.problems[0]).toMatch(/context 65536 x batch 8.*longest context that fits at batch 8: 40992/);
    expect(plan.fittingPlacement).toEqual([
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
    ]);
    // bf16 experts run on CUDA workers (issue 12): no planning-figure note; fp16 is still one.
    expect(plan.notes.join('\n')).not.toMatch(/planning figure/);
    expect(planMemory({ ...base22, expertWeights: 'fp16' }).notes.join('\n')).toMatch(
      /fp16 is a planning figure/,
    );
  });

  it('8x22B fp32 experts (widened, as kmoe does today) need 8 workers of 80 GiB', () => {
    const plan = planMemory({ ...base22, expertWeights: 'fp32', batches: [1], contexts: [4096] });
    // one expert fp32: 301,989,888 x 56 x 4 = 67,645,734,912 B; 2 per worker = 135,291,469,824 > 80 GiB
    expect(plan.bytesPerExpert).toBe(67_645_734_912);
    expect(plan.workers[0]!.totalBytes).toBe(135_291_469_824);
    expect(plan.workers.every((w) => w.fits === false)).toBe(true);
    expect(plan.expertsPerDevice).toBe(1);
    expect(plan.fittingPlacement).toEqual([[0], [1], [2], [3], [4], [5], [6], [7]]);
    expect(plan.problems.at(-1)).toMatch(/at most 1 expert .*8 workers are needed/);
  });

  it('8x22B weight-only int8 and int4 per expert', () => {
    // int8: 301,989,888 x 56 x 1.125 = 19,025,362,944 B; int4: x 0.625 = 10,569,646,080 B
    expect(planMemory({ ...base22, expertWeights: 'int8' }).bytesPerExpert).toBe(19_025_362_944);
    expect(planMemory({ ...base22, expertWeights: 'int4' }).bytesPerExpert).toBe(10_569_646_080);
  });

  it('8x22B bf16 on CPU is planned as fp32 and says why', () => {
    const plan = planMemory({ ...base22, device: 'cpu' });
    expect(plan.expertFormat).toBe('fp32');
    expect(plan.bytesPerExpert).toBe(67_645_734_912);
    expect(plan.notes.join('\n')).toMatch(/CPU provider computes MatMul in fp32/);
  });

  it('8x7B on 2 x 24 GiB CPU hosts, int8 experts, 1 GiB reserve: needs 3 workers', () => {
    const plan = planMemory({
      shape: modelShape(X7),
      workers: 2,
      device: 'cpu',
      expertWeights: 'int8',
      denseWeights: 'fp32',
      kvDType: 'fp32',
      contexts: [32768],
      batches: [1],
      memoryBytes: 24 * GiB,
      reserveBytes: GiB,
    });
    // one expert int8: 176,160,768 x 32 x 1.125 = 6,341,787,648 B
    // 4 per worker + 1 GiB = 25,367,150,592 + 1,073,741,824 = 26,440,892,416 > 24 GiB (25,769,803,776)
    // per device: floor((25,769,803,776 - 1,073,741,824) / 6,341,787,648) = 3 -> ceil(8 / 3) = 3 workers
    expect(plan.bytesPerExpert).toBe(6_341_787_648);
    expect(plan.workers.map((w) => [w.totalBytes, w.fits])).toEqual([
      [26_440_892_416, false],
      [26_440_892_416, false],
    ]);
    expect(plan.expertsPerDevice).toBe(3);
    expect(plan.fittingPlacement).toEqual([
      [0, 1, 2],
      [3, 4, 5],
      [6, 7],
    ]);
    // dense fp32 1,605,636,096 x 4 = 6,422,544,384; KV fp32 65,536 x 4 x 32768 = 8,589,934,592;
    // total with reserve 16,086,220,800 <= 24 GiB
    expect(plan.coordinator.denseBytes).toBe(6_422_544_384);
    expect(plan.coordinator.kv[0]).toMatchObject({
      kvBytes: 8_589_934_592,
      totalBytes: 16_086_220_800,
      fits: true,
    });
    expect(plan.notes).toEqual([]);
  });

  it('takes an explicit placement and rejects one that leaves experts out', () => {
    const plan = planMemory({
      ...base22,
      placement: [
        [0, 1, 2],
        [3, 4, 5, 6, 7],
      ],
    });
    // 3 x 33,822,867,456 = 101,468,602,368 > 80 GiB; 5 x = 169,114,337,280
    expect(plan.workers.map((w) => [w.totalBytes, w.fits])).toEqual([
      [101_468_602_368, false],
      [169_114_337_280, false],
    ]);
    expect(() =>
      planMemory({
        ...base22,
        placement: [
          [0, 1],
          [2, 3],
        ],
      }),
    ).toThrow(PlanError);
  });

  it('parses memory sizes', () => {
    expect(parseByteSize('80GiB')).toBe(80 * GiB);
    expect(parseByteSize('24 GB')).toBe(24e9);
    expect(parseByteSize('512MiB')).toBe(512 * 2 ** 20);
    expect(parseByteSize('1000')).toBe(1000);
    expect(() => parseByteSize('80 gigs')).toThrow(PlanError);
  });
});

describe('readPlanModel', () => {
  it('reads the demo checkpoint from its index alone', async () => {
    const m = await readPlanModel(MODEL_DIR);
    // tiny-mixtral: 15,476,992 params in bf16 = 30,953,984 B, as its index's metadata.total_size says
    expect(m.storedBytes).toBe(30_953_984);
    expect(m.shape.denseParams + m.shape.paramsPerExpertLayer * 8 * 4).toBe(15_476_992);
    expect(m.notes).toEqual([]);
  });

  it('reads a sparse 8x22B synthetic checkpoint and refuses an index missing tensors', async () => {
    const dir = await mkdtemp(path.join(tmpdir(), 'kmoe-plan-'));
    try {
      const out = path.join(dir, 'x22');
      await writeSyntheticCheckpoint({
        config: presetConfig('mixtral-8x22b', 2),
        outDir: out,
        seed: 0,
        sparse: true,
      });
      const m = await readPlanModel(out);
      expect(m.shape.paramsPerExpertLayer).toBe(301_989_888);
      // 2 layers: (402,659,328 + 2 x 88,141,824 + 2 x 8 x 301,989,888) x 2 B
      expect(m.storedBytes).toBe((402_659_328 + 2 * 88_141_824 + 16 * 301_989_888) * 2);
      // 3 globals + 2 layers x (7 layer tensors + 8 experts x 3)
      await writeFile(path.join(out, 'model.safetensors.index.json'), JSON.stringify({ weight_map: {} }));
      await expect(readPlanModel(out)).rejects.toThrow(/lacks 65 tensors/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
