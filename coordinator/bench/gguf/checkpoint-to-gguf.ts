// Writes a kmoe checkpoint (Hugging Face safetensors, read lazily through `Checkpoint`) as a GGUF
// file that llama.cpp runs as its `llama` architecture with experts: what llama.cpp's
// convert_hf_to_gguf.py writes for Mixtral. Tensors are found by role through the family's tensor
// table, so any checkpoint whose layers are Mixtral-shaped (attention without biases or q/k norms,
// softmax top-K renormalised routing, no shared experts, no dense layers) converts.
//
// As the reference converter does: q and k projection rows are permuted from Hugging Face's
// rotate-half order to the interleaved pairs llama.cpp's `llama` rope expects; experts are stacked
// per layer into one [experts, out, in] tensor per projection; 1-D tensors (norms) and the router
// stay F32 whatever the output type.

import { readFile, rename, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from '../../../shared/dtype.js';
import type { TensorRole, TensorSpec } from '../../../shared/families/tensor-table.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import type { StoredTensor } from '../../../shared/model/safetensors.js';
import { makeDirectory } from '../../../shared/runtime/make-directory.js';
import { GgufError } from './errors.js';
import { GgmlType, type GgufTensorSource, type GgufValue, gguf, writeGguf } from './gguf-format.js';
import type { GgufOutType } from './out-types.js';

export type { GgufOutType } from './out-types.js';

const OUT_TYPES: Record<GgufOutType, { ggml: GgmlType; fileType: number }> = {
  // llama_ftype: ALL_F32 0, MOSTLY_F16 1, MOSTLY_Q8_0 7, MOSTLY_BF16 32
  f32: { ggml: GgmlType.F32, fileType: 0 },
  f16: { ggml: GgmlType.F16, fileType: 1 },
  q8_0: { ggml: GgmlType.Q8_0, fileType: 7 },
  bf16: { ggml: GgmlType.BF16, fileType: 32 },
};

/** llama.cpp's name of each role (llama-arch.cpp, LLM_ARCH_LLAMA). Experts are stacked per layer. */
const GGUF_NAMES: Partial<Record<TensorRole, string>> = {
  tokenEmbd: 'token_embd.weight',
  outputNorm: 'output_norm.weight',
  output: 'output.weight',
  attnNorm: 'blk.{l}.attn_norm.weight',
  attnQ: 'blk.{l}.attn_q.weight',
  attnK: 'blk.{l}.attn_k.weight',
  attnV: 'blk.{l}.attn_v.weight',
  attnOut: 'blk.{l}.attn_output.weight',
  ffnNorm: 'blk.{l}.ffn_norm.weight',
  router: 'blk.{l}.ffn_gate_inp.weight',
  w1: 'blk.{l}.ffn_gate_exps.weight',
  w2: 'blk.{l}.ffn_down_exps.weight',
  w3: 'blk.{l}.ffn_up_exps.weight',
};

export interface CheckpointToGgufOptions {
  readonly outType: GgufOutType;
  /** general.name; default: the checkpoint directory's name. */
  readonly name?: string;
}

export interface GgufWriteResult {
  readonly file: string;
  readonly bytes: number;
  readonly tensors: number;
  readonly outType: GgufOutType;
  /** Where the vocabulary came from: the checkpoint's tokenizer.json, or placeholders. */
  readonly vocab: 'tokenizer.json' | 'placeholder';
}

export async function checkpointToGguf(
  modelDir: string,
  outFile: string,
  options: CheckpointToGgufOptions,
): Promise<GgufWriteResult> {
  const ckpt = await Checkpoint.open(modelDir);
  try {
    ckpt.validateArchitecture();
    checkLlamaCompatible(ckpt);
    const { metadata, vocab } = await buildMetadata(ckpt, options);
    const tensors = tensorSources(ckpt, OUT_TYPES[options.outType].ggml);
    const bytes = await writeGguf(outFile, metadata, tensors);
    return { file: outFile, bytes, tensors: tensors.length, outType: options.outType, vocab };
  } finally {
    await ckpt.close();
  }
}

/** Bump when the bytes this writer produces for the same checkpoint change (it keys the cache). */
const WRITER_VERSION = 1;

/**
 * The GGUF of a checkpoint in `cacheDir`, written on first use: named after the checkpoint's
 * fingerprint (config + tensor names, dtypes, shapes), the output type and the writer's version, so
 * a changed checkpoint or writer gets a new file. Written to a temporary name, then renamed.
 */
export async function cachedCheckpointGguf(
  modelDir: string,
  outType: GgufOutType,
  cacheDir: string,
): Promise<{ file: string; written: GgufWriteResult | null }> {
  const ckpt = await Checkpoint.open(modelDir);
  let fingerprint: string;
  try {
    fingerprint = ckpt.fingerprint().slice(0, 16);
  } finally {
    await ckpt.close();
  }
  const base = path.basename(path.resolve(modelDir));
  const file = path.join(cacheDir, `${base}-${fingerprint}-w${WRITER_VERSION}-${outType}.gguf`);
  try {
    if ((await stat(file)).isFile()) return { file, written: null };
  } catch {
    // not cached yet
  }
  makeDirectory(cacheDir);
  const tmp = `${file}.${process.pid}.tmp`;
  try {
    const written = await checkpointToGguf(modelDir, tmp, { outType });
    await rename(tmp, file);
    return { file, written: { ...written, file } };
  } finally {
    await rm(tmp, { force: true });
  }
}

const LLAMA_ROLES = new Set(Object.keys(GGUF_NAMES));

function checkLlamaCompatible(ckpt: Checkpoint): void {
  const { config } = ckpt;
  const unsupported = (why: string) =>
    new GgufError(`${ckpt.dir}: cannot be written as llama.cpp's llama architecture: ${why}`, {
      hint: 'the GGUF writer supports Mixtral-shaped checkpoints only',
    });
  const roles = new Set(ckpt.family.tensorSpecs(config).map((s) => s.role));
  const extra = [...roles].filter((r) => !LLAMA_ROLES.has(r));
  if (extra.length > 0) throw unsupported(`tensor roles ${extra.join(', ')}`);
  for (const [i, l] of ckpt.family.layerPlan(config).entries()) {
    if (
      l.kind !== 'moe' ||
      l.gate !== 'softmax' ||
      !l.renormalize ||
      l.sharedExperts !== 0 ||
      l.selectionBias === true ||
      l.groups !== undefined ||
      l.routedScalingFactor !== 1
    ) {
      throw unsupported(`layer ${i} is not a softmax top-K renormalised MoE layer without shared experts`);
    }
  }
  if (config.slidingWindow !== null) throw unsupported(`sliding-window attention (${config.slidingWindow})`);
  if (config.headDim % 2 !== 0) throw unsupported(`odd head dimension ${config.headDim}`);
}

// ---- metadata --------------------------------------------------------------------------------

async function buildMetadata(
  ckpt: Checkpoint,
  options: CheckpointToGgufOptions,
): Promise<{ metadata: Map<string, GgufValue>; vocab: GgufWriteResult['vocab'] }> {
  const c = ckpt.config;
  const m = new Map<string, GgufValue>();
  m.set('general.architecture', gguf.str('llama'));
  m.set('general.type', gguf.str('model'));
  m.set('general.name', gguf.str(options.name ?? path.basename(path.resolve(ckpt.dir))));
  m.set('llama.block_count', gguf.u32(c.numLayers));
  m.set('llama.context_length', gguf.u32(c.maxPositionEmbeddings));
  m.set('llama.embedding_length', gguf.u32(c.hiddenSize));
  m.set('llama.feed_forward_length', gguf.u32(c.intermediateSize));
  m.set('llama.attention.head_count', gguf.u32(c.numHeads));
  m.set('llama.attention.head_count_kv', gguf.u32(c.numKvHeads));
  m.set('llama.rope.freq_base', gguf.f32(c.ropeTheta));
  m.set('llama.attention.layer_norm_rms_epsilon', gguf.f32(c.rmsNormEps));
  m.set('llama.expert_count', gguf.u32(c.numExperts));
  m.set('llama.expert_used_count', gguf.u32(c.numExpertsPerTok));
  m.set('general.file_type', gguf.u32(OUT_TYPES[options.outType].fileType));
  m.set('llama.vocab_size', gguf.u32(c.vocabSize));
  m.set('llama.rope.dimension_count', gguf.u32(c.headDim));
  // llama.cpp derives head_dim from embedding_length / head_count; say it when they differ.
  if (c.headDim * c.numHeads !== c.hiddenSize) {
    m.set('llama.attention.key_length', gguf.u32(c.headDim));
    m.set('llama.attention.value_length', gguf.u32(c.headDim));
  }
  const vocab = await readVocab(ckpt);
  m.set('tokenizer.ggml.model', gguf.str('llama'));
  m.set('tokenizer.ggml.pre', gguf.str('default'));
  m.set('tokenizer.ggml.tokens', gguf.strings(vocab.tokens));
  m.set('tokenizer.ggml.scores', gguf.f32s(vocab.tokens.map(() => -1000)));
  m.set('tokenizer.ggml.token_type', gguf.i32s(vocab.types));
  if (c.bosTokenId !== null) m.set('tokenizer.ggml.bos_token_id', gguf.u32(c.bosTokenId));
  const eos = c.eosTokenId[0];
  if (eos !== undefined) m.set('tokenizer.ggml.eos_token_id', gguf.u32(eos));
  if (vocab.unk !== undefined) m.set('tokenizer.ggml.unknown_token_id', gguf.u32(vocab.unk));
  m.set('tokenizer.ggml.add_bos_token', gguf.bool(vocab.addBos));
  m.set('tokenizer.ggml.add_eos_token', gguf.bool(vocab.addEos));
  m.set('general.quantization_version', gguf.u32(2));
  return { metadata: m, vocab: vocab.source };
}

/** llama_token_type values. */
const TokenType = { NORMAL: 1, UNKNOWN: 2, CONTROL: 3, USER_DEFINED: 4, BYTE: 6 } as const;

interface Vocab {
  readonly tokens: string[];
  readonly types: number[];
  readonly unk: number | undefined;
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly source: GgufWriteResult['vocab'];
}

const tokenizerJsonSchema = z.object({
  model: z.object({
    type: z.string(),
    vocab: z.record(z.string(), z.number()),
    unk_token: z.string().nullish(),
  }),
  added_tokens: z
    .array(z.object({ id: z.number(), content: z.string(), special: z.boolean().optional() }))
    .optional(),
});
const tokenizerConfigSchema = z.object({
  add_bos_token: z.boolean().optional(),
  add_eos_token: z.boolean().optional(),
});

/**
 * The vocabulary as llama.cpp's converter stores a Llama-style (SentencePiece BPE with byte fallback)
 * tokenizer.json: tokens by id, every score -1000, special added tokens CONTROL, `<0xXX>` BYTE,
 * the rest NORMAL, padded to vocab_size. Without a tokenizer.json (synthetic checkpoints), a
 * placeholder vocabulary of the same size with the byte tokens llama.cpp needs: bench runs feed
 * token ids, so the strings do not matter.
 */
async function readVocab(ckpt: Checkpoint): Promise<Vocab> {
  const size = ckpt.config.vocabSize;
  const cfg = tokenizerConfigSchema.parse(
    (await readJsonIfExists(path.join(ckpt.dir, 'tokenizer_config.json'))) ?? {},
  );
  const addBos = cfg.add_bos_token ?? false;
  const addEos = cfg.add_eos_token ?? false;
  const raw = await readJsonIfExists(path.join(ckpt.dir, 'tokenizer.json'));
  if (raw === undefined) {
    const tokens: string[] = [];
    const types: number[] = [];
    const fixed = ['<unk>', '<s>', '</s>'];
    for (let id = 0; id < size; id++) {
      if (id < fixed.length) {
        tokens.push(fixed[id]!);
        types.push(id === 0 ? TokenType.UNKNOWN : TokenType.CONTROL);
      } else if (id < fixed.length + 256) {
        tokens.push(`<0x${(id - fixed.length).toString(16).toUpperCase().padStart(2, '0')}>`);
        types.push(TokenType.BYTE);
      } else {
        tokens.push(`\u2581t${id}`);
        types.push(TokenType.NORMAL);
      }
    }
    return { tokens, types, unk: size > 0 ? 0 : undefined, addBos, addEos, source: 'placeholder' };
  }
  const tj = tokenizerJsonSchema.parse(raw);
  if (tj.model.type !== 'BPE' && tj.model.type !== 'Unigram') {
    throw new GgufError(`${ckpt.dir}/tokenizer.json: model type ${tj.model.type} is not SentencePiece-like`);
  }
  const byId = new Map<number, string>();
  for (const [text, id] of Object.entries(tj.model.vocab)) byId.set(id, text);
  const special = new Set<number>();
  for (const t of tj.added_tokens ?? []) {
    byId.set(t.id, t.content);
    if (t.special === true) special.add(t.id);
  }
  const tokens: string[] = [];
  const types: number[] = [];
  for (let id = 0; id < size; id++) {
    const text = byId.get(id);
    if (text === undefined) {
      tokens.push(`[PAD${id}]`);
      types.push(TokenType.USER_DEFINED);
    } else {
      tokens.push(text);
      types.push(
        /^<0x[0-9A-Fa-f]{2}>$/.test(text)
          ? TokenType.BYTE
          : special.has(id)
            ? TokenType.CONTROL
            : TokenType.NORMAL,
      );
    }
  }
  const unkText = tj.model.unk_token ?? undefined;
  const unk = unkText === undefined ? undefined : tokens.indexOf(unkText);
  return { tokens, types, unk: unk === -1 ? undefined : unk, addBos, addEos, source: 'tokenizer.json' };
}

async function readJsonIfExists(file: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8'));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new GgufError(`${file}: unreadable JSON`, { cause: e });
  }
}

