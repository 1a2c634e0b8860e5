// A layer's two chosen experts for one token: two calls of kmoe's expert graph (weights as
// prepacked initializers, one session per expert) against one call of a graph that takes both
// experts' weights as inputs (no copy: onnxruntime wraps the Float32Arrays; no prepacking), in
// [in, out] layout with MatMul or [out, in] with Gemm transB. 4 layers x 8 experts, each token's
// pair drawn at random per layer (seeded), so weights come from memory as in decode. The "weights
// as inputs" row of docs/performance.md section 2. Not part of kmoe; run from the repository after
// `npm run build`:
//   node docs/bench-native/expert-pair-forms.mjs              # the demo model's expert shape
//   H=1024 F=3584 node docs/bench-native/expert-pair-forms.mjs
import ort from 'onnxruntime-node';
import { GraphBuilder } from '../../dist/shared/onnx/graph-builder.js';
import { session, weights } from './probe-sessions.mjs';

const H = Number(process.env.H ?? 256);
const F = Number(process.env.F ?? 512);
const LAYERS = 4;
const EXPERTS = 8;
const NE = LAYERS * EXPERTS;
const TOKENS = 200;
const ROUNDS = 11;

function transposed(a, rows, cols) {
  const t = new Float32Array(a.length);
  for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) t[j * rows + i] = a[i * cols + j];
  return t;
}

const W13 = Array.from({ length: NE }, (_, e) => weights(H * 2 * F, e + 1)); // [H, 2F]
const W2 = Array.from({ length: NE }, (_, e) => weights(F * H, e + 7)); // [F, H]

/** silu(a) * b of z = [a | b] split in two halves of F. */
function swiglu(g, z) {
  const [a, b] = g.opN('Split', [z, g.constI64([F, F])], 2, { axis: -1 });
  return g.op('Mul', [g.op('Mul', [a, g.op('Sigmoid', [a])]), b]);
}

/** kmoe's expert graph: y = weight * w2(swiglu(x w13)) with the weights as initializers. */
function expertGraph(e) {
  const g = new GraphBuilder(`expert_${e}`);
  const x = g.input('x', 'float32', ['N', H]);
  const w = g.input('weight', 'float32', ['N', 1]);
  const act = swiglu(g, g.op('MatMul', [x, g.floats('w13', W13[e], [H, 2 * F])]));
  g.output(g.op('Mul', [g.op('MatMul', [act, g.floats('w2', W2[e], [F, H])]), w]), 'y', 'float32', ['N', H]);
  return g.build();
}

/** Both experts in one graph, their weights as inputs: `gemm` = [out, in] layout through Gemm transB. */
function pairGraph(gemm) {
  const g = new GraphBuilder('pair');
  const x = g.input('x', 'float32', ['N', H]);
  const mm = (a, w) => (gemm ? g.op('Gemm', [a, w], { transB: 1 }) : g.op('MatMul', [a, w]));
  const outs = ['a', 'b'].map((k) => {
    const w13 = g.input(`w13${k}`, 'float32', gemm ? [2 * F, H] : [H, 2 * F]);
    const w2 = g.input(`w2${k}`, 'float32', gemm ? [H, F] : [F, H]);
    const w = g.input(`weight${k}`, 'float32', ['N', 1]);
    return g.op('Mul', [mm(swiglu(g, mm(x, w13)), w2), w]);
  });
  g.output(g.op('Add', outs), 'y', 'float32', ['N', H]);
  return g.build();
}

const experts = W13.map((_, e) => session(expertGraph(e)));
const pairMatMul = session(pairGraph(false));
const pairGemm = session(pairGraph(true));
const tensor = (a, dims) => new ort.Tensor('float32', a, dims);
const inIn = { w13: W13.map((a) => tensor(a, [H, 2 * F])), w2: W2.map((a) => tensor(a, [F, H])) };
const outIn = {
  w13: W13.map((a) => tensor(transposed(a, H, 2 * F), [2 * F, H])),
  w2: W2.map((a) => tensor(transposed(a, F, H), [H, F])),
};
const x = tensor(weights(H, 99), [1, H]);
const wa = tensor(new Float32Array([0.6]), [1, 1]);
const wb = tensor(new Float32Array([0.4]), [1, 1]);
const y = tensor(new Float32Array(H), [1, H]);

let seed = 7;
const random = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) / 16777216;
const pairs = Array.from({ length: TOKENS }, () =>
  Array.from({ length: LAYERS }, (_, l) => {
    const a = Math.floor(random() * EXPERTS);
    let b = Math.floor(random() * (EXPERTS - 1));
    if (b >= a) b++;
    return [l * EXPERTS + a, l * EXPERTS + b];
  }),
);

const pairFeeds = (w, a, b) => ({ x, w13a: w.w13[a], w2a: w.w2[a], weighta: wa, w13b: w.w13[b], w2b: w.w2[b], weightb: wb });
const FORMS = {
  'two calls (kmoe)': ([a, b]) => {
    experts[a].run({ x, weight: wa }, { y }, {});
    experts[b].run({ x, weight: wb }, { y }, {});
  },
  'one call, weights as inputs': ([a, b]) => pairMatMul.run(pairFeeds(inIn, a, b), { y }, {}),
  'one call, Gemm transB inputs': ([a, b]) => pairGemm.run(pairFeeds(outIn, a, b), { y }, {}),
};

// The fused forms compute the same sum as the two calls.
const sum = new Float32Array(H);
for (const [s, w] of [
  [experts[3], wa],
  [experts[9], wb],
]) {
  s.run({ x, weight: w }, { y }, {});
  for (let i = 0; i < H; i++) sum[i] += y.data[i];
}
for (const [name, run] of Object.entries(FORMS).slice(1)) {
  run([3, 9]);
  let diff = 0;
  for (let i = 0; i < H; i++) diff = Math.max(diff, Math.abs(sum[i] - y.data[i]));
  if (diff > 1e-5) throw new Error(`${name} differs from two calls by ${diff}`);
}

const perLayer = Object.fromEntries(Object.keys(FORMS).map((name) => [name, []]));
for (let round = 0; round < ROUNDS; round++) {
  const order = round % 2 === 0 ? Object.entries(FORMS) : Object.entries(FORMS).reverse();
  for (const [name, run] of order) {
    const started = performance.now();
    for (const token of pairs) for (const pair of token) run(pair);
    perLayer[name].push(((performance.now() - started) / (TOKENS * LAYERS)) * 1000);
  }
}
for (const [name, us] of Object.entries(perLayer)) {
  us.sort((a, b) => a - b);
  console.log(
    `${name.padEnd(30)} per layer (2 experts, 1 token): median ${us[ROUNDS >> 1].toFixed(1)} us, min ${us[0].toFixed(1)} (H${H} F${F})`,
  );
}
