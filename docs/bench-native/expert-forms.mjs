// Single-row fp32 expert graphs in several forms, each rotating through NE experts (weights from
// memory), timed round by round in one process: the onnxruntime side of docs/performance.md
// section 6's mid-size table. Not part of kmoe; run from the repository after `npm run build`:
//   node docs/bench-native/expert-forms.mjs                 # mixtral-mid's expert shape, 32 experts
//   H=256 F=512 node docs/bench-native/expert-forms.mjs     # the demo model's
//   FORMS='kmoe graph|Gemm transB' node docs/bench-native/expert-forms.mjs
// and the C loop of the same shape right after it (gemv-expert.c, its header says how).
// Sessions use kmoe's settings (1 intra-op thread, no spinning) through the same native binding.
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../../dist/shared/onnx/graph-builder.js';
import { session, weights } from './probe-sessions.mjs';

const H = Number(process.env.H ?? 1024);
const F = Number(process.env.F ?? 3584);
const NE = Number(process.env.NE ?? 32);

/** y = weight * w2(silu(w1 x) * w3 x) with w1/w3 as one [H, 2F] (`transB`: [2F, H]) matrix. */
function expertGraph(e, op) {
  const g = new GraphBuilder(`expert_${e}`);
  const x = g.input('x', 'float32', ['N', H]);
  const w = g.input('weight', 'float32', ['N', 1]);
  const mm = (a, name, rows, cols, seed) =>
    op === 'gemm'
      ? g.op('Gemm', [a, g.floats(name, weights(rows * cols, seed), [cols, rows])], { transB: 1 })
      : g.op('MatMul', [a, g.floats(name, weights(rows * cols, seed), [rows, cols])]);
  const [a, b] = g.opN('Split', [mm(x, 'w13', H, 2 * F, e + 1), g.constI64([F, F])], 2, { axis: -1 });
  const act = g.op('Mul', [g.op('Mul', [a, g.op('Sigmoid', [a])]), b]);
  g.output(g.op('Mul', [mm(act, 'w2', F, H, e + 7), w]), 'y', 'float32', ['N', H]);
  return g.build();
}

/** The weights as the left operand ([out, in], dot products along contiguous rows): W x^T. */
function leftOperandGraph(e, interleaved) {
  const g = new GraphBuilder(`expert_${e}`);
  const x = g.input('x', 'float32', ['N', H]);
  const w = g.input('weight', 'float32', ['N', 1]);
  const z = g.op('MatMul', [
    g.floats('w13', weights(H * 2 * F, e + 1), [2 * F, H]),
    g.op('Transpose', [x], { perm: [1, 0] }),
  ]);
  // Interleaved: rows w1[0], w3[0], w1[1], ... so gate and up are read as one stream, like the C loop.
  const [a, b] = interleaved
    ? g.opN('Split', [g.op('Reshape', [z, g.constI64([F, 2, -1])]), g.constI64([1, 1])], 2, { axis: 1 })
    : g.opN('Split', [z, g.constI64([F, F])], 2, { axis: 0 });
  let act = g.op('Mul', [g.op('Mul', [a, g.op('Sigmoid', [a])]), b]);
  if (interleaved) act = g.op('Reshape', [act, g.constI64([F, -1])]);
  const yt = g.op('MatMul', [g.floats('w2', weights(F * H, e + 7), [H, F]), act]);
  g.output(g.op('Mul', [g.op('Transpose', [yt], { perm: [1, 0] }), w]), 'y', 'float32', ['N', H]);
  return g.build();
}

const FORMS = {
  'kmoe graph': (e) => session(expertGraph(e, 'matmul'), {}),
  'kmoe graph, no prepacking': (e) => session(expertGraph(e, 'matmul'), { disable_prepacking: '1' }),
  'Gemm transB': (e) => session(expertGraph(e, 'gemm'), {}),
  'Gemm transB, no prepacking': (e) => session(expertGraph(e, 'gemm'), { disable_prepacking: '1' }),
  'W x^T': (e) => session(leftOperandGraph(e, false), {}),
  'W x^T, w1/w3 interleaved': (e) => session(leftOperandGraph(e, true), {}),
};
const chosen = (process.env.FORMS ?? Object.keys(FORMS).join('|')).split('|');
for (const name of chosen) if (!(name in FORMS)) throw new Error(`unknown form '${name}'`);

const built = Object.fromEntries(chosen.map((name) => [name, Array.from({ length: NE }, (_, e) => FORMS[name](e))]));
const x = new ort.Tensor('float32', weights(H, 99), [1, H]);
const weight = new ort.Tensor('float32', new Float32Array([1]), [1, 1]);
const y = new ort.Tensor('float32', new Float32Array(H), [1, H]);
const perCall = Object.fromEntries(chosen.map((name) => [name, []]));
for (let round = 0; round < 9; round++) {
  for (const name of chosen) {
    const started = performance.now();
    const passes = 3;
    for (let p = 0; p < passes; p++) for (const s of built[name]) s.run({ x, weight }, { y }, {});
    perCall[name].push(((performance.now() - started) / (passes * NE)) * 1000);
  }
}
const bytes = 3 * H * F * 4;
for (const [name, us] of Object.entries(perCall)) {
  us.sort((a, b) => a - b);
  const median = us[4];
  console.log(
    `${name.padEnd(28)} median ${median.toFixed(0)} us, min ${us[0].toFixed(0)} (${(bytes / median / 1e3).toFixed(1)} GB/s) H${H} F${F} NE${NE}`,
  );
}
