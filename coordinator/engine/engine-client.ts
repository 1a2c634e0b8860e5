// Main-thread handle on the engine thread: typed calls, and the worker-down events it pushes.

import type { Transferable } from 'node:worker_threads';
import type { RunTiming } from '../../shared/onnx/session.js';
import type { ExpertMeansJSON } from '../../shared/routing/expert-means.js';
import type { RoutingStatsJSON } from '../../shared/routing/stats.js';
import type { ProgressReporter } from '../../shared/runtime/thread-rpc.js';
import { ThreadClient } from '../../shared/runtime/thread-rpc.js';
import type { DispatchStatsJSON } from '../cluster/dispatch-stats.js';
import type { WorkerExperts } from '../cluster/placement.js';
import type {
  WorkerDown,
  WorkerSmallFrames,
  WorkerUnreachable,
  WorkerUp,
} from '../cluster/remote-expert-backend.js';
import type { DropCostTable } from '../moe/observers/drop-costs.js';
import type { ExpertLoadJSON } from '../moe/observers/expert-load.js';
import type { RouterSignalTable } from '../moe/observers/router-signals.js';
import type { SubstituteStats } from '../moe/observers/substitute-stats.js';
import { DecodeStream } from './decode-stream.js';
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
import { ENGINE_EVENTS, type EngineSchema } from './engine-protocol.js';

/**
 * Worker events, kept from the thread's start so a listener added later misses none, until the
 * owner says every listener is in (`forget`): a long-running server would otherwise keep every drop
 * and reconnect it ever saw.
 */
class Feed<E> {
  private seen: E[] | undefined = [];
  readonly listeners: ((e: E) => void)[] = [];

  listen(listener: (e: E) => void): void {
    if (this.seen === undefined)
      throw new Error('worker event listeners must be added before EngineClient.forgetPastWorkerEvents()');
    for (const e of this.seen) listener(e);
    this.listeners.push(listener);
  }

  push(e: E): void {
    this.seen?.push(e);
    for (const l of this.listeners) l(e);
  }

  forget(): void {
    this.seen = undefined;
  }
}

export class EngineClient {
  /**
   * The streamed decode in flight, if any. The engine thread runs calls one at a time, so any other
   * call (a /health probe, a metrics scrape, a worker joining) interrupts it: the decode returns
   * after the step in hand instead of making that call wait for up to all of its steps.
   */
  #streaming: DecodeStream | undefined;

  private constructor(
    private readonly thread: ThreadClient<EngineSchema>,
    readonly info: EngineInfo,
    private readonly down: Feed<WorkerDown>,
    private readonly up: Feed<WorkerUp>,
    private readonly unreachable: Feed<WorkerUnreachable>,
    private readonly smallFrames: Feed<WorkerSmallFrames>,
  ) {}

  private call<K extends keyof EngineSchema & string>(
    method: K,
    params: EngineSchema[K][0],
    transfer?: readonly Transferable[],
    onProgress?: ProgressReporter,
  ): Promise<EngineSchema[K][1]> {
    this.#streaming?.interrupt();
    return this.thread.call(method, params, transfer, onProgress);
  }

  static async start(options: EngineOptions): Promise<EngineClient> {
    const thread = ThreadClient.start<EngineSchema>('engine', import.meta.url, './engine-thread');
    const down = new Feed<WorkerDown>();
    const up = new Feed<WorkerUp>();
    const unreachable = new Feed<WorkerUnreachable>();
    const smallFrames = new Feed<WorkerSmallFrames>();
    thread.onEvent((event, payload) => {
      if (event === ENGINE_EVENTS.workerDown) down.push(payload as WorkerDown);
      else if (event === ENGINE_EVENTS.workerUp) up.push(payload as WorkerUp);
      else if (event === ENGINE_EVENTS.workerUnreachable) unreachable.push(payload as WorkerUnreachable);
      else if (event === ENGINE_EVENTS.workerSmallFrames) smallFrames.push(payload as WorkerSmallFrames);
    });
    try {
      const info = await thread.call('init', options);
      return new EngineClient(thread, info, down, up, unreachable, smallFrames);
    } catch (err) {
      await thread.terminate();
      throw err;
    }
  }

  /**
   * Every listener of worker events is in: past events are no longer kept for listeners still to
   * come (adding one afterwards is an error), so memory does not grow with every drop and reconnect.
   */
  forgetPastWorkerEvents(): void {
    this.down.forget();
    this.up.forget();
    this.unreachable.forget();
    this.smallFrames.forget();
  }

  /** Calls `listener` for every worker connection the engine lost, past ones first. */
  onWorkerDown(listener: (e: WorkerDown) => void): void {
    this.down.listen(listener);
  }

  /** Calls `listener` for every worker connection the engine (re)established after start, past ones first. */
  onWorkerUp(listener: (e: WorkerUp) => void): void {
    this.up.listen(listener);
  }

  /**
   * Calls `listener` when a background attempt to connect a worker fails for a new reason (once per
   * reason until it connects: WorkerUnreachable), past ones first.
   */
  onWorkerUnreachable(listener: (e: WorkerUnreachable) => void): void {
    this.unreachable.listen(listener);
  }

