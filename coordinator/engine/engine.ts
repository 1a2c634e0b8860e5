// The engine: owns the model runner, the KV caches of live sequences and the resolved routing
// policies. It lives on the engine thread (see engine-thread.ts); everything it does is one step at a
// time, so it is the single owner of these structures. Where experts run is injected (an
// ExpertBackend and the observers that come with it); the engine never knows local from remote.

import { KmoeError } from '../../shared/errors/kmoe-error.js';
import { assertRunnable, Checkpoint } from '../../shared/model/checkpoint.js';
import { normOverflows } from '../../shared/model/norm-overflow.js';
import type { SessionSettings } from '../../shared/onnx/session.js';
import type { WireDType } from '../../shared/protocol/wire-dtype.js';
import { RoutingConfigError, RoutingProfileError, RoutingSpecError } from '../../shared/routing/errors.js';
import type { RoutingModel, RoutingPolicy } from '../../shared/routing/policy.js';
import { resolveRouting } from '../../shared/routing/profile.js';
import { RoutingStats, type RoutingStatsJSON } from '../../shared/routing/stats.js';
import type { BalanceRule } from '../cluster/balance.js';
import { MissingExpertsInBatchError, RoutingFailedInBatchError } from '../moe/errors.js';
import type { ExpertBackend } from '../moe/expert-backend.js';
import type { MoeObserver } from '../moe/observer.js';
import { routingStatsObserver } from '../moe/observers/routing-stats.js';
import { type RoutingTraceLayer, RoutingTraceRecorder } from '../moe/observers/routing-trace.js';
import { SubstituteGraphs } from '../moe/substitute-graphs.js';
import { Rng, type SamplingParams, sampleToken } from '../sampling.js';
import { DecodeStream } from './decode-stream.js';
import { SequenceKvCache } from './kv-cache.js';
import { type ForwardItem, type ForwardResult, ModelRunner } from './model-runner.js';
import { isRoutingHandle, routingHandle } from './routing-handle.js';

/** Where the experts run: in this process, or in kmoe worker processes reached over WebSockets. */
export type ExpertsOption =
  | { readonly kind: 'local' }
  | {
      readonly kind: 'remote';
      /** ws:// URLs of the workers; together they must hold every expert. */
      readonly workers: readonly string[];
      readonly wireDtype: WireDType;
      /** Per dispatch request (default 30 s). */
      readonly timeoutMs?: number;
      /** Cluster token both sides prove in the handshake; none: workers without a token only. */
      readonly clusterToken?: string;
      /** Which replica computes each (token, expert) pair (default k-aware). */
      readonly balance?: BalanceRule;
      /**
       * Start with the workers that complete the handshake, as long as they hold every expert (a
       * registry may list a stale or foreign URL; the membership keeps retrying the others).
       */
      readonly skipFailed?: boolean;
      /** The URLs come from a registry: each worker must prove it registered the URL dialled. */
      readonly fromRegistry?: boolean;
    };

export interface EngineOptions {
  readonly modelDir: string;
  readonly settings: SessionSettings;
  /** Routing used when a request names none: a spec (`topk:2`) or a profile path; default native top-K. */
  readonly defaultRouting?: string;
  /** Default local. */
  readonly experts?: ExpertsOption;
  /**
   * Two-batch overlap: with remote experts, a step of two or more sequences runs as two
   * micro-batches whose forward passes interleave, so one's dense layers compute while the other's
   * experts are away. Off by default (measured in docs/performance.md).
   */
  readonly overlap?: boolean;
}

/** A worker and the experts it holds. */
export interface WorkerPlacement {
  readonly url: string;
  readonly experts: readonly number[];
}

/** Where the engine's experts run, as the composition root (engine-thread.ts) connected them. */
export interface EngineExperts {
  readonly backend: ExpertBackend;
  /** Observers of every forward pass that come with this backend (e.g. dispatch accounting). */
  readonly observers: readonly MoeObserver[];
  /** The workers and their experts; empty when experts are in this process. */
  readonly placement: readonly WorkerPlacement[];
}

