// A Hugging Face checkpoint directory as one object: validated config, every tensor by name
// across shards (headers checked at open, data read lazily per tensor), shape checks against
// the model family's tensor table, and a fingerprint that two processes compare to know they hold the same model.

import { createHash } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { bf16ToF32, f16ToF32 } from '../dtype.js';
import type { ModelFamily } from '../families/family.js';
import { familyOf } from '../families/registry.js';
import type { TensorSpec } from '../families/tensor-table.js';
import { type F32Tensor, f32 } from '../tensor.js';
import { type ModelConfig, readModelConfigFile } from './config.js';
import { CheckpointError } from './errors.js';
import { type SafetensorsDType, SafetensorsFile, type StoredTensor } from './safetensors.js';

export const SINGLE_FILE_NAME = 'model.safetensors';
export const INDEX_FILE_NAME = 'model.safetensors.index.json';
/** Written by `kmoe synth`: `{ "sparse": true }` marks a layout-only checkpoint (matrices are holes). */
export const SYNTH_MARKER_FILE_NAME = 'kmoe_synth.json';

export interface CheckpointTensorInfo {
  readonly name: string;
  readonly dtype: SafetensorsDType;
  readonly shape: readonly number[];
  /** Path of the safetensors file that holds the tensor. */
  readonly file: string;
  readonly byteLength: number;
}

const indexSchema = z.object({
  metadata: z.record(z.string(), z.unknown()).optional(),
  weight_map: z.record(z.string(), z.string()),
});

// How many names an error message lists before summarising the rest.
const MAX_LISTED = 20;

export class Checkpoint {
  readonly dir: string;
  readonly config: ModelConfig;
  /** The family its config.json names: tensor table, graphs, layer plan. */
  readonly family: ModelFamily;

  readonly #rawConfig: unknown;
  readonly #files: readonly SafetensorsFile[];
  readonly #tensors: ReadonlyMap<string, SafetensorsFile>;
  readonly #specs: ReadonlyMap<string, TensorSpec>;
  #fingerprint: string | undefined;

  private constructor(
    dir: string,
    config: ModelConfig,
    rawConfig: unknown,
    files: SafetensorsFile[],
    tensors: Map<string, SafetensorsFile>,
  ) {
    this.dir = dir;
    this.config = config;
    this.family = familyOf(config);
    this.#rawConfig = rawConfig;
    this.#files = files;
    this.#tensors = tensors;
    this.#specs = new Map(this.family.tensorSpecs(config).map((s) => [s.name, s]));
  }

  /**
   * Loads config.json and the headers of every weights file, checking that the shard index and
   * the shards agree. No tensor data is read until asked for.
   */
  static async open(dir: string): Promise<Checkpoint> {
    const { config, raw } = await readModelConfigFile(dir);
    refuseQuantized(dir, raw);
    const weights = await weightsFileOf(dir);
    if (weights?.kind === 'single') {
      const file = await SafetensorsFile.open(weights.file);
      return new Checkpoint(dir, config, raw, [file], new Map(file.names().map((n) => [n, file])));
    }
    if (weights?.kind === 'index') {
      const { files, tensors } = await openSharded(dir);
      return new Checkpoint(dir, config, raw, files, tensors);
    }
    throw new CheckpointError(`${dir}: no ${SINGLE_FILE_NAME} and no ${INDEX_FILE_NAME}`, {
      dir,
      hint: 'kmoe loads Hugging Face checkpoints in safetensors format; convert .bin/.pt weights first',
    });
  }

  /** Header bytes of every shard plus every tensor byte read so far. */
  get bytesRead(): number {
    return this.#files.reduce((sum, f) => sum + f.bytesRead, 0);
  }

