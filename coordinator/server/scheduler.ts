// Continuous batching: the one owner of every sequence being served. Each iteration builds one
// engine step with one token for every decoding sequence plus at most one prefill chunk of the
// oldest sequence still prefilling, so new requests join at step boundaries and a long prompt
// never stalls the others for more than one chunk.

import { KmoeError } from '../../shared/errors/kmoe-error.js';
import type { KmoeTokenizer } from '../../shared/model/tokenizer.js';
import { isInlineProfile } from '../../shared/routing/profile.js';
import { counted } from '../../shared/text/counted.js';
import type { ExpertCoverage } from '../cluster/cluster-health.js';
import { DecodeStream } from '../engine/decode-stream.js';
import type {
  DecodeEachResult,
  EachStepResult,
  EngineInfo,
  StepFailure,
  StepRequest,
  StreamedDecodeRequest,
} from '../engine/engine.js';
import { Rng, sampleToken } from '../sampling.js';
import {
  EngineStepError,
  ExpertsUnavailableError,
  InternalServerError,
  InvalidRequestError,
  ServerBusyError,
  ShuttingDownError,
} from './errors.js';
import { type GenerationParams, Sequence, type SequenceSink } from './sequence.js';

/** What the scheduler needs from the engine (EngineClient in production). */
export interface StepEngine {
  readonly info: Pick<EngineInfo, 'vocabSize' | 'maxPositions' | 'eosTokenIds'>;
  /** A step in which a request routed to experts no live worker holds fails alone. */
  stepEach(requests: StepRequest[]): Promise<EachStepResult>;
  /**
   * Decode steps of one sequence sampled on the engine thread, each token readable from the
   * request's DecodeStream when `onTokens` reports it; fails the sequence alone as stepEach does.
   */
  decodeEach(request: StreamedDecodeRequest, onTokens: (tokens: number) => void): Promise<DecodeEachResult>;
  release(seqIds: string[]): Promise<number>;
}

/**
 * A sequence decoding alone runs up to this many steps in one engine call, sampling on the engine
 * thread and streaming each token to its client as it is sampled: no thread round trip per token.
 * Whatever needs the loop (a new request, a cancel, a stop string, shutdown) interrupts the call
 * after the step in hand, and so does any other engine call (EngineClient: a health probe, a metrics
 * scrape, a membership change), so nothing waits longer than one step for it.
 */
export const DECODE_ALONE_MAX_STEPS = 256;

export interface SchedulerOptions {
  /** Sequences in the running set (holding KV caches, decoding or prefilling). */
  readonly maxRunning: number;
  /** Accepted sequences waiting for a place in the running set; beyond this, 429. */
  readonly maxQueued: number;
  /** Prompt tokens per prefill chunk. */
  readonly prefillChunk: number;
  /** The cluster's coverage, quoted in the 503 of a sequence that needed lost experts. */
  readonly experts?: () => ExpertCoverage;
}

export interface StepReport {
  readonly seconds: number;
  readonly decodes: number;
  readonly prefillTokens: number;
}

/** Timings and counts the scheduler reports as they happen (metrics, logs). */
export interface SchedulerObserver {
  queue(running: number, waiting: number): void;
  firstToken(seconds: number): void;
  interToken(seconds: number): void;
  step(report: StepReport): void;
  /** A failure that did not come from a request (a failed release, a failed step, a bug). */
  error(message: string, error: unknown): void;
  /**
   * A sequence failed because of what its client sent (its own routing tables), or needs experts
   * the cluster lacks now: not a fault of the server.
   */
  warn(message: string, error: unknown): void;
}

export interface SequenceHandle {
  readonly id: string;
  /** The client went away: stop generating and free the KV cache at the next step boundary. */
  cancel(): void;
}

export interface ShutdownReport {
  /** Sequences cut short at the deadline (each received an error event). */
  readonly cancelled: number;
}

interface Planned {
  readonly seq: Sequence;
  readonly tokens: number[];
  readonly prefill: boolean;
}

export class Scheduler {
  #waiting: Sequence[] = [];
  #running: Sequence[] = [];
  #accepting = true;
  #stopping = false;
  #wake: (() => void) | undefined;
  /** A wake-up that came while the loop was not sleeping (it was awaiting the engine). */
  #woken = false;
  #idleWaiters: (() => void)[] = [];
  /** Ends the engine call of a sequence decoding alone after its current step. */
  #interruptAlone: (() => void) | undefined;
  readonly #eos: ReadonlySet<number>;
  readonly #loop: Promise<void>;