export interface EngineInfo {
  readonly modelDir: string;
  readonly modelType: string;
  readonly fingerprint: string;
  /** Decoder layers (MoE and dense). */
  readonly numLayers: number;
  readonly numExperts: number;
  readonly nativeK: number;
  /** The MoE layers and native rule routing policies, statistics and profiles are made for. */
  readonly routing: RoutingModel;
  readonly vocabSize: number;
  readonly maxPositions: number;
  readonly eosTokenIds: readonly number[];
  /** How experts are run, for people: "local experts ..." or "remote experts on 2 workers ...". */
  readonly experts: string;
  /** The workers and the experts each holds; empty when experts are local. */
  readonly placement: readonly WorkerPlacement[];
  readonly defaultRouting: string;
}

export interface StepRequest {
  readonly seqId: string;
  readonly tokens: readonly number[];
  /** Spec, profile path, inline profile or routing handle (routing-handle.ts); default routing when absent. */
  readonly routing?: string;
  /**
   * The text a routing handle stands for. Needed when the engine may not know the handle (a
   * sequence's prefill); later steps of a sequence stepped with it may leave it out.
   */
  readonly routingText?: string;
}

export interface StepResult {
  /** Logits of each request's last new token, [requests, vocab]. */
  readonly logits: Float32Array;
  /** Per request: expert-token activations in this step (all layers). */
  readonly activations: number[];
  /** Per request: bytes its tokens moved to and from remote experts in this step. */
  readonly bytes: number[];
}

/** A request of a stepEach() that was routed to experts no live worker holds. */
/** A request of a stepEach that failed alone. */
export type StepFailure =
  | {
      /** Index of the request in the step. */
      readonly index: number;
      /** It needed experts no live worker holds. */
      readonly reason: 'experts';
      /** The experts it needed that could not be computed, ascending. */
      readonly missing: number[];
      /** The MoE layer where it needed them. */
      readonly layer: number;
      /** For people: the layer and what the backend said (the experts, which workers failed). */
      readonly message: string;
    }
  | {
      readonly index: number;
      /** Its routing did not resolve, or its policy refused its input mid-step. */
      readonly reason: 'routing';
      readonly missing: [];
      /** The MoE layer where its policy refused its input; undefined when it did not resolve. */
      readonly layer: number | undefined;
      /** For people: what the routing said. */
      readonly message: string;
    }
  | {
      readonly index: number;
      /**
       * Its final hidden state overflowed float32 (NaN, infinite, or a sum of squares the final
       * norm cannot hold): its logits mean nothing. A routing profile whose tables are finite but
       * huge (expert means of 1e20) does this without any single table value being refused.
       */
      readonly reason: 'overflow';
      readonly missing: [];
      readonly layer: undefined;
      /** For people: the routing it ran under and what went wrong. */
      readonly message: string;
    };

export interface EachStepResult extends StepResult {
  /** Requests that failed alone; their logits, activations and bytes are 0. */
  readonly failed: StepFailure[];
}

/**
 * Several decode steps of one sequence on the engine thread, sampling there: `token` is fed, the
 * next token sampled from its logits and fed in turn, until `maxTokens` are sampled, a `stop` id
 * is sampled (it is returned, not fed) or the sequence is full. One thread round trip per call
 * instead of one per token.
 */
export interface DecodeRequest {
  readonly seqId: string;
  /** The last sampled token, not yet in the cache. */
  readonly token: number;
  readonly maxTokens: number;
  readonly sampling: SamplingParams;
  /** The sampling stream (Rng.state()); continues the caller's. */
  readonly rngState: [number, number, number, number];
  readonly stop: readonly number[];
  readonly routing?: string;
}

export interface DecodeResult {
  /** Sampled tokens in order; every one but a final stop id has been fed into the cache. */
  readonly tokens: number[];
  readonly rngState: [number, number, number, number];
  readonly activations: number;
  readonly bytes: number;
}

