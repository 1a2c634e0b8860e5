// `kmoe synth`: write a checkpoint with a real model's layout and shapes and random weights.
// Orchestration only: the options arrive parsed (program.ts), the work is coordinator/scale/synth.ts.

import { counted } from '../../../shared/text/counted.js';
import { ProgressBar } from '../../bench/report/progress.js';
import { presetConfig, type SynthPreset } from '../../scale/presets.js';
import { DEFAULT_SHARD_BYTES } from '../../scale/shard-layout.js';
import { writeSyntheticCheckpoint } from '../../scale/synth.js';
import { fmtBytes } from '../../scale/units.js';
import { synthLayers } from '../options.js';

export interface SynthOptions {
  readonly like: SynthPreset;
  readonly layers: number;
  readonly out: string;
  readonly seed: number;
  readonly shardSize?: number;
  readonly sparse?: boolean;
}

export async function run(o: SynthOptions): Promise<number> {
  const { like, layers, out: outDir, seed } = o;
  // --layers was checked against the preset before this module loaded.
  const maxLayers = synthLayers(o);
  const sparse = o.sparse ?? false;

  let bar: ProgressBar | undefined;
  let totalMiB = 0;
  const result = await writeSyntheticCheckpoint({
    config: presetConfig(like, layers),
    outDir,
    seed,
    shardBytes: o.shardSize ?? DEFAULT_SHARD_BYTES,
    sparse,
    onProgress: (pr) => {
      totalMiB = Math.max(1, Math.ceil(pr.totalBytes / 2 ** 20));
      bar ??= new ProgressBar({ label: 'synth', total: totalMiB, unit: 'MiB' });
      bar.update(Math.floor(pr.bytesWritten / 2 ** 20), pr.shard);
    },
  });
  // Done is all of it, also when the bytes written round down to 0 MiB (--sparse writes only norms).
  bar?.update(totalMiB);
  bar?.finish();
  const { layout } = result;
  const tokenizer =
    result.tokenizer.kind === 'copied'
      ? `copied from ${result.tokenizer.from}`
      : `minimal byte-fallback tokenizer with ${result.config.vocabSize} ids (no real Mixtral tokenizer here)`;
  process.stdout.write(
    `wrote ${outDir}: ${like} with ${layers} of ${maxLayers} layers, ${counted(layout.shards.length, 'shard')}, ` +
      `${fmtBytes(layout.totalSize)} of bf16 tensors${sparse ? ' (sparse: matrices are holes)' : ''}, seed ${seed}\n` +
      `tokenizer: ${tokenizer}\n`,
  );
  return 0;
}