  constructor(
    private readonly engine: StepEngine,
    private readonly tokenizer: KmoeTokenizer,
    private readonly options: SchedulerOptions,
    private readonly observer: SchedulerObserver,
  ) {
    this.#eos = new Set(engine.info.eosTokenIds);
    this.#loop = this.#run();
  }

  get running(): number {
    return this.#running.length;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Accepts a generation; events go to `sink` until a finish or error event, which always comes
   * unless the handle is cancelled.
   * @throws ShuttingDownError after shutdown() began; ServerBusyError when running set and queue are full.
   */
  submit(id: string, params: GenerationParams, sink: SequenceSink): SequenceHandle {
    if (!this.#accepting) throw new ShuttingDownError();
    const { maxRunning, maxQueued } = this.options;
    if (this.#running.length + this.#waiting.length >= maxRunning + maxQueued) {
      throw new ServerBusyError(this.#running.length, this.#waiting.length);
    }
    const seq = new Sequence(
      id,
      params,
      this.tokenizer,
      { eosTokenIds: this.#eos, maxPositions: this.engine.info.maxPositions },
      sink,
    );
    this.#waiting.push(seq);
    this.#report();
    this.#wakeUp();
    return {
      id,
      cancel: () => {
        if (seq.ended) return;
        seq.cancel();
        this.#wakeUp();
      },
    };
  }

  /**
   * Stops admission, lets accepted sequences finish for up to `graceMs`, then ends the rest with
   * an error event, releases everything from the engine and stops the loop.
   */
  async shutdown(graceMs: number): Promise<ShutdownReport> {
    this.#accepting = false;
    let timer: NodeJS.Timeout | undefined;
    const drained = await Promise.race([
      this.#whenIdle().then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), graceMs);
      }),
    ]);
    clearTimeout(timer);
    let cancelled = 0;
    if (!drained) {
      const cut = new ShuttingDownError('the server shut down before this request finished');
      for (const seq of [...this.#waiting, ...this.#running]) {
        if (seq.ended) continue;
        seq.fail(cut);
        cancelled++;
      }
    }
    this.#stopping = true;
    this.#wakeUp();
    await this.#loop;
    return { cancelled };
  }

  async #run(): Promise<void> {
    for (;;) {
      try {
        await this.#reap();
        if (this.#stopping && this.#running.length === 0 && this.#waiting.length === 0) return;
        this.#admit();
        const plan = this.#plan();
        if (plan.length === 0) {
          // A cancel or submit during an await above must not be slept through: the ended
          // sequence would stay counted as running until some later request woke the loop.
          if (this.#woken) {
            this.#woken = false;
            continue;
          }
          for (const resolve of this.#idleWaiters.splice(0)) resolve();
          await new Promise<void>((resolve) => {
            this.#wake = resolve;
          });
          this.#woken = false;
          continue;
        }
        const alone = this.#aloneSteps(plan);
        if (alone > 1) await this.#decodeAlone(plan[0]!.seq, alone);
        else await this.#step(plan);
      } catch (err) {
        // A bug in the loop must not strand requests: end everything in flight with a 500.
        this.observer.error('scheduler iteration failed', err);
        for (const seq of [...this.#waiting, ...this.#running]) {
          seq.fail(new InternalServerError(seq.id, err));
        }
      }
    }
  }

  /** Drops ended sequences and frees their KV caches before the next step. */
  async #reap(): Promise<void> {
    const gone = this.#running.filter((s) => s.ended);
    this.#running = this.#running.filter((s) => !s.ended);
    this.#waiting = this.#waiting.filter((s) => !s.ended);
    const release = gone.filter((s) => s.inEngine);
    if (release.length > 0) {
      try {
        await this.engine.release(release.map((s) => s.id));
      } catch (err) {
        this.observer.error(`releasing ${counted(release.length, 'sequence')} failed`, err);
      }
      for (const s of release) s.inEngine = false;
    }
    this.#report();
  }

  #admit(): void {
    while (this.#running.length < this.options.maxRunning && this.#waiting.length > 0) {
      const seq = this.#waiting.shift()!;
      // Cancelled while #reap awaited the engine: admitting it would revive it ('ended' ->
      // 'prefill') and generate silently up to max_tokens for a client that is gone.
      if (seq.ended) continue;
      seq.state = 'prefill';
      this.#running.push(seq);
    }
    this.#report();
  }

  #plan(): Planned[] {
    const plan: Planned[] = [];
    for (const seq of this.#running) {
      if (seq.state === 'decode') plan.push({ seq, tokens: [seq.nextToken], prefill: false });
    }
    // The running set is in admission order, so this is the oldest sequence still prefilling.
    const prefilling = this.#running.find((s) => s.state === 'prefill');
    if (prefilling) {
      const from = prefilling.prefilled;
      const tokens = prefilling.params.promptIds.slice(from, from + this.options.prefillChunk);
      plan.push({ seq: prefilling, tokens, prefill: true });
    }
    return plan;
  }

  async #step(plan: readonly Planned[]): Promise<void> {
    const started = performance.now();
    let result: EachStepResult;
    try {
      result = await this.engine.stepEach(plan.map((p) => stepRequest(p)));
    } catch (err) {
      this.#failStep(
        plan.map((p) => p.seq),
        err,
      );
      return;
    }
    const now = performance.now();
    const vocab = this.engine.info.vocabSize;
    let prefillTokens = 0;
    const failed = new Map(result.failed.map((f) => [f.index, f]));
    plan.forEach((p, i) => {
      const seq = p.seq;
      const failure = failed.get(i);
      if (failure) {
        this.#failAlone(seq, failure, plan.length - failed.size);
        return;
      }
      seq.inEngine = true;
      seq.processed += p.tokens.length;
      seq.activations += result.activations[i]!;
      seq.bytes += result.bytes[i]!;
      if (p.prefill) {
        prefillTokens += p.tokens.length;
        seq.prefilled += p.tokens.length;
      }
      // Cancelled while the step ran, or a chunk that did not finish the prompt: nothing to sample.
      if (seq.ended || seq.prefilled < seq.promptLength) return;
      const token = sampleToken(result.logits, i, vocab, seq.params.sampling, seq.rng);
      if (seq.lastTokenAt === undefined) this.observer.firstToken((now - seq.submittedAt) / 1000);
      else this.observer.interToken((now - seq.lastTokenAt) / 1000);
      seq.lastTokenAt = now;
      seq.accept(token);
    });
    this.observer.step({
      seconds: (now - started) / 1000,
      decodes: plan.length - (prefillTokens > 0 ? 1 : 0),
      prefillTokens,
    });
  }

