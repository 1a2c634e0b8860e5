// The continuous-batching scheduler against a scripted engine: what each step carries (one token
// per decoding sequence, at most one prefill chunk, oldest first), admission limits, cancellation,
// engine failures and shutdown. The real engine is exercised end to end in serve.test.ts.

import { beforeAll, describe, expect, it } from 'vitest';
import { DecodeStream } from '../../../coordinator/engine/decode-stream.js';
import type {
  DecodeEachResult,
  EachStepResult,
  StepRequest,
  StreamedDecodeRequest,
} from '../../../coordinator/engine/engine.js';
import { Rng, sampleToken } from '../../../coordinator/sampling.js';
import { ServerBusyError, ShuttingDownError } from '../../../coordinator/server/errors.js';
import {
  DECODE_ALONE_MAX_STEPS,
  Scheduler,
  type SchedulerObserver,
  type SchedulerOptions,
  type StepEngine,
} from '../../../coordinator/server/scheduler.js';
import type { GenerationParams, SequenceEvent } from '../../../coordinator/server/sequence.js';
import { KmoeTokenizer } from '../../../shared/model/tokenizer.js';
import { MODEL_DIR } from '../../helpers/paths.js';

const VOCAB = 4096;
const EOS = 2;

/** An engine that tracks cached positions per sequence and always favours `next(seqId, position)`. */
class ScriptedEngine implements StepEngine {
  readonly info = { vocabSize: VOCAB, maxPositions: 4096, eosTokenIds: [EOS] };
  readonly steps: { seqId: string; tokens: number[]; cachedBefore: number }[][] = [];
  readonly cached = new Map<string, number>();
  failNext = false;
  /** Sequences whose next step fails alone, as if routed to experts 4 and 6 with no live worker. */
  readonly lostExperts = new Set<string>();
  /** Milliseconds each step takes. */
  delayMs = 0;
  /** Resolved before each step returns: lets a test hold the engine mid-step. */
  gate: Promise<void> = Promise.resolve();
  /** Resolved before each release returns: lets a test hold the scheduler inside #reap. */
  releaseGate: Promise<void> = Promise.resolve();
  releasing = 0;

  constructor(private readonly next: (seqId: string, position: number) => number = () => 300) {}

  async stepEach(requests: StepRequest[]): Promise<EachStepResult> {
    await this.gate;
    await new Promise((resolve) =>
      this.delayMs > 0 ? setTimeout(resolve, this.delayMs) : setImmediate(resolve),
    );
    if (this.failNext) {
      this.failNext = false;
      throw new Error('scripted failure');
    }
    const failed = requests.flatMap((r, index) =>
      this.lostExperts.has(r.seqId)
        ? [
            {
              index,
              reason: 'experts' as const,
              missing: [4, 6],
              layer: 0,
              message: 'layer 0: experts 4,6 have no live worker (failed: ws://b)',
            },
          ]
        : [],
    );
    this.steps.push(
      requests.map((r) => ({
        seqId: r.seqId,
        tokens: [...r.tokens],
        cachedBefore: this.cached.get(r.seqId) ?? 0,
      })),
    );
    const logits = new Float32Array(requests.length * VOCAB);
    requests.forEach((r, i) => {
      if (this.lostExperts.has(r.seqId)) return;
      const position = (this.cached.get(r.seqId) ?? 0) + r.tokens.length;
      this.cached.set(r.seqId, position);
      logits[i * VOCAB + this.next(r.seqId, position)] = 10;
    });
    return {
      logits,
      activations: requests.map((r) => r.tokens.length * 8),
      bytes: requests.map(() => 0),
      failed,
    };
  }

  /** Calls of decodeEach, and the steps each asked for. */
  readonly decodeCalls: { seqId: string; maxTokens: number }[] = [];