// ---- tensors ---------------------------------------------------------------------------------

function ggufName(role: TensorRole, layer: number | undefined): string {
  const template = GGUF_NAMES[role];
  if (template === undefined) throw new GgufError(`no llama.cpp tensor for role ${role}`);
  return template.replaceAll('{l}', String(layer ?? ''));
}

function tensorSources(ckpt: Checkpoint, outType: GgmlType): GgufTensorSource[] {
  const { config } = ckpt;
  const specs = ckpt.family.tensorSpecs(config).filter((s) => ckpt.has(s.name));
  const sources: GgufTensorSource[] = [];
  const typeFor = (spec: TensorSpec) =>
    spec.shape.length <= 1 || spec.role === 'router' ? GgmlType.F32 : outType;
  const layerSpecs = new Map<number, TensorSpec[]>();
  for (const s of specs) {
    if (s.layer === undefined) continue;
    layerSpecs.set(s.layer, [...(layerSpecs.get(s.layer) ?? []), s]);
  }
  const single = (spec: TensorSpec): GgufTensorSource => {
    const type = typeFor(spec);
    const rows = rowPermutation(spec.role, spec.shape, config.numHeads, config.numKvHeads);
    return {
      name: ggufName(spec.role, spec.layer),
      dims: [...spec.shape].reverse(),
      type,
      data: async function* () {
        yield encode(permuteRows(await ckpt.read(spec.name), rows), type);
      },
    };
  };
  const global = (role: TensorRole) => specs.find((s) => s.layer === undefined && s.role === role);
  const embd = global('tokenEmbd');
  if (embd !== undefined) sources.push(single(embd));
  for (let l = 0; l < config.numLayers; l++) {
    const ls = layerSpecs.get(l) ?? [];
    for (const role of ['attnNorm', 'attnQ', 'attnK', 'attnV', 'attnOut', 'ffnNorm', 'router'] as const) {
      const spec = ls.find((s) => s.role === role && s.expert === undefined);
      if (spec !== undefined) sources.push(single(spec));
    }
    for (const role of ['w1', 'w2', 'w3'] as const) {
      const experts = ls.filter((s) => s.role === role).sort((a, b) => a.expert! - b.expert!);
      const first = experts[0];
      if (first === undefined) continue;
      sources.push({
        name: ggufName(role, l),
        dims: [...first.shape].reverse().concat(experts.length),
        type: outType,
        data: async function* () {
          for (const e of experts) yield encode(await ckpt.read(e.name), outType);
        },
      });
    }
  }
  for (const role of ['outputNorm', 'output'] as const) {
    const spec = global(role);
    if (spec !== undefined) sources.push(single(spec));
  }
  return sources;
}