  /** Steps per engine call for this plan: more than 1 only for one decoding sequence with nobody waiting. */
  #aloneSteps(plan: readonly Planned[]): number {
    const only = plan.length === 1 ? plan[0]! : undefined;
    if (!only || only.prefill || this.#waiting.length > 0) return 1;
    const seq = only.seq;
    const left = Math.min(
      seq.params.maxTokens - seq.generated,
      this.engine.info.maxPositions - seq.promptLength - seq.generated,
    );
    return Math.max(1, Math.min(left, DECODE_ALONE_MAX_STEPS));
  }

  /**
   * Up to `steps` decode steps of one sequence in one engine call, each token handled as it arrives.
   * The client receives what one step per call would send (the same sampling on the same logits,
   * the same stream of random numbers); a token sampled after the sequence ended (a stop string) is
   * dropped and its cache entry goes with the sequence when it is reaped.
   */
  async #decodeAlone(seq: Sequence, steps: number): Promise<void> {
    const stream = DecodeStream.create(steps);
    this.#interruptAlone = () => stream.interrupt();
    let delivered = 0;
    let last = performance.now();
    // Runs from the engine thread's progress messages, outside this loop's try: a failure here is
    // kept and rethrown below, where the loop turns it into a 500 as it does for a step.
    let broken: { error: unknown } | undefined;
    const deliver = (count: number) => {
      try {
        for (; delivered < count && !seq.ended && !broken; delivered++) {
          const now = performance.now();
          seq.processed++;
          seq.activations += stream.activations(delivered);
          seq.bytes += stream.bytes(delivered);
          this.observer.step({ seconds: (now - last) / 1000, decodes: 1, prefillTokens: 0 });
          this.observer.interToken((now - seq.lastTokenAt!) / 1000);
          seq.lastTokenAt = now;
          last = now;
          seq.accept(stream.token(delivered));
        }
      } catch (error) {
        broken ??= { error };
      }
      if (seq.ended || broken) stream.interrupt();
    };
    let result: DecodeEachResult;
    try {
      result = await this.engine.decodeEach(
        {
          seqId: seq.id,
          token: seq.nextToken,
          maxTokens: steps,
          sampling: seq.params.sampling,
          rngState: seq.rng.state(),
          stop: seq.params.ignoreEos ? [] : [...this.#eos],
          routing: seq.params.routing,
          stream: stream.buffer,
        },
        deliver,
      );
    } catch (err) {
      // The tokens delivered before the failure stay delivered.
      if (broken) this.observer.error(`sequence ${seq.id}: handling a streamed token failed`, broken.error);
      this.#failStep([seq], err);
      return;
    } finally {
      this.#interruptAlone = undefined;
    }
    // Progress reports arrive before the reply; this only catches up if one did not.
    deliver(result.tokens.length);
    if (broken) throw broken.error;
    seq.rng = Rng.fromState(result.rngState);
    if (result.failure && !seq.ended) this.#failAlone(seq, result.failure, 0);
  }