  /** Calls `listener` when a connected worker's frames fit few tokens (WorkerSmallFrames), past ones first. */
  onWorkerSmallFrames(listener: (e: WorkerSmallFrames) => void): void {
    this.smallFrames.listen(listener);
  }

  /** Pairs per (layer, expert) routed to remote experts, total and recent rate (null when local). */
  expertLoad(): Promise<ExpertLoadJSON | null> {
    return this.call('expertLoad', null);
  }

  /** A worker joined the membership: the engine connects and routes to it; resolves with its experts. */
  joinWorker(url: string): Promise<WorkerExperts> {
    return this.call('joinWorker', url);
  }

  /**
   * A worker left the membership: the engine routes nothing more to it. With `gone` (why) it is
   * not answering: the requests it has fail over to replicas at once.
   */
  leaveWorker(url: string, gone?: string): Promise<boolean> {
    return this.call('leaveWorker', gone === undefined ? { url } : { url, gone });
  }

  step(requests: StepRequest[]): Promise<StepResult> {
    return this.call('step', requests);
  }

  /** A step in which requests routed to experts no live worker holds fail alone (Engine.stepEach). */
  stepEach(requests: StepRequest[]): Promise<EachStepResult> {
    return this.call('stepEach', requests);
  }

  /** Several decode steps with sampling on the engine thread: one round trip for all of them. */
  decode(request: DecodeRequest): Promise<DecodeResult> {
    return this.call('decode', request);
  }

  /**
   * Decode steps of one sequence whose tokens arrive as they are sampled: `onTokens(n)` runs when
   * the request's DecodeStream holds n of them (Engine.decodeEach).
   */
  async decodeEach(
    request: StreamedDecodeRequest,
    onTokens: (tokens: number) => void,
  ): Promise<DecodeEachResult> {
    const pending = this.call('decodeEach', request, [], (done) => onTokens(done));
    const stream = DecodeStream.attach(request.stream);
    this.#streaming = stream;
    try {
      return await pending;
    } finally {
      if (this.#streaming === stream) this.#streaming = undefined;
    }
  }

  release(seqIds: string[]): Promise<number> {
    return this.call('release', seqIds);
  }

  /** Sequences whose KV cache the engine holds. */
  sequences(): Promise<number> {
    return this.call('sequences', null);
  }

  /**
   * Scores windows of `windowLen` ids laid end to end in `ids` (the buffer is moved, not copied);
   * `trace`: the result carries every MoE layer's routing decision too.
   */
  score(ids: Uint16Array, windowLen: number, routing?: string, trace = false): Promise<ScoreResult> {
    const params = {
      ids,
      windowLen,
      ...(routing === undefined ? {} : { routing }),
      ...(trace ? { trace } : {}),
    };
    return this.call('score', params, [ids.buffer as ArrayBuffer]);
  }

  /**
   * Router signal quantiles (and, if asked, every expert's mean output) of windows laid end to end
   * in `ids` (the buffer is moved).
   */
  routerSignals(
    ids: Uint16Array,
    windowLen: number,
    options: { routing?: string; expertMeans: boolean; onProgress?: ProgressReporter },
  ): Promise<{ table: RouterSignalTable; expertMeans?: ExpertMeansJSON }> {
    const params = {
      ids,
      windowLen,
      expertMeans: options.expertMeans,
      ...(options.routing === undefined ? {} : { routing: options.routing }),
    };
    return this.call('routerSignals', params, [ids.buffer as ArrayBuffer], options.onProgress);
  }

  /**
   * Regression statistics of each token's rank-2 expert output on its expert input, per (MoE layer,
   * expert), under `routing` (native when absent), of windows laid end to end in `ids` (moved).
   */
  substituteStats(
    ids: Uint16Array,
    windowLen: number,
    options: { routing?: string; onProgress?: ProgressReporter },
  ): Promise<SubstituteStats> {
    const params = { ids, windowLen, ...(options.routing === undefined ? {} : { routing: options.routing }) };
    return this.call('substituteStats', params, [ids.buffer as ArrayBuffer], options.onProgress);
  }

  /**
   * Per-token router features and drop costs (K = 1 and K = 0 against the given rank-1 / rank-2 expert means)
   * under native routing, of windows laid end to end in `ids` (the buffer is moved).
   */
  dropCosts(
    ids: Uint16Array,
    windowLen: number,
    options: { lead: ExpertMeansJSON; second: ExpertMeansJSON; onProgress?: ProgressReporter },
  ): Promise<DropCostTable> {
    const params = { ids, windowLen, lead: options.lead, second: options.second };
    return this.call('dropCosts', params, [ids.buffer as ArrayBuffer], options.onProgress);
  }

  stats(): Promise<RoutingStatsJSON> {
    return this.call('stats', null);
  }

  /** Starts (true) or stops (false) timing onnxruntime runs by graph kind; returns the timings so far. */
  timing(enable: boolean): Promise<Record<string, RunTiming>> {
    return this.call('timing', enable);
  }

  /** Network accounting of remote experts since start or the last reset (null when experts are local). */
  dispatchStats(reset = false): Promise<DispatchStatsJSON | null> {
    return this.call('dispatchStats', reset);
  }

  async close(): Promise<void> {
    try {
      await this.call('close', null);
    } finally {
      await this.thread.terminate();
    }
  }
}
