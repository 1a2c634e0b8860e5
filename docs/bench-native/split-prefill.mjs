// What cutting shares into pieces costs a prefill: the demo model's experts in 2 local workers
// (0-3 and 4-7, 1 thread each) at three frame limits, the default 64 MiB (one request per worker
// and layer), one that fits 64 tokens of all 4 experts and one that fits 8, each set driven by its
// own engine in this process; a prefill step of 4 sequences x 128 tokens (about 300 rows per worker
// and layer), the three engines interleaved round by round. Prints each limit's median step time,
// its requests per step and the ratio to the default, and writes them as JSON:
//   npm run build && node docs/bench-native/split-prefill.mjs [--rounds 7] [--out FILE]
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import os from 'node:os';
import { summarizeDispatch } from '../../dist/coordinator/cluster/dispatch-stats.js';
import { EngineClient } from '../../dist/coordinator/engine/engine-client.js';
import { tokensPerFrame } from '../../dist/worker/frame-capacity.js';

const args = process.argv.slice(2);
const flag = (name, fallback) => {
  const i = args.indexOf(name);
  return i < 0 ? fallback : args[i + 1];
};
const ROUNDS = Number(flag('--rounds', '7'));
const OUT = flag('--out', undefined);
const MODEL = new URL('../../models/tiny-mixtral', import.meta.url).pathname;
const MAIN = new URL('../../dist/coordinator/cli/main.js', import.meta.url).pathname;
const HIDDEN = 256;
const SEQS = 4;
const TOKENS = 128;
const VOCAB = 4096;

/** The smallest limit (bytes) that fits `tokens` tokens of all 4 experts on the fp32 wire. */
function limitFor(tokens) {
  let bytes = 1024;
  while (tokensPerFrame({ maxFrameBytes: bytes, hidden: HIDDEN, numExperts: 8, held: 4, wire: 'fp32' }) < tokens)
    bytes += 64;
  return bytes;
}

function startWorker(experts, maxFrameBytes) {
  const child = spawn(
    process.execPath,
    [MAIN, 'worker', '--model', MODEL, '--experts', experts, '--port', '0', '--threads', '1',
      '--max-frame-mb', String(maxFrameBytes / 2 ** 20)],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`worker exited with ${code}`)));
    createInterface({ input: child.stdout }).on('line', (line) => {
      const m = /^kmoe worker ready (ws:\/\/\S+)/.exec(line);
      if (m) resolve({ url: m[1], child });
    });
  });
}

const limits = [
  { name: 'default 64 MiB', bytes: 64 * 2 ** 20 },
  { name: 'fits 64 tokens', bytes: limitFor(64) },
  { name: 'fits 8 tokens', bytes: limitFor(8) },
];
const sets = [];
for (const l of limits) {
  const workers = [await startWorker('0-3', l.bytes), await startWorker('4-7', l.bytes)];
  const engine = await EngineClient.start({
    modelDir: MODEL,
    settings: { device: 'cpu', threads: 1, expertWeights: 'fp32' },
    experts: { kind: 'remote', workers: workers.map((w) => w.url), wireDtype: 'fp32' },
  });
  sets.push({ ...l, workers, engine, ms: [], messages: [] });
}

let seed = 1;
const rand = () => {
  seed = (seed * 1103515245 + 12345) % 2 ** 31;
  return seed / 2 ** 31;
};
const prompts = Array.from({ length: SEQS }, () => Array.from({ length: TOKENS }, () => Math.floor(rand() * VOCAB)));
// One warm-up step each, then the rounds, the order rotating so no limit always goes first.
for (let round = -1; round < ROUNDS; round++) {
  const order = sets.map((_, i) => sets[(i + Math.max(0, round)) % sets.length]);
  for (const s of order) {
    const batch = prompts.map((tokens, i) => ({ seqId: `r${round}s${i}`, tokens }));
    await s.engine.dispatchStats(true);
    const started = performance.now();
    await s.engine.step(batch);
    const ms = performance.now() - started;
    const stats = summarizeDispatch(await s.engine.dispatchStats(true));
    await s.engine.release(batch.map((b) => b.seqId));
    if (round >= 0) {
      s.ms.push(ms);
      s.messages.push(stats.messages);
    }
  }
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const base = median(sets[0].ms);
const results = sets.map((s) => ({
  limit: s.name,
  maxFrameBytes: s.bytes,
  medianMs: median(s.ms),
  rangeMs: [Math.min(...s.ms), Math.max(...s.ms)],
  requestsPerStep: median(s.messages),
  vsDefault: median(s.ms) / base,
}));
for (const r of results)
  console.log(
    `${r.limit.padEnd(15)} ${String(r.maxFrameBytes).padStart(9)} B: ${r.medianMs.toFixed(1)} ms per step (${r.rangeMs.map((x) => x.toFixed(1)).join('-')}), ${r.requestsPerStep} requests, ${r.vsDefault.toFixed(2)}x the default's time`,
  );
if (OUT !== undefined)
  writeFileSync(
    OUT,
    `${JSON.stringify({ cpu: os.cpus()[0]?.model, cores: os.availableParallelism(), seqs: SEQS, tokens: TOKENS, rounds: ROUNDS, results }, null, 2)}\n`,
  );
for (const s of sets) {
  await s.engine.close();
  for (const w of s.workers) w.child.kill('SIGTERM');
}
