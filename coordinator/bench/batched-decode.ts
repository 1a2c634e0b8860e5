// Batched greedy decode as the server's scheduler runs it: every stream one sequence, one engine
// step per token for all of them. Shared by the benchmarks that time decode at a stream count.

import { CorpusError } from '../../shared/data/token-ids.js';
import type { EngineClient } from '../engine/engine-client.js';
import { argmax } from '../sampling.js';

/** Prompt tokens per stream, cut from the corpus at distinct offsets. */
export const BATCHED_PROMPT_TOKENS = 16;

export interface BatchedDecode {
  readonly wallMs: number;
  /** Expert activations summed over the timed steps, layers and streams. */
  readonly activations: number;
}

/**
 * Prefills `streams` prompts, then times `tokens` batched greedy steps (`beforeTimed` runs between
 * the two, e.g. to reset counters) and releases the sequences.
 */
export async function batchedDecode(
  engine: EngineClient,
  o: {
    readonly ids: Uint16Array;
    readonly streams: number;
    readonly tokens: number;
    readonly routing: string;
    /** Distinct per call: sequence ids are `${tag}-${stream}`. */
    readonly tag: string;
    readonly beforeTimed?: () => Promise<void>;
  },
): Promise<BatchedDecode> {
  const seqs = Array.from({ length: o.streams }, (_, s) => `${o.tag}-${s}`);
  const starts = o.ids.length - BATCHED_PROMPT_TOKENS + 1;
  if (starts < 1) {
    throw new CorpusError(
      `batched decode needs a corpus of at least ${BATCHED_PROMPT_TOKENS} token ids for its prompts; got ${o.ids.length}`,
      { hint: `give --ids a .u16 corpus of ${BATCHED_PROMPT_TOKENS} or more token ids` },
    );
  }
  // Distinct offsets while the corpus lasts; past its end they wrap (64 streams need 63 K ids).
  const prompts = seqs.map((_, s) => {
    const at = (s * 997) % starts;
    return Array.from(o.ids.subarray(at, at + BATCHED_PROMPT_TOKENS));
  });
  let step = await engine.step(seqs.map((seqId, s) => ({ seqId, tokens: prompts[s]!, routing: o.routing })));
  const V = step.logits.length / o.streams;
  let next = seqs.map((_, s) => argmax(step.logits.subarray(s * V, (s + 1) * V)));
  let activations = 0;
  await o.beforeTimed?.();
  const started = performance.now();
  for (let i = 0; i < o.tokens; i++) {
    step = await engine.step(seqs.map((seqId, s) => ({ seqId, tokens: [next[s]!], routing: o.routing })));
    activations += step.activations.reduce((a, b) => a + b, 0);
    next = seqs.map((_, s) => argmax(step.logits.subarray(s * V, (s + 1) * V)));
  }
  const wallMs = performance.now() - started;
  await engine.release(seqs);
  return { wallMs, activations };
}
