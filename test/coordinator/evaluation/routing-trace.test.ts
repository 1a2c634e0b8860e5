// `kmoe eval --trace`: the routing decisions of a real forward pass, written and read back.
// - Qwen3-MoE and DeepSeek-V3 (whose references carry routing traces, from Hugging Face
//   transformers): the trace of native routing through the real CLI equals the reference traces,
//   experts and order exact, weights within 1e-5 (fp32 on both sides).
// - Mixtral (its independent reference carries perplexity and avg K per layer, not traces): an
//   entropy policy's trace on valid.man gives the reference's avg K per layer within 0.001, and
//   every decision recomputes from the trace's own native top-2 (K=1: the top expert, weight 1;
//   K=2: both, native weights).

import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EngineClient } from '../../../coordinator/engine/engine-client.js';
import { RoutingTraceError } from '../../../coordinator/evaluation/errors.js';
import { evaluatePerplexity } from '../../../coordinator/evaluation/perplexity.js';
import {
  openRoutingTrace,
  ROUTING_TRACE_FORMAT,
  ROUTING_TRACE_VERSION,
  type RoutingTraceHeader,
  RoutingTraceWriter,
  type TraceWindow,
} from '../../../coordinator/evaluation/routing-trace.js';
import { readU16Ids } from '../../../shared/data/token-ids.js';
import { runCli } from '../../helpers/cli.js';
import { EVAL_DIR, MODEL_DIR, perplexityReferences } from '../../helpers/paths.js';
import { MODELS_DIR, maxAbsDiff, referenceCases } from '../../shared/families/graph-forward.js';

const WEIGHT_TOL = 1e-5;

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kmoe-trace-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function readAll(file: string) {
  const t = await openRoutingTrace(file);
  const windows: TraceWindow[] = [];
  for await (const w of t.windows) windows.push(w);
  return { header: t.header, windows };
}

function rowsOf(a: TraceWindow['layers'][number]['chosen']) {
  const experts: number[][] = [];
  const weights: number[][] = [];
  for (let t = 0; t < a.numTokens; t++) {
    experts.push([...a.experts.subarray(a.offsets[t]!, a.offsets[t + 1]!)]);
    weights.push([...a.weights.subarray(a.offsets[t]!, a.offsets[t + 1]!)]);
  }
  return { experts, weights };
}

describe.each(['tiny-qwen3-moe', 'tiny-deepseek-v3'])(
  '%s: kmoe eval --trace vs the reference traces',
  (model) => {
    it('native routing: experts exact, weights within 1e-5, layers and header as the model', async () => {
      const cases = await referenceCases(model);
      const L = cases[0]!.ids.length;
      expect(cases.every((c) => c.ids.length === L)).toBe(true);
      const ids = path.join(dir, `${model}.u16`);
      await writeFile(ids, Buffer.from(Uint16Array.from(cases.flatMap((c) => c.ids)).buffer));
      const file = path.join(dir, `${model}.jsonl.gz`);
      const r = await runCli([
        'eval',
        '--model',
        path.join(MODELS_DIR, model),
        '--ids',
        ids,
        '--window',
        String(L),
        '--threads',
        '1',
        '--trace',
        file,
      ]);
      expect(r.stderr).not.toMatch(/error/i);
      expect(r.code).toBe(0);
      const { header, windows } = await readAll(file);
      expect(header.format).toBe(ROUTING_TRACE_FORMAT);
      expect(header.version).toBe(ROUTING_TRACE_VERSION);
      expect(header.windows).toEqual({ start: 0, end: cases.length });
      expect(header.windowLen).toBe(L);
      expect(header.corpus).toBe(ids);
      expect(header.model.fingerprint).toMatch(/^[0-9a-f]{64}$/);
      expect(windows.map((w) => w.window)).toEqual(cases.map((_, i) => i));
      for (const [i, c] of cases.entries()) {
        expect(header.moeLayers).toEqual(c.trace.moeLayers);
        for (const [m, ref] of c.trace.layers.entries()) {
          const layer = windows[i]!.layers[m]!;
          const chosen = rowsOf(layer.chosen);
          const native = rowsOf(layer.native);
          expect(chosen.experts, `${c.name} layer ${ref.layer}`).toEqual(ref.experts);
          expect(native.experts, `${c.name} layer ${ref.layer} native`).toEqual(ref.experts);
          expect(maxAbsDiff(chosen.weights.flat(), ref.weights.flat())).toBeLessThan(WEIGHT_TOL);
          expect(maxAbsDiff(native.weights.flat(), ref.weights.flat())).toBeLessThan(WEIGHT_TOL);
        }
      }
    });
  },
);

it('--trace records one routing: with --sweep it is a usage error', async () => {
  const r = await runCli([
    'eval',
    '--model',
    MODEL_DIR,
    '--ids',
    `${EVAL_DIR}/valid.man.u16`,
    '--sweep',
    '--trace',
    path.join(dir, 'x.jsonl'),
  ]);
  expect(r.code).toBe(2);
  expect(r.stderr).toMatch(/--trace records one routing: drop --sweep/);
});

