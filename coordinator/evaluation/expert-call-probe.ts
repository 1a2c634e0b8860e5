// Time of one single-token expert call when its weights are cache-resident versus when calls
// rotate through every expert of the model, as decode does. The difference is what streaming the
// expert weights from memory costs per call: the figure that explains decode speed on CPU.

import { moeLayerIndices } from '../../shared/families/layer-plan.js';
import { Checkpoint } from '../../shared/model/checkpoint.js';
import { ExpertHost } from '../../shared/onnx/expert-host.js';
import { EXPERT_WEIGHT_BYTES } from '../../shared/onnx/expert-weight-format.js';
import { runTimings, type SessionSettings, setRunTiming } from '../../shared/onnx/session.js';

export interface ExpertCallProbe {
  /** Weight bytes of one expert (w1, w3, w2) in the format computed, and of every expert of every layer. */
  readonly expertMiB: number;
  readonly allExpertsMiB: number;
  /** Mean µs per call: the same expert again and again. */
  readonly sameExpertMicros: number;
  /** Mean µs per call: layer by layer, expert by expert, through all of them. */
  readonly rotatingMicros: number;
  readonly callsPerFigure: number;
}

export async function probeExpertCalls(
  modelDir: string,
  settings: SessionSettings,
  calls: number,
): Promise<ExpertCallProbe> {
  const ckpt = await Checkpoint.open(modelDir);
  let host: ExpertHost | undefined;
  try {
    const c = ckpt.config;
    const dims = ckpt.family.graphDims(c);
    const all = Array.from({ length: c.numExperts }, (_, e) => e);
    const moeLayers = moeLayerIndices(ckpt.family.layerPlan(c));
    host = await ExpertHost.create({
      dims,
      numLayers: c.numLayers,
      moeLayers,
      experts: all,
      graph: (l, e, format) => ckpt.family.expertGraph(ckpt, l, e, format),
      settings,
    });
    const x = {
      dtype: 'float32' as const,
      shape: [1, dims.hidden],
      data: new Float32Array(dims.hidden).fill(0.1),
    };
    const single = (e: number) => ({
      numTokens: 1,
      offsets: Int32Array.from([0, 1]),
      experts: Int32Array.from([e]),
      weights: Float32Array.from([1]),
    });
    const E = c.numExperts;
    const timed = async (pick: (i: number) => [layer: number, expert: number]): Promise<number> => {
      // One full rotation first, so both figures start from the same warm state.
      for (let i = 0; i < E * c.numLayers; i++) {
        const [l, e] = pick(i);
        await host!.compute(l, x, single(e));
      }
      setRunTiming(true);
      for (let i = 0; i < calls; i++) {
        const [l, e] = pick(i);
        await host!.compute(l, x, single(e));
      }
      const t = runTimings()['expert'];
      setRunTiming(false);
      if (!t || t.calls === 0) throw new Error('expert call probe: no expert calls were timed');
      return (t.ms / t.calls) * 1000;
    };
    const sameExpertMicros = await timed(() => [moeLayers[0]!, 0]);
    const rotatingMicros = await timed((i) => [moeLayers[Math.floor(i / E) % moeLayers.length]!, i % E]);
    const expertBytes = 3 * dims.hidden * dims.ffn * EXPERT_WEIGHT_BYTES[settings.expertWeights];
    return {
      expertMiB: expertBytes / 2 ** 20,
      allExpertsMiB: (expertBytes * E * moeLayers.length) / 2 ** 20,
      sameExpertMicros,
      rotatingMicros,
      callsPerFigure: calls,
    };
  } finally {
    host?.release();
    await ckpt.close();
  }
}
