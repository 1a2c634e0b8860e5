// onnxruntime's CPU memory arena: what it costs in speed to turn it off, and what it holds after a
// large call. Expert graphs of the demo model's shape (H 256, F 512), 8 experts, with and without
// the arena (session option enableCpuMemArena), timed at several batch sizes in alternating rounds
// in one process; then the resident memory of two fresh processes after one call of ROWS rows.
// Not part of kmoe; run from the repository after `npm run build`:
//   node docs/bench-native/cpu-arena.mjs            # ROUNDS=7 ROWS=16384
import { execFileSync } from 'node:child_process';
import ort from 'onnxruntime-node';
import { expertGraph, session, weights } from './probe-sessions.mjs';

const H = 256;
const F = 512;
const NE = 8;
const ROUNDS = Number(process.env.ROUNDS ?? 7);
const ROWS = Number(process.env.ROWS ?? 16384);

/** kmoe's session settings, the arena on or off. */
const arenaSession = (e, arena) => session(expertGraph(e, H, F), {}, { enableCpuMemArena: arena });

const residentMiB = () => Math.round(process.memoryUsage().rss / 2 ** 20);

if (process.argv[2] === 'resident') {
  const s = arenaSession(0, process.argv[3] === 'on');
  const before = residentMiB();
  s.run({ x: new ort.Tensor('float32', weights(ROWS * H, 5), [ROWS, H]) }, { y: null }, {});
  const afterBig = residentMiB();
  s.run({ x: new ort.Tensor('float32', weights(H, 5), [1, H]) }, { y: null }, {});
  console.log(JSON.stringify({ before, afterBig, afterSmall: residentMiB() }));
} else {
  const built = { on: [], off: [] };
  for (let e = 0; e < NE; e++) for (const k of ['on', 'off']) built[k].push(arenaSession(e, k === 'on'));
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
