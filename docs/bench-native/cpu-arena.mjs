// onnxruntime's CPU memory arena: what it costs in speed to turn it off, and what it holds after a
// large call. Expert graphs of the demo model's shape (H 256, F 512), 8 experts, with and without
// the arena (session option enableCpuMemArena), timed at several batch sizes in alternating rounds
// in one process; then the resident memory of two fresh processes after one call of ROWS rows.
// Not part of kmoe; run from the repository after `npm run build`:
//   node docs/bench-native/cpu-arena.mjs            # ROUNDS=7 ROWS=16384
import { execFileSync } from 'node:child_process';
import ort from 'onnxruntime-node';
import { binding, initOrt } from 'onnxruntime-node/dist/binding.js';
import { GraphBuilder } from '../../dist/shared/onnx/graph-builder.js';
import { weights } from './probe-sessions.mjs';

const H = 256;
const F = 512;
const NE = 8;
const ROUNDS = Number(process.env.ROUNDS ?? 7);
const ROWS = Number(process.env.ROWS ?? 16384);

function expertGraph(e) {
  const g = new GraphBuilder(`expert_${e}`);
  const x = g.input('x', 'float32', ['N', H]);
  const mm = (a, name, rows, cols, seed) => g.op('MatMul', [a, g.floats(name, weights(rows * cols, seed), [rows, cols])]);
  const a = mm(x, 'w1', H, F, e + 1);
  const act = g.op('Mul', [g.op('Mul', [a, g.op('Sigmoid', [a])]), mm(x, 'w3', H, F, e + 3)]);
  g.output(mm(act, 'w2', F, H, e + 7), 'y', 'float32', ['N', H]);
  return g.build();
}

/** kmoe's session settings (1 intra-op thread, no spinning), the arena on or off. */
function session(bytes, arena) {
  initOrt();
  const s = new binding.InferenceSession();
  s.loadModel(bytes.buffer, bytes.byteOffset, bytes.byteLength, {
    executionProviders: ['cpu'],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    enableCpuMemArena: arena,
    extra: { session: { 'intra_op.allow_spinning': '0', 'inter_op.allow_spinning': '0' } },
  });
  return s;
}

const residentMiB = () => Math.round(process.memoryUsage().rss / 2 ** 20);

if (process.argv[2] === 'resident') {
  const s = session(expertGraph(0), process.argv[3] === 'on');
  const before = residentMiB();
  s.run({ x: new ort.Tensor('float32', weights(ROWS * H, 5), [ROWS, H]) }, { y: null }, {});
  const afterBig = residentMiB();
  s.run({ x: new ort.Tensor('float32', weights(H, 5), [1, H]) }, { y: null }, {});
  console.log(JSON.stringify({ before, afterBig, afterSmall: residentMiB() }));
} else {
  const built = { on: [], off: [] };
  for (let e = 0; e < NE; e++) for (const k of ['on', 'off']) built[k].push(session(expertGraph(e), k === 'on'));
  for (const rows of [1, 16, 256, 2048]) {
    const x = new ort.Tensor('float32', weights(rows * H, 9), [rows, H]);
    const y = new ort.Tensor('float32', new Float32Array(rows * H), [rows, H]);
    const calls = Math.max(8, Math.round(4000 / rows));
    const perCall = { on: [], off: [] };
    for (let r = 0; r < ROUNDS; r++) {
      for (const k of r % 2 ? ['off', 'on'] : ['on', 'off']) {
        const started = performance.now();
        for (let i = 0; i < calls; i++) built[k][i % NE].run({ x }, { y }, {});
        perCall[k].push(((performance.now() - started) * 1000) / calls);
      }
    }
    const median = (a) => [...a].sort((p, q) => p - q)[a.length >> 1];
    const ratios = perCall.off.map((v, i) => v / perCall.on[i]);
    console.log(
      `${String(rows).padStart(5)} rows: arena ${median(perCall.on).toFixed(0)} us, no arena ${median(perCall.off).toFixed(0)} us per call; no arena / arena ${median(ratios).toFixed(3)} (rounds ${ratios.map((v) => v.toFixed(2)).join(', ')})`,
    );
  }
  for (const k of ['on', 'off']) {
    const out = execFileSync(process.execPath, [new URL(import.meta.url).pathname, 'resident', k], { env: process.env });
    const m = JSON.parse(out.toString());
    console.log(`arena ${k}: resident ${m.before} MiB, after a ${ROWS}-row call ${m.afterBig} MiB, after a 1-row call ${m.afterSmall} MiB`);
  }
}
