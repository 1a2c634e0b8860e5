// What the onnxruntime probes here share (expert-forms.mjs, expert-pair-forms.mjs): seeded weights
// and sessions with kmoe's settings through the engine's native binding. Not part of kmoe.
import { binding, initOrt } from 'onnxruntime-node/dist/binding.js';
import { GraphBuilder } from '../../dist/shared/onnx/graph-builder.js';

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

/**
 * A session with kmoe's settings (1 intra-op thread, no spinning, no CPU arena) plus `config`
 * session entries and `options` over the session options (e.g. `{ enableCpuMemArena: true }`).
 * Probes run before 2026-12-02 had the arena on, as kmoe did then; small calls time the same.
 */
export function session(bytes, config = {}, options = {}) {
  initOrt();
  const s = new binding.InferenceSession();
  s.loadModel(bytes.buffer, bytes.byteOffset, bytes.byteLength, {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    enableCpuMemArena: false,
    ...options,
    extra: { session: { 'intra_op.allow_spinning': '0', 'inter_op.allow_spinning': '0', ...config } },
  });
  return s;
}

/** One expert as kmoe builds it, y = w2(silu(x w1) * x w3), seeded by `e`, for [N, h] inputs. */
export function expertGraph(e, h, f) {
  const g = new GraphBuilder(`expert_${e}`);
  const x = g.input('x', 'float32', ['N', h]);
  const mm = (a, name, rows, cols, seed) =>
    g.op('MatMul', [a, g.floats(name, weights(rows * cols, seed), [rows, cols])]);
  const a = mm(x, 'w1', h, f, e + 1);
  const act = g.op('Mul', [g.op('Mul', [a, g.op('Sigmoid', [a])]), mm(x, 'w3', h, f, e + 3)]);
  g.output(mm(act, 'w2', f, h, e + 7), 'y', 'float32', ['N', h]);
  return g.build();
}