describe('RoutingTraceWriter: the file at the path is replaced only by a complete trace', () => {
  const header: RoutingTraceHeader = {
    format: ROUTING_TRACE_FORMAT,
    version: ROUTING_TRACE_VERSION,
    model: { dir: MODEL_DIR, type: 'mixtral', fingerprint: 'f' },
    routing: 'topk:2',
    corpus: 'c.u16',
    windows: { start: 0, end: 1 },
    windowLen: 2,
    numExperts: 8,
    nativeK: 2,
    hidden: 256,
    moeLayers: [0],
    command: 'test',
  };

  it.each(['close', 'discard'] as const)(
    'a run that ends early (%s) leaves the earlier file and no temp file',
    async (end) => {
      const sub = await mkdtemp(path.join(dir, `early-${end}-`));
      const file = path.join(sub, 'trace.jsonl.gz');
      await writeFile(file, 'earlier\n');
      const writer = await RoutingTraceWriter.create(file, header);
      // Written beside the file, not over it.
      expect((await readdir(sub)).length).toBe(2);
      expect(await readFile(file, 'utf8')).toBe('earlier\n');
      if (end === 'close') await expect(writer.close()).rejects.toThrow(/wrote windows 0:0 of 0:1/);
      else await writer.discard();
      expect(await readdir(sub)).toEqual(['trace.jsonl.gz']);
      expect(await readFile(file, 'utf8')).toBe('earlier\n');
    },
  );
});

describe('tiny-mixtral: a reduced-K trace against the independent reference', () => {
  let engine: EngineClient;
  beforeAll(async () => {
    engine = await EngineClient.start({
      modelDir: MODEL_DIR,
      settings: { device: 'cpu', threads: 1, expertWeights: 'fp32' },
    });
  });
  afterAll(async () => {
    await engine?.close();
  });

  it('entropy:1,2@1.04 on valid.man: avg K per layer as the reference; decisions recompute from native top-2', async () => {
    const ref = perplexityReferences().find(
      (r) => r.file === 'valid.man.u16' && r.routing === 'entropy:1,2@1.04',
    );
    expect(ref).toBeDefined();
    const ids = await readU16Ids(`${EVAL_DIR}/valid.man.u16`);
    const windows = { start: 0, end: Math.floor(ids.length / 256) };
    const file = path.join(dir, 'mixtral-entropy.jsonl');
    const writer = await RoutingTraceWriter.create(file, {
      format: ROUTING_TRACE_FORMAT,
      version: ROUTING_TRACE_VERSION,
      model: { dir: MODEL_DIR, type: 'mixtral', fingerprint: engine.info.fingerprint },
      routing: ref!.routing,
      corpus: 'valid.man.u16',
      windows,
      windowLen: 256,
      numExperts: 8,
      nativeK: 2,
      hidden: 256,
      moeLayers: [0, 1, 2, 3],
      command: 'test',
    });
    const report = await evaluatePerplexity(engine, ids, {
      routing: ref!.routing,
      windows,
      onTrace: (layers, n) => writer.write(layers, n),
    });
    await writer.close();
    const { header, windows: read } = await readAll(file);
    expect(header.routing).toBe('entropy:1,2@1.04');
    expect(read.length).toBe(windows.end);
    const pairs = [0, 0, 0, 0];
    let tokens = 0;
    for (const w of read) {
      tokens += 256;
      w.layers.forEach((l, m) => {
        const c = rowsOf(l.chosen);
        const n = rowsOf(l.native);
        for (let t = 0; t < 256; t++) {
          const k = c.experts[t]!.length;
          pairs[m]! += k;
          expect(n.experts[t]!.length).toBe(2);
          expect(c.experts[t]).toEqual(n.experts[t]!.slice(0, k));
          if (k === 1) expect(c.weights[t]).toEqual([1]);
          else expect(maxAbsDiff(c.weights[t]!, n.weights[t]!)).toBeLessThan(WEIGHT_TOL);
        }
      });
    }
    pairs.forEach((p, m) => {
      expect(Math.abs(p / tokens - ref!.avgKPerLayer[String(m)]!)).toBeLessThan(1e-3);
      expect(p / tokens).toBeCloseTo(report.avgKPerLayer[m]!, 12);
    });
  });

  it('a damaged trace is refused naming the file and line', async () => {
    const file = path.join(dir, 'bad.jsonl');
    const header = {
      format: ROUTING_TRACE_FORMAT,
      version: ROUTING_TRACE_VERSION,
      model: { dir: 'm', type: 'mixtral', fingerprint: 'f' },
      routing: 'topk:2',
      corpus: 'c',
      windows: { start: 0, end: 2 },
      windowLen: 1,
      numExperts: 8,
      nativeK: 2,
      hidden: 4,
      moeLayers: [0],
      command: 'test',
    };
    const w0 = {
      window: 0,
      layers: [{ k: [1], experts: [3], weights: [1], nativeExperts: [3, 1], nativeWeights: [0.6, 0.4] }],
    };
    await writeFile(file, `${JSON.stringify(header)}\n${JSON.stringify(w0)}\n`);
    await expect(readAll(file)).rejects.toThrow(/bad\.jsonl line 2: the file ends after window 0/);
    const wrong = { ...w0, layers: [{ ...w0.layers[0], experts: [9] }] };
    await writeFile(file, `${JSON.stringify(header)}\n${JSON.stringify(wrong)}\n`);
    await expect(readAll(file)).rejects.toBeInstanceOf(RoutingTraceError);
    await writeFile(file, '{"format":"something else"}\n');
    await expect(readAll(file)).rejects.toThrow(/line 1: not a kmoe-routing-trace version 1 header/);
  });
});
