// `kmoe bench model`: prefill (perplexity windows) and single-sequence decode throughput of one
// process, with the time inside onnxruntime split by graph kind so it is clear what dominates.

import fs from 'node:fs/promises';
import path from 'node:path';
import { parseWindowRange, readU16Ids } from '../../shared/data/token-ids.js';
import type { RunTiming, SessionSettings } from '../../shared/onnx/session.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { EngineClient } from '../engine/engine-client.js';
import { probeExpertCalls } from '../evaluation/expert-call-probe.js';
import { evaluatePerplexity, STANDARD_WINDOW, windowCount } from '../evaluation/perplexity.js';
import { argmax } from '../sampling.js';
import { median } from './report/quantiles.js';

export interface BenchModelOptions {
  readonly model: string;
  readonly settings: SessionSettings;
  readonly ids: string;
  /** START:END windows of the corpus each prefill measurement runs. */
  readonly windows: string;
  readonly decodeTokens: number;
  readonly repeats: number;
  readonly out: string;
}

interface Breakdown {
  readonly wallMs: number;
  readonly onnxruntime: Record<string, RunTiming>;
  /** Wall time not spent inside onnxruntime: routing, gathers, copies, thread messages. */
  readonly otherMs: number;
}

export async function run(o: BenchModelOptions, argv: readonly string[]): Promise<number> {
  const { model: modelDir, ids: idsPath, decodeTokens, repeats, out } = o;
  const { settings } = o;
  const ids = await readU16Ids(idsPath);
  const range = parseWindowRange(o.windows, windowCount(ids));
  const windows = range.end - range.start;
  const prefillIds = ids.subarray(range.start * STANDARD_WINDOW, range.end * STANDARD_WINDOW);

  const engine = await EngineClient.start({ modelDir, settings });
  try {
    const prefill = async (batch: number) => {
      const rates: number[] = [];
      await evaluatePerplexity(engine, prefillIds, {
        batchWindows: batch,
        windows: { start: 0, end: Math.min(8, windows) },
      });
      for (let r = 0; r < repeats; r++) {
        rates.push((await evaluatePerplexity(engine, prefillIds, { batchWindows: batch })).tokensPerSecond);
      }
      return { tokensPerSecond: median(rates), samples: rates };
    };
    const decodeOnce = async (seq: string): Promise<{ tps: number; wallMs: number }> => {
      let step = await engine.step([{ seqId: seq, tokens: Array.from(prefillIds.subarray(0, 16)) }]);
      const started = performance.now();
      for (let i = 0; i < decodeTokens; i++) {
        step = await engine.step([{ seqId: seq, tokens: [argmax(step.logits)] }]);
      }
      const wallMs = performance.now() - started;
      await engine.release([seq]);
      return { tps: (decodeTokens / wallMs) * 1000, wallMs };
    };
    const breakdown = async (work: () => Promise<number>): Promise<Breakdown> => {
      await engine.timing(true);
      const wallMs = await work();
      const onnxruntime = await engine.timing(false);
      const inside = Object.values(onnxruntime).reduce((a, t) => a + t.ms, 0);
      return { wallMs, onnxruntime, otherMs: wallMs - inside };
    };

    process.stderr.write('bench model: prefill...\n');
    const prefill1 = await prefill(1);
    const prefill4 = await prefill(4);
    process.stderr.write('bench model: decode...\n');
    await decodeOnce('warm-up');
    const decodeRates: number[] = [];
    for (let r = 0; r < repeats; r++) decodeRates.push((await decodeOnce(`d${r}`)).tps);
    const decodeBreakdown = await breakdown(async () => (await decodeOnce('timed')).wallMs);
    const prefillBreakdown = await breakdown(async () => {
      const t = performance.now();
      await evaluatePerplexity(engine, prefillIds, { batchWindows: 4 });
      return performance.now() - t;
    });

    process.stderr.write('bench model: expert calls...\n');
    const expertCalls = await probeExpertCalls(modelDir, settings, 4000);

    // Figures for llama.cpp on the same weights and machine, as stated in the foundation issue
    // (2 threads); kmoe cannot run llama.cpp here, so these are quoted, not measured by this command.
    const llamaCpp = {
      prefillTokensPerSecond: 8700,
      decodeTokensPerSecond: 1350,
      source: 'quoted in issue 2',
    };
    const result = {
      benchmark: 'model',
      command: `kmoe bench model ${argv.join(' ')}`.trim(),
      machine: machineInfo(),
      model: engine.info.modelDir,
      threads: settings.threads,
      expertWeights: settings.expertWeights,
      corpus: idsPath,
      prefill: {
        windows,
        windowLen: STANDARD_WINDOW,
        batch1: prefill1,
        batch4: prefill4,
        breakdown: prefillBreakdown,
      },
      decode: {
        promptTokens: 16,
        tokens: decodeTokens,
        tokensPerSecond: median(decodeRates),
        samples: decodeRates,
        breakdown: decodeBreakdown,
      },
      expertCalls,
      llamaCpp,
      ratios: {
        prefillVsLlamaCpp: prefill4.tokensPerSecond / llamaCpp.prefillTokensPerSecond,
        decodeVsLlamaCpp: median(decodeRates) / llamaCpp.decodeTokensPerSecond,
      },
    };
    await fs.mkdir(path.dirname(out), { recursive: true });
    await fs.writeFile(out, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(
      formatTable(
        result.prefill.batch1.tokensPerSecond,
        result.prefill.batch4.tokensPerSecond,
        result.decode.tokensPerSecond,
        llamaCpp,
        decodeBreakdown,
        decodeTokens,
        prefillBreakdown,
        windows * STANDARD_WINDOW,
      ),
    );
    process.stdout.write(
      `expert call, 1 token: ${expertCalls.sameExpertMicros.toFixed(1)} us with its ${expertCalls.expertMiB.toFixed(1)} MiB of weights in cache, ` +
        `${expertCalls.rotatingMicros.toFixed(1)} us rotating through all ${expertCalls.allExpertsMiB.toFixed(0)} MiB of expert weights\n`,
    );
    process.stdout.write(`wrote ${out}\n`);
  } finally {
    await engine.close();
  }
  return 0;
}

function formatTable(
  prefill1: number,
  prefill4: number,
  decode: number,
  llama: { prefillTokensPerSecond: number; decodeTokensPerSecond: number },
  decodeBd: Breakdown,
  decodeTokens: number,
  prefillBd: Breakdown,
  prefillTokens: number,
): string {
  const row = (name: string, v: number, ref: number) =>
    `| ${name} | ${v.toFixed(0)} | ${ref} | ${(v / ref).toFixed(2)}x |`;
  const per = (bd: Breakdown, n: number) =>
    [
      ...Object.entries(bd.onnxruntime).map(
        ([k, t]) => `${k} ${((t.ms / n) * 1000).toFixed(1)} us (${(t.calls / n).toFixed(1)} calls)`,
      ),
      `other ${((bd.otherMs / n) * 1000).toFixed(1)} us`,
    ].join(', ');
  return [
    '| figure | kmoe tokens/s | llama.cpp (quoted) | ratio |',
    '|---|---|---|---|',
    row('prefill, 1 window per pass', prefill1, llama.prefillTokensPerSecond),
    row('prefill, 4 windows per pass', prefill4, llama.prefillTokensPerSecond),
    row('decode, 1 sequence', decode, llama.decodeTokensPerSecond),
    '',
    `decode time per token: ${per(decodeBd, decodeTokens)}`,
    `prefill time per token: ${per(prefillBd, prefillTokens)}`,
    '',
  ].join('\n');
}
