// Entry point of the engine thread: onnxruntime's run() blocks its thread, so the forward pass lives
// here and the main thread stays free for I/O (HTTP, sockets, progress output). It is also the
// composition root of the engine: it connects the experts (connect-experts.ts) and pushes the
// cluster's liveness events to the main thread, where /ready and admission read them.

import { runTimings, setRunTiming } from '../../shared/onnx/session.js';
import { decodeExpertMeans, encodeExpertMeans } from '../../shared/routing/expert-means.js';
import { serveThread } from '../../shared/runtime/thread-rpc.js';
import { DropCostProbe } from '../moe/observers/drop-costs.js';
import { ExpertMeanProbe } from '../moe/observers/expert-means.js';
import { RouterSignalRecorder } from '../moe/observers/router-signals.js';
import { SubstituteStatsProbe } from '../moe/observers/substitute-stats.js';
import { type ConnectedExperts, connectExperts } from './connect-experts.js';
import { Engine } from './engine.js';
import { ENGINE_EVENTS, type EngineSchema } from './engine-protocol.js';

let engine: Engine | undefined;
let experts: ConnectedExperts | undefined;

function ready(): Engine {
  if (!engine) throw new Error('engine thread: init was not called');
  return engine;
}

const emit = serveThread<EngineSchema>(
  {
    async init(options) {
      if (engine) throw new Error('engine thread: init called twice');
      engine = await Engine.create(options, async (ckpt) => {
        experts = await connectExperts(options.experts ?? { kind: 'local' }, ckpt, options.settings, {
          down: (e) => emit(ENGINE_EVENTS.workerDown, e),
          up: (e) => emit(ENGINE_EVENTS.workerUp, e),
          unreachable: (e) => emit(ENGINE_EVENTS.workerUnreachable, e),
          smallFrames: (e) => emit(ENGINE_EVENTS.workerSmallFrames, e),
        });
        return experts;
      });
      return { result: engine.info() };
    },
    async step(requests) {
      const result = await ready().step(requests);
      return { result, transfer: [result.logits.buffer as ArrayBuffer] };
    },
    async stepEach(requests) {
      const result = await ready().stepEach(requests);
      return { result, transfer: [result.logits.buffer as ArrayBuffer] };
    },
    async decode(request) {
      return { result: await ready().decode(request) };
    },
    async decodeEach(request, progress) {
      // Progress carries the token count; the tokens themselves are in the request's shared stream.
      return { result: await ready().decodeEach(request, (tokens) => progress(tokens, request.maxTokens)) };
    },
    release(seqIds) {
      const e = ready();
      let n = 0;
      for (const id of seqIds) if (e.release(id)) n++;
      return { result: n };
    },
    sequences() {
      return { result: ready().liveSequences };
    },
    async score(p) {
      return { result: await ready().score(p.ids, p.windowLen, p.routing, p.trace === true) };
    },
    async routerSignals(p, progress) {
      // The calibration probes observe the MoE seam; the engine only runs the windows.
      const e = ready();
      const m = e.routingModel;
      const recorder = new RouterSignalRecorder(m.numLayers, m.numExperts);
      const probe = p.expertMeans
        ? new ExpertMeanProbe(experts!.backend, m.numLayers, m.numExperts, e.hiddenSize)
        : undefined;
      await e.observeWindows(p.ids, p.windowLen, p.routing, probe ? [recorder, probe] : [recorder], progress);
      const table = recorder.table();
      return { result: probe ? { table, expertMeans: encodeExpertMeans(probe.means()) } : { table } };
    },
    async substituteStats(p, progress) {
      const e = ready();
      const m = e.routingModel;
      const probe = new SubstituteStatsProbe(experts!.backend, m.numLayers, m.numExperts, e.hiddenSize);
      await e.observeWindows(p.ids, p.windowLen, p.routing, [probe], progress);
      const s = probe.result();
      return {
        result: s,
        transfer: [s.counts.buffer, s.gram.buffer, s.cross.buffer, s.sumSquares.buffer] as ArrayBuffer[],
      };
    },
    async dropCosts(p, progress) {
      const e = ready();
      const lead = decodeExpertMeans(p.lead);
      const second = decodeExpertMeans(p.second);
      if (typeof lead === 'string') throw new RangeError(`dropCosts: ${lead}`);
      if (typeof second === 'string') throw new RangeError(`dropCosts: ${second}`);
      const probe = new DropCostProbe(experts!.backend, { lead, second });
      await e.observeWindows(p.ids, p.windowLen, p.routing, [probe], progress);
      return { result: probe.table() };
    },
    stats() {
      return { result: ready().stats.toJSON() };
    },
    timing(enable) {
      const collected = runTimings();
      setRunTiming(enable);
      return { result: collected };
    },
    dispatchStats(reset) {
      ready();
      return { result: experts?.dispatchStats(reset) ?? null };
    },
    expertLoad() {
      ready();
      return { result: experts?.expertLoad() ?? null };
    },
    async joinWorker(url) {
      ready();
      const members = experts?.members;
      if (!members) throw new Error('engine thread: experts run in this process; workers cannot join');
      return { result: await members.join(url) };
    },
    leaveWorker({ url, gone }) {
      ready();
      return { result: experts?.members?.leave(url, gone) ?? false };
    },
    async close() {
      await engine?.close();
      engine = undefined;
      experts = undefined;
      return { result: null };
    },
  },
  // Membership changes run beside the queue, as a reconnect or a dropped socket does between a
  // layer's awaits (they add or retire a slot and swap the cluster view). A join waits for its
  // worker's handshake (up to its timeout, for a registry record whose URL never answers) and must
  // not hold up the steps queued behind it; a leave of a worker that stopped answering must reach
  // the step waiting for it, to fail its requests over. The caller orders the changes of one URL.
  { concurrent: ['joinWorker', 'leaveWorker'] },
);
