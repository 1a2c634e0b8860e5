// `kmoe eval`: perplexity and expert usage of a routing policy on a corpus.

import fs from 'node:fs/promises';
import path from 'node:path';
import { parseWindowRange, readTextIds, readU16Ids } from '../../shared/data/token-ids.js';
import { UsageError } from '../../shared/errors/usage-error.js';
import { KmoeTokenizer } from '../../shared/model/tokenizer.js';
import { ProgressBar } from '../../shared/report/progress.js';
import { type DispatchSummary, summarizeDispatch } from '../cluster/dispatch-stats.js';
import { EngineClient } from '../engine/engine-client.js';
import {
  evaluatePerplexity,
  type PerplexityReport,
  STANDARD_WINDOW,
  windowCount,
} from '../evaluation/perplexity.js';
import { defaultSweep, runSweep, sweepChart } from '../evaluation/sweep.js';
import {
  COMPUTE_OPTIONS,
  checkRouting,
  EXPERT_OPTIONS,
  EXPERT_OPTIONS_USAGE,
  expertsOption,
  flag,
  num,
  type Parsed,
  parse,
  required,
  sessionSettings,
  str,
} from './args.js';

export const usage = `kmoe eval --model DIR (--ids FILE.u16 | --text FILE) [options]

Perplexity by the standard procedure: non-overlapping windows of 256 ids (trailing partial window
dropped), no BOS, positions 1..255 of each window scored given the earlier tokens of the window.

  --model DIR          checkpoint directory
  --ids FILE.u16       token ids, little-endian uint16 (e.g. data/eval/valid.code.u16)
  --text FILE          UTF-8 text, encoded with the model's tokenizer in pieces cut at line ends
  --routing SPEC|FILE  topk:K | entropy:K1,K2@T1 | topp:P@KMIN-KMAX | ratio:BETA | profile.json
                       (default: the model's native top-K)
  --windows RANGE      START:END window indices, or first-half / second-half (default: all)
  --window N           window length (default 256)
  --batch N            windows per forward pass (default 4)
  --sweep              evaluate fixed K=1 and K=native plus sweeps of entropy, top-p, ratio and skip
                       (and any --routing profiles, comma-separated) and draw the Pareto chart
  --chart FILE         with --sweep: SVG chart path (default bench-results/pareto.svg)
  --json               print one JSON object on the last line of stdout (with --workers it has
                       "dispatch": bytes per token per MoE layer, vs native top-K, per worker)
  --threads N          onnxruntime threads (default: all cores)
  --device cpu|cuda    execution provider (default cpu)
  --expert-weights F   fp32 (default) or int8: blockwise 8-bit expert weights, faster decode, approximate
${EXPERT_OPTIONS_USAGE}`;

export async function run(argv: readonly string[]): Promise<number> {
  const p = parse(argv, {
    model: { type: 'string' },
    ids: { type: 'string' },
    text: { type: 'string' },
    routing: { type: 'string' },
    windows: { type: 'string' },
    window: { type: 'string' },
    batch: { type: 'string' },
    json: { type: 'boolean' },
    sweep: { type: 'boolean' },
    chart: { type: 'string' },
    ...COMPUTE_OPTIONS,
    ...EXPERT_OPTIONS,
  });
  const modelDir = required(p, 'model');
  const idsPath = str(p, 'ids');
  const textPath = str(p, 'text');
  if ((idsPath === undefined) === (textPath === undefined))
    throw new UsageError('give exactly one of --ids or --text');
  const windowLen = num(p, 'window', STANDARD_WINDOW, { integer: true, min: 2 });
  const batchWindows = num(p, 'batch', 4, { integer: true, min: 1, max: 64 });
  const ids =
    idsPath !== undefined
      ? await readU16Ids(idsPath)
      : await readTextIds(textPath!, await KmoeTokenizer.load(modelDir));
  const available = windowCount(ids, windowLen);
  if (available === 0)
    throw new UsageError(`the corpus has ${ids.length} ids: fewer than one window of ${windowLen}`);
  const windows = parseWindowRange(str(p, 'windows'), available);
  const routingArg = str(p, 'routing');
  if (flag(p, 'sweep')) {
    return sweep(
      p,
      modelDir,
      ids.subarray(windows.start * windowLen, windows.end * windowLen),
      idsPath ?? textPath!,
    );
  }
  await checkRouting(modelDir, routingArg);
  const experts = expertsOption(p);

  const engine = await EngineClient.start({
    modelDir,
    settings: sessionSettings(p),
    experts,
    ...(routingArg === undefined ? {} : { defaultRouting: routingArg }),
  });
  let report: PerplexityReport;
  let dispatch: DispatchSummary | undefined;
  try {
    const bar = new ProgressBar({
      label: 'eval',
      total: windows.end - windows.start,
      unit: 'windows',
      rate: { unit: 'tok', perItem: windowLen },
    });
    report = await evaluatePerplexity(engine, ids, {
      windowLen,
      batchWindows,
      windows,
      onProgress: (done, _total, ppl) => bar.update(done, `ppl ${ppl.toFixed(3)}`),
    });
    bar.finish(`ppl ${report.perplexity.toFixed(4)}`);
    const stats = await engine.dispatchStats();
    dispatch = stats === null ? undefined : summarizeDispatch(stats);
  } finally {
    await engine.close();
  }
  process.stdout.write(formatReport(report, idsPath ?? textPath!));
  if (dispatch) process.stdout.write(formatDispatch(dispatch));
  if (flag(p, 'json')) {
    const { stats: _stats, ...summary } = report;
    const extra = dispatch === undefined ? {} : { dispatch };
    process.stdout.write(`${JSON.stringify({ corpus: idsPath ?? textPath, ...summary, ...extra })}\n`);
  }
  return 0;
}

