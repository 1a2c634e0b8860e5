// `kmoe bench model`: prefill (perplexity windows) and single-sequence decode throughput of one
// process, with the time inside onnxruntime split by graph kind so it is clear what dominates.

import path from 'node:path';
import type { CorpusWindows } from '../../shared/data/token-ids.js';
import type { RunTiming, SessionSettings } from '../../shared/onnx/session.js';
import { DEFAULT_WIRE_DTYPE } from '../../shared/protocol/wire-dtype.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { counted } from '../../shared/text/counted.js';
import { type LocalCluster, startLocalCluster } from '../cluster/local-cluster.js';
import { EngineClient } from '../engine/engine-client.js';
import { probeExpertCalls } from '../evaluation/expert-call-probe.js';
import { evaluatePerplexity } from '../evaluation/perplexity.js';
import { STANDARD_WINDOW } from '../evaluation/windows.js';
import { argmax, GREEDY, Rng } from '../sampling.js';
import { BenchConfigError } from './errors.js';
import { cachedCheckpointGguf, type GgufOutType } from './gguf/checkpoint-to-gguf.js';
import { type LlamaCppAnchor, openLlamaCpp } from './llama-cpp-anchor.js';
import type { FlashAttentionSetting } from './llama-cpp-settings.js';
import { median } from './report/quantiles.js';

export interface BenchModelOptions {
  readonly model: string;
  readonly settings: SessionSettings;
  readonly ids: string;
  /** The corpus (`ids`) read, and the windows of it each prefill measurement runs. */
  readonly corpus: CorpusWindows;
  readonly decodeTokens: number;
  /** Prompt tokens before each decode measurement: the context decode runs at. */
  readonly decodePrompt: number;
  readonly repeats: number;
  readonly out: string;
  /**
   * Run llama.cpp (node-llama-cpp) side by side, interleaved round by round: a GGUF file of the same
   * weights, or 'auto' to write one from the checkpoint (cached under `ggufCache`).
   */
  readonly llamaCpp?: string;
  /** Tensor type of the GGUF written by 'auto'; default f32 for fp32 experts, q8_0 for int8. */
  readonly llamaCppType?: GgufOutType;
  /** llama.cpp's flash attention: its default 'auto' (on for CPU), or forced on or off. */
  readonly llamaCppFlashAttention?: FlashAttentionSetting;
  /** Another GGUF of the same weights: its greedy tokens must equal those of the anchor's GGUF. */
  readonly llamaCppReference?: string;
  /** Where 'auto' caches the GGUF files it writes. */
  readonly ggufCache?: string;
  /**
   * A second engine, measured in the same rounds (ratios to the first): other weight formats, and/or
   * its experts in `workers` local worker processes (started and stopped by the bench).
   */
  readonly versus?: Pick<Partial<SessionSettings>, 'denseWeights' | 'expertWeights'> & {
    readonly workers?: number;
  };
}

interface Breakdown {
  readonly wallMs: number;
  readonly onnxruntime: Record<string, RunTiming>;
  /** Wall time not spent inside onnxruntime: routing, gathers, copies, thread messages. */
  readonly otherMs: number;
}

/** Leading positions where two greedy continuations agree, and positions equal overall. */
export function tokenAgreement(a: readonly number[], b: readonly number[]) {
  const n = Math.min(a.length, b.length);
  let prefix = 0;
  while (prefix < n && a[prefix] === b[prefix]) prefix++;
  let equal = 0;
  for (let i = 0; i < n; i++) if (a[i] === b[i]) equal++;
  return { compared: n, agreeingPrefix: prefix, equalPositions: equal };
}

async function resolveGguf(o: BenchModelOptions) {
  if (o.llamaCpp === undefined) return undefined;
  if (o.llamaCpp !== 'auto') return { file: o.llamaCpp, source: 'given' as const, type: null, written: null };
  const int8 = o.settings.expertWeights === 'int8' || o.settings.denseWeights === 'int8';
  const type = o.llamaCppType ?? (int8 ? 'q8_0' : 'f32');
  const cache = o.ggufCache ?? path.join(path.dirname(o.out), 'gguf');
  process.stderr.write(`bench model: GGUF (${type}) of ${o.model} in ${cache}...\n`);
  const { file, written } = await cachedCheckpointGguf(o.model, type, cache);
  return { file, source: 'written from the checkpoint by kmoe' as const, type, written };
}

