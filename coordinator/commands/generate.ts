// `kmoe generate`: stream a completion for one prompt to stdout.

import { UsageError } from '../../shared/errors/usage-error.js';
import { KmoeTokenizer, StreamingDetokenizer } from '../../shared/model/tokenizer.js';
import { EngineClient } from '../engine/engine-client.js';
import { GREEDY, Rng, type SamplingParams, sampleToken, validateSampling } from '../sampling.js';
import {
  COMPUTE_OPTIONS,
  checkRouting,
  EXPERT_OPTIONS,
  EXPERT_OPTIONS_USAGE,
  expertsOption,
  flag,
  num,
  optionalNum,
  parse,
  required,
  sessionSettings,
  str,
} from './args.js';

export const usage = `kmoe generate --model DIR --prompt TEXT [options]

  --model DIR          Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer.json)
  --prompt TEXT        prompt text (the tokenizer adds BOS if its config says so)
  --max-tokens N       tokens to generate (default 64)
  --temperature T      0 = greedy (default 0)
  --top-p P            nucleus sampling mass (default 1)
  --seed N             sampling seed (default 0)
  --routing SPEC|FILE  routing policy: topk:K | entropy:K1,K2@T1 | topp:P@KMIN-KMAX | ratio:BETA | profile.json
                       (default: the model's native top-K)
  --threads N          onnxruntime threads (default: all cores)
  --device cpu|cuda    execution provider (default cpu; cuda fails loudly if unavailable)
  --expert-weights F   fp32 (default) or int8: blockwise 8-bit expert weights, faster decode, approximate
  --stats              print tokens/s and experts per token (and network bytes) to stderr at the end
${EXPERT_OPTIONS_USAGE}`;

export async function run(argv: readonly string[]): Promise<number> {
  const p = parse(argv, {
    model: { type: 'string' },
    prompt: { type: 'string' },
    'max-tokens': { type: 'string' },
    temperature: { type: 'string' },
    'top-p': { type: 'string' },
    seed: { type: 'string' },
    routing: { type: 'string' },
    stats: { type: 'boolean' },
    ...COMPUTE_OPTIONS,
    ...EXPERT_OPTIONS,
  });
  const modelDir = required(p, 'model');
  const prompt = str(p, 'prompt');
  if (prompt === undefined) throw new UsageError('--prompt is required');
  const maxTokens = num(p, 'max-tokens', 64, { integer: true, min: 1 });
  const sampling: SamplingParams = {
    temperature: num(p, 'temperature', GREEDY.temperature),
    topP: num(p, 'top-p', GREEDY.topP),
    seed: optionalNum(p, 'seed', { integer: true }) ?? 0,
  };
  const bad = validateSampling(sampling);
  if (bad) throw new UsageError(bad);

  const tokenizer = await KmoeTokenizer.load(modelDir);
  const promptIds = tokenizer.encode(prompt);
  if (promptIds.length === 0) throw new UsageError('the prompt encodes to no tokens');
  const routingArg = str(p, 'routing');
  await checkRouting(modelDir, routingArg);
  const experts = expertsOption(p);
  const engine = await EngineClient.start({
    modelDir,
    settings: sessionSettings(p),
    experts,
    ...(routingArg === undefined ? {} : { defaultRouting: routingArg }),
  });
  try {
    const info = engine.info;
    const routing = info.defaultRouting;
    const eos = new Set(info.eosTokenIds);
    const rng = new Rng(sampling.seed ?? 0);
    const detok = new StreamingDetokenizer(tokenizer, promptIds);
    const started = performance.now();
    let step = await engine.step([{ seqId: 'generate', tokens: promptIds, routing }]);
    const firstToken = performance.now();
    let activations = step.activations[0]!;
    let bytes = step.bytes[0]!;
    let generated = 0;
    while (generated < maxTokens) {
      const next = sampleToken(step.logits, 0, info.vocabSize, sampling, rng);
      if (eos.has(next)) break;
      generated++;
      process.stdout.write(detok.push(next));
      if (generated === maxTokens || promptIds.length + generated >= info.maxPositions) break;
      step = await engine.step([{ seqId: 'generate', tokens: [next], routing }]);
      activations += step.activations[0]!;
      bytes += step.bytes[0]!;
    }
    process.stdout.write(`${detok.flush()}\n`);
    if (flag(p, 'stats')) {
      const done = performance.now();
      const decodeTps = generated > 1 ? ((generated - 1) / (done - firstToken)) * 1000 : 0;
      const positions = (promptIds.length + Math.max(0, generated - 1)) * info.numLayers;
      process.stderr.write(
        `prompt ${promptIds.length} tokens in ${(firstToken - started).toFixed(1)} ms; ` +
          `${generated} generated, decode ${decodeTps.toFixed(1)} tokens/s; ` +
          `${(activations / positions).toFixed(3)} experts per token (routing ${routing})\n`,
      );
      if (info.placement.length > 0) {
        process.stderr.write(
          `network: ${(bytes / positions).toFixed(0)} bytes per token per MoE layer to ${info.placement.length} workers\n`,
        );
      }
    }
  } finally {
    await engine.close();
  }
  return 0;
}