/** A decode call whose tokens the caller reads as they are sampled (see DecodeStream). */
export interface StreamedDecodeRequest extends DecodeRequest {
  /** A DecodeStream's buffer of at least `maxTokens` tokens; its interrupt ends the call early. */
  readonly stream: SharedArrayBuffer;
}

/** A DecodeResult that may end early with a failure of this sequence alone (stepEach's isolation). */
export interface DecodeEachResult extends DecodeResult {
  /** The step that failed (index 0): `tokens` are those sampled before it; none of them is lost. */
  readonly failure?: StepFailure;
}

export interface ScoreResult {
  readonly nllSum: number;
  readonly scored: number;
  readonly stats: RoutingStatsJSON;
  /** With `trace`: every MoE layer's decision and native top-K, rows = the windows end to end. */
  readonly trace?: RoutingTraceLayer[];
}

/** Distinct routing policies kept resolved; a Map iterates in insertion order, oldest first. */
const POLICY_CACHE_SIZE = 64;
/** Total length of the cached routing texts (inline profiles are their own keys). */
const POLICY_CACHE_CHARS = 32 * 1024 * 1024;

export class Engine {
  private readonly caches = new Map<string, SequenceKvCache>();
  private readonly policies = new Map<string, { readonly policy: RoutingPolicy; readonly chars: number }>();
  private policyKeyChars = 0;
  /** The handle-routed policy of each live sequence, kept whatever the cache evicts. */
  private readonly handled = new Map<string, { readonly handle: string; readonly policy: RoutingPolicy }>();
  readonly stats: RoutingStats;
  private readonly statsObserver: MoeObserver;
  private readonly defaultRouting: string;
  /**
   * What policies are resolved with: the routing model plus this engine's batch kernel for linear
   * substitutes (kept off `routingModel`, which is posted to other threads).
   */
  private readonly policyModel: RoutingModel;

  private constructor(
    private readonly ckpt: Checkpoint,
    private readonly runner: ModelRunner,
    private readonly options: EngineOptions,
    private readonly experts: EngineExperts,
  ) {
    this.stats = new RoutingStats(this.routingModel);
    this.statsObserver = routingStatsObserver(this.stats);
    this.defaultRouting = options.defaultRouting ?? `topk:${runner.config.numExpertsPerTok}`;
    this.policyModel = { ...this.routingModel, substituteKernel: new SubstituteGraphs(options.settings) };
    this.policy(this.defaultRouting);
  }

  /** Opens the checkpoint, lets `connect` set up the experts for it, and loads the dense model. */
  static async create(
    options: EngineOptions,
    connect: (ckpt: Checkpoint) => Promise<EngineExperts>,
  ): Promise<Engine> {
    await assertRunnable(options.modelDir);
    const ckpt = await Checkpoint.open(options.modelDir);
    let experts: EngineExperts | undefined;
    try {
      experts = await connect(ckpt);
      const runner = await ModelRunner.load(ckpt, experts.backend, options.settings, {
        observers: experts.observers,
      });
      return new Engine(ckpt, runner, options, experts);
    } catch (err) {
      await experts?.backend.close();
      await ckpt.close();
      throw err;
    }
  }

  get hiddenSize(): number {
    return this.runner.dims.hidden;
  }

  /** MoE layers only (statistics and profiles are indexed by MoE layer), with the native rule. */
  get routingModel(): RoutingModel {
    return this.runner.routingModel;
  }

  info(): EngineInfo {
    const c = this.runner.config;
    return {
      modelDir: this.options.modelDir,
      modelType: c.modelType,
      fingerprint: this.ckpt.fingerprint(),
      numLayers: c.numLayers,
      numExperts: c.numExperts,
      nativeK: c.numExpertsPerTok,
      routing: this.routingModel,
      vocabSize: c.vocabSize,
      maxPositions: this.runner.maxPositions,
      eosTokenIds: c.eosTokenId,
      experts: this.experts.backend.description,
      placement: this.experts.placement.map((w) => ({ url: w.url, experts: [...w.experts] })),
      defaultRouting: this.defaultRouting,
    };
  }