  /** Engine.decodeEach's contract over this engine's own steps (each recorded in `steps`). */
  async decodeEach(r: StreamedDecodeRequest, onTokens: (tokens: number) => void): Promise<DecodeEachResult> {
    this.decodeCalls.push({ seqId: r.seqId, maxTokens: r.maxTokens });
    const stream = DecodeStream.attach(r.stream);
    const rng = Rng.fromState(r.rngState);
    const tokens: number[] = [];
    let activations = 0;
    let token = r.token;
    while (tokens.length < r.maxTokens) {
      const step = await this.stepEach([{ seqId: r.seqId, tokens: [token] }]);
      const failure = step.failed[0];
      if (failure) return { tokens, rngState: rng.state(), activations, bytes: 0, failure };
      activations += step.activations[0]!;
      token = sampleToken(step.logits, 0, VOCAB, r.sampling, rng);
      stream.write(tokens.length, token, step.activations[0]!, 0);
      tokens.push(token);
      onTokens(tokens.length);
      if (r.stop.includes(token) || stream.interrupted) break;
    }
    return { tokens, rngState: rng.state(), activations, bytes: 0 };
  }

  async release(seqIds: string[]): Promise<number> {
    this.releasing++;
    await this.releaseGate;
    this.releasing--;
    let n = 0;
    for (const id of seqIds) if (this.cached.delete(id)) n++;
    return n;
  }
}

const quiet: SchedulerObserver = {
  queue: () => undefined,
  firstToken: () => undefined,
  interToken: () => undefined,
  step: () => undefined,
  error: () => undefined,
  warn: () => undefined,
};

let tokenizer: KmoeTokenizer;
beforeAll(async () => {
  tokenizer = await KmoeTokenizer.load(MODEL_DIR);
});

function params(
  promptLength: number,
  maxTokens: number,
  extra: Partial<GenerationParams> = {},
): GenerationParams {
  return {
    promptIds: Array.from({ length: promptLength }, (_, i) => 400 + (i % 50)),
    maxTokens,
    sampling: { temperature: 0, topP: 1, seed: 0 },
    stop: [],
    routing: 'topk:2',
    ignoreEos: false,
    ...extra,
  };
}

interface Collected {
  readonly events: SequenceEvent[];
  readonly done: Promise<SequenceEvent>;
  readonly sink: (e: SequenceEvent) => void;
}

function collector(): Collected {
  const events: SequenceEvent[] = [];
  let finish: (e: SequenceEvent) => void = () => undefined;
  const done = new Promise<SequenceEvent>((resolve) => {
    finish = resolve;
  });
  return {
    events,
    done,
    sink: (e) => {
      events.push(e);
      if (e.kind !== 'text') finish(e);
    },
  };
}

function scheduler(engine: StepEngine, options: Partial<SchedulerOptions> = {}): Scheduler {
  return new Scheduler(
    engine,
    tokenizer,
    { maxRunning: 16, maxQueued: 16, prefillChunk: 64, ...options },
    quiet,
  );
}

