// The calls the main thread makes on the engine thread, and the events the engine thread pushes.

import type { RunTiming } from '../../shared/onnx/session.js';
import type { ExpertMeansJSON } from '../../shared/routing/expert-means.js';
import type { RoutingStatsJSON } from '../../shared/routing/stats.js';
import type { DispatchStatsJSON } from '../cluster/dispatch-stats.js';
import type { WorkerExperts } from '../cluster/placement.js';
import type { DropCostTable } from '../moe/observers/drop-costs.js';
import type { ExpertLoadJSON } from '../moe/observers/expert-load.js';
import type { RouterSignalTable } from '../moe/observers/router-signals.js';
import type { SubstituteStats } from '../moe/observers/substitute-stats.js';
import type {
  DecodeEachResult,
  DecodeRequest,
  DecodeResult,
  EachStepResult,
  EngineInfo,
  EngineOptions,
  ScoreResult,
  StepRequest,
  StepResult,
  StreamedDecodeRequest,
} from './engine.js';

export interface ScoreParams {
  readonly ids: Uint16Array;
  readonly windowLen: number;
  readonly routing?: string;
  /** score: also return every MoE layer's routing decision (kmoe eval --trace). */
  readonly trace?: boolean;
}

export type EngineSchema = {
  init: [EngineOptions, EngineInfo];
  step: [StepRequest[], StepResult];
  /** A step whose requests fail one by one on lost experts (Engine.stepEach). */
  stepEach: [StepRequest[], EachStepResult];
  /** Several decode steps of one sequence, sampled on the engine thread (Engine.decode). */
  decode: [DecodeRequest, DecodeResult];
  /** The same, failing this sequence alone as stepEach does (Engine.decodeEach): the server's path. */
  decodeEach: [StreamedDecodeRequest, DecodeEachResult];
  release: [string[], number];
  /** Sequences whose KV cache the engine holds (the server's /health and /metrics report it). */
  sequences: [null, number];
  score: [ScoreParams, ScoreResult];
  routerSignals: [
    ScoreParams & { readonly expertMeans: boolean },
    { table: RouterSignalTable; expertMeans?: ExpertMeansJSON },
  ];
  /** Regression statistics of rank-2 expert outputs on expert inputs under native routing (fp64). */
  substituteStats: [ScoreParams, SubstituteStats];
  /** Per-token drop costs under native routing, with the given expert means as the prior. */
  dropCosts: [
    ScoreParams & { readonly lead: ExpertMeansJSON; readonly second: ExpertMeansJSON },
    DropCostTable,
  ];
  stats: [null, RoutingStatsJSON];
  /** true: start timing onnxruntime runs (cleared); false: stop. Returns what was collected so far. */
  timing: [boolean, Record<string, RunTiming>];
  /** Network accounting of remote experts (null when local); true also starts a new period. */
  dispatchStats: [boolean, DispatchStatsJSON | null];
  /** A worker joined the membership: connect and route to it (returns the experts it holds). */
  joinWorker: [string, WorkerExperts];
  /**
   * A worker left the membership: route nothing more to it (false: not a known worker). With
   * `gone` (why, for people) it is not answering: its requests in flight fail over at once.
   */
  leaveWorker: [{ readonly url: string; readonly gone?: string }, boolean];
  /** Pairs per (layer, expert) routed to remote experts (null when local). */
  expertLoad: [null, ExpertLoadJSON | null];
  close: [null, null];
};

/**
 * Events the engine thread pushes: a worker connection dropped (payload: WorkerDown), or was
 * (re)established (payload: WorkerUp).
 */
export const ENGINE_EVENTS = {
  workerDown: 'workerDown',
  workerUp: 'workerUp',
  workerUnreachable: 'workerUnreachable',
  workerSmallFrames: 'workerSmallFrames',
} as const;
