// The one place that decides where the engine's experts run: in-process sessions, or remote workers
// through the cluster module (its transport plus the dispatch accounting that observes it). The
// engine itself only receives the result.

import { moeLayerIndices } from '../../shared/families/layer-plan.js';
import type { Checkpoint } from '../../shared/model/checkpoint.js';
import { ExpertHost } from '../../shared/onnx/expert-host.js';
import type { SessionSettings } from '../../shared/onnx/session.js';
import { DispatchAccounting } from '../cluster/dispatch-accounting.js';
import type { DispatchStatsJSON } from '../cluster/dispatch-stats.js';
import type { WorkerExperts } from '../cluster/placement.js';
import { type ClusterEvents, RemoteExpertBackend } from '../cluster/remote-expert-backend.js';
import { LocalExpertBackend } from '../moe/local-expert-backend.js';
import { ExpertLoad, type ExpertLoadJSON } from '../moe/observers/expert-load.js';
import { routingModelOf } from '../moe/routing-model.js';
import type { EngineExperts, ExpertsOption } from './engine.js';

export interface ConnectedExperts extends EngineExperts {
  /** Network accounting since start or the last reset; null when experts are local. */
  dispatchStats(reset: boolean): DispatchStatsJSON | null;
  /** Pairs per (layer, expert) from real traffic, total and recent rate; null when experts are local. */
  expertLoad(): ExpertLoadJSON | null;
  /** Membership changes while serving (remote experts only; undefined when experts are local). */
  readonly members?: {
    join(url: string): Promise<WorkerExperts>;
    leave(url: string, gone?: string): boolean;
  };
}

export async function connectExperts(
  option: ExpertsOption,
  ckpt: Checkpoint,
  settings: SessionSettings,
  events: ClusterEvents,
): Promise<ConnectedExperts> {
  const c = ckpt.config;
  const dims = ckpt.family.graphDims(c);
  if (option.kind === 'local') {
    const host = await ExpertHost.create({
      dims,
      numLayers: c.numLayers,
      moeLayers: moeLayerIndices(ckpt.family.layerPlan(c)),
      experts: Array.from({ length: c.numExperts }, (_, e) => e),
      graph: (l, e, format) => ckpt.family.expertGraph(ckpt, l, e, format),
      settings,
    });
    return {
      backend: new LocalExpertBackend(host),
      observers: [],
      placement: [],
      dispatchStats: () => null,
      expertLoad: () => null,
    };
  }
  const model = {
    fingerprint: ckpt.fingerprint(),
    numLayers: c.numLayers,
    numExperts: c.numExperts,
    hidden: dims.hidden,
    nativeK: c.numExpertsPerTok,
  };
  const backend = await RemoteExpertBackend.connect(
    {
      workers: option.workers,
      wire: option.wireDtype,
      ...(option.timeoutMs === undefined ? {} : { timeoutMs: option.timeoutMs }),
      ...(option.clusterToken === undefined ? {} : { clusterToken: option.clusterToken }),
      ...(option.balance === undefined ? {} : { balance: option.balance }),
      ...(option.skipFailed === true ? { skipFailed: true } : {}),
      ...(option.fromRegistry === true ? { fromRegistry: true } : {}),
    },
    model,
    events,
  );
  const accounting = new DispatchAccounting(
    backend,
    model,
    routingModelOf(ckpt.family.layerPlan(c), dims.hidden),
  );
  const load = new ExpertLoad(model.numLayers, model.numExperts);
  return {
    backend,
    observers: [accounting, load],
    expertLoad: () => load.toJSON(),
    placement: backend.placement.workers,
    dispatchStats: (reset) => accounting.dispatchStats(reset),
    members: { join: (url) => backend.join(url), leave: (url, gone) => backend.leave(url, gone) },
  };
}
