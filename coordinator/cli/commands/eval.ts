// `kmoe eval`: perplexity and expert usage of a routing policy on a corpus. With --json, stdout
// carries only the JSON object; the human-readable report goes to stderr.

import path from 'node:path';
import { CorpusError, parseWindowRange, readTextIds, readU16Ids } from '../../../shared/data/token-ids.js';
import { loadModelConfig } from '../../../shared/model/config.js';
import { KmoeTokenizer } from '../../../shared/model/tokenizer.js';
import { isProfilePath } from '../../../shared/routing/profile-names.js';
import { jsonBeside } from '../../../shared/runtime/companion-files.js';
import { writeOutputFile } from '../../../shared/runtime/output-file.js';
import { counted } from '../../../shared/text/counted.js';
import { ProgressBar } from '../../bench/report/progress.js';
import { sweepChart } from '../../bench/report/sweep-chart.js';
import { type DispatchSummary, summarizeDispatch } from '../../cluster/dispatch-stats.js';
import { EngineClient } from '../../engine/engine-client.js';
import { evaluatePerplexity, type PerplexityReport } from '../../evaluation/perplexity.js';
import {
  ROUTING_TRACE_FORMAT,
  ROUTING_TRACE_VERSION,
  RoutingTraceWriter,
} from '../../evaluation/routing-trace.js';
import { defaultSweep, runSweep } from '../../evaluation/sweep.js';
import { STANDARD_WINDOW, windowCount } from '../../evaluation/windows.js';
import { checkPlacement, checkRouting, placeExperts, printWorkerLog, sessionSettings } from '../experts.js';
import {
  type ComputeOptions,
  corpusFlag,
  DEFAULT_SWEEP_CHART,
  type ExpertPlacementOptions,
  IN_PROCESS,
  requireOneWindow,
  singleIds,
  singleRouting,
} from '../options.js';
import { flagValue } from '../usage-error.js';
import { printSmallFrames } from '../worker-notices.js';

export interface EvalOptions extends ComputeOptions, ExpertPlacementOptions {
  readonly model: string;
  readonly ids?: string[];
  readonly text?: string;
  readonly routing?: string[];
  readonly windows?: string;
  readonly window: number;
  readonly batch: number;
  readonly sweep?: boolean;
  readonly chart?: string;
  readonly json?: boolean;
  /** Write the routing decisions of the run to this file (routing trace format). */
  readonly trace?: string;
}

export async function run(o: EvalOptions, argv: readonly string[] = []): Promise<number> {
  const modelDir = o.model;
  const idsPath = singleIds(o.ids);
  const textPath = o.text;
  const windowLen = o.window;
  const batchWindows = o.batch;
  const corpus = idsPath ?? textPath!;
  // With --json, stdout is the JSON object alone: the human report goes to stderr.
  const human = o.json ? process.stderr : process.stdout;
  // The flags that cannot go together were checked before this module loaded (checkEvalFlags).
  if (!o.sweep) {
    await checkRouting(modelDir, singleRouting(o.routing));
    await checkPlacement(modelDir, o.workers ?? IN_PROCESS, o);
  }
  const ids = await readCorpus(idsPath, textPath, modelDir);
  requireOneWindow(idsPath !== undefined ? `--ids ${idsPath}` : `--text ${textPath}`, ids, windowLen);
  const available = windowCount(ids, windowLen);
  const windows = await flagValue('--windows', [CorpusError], () => parseWindowRange(o.windows, available));
  if (o.sweep) {
    return sweep(o, ids.subarray(windows.start * windowLen, windows.end * windowLen), corpus, human);
  }
  const routingArg = singleRouting(o.routing);
  const settings = sessionSettings(o);
  const placed = await placeExperts(modelDir, o.workers ?? IN_PROCESS, o, settings, {
    onLog: printWorkerLog,
  });
  let report: PerplexityReport;
  let dispatch: DispatchSummary | undefined;
  let engine: EngineClient | undefined;
  let trace: RoutingTraceWriter | undefined;
  // Ctrl-C or a kill while the trace is being written: its temp file goes (the file that was at
  // --trace stays), then the signal ends the process as it would have.
  const onSignal = (signal: NodeJS.Signals): void => {
    trace?.removeTemp();
    process.kill(process.pid, signal);
  };
  try {
    engine = await EngineClient.start({
      modelDir,
      settings,
      experts: placed.experts,
      ...(routingArg === undefined ? {} : { defaultRouting: routingArg }),
    });
    printSmallFrames(engine, 'eval');
    if (o.trace !== undefined) {
      const info = engine.info;
      trace = await RoutingTraceWriter.create(o.trace, {
        format: ROUTING_TRACE_FORMAT,
        version: ROUTING_TRACE_VERSION,
        model: { dir: modelDir, type: info.modelType, fingerprint: info.fingerprint },
        // A profile as a path relative to here (`recommended` resolves to an absolute one).
        routing: isProfilePath(info.defaultRouting)
          ? path.relative(process.cwd(), info.defaultRouting)
          : info.defaultRouting,
        corpus,
        windows,
        windowLen,
        numExperts: info.numExperts,
        nativeK: info.nativeK,
        hidden: (await loadModelConfig(modelDir)).hiddenSize,
        // Absent: MoE layer i is decoder layer i.
        moeLayers: [
          ...(info.routing.moeLayers ?? Array.from({ length: info.routing.numLayers }, (_, i) => i)),
        ],
        command: `kmoe eval ${argv.join(' ')}`.trim(),
      });
      process.once('SIGINT', onSignal).once('SIGTERM', onSignal);
    }
    const writer = trace;
    const bar = new ProgressBar({
      label: 'eval',
      total: windows.end - windows.start,
      unit: 'windows',
      rate: { unit: 'tok', perItem: windowLen },
    });
    const running = engine;
    report = await evaluatePerplexity(running, ids, {
      windowLen,
      batchWindows,
      windows,
      onProgress: (done, _total, ppl) => bar.update(done, `ppl ${ppl.toFixed(3)}`),
      ...(writer ? { onTrace: (layers, n) => writer.write(layers, n) } : {}),
    });
    bar.finish(`ppl ${report.perplexity.toFixed(4)}`);
    await trace?.close();
    trace = undefined;
    const stats = await running.dispatchStats();
    dispatch = stats === null ? undefined : summarizeDispatch(stats);
  } finally {
    process.off('SIGINT', onSignal).off('SIGTERM', onSignal);
    // Only on failure: a trace that did not cover every window is removed, not left half-written.
    await trace?.discard();
    await engine?.close();
    await placed.cluster?.stop();
  }
  human.write(formatReport(report, corpus));
  if (o.trace !== undefined) human.write(`trace         wrote ${o.trace}\n`);
  if (dispatch) human.write(formatDispatch(dispatch));
  if (o.json) {
    const { stats: _stats, ...summary } = report;
    const extra = dispatch === undefined ? {} : { dispatch };
    process.stdout.write(`${JSON.stringify({ corpus, ...summary, ...extra })}\n`);
  }
  return 0;
}

