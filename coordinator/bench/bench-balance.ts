// `kmoe bench balance`: the baseline replica rule (each expert whole to its least-loaded holder)
// against the k-aware rule (per (token, expert) pair, same-worker dedup and expected cost) on
// skewed placements: local clusters of 3 and 4 workers, experts split evenly, the hottest experts
// (measured from the router's real outputs on the windows, experts in this process) replicated on
// every worker. Routing decisions come from running the engine over the eval windows. Reports
// bytes per token per MoE layer, imbalance (max / mean expected cost per worker) and throughput,
// plus the JS cost of one assignment. Writes JSON and an SVG bar chart; prints a markdown table.

import path from 'node:path';
import { type CorpusWindows, leadingWindows } from '../../shared/data/token-ids.js';
import { loadModelConfig } from '../../shared/model/config.js';
import type { SessionSettings } from '../../shared/onnx/session.js';
import type { WireDType } from '../../shared/protocol/wire-dtype.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { counted } from '../../shared/text/counted.js';
import { assignPairs, BALANCE_RULES, type BalanceRule, equalCosts } from '../cluster/balance.js';
import { type DispatchSummary, summarizeDispatch } from '../cluster/dispatch-stats.js';
import { startLocalCluster } from '../cluster/local-cluster.js';
import { PlacementTable } from '../cluster/placement.js';
import { EngineClient } from '../engine/engine-client.js';
import { evaluatePerplexity } from '../evaluation/perplexity.js';
import { STANDARD_WINDOW } from '../evaluation/windows.js';
import { BenchConfigError } from './errors.js';
import { renderBarChart } from './report/chart.js';

export interface BenchBalanceOptions {
  readonly model: string;
  readonly settings: SessionSettings;
  readonly ids: string;
  /** The corpus (`ids`) read, and the windows of it to run, checked against it. */
  readonly corpus: CorpusWindows;
  /** Local cluster sizes (worker counts). */
  readonly clusterSizes: readonly number[];
  /** How many of the hottest experts get a replica on every worker. */
  readonly hot: number;
  readonly wire: WireDType;
  readonly out: string;
  readonly chart: string;
}

interface Row {
  readonly placement: string;
  readonly workers: number;
  readonly rule: BalanceRule;
  readonly tokensPerSecond: number;
  readonly bytesPerTokenLayer: number;
  readonly imbalance: number;
  readonly dispatch: DispatchSummary;
}

