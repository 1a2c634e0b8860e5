// One generation as the scheduler tracks it: prompt and limits, how far its prefill has got, and
// the path from sampled ids to client text (streaming detokenizer, stop strings, EOS, max_tokens,
// context limit). Events go to the sink of the HTTP request that owns it.

import { type KmoeTokenizer, StreamingDetokenizer } from '../../shared/model/tokenizer.js';
import { Rng, type SamplingParams } from '../sampling.js';
import type { ApiError } from './errors.js';
import { StopMatcher } from './stop-matcher.js';

export type FinishReason = 'stop' | 'length';

export interface GenerationParams {
  readonly promptIds: readonly number[];
  readonly maxTokens: number;
  readonly sampling: SamplingParams & { readonly seed: number };
  readonly stop: readonly string[];
  /** Routing spec, preloaded profile path, inline profile or routing handle, as the engine resolves it. */
  readonly routing: string;
  /** The text `routing` stands for when it is a handle (sent with prefill steps only). */
  readonly routingText?: string;
  /** Keep generating through EOS (benchmarks want fixed output lengths). */
  readonly ignoreEos: boolean;
}

export interface SequenceUsage {
  readonly promptTokens: number;
  /** Generated tokens; an EOS that ended the generation is not counted (nor shown). */
  readonly completionTokens: number;
  /** Tokens that went through the forward pass: the prompt plus generated tokens fed back. */
  readonly processedTokens: number;
  /** Expert-token activations over all layers for those tokens. */
  readonly activations: number;
  /** Bytes moved to and from remote experts for those tokens. */
  readonly bytes: number;
}

export type SequenceEvent =
  | { readonly kind: 'text'; readonly text: string }
  | { readonly kind: 'finish'; readonly reason: FinishReason; readonly usage: SequenceUsage }
  | { readonly kind: 'error'; readonly error: ApiError; readonly usage: SequenceUsage };

export type SequenceSink = (event: SequenceEvent) => void;

export type SequenceState = 'waiting' | 'prefill' | 'decode' | 'ended';

export interface SequenceLimits {
  readonly eosTokenIds: ReadonlySet<number>;
  readonly maxPositions: number;
}

export class Sequence {
  state: SequenceState = 'waiting';
  /** The engine holds a KV cache for this sequence (it took part in a successful step). */
  inEngine = false;
  /** Client gone: no more events, released at the next step boundary. */
  cancelled = false;
  prefilled = 0;
  /** Sampled but not yet fed back: the input of this sequence's next decode step. */
  nextToken = -1;
  generated = 0;
  processed = 0;
  activations = 0;
  bytes = 0;
  readonly submittedAt = performance.now();
  lastTokenAt: number | undefined;
  /** The sampling stream; a decode call on the engine thread continues it and hands it back. */
  rng: Rng;
  readonly #detokenizer: StreamingDetokenizer;
  readonly #stop: StopMatcher;

  constructor(
    readonly id: string,
    readonly params: GenerationParams,
    tokenizer: KmoeTokenizer,
    private readonly limits: SequenceLimits,
    private readonly sink: SequenceSink,
  ) {
    this.rng = new Rng(params.sampling.seed);
    this.#detokenizer = new StreamingDetokenizer(tokenizer, params.promptIds);
    this.#stop = new StopMatcher(params.stop);
  }

  get ended(): boolean {
    return this.state === 'ended';
  }

  get promptLength(): number {
    return this.params.promptIds.length;
  }

  /** Takes a sampled token: emits the text it completes and ends the sequence when a limit is hit. */
  accept(token: number): void {
    if (!this.params.ignoreEos && this.limits.eosTokenIds.has(token)) {
      this.#finish('stop');
      return;
    }
    this.generated++;
    const { text, stopped } = this.#stop.push(this.#detokenizer.push(token));
    if (text !== '') this.#emit({ kind: 'text', text });
    if (stopped) {
      this.state = 'ended';
      this.#emit({ kind: 'finish', reason: 'stop', usage: this.usage() });
    } else if (
      this.generated >= this.params.maxTokens ||
      this.promptLength + this.generated >= this.limits.maxPositions
    ) {
      this.#finish('length');
    } else {
      this.nextToken = token;
      this.state = 'decode';
    }
  }

  /** Ends the sequence with an error event (shutdown deadline, engine failure). */
  fail(error: ApiError): void {
    if (this.ended) return;
    this.state = 'ended';
    this.#emit({ kind: 'error', error, usage: this.usage() });
  }

  /** Ends the sequence silently: its client is gone. */
  cancel(): void {
    this.cancelled = true;
    this.state = 'ended';
  }

  usage(): SequenceUsage {
    return {
      promptTokens: this.promptLength,
      completionTokens: this.generated,
      processedTokens: this.processed,
      activations: this.activations,
      bytes: this.bytes,
    };
  }

  #finish(reason: FinishReason): void {
    // Text held back for an incomplete character or a possible stop string is final now, and may
    // itself complete a stop string.
    const tail = this.#stop.push(this.#detokenizer.flush());
    const text = tail.stopped ? tail.text : tail.text + this.#stop.flush();
    if (text !== '') this.#emit({ kind: 'text', text });
    this.state = 'ended';
    this.#emit({ kind: 'finish', reason: tail.stopped ? 'stop' : reason, usage: this.usage() });
  }

  #emit(event: SequenceEvent): void {
    if (!this.cancelled) this.sink(event);
  }
}