  /**
   * Resolves a routing spec, profile path or inline profile; throws a RoutingSpecError on bad input.
   * Resolved policies are cached, least recently used first out: clients and calibration searches
   * can send any number of distinct routings, so the cache must stay bounded.
   */
  policy(routing: string | undefined, routingText?: string): RoutingPolicy {
    const key = routing ?? this.defaultRouting;
    const known = this.policies.get(key);
    if (known) {
      this.policies.delete(key);
      this.policies.set(key, known);
      return known.policy;
    }
    const handle = isRoutingHandle(key);
    if (handle && routingText === undefined) {
      throw new RoutingSpecError(
        `routing handle ${key} is not known to the engine: the step that first uses it must carry its text`,
        { spec: key, hint: 'send routingText with the first step of every sequence routed by a handle' },
      );
    }
    // Cached under the handle, the text serves every later step that names it: it must be the
    // text the handle was made of.
    if (handle && routingHandle(routingText!) !== key) {
      throw new RoutingSpecError(`routing handle ${key} does not match the text sent with it`, {
        spec: key,
        hint: 'a handle is routingHandle(text) of the canonical inline profile it stands for',
      });
    }
    const resolved = resolveRouting(handle ? routingText! : key, this.policyModel);
    // Inline profiles with tables are megabytes of text plus their decoded tables: bound the cache
    // by the texts' total size as well as by count.
    const chars = key.length + (handle ? routingText!.length : 0);
    this.policies.set(key, { policy: resolved, chars });
    this.policyKeyChars += chars;
    while (
      this.policies.size > POLICY_CACHE_SIZE ||
      (this.policyKeyChars > POLICY_CACHE_CHARS && this.policies.size > 1)
    ) {
      const [oldest, entry] = this.policies.entries().next().value!;
      this.policies.delete(oldest);
      this.policyKeyChars -= entry.chars;
    }
    return resolved;
  }

  /** A step request's policy: a sequence keeps the policy of the handle it was first stepped with. */
  private requestPolicy(r: StepRequest): RoutingPolicy {
    const held = r.routing === undefined ? undefined : this.handled.get(r.seqId);
    if (held && held.handle === r.routing) return held.policy;
    return this.policy(r.routing, r.routingText);
  }

  /**
   * One forward step for several sequences; new sequences are created on first use. Any failure
   * fails the whole step (an expert without a live worker: the backend's PlacementError).
   */
  async step(requests: readonly StepRequest[]): Promise<StepResult> {
    return this.run(requests, false);
  }

  /**
   * Like step(), but a request whose routing does not resolve, or refuses its input mid-step, or
   * that is routed to experts no live worker holds fails alone (in `failed`) and the step is
   * recomputed for the others: a serving step with a sequence that needs lost
   * experts costs the others one more pass, never their request. A recompute is safe because a
   * failed pass commits nothing: the KV cache makes positions visible only after the last layer
   * (SequenceKvCache.commit), so the recompute writes the same positions again.
   */
  async stepEach(requests: readonly StepRequest[]): Promise<EachStepResult> {
    return this.run(requests, true);
  }

