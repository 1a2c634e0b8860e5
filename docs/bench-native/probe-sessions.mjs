// What the onnxruntime probes here share (expert-forms.mjs, expert-pair-forms.mjs): seeded weights
// and sessions with kmoe's settings through the engine's native binding. Not part of kmoe.
import { binding, initOrt } from 'onnxruntime-node/dist/binding.js';

/** Seeded weights of std ~0.01: the values do not matter, only the bytes read. */
export function weights(n, seed) {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    a[i] = ((s >>> 8) / 16777216 - 0.5) * 0.04;
  }
  return a;
}

/** A session with kmoe's settings (1 intra-op thread, no spinning) plus `config` session entries. */
export function session(bytes, config = {}) {
  initOrt();
  const s = new binding.InferenceSession();
  s.loadModel(bytes.buffer, bytes.byteOffset, bytes.byteLength, {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    extra: { session: { 'intra_op.allow_spinning': '0', ...config } },
  });
  return s;
}
