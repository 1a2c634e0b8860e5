// `kmoe generate`: stream a completion for one prompt to stdout.

import { KmoeTokenizer, StreamingDetokenizer } from '../../../shared/model/tokenizer.js';
import { counted } from '../../../shared/text/counted.js';
import { contextProblem } from '../../context-room.js';
import { EngineClient } from '../../engine/engine-client.js';
import { Rng, type SamplingParams, sampleToken, validateSampling } from '../../sampling.js';
import { checkPlacement, checkRouting, placeExperts, printWorkerLog, sessionSettings } from '../experts.js';
import { type ComputeOptions, type ExpertPlacementOptions, IN_PROCESS, singleRouting } from '../options.js';
import { whenStdoutCloses } from '../stdout-closed.js';
import { UsageError } from '../usage-error.js';
import { printSmallFrames } from '../worker-notices.js';

/** Decode steps per engine-thread round trip: the granularity at which tokens are streamed. */
const DECODE_CHUNK = 16;

export interface GenerateOptions extends ComputeOptions, ExpertPlacementOptions {
  readonly model: string;
  readonly prompt: string;
  readonly maxTokens: number;
  readonly temperature: number;
  readonly topP: number;
  readonly seed: number;
  readonly routing?: string[];
  readonly stats?: boolean;
}

export async function run(o: GenerateOptions): Promise<number> {
  const modelDir = o.model;
  const maxTokens = o.maxTokens;
  const sampling: SamplingParams = { temperature: o.temperature, topP: o.topP, seed: o.seed };
  const bad = validateSampling(sampling);
  if (bad) throw new UsageError(bad);
  const routingArg = singleRouting(o.routing);
  await checkRouting(modelDir, routingArg);
  const workers = o.workers ?? IN_PROCESS;
  await checkPlacement(modelDir, workers, o);
  const settings = sessionSettings(o);

  const tokenizer = await KmoeTokenizer.load(modelDir);
  const promptIds = tokenizer.encode(o.prompt);
  if (promptIds.length === 0) throw new UsageError('the prompt encodes to no tokens');
  const placed = await placeExperts(modelDir, workers, o, settings, {
    onLog: printWorkerLog,
  });
  let engine: EngineClient | undefined;
  // Nobody reads the completion any more: stop after the engine call in hand (stdout-closed.ts).
  let readerGone = false;
  const unregister = whenStdoutCloses(() => {
    readerGone = true;
  });
  try {
    engine = await EngineClient.start({
      modelDir,
      settings,
      experts: placed.experts,
      ...(routingArg === undefined ? {} : { defaultRouting: routingArg }),
    });
    printSmallFrames(engine, 'generate');
    const info = engine.info;
    // The server's limits, in its words: nothing is cut short silently.
    const tooLong = contextProblem(promptIds.length, maxTokens, info.maxPositions, '--max-tokens');
    if (tooLong) throw new UsageError(tooLong.message);
    const routing = info.defaultRouting;
    const eos = new Set(info.eosTokenIds);
    const rng = new Rng(sampling.seed ?? 0);
    const detok = new StreamingDetokenizer(tokenizer, promptIds);
    const started = performance.now();
    const step = await engine.step([{ seqId: 'generate', tokens: promptIds, routing }]);
    const firstToken = performance.now();
    let activations = step.activations[0]!;
    let bytes = step.bytes[0]!;
    let generated = 0;
    // Forward passes after the prompt's: each decode call returns one token per pass it ran, a
    // final end-of-sequence one included. The decode rate is timed over these alone.
    let decodeSteps = 0;
    // The first token comes from the prompt's logits; the rest are sampled on the engine thread,
    // DECODE_CHUNK steps per round trip (streamed chunk by chunk).
    let next = sampleToken(step.logits, 0, info.vocabSize, sampling, rng);
    let rngState = rng.state();
    while (!eos.has(next) && !readerGone) {
      generated++;
      process.stdout.write(detok.push(next));
      const room = maxTokens - generated;
      if (room <= 0) break;
      const d = await engine.decode({
        seqId: 'generate',
        token: next,
        maxTokens: Math.min(room, DECODE_CHUNK),
        sampling,
        rngState,
        stop: [...eos],
        routing,
      });
      activations += d.activations;
      bytes += d.bytes;
      rngState = d.rngState;
      decodeSteps += d.tokens.length;
      for (const t of d.tokens.slice(0, -1)) {
        generated++;
        process.stdout.write(detok.push(t));
      }
      next = d.tokens[d.tokens.length - 1]!;
    }
    if (readerGone) return 0;
    process.stdout.write(`${detok.flush()}\n`);
    if (o.stats) {
      const done = performance.now();
      const positions = (promptIds.length + decodeSteps) * info.routing.numLayers;
      process.stderr.write(
        `prompt ${counted(promptIds.length, 'token')} in ${(firstToken - started).toFixed(1)} ms; ` +
          `${generated} generated, ${decodeRate(generated, decodeSteps, done - firstToken)}; ` +
          `${(activations / positions).toFixed(3)} experts per token (routing ${routing})\n`,
      );
      if (info.placement.length > 0) {
        process.stderr.write(
          `network: ${(bytes / positions).toFixed(0)} bytes per token per MoE layer to ${counted(info.placement.length, 'worker')}\n`,
        );
      }
    }
  } finally {
    // Registered until the engine is closed: an EPIPE while it closes must not exit mid-close.
    await engine?.close();
    await placed.cluster?.stop();
    unregister();
  }
  return 0;
}

/**
 * The decode part of --stats: tokens/s over the decode passes, or why there is no rate. The first
 * token comes from the prompt's pass, so one generated token (or none, end of sequence first) times
 * no decode step, and a rate of 0 would read as a measurement.
 */
export function decodeRate(generated: number, decodeSteps: number, ms: number): string {
  if (decodeSteps === 0)
    return generated === 0
      ? 'decode n/a (no decode step: the first token was the end of sequence)'
      : "decode n/a (no decode step: the one token came from the prompt's pass)";
  return `decode ${((decodeSteps / ms) * 1000).toFixed(1)} tokens/s`;
}