  /** Tensor names, sorted. */
  names(): string[] {
    return [...this.#tensors.keys()].sort();
  }

  has(name: string): boolean {
    return this.#tensors.has(name);
  }

  info(name: string): CheckpointTensorInfo {
    const file = this.#fileOf(name);
    const { dtype, shape, byteLength } = file.info(name);
    return { name, dtype, shape, file: file.path, byteLength };
  }

  /** The tensor as stored (bf16/f16/f32), for callers that keep or send the storage format. */
  async read(name: string, expectShape?: readonly number[]): Promise<StoredTensor> {
    const file = this.#fileOf(name);
    this.#checkShape(name, file, expectShape);
    return file.read(name);
  }

  /**
   * The tensor widened to fp32. Its shape is checked before any data is read: against
   * `expectShape` if given, and against the architecture table if the tensor is in it.
   */
  async readF32(name: string, expectShape?: readonly number[]): Promise<F32Tensor> {
    const stored = await this.read(name, expectShape);
    switch (stored.dtype) {
      case 'float32':
        return f32(stored.shape, stored.data);
      case 'bfloat16':
        return f32(stored.shape, bf16ToF32(stored.data));
      case 'float16':
        return f32(stored.shape, f16ToF32(stored.data));
    }
  }

  /**
   * Checks that every tensor the architecture needs for this config is present with the right
   * shape. Tensors the table does not know are left alone (transformers ignores them too).
   */
  validateArchitecture(): void {
    const missing: string[] = [];
    const wrongShape: string[] = [];
    for (const spec of this.#specs.values()) {
      const file = this.#tensors.get(spec.name);
      if (file === undefined) {
        if (spec.required) missing.push(spec.name);
        continue;
      }
      const { shape } = file.info(spec.name);
      if (!sameShape(shape, spec.shape)) {
        wrongShape.push(
          `${spec.name} in ${file.path} is ${fmtShape(shape)}, expected ${fmtShape(spec.shape)}`,
        );
      }
    }
    if (missing.length === 0 && wrongShape.length === 0) return;
    const parts: string[] = [];
    if (missing.length > 0) parts.push(`missing ${missing.length} tensors: ${listSome(missing)}`);
    if (wrongShape.length > 0)
      parts.push(`${wrongShape.length} tensors of the wrong shape: ${listSome(wrongShape)}`);
    throw new CheckpointError(
      `${this.dir}: does not match the ${this.config.modelType} architecture described by its config.json; ${parts.join('; ')}`,
      { dir: this.dir, hint: 'config.json and the weights disagree: check they come from the same model' },
    );
  }

  /**
   * sha256 (hex) of a canonical JSON of the whole config.json (keys sorted, formatting dropped)
   * and the sorted (name, dtype, shape) of every tensor. How the weights are split into shards
   * is deliberately left out: a resharded copy is the same model.
   */
  fingerprint(): string {
    if (this.#fingerprint === undefined) {
      const tensors = this.names().map((name) => {
        const { dtype, shape } = this.info(name);
        return [name, dtype, shape];
      });
      const canonical = canonicalJson({ config: this.#rawConfig, tensors });
      this.#fingerprint = createHash('sha256').update(canonical).digest('hex');
    }
    return this.#fingerprint;
  }

  async close(): Promise<void> {
    await Promise.all(this.#files.map((f) => f.close()));
  }

  #fileOf(name: string): SafetensorsFile {
    const file = this.#tensors.get(name);
    if (file === undefined) {
      throw new CheckpointError(`${this.dir}: the checkpoint has no tensor "${name}"`, {
        dir: this.dir,
        tensor: name,
      });
    }
    return file;
  }

  #checkShape(name: string, file: SafetensorsFile, expectShape: readonly number[] | undefined): void {
    const { shape } = file.info(name);
    const fromTable = this.#specs.get(name)?.shape;
    for (const [expected, why] of [
      [expectShape, 'the caller expects'],
      [fromTable, `the ${this.config.modelType} architecture expects for this config.json`],
    ] as const) {
      if (expected !== undefined && !sameShape(shape, expected)) {
        throw new CheckpointError(
          `tensor "${name}" in ${file.path} has shape ${fmtShape(shape)}, but ${why} ${fmtShape(expected)}`,
          { dir: this.dir, file: file.path, tensor: name },
        );
      }
    }
  }
}

async function openSharded(
  dir: string,
): Promise<{ files: SafetensorsFile[]; tensors: Map<string, SafetensorsFile> }> {
  const indexPath = path.join(dir, INDEX_FILE_NAME);
  const fail = (message: string, extra: { file?: string; tensor?: string; cause?: unknown } = {}): never => {
    throw new CheckpointError(`${indexPath}: ${message}`, { dir, ...extra });
  };

  let parsed: unknown;
  try {
    parsed = JSON.parse(await readFile(indexPath, 'utf8'));
  } catch (err) {
    fail(`cannot read the shard index (${err instanceof Error ? err.message : String(err)})`, { cause: err });
  }
  const index = indexSchema.safeParse(parsed);
  if (!index.success) return fail('expected {"weight_map": {tensor name: shard file name}}');
  const weightMap = index.data.weight_map;
  if (Object.keys(weightMap).length === 0) fail('weight_map is empty');

  const byShard = new Map<string, string[]>();
  for (const [tensor, shard] of Object.entries(weightMap)) {
    // Shards live next to the index; refusing paths keeps an index from reading files elsewhere.
    if (shard !== path.basename(shard) || shard === '.' || shard === '..') {
      fail(`tensor "${tensor}" maps to "${shard}", which is not a plain file name in ${dir}`, { tensor });
    }
    const list = byShard.get(shard);
    if (list === undefined) byShard.set(shard, [tensor]);
    else list.push(tensor);
  }

  const files: SafetensorsFile[] = [];
  const tensors = new Map<string, SafetensorsFile>();
  try {
    for (const [shard, names] of byShard) {
      const shardPath = path.join(dir, shard);
      if (!(await isFile(shardPath))) {
        fail(`maps ${names.length} tensors (${listSome(names)}) to ${shardPath}, which does not exist`, {
          file: shardPath,
          tensor: names[0],
        });
      }
      const file = await SafetensorsFile.open(shardPath);
      files.push(file);
      const absent = names.filter((n) => !file.has(n));
      if (absent.length > 0) {
        fail(
          `maps ${absent.length} tensors to ${shardPath} that the file does not contain: ${listSome(absent)}`,
          {
            file: shardPath,
            tensor: absent[0],
          },
        );
      }
      for (const n of names) tensors.set(n, file);
    }
  } catch (err) {
    await Promise.all(files.map((f) => f.close()));
    throw err;
  }
  return { files, tensors };
}

/**
 * Where a checkpoint directory keeps its weights: one model.safetensors, or a shard index. Same
 * precedence as transformers: a single model.safetensors wins over an index. Undefined: neither.
 */
export async function weightsFileOf(
  dir: string,
): Promise<{ readonly kind: 'single' | 'index'; readonly file: string } | undefined> {
  const single = path.join(dir, SINGLE_FILE_NAME);
  if (await isFile(single)) return { kind: 'single', file: single };
  const index = path.join(dir, INDEX_FILE_NAME);
  if (await isFile(index)) return { kind: 'index', file: index };
  return undefined;
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/**
 * Refuses a sparse synthetic checkpoint (`kmoe synth --sparse`): its matrices are holes that read
 * as zeros, so running it only burns time and memory. Called by what runs a model (engine,
 * worker), not by Checkpoint.open: `kmoe plan` and loader checks open such checkpoints on purpose.
 */
export async function assertRunnable(dir: string): Promise<void> {
  const marker = path.join(dir, SYNTH_MARKER_FILE_NAME);
  let text: string;
  try {
    text = await readFile(marker, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  let sparse = false;
  try {
    sparse = (JSON.parse(text) as { sparse?: unknown }).sparse === true;
  } catch {
    // An unreadable marker does not make the weights any less real.
  }
  if (sparse)
    throw new CheckpointError(
      `${dir}: sparse synthetic checkpoint (matrices are holes): only for kmoe plan and loader checks`,
      {
        dir,
        file: marker,
        hint: 'write one without --sparse (kmoe synth) to run it',
      },
    );
}

/**
 * A checkpoint whose config.json has a `quantization_config` (fp8, GPTQ, AWQ, bitsandbytes...)
 * stores weights kmoe cannot compute from: refused by name at open, never read as if it were bf16.
 * `kmoe plan` (config and index only) still sizes it.
 */
function refuseQuantized(dir: string, raw: unknown): void {
  // parseModelConfig accepted raw, so it is an object.
  const q = (raw as Readonly<Record<string, unknown>>)['quantization_config'];
  if (q === undefined || q === null) return;
  const method =
    typeof q === 'object' && typeof (q as { quant_method?: unknown }).quant_method === 'string'
      ? (q as { quant_method: string }).quant_method
      : 'unknown';
  throw new CheckpointError(
    `${dir}: config.json has quantization_config (quant_method ${JSON.stringify(method)}): kmoe computes from ` +
      'fp32/bf16/fp16 checkpoints and does not read pre-quantized weights',
    {
      dir,
      file: path.join(dir, 'config.json'),
      hint: 'use the unquantized (bf16) checkpoint; kmoe plan sizes this config, and --expert-weights int8 quantizes at load',
    },
  );
}

/** JSON with object keys sorted at every level, so equal values always give equal text. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (typeof value === 'object' && value !== null) {
    const obj = value as Record<string, unknown>;
    const keys = Object.keys(obj).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonicalJson(obj[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((d, i) => d === b[i]);
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

function listSome(items: readonly string[]): string {
  const shown = items.slice(0, MAX_LISTED).join(', ');
  return items.length > MAX_LISTED ? `${shown} (and ${items.length - MAX_LISTED} more)` : shown;
}
