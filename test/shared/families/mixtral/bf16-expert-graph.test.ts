// bf16 expert weights (`--expert-weights bf16`, for --device cuda): the graph keeps the
// checkpoint's bf16 bits as its only weight initializers and its MatMuls read them directly (no
// widening Cast for constant folding to turn into fp32 weights). onnxruntime's CPU provider cannot
// run it (no bf16 MatMul: why kmoe refuses the format on CPU), so its wiring is checked on CPU
// through a copy with the same nodes whose bf16 tensors are widened, against a direct computation.

import protoPkg from 'onnx-proto';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bf16ToF32 } from '../../../../shared/dtype.js';
import { Checkpoint } from '../../../../shared/model/checkpoint.js';
import { ExpertHost } from '../../../../shared/onnx/expert-host.js';
import { ElemType } from '../../../../shared/onnx/graph-builder.js';
import { Session } from '../../../../shared/onnx/session.js';
import { MODEL_DIR } from '../../../helpers/paths.js';

const { onnx } = protoPkg;
const LAYER = 2;
const EXPERT = 5;

describe('bf16 expert graph (tiny-mixtral, a bf16 checkpoint)', () => {
  let ckpt: Checkpoint;
  let model: protoPkg.onnx.ModelProto;
  let H: number;
  let F: number;

  beforeAll(async () => {
    ckpt = await Checkpoint.open(MODEL_DIR);
    H = ckpt.config.hiddenSize;
    F = ckpt.config.intermediateSize;
    model = onnx.ModelProto.decode(await ckpt.family.expertGraph(ckpt, LAYER, EXPERT, 'bf16'));
  });
  afterAll(async () => {
    await ckpt?.close();
  });

  const stored = async (role: 'w1' | 'w2' | 'w3') => {
    const t = await ckpt.read(ckpt.family.tensorNames.expert(LAYER, EXPERT)[role]);
    expect(t.dtype).toBe('bfloat16');
    return t.data as Uint16Array;
  };
  const bits = (t: protoPkg.onnx.ITensorProto) => {
    const raw = new Uint8Array(t.rawData!);
    return new Uint16Array(raw.buffer, raw.byteOffset, raw.byteLength / 2);
  };

  it('holds the weights only as bf16 initializers: the checkpoint bits, transposed, 2 bytes each', async () => {
    const inits = new Map(model.graph!.initializer!.map((t) => [t.name!, t]));
    const weights = [...inits.values()].filter((t) => t.dataType !== ElemType.int64);
    expect(weights.map((t) => [t.name, t.dataType, t.dims!.map(Number)])).toEqual([
      ['w13', ElemType.bfloat16, [H, 2 * F]],
      ['w2', ElemType.bfloat16, [F, H]],
    ]);
    expect(weights.reduce((n, t) => n + t.rawData!.length, 0)).toBe(2 * 3 * H * F);
    const [w1, w2, w3] = [await stored('w1'), await stored('w2'), await stored('w3')];
    const w13 = bits(inits.get('w13')!);
    const w2t = bits(inits.get('w2')!);
    for (let h = 0; h < H; h++) {
      for (let f = 0; f < F; f++) {
        if (w13[h * 2 * F + f] !== w1[f * H + h] || w13[h * 2 * F + F + f] !== w3[f * H + h])
          throw new Error(`w13[${h}, ${f}] is not the checkpoint's w1/w3 bits`);
        if (w2t[f * H + h] !== w2[h * F + f])
          throw new Error(`w2t[${f}, ${h}] is not the checkpoint's w2 bits`);
      }
    }
  });

  it('feeds the bf16 initializers straight into the MatMuls, never through a Cast', () => {
    const nodes = model.graph!.node!;
    const matmuls = nodes.filter((n) => n.opType === 'MatMul');
    expect(matmuls.map((n) => n.input![1])).toEqual(['w13', 'w2']);
    for (const n of nodes.filter((n) => n.opType === 'Cast')) {
      expect(['w13', 'w2']).not.toContain(n.input![0]);
    }
    // Activations go to bf16 for each GEMM and back to fp32 after it: four Casts.
    expect(nodes.filter((n) => n.opType === 'Cast').map((n) => Number(n.attribute![0]!.i))).toEqual([
      ElemType.bfloat16,
      ElemType.float32,
      ElemType.bfloat16,
      ElemType.float32,
    ]);
  });

  it("does not load on onnxruntime's CPU provider, and kmoe refuses it there before trying", async () => {
    const bytes = onnx.ModelProto.encode(model).finish();
    expect(() =>
      Session.create('bf16 expert', 'expert', bytes, { device: 'cpu', threads: 1, expertWeights: 'bf16' }),
    ).toThrow(/Could not find an implementation for MatMul/);
    await expect(
      ExpertHost.create({
        dims: ckpt.family.graphDims(ckpt.config),
        numLayers: ckpt.config.numLayers,
        experts: [0],
        graph: (l, e, f) => ckpt.family.expertGraph(ckpt, l, e, f),
        settings: { device: 'cpu', threads: 1, expertWeights: 'bf16' },
      }),
    ).rejects.toMatchObject({ code: 'weight_format_device', details: { format: 'bf16', device: 'cpu' } });
  });

  it('computes the expert: the same nodes with the bf16 tensors widened match a direct computation', async () => {
    // Widening the two initializers and turning the bf16 Casts into fp32 ones keeps every node and
    // edge: what is checked is the wiring (transposes, split order, SiLU, routing weight).
    const copy = onnx.ModelProto.decode(onnx.ModelProto.encode(model).finish());
    for (const t of copy.graph!.initializer!) {
      if (t.dataType !== ElemType.bfloat16) continue;
      const f = bf16ToF32(bits(t));
      t.dataType = ElemType.float32;
      t.rawData = new Uint8Array(f.buffer);
    }
    for (const n of copy.graph!.node!) {
      if (n.opType === 'Cast' && Number(n.attribute![0]!.i) === ElemType.bfloat16)
        n.attribute![0]!.i = ElemType.float32;
    }
    const session = await ort.InferenceSession.create(onnx.ModelProto.encode(copy).finish());
    const n = 3;
    const x = Float32Array.from({ length: n * H }, (_, i) => Math.sin(i * 0.37));
    const weight = Float32Array.from([1, 0.5, 0.25]);
    const y = (
      await session.run({
        x: new ort.Tensor('float32', x, [n, H]),
        weight: new ort.Tensor('float32', weight, [n, 1]),
      })
    )['y']!.data as Float32Array;
    const [w1, w2, w3] = [
      bf16ToF32(await stored('w1')),
      bf16ToF32(await stored('w2')),
      bf16ToF32(await stored('w3')),
    ];
    let worst = 0;
    let scale = 0;
    for (let t = 0; t < n; t++) {
      const act = new Float64Array(F);
      for (let f = 0; f < F; f++) {
        let a = 0;
        let b = 0;
        for (let h = 0; h < H; h++) {
          a += w1[f * H + h]! * x[t * H + h]!;
          b += w3[f * H + h]! * x[t * H + h]!;
        }
        act[f] = (a / (1 + Math.exp(-a))) * b;
      }
      for (let h = 0; h < H; h++) {
        let s = 0;
        for (let f = 0; f < F; f++) s += w2[h * F + f]! * act[f]!;
        s *= weight[t]!;
        scale = Math.max(scale, Math.abs(s));
        worst = Math.max(worst, Math.abs(y[t * H + h]! - s));
      }
    }
    // fp32 arithmetic against fp64: ~1e-7 relative; 1e-5 is the conventions' fp32 tolerance.
    expect(worst / scale).toBeLessThan(1e-5);
    await session.release();
  });
});