function formatDispatch(d: DispatchSummary): string {
  const b = (x: number) => x.toFixed(0);
  const lines = [
    `network       ${b(d.bytesPerTokenLayer)} bytes per token per MoE layer (${d.wire} wire, ${counted(d.workers, 'worker')}): ` +
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
    `corpus        ${corpus} (${counted(r.windows, 'window')} of ${r.windowLen})`,
    `routing       ${r.routing}`,
    `perplexity    ${r.perplexity.toFixed(4)}   (${r.tokens} tokens scored, mean NLL ${r.meanNll.toFixed(5)})`,
    `avg K         ${r.avgK.toFixed(4)}   per layer: ${r.avgKPerLayer.map((k) => k.toFixed(3)).join(' ')}`,
    `K histogram   ${[r.zeroK, ...r.kHistogram]
      .map((n, k) => `K=${k}: ${n}`)
      .filter((s) => !s.endsWith(': 0'))
      .join(', ')}`,
    `activations   ${r.activations} expert-token pairs vs ${r.nativeActivations} native: saving ${pct(r.savingVsNative)}`,
    `entropy       mean per layer (nats): ${r.meanEntropyPerLayer.map((h) => h.toFixed(3)).join(' ')}`,
    `throughput    ${r.tokensPerSecond.toFixed(0)} tokens/s (${r.seconds.toFixed(1)} s)`,
  ];
  return `${lines.join('\n')}\n`;
}

async function sweep(
  o: EvalOptions,
  ids: Uint16Array,
  corpus: string,
  human: NodeJS.WritableStream,
): Promise<number> {
  const modelDir = o.model;
  const extra = o.routing ?? [];
  for (const r of extra) await checkRouting(modelDir, r);
  // The command line gives --sweep its default chart (program.ts), checked with the typed paths.
  const chart = o.chart ?? DEFAULT_SWEEP_CHART;
  const engine = await EngineClient.start({ modelDir, settings: sessionSettings(o) });
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
      `corpus ${corpus}, ${counted(ids.length / STANDARD_WINDOW, 'window')}; native ${result.native.routing} perplexity ${result.native.perplexity.toFixed(4)}`,
      '| policy | routing | avg K | saving vs native | perplexity | increase |',
      '|---|---|---|---|---|---|',
      ...result.points.map(
        (pt) =>
          `| ${pt.series} | ${pt.routing} | ${pt.avgK.toFixed(3)} | ${(pt.savingVsNative * 100).toFixed(1)}% | ${pt.perplexity.toFixed(4)} | ${(pt.pplIncrease * 100).toFixed(2)}% |`,
      ),
    ];
    human.write(`${lines.join('\n')}\n`);
    writeOutputFile(
      chart,
      await sweepChart(`Routing frontier: ${path.basename(corpus)}`, result.native.perplexity, result.points),
    );
    const json = jsonBeside(chart);
    writeOutputFile(
      json,
      `${JSON.stringify({ corpus, windows: ids.length / STANDARD_WINDOW, nativePerplexity: result.native.perplexity, points: result.points }, null, 2)}\n`,
    );
    human.write(`wrote ${chart} and ${json}\n`);
    if (o.json)
      process.stdout.write(
        `${JSON.stringify({ corpus, nativePerplexity: result.native.perplexity, points: result.points })}\n`,
      );
  } finally {
    await engine.close();
  }
  return 0;
}

/** --ids or --text; a file that is not there is named by its flag, in one line. */
async function readCorpus(
  idsPath: string | undefined,
  textPath: string | undefined,
  modelDir: string,
): Promise<Uint16Array> {
  return idsPath !== undefined
    ? corpusFlag('--ids', idsPath, () => readU16Ids(idsPath))
    : corpusFlag('--text', textPath!, async () => readTextIds(textPath!, await KmoeTokenizer.load(modelDir)));
}
