// `kmoe synth`: write a checkpoint with a real model's layout and shapes and random weights.
// Thin: options are parsed here, the work is coordinator/scale/synth.ts.

import { UsageError } from '../../shared/errors/usage-error.js';
import { ProgressBar } from '../../shared/report/progress.js';
import { fmtBytes, parseByteSize } from '../scale/memory-plan.js';
import { isSynthPreset, presetConfig, SYNTH_PRESETS } from '../scale/presets.js';
import { DEFAULT_SHARD_BYTES } from '../scale/shard-layout.js';
import { writeSyntheticCheckpoint } from '../scale/synth.js';
import { flag, num, parse, required, str } from './args.js';

export const usage = `kmoe synth --like MODEL --layers L --out DIR [options]

Writes a checkpoint in the exact Hugging Face layout of MODEL: its config.json (with
num_hidden_layers = L), bf16 tensors with the real names and shapes, sharded with a
model.safetensors.index.json, seeded random weights (uniform, std 0.02; norms 1) and a minimal
byte-fallback tokenizer.json with exactly vocab_size ids (the real tokenizer is not available here).
Sizes in bf16: Mixtral 8x22B 5.0 GB per layer + 0.8 GB embeddings and LM head (L=1: 5.8 GB);
8x7B 2.9 GB per layer + 0.5 GB (L=1: 3.4 GB).

  --like MODEL         ${SYNTH_PRESETS.join(' | ')}
  --layers L           decoder layers to write (1 .. the real model's count)
  --out DIR            new or empty directory
  --seed S             weight seed (default 0); the same seed gives the same bytes
  --shard-size SIZE    shard budget, e.g. 5GB, 512MiB (default ${DEFAULT_SHARD_BYTES / 1e9}GB, as transformers)
  --sparse             layout only: headers, index and norms; matrices are holes of sparse files
                       (zeros, no disk space): for loader and plan checks, not for running`;

export async function run(argv: readonly string[]): Promise<number> {
  const p = parse(argv, {
    like: { type: 'string' },
    layers: { type: 'string' },
    out: { type: 'string' },
    seed: { type: 'string' },
    'shard-size': { type: 'string' },
    sparse: { type: 'boolean' },
  });
  const like = required(p, 'like');
  if (!isSynthPreset(like))
    throw new UsageError(`--like must be one of ${SYNTH_PRESETS.join(', ')}, got '${like}'`);
  if (str(p, 'layers') === undefined) throw new UsageError('--layers is required');
  const maxLayers = presetConfig(like)['num_hidden_layers'] as number;
  const layers = num(p, 'layers', 1, { integer: true, min: 1, max: maxLayers });
  const outDir = required(p, 'out');
  const seed = num(p, 'seed', 0, { integer: true, min: 0, max: 2 ** 32 - 1 });
  const shardArg = str(p, 'shard-size');
  let shardBytes = DEFAULT_SHARD_BYTES;
  if (shardArg !== undefined) {
    try {
      shardBytes = parseByteSize(shardArg);
    } catch (err) {
      throw new UsageError(`--shard-size: ${err instanceof Error ? err.message : String(err)}`);
    }
    if (shardBytes < 1) throw new UsageError('--shard-size must be at least 1 byte');
  }
  const sparse = flag(p, 'sparse');

  let bar: ProgressBar | undefined;
  const result = await writeSyntheticCheckpoint({
    config: presetConfig(like, layers),
    outDir,
    seed,
    shardBytes,
    sparse,
    onProgress: (pr) => {
      bar ??= new ProgressBar({
        label: 'synth',
        total: Math.max(1, Math.ceil(pr.totalBytes / 2 ** 20)),
        unit: 'MiB',
      });
      bar.update(Math.floor(pr.bytesWritten / 2 ** 20), pr.shard);
    },
  });
  bar?.finish();
  const { layout } = result;
  const tokenizer =
    result.tokenizer.kind === 'copied'
      ? `copied from ${result.tokenizer.from}`
      : `minimal byte-fallback tokenizer with ${result.config.vocabSize} ids (no real Mixtral tokenizer here)`;
  process.stdout.write(
    `wrote ${outDir}: ${like} with ${layers} of ${maxLayers} layers, ${layout.shards.length} shards, ` +
      `${fmtBytes(layout.totalSize)} of bf16 tensors${sparse ? ' (sparse: matrices are holes)' : ''}, seed ${seed}\n` +
      `tokenizer: ${tokenizer}\n`,
  );
  return 0;
}