  private async run(requests: readonly StepRequest[], isolate: boolean): Promise<EachStepResult> {
    // Validate the whole step before touching any cache, so a bad request leaves no trace.
    const failed: StepFailure[] = [];
    const policies = requests.map((r, index) => {
      if (!isolate) return this.requestPolicy(r);
      try {
        return this.requestPolicy(r);
      } catch (err) {
        if (!isRoutingRefusal(err)) throw err;
        // Its routing does not resolve (e.g. a handle the engine does not know): it alone fails.
        failed.push({ index, reason: 'routing', missing: [], layer: undefined, message: err.message });
        return undefined;
      }
    });
    const seen = new Set<string>();
    for (const r of requests) {
      if (seen.has(r.seqId)) throw new RangeError(`sequence ${r.seqId} appears twice in one step`);
      seen.add(r.seqId);
      const cached = this.caches.get(r.seqId)?.length ?? 0;
      if (r.tokens.length === 0) throw new RangeError(`sequence ${r.seqId}: a step needs at least one token`);
      if (cached + r.tokens.length > this.runner.maxPositions) {
        throw new RangeError(
          `sequence ${r.seqId} would reach ${cached + r.tokens.length} positions; the model supports ${this.runner.maxPositions}`,
        );
      }
    }
    const created: string[] = [];
    const items: (ForwardItem | undefined)[] = requests.map((r, i) => {
      if (policies[i] === undefined) return undefined;
      let cache = this.caches.get(r.seqId);
      if (!cache) {
        cache = new SequenceKvCache(this.runner.config.numLayers, this.runner.dims);
        this.caches.set(r.seqId, cache);
        created.push(r.seqId);
      }
      if (r.routing !== undefined && isRoutingHandle(r.routing))
        this.handled.set(r.seqId, { handle: r.routing, policy: policies[i]! });
      return { tokens: r.tokens, cache, policy: policies[i]! };
    });
    // Requests with the same number of new tokens share one forward pass (decode steps batch
    // together); a prefill chunk never pads a batch of single-token decodes up to its length.
    const groups = new Map<number, number[]>();
    items.forEach((it, i) => {
      if (it === undefined) return;
      const g = groups.get(it.tokens.length);
      if (g) g.push(i);
      else groups.set(it.tokens.length, [i]);
    });
    const V = this.runner.dims.vocab;
    const H = this.runner.dims.hidden;
    const logits = new Float32Array(items.length * V);
    const activations = new Array<number>(items.length).fill(0);
    const bytes = new Array<number>(items.length).fill(0);
    try {
      const run = async (members: readonly number[]) => {
        const fwd: ForwardResult = await this.runner.forward(
          members.map((i) => items[i]!),
          [this.statsObserver],
        );
        const last = new Float32Array(members.length * H);
        members.forEach((i, b) => {
          const row = b * fwd.seqLen + items[i]!.tokens.length - 1;
          last.set(fwd.hidden.subarray(row * H, (row + 1) * H), b * H);
          activations[i] = fwd.activations[b]!;
          bytes[i] = fwd.bytes[b]!;
        });
        const groupLogits = await this.runner.logits(last, members.length);
        members.forEach((i, b) => {
          if (normOverflows(last.subarray(b * H, (b + 1) * H))) {
            const message = `the forward pass under routing ${items[i]!.policy.spec} overflowed for sequence ${requests[i]!.seqId}: its hidden state is beyond what float32 normalisation can hold, so its logits mean nothing (a routing profile whose expertMeans or expertSubstitutes values are too large does this)`;
            if (!isolate) throw new KmoeError(message, { code: 'hidden_state_overflow' });
            failed.push({ index: i, reason: 'overflow', missing: [], layer: undefined, message });
          }
          logits.set(groupLogits.subarray(b * V, (b + 1) * V), i * V);
        });
      };
      // A pass that fails on lost experts is run again without the members routed to them.
      const runEach = async (members: readonly number[]) => {
        let rest = members;
        while (rest.length > 0) {
          try {
            await run(rest);
            return;
          } catch (err) {
            if (isolate && err instanceof RoutingFailedInBatchError) {
              // The policy refused these items' input (their profile, their tokens): they end, the rest run.
              const blamed = new Set(err.spans.map((span) => rest[span]!));
              for (const index of blamed) {
                failed.push({
                  index,
                  reason: 'routing',
                  missing: [],
                  layer: err.layer,
                  message: `MoE layer ${err.layer}: ${err.message}`,
                });
              }
              rest = rest.filter((i) => !blamed.has(i));
              continue;
            }
            if (!isolate || !(err instanceof MissingExpertsInBatchError)) throw err;
            const current = rest;
            const hit = new Set<number>();
            for (const need of err.needs) {
              const index = current[need.span]!;
              hit.add(index);
              failed.push({
                index,
                reason: 'experts',
                missing: [...need.missing],
                layer: err.layer,
                message: `layer ${err.layer}: ${err.message}`,
              });
            }
            rest = current.filter((i) => !hit.has(i));
          }
        }
      };
      const overlap = this.options.overlap === true && this.experts.placement.length > 0;
      for (const members of groups.values()) {
        if (overlap && members.length >= 2) {
          // Sessions run synchronously, so the two passes interleave at the experts' awaits.
          const half = Math.ceil(members.length / 2);
          // Both settle before the step returns (or fails), so no pass outlives it. Each half
          // commits its own caches, so a half that failed is recomputed alone.
          const done = await Promise.allSettled([
            runEach(members.slice(0, half)),
            runEach(members.slice(half)),
          ]);
          for (const d of done) if (d.status === 'rejected') throw d.reason;
        } else {
          await runEach(members);
        }
      }
    } catch (err) {
      for (const id of created) this.forget(id);
      // Whole-step callers see the backend's own error, as before per-request isolation existed.
      throw err instanceof MissingExpertsInBatchError || err instanceof RoutingFailedInBatchError
        ? err.cause
        : err;
    }
    // A failed sequence created in this step leaves nothing behind; one the engine held before is
    // released by its owner like any ended sequence.
    for (const f of failed) {
      const id = requests[f.index]!.seqId;
      if (created.includes(id)) this.forget(id);
      logits.fill(0, f.index * V, (f.index + 1) * V);
      activations[f.index] = 0;
      bytes[f.index] = 0;
    }
    failed.sort((a, b) => a.index - b.index);
    return { logits, activations, bytes, failed };
  }

