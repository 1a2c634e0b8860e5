// The calls a worker's compute side answers: init, dispatch, load, unload, close. They own the
// worker's ExpertHost. The compute thread serves them (compute-thread.ts); a private local worker
// may run them on its socket thread instead (ExpertCompute, placement 'inline').

import { moeLayerIndices } from '../shared/families/layer-plan.js';
import { assertRunnable, Checkpoint } from '../shared/model/checkpoint.js';
import { ExpertHost } from '../shared/onnx/expert-host.js';
import type { SessionSettings } from '../shared/onnx/session.js';
import { allocDispatchResult, type DecodeLimits, decodeMessage } from '../shared/protocol/codec.js';
import { dispatchAssignment } from '../shared/protocol/messages.js';
import { firstNonFinite, fromWire, toWire } from '../shared/protocol/wire-dtype.js';
import type { Handlers } from '../shared/runtime/thread-rpc.js';
import type { ComputeSchema } from './compute-protocol.js';

/**
 * A load reads and builds experts for seconds to minutes: dispatches keep running between its
 * steps (its sessions are counted as held only once all exist). Unload stays in the queue, after
 * the dispatches that were accepted before it.
 */
export const CONCURRENT_COMPUTE_CALLS: readonly (keyof ComputeSchema & string)[] = ['load'];

/** Fresh handlers with state of their own (one ExpertHost after init). */
export function computeHandlers(): Handlers<ComputeSchema> {
  let state:
    | {
        ckpt: Checkpoint;
        host: ExpertHost;
        hidden: number;
        limits: Omit<DecodeLimits, 'maxFrameBytes'>;
        settings: SessionSettings;
        skipQueued: Int32Array;
      }
    | undefined;

  // fp32 scratch reused across requests (they are served one at a time): widened inputs, sums.
  const scratches: Float32Array[] = [new Float32Array(0), new Float32Array(0)];

  function scratch(slot: 0 | 1, n: number): Float32Array {
    if (scratches[slot]!.length < n) scratches[slot] = new Float32Array(n);
    return scratches[slot]!.subarray(0, n);
  }

  function ready(): NonNullable<typeof state> {
    if (!state) throw new Error('worker compute: init was not called');
    return state;
  }

  return {
    async init({ modelDir, experts, settings, skipQueued }) {
      if (state) throw new Error('worker compute: init called twice');
      await assertRunnable(modelDir);
      const ckpt = await Checkpoint.open(modelDir);
      try {
        const c = ckpt.config;
        const dims = ckpt.family.graphDims(c);
        // Only this worker's experts are read: the checkpoint reads tensor data lazily, per tensor.
        const moeLayers = moeLayerIndices(ckpt.family.layerPlan(c));
        const host = await ExpertHost.create({
          dims,
          numLayers: c.numLayers,
          moeLayers,
          experts,
          graph: (l, e, format) => ckpt.family.expertGraph(ckpt, l, e, format),
          settings,
        });
        state = {
          ckpt,
          host,
          hidden: dims.hidden,
          limits: { hidden: dims.hidden, numExperts: c.numExperts, numLayers: c.numLayers },
          settings,
          skipQueued,
        };
        return {
          result: {
            fingerprint: ckpt.fingerprint(),
            numLayers: c.numLayers,
            numExperts: c.numExperts,
            hidden: dims.hidden,
            experts: host.experts,
            moeLayers,
            bytesRead: ckpt.bytesRead,
          },
        };
      } catch (err) {
        await ckpt.close();
        throw err;
      }
    },
    async dispatch({ frame, maxFrameBytes }) {
      const { host, hidden: H, limits, skipQueued } = ready();
      if (Atomics.load(skipQueued, 0) !== 0) return { result: { skipped: true } };
      // Validated by the network thread already; decoding again only rebuilds the views here.
      const req = decodeMessage(frame, { ...limits, maxFrameBytes });
      if (req.type !== 'dispatch') throw new Error(`worker compute got a ${req.type} message`);
      const n = req.numTokens;
      const x = fromWire(req.hidden, req.wire, req.wire === 'fp32' ? undefined : scratch(0, n * H));
      const result = allocDispatchResult({ id: req.id, wire: req.wire, numTokens: n, hidden: H });
      // fp32 results are summed straight into the (zero-filled) reply frame; 16-bit ones are summed
      // in fp32 and rounded once.
      const sum = req.wire === 'fp32' ? (result.partial as Float32Array) : scratch(1, n * H).fill(0);
      await host.compute(
        req.layer,
        { dtype: 'float32', shape: [n, H], data: x },
        dispatchAssignment(req),
        sum,
      );
      if (req.wire !== 'fp32') toWire(sum, req.wire, result.partial);
      // Checked in the wire dtype: an fp32 sum of 7e4 is finite but infinite in fp16.
      const bad = firstNonFinite(result.partial, req.wire);
      if (bad !== -1) return { result: { nonFinite: bad } };
      return { result: { result: result.bytes }, transfer: [result.bytes.buffer as ArrayBuffer] };
    },
    async load(experts) {
      const { ckpt, host, settings } = ready();
      const held = await host.load(
        experts,
        (l, e, format) => ckpt.family.expertGraph(ckpt, l, e, format),
        settings,
      );
      return { result: { experts: held, bytesRead: ckpt.bytesRead } };
    },
    async unload(experts) {
      const { ckpt, host } = ready();
      return { result: { experts: host.unload(experts), bytesRead: ckpt.bytesRead } };
    },
    async close() {
      if (state) {
        state.host.release();
        await state.ckpt.close();
        state = undefined;
      }
      return { result: null };
    },
  };
}
