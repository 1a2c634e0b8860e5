// `kmoe bench dispatch`: network bytes per token per MoE layer of expert parallelism on local
// clusters of 2 and 4 workers, for native top-K and adaptive-K routings, fp32 and bf16 on the
// wire, with and without same-worker dedup; plus eval throughput against the same model in one
// process. Writes JSON and an SVG bar chart; prints a markdown table.

import path from 'node:path';
import { type CorpusWindows, leadingWindows } from '../../shared/data/token-ids.js';
import { loadModelConfig } from '../../shared/model/config.js';
import type { SessionSettings } from '../../shared/onnx/session.js';
import { DEFAULT_WIRE_DTYPE, type WireDType } from '../../shared/protocol/wire-dtype.js';
import { isProfilePath } from '../../shared/routing/profile-names.js';
import { canonicalRoutingSpec } from '../../shared/routing/spec.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { counted } from '../../shared/text/counted.js';
import { type DispatchSummary, summarizeDispatch } from '../cluster/dispatch-stats.js';
import { startLocalCluster } from '../cluster/local-cluster.js';
import { EngineClient } from '../engine/engine-client.js';
import { evaluatePerplexity } from '../evaluation/perplexity.js';
import { STANDARD_WINDOW } from '../evaluation/windows.js';
import { BenchConfigError } from './errors.js';
import { renderBarChart } from './report/chart.js';

/** The adaptive-K specs the README compares against native top-K. */
const ADAPTIVE_SPECS = ['entropy:1,2@1.04', 'topp:0.7@1-2', 'ratio:0.3'];

/**
 * The policies the bench runs: native top-K (`native`) and ADAPTIVE_SPECS always, then each
 * --routing policy that is not one of them however spelled (`--routing topk:2` on a top-2 model
 * names the baseline, and ran it twice). `repeats` pairs each dropped extra with the policy it is.
 * Profiles are files of their own and always run.
 */
export function policiesToRun(
  native: string,
  extra: readonly string[],
): { readonly routings: readonly string[]; readonly repeats: readonly (readonly [string, string])[] } {
  const always = [native, ...ADAPTIVE_SPECS];
  const byCanonical = new Map(always.map((spec) => [canonicalRoutingSpec(spec), spec]));
  const routings = [...always];
  const repeats: [string, string][] = [];
  for (const policy of extra) {
    const same = isProfilePath(policy) ? undefined : byCanonical.get(canonicalRoutingSpec(policy));
    if (same === undefined) routings.push(policy);
    else repeats.push([policy, same]);
  }
  return { routings, repeats };
}

export interface BenchDispatchOptions {
  readonly model: string;
  readonly settings: SessionSettings;
  readonly ids: string;
  /** The corpus (`ids`) read, and the windows of it to run, checked against it. */
  readonly corpus: CorpusWindows;
  /** Local cluster sizes (worker counts) to run. */
  readonly clusterSizes: readonly number[];
  readonly wireDtypes: readonly WireDType[];
  /** Extra policies (specs or profile files) besides native top-K and ADAPTIVE_SPECS; checked by the caller. */
  readonly routing?: readonly string[];
  readonly out: string;
  /** SVG bar chart for the default wire dtype (else the first one run). */
  readonly chart: string;
}

interface Row {
  readonly routing: string;
  readonly workers: number;
  readonly wire: WireDType;
  readonly avgK: number;
  readonly perplexity: number;
  readonly tokensPerSecond: number;
  readonly dispatch: DispatchSummary;
}