  /** See DecodeRequest. A failed step throws, as step() does. */
  async decode(r: DecodeRequest): Promise<DecodeResult> {
    const { tokens, rngState, activations, bytes } = await this.decodeSteps(r, async (request) => ({
      ...(await this.step([request])),
      failed: [],
    }));
    return { tokens, rngState, activations, bytes };
  }

  /**
   * decode() for the server's scheduler: every sampled token goes to the request's DecodeStream at
   * once (then `progress(tokens so far)`), the stream's interrupt ends the call after the step in
   * hand, and a step that fails for this sequence alone (lost experts, its routing refused its
   * input) ends the call with the failure and the tokens sampled before it, as stepEach would.
   */
  decodeEach(r: StreamedDecodeRequest, progress: (tokens: number) => void): Promise<DecodeEachResult> {
    const stream = DecodeStream.attach(r.stream);
    if (r.maxTokens > stream.capacity) {
      throw new RangeError(`decode of ${r.maxTokens} tokens into a stream of ${stream.capacity}`);
    }
    return this.decodeSteps(r, (request) => this.stepEach([request]), stream, progress);
  }

  private async decodeSteps(
    r: DecodeRequest,
    stepOne: (request: StepRequest) => Promise<EachStepResult>,
    stream?: DecodeStream,
    progress?: (tokens: number) => void,
  ): Promise<DecodeEachResult> {
    const rng = Rng.fromState(r.rngState);
    const stop = new Set(r.stop);
    const V = this.runner.dims.vocab;
    const tokens: number[] = [];
    let activations = 0;
    let bytes = 0;
    let token = r.token;
    const routing = r.routing === undefined ? {} : { routing: r.routing };
    const result = (failure?: StepFailure): DecodeEachResult => ({
      tokens,
      rngState: rng.state(),
      activations,
      bytes,
      ...(failure ? { failure } : {}),
    });
    while (tokens.length < r.maxTokens) {
      const step = await stepOne({ seqId: r.seqId, tokens: [token], ...routing });
      const failure = step.failed[0];
      if (failure) return result(failure);
      activations += step.activations[0]!;
      bytes += step.bytes[0]!;
      token = sampleToken(step.logits, 0, V, r.sampling, rng);
      stream?.write(tokens.length, token, step.activations[0]!, step.bytes[0]!);
      tokens.push(token);
      progress?.(tokens.length);
      if (stop.has(token) || this.caches.get(r.seqId)!.length >= this.runner.maxPositions) break;
      // Checked after a step, so that every call makes progress.
      if (stream?.interrupted) break;
    }
    return result();
  }