/**
 * The decode prompt fits the windows it is cut from (`windowTokens` of them), and prompt + decode
 * fit the model's positions. The CLI checks this before `run` (a usage error, before anything
 * loads), so that `run` never finds out minutes into the bench.
 */
export function checkDecodeSpan(
  o: Pick<BenchModelOptions, 'decodePrompt' | 'decodeTokens'> & { readonly windows: string },
  windowTokens: number,
  maxPositionEmbeddings: number,
): void {
  const { decodePrompt, decodeTokens } = o;
  if (decodePrompt > windowTokens) {
    throw new BenchConfigError(
      `--decode-prompt ${decodePrompt} is longer than the ${windowTokens} tokens of --windows ${o.windows}`,
      { hint: `give --windows at least ${Math.ceil(decodePrompt / STANDARD_WINDOW)} windows` },
    );
  }
  if (decodePrompt + decodeTokens > maxPositionEmbeddings) {
    throw new BenchConfigError(
      `--decode-prompt ${decodePrompt} + --decode-tokens ${decodeTokens} = ${decodePrompt + decodeTokens} positions; the model supports ${maxPositionEmbeddings}`,
      { hint: 'give a shorter --decode-prompt or fewer --decode-tokens' },
    );
  }
}

export async function run(o: BenchModelOptions, argv: readonly string[]): Promise<number> {
  const { model: modelDir, ids: idsPath, decodeTokens, repeats, out } = o;
  const { settings } = o;
  const { ids, range } = o.corpus;
  const windows = range.end - range.start;
  const prefillIds = ids.subarray(range.start * STANDARD_WINDOW, range.end * STANDARD_WINDOW);
  const promptTokens = o.decodePrompt;
  // evaluatePerplexity's 4-window passes hold fewer when the range has fewer.
  const windowsPerPass = Math.min(4, windows);
  const prompt = Array.from(prefillIds.subarray(0, promptTokens));
  const windowTokens = Array.from({ length: windows }, (_, w) =>
    Array.from(prefillIds.subarray(w * STANDARD_WINDOW, (w + 1) * STANDARD_WINDOW)),
  );

  // The anchor loads first: a missing binding or a bad GGUF fails before minutes of kmoe measurements.
  const runtime = o.llamaCpp === undefined ? undefined : await openLlamaCpp(settings.threads);
  const gguf = await resolveGguf(o).catch(async (e: unknown) => {
    await runtime?.dispose();
    throw e;
  });
  const llamaSizes = {
    // A context of exactly one window made llama.cpp's 256-token prefill 1.5-2x slower than any larger
    // context (node-llama-cpp 3.21.1, measured here: 3,700-4,200 against 6,300-7,600 tok/s at 257 to
    // 4,096), so the anchor's context always leaves room beyond a window.
    maxTokens: Math.max(2 * STANDARD_WINDOW, promptTokens + decodeTokens + 1),
    batchTokens: STANDARD_WINDOW,
    flashAttention: o.llamaCppFlashAttention ?? 'auto',
  };
  let reference: { gguf: string; tokens: number[] } | undefined;
  let llama: LlamaCppAnchor | undefined;
  try {
    if (runtime !== undefined && o.llamaCppReference !== undefined) {
      const ref = await runtime.load({ ...llamaSizes, gguf: o.llamaCppReference });
      try {
        reference = { gguf: o.llamaCppReference, tokens: (await ref.decode(prompt, decodeTokens)).tokens };
      } finally {
        await ref.close();
      }
    }
    llama = gguf === undefined ? undefined : await runtime?.load({ ...llamaSizes, gguf: gguf.file });
  } catch (e) {
    await runtime?.dispose();
    throw e;
  }

  const engine = await EngineClient.start({ modelDir, settings }).catch(async (e: unknown) => {
    await llama?.close();
    await runtime?.dispose();
    throw e;
  });
  let versus: EngineClient | undefined;
  let cluster: LocalCluster | undefined;
  try {
    if (o.versus !== undefined) {
      const { workers, ...formats } = o.versus;
      const versusSettings = { ...settings, ...formats };
      if (workers !== undefined && workers > 0) {
        process.stderr.write(`bench model: starting ${workers} local workers for --versus...\n`);
        cluster = await startLocalCluster({
          modelDir,
          workers,
          threads: settings.threads,
          expertWeights: versusSettings.expertWeights,
          // As serve's own workers: one client, experts computed on the socket thread.
          compute: 'inline',
        });
      }
      versus = await EngineClient.start({
        modelDir,
        settings: versusSettings,
        ...(cluster === undefined
          ? {}
          : { experts: { kind: 'remote' as const, workers: cluster.urls, wireDtype: DEFAULT_WIRE_DTYPE } }),
      });
    }
    const prefill = async (batch: number, on: EngineClient = engine) =>
      (await evaluatePerplexity(on, prefillIds, { batchWindows: batch })).tokensPerSecond;
    // CPU time of the whole process (all threads) per decoded token: unlike wall time it hardly
    // moves when other processes take the cores, so it shows work saved on a shared machine.
    const cpuPerToken = (since: NodeJS.CpuUsage) => {
      const c = process.cpuUsage(since);
      return (c.user + c.system) / decodeTokens;
    };
    // `atDecode` runs after the prompt's step, where the timed decode starts.
    const decodeOnce = async (
      seq: string,
      on: EngineClient = engine,
      atDecode?: () => Promise<unknown>,
    ): Promise<{ tps: number; wallMs: number; tokens: number[]; cpuMicros: number }> => {
      const engine = on;
      let step = await engine.step([{ seqId: seq, tokens: prompt }]);
      const tokens = [argmax(step.logits)];
      await atDecode?.();
      const started = performance.now();
      const cpu = process.cpuUsage();
      for (let i = 0; i < decodeTokens; i++) {
        step = await engine.step([{ seqId: seq, tokens: [tokens[i]!] }]);
        tokens.push(argmax(step.logits));
      }
      const wallMs = performance.now() - started;
      await engine.release([seq]);
      return { tps: (decodeTokens / wallMs) * 1000, wallMs, tokens, cpuMicros: cpuPerToken(cpu) };
    };
    // The same greedy decode with the loop on the engine thread: one thread round trip in all.
    const decodeLoopOnce = async (
      seq: string,
      on: EngineClient = engine,
    ): Promise<{ tps: number; tokens: number[]; cpuMicros: number }> => {
      const engine = on;
      const first = await engine.step([{ seqId: seq, tokens: prompt }]);
      const tokens = [argmax(first.logits)];
      const started = performance.now();
      const cpu = process.cpuUsage();
      const d = await engine.decode({
        seqId: seq,
        token: tokens[0]!,
        maxTokens: decodeTokens,
        sampling: GREEDY,
        rngState: new Rng(0).state(),
        stop: [],
      });
      const wallMs = performance.now() - started;
      await engine.release([seq]);
      return {
        tps: (decodeTokens / wallMs) * 1000,
        tokens: [...tokens, ...d.tokens],
        cpuMicros: cpuPerToken(cpu),
      };
    };
    // `work` calls `start` where its timed wall clock starts (after any untimed setup such as the
    // prompt's step), so onnxruntime's time is counted over the same interval as the wall time.
    const breakdown = async (
      work: (start: () => Promise<unknown>) => Promise<number>,
      on: EngineClient = engine,
    ): Promise<Breakdown> => {
      const wallMs = await work(() => on.timing(true));
      const onnxruntime = await on.timing(false);
      const inside = Object.values(onnxruntime).reduce((a, t) => a + t.ms, 0);
      return { wallMs, onnxruntime, otherMs: wallMs - inside };
    };
    const rate = (tokens: number, ms: number | null) => (ms === null ? null : (tokens / ms) * 1000);

    process.stderr.write('bench model: warm-up...\n');
    const warm = { windows: { start: 0, end: Math.min(8, windows) } };
    await evaluatePerplexity(engine, prefillIds, { ...warm, batchWindows: 1 });
    await evaluatePerplexity(engine, prefillIds, { ...warm, batchWindows: 4 });
    const kmoeGreedy = (await decodeOnce('warm-up')).tokens;
    const loopGreedy = (await decodeLoopOnce('warm-up-loop')).tokens;
    if (tokenAgreement(kmoeGreedy, loopGreedy).equalPositions !== kmoeGreedy.length) {
      throw new Error('bench model: the engine-side decode loop disagrees with step-by-step greedy decode');
    }
    if (versus !== undefined) {
      await prefill(4, versus);
      await decodeOnce('warm-up', versus);
      await decodeLoopOnce('warm-up-loop', versus);
    }
    let llamaGreedy: number[] | undefined;
    if (llama !== undefined) {
      await llama.prefill(windowTokens.slice(0, 8));
      llamaGreedy = (await llama.decode(prompt, decodeTokens)).tokens;
    }

    // Round by round, so that both sides see the same machine state (other load, clocks, caches).
    const samples = {
      prefill1: [] as number[],
      prefill4: [] as number[],
      decode: [] as number[],
      decodeLoop: [] as number[],
      decodeCpu: [] as number[],
      decodeLoopCpu: [] as number[],
      versusPrefill4: [] as number[],
      versusDecode: [] as number[],
      versusDecodeLoop: [] as number[],
      llamaPrefill: [] as number[],
      llamaPrefillNative: [] as number[],
      llamaDecode: [] as number[],
      llamaDecodeNative: [] as number[],
    };
    for (let r = 0; r < repeats; r++) {
      process.stderr.write(`bench model: round ${r + 1}/${repeats}\n`);
      samples.prefill1.push(await prefill(1));
      samples.prefill4.push(await prefill(4));
      if (llama !== undefined) {
        const p = await llama.prefill(windowTokens);
        samples.llamaPrefill.push(rate(p.tokens, p.wallMs)!);
        const native = rate(p.tokens, p.nativeMs);
        if (native !== null) samples.llamaPrefillNative.push(native);
      }
      const d = await decodeOnce(`d${r}`);
      samples.decode.push(d.tps);
      samples.decodeCpu.push(d.cpuMicros);
      const l = await decodeLoopOnce(`l${r}`);
      samples.decodeLoop.push(l.tps);
      samples.decodeLoopCpu.push(l.cpuMicros);
      if (versus !== undefined) {
        samples.versusPrefill4.push(await prefill(4, versus));
        samples.versusDecode.push((await decodeOnce(`vd${r}`, versus)).tps);
        samples.versusDecodeLoop.push((await decodeLoopOnce(`vl${r}`, versus)).tps);
      }
      if (llama !== undefined) {
        const d = await llama.decode(prompt, decodeTokens);
        samples.llamaDecode.push(rate(decodeTokens, d.wallMs)!);
        const native = rate(decodeTokens, d.nativeMs);
        if (native !== null) samples.llamaDecodeNative.push(native);
      }
    }
    const med = (xs: number[]) => (xs.length === 0 ? null : median(xs));
    const best = (xs: number[]) => (xs.length === 0 ? null : Math.max(...xs));
    const prefill1 = { tokensPerSecond: median(samples.prefill1), samples: samples.prefill1 };
    const prefill4 = { tokensPerSecond: median(samples.prefill4), samples: samples.prefill4 };
    const decodeRate = median(samples.decode);
    const decodeLoopRate = median(samples.decodeLoop);

    const decodeBreakdown = await breakdown(
      async (start) => (await decodeOnce('timed', engine, start)).wallMs,
    );
    // The second engine's decode, timed the same way, with its expert round trips when remote.
    const versusBreakdown =
      versus === undefined
        ? null
        : await (async (v: EngineClient) => {
            const bd = await breakdown(async (start) => {
              const startBoth = async () => {
                await v.dispatchStats(true);
                await start();
              };
              return (await decodeOnce('versus-timed', v, startBoth)).wallMs;
            }, v);
            const ds = await v.dispatchStats(false);
            const roundTrips =
              ds?.roundTrips.map((rt, worker) => {
                const requests = rt.counts.reduce((a, b) => a + b, 0);
                return {
                  worker,
                  requestsPerToken: requests / decodeTokens,
                  meanMicros: requests === 0 ? 0 : (rt.sumSeconds / requests) * 1e6,
                };
              }) ?? null;
            return { ...bd, roundTrips };
          })(versus);
    const prefillBreakdown = await breakdown(async (start) => {
      await start();
      const t = performance.now();
      await evaluatePerplexity(engine, prefillIds, { batchWindows: 4 });
      return performance.now() - t;
    });

    process.stderr.write('bench model: expert calls...\n');
    const expertCalls = await probeExpertCalls(modelDir, settings, 4000);

    const llamaCpp =
      llama === undefined || gguf === undefined || llamaGreedy === undefined
        ? null
        : {
            ...llama.info,
            ggufSource: gguf.source,
            ggufType: gguf.type,
            ggufWritten: gguf.written,
            prefill: {
              windowsPerPass: 1,
              note: 'each window one fresh sequence, one 256-token batch, last-position logits only (as llama-bench pp256)',
              tokensPerSecond: med(samples.llamaPrefill),
              samples: samples.llamaPrefill,
              nativeTokensPerSecond: med(samples.llamaPrefillNative),
              nativeSamples: samples.llamaPrefillNative,
            },
            decode: {
              promptTokens,
              tokens: decodeTokens,
              tokensPerSecond: med(samples.llamaDecode),
              samples: samples.llamaDecode,
              nativeTokensPerSecond: med(samples.llamaDecodeNative),
              nativeSamples: samples.llamaDecodeNative,
            },
            greedy: {
              promptIds: prompt,
              llamaCpp: llamaGreedy,
              kmoe: kmoeGreedy,
              ...tokenAgreement(kmoeGreedy, llamaGreedy),
            },
            reference:
              reference === undefined
                ? null
                : { ...reference, ...tokenAgreement(llamaGreedy, reference.tokens) },
          };
    const ratio = (a: number | null, b: number | null | undefined) =>
      a === null || b == null ? null : a / b;
    const result = {
      benchmark: 'model',
      command: `kmoe bench model ${argv.join(' ')}`.trim(),
      machine: machineInfo(),
      model: engine.info.modelDir,
      threads: settings.threads,
      expertWeights: settings.expertWeights,
      denseWeights: settings.denseWeights ?? 'fp32',
      corpus: idsPath,
      prefill: {
        windows,
        windowLen: STANDARD_WINDOW,
        batch1: prefill1,
        batch4: prefill4,
        breakdown: prefillBreakdown,
      },
      decode: {
        promptTokens,
        tokens: decodeTokens,
        tokensPerSecond: decodeRate,
        samples: samples.decode,
        cpuMicrosPerToken: { median: median(samples.decodeCpu), samples: samples.decodeCpu },
        breakdown: decodeBreakdown,
        engineLoop: {
          note: 'the same greedy decode with sampling on the engine thread (EngineClient.decode): one thread round trip per measurement instead of one per token',
          tokensPerSecond: decodeLoopRate,
          samples: samples.decodeLoop,
          vsStepPerToken: decodeLoopRate / decodeRate,
          cpuMicrosPerToken: { median: median(samples.decodeLoopCpu), samples: samples.decodeLoopCpu },
        },
      },
      expertCalls,
      llamaCpp,
      // kmoe / llama.cpp in the same run: against llama.cpp's own eval time (what llama-bench reports)
      // and against the wall time of a JavaScript caller (binding overhead included).
      ratios:
        llamaCpp === null
          ? null
          : {
              prefill1VsLlamaCppNative: ratio(
                prefill1.tokensPerSecond,
                llamaCpp.prefill.nativeTokensPerSecond,
              ),
              prefill4VsLlamaCppNative: ratio(
                prefill4.tokensPerSecond,
                llamaCpp.prefill.nativeTokensPerSecond,
              ),
              prefill4VsLlamaCppWall: ratio(prefill4.tokensPerSecond, llamaCpp.prefill.tokensPerSecond),
              decodeVsLlamaCppNative: ratio(decodeRate, llamaCpp.decode.nativeTokensPerSecond),
              decodeVsLlamaCppWall: ratio(decodeRate, llamaCpp.decode.tokensPerSecond),
              decodeLoopVsLlamaCppNative: ratio(decodeLoopRate, llamaCpp.decode.nativeTokensPerSecond),
            },
      versus:
        o.versus === undefined
          ? null
          : {
              settings: { ...settings, ...o.versus },
              note: 'a second engine measured in the same rounds; ratios are versus / this run, per round (median) and of the fastest rounds',
              prefill4: { tokensPerSecond: median(samples.versusPrefill4), samples: samples.versusPrefill4 },
              decode: { tokensPerSecond: median(samples.versusDecode), samples: samples.versusDecode },
              decodeLoop: {
                tokensPerSecond: median(samples.versusDecodeLoop),
                samples: samples.versusDecodeLoop,
              },
              decodeBreakdown: versusBreakdown,
              ratios: {
                prefill4: pairedRatios(samples.versusPrefill4, samples.prefill4),
                decode: pairedRatios(samples.versusDecode, samples.decode),
                decodeLoop: pairedRatios(samples.versusDecodeLoop, samples.decodeLoop),
              },
            },
      // The same ratios from each side's fastest round: on a shared machine other load only ever
      // slows a round down, so best-of is the steadier estimate of the idle-machine ratio.
      bestRatios:
        llamaCpp === null
          ? null
          : {
              prefill4VsLlamaCppNative: ratio(best(samples.prefill4), best(samples.llamaPrefillNative)),
              decodeVsLlamaCppNative: ratio(best(samples.decode), best(samples.llamaDecodeNative)),
              decodeLoopVsLlamaCppNative: ratio(best(samples.decodeLoop), best(samples.llamaDecodeNative)),
            },
    };
    writeOutputFile(out, `${JSON.stringify(result, null, 2)}\n`);
    process.stdout.write(
      formatTable(
        {
          prefill1: prefill1.tokensPerSecond,
          prefill4: prefill4.tokensPerSecond,
          decode: decodeRate,
          decodeLoop: decodeLoopRate,
        },
        llamaCpp === null
          ? null
          : {
              prefill: llamaCpp.prefill.nativeTokensPerSecond,
              prefillWall: llamaCpp.prefill.tokensPerSecond,
              decode: llamaCpp.decode.nativeTokensPerSecond,
              decodeWall: llamaCpp.decode.tokensPerSecond,
            },
        { promptTokens, windowsPerPass },
        decodeBreakdown,
        decodeTokens,
        prefillBreakdown,
        windows * STANDARD_WINDOW,
      ),
    );
    if (llamaCpp !== null) {
      const g = llamaCpp.greedy;
      process.stdout.write(
        `llama.cpp ${llamaCpp.llamaCpp.release} (node-llama-cpp ${llamaCpp.bindingVersion}, ${counted(llamaCpp.threads, 'thread')}, flash attention ${flashAttentionLabel(llamaCpp.flashAttention)}, ${path.basename(llamaCpp.gguf)}): ` +
          `greedy tokens agree with kmoe's on the first ${g.agreeingPrefix} of ${g.compared} (${g.equalPositions} positions equal)\n`,
      );
      const b = result.bestRatios;
      const x = (v: number | null | undefined) => (v == null ? '-' : `${v.toFixed(2)}x`);
      process.stdout.write(
        `fastest round of each side vs llama.cpp's eval time: prefill (${counted(windowsPerPass, 'window')} per pass) ${x(b?.prefill4VsLlamaCppNative)}, ` +
          `decode ${x(b?.decodeVsLlamaCppNative)}, decode loop on the engine thread ${x(b?.decodeLoopVsLlamaCppNative)}\n`,
      );
      const ref = llamaCpp.reference;
      if (ref !== null) {
        process.stdout.write(
          `reference GGUF ${path.basename(ref.gguf)}: greedy tokens agree with the anchor's on the first ${ref.agreeingPrefix} of ${ref.compared}\n`,
        );
      }
    }
    process.stdout.write(
      `process CPU per decoded token (all threads, medians): ${median(samples.decodeCpu).toFixed(0)} us step by step, ` +
        `${median(samples.decodeLoopCpu).toFixed(0)} us with the loop on the engine thread\n`,
    );
    if (result.versus !== null) {
      const v = result.versus;
      if (versusBreakdown !== null) {
        const rts = versusBreakdown.roundTrips;
        process.stdout.write(
          `versus decode time per token: ${perToken(versusBreakdown, decodeTokens)}` +
            (rts === null
              ? '\n'
              : `; expert round trips per token ${rts.map((r) => `worker ${r.worker}: ${r.requestsPerToken.toFixed(1)} x ${r.meanMicros.toFixed(0)} us`).join(', ')}\n`),
        );
      }
      const x = (r: { median: number; best: number }) =>
        `${r.median.toFixed(2)}x (fastest rounds ${r.best.toFixed(2)}x)`;
      process.stdout.write(
        `versus ${JSON.stringify(o.versus)}, same rounds: prefill (${counted(windowsPerPass, 'window')} per pass) ${x(v.ratios.prefill4)}, ` +
          `decode ${x(v.ratios.decode)}, decode loop on the engine thread ${x(v.ratios.decodeLoop)}\n`,
      );
    }
    process.stdout.write(
      `expert call, 1 token: ${expertCalls.sameExpertMicros.toFixed(1)} us with its ${expertCalls.expertMiB.toFixed(1)} MiB of weights in cache, ` +
        `${expertCalls.rotatingMicros.toFixed(1)} us rotating through all ${expertCalls.allExpertsMiB.toFixed(0)} MiB of expert weights\n`,
    );
    process.stdout.write(`wrote ${out}\n`);
  } finally {
    await versus?.close();
    await cluster?.stop();
    await engine.close();
    await llama?.close();
    await runtime?.dispose();
  }
  return 0;
}