/**
 * convert_hf_to_gguf's `LlamaModel.permute` for q (heads) and k (kv heads) rows: within each head,
 * Hugging Face keeps the two rotary halves apart (rows i and i + d/2 rotate together); llama.cpp's
 * llama rope rotates adjacent pairs. New row h*d + 2j + s is old row h*d + s*d/2 + j.
 */
function rowPermutation(
  role: TensorRole,
  shape: readonly number[],
  heads: number,
  kvHeads: number,
): Int32Array | undefined {
  if (role !== 'attnQ' && role !== 'attnK') return undefined;
  const n = role === 'attnQ' ? heads : kvHeads;
  const rows = shape[0]!;
  const d = rows / n;
  const half = d / 2;
  const from = new Int32Array(rows);
  for (let h = 0; h < n; h++)
    for (let j = 0; j < half; j++) for (let s = 0; s < 2; s++) from[h * d + 2 * j + s] = h * d + s * half + j;
  return from;
}

function permuteRows(t: StoredTensor, from: Int32Array | undefined): StoredTensor {
  if (from === undefined) return t;
  const rowLen = t.data.length / from.length;
  const move = <A extends Float32Array | Uint16Array>(src: A, out: A): A => {
    for (const [dst, row] of from.entries())
      out.set(src.subarray(row * rowLen, (row + 1) * rowLen), dst * rowLen);
    return out;
  };
  return t.dtype === 'float32'
    ? { dtype: t.dtype, shape: t.shape, data: move(t.data, new Float32Array(t.data.length)) }
    : { dtype: t.dtype, shape: t.shape, data: move(t.data, new Uint16Array(t.data.length)) };
}

