// Membership churn against one coordinator backend: joins and leaves N worker URLs that refuse
// connections (a registry whose workers come and go on new ports, or a hostile writer), one after
// the other, then prints the slots left, the heap growth (after GC) and the time of each quarter
// of the changes. The backend is taken from a build directory, so two builds run side by side:
//   node --expose-gc docs/bench-native/slot-churn.mjs dist ws://127.0.0.1:PORT   (N=20000)
// with `kmoe worker --model models/tiny-mixtral --experts 0-7 --port PORT` listening. Not part of kmoe.
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const [dist = 'dist', worker] = process.argv.slice(2);
const N = Number(process.env.N ?? 20_000);
const at = (p) => pathToFileURL(resolve(dist, p)).href;
const { RemoteExpertBackend } = await import(at('coordinator/cluster/remote-expert-backend.js'));
const { Checkpoint } = await import(at('shared/model/checkpoint.js'));
const ckpt = await Checkpoint.open('models/tiny-mixtral');
const model = { fingerprint: ckpt.fingerprint(), numLayers: 4, numExperts: 8, hidden: 256, nativeK: 2 };
await ckpt.close();
// A port nothing listens on: bound, then released.
const refused = await new Promise((r) => {
  const s = createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address();
    s.close(() => r(port));
  });
});
const be = await RemoteExpertBackend.connect({ workers: [worker], wire: 'fp32' }, model);
const heap = () => {
  globalThis.gc?.();
  return process.memoryUsage().heapUsed;
};
const heap0 = heap();
const quarters = [];
let t = performance.now();
for (let i = 0; i < N; i++) {
  const url = `ws://127.0.0.1:${refused}/w${i}`;
  await be.join(url).catch(() => {});
  be.leave(url);
  if ((i + 1) % (N / 4) === 0) {
    const now = performance.now();
    quarters.push(((now - t) / 1000).toFixed(1));
    t = now;
  }
}
console.log(
  JSON.stringify({
    dist,
    urls: N,
    slots: be.numWorkers,
    heapGrowthMB: Number(((heap() - heap0) / 2 ** 20).toFixed(1)),
    secondsPerQuarter: quarters.map(Number),
  }),
);
await be.close();