/** Time per token inside onnxruntime by graph kind, and the rest. */
function perToken(bd: Breakdown, n: number): string {
  return [
    ...Object.entries(bd.onnxruntime).map(
      ([k, t]) => `${k} ${((t.ms / n) * 1000).toFixed(1)} us (${(t.calls / n).toFixed(1)} calls)`,
    ),
    `other ${((bd.otherMs / n) * 1000).toFixed(1)} us`,
  ].join(', ');
}

/** a / b round by round (median) and of the fastest rounds. */
function pairedRatios(a: readonly number[], b: readonly number[]): { median: number; best: number } {
  return { median: median(a.map((v, i) => v / b[i]!)), best: Math.max(...a) / Math.max(...b) };
}

function formatTable(
  kmoe: { prefill1: number; prefill4: number; decode: number; decodeLoop: number },
  llama: {
    prefill: number | null;
    prefillWall: number | null;
    decode: number | null;
    decodeWall: number | null;
  } | null,
  shape: { readonly promptTokens: number; readonly windowsPerPass: number },
  decodeBd: Breakdown,
  decodeTokens: number,
  prefillBd: Breakdown,
  prefillTokens: number,
): string {
  const f = (v: number | null) => (v === null ? '-' : v.toFixed(0));
  const row = (name: string, v: number, ref: number | null, wall: number | null) =>
    llama === null
      ? `| ${name} | ${f(v)} |`
      : `| ${name} | ${f(v)} | ${f(ref)} (${f(wall)} wall) | ${ref === null ? '-' : `${(v / ref).toFixed(2)}x`} |`;
  const per = perToken;
  const l = llama ?? { prefill: null, prefillWall: null, decode: null, decodeWall: null };
  return [
    llama === null
      ? '| figure | kmoe tokens/s |'
      : '| figure | kmoe tokens/s | llama.cpp, same run (its eval time; wall through node-llama-cpp) | ratio |',
    llama === null ? '|---|---|' : '|---|---|---|---|',
    row('prefill, 1 window per pass', kmoe.prefill1, l.prefill, l.prefillWall),
    row(
      `prefill, ${counted(shape.windowsPerPass, 'window')} per pass`,
      kmoe.prefill4,
      l.prefill,
      l.prefillWall,
    ),
    row(`decode, 1 sequence, ${shape.promptTokens}-token prompt`, kmoe.decode, l.decode, l.decodeWall),
    row(
      `decode, 1 sequence, ${shape.promptTokens}-token prompt, loop on the engine thread`,
      kmoe.decodeLoop,
      l.decode,
      l.decodeWall,
    ),
    '',
    `decode time per token: ${per(decodeBd, decodeTokens)}`,
    `prefill time per token: ${per(prefillBd, prefillTokens)}`,
    '',
  ].join('\n');
}

function flashAttentionLabel(fa: 'auto' | boolean): string {
  return fa === 'auto' ? 'auto' : fa ? 'on' : 'off';
}
