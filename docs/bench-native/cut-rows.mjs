// CPU time of cutting one worker's share into requests that fit its frame limit, at Mixtral
// 8x22B's hidden size (6,144, fp32 wire, two experts per token): the arithmetic the accounting
// and the sends both run (RemoteExpertBackend.requestSizes), for shares of 4,096 to 131,072 rows
// and limits of one row a frame, two rows and the default 64 MiB; then the per-request check that
// every decode dispatch pays (requestFits far below the limit). No worker is needed:
//   npm run build && node docs/bench-native/cut-rows.mjs
import { RemoteExpertBackend } from '../../dist/coordinator/cluster/remote-expert-backend.js';
import { dispatchRequestBytes } from '../../dist/shared/protocol/codec.js';

const H = 6144;
const model = { fingerprint: 'x', numLayers: 56, numExperts: 8, hidden: H, nativeK: 2 };
// The backend's constructor is private to TypeScript, not to JavaScript: no connection is used.
const backend = new RemoteExpertBackend([], model, 'fp32', {}, 'baseline', {});
const oneRow = dispatchRequestBytes({
  id: 0xffffffff,
  layer: 1,
  wire: 'fp32',
  numTokens: 1,
  numPairs: 2,
  hidden: H,
  index: 'uint8',
});
for (const rows of [4096, 32768, 131072]) {
  const offsets = Int32Array.from({ length: rows + 1 }, (_, i) => 2 * i);
  for (const [name, limit] of [
    ['one row', oneRow],
    ['two rows', 2 * oneRow],
    ['64 MiB', 64 * 2 ** 20],
  ]) {
    const started = performance.now();
    const pieces = backend.requestSizes(1, offsets, limit);
    const ms = performance.now() - started;
    console.log(`${rows} rows, limit ${name}: ${pieces.length} pieces in ${ms.toFixed(1)} ms`);
  }
}
let fits = 0;
const started = performance.now();
for (let i = 0; i < 1e6; i++) if (backend.requestFits(1, 1, 2, 64 * 2 ** 20)) fits++;
console.log(`requestFits of one decode token: ${((performance.now() - started) * 1e6) / 1e6} ns (${fits} fit)`);
