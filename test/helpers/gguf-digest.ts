// A GGUF file reduced to what must match: metadata (minus the cosmetic name keys the converter
// derives from its directory; long values as their SHA-256), and per tensor its dims, type and the SHA-256 of its bytes.

import type { createHash as CreateHash } from 'node:crypto';
import type { GgufHeader, GgufTensorInfo } from '../../coordinator/bench/gguf/gguf-format.js';

export interface GgufDigest {
  readonly version: number;
  readonly metadata: Record<string, string>;
  readonly tensors: Record<string, { dims: number[]; type: number; sha256: string }>;
}

const COSMETIC = new Set(['general.name', 'general.size_label']);

export async function ggufDigest(
  header: GgufHeader,
  bytesOf: (t: GgufTensorInfo) => Promise<Uint8Array>,
  createHash: typeof CreateHash,
): Promise<GgufDigest> {
  const metadata: Record<string, string> = {};
  for (const [k, v] of header.metadata) {
    if (COSMETIC.has(k)) continue;
    const json = JSON.stringify(v, (_, x) => (typeof x === 'bigint' ? `${x}n` : x));
    // Long values (the vocabulary, merges) are kept as their hash.
    metadata[k] = json.length <= 200 ? json : `sha256:${createHash('sha256').update(json).digest('hex')}`;
  }
  const tensors: GgufDigest['tensors'] = {};
  for (const t of header.tensors) {
    const sha256 = createHash('sha256')
      .update(await bytesOf(t))
      .digest('hex');
    tensors[t.name] = { dims: [...t.dims].map(Number), type: t.type, sha256 };
  }
  return { version: header.version, metadata, tensors };
}
