// `kmoe synth`: a checkpoint with the exact Hugging Face layout, names, dtypes (bf16) and shapes
// of a real MoE model, seeded random weights and only L decoder layers. Written tensor by tensor
// in fixed-size chunks, so memory stays at one chunk whatever the model size.

import { open, readdir, statfs, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { familyOf } from '../../shared/families/registry.js';
import { INDEX_FILE_NAME, SYNTH_MARKER_FILE_NAME } from '../../shared/model/checkpoint.js';
import { CONFIG_FILE_NAME, loadModelConfig, type ModelConfig } from '../../shared/model/config.js';
import { DirectoryError } from '../../shared/runtime/errors.js';
import { makeDirectory } from '../../shared/runtime/make-directory.js';
import { SynthError } from './errors.js';
import type { HfConfigJson } from './presets.js';
import { Bf16Stream } from './prng.js';
import { type CheckpointLayout, DEFAULT_SHARD_BYTES, layoutCheckpoint } from './shard-layout.js';
import { type TokenizerOrigin, type TokenizerSource, writeSynthTokenizer } from './synth-tokenizer.js';

/** Values generated and written per write call: 8 MiB of bf16. */
const CHUNK_ELEMENTS = 4 << 20;

export interface SynthOptions {
  /** The config.json to write (e.g. presetConfig('mixtral-8x22b', 2)); validated before any weight is written. */
  readonly config: HfConfigJson;
  readonly outDir: string;
  readonly seed: number;
  /** Shard budget in bytes (default transformers' 5 GB). */
  readonly shardBytes?: number;
  /**
   * Layout only: headers, index, config, tokenizer and the 1-D norm weights are written, every
   * matrix is left as a hole of a sparse file (reads as zeros, takes no disk space). For checking
   * loaders and plans at full shapes in seconds; not for running the model.
   */
  readonly sparse?: boolean;
  /** Tokenizer files to copy when their vocabulary has exactly vocab_size ids. */
  readonly tokenizerSource?: TokenizerSource;
  readonly onProgress?: (p: SynthProgress) => void;
}

export interface SynthProgress {
  readonly bytesWritten: number;
  readonly totalBytes: number;
  readonly shard: string;
  readonly tensor: string;
}

export interface SynthResult {
  readonly config: ModelConfig;
  readonly layout: CheckpointLayout;
  readonly tokenizer: TokenizerOrigin;
  /** Tensor bytes actually written (all of them, or only the norms when sparse). */
  readonly bytesWritten: number;
}

export async function writeSyntheticCheckpoint(opts: SynthOptions): Promise<SynthResult> {
  const { outDir, seed } = opts;
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new SynthError(`seed must be an integer >= 0, got ${seed}`);
  await prepareOutDir(outDir);
  await writeFile(path.join(outDir, CONFIG_FILE_NAME), `${JSON.stringify(opts.config, null, 2)}\n`);
  // Read back through the loader's own entry point: a config it would reject is never written around.
  const config = await loadModelConfig(outDir);
  const layout = layoutCheckpoint(
    familyOf(config).tensorSpecs(config),
    opts.shardBytes ?? DEFAULT_SHARD_BYTES,
  );
  const sparse = opts.sparse ?? false;
  const toWrite = sparse ? sparseBytes(layout) : layout.totalSize;
  await checkFreeSpace(outDir, toWrite, sparse);

  // Marks the directory as synthetic; a sparse one is refused by everything that runs a model.
  await writeFile(
    path.join(outDir, SYNTH_MARKER_FILE_NAME),
    `${JSON.stringify({ synthetic: true, sparse, seed }, null, 2)}\n`,
  );
  await writeFile(
    path.join(outDir, 'generation_config.json'),
    `${JSON.stringify({ _from_model_config: true, bos_token_id: config.bosTokenId, eos_token_id: config.eosTokenId.length === 1 ? config.eosTokenId[0] : config.eosTokenId }, null, 2)}\n`,
  );
  const tokenizer = await writeSynthTokenizer(outDir, config.vocabSize, opts.tokenizerSource);

  let bytesWritten = 0;
  const chunk = new Uint16Array(CHUNK_ELEMENTS);
  for (const shard of layout.shards) {
    const file = path.join(outDir, shard.fileName);
    const handle = await open(file, 'w');
    try {
      await handle.write(shard.header, 0, shard.header.length, 0);
      for (const t of shard.tensors) {
        const isMatrix = t.spec.shape.length > 1;
        if (sparse && isMatrix) continue;
        let position = shard.header.length + t.dataOffsets[0];
        let left = t.byteLength / 2;
        const stream = isMatrix ? new Bf16Stream(seed, t.spec.name) : undefined;
        while (left > 0) {
          const n = Math.min(left, CHUNK_ELEMENTS);
          const view = chunk.subarray(0, n);
          // Norm weights are 1, as nn.RMSNorm initialises them; matrices are random.
          if (stream === undefined) view.fill(BF16_ONE);
          else stream.fill(view);
          await handle.write(new Uint8Array(view.buffer, 0, n * 2), 0, n * 2, position);
          position += n * 2;
          left -= n;
          bytesWritten += n * 2;
          opts.onProgress?.({
            bytesWritten,
            totalBytes: toWrite,
            shard: shard.fileName,
            tensor: t.spec.name,
          });
        }
      }
      // Sets the final size; in sparse mode the unwritten matrices become holes.
      await handle.truncate(shard.fileBytes);
    } catch (err) {
      throw new SynthError(
        `${file}: writing the shard failed (${err instanceof Error ? err.message : String(err)})`,
        {
          cause: err,
          details: { file },
          hint: `the checkpoint in ${outDir} is incomplete (no ${INDEX_FILE_NAME} was written); delete it and retry`,
        },
      );
    } finally {
      await handle.close();
    }
  }
  // Last: until the index exists the directory is not a loadable checkpoint.
  await writeFile(path.join(outDir, INDEX_FILE_NAME), `${JSON.stringify(layout.index, null, 2)}\n`);
  return { config, layout, tokenizer, bytesWritten };
}

/** bf16 bits of 1.0. */
const BF16_ONE = 0x3f80;

function sparseBytes(layout: CheckpointLayout): number {
  let n = 0;
  for (const s of layout.shards) for (const t of s.tensors) if (t.spec.shape.length === 1) n += t.byteLength;
  return n;
}

async function prepareOutDir(outDir: string): Promise<void> {
  try {
    makeDirectory(outDir);
  } catch (err) {
    const errno = err instanceof DirectoryError ? err.details['errno'] : undefined;
    if (errno !== 'EEXIST' && errno !== 'ENOTDIR') throw err;
    throw new SynthError(`${outDir} is not a directory`, {
      cause: err,
      details: { dir: outDir },
      hint: 'give --out a new or empty directory; kmoe synth never overwrites files',
    });
  }
  const existing = await readdir(outDir);
  if (existing.length > 0) {
    throw new SynthError(
      `${outDir} is not empty (${existing.slice(0, 5).join(', ')}${existing.length > 5 ? ', ...' : ''})`,
      {
        details: { dir: outDir },
        hint: 'give --out a new or empty directory; kmoe synth never overwrites files',
      },
    );
  }
}

async function checkFreeSpace(outDir: string, bytes: number, sparse: boolean): Promise<void> {
  const fs = await statfs(outDir);
  const free = fs.bavail * fs.bsize;
  // Headers, JSON files and filesystem overhead: 1% plus 16 MiB of room.
  const needed = bytes * 1.01 + (16 << 20);
  if (free < needed) {
    throw new SynthError(
      `${outDir}: ${(free / 1e9).toFixed(1)} GB free, the checkpoint needs ${(needed / 1e9).toFixed(1)} GB`,
      {
        details: { dir: outDir, freeBytes: free, neededBytes: Math.ceil(needed) },
        hint: sparse
          ? 'free some disk space'
          : 'use fewer --layers, another --out, or --sparse for a layout-only checkpoint',
      },
    );
  }
}
