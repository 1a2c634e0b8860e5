// A batch whose request to a worker is larger than the worker's --max-frame-mb is cut by rows into
// requests that fit, instead of failing: real worker processes with a 10 KiB limit (about 9 fp32
// rows of the demo model's hidden 256) give the single-process logits to 1e-5 relative, as in
// remote-engine.test.ts. The accounting costs the native top-2 baseline cut the same way, so under
// native routing what was sent is the baseline exactly. A single token larger than the limit fails
// the step with an error naming the limit and the flag.

import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { smallFramesMessage } from '../../../coordinator/cli/worker-notices.js';
import { summarizeDispatch } from '../../../coordinator/cluster/dispatch-stats.js';
import type { WorkerSmallFrames } from '../../../coordinator/cluster/remote-expert-backend.js';
import { EngineClient } from '../../../coordinator/engine/engine-client.js';
import { runCli } from '../../helpers/cli.js';
import { logLines } from '../../helpers/log-lines.js';
import { MODEL_DIR, referenceCases } from '../../helpers/paths.js';
import { relativeError } from '../../helpers/relative-error.js';
import { startWorker, type WorkerProcess } from '../../helpers/worker-process.js';
import { startServe } from '../server/serve-process.js';

const settings = { device: 'cpu' as const, threads: 2, expertWeights: 'fp32' as const };
const LIMIT_MB = '0.01';
const LIMIT_BYTES = Math.round(0.01 * 2 ** 20);
const LAYERS = 4;

let workers: WorkerProcess[] = [];
let tiny: WorkerProcess | undefined;
let local: EngineClient;

beforeAll(async () => {
  [local, tiny, ...workers] = await Promise.all([
    EngineClient.start({ modelDir: MODEL_DIR, settings }),
    startWorker('0-7', ['--max-frame-mb', '0.001']),
    startWorker('0-3', ['--max-frame-mb', LIMIT_MB]),
    startWorker('4-7', ['--max-frame-mb', LIMIT_MB]),
  ]);
}, 120_000);

/** An engine whose experts are on `urls`, on the fp32 wire. */
const remoteEngine = (urls: readonly string[]) =>
  EngineClient.start({
    modelDir: MODEL_DIR,
    settings,
    experts: { kind: 'remote', workers: urls, wireDtype: 'fp32' },
  });

afterAll(async () => {
  await local?.close();
  await Promise.all([tiny, ...workers].map((w) => w?.stop()));
});