export async function run(o: BenchBalanceOptions, argv: readonly string[]): Promise<number> {
  const { model: modelDir, settings, out, chart: svg } = o;
  const config = await loadModelConfig(modelDir);
  const E = config.numExperts;
  if (o.hot >= E) throw new BenchConfigError(`--hot ${o.hot}: the model has ${E} experts`);
  for (const n of o.clusterSizes)
    if (n < 2 || n > E)
      throw new BenchConfigError(`--cluster-sizes: ${n} must be in 2..${E} (replicas need 2)`);
  const { ids, range: windows } = o.corpus;
  const log = (line: string) => process.stderr.write(`bench balance: ${line}\n`);

  // Expert load from the router's real outputs on these windows (experts in this process).
  const local = await EngineClient.start({ modelDir, settings });
  let load: number[];
  try {
    await evaluatePerplexity(local, ids, { windows });
    const stats = await local.stats();
    load = Array.from({ length: E }, (_, e) =>
      stats.layers.reduce((a, l) => a + (l.expertTokens[e] ?? 0), 0),
    );
  } finally {
    await local.close();
  }
  const hot = load
    .map((n, e) => ({ n, e }))
    .sort((a, b) => b.n - a.n || a.e - b.e)
    .slice(0, o.hot)
    .map((x) => x.e)
    .sort((a, b) => a - b);
  log(`expert load (token-layers): ${load.join(' ')}; hot: ${hot.join(',')}`);

  const rows: Row[] = [];
  for (const n of o.clusterSizes) {
    const sets = Array.from({ length: n }, (_, w) => {
      const own = Array.from({ length: E }, (_, e) => e).filter((e) => Math.floor((e * n) / E) === w);
      return [...new Set([...own, ...hot])].sort((a, b) => a - b);
    });
    const placement = `${counted(n, 'worker')}, experts ${hot.join(',')} on all`;
    const cluster = await startLocalCluster({ modelDir, expertSets: sets });
    try {
      for (const rule of BALANCE_RULES) {
        const engine = await EngineClient.start({
          modelDir,
          settings,
          experts: { kind: 'remote', workers: cluster.urls, wireDtype: o.wire, balance: rule },
        });
        try {
          await evaluatePerplexity(engine, ids, { windows: leadingWindows(windows, 2) });
          await engine.dispatchStats(true);
          const r = await evaluatePerplexity(engine, ids, { windows });
          const stats = await engine.dispatchStats(true);
          if (stats === null) throw new Error('remote engine returned no dispatch accounting');
          const dispatch = summarizeDispatch(stats);
          rows.push({
            placement,
            workers: n,
            rule,
            tokensPerSecond: r.tokensPerSecond,
            bytesPerTokenLayer: dispatch.bytesPerTokenLayer,
            imbalance: dispatch.imbalance,
            dispatch,
          });
          log(
            `${placement}, ${rule}: ${dispatch.bytesPerTokenLayer.toFixed(0)} bytes/token/layer, ` +
              `imbalance ${dispatch.imbalance.toFixed(3)}, ${r.tokensPerSecond.toFixed(0)} tokens/s`,
          );
        } finally {
          await engine.close();
        }
      }
    } finally {
      await cluster.stop();
    }
  }

  const assignCost = measureAssignCost(E, config.numExpertsPerTok, Math.max(...o.clusterSizes), hot);
  const result = {
    benchmark: 'balance',
    command: `kmoe bench balance ${argv.join(' ')}`.trim(),
    machine: machineInfo(),
    note: 'throughput figures need an idle machine; bytes and imbalance do not depend on load',
    model: modelDir,
    corpus: o.ids,
    windows: {
      ...windows,
      windowLen: STANDARD_WINDOW,
      tokens: (windows.end - windows.start) * STANDARD_WINDOW,
    },
    wire: o.wire,
    expertLoad: load,
    hot,
    assignCost,
    rows,
  };
  writeOutputFile(out, `${JSON.stringify(result, null, 2)}\n`);
  const categories = [...new Set(rows.map((r) => r.placement))];
  writeOutputFile(
    svg,
    await renderBarChart({
      title: `Replica balancing on ${path.basename(o.ids)} (${o.wire} wire): bytes per token per MoE layer`,
      yLabel: 'bytes per token per MoE layer',
      categories,
      series: BALANCE_RULES.map((rule) => ({
        name: `${rule} (imbalance ${rows
          .filter((r) => r.rule === rule)
          .map((r) => r.imbalance.toFixed(2))
          .join(' / ')})`,
        values: categories.map(
          (c) => rows.find((r) => r.rule === rule && r.placement === c)?.bytesPerTokenLayer ?? 0,
        ),
      })),
      valueLabels: true,
    }),
  );
  const lines = [
    '| placement | rule | bytes/token/layer | imbalance (max/mean) | tokens/s |',
    '|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.placement} | ${r.rule} | ${r.bytesPerTokenLayer.toFixed(0)} | ${r.imbalance.toFixed(3)} | ${r.tokensPerSecond.toFixed(0)} |`,
    ),
    '',
    `k-aware assignment JS cost: ${assignCost.microsecondsPerCall.toFixed(1)} µs per call of ${assignCost.tokens} tokens x K=${assignCost.k} on ${assignCost.workers} workers`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  process.stdout.write(`wrote ${out} and ${svg}\n`);
  return 0;
}

/** Mean wall time of assignPairs('k-aware') on a prefill-sized batch with the hot experts replicated everywhere. */
function measureAssignCost(
  E: number,
  k: number,
  workers: number,
  hot: readonly number[],
): { tokens: number; k: number; workers: number; microsecondsPerCall: number } {
  const tokens = 512;
  const table = PlacementTable.of(
    Array.from({ length: workers }, (_, w) => ({
      url: `w${w}`,
      experts: Array.from({ length: E }, (_, e) => e).filter(
        (e) => Math.floor((e * workers) / E) === w || hot.includes(e),
      ),
    })),
    E,
  );
  const offsets = Int32Array.from({ length: tokens + 1 }, (_, t) => t * k);
  // A fixed, spread pattern: token t uses experts (t * 7 + j * 3) mod E.
  const experts = Int32Array.from(
    { length: tokens * k },
    (_, j) => (((Math.floor(j / k) * 7 + (j % k) * 3) % E) + E) % E,
  );
  for (let t = 0; t < tokens; t++)
    if (k > 1 && experts[t * k] === experts[t * k + 1]) experts[t * k + 1] = (experts[t * k + 1]! + 1) % E;
  const pairs = { numTokens: tokens, offsets, experts, weights: new Float32Array(tokens * k).fill(1 / k) };
  const live = Array.from({ length: workers }, () => true);
  const costs = equalCosts(workers);
  for (let i = 0; i < 50; i++) assignPairs('k-aware', table, pairs, live, costs);
  const calls = 500;
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) assignPairs('k-aware', table, pairs, live, costs);
  return { tokens, k, workers, microsecondsPerCall: ((performance.now() - t0) * 1000) / calls };
}