  release(seqId: string): boolean {
    return this.forget(seqId);
  }

  /** Drops a sequence's cache and the policy it holds. */
  private forget(seqId: string): boolean {
    this.handled.delete(seqId);
    return this.caches.delete(seqId);
  }

  get liveSequences(): number {
    return this.caches.size;
  }

  /**
   * Perplexity scoring of independent windows (no cache kept): position i of each window is scored
   * for predicting token i+1, so a window of L ids contributes L-1 scored tokens.
   */
  async score(
    ids: Uint16Array,
    windowLen: number,
    routing: string | undefined,
    trace = false,
  ): Promise<ScoreResult> {
    if (windowLen < 2 || ids.length === 0 || ids.length % windowLen !== 0) {
      throw new RangeError(`score: ${ids.length} ids do not split into windows of ${windowLen}`);
    }
    const W = ids.length / windowLen;
    const policy = this.policy(routing);
    const items: ForwardItem[] = [];
    for (let w = 0; w < W; w++)
      items.push({ tokens: ids.subarray(w * windowLen, (w + 1) * windowLen), policy });
    const local = new RoutingStats(this.routingModel);
    const recorder = trace ? new RoutingTraceRecorder(this.routingModel) : undefined;
    const observers = [routingStatsObserver(local), this.statsObserver];
    const fwd = await this.runner.forward(items, recorder ? [...observers, recorder] : observers);
    const targets = new BigInt64Array(ids.length);
    for (let i = 0; i < ids.length; i++) {
      // The last position of a window has no target inside the window; it is scored against 0 and ignored.
      targets[i] = (i + 1) % windowLen === 0 ? 0n : BigInt(ids[i + 1]!);
    }
    const nll = await this.runner.nll(fwd.hidden, targets);
    let nllSum = 0;
    for (let i = 0; i < nll.length; i++) if ((i + 1) % windowLen !== 0) nllSum += nll[i]!;
    const result = { nllSum, scored: W * (windowLen - 1), stats: local.toJSON() };
    return recorder ? { ...result, trace: recorder.layers() } : result;
  }

  /**
   * Forward passes over independent windows under `routing` (default native) for the observers
   * alone (calibration probes: router signals, expert means). Nothing is cached or counted.
   */
  async observeWindows(
    ids: Uint16Array,
    windowLen: number,
    routing: string | undefined,
    observers: readonly MoeObserver[],
    onProgress: (done: number, total: number) => void,
  ): Promise<void> {
    if (windowLen < 2 || ids.length === 0 || ids.length % windowLen !== 0) {
      throw new RangeError(`routerSignals: ${ids.length} ids do not split into windows of ${windowLen}`);
    }
    const policy = this.policy(routing);
    const W = ids.length / windowLen;
    const batch = 4;
    for (let w = 0; w < W; w += batch) {
      const items: ForwardItem[] = [];
      for (let b = w; b < Math.min(W, w + batch); b++) {
        items.push({ tokens: ids.subarray(b * windowLen, (b + 1) * windowLen), policy });
      }
      await this.runner.forward(items, observers);
      onProgress(Math.min(W, w + batch), W);
    }
  }

  async close(): Promise<void> {
    this.caches.clear();
    await this.runner.close();
    await this.ckpt.close();
  }
}

/** A routing the engine refuses to resolve: a bad spec or handle, an unreadable or invalid profile. */
function isRoutingRefusal(err: unknown): err is RoutingSpecError | RoutingProfileError | RoutingConfigError {
  return (
    err instanceof RoutingSpecError || err instanceof RoutingProfileError || err instanceof RoutingConfigError
  );
}
