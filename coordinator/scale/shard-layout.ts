// Where each tensor of a checkpoint goes: Hugging Face's state-dict order, greedy sharding by a
// byte budget (the rule of huggingface_hub's split_torch_state_dict_into_shards), shard file names,
// safetensors headers and the model.safetensors.index.json. Pure: no file is touched here.

import type { TensorSpec } from '../../shared/families/tensor-table.js';
import { SynthError } from './errors.js';

/** transformers' default max_shard_size, "5GB" (decimal, as huggingface_hub parses it). */
export const DEFAULT_SHARD_BYTES = 5_000_000_000;

/** bf16: the dtype Mixtral checkpoints are published in. */
export const SYNTH_DTYPE = 'BF16';
export const SYNTH_ELEMENT_BYTES = 2;

export interface PlacedTensor {
  readonly spec: TensorSpec;
  readonly byteLength: number;
  /** [begin, end) within the shard's data section. */
  readonly dataOffsets: readonly [number, number];
}

export interface ShardLayout {
  readonly fileName: string;
  readonly tensors: readonly PlacedTensor[];
  /** The serialized header: 8-byte little-endian length, then space-padded JSON. */
  readonly header: Uint8Array;
  readonly dataBytes: number;
  readonly fileBytes: number;
}

export interface CheckpointLayout {
  readonly shards: readonly ShardLayout[];
  /** What the index's metadata.total_size states: the sum of tensor bytes, headers excluded. */
  readonly totalSize: number;
  readonly index: { metadata: { total_size: number }; weight_map: Record<string, string> };
}

// Order of the roles inside a decoder layer in MixtralForCausalLM.state_dict().
const LAYER_ORDER = ['attnQ', 'attnK', 'attnV', 'attnOut', 'router', 'w1', 'w2', 'w3', 'attnNorm', 'ffnNorm'];

/**
 * Specs in the order PyTorch's state_dict lists them: embeddings, then each layer (attention,
 * gate, experts in index order, the two norms), then the final norm and the LM head.
 */
export function stateDictOrder(specs: readonly TensorSpec[]): TensorSpec[] {
  const rank = (s: TensorSpec): number[] => {
    if (s.layer === undefined) {
      if (s.role === 'tokenEmbd') return [-1, 0, 0];
      return [Number.MAX_SAFE_INTEGER, s.role === 'outputNorm' ? 0 : 1, 0];
    }
    const roleRank = LAYER_ORDER.indexOf(s.role);
    // Experts sort by index before their w1/w2/w3.
    const expert = s.expert ?? (roleRank < LAYER_ORDER.indexOf('w1') ? -1 : Number.MAX_SAFE_INTEGER);
    return [s.layer, expert, roleRank];
  };
  return [...specs].sort((a, b) => {
    const ra = rank(a);
    const rb = rank(b);
    for (let i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return ra[i]! - rb[i]!;
    return 0;
  });
}

export function tensorBytes(spec: TensorSpec): number {
  return spec.shape.reduce((n, d) => n * d, 1) * SYNTH_ELEMENT_BYTES;
}

/** `model-00002-of-00059.safetensors`, as transformers names shards. */
export function shardFileName(index: number, count: number): string {
  const pad = (n: number) => String(n).padStart(5, '0');
  return `model-${pad(index + 1)}-of-${pad(count)}.safetensors`;
}

/**
 * Greedy sharding: a tensor joins the current shard unless that would pass `shardBytes`; a tensor
 * larger than the budget gets a shard of its own.
 */
export function layoutCheckpoint(specs: readonly TensorSpec[], shardBytes: number): CheckpointLayout {
  if (!Number.isSafeInteger(shardBytes) || shardBytes < 1)
    throw new SynthError(`shard size must be a positive integer number of bytes, got ${shardBytes}`, {
      details: { shardBytes },
    });
  const groups: TensorSpec[][] = [];
  let current: TensorSpec[] = [];
  let currentBytes = 0;
  for (const spec of stateDictOrder(specs)) {
    const bytes = tensorBytes(spec);
    if (current.length > 0 && currentBytes + bytes > shardBytes) {
      groups.push(current);
      current = [];
      currentBytes = 0;
    }
    current.push(spec);
    currentBytes += bytes;
  }
  if (current.length > 0) groups.push(current);

  const weightMap: Record<string, string> = {};
  let totalSize = 0;
  const shards = groups.map((group, i) => {
    const fileName = shardFileName(i, groups.length);
    let at = 0;
    const tensors = group.map((spec): PlacedTensor => {
      const byteLength = tensorBytes(spec);
      const placed: PlacedTensor = { spec, byteLength, dataOffsets: [at, at + byteLength] };
      at += byteLength;
      weightMap[spec.name] = fileName;
      return placed;
    });
    totalSize += at;
    const header = serializeHeader(tensors);
    return { fileName, tensors, header, dataBytes: at, fileBytes: header.length + at };
  });
  // transformers writes the weight_map sorted by tensor name.
  const sortedMap = Object.fromEntries(Object.entries(weightMap).sort(([a], [b]) => (a < b ? -1 : 1)));
  return { shards, totalSize, index: { metadata: { total_size: totalSize }, weight_map: sortedMap } };
}

/** The safetensors header: `{"__metadata__":{"format":"pt"}, name: {dtype, shape, data_offsets}}`. */
function serializeHeader(tensors: readonly PlacedTensor[]): Uint8Array {
  const json: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  for (const t of tensors) {
    json[t.spec.name] = { dtype: SYNTH_DTYPE, shape: t.spec.shape, data_offsets: t.dataOffsets };
  }
  let text = JSON.stringify(json);
  // The safetensors library pads the header with spaces so the data section starts 8-aligned.
  text += ' '.repeat((8 - (text.length % 8)) % 8);
  const body = new TextEncoder().encode(text);
  const out = new Uint8Array(8 + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
  out.set(body, 8);
  return out;
}