export async function run(o: BenchDispatchOptions, argv: readonly string[]): Promise<number> {
  const { model: modelDir, ids: idsPath, out, chart: svg, settings } = o;
  const config = await loadModelConfig(modelDir);
  const sizes = [...o.clusterSizes];
  for (const n of sizes) {
    if (n > config.numExperts) {
      throw new BenchConfigError(
        `--cluster-sizes: ${counted(n, 'worker')} exceed the model's ${config.numExperts} experts`,
      );
    }
  }
  const wires = [...o.wireDtypes];
  const native = `topk:${config.numExpertsPerTok}`;
  const { ids, range: windows } = o.corpus;
  const log = (line: string) => process.stderr.write(`bench dispatch: ${line}\n`);
  const { routings, repeats } = policiesToRun(native, o.routing ?? []);
  for (const [given, same] of repeats)
    log(
      `--routing ${given} is ${same === native ? `native top-K (${native})` : same}, which the bench always runs: measured once`,
    );

  // Throughput baseline: the same windows, native routing, experts in this process.
  const local = await EngineClient.start({ modelDir, settings });
  let localTokensPerSecond: number;
  try {
    await evaluatePerplexity(local, ids, { windows: leadingWindows(windows, 4) });
    localTokensPerSecond = (await evaluatePerplexity(local, ids, { windows, routing: native }))
      .tokensPerSecond;
  } finally {
    await local.close();
  }
  log(`one process: ${localTokensPerSecond.toFixed(0)} tokens/s`);

  const rows: Row[] = [];
  for (const n of sizes) {
    const cluster = await startLocalCluster({ modelDir, workers: n });
    try {
      for (const wire of wires) {
        const engine = await EngineClient.start({
          modelDir,
          settings,
          experts: { kind: 'remote', workers: cluster.urls, wireDtype: wire },
        });
        try {
          await evaluatePerplexity(engine, ids, { windows: leadingWindows(windows, 4) });
          for (const routing of routings) {
            await engine.dispatchStats(true);
            const r = await evaluatePerplexity(engine, ids, { windows, routing });
            const stats = await engine.dispatchStats(true);
            if (stats === null) throw new Error('remote engine returned no dispatch accounting');
            const dispatch = summarizeDispatch(stats);
            rows.push({
              routing: r.routing,
              workers: n,
              wire,
              avgK: r.avgK,
              perplexity: r.perplexity,
              tokensPerSecond: r.tokensPerSecond,
              dispatch,
            });
            log(
              `${counted(n, 'worker')}, ${wire}, ${r.routing}: ${dispatch.bytesPerTokenLayer.toFixed(0)} bytes/token/layer ` +
                `(${dispatch.vsNative.toFixed(3)}x native), ${r.tokensPerSecond.toFixed(0)} tokens/s`,
            );
          }
        } finally {
          await engine.close();
        }
      }
    } finally {
      await cluster.stop();
    }
  }

  const result = {
    benchmark: 'dispatch',
    command: `kmoe bench dispatch ${argv.join(' ')}`.trim(),
    machine: machineInfo(),
    model: modelDir,
    corpus: idsPath,
    windows: {
      ...windows,
      windowLen: STANDARD_WINDOW,
      tokens: (windows.end - windows.start) * STANDARD_WINDOW,
    },
    hidden: config.hiddenSize,
    nativeK: config.numExpertsPerTok,
    localTokensPerSecond,
    rows,
  };
  writeOutputFile(out, `${JSON.stringify(result, null, 2)}\n`);
  const chartWire = wires.includes(DEFAULT_WIRE_DTYPE) ? DEFAULT_WIRE_DTYPE : wires[0]!;
  writeOutputFile(svg, await chart(rows, routings, sizes, chartWire, path.basename(idsPath)));
  process.stdout.write(table(rows, sizes, wires, native, localTokensPerSecond));
  process.stdout.write(`wrote ${out} and ${svg}\n`);
  return 0;
}

/** Rows: routings. Columns: per (workers, wire), bytes with dedup and without, and the ratio to native. */
function table(
  rows: readonly Row[],
  sizes: number[],
  wires: WireDType[],
  native: string,
  localTps: number,
): string {
  const configs = sizes.flatMap((n) => wires.map((wire) => ({ n, wire })));
  const find = (routing: string, n: number, wire: WireDType) =>
    rows.find((r) => r.routing === routing && r.workers === n && r.wire === wire);
  const routings = [...new Set(rows.map((r) => r.routing))];
  const head = configs.flatMap((c) => [`${counted(c.n, 'worker')} ${c.wire}`, `${c.n}w ${c.wire} no dedup`]);
  const lines = [
    `Bytes per token per MoE layer (both directions), x = ratio to native ${native} with dedup, same workers and wire`,
    '',
    `| routing | avg K | ${head.join(' | ')} |`,
    `|---|---|${head.map(() => '---|').join('')}`,
  ];
  for (const routing of routings) {
    const cells: string[] = [];
    let avgK = 0;
    for (const c of configs) {
      const r = find(routing, c.n, c.wire);
      const base = find(native, c.n, c.wire);
      if (!r || !base) {
        cells.push('n/a', 'n/a');
        continue;
      }
      avgK = r.avgK;
      const ref = base.dispatch.bytesPerTokenLayer;
      const fmt = (b: number) => `${b.toFixed(0)} (${(b / ref).toFixed(2)}x)`;
      cells.push(fmt(r.dispatch.bytesPerTokenLayer), fmt(r.dispatch.noDedupBytesPerTokenLayer));
    }
    lines.push(`| ${routing} | ${avgK.toFixed(3)} | ${cells.join(' | ')} |`);
  }
  lines.push('', `Eval throughput, ${native} (one process: ${localTps.toFixed(0)} tokens/s)`, '');
  lines.push('| workers | wire | tokens/s | vs one process |', '|---|---|---|---|');
  for (const c of configs) {
    const r = find(native, c.n, c.wire);
    if (r)
      lines.push(
        `| ${c.n} | ${c.wire} | ${r.tokensPerSecond.toFixed(0)} | ${(r.tokensPerSecond / localTps).toFixed(2)}x |`,
      );
  }
  return `${lines.join('\n')}\n`;
}

function chart(
  rows: readonly Row[],
  routings: readonly string[],
  sizes: number[],
  wire: WireDType,
  corpus: string,
): Promise<string> {
  const labels = [...new Set(rows.map((r) => r.routing))];
  const value = (routing: string, n: number, dedup: boolean) => {
    const r = rows.find((x) => x.routing === routing && x.workers === n && x.wire === wire);
    if (!r) return null;
    return dedup ? r.dispatch.bytesPerTokenLayer : r.dispatch.noDedupBytesPerTokenLayer;
  };
  return renderBarChart({
    title: `Network bytes per token per MoE layer, ${wire} wire (${corpus})`,
    yLabel: 'bytes per token per MoE layer',
    categories: labels.length > 0 ? labels : routings,
    series: sizes.flatMap((n) => [
      { name: `${counted(n, 'worker')}`, values: labels.map((l) => value(l, n, true)) },
      { name: `${counted(n, 'worker')}, no dedup`, values: labels.map((l) => value(l, n, false)) },
    ]),
    valueLabels: true,
    // Room for four labelled bars per routing.
    width: 900,
  });
}
