// Where the single-sequence decode loop spends its time: the engine in this thread (no engine
// thread, so V8's profiler sees it), local fp32 experts, 1 onnxruntime thread, a 16-token prompt,
// then ROUNDS greedy decodes of 200 tokens (the loop `kmoe generate` runs). Prints tokens/s per
// round; with --cpu-prof, node writes a .cpuprofile to sum by function (self time). README "Fast" and
// docs/performance.md ("Demo model, 1 thread: machines A, B and C") cite it: ~90% of the time inside onnxruntime's run, ~10% in JavaScript. Not part of kmoe; run
// from the repository after `npm run build`:
//   ROUNDS=20 node --cpu-prof --cpu-prof-interval 100 docs/bench-native/decode-loop-profile.mjs
//   EW=int8 DW=int8 node docs/bench-native/decode-loop-profile.mjs     # 8-bit experts and dense
import { connectExperts } from '../../dist/coordinator/engine/connect-experts.js';
import { Engine } from '../../dist/coordinator/engine/engine.js';

const settings = {
  device: 'cpu',
  threads: 1,
  expertWeights: process.env.EW ?? 'fp32',
  ...(process.env.DW ? { denseWeights: process.env.DW } : {}),
};
const modelDir = new URL('../../models/tiny-mixtral', import.meta.url).pathname;
const engine = await Engine.create({ modelDir, settings }, (ckpt) =>
  connectExperts({ kind: 'local' }, ckpt, settings, { down() {}, up() {} }),
);
const prompt = [1, 822, 5713, 29898, 29876, 1125, 13, 1678, 565, 302, 5277, 29871, 29896, 29901, 13, 4706].map(
  (t) => t % 4096,
);
let seq = 0;
async function decodeRound(tokens) {
  const id = `s${seq++}`;
  await engine.step([{ seqId: id, tokens: prompt }]);
  const t0 = performance.now();
  const d = await engine.decode({
    seqId: id,
    token: 5,
    maxTokens: tokens,
    sampling: { temperature: 0 },
    rngState: [1, 2, 3, 4],
    stop: [],
  });
  const ms = performance.now() - t0;
  engine.release(id);
  return (d.tokens.length / ms) * 1000;
}
await decodeRound(64);
const rates = [];
for (let i = 0; i < Number(process.env.ROUNDS ?? 5); i++) rates.push(await decodeRound(200));
console.log('tokens/s per round:', rates.map((r) => r.toFixed(0)).join(' '));
await engine.close();