describe('requests larger than a worker accepts', () => {
  it('are cut into frames that fit, with the single-process logits and exact accounting', async () => {
    const engine = await remoteEngine(workers.map((w) => w.url));
    try {
      const cases = referenceCases();
      // 4 prompts of 40 tokens: each worker needs ~80-160 rows a layer, 10-20 frames' worth.
      const prefill = cases.map((c) => ({ seqId: c.name, tokens: c.ids.slice(0, 40) }));
      const decode = cases.map((c) => ({ seqId: c.name, tokens: [c.ids[40]!] }));
      const want = [await local.step(prefill), await local.step(decode)];
      const got = [await engine.step(prefill), await engine.step(decode)];
      for (const [i, r] of got.entries()) expect(relativeError(r.logits, want[i]!.logits)).toBeLessThan(1e-5);

      const s = summarizeDispatch((await engine.dispatchStats(true))!);
      const tokens = cases.length * 41;
      expect(s.tokenLayers).toBe(tokens * LAYERS);
      // Without cutting there would be at most one message per worker per layer and step.
      const whole = 2 * 2 * LAYERS;
      // Each frame carries at most ~9 hidden rows of 1 KiB: at least tokensSent / 9 requests.
      expect(s.messages).toBeGreaterThan(whole);
      expect(s.messages).toBeGreaterThanOrEqual(Math.ceil(s.tokensSent / Math.floor(LIMIT_BYTES / 1024)));
      // Native top-2: the baseline is costed with the same cuts and ids, so it is what was sent.
      expect(s.vsNative).toBe(1);
      expect(s.bytes).toBe(s.nativeBytesPerTokenLayer * s.tokenLayers);
      expect(s.pairs).toBe(2 * s.tokenLayers);
      // Both workers kept their connections: no piece was refused as oversize by a worker.
      expect(workers.every((w) => !/oversize|exceeds the limit/.test(w.stderr()))).toBe(true);
      await Promise.all([engine, local].map((e) => e.release(cases.map((c) => c.name))));
    } finally {
      await engine.close();
    }
  });

  it('fail with the limit and the flag named when one token alone does not fit', async () => {
    const engine = await remoteEngine([tiny!.url]);
    try {
      const ids = referenceCases()[0]!.ids;
      const step = engine.step([{ seqId: 'one', tokens: ids.slice(0, 3) }]);
      await expect(step).rejects.toThrow(
        new RegExp(
          `worker ${tiny!.url.replace(/[.]/g, '\\.')} \\(experts 0-7\\) accepts frames up to 1049 bytes, a request of one token \\(\\d experts?\\) needs \\d+ \\(layer 0 dispatch\\)`,
        ),
      );
      // The limit that fits a prefill chunk, by number (before: "a larger --max-frame-mb").
      await expect(step).rejects.toMatchObject({
        hint: 'restart the worker with --max-frame-mb 0.066 or more (that fits 64 tokens on the fp32 wire)',
      });
      // And it was said as the engine connected, as a failure to come, not as slowness.
      const said: WorkerSmallFrames[] = [];
      engine.onWorkerSmallFrames((e) => said.push(e));
      expect(said.map((e) => smallFramesMessage(e))).toEqual([
        "fits not one token of a request on the fp32 wire: requests that need an expert only this worker holds fail, and its experts' other replicas take the rest; restart it with --max-frame-mb 0.066 to fit 64",
      ]);
    } finally {
      await engine.close();
    }
  });

  it('are announced by the coordinator for each worker it connects: the tokens on its wire, once', async () => {
    const engine = await remoteEngine(workers.map((w) => w.url));
    try {
      const said: WorkerSmallFrames[] = [];
      engine.onWorkerSmallFrames((e) => said.push(e));
      // Each holds 4 experts: 9 fp32 tokens fit its 0.01 MiB (as the worker says of itself).
      const want = (w: WorkerProcess) => ({
        url: w.url,
        maxFrameBytes: LIMIT_BYTES,
        tokens: 9,
        held: 4,
        wire: 'fp32',
        chunkFrameMib: 0.065,
        anyWireFrameMib: 0.065,
      });
      expect(said).toEqual(workers.map(want));
    } finally {
      await engine.close();
    }
  });

  it('are announced by kmoe serve in its log, on its wire', async () => {
    // Before: only the worker's own log said so; serve's operator saw slow prefill and nothing else.
    const serve = await startServe(['--workers', tiny!.url]);
    try {
      const lines = logLines(serve.stderr()).filter((l) => l.worker === tiny!.url && l.level === 40);
      expect(lines.map((l) => l.msg)).toEqual([
        "a worker's frame limit fits 1 token of a request on the bf16 wire: larger shares are cut into requests of that many, one round trip each (slower prefill and large batches); restart it with --max-frame-mb 0.035 (0.066 on any wire) to fit 64",
      ]);
      expect(lines[0]).toMatchObject({ tokens: 1, maxFrameMb: 0.001, experts: 8, wire: 'bf16' });
    } finally {
      await serve.stop();
    }
  });

  it('are announced by kmoe generate on stderr', async () => {
    const r = await runCli([
      'generate',
      '--model',
      MODEL_DIR,
      '--prompt',
      'def fib(n):',
      '--max-tokens',
      '2',
      '--workers',
      tiny!.url,
      '--threads',
      '1',
    ]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toContain(
      `kmoe generate: warning: worker ${tiny!.url}'s frame limit fits 1 token of a request on the bf16 wire`,
    );
  });

  it('are announced by the worker when it starts: the tokens its limit fits, and the limit that fits 64', () => {
    // Before: nothing; a worker whose limit forced pieces of a few tokens was only slow.
    const warned = (w: WorkerProcess) =>
      w
        .stderr()
        .split('\n')
        .filter((l) => l.startsWith('{"level":40,') && l.includes('--max-frame-mb'));
    expect(warned(workers[0]!)).toHaveLength(1);
    expect(warned(workers[0]!)[0]).toContain(
      `--max-frame-mb ${LIMIT_MB} fits 19 tokens of hidden size 256 on the bf16 wire (the default) and 9 tokens on fp32, each token sent to all 4 experts this worker holds`,
    );
    expect(warned(tiny!)[0]).toContain(
      '--max-frame-mb 0.001 fits 1 token of hidden size 256 on the bf16 wire (the default) and not one token on fp32',
    );
  });
});
