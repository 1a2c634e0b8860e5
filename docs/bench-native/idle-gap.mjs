// Does a wait between expert calls slow the next call? One-token calls of the demo model's expert
// shape (H 256, F 512), rotating through NE experts (16: one worker's share of tiny-mixtral), with
// no gap, a busy-wait gap, and a sleeping gap (Atomics.wait: the thread sleeps, the vCPU may halt)
// before each call; rounds alternate. Run from the repository after `npm run build`:
//   node docs/bench-native/idle-gap.mjs            # GAP_US=400 NE=16 CALLS=2000
import { expertGraph, session, weights } from './probe-sessions.mjs';
import ort from 'onnxruntime-node';

const H = 256;
const F = 512;
const NE = Number(process.env.NE ?? 16);
const GAP_US = Number(process.env.GAP_US ?? 400);
const CALLS = Number(process.env.CALLS ?? 2000);

const sessions = [];
for (let e = 0; e < NE; e++) sessions.push(session(expertGraph(e, H, F)));
const x = new ort.Tensor('float32', weights(H, 99), [1, H]);
const y = new ort.Tensor('float32', new Float32Array(H), [1, H]);
const sleeper = new Int32Array(new SharedArrayBuffer(4));

function gap(kind) {
  if (kind === 'sleep') Atomics.wait(sleeper, 0, 0, GAP_US / 1000);
  else if (kind === 'spin') {
    const end = process.hrtime.bigint() + BigInt(GAP_US * 1000);
    while (process.hrtime.bigint() < end);
  }
}

function round(kind) {
  const t = [];
  for (let i = 0; i < CALLS; i++) {
    gap(kind);
    const s = process.hrtime.bigint();
    sessions[(i * 5) % NE].run({ x }, { y }, {});
    t.push(Number(process.hrtime.bigint() - s) / 1000);
  }
  t.sort((a, b) => a - b);
  return t[t.length >> 1];
}

const kinds = ['none', 'spin', 'sleep'];
const results = Object.fromEntries(kinds.map((k) => [k, []]));
for (let r = 0; r < 5; r++) for (const k of r % 2 ? [...kinds].reverse() : kinds) results[k].push(round(k));
for (const k of kinds) console.log(`gap ${k.padEnd(5)} (${GAP_US} us): p50 per call ${results[k].map((v) => v.toFixed(0)).join(', ')} us`);