function bytesOf(a: Float32Array | Uint16Array | Uint8Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** The tensor's bytes in the GGUF type: stored bits copied when the types match, else via fp32. */
export function encode(t: StoredTensor, type: GgmlType): Uint8Array {
  if (type === GgmlType.BF16 && t.dtype === 'bfloat16') return bytesOf(t.data);
  if (type === GgmlType.F16 && t.dtype === 'float16') return bytesOf(t.data);
  const wide = t.dtype === 'float32' ? t.data : t.dtype === 'bfloat16' ? bf16ToF32(t.data) : f16ToF32(t.data);
  switch (type) {
    case GgmlType.F32:
      return bytesOf(wide);
    case GgmlType.BF16:
      return bytesOf(f32ToBf16(wide));
    case GgmlType.F16:
      return bytesOf(f32ToF16(wide));
    case GgmlType.Q8_0:
      return quantizeQ8_0(wide);
  }
}

const Q8_BLOCK = 32;

/**
 * ggml's Q8_0 as gguf-py quantises it: per block of 32, d = max|x| / 127 (fp32, stored as fp16),
 * q = round-half-away-from-zero(x / d) as int8; 34 bytes per block.
 */
export function quantizeQ8_0(x: Float32Array): Uint8Array {
  if (x.length % Q8_BLOCK !== 0) throw new GgufError(`Q8_0 needs a multiple of ${Q8_BLOCK} values`);
  const blocks = x.length / Q8_BLOCK;
  const out = new Uint8Array(blocks * 34);
  const view = new DataView(out.buffer);
  const q = new Int8Array(out.buffer);
  const dHalf = new Uint16Array(1);
  for (let b = 0; b < blocks; b++) {
    let amax = 0;
    for (let i = 0; i < Q8_BLOCK; i++) amax = Math.max(amax, Math.abs(x[b * Q8_BLOCK + i]!));
    const d = Math.fround(amax / 127);
    f32ToF16(Float32Array.of(d), dHalf);
    view.setUint16(b * 34, dHalf[0]!, true);
    for (let i = 0; i < Q8_BLOCK; i++) {
      const v = d === 0 ? 0 : Math.fround(x[b * Q8_BLOCK + i]! / d);
      const a = Math.abs(v);
      const r = Math.floor(a) + Math.floor(2 * (a - Math.floor(a)));
      q[b * 34 + 2 + i] = Math.sign(v) * r;
    }
  }
  return out;
}