async function until(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + 5000;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not reached within 5 s');
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

describe('Scheduler', () => {
  it('puts one token per decoding sequence and at most one prefill chunk, oldest first, in each step', async () => {
    const engine = new ScriptedEngine();
    const s = scheduler(engine);
    const prompts = { a: 10, b: 150, c: 5 };
    const runs = Object.entries(prompts).map(([id, len]) => {
      const c = collector();
      s.submit(id, params(len, 6), c.sink);
      return c;
    });
    const ends = await Promise.all(runs.map((r) => r.done));
    for (const end of ends) {
      expect(end).toMatchObject({ kind: 'finish', reason: 'length', usage: { completionTokens: 6 } });
    }
    const isPrefill = (r: { seqId: string; cachedBefore: number }) =>
      r.cachedBefore < prompts[r.seqId as keyof typeof prompts];
    for (const step of engine.steps) {
      expect(step.filter(isPrefill).length).toBeLessThanOrEqual(1);
      for (const r of step) expect(r.tokens.length).toBe(isPrefill(r) ? Math.min(64, r.tokens.length) : 1);
    }
    // b's 150-token prompt goes in chunks of 64, 64, 22, after a's prompt and before c's.
    const chunks = engine.steps.flatMap((step, i) => step.filter(isPrefill).map((r) => ({ i, ...r })));
    expect(chunks.map((c) => [c.seqId, c.tokens.length])).toEqual([
      ['a', 10],
      ['b', 64],
      ['b', 64],
      ['b', 22],
      ['c', 5],
    ]);
    // a keeps decoding while b prefills: no sequence waits for another's whole prompt.
    for (const chunk of chunks.filter((c) => c.seqId === 'b')) {
      expect(engine.steps[chunk.i]!.some((r) => r.seqId === 'a' && !isPrefill(r))).toBe(true);
    }
    // Every ended sequence was released.
    await until(() => engine.cached.size === 0);
    expect(s.running).toBe(0);
    // Usage counts every token that went through the engine: the prompt and the fed-back tokens.
    expect(ends[1]).toMatchObject({
      usage: { promptTokens: 150, processedTokens: 155, activations: 155 * 8 },
    });
    await s.shutdown(0);
  });

  it('admits up to max-running, queues up to max-queued and refuses the rest with 429', async () => {
    const engine = new ScriptedEngine();
    let open: () => void = () => undefined;
    engine.gate = new Promise((resolve) => {
      open = resolve;
    });
    const s = scheduler(engine, { maxRunning: 1, maxQueued: 1 });
    const a = collector();
    const b = collector();
    s.submit('a', params(4, 2), a.sink);
    s.submit('b', params(4, 2), b.sink);
    expect(() => s.submit('c', params(4, 2), () => undefined)).toThrow(ServerBusyError);
    open();
    await Promise.all([a.done, b.done]);
    // Sequences ran one at a time: no step mixed a and b.
    expect(engine.steps.every((step) => new Set(step.map((r) => r.seqId)).size === 1)).toBe(true);
    const d = collector();
    s.submit('d', params(4, 2), d.sink);
    expect(await d.done).toMatchObject({ kind: 'finish' });
    await s.shutdown(0);
  });

  it('does not revive a waiting sequence cancelled while ended ones are being released', async () => {
    const engine = new ScriptedEngine();
    let open: () => void = () => undefined;
    engine.releaseGate = new Promise((resolve) => {
      open = resolve;
    });
    const s = scheduler(engine, { maxRunning: 1, maxQueued: 1 });
    const a = collector();
    const b = collector();
    s.submit('a', params(4, 2), a.sink);
    const handle = s.submit('b', params(4, 2000, { ignoreEos: true }), b.sink);
    await a.done;
    // a ended; the scheduler is inside #reap, awaiting the engine's release of a's cache.
    await until(() => engine.releasing === 1);
    handle.cancel();
    open();
    await until(() => s.running === 0 && s.waiting === 0);
    // Give a revived b the chance to run a step: none may carry it.
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(engine.steps.flat().some((r) => r.seqId === 'b')).toBe(false);
    expect(b.events).toEqual([]);
    expect(s.running).toBe(0);
    expect(engine.cached.size).toBe(0);
    await s.shutdown(0);
  });

  it('leaves no cancelled sequence counted as running when the loop goes idle', async () => {
    const engine = new ScriptedEngine();
    let open: () => void = () => undefined;
    engine.releaseGate = new Promise((resolve) => {
      open = resolve;
    });
    const s = scheduler(engine);
    const a = collector();
    s.submit('a', params(4, 2), a.sink);
    const handle = s.submit('b', params(4, 2000, { ignoreEos: true }), () => undefined);
    await a.done;
    await until(() => engine.releasing === 1);
    // Cancelled while the loop awaits the release of a: that wake-up must not be lost, or b
    // stays counted as running (and holds its KV cache) until another request wakes the loop.
    handle.cancel();
    open();
    await until(() => s.running === 0 && engine.cached.size === 0);
    await s.shutdown(0);
  });

  it('frees a cancelled sequence at the next step boundary and sends it nothing more', async () => {
    const engine = new ScriptedEngine();
    const s = scheduler(engine);
    const a = collector();
    const handle = s.submit('a', params(4, 1000), a.sink);
    await until(() => a.events.length >= 3);
    handle.cancel();
    const seen = a.events.length;
    await until(() => engine.cached.size === 0 && s.running === 0);
    expect(a.events.length).toBe(seen);
    expect(a.events.every((e) => e.kind === 'text')).toBe(true);
    await s.shutdown(0);
  });

  it('ends every sequence of a failed step with a 500 and keeps serving', async () => {
    const engine = new ScriptedEngine();
    const s = scheduler(engine);
    engine.failNext = true;
    const a = collector();
    s.submit('a', params(4, 3), a.sink);
    const end = await a.done;
    expect(end.kind).toBe('error');
    expect(end.kind === 'error' && end.error.status).toBe(500);
    expect(end.kind === 'error' && end.error.message).toMatch(/scripted failure/);
    const b = collector();
    s.submit('b', params(4, 3), b.sink);
    expect(await b.done).toMatchObject({ kind: 'finish', reason: 'length' });
    await s.shutdown(0);
  });

  it('ends only the sequences a step failed alone (lost experts) with a 503 naming the experts', async () => {
    const engine = new ScriptedEngine();
    const s = scheduler(engine, {
      experts: () => ({
        description: 'x',
        covered: false,
        missing: [4, 5, 6, 7],
        detail: 'experts 4-7 have no live worker: worker ws://b exited',
      }),
    });
    const a = collector();
    const b = collector();
    const c = collector();
    s.submit('a', params(4, 5), a.sink);
    // b fails in its first step (prefill: its cache was never created), c after two tokens.
    engine.lostExperts.add('b');
    s.submit('b', params(4, 5), b.sink);
    s.submit('c', params(4, 5), (e) => {
      c.sink(e);
      if (c.events.length === 2) engine.lostExperts.add('c');
    });
    expect(await a.done).toMatchObject({ kind: 'finish', reason: 'length', usage: { completionTokens: 5 } });
    for (const [run, generated] of [
      [b, 0],
      [c, 2],
    ] as const) {
      const end = await run.done;
      expect(end).toMatchObject({ kind: 'error', usage: { completionTokens: generated } });
      if (end.kind !== 'error') continue;
      expect(end.error.status).toBe(503);
      expect(end.error.code).toBe('experts_unavailable');
      expect(end.error.message).toBe(
        'this request needs experts 4,6, which no live worker holds (layer 0: experts 4,6 have no live worker (failed: ws://b); experts 4-7 have no live worker: worker ws://b exited)',
      );
    }
    // c's cache (held since its prefill) is released once it ended; nothing is left.
    await until(() => s.running === 0 && engine.cached.size === 0);
    await s.shutdown(0);
  });

  it('decodes a sequence that is alone several steps per engine call, sending what one step per call sends', async () => {
    // Sampled at temperature 1 from a scripted distribution (the favoured token wins ~84% of the
    // time), so the stream of random numbers must carry over between calls and threads exactly.
    const next = (_: string, position: number) => 300 + (position % 13);
    const sampled = { temperature: 1, topP: 1, seed: 5 };
    const run = async (extra: Partial<GenerationParams>, accompanied: boolean) => {
      const engine = new ScriptedEngine(next);
      const s = scheduler(engine);
      const a = collector();
      // The companion decodes for as long as `a` does, so `a` is never alone: one step per call.
      const companion = accompanied
        ? s.submit('z', params(4, 100_000, { ignoreEos: true }), () => undefined)
        : undefined;
      s.submit('a', params(4, 37, { sampling: sampled, ...extra }), a.sink);
      await a.done;
      companion?.cancel();
      await s.shutdown(0);
      const steps = engine.decodeCalls.filter((c) => c.seqId === 'a').map((c) => c.maxTokens);
      return { events: a.events, steps };
    };
    const alone = await run({}, false);
    const together = await run({}, true);
    expect(together.steps).toEqual([]);
    expect(alone.steps.length).toBeGreaterThan(0);
    expect(Math.max(...alone.steps)).toBeGreaterThan(1);
    expect(Math.max(...alone.steps)).toBeLessThanOrEqual(DECODE_ALONE_MAX_STEPS);
    expect(alone.events).toEqual(together.events);
    expect(alone.events.at(-1)).toMatchObject({
      kind: 'finish',
      reason: 'length',
      usage: { completionTokens: 37, processedTokens: 4 + 36 },
    });
    // A stop string in the middle of a call: tokens sampled after it are dropped, and the text ends
    // where it would have.
    const text = alone.events.flatMap((e) => (e.kind === 'text' ? [e.text] : [])).join('');
    const stop = text.slice(Math.floor(text.length / 2), Math.floor(text.length / 2) + 3);
    const stoppedAlone = await run({ stop: [stop] }, false);
    const stoppedTogether = await run({ stop: [stop] }, true);
    expect(stoppedAlone.events).toEqual(stoppedTogether.events);
    expect(stoppedAlone.events.at(-1)).toMatchObject({ kind: 'finish', reason: 'stop' });
  });

  it('admits a request that arrives while another sequence decodes alone', async () => {
    const engine = new ScriptedEngine();
    engine.delayMs = 1;
    const s = scheduler(engine);
    const a = collector();
    const handle = s.submit('a', params(4, 100_000, { ignoreEos: true }), a.sink);
    await until(() => engine.decodeCalls.length > 0);
    const b = collector();
    s.submit('b', params(4, 3), b.sink);
    expect(await b.done).toMatchObject({ kind: 'finish', reason: 'length', usage: { completionTokens: 3 } });
    expect(a.events.every((e) => e.kind === 'text')).toBe(true);
    handle.cancel();
    await s.shutdown(0);
  });

  it('ends a sequence alone whose experts are lost in the middle of a call with a 503, after its earlier text', async () => {
    const engine: ScriptedEngine = new ScriptedEngine((id, position) => {
      // Lost after the token sampled at position 12 (the 9th: the prompt fills 0-3).
      if (position === 12) engine.lostExperts.add(id);
      return 300;
    });
    const s = scheduler(engine);
    const a = collector();
    s.submit('a', params(4, 30), a.sink);
    const end = await a.done;
    expect(engine.decodeCalls.length).toBeGreaterThan(0);
    expect(end).toMatchObject({ kind: 'error', usage: { completionTokens: 9 } });
    expect(end.kind === 'error' && end.error.status).toBe(503);
    expect(end.kind === 'error' && end.error.code).toBe('experts_unavailable');
    await until(() => s.running === 0 && engine.cached.size === 0);
    await s.shutdown(0);
  });

  it('stops at EOS (not counted) unless ignore_eos is set', async () => {
    // The third generated token is EOS: the prompt fills positions 0-3, the first token is sampled
    // at position 4, the third at position 6.
    const engine = new ScriptedEngine((_, position) => (position === 6 ? EOS : 300));
    const s = scheduler(engine);
    const a = collector();
    const b = collector();
    s.submit('a', params(4, 10), a.sink);
    s.submit('b', params(4, 10, { ignoreEos: true }), b.sink);
    expect(await a.done).toMatchObject({ kind: 'finish', reason: 'stop', usage: { completionTokens: 2 } });
    expect(await b.done).toMatchObject({ kind: 'finish', reason: 'length', usage: { completionTokens: 10 } });
    await s.shutdown(0);
  });

  it('on shutdown lets short sequences finish, cuts the rest with an error and refuses new work', async () => {
    const engine = new ScriptedEngine();
    engine.delayMs = 1;
    const s = scheduler(engine);
    const short = collector();
    const long = collector();
    s.submit('short', params(4, 3), short.sink);
    s.submit('long', params(4, 3000, { ignoreEos: true }), long.sink);
    const report = await s.shutdown(100);
    expect(report.cancelled).toBe(1);
    expect(await short.done).toMatchObject({ kind: 'finish' });
    const end = await long.done;
    expect(end.kind === 'error' && end.error.code).toBe('shutting_down');
    expect(engine.cached.size).toBe(0);
    expect(() => s.submit('late', params(4, 3), () => undefined)).toThrow(ShuttingDownError);
  });
});