  /** A whole step (or a lone sequence's decode call) failed: every sequence in it ends. */
  #failStep(seqs: readonly Sequence[], err: unknown): void {
    // The engine dropped the caches it created in this step; sequences it already held are
    // released when they are reaped.
    this.observer.error(`engine step of ${counted(seqs.length, 'sequence')} failed`, err);
    // A PlacementError (code `placement`, from the cluster) means experts lost their last worker: 503.
    // (stepEach fails only the sequences routed to them; a whole step fails so only if it could
    // not tell which.)
    const error =
      err instanceof KmoeError && err.code === 'placement'
        ? new ExpertsUnavailableError(err.message)
        : new EngineStepError(err instanceof Error ? err.message : String(err), err);
    for (const seq of seqs) seq.fail(error);
  }

  /** A step failed for this sequence alone; `others` sequences of the step ran. */
  #failAlone(seq: Sequence, failure: StepFailure, others: number): void {
    if (failure.reason === 'routing' && failure.layer === undefined) {
      // The catalog validated this routing before admitting the request, so the engine failing
      // to resolve it (e.g. a loaded profile file changed on disk) is the server's fault: a 500
      // for this sequence alone.
      this.observer.error(
        `sequence ${seq.id}: the engine could not resolve its routing; the step ran for the ${others} others`,
        failure,
      );
      seq.fail(new EngineStepError(failure.message, undefined));
      return;
    }
    if (failure.reason === 'overflow') {
      // Nothing meaningful to sample from. The client's fault when it sent the routing's tables itself (an
      // inline profile, or the handle of one): a 400 naming kmoe.routing; otherwise the server's
      // model or profile: a 500.
      const sentTables = seq.params.routingText !== undefined || isInlineProfile(seq.params.routing);
      this.observer[sentTables ? 'warn' : 'error'](
        `sequence ${seq.id}: its hidden state overflowed; the step ran for the ${others} others`,
        failure,
      );
      seq.fail(
        sentTables
          ? new InvalidRequestError(failure.message, { param: 'kmoe.routing', code: 'invalid_routing' })
          : new EngineStepError(failure.message, undefined),
      );
      return;
    }
    if (failure.reason === 'routing') {
      // Its own routing refused its input (e.g. a profile's substitutes overflowed): this
      // sequence alone ends with a 400 naming kmoe.routing; the engine ran the step for the others.
      this.observer.warn(
        `sequence ${seq.id}: its routing failed; the step ran for the ${others} others`,
        failure,
      );
      seq.fail(new InvalidRequestError(failure.message, { param: 'kmoe.routing', code: 'invalid_routing' }));
      return;
    }
    // Routed to experts without a live worker: this sequence alone ends, with a 503 (or an
    // error event, once streaming) naming them; the engine ran the step for the others.
    const coverage = this.options.experts?.();
    const cluster = coverage && !coverage.covered && coverage.detail ? `; ${coverage.detail}` : '';
    // A warning: the cluster's state, said by its health (and /ready) already; at error level every
    // request sent during an outage was an error line.
    this.observer.warn(
      `sequence ${seq.id} needs experts that have no live worker; ${others === 0 ? 'no other sequence was in the step' : `the step ran for the ${others} others`}`,
      failure,
    );
    seq.fail(new ExpertsUnavailableError(`${failure.message}${cluster}`, failure.missing));
  }

  #whenIdle(): Promise<void> {
    if (this.#running.length === 0 && this.#waiting.length === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  #wakeUp(): void {
    this.#interruptAlone?.();
    const wake = this.#wake;
    this.#wake = undefined;
    this.#woken = true;
    wake?.();
  }

  #report(): void {
    this.observer.queue(this.#running.length, this.#waiting.length);
  }
}

/**
 * A planned sequence as the engine takes it. A routing handle's text rides with prefill steps
 * only: the engine keeps the policy of a sequence it first stepped with the handle.
 */
function stepRequest(p: Planned): StepRequest {
  const { routing, routingText } = p.seq.params;
  const base = { seqId: p.seq.id, tokens: p.tokens, routing };
  return p.prefill && routingText !== undefined ? { ...base, routingText } : base;
}