function formatDispatch(d: DispatchSummary): string {
  const b = (x: number) => x.toFixed(0);
  const lines = [
    `network       ${b(d.bytesPerTokenLayer)} bytes per token per MoE layer (${d.wire} wire, ${d.workers} workers): ` +
      `${d.vsNative.toFixed(3)}x native top-K's ${b(d.nativeBytesPerTokenLayer)}; ` +
      `without same-worker dedup ${b(d.noDedupBytesPerTokenLayer)}`,
    ...d.perWorker.map(
      (w) =>
        `  ${w.url} (experts ${w.experts}): ${w.messages} messages, ${(w.bytesOut / 2 ** 20).toFixed(1)} MiB out, ` +
        `${(w.bytesIn / 2 ** 20).toFixed(1)} MiB in, ${w.pairs} pairs for ${w.tokensSent} tokens, ` +
        `mean round trip ${w.meanRoundTripMs.toFixed(2)} ms`,
    ),
  ];
  return `${lines.join('\n')}\n`;
}

function formatReport(r: PerplexityReport, corpus: string): string {
  const pct = (x: number) => `${(x * 100).toFixed(2)}%`;
  const lines = [
    `corpus        ${corpus} (${r.windows} windows of ${r.windowLen})`,
    `routing       ${r.routing}`,
    `perplexity    ${r.perplexity.toFixed(4)}   (${r.tokens} tokens scored, mean NLL ${r.meanNll.toFixed(5)})`,
    `avg K         ${r.avgK.toFixed(4)}   per layer: ${r.avgKPerLayer.map((k) => k.toFixed(3)).join(' ')}`,
    `K histogram   ${r.kHistogram
      .map((n, k) => `K=${k + 1}: ${n}`)
      .filter((s) => !s.endsWith(': 0'))
      .join(', ')}`,
    `activations   ${r.activations} expert-token pairs vs ${r.nativeActivations} native: saving ${pct(r.savingVsNative)}`,
    `entropy       mean per layer (nats): ${r.meanEntropyPerLayer.map((h) => h.toFixed(3)).join(' ')}`,
    `throughput    ${r.tokensPerSecond.toFixed(0)} tokens/s (${r.seconds.toFixed(1)} s)`,
  ];
  return `${lines.join('\n')}\n`;
}

async function sweep(p: Parsed, modelDir: string, ids: Uint16Array, corpus: string): Promise<number> {
  const extra = (str(p, 'routing') ?? '').split(',').filter((r) => r !== '');
  for (const r of extra) await checkRouting(modelDir, r);
  const chart = str(p, 'chart') ?? 'bench-results/pareto.svg';
  const engine = await EngineClient.start({ modelDir, settings: sessionSettings(p) });
  try {
    const series = defaultSweep(engine.info.nativeK);
    if (extra.length > 0) series.push({ name: 'calibrated profiles', routings: extra });
    const total = series.reduce((n, s) => n + s.routings.length, 0);
    const bar = new ProgressBar({ label: 'sweep', total, unit: 'evaluations' });
    const result = await runSweep(engine, ids, series, (done, _t, pt) =>
      bar.update(done, `${pt.routing} ppl ${pt.perplexity.toFixed(3)} avgK ${pt.avgK.toFixed(3)}`),
    );
    bar.finish();
    const lines = [
      `corpus ${corpus}, ${ids.length / STANDARD_WINDOW} windows; native ${result.native.routing} perplexity ${result.native.perplexity.toFixed(4)}`,
      '| policy | routing | avg K | saving vs native | perplexity | increase |',
      '|---|---|---|---|---|---|',
      ...result.points.map(
        (pt) =>
          `| ${pt.series} | ${pt.routing} | ${pt.avgK.toFixed(3)} | ${(pt.savingVsNative * 100).toFixed(1)}% | ${pt.perplexity.toFixed(4)} | ${(pt.pplIncrease * 100).toFixed(2)}% |`,
      ),
    ];
    process.stdout.write(`${lines.join('\n')}\n`);
    await fs.mkdir(path.dirname(chart), { recursive: true });
    await fs.writeFile(
      chart,
      sweepChart(`Routing frontier: ${path.basename(corpus)}`, result.native.perplexity, result.points),
    );
    const json = chart.replace(/\.svg$/, '') + '.json';
    await fs.writeFile(
      json,
      `${JSON.stringify({ corpus, windows: ids.length / STANDARD_WINDOW, nativePerplexity: result.native.perplexity, points: result.points }, null, 2)}\n`,
    );
    process.stdout.write(`wrote ${chart} and ${json}\n`);
    if (flag(p, 'json'))
      process.stdout.write(
        `${JSON.stringify({ corpus, nativePerplexity: result.native.perplexity, points: result.points })}\n`,
      );
  } finally {
    await engine.close();
  }
  return 0;
}
