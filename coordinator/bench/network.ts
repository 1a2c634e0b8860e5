// `kmoe bench network`: serving across a bandwidth-limited multi-host network on one machine. For
// each link rate it builds the network with deploy/netns/kmoe-netns.sh (one namespace per worker,
// one for the coordinator, tc htb on every link, RTT measured), starts `kmoe worker` in each worker
// namespace and runs `kmoe bench network-cell` (network-cell.ts) in the coordinator's: one
// `kmoe serve`, the same streamed load under every routing, interleaved. Reports tokens/s,
// inter-token latency and bytes per token (dispatch payload and what crossed the link) per cell.

import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Checkpoint } from '../../shared/model/checkpoint.js';
import { cliArgv, projectRoot } from '../../shared/runtime/entry-points.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { counted } from '../../shared/text/counted.js';
import { BenchConfigError } from './errors.js';
import type { NetworkCellResult, NetworkCellSpec, NetworkRun } from './network-cell.js';
import { renderBarChart } from './report/chart.js';
import { median, quantile } from './report/quantiles.js';

export interface BenchNetworkOptions {
  readonly model: string;
  /** tc rates (100mbit, 1gbit) or 'unlimited'. */
  readonly rates: readonly string[];
  readonly routing?: readonly string[];
  readonly streams: readonly number[];
  readonly workers: number;
  readonly requests?: number;
  readonly maxTokens: number;
  readonly promptChars: number;
  readonly repeats: number;
  readonly wire: string;
  readonly threads?: number;
  /** kmoe serve --overlap. */
  readonly overlap?: boolean;
  /** The cluster token; a fresh random one when not given. */
  readonly clusterToken?: string;
  /** Seconds per request. */
  readonly timeout: number;
  readonly out: string;
  readonly chart: string;
}

const SCRIPT = () => path.join(projectRoot(), 'deploy/netns/kmoe-netns.sh');
const WORKER_PORT = 7070;

export interface RttLine {
  readonly worker: number;
  readonly method: string;
  readonly minMs: number;
  /** Median (TCP probe) or mean (ping) round trip. */
  readonly typicalMs: number;
  readonly maxMs: number;
}

/** The script's `rtt worker=I method=M min_ms=.. median_ms|avg_ms=.. max_ms=..` lines. */
export function parseRttLines(stdout: string): RttLine[] {
  const out: RttLine[] = [];
  for (const m of stdout.matchAll(
    /^rtt worker=(\d+) method=(\w+) min_ms=([\d.]+) (?:median|avg)_ms=([\d.]+) max_ms=([\d.]+)$/gm,
  )) {
    out.push({
      worker: Number(m[1]),
      method: m[2]!,
      minMs: Number(m[3]),
      typicalMs: Number(m[4]),
      maxMs: Number(m[5]),
    });
  }
  return out;
}

/** Contiguous expert ranges, as even as possible: `0-3`, `4-7` for 8 experts on 2 workers. */
export function expertRanges(numExperts: number, workers: number): string[] {
  if (workers < 1 || workers > numExperts)
    throw new BenchConfigError(`--workers must be 1..${numExperts} (the model's experts), got ${workers}`);
  return Array.from({ length: workers }, (_, i) => {
    const lo = Math.floor((i * numExperts) / workers);
    const hi = Math.floor(((i + 1) * numExperts) / workers) - 1;
    return lo === hi ? `${lo}` : `${lo}-${hi}`;
  });
}

const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** Whether this host can build the network: the script's own check and reason. */
export function netnsCheck(): { ok: boolean; reason: string } {
  const r = spawnSync(SCRIPT(), ['check'], { encoding: 'utf8' });
  return { ok: r.status === 0, reason: (r.stderr ?? '').trim() || r.error?.message || `exit ${r.status}` };
}

/** One row of the report: a (rate, routing, streams) cell summarized over its runs. */
export interface NetworkRow {
  readonly rate: string;
  readonly routing: string;
  readonly streams: number;
  readonly runs: number;
  readonly requests: number;
  readonly errors: readonly string[];
  readonly completionTokens: number;
  readonly promptTokens: number;
  /** Median over runs of completion tokens / wall time. */
  readonly outputTokensPerSecond: number;
  readonly itlMs: { readonly p50: number; readonly p90: number };
  readonly ttftMs: { readonly p50: number; readonly p90: number };
  /** Expert activations per token per layer (usage extension). */
  readonly avgK: number;
  /** Dispatch frame bytes (both directions) per generated token; prefill of the prompts included. */
  readonly dispatchBytesPerOutputToken: number;
  /** Bytes through the coordinator's link per generated token (frames on the veth, both ways). */
  readonly linkBytesPerOutputToken: number;
  /** Bytes through the coordinator's link per token processed (prompt and generated). */
  readonly linkBytesPerToken: number;
  /** Link bytes / dispatch bytes: TCP/IP, Ethernet and WebSocket overhead, ACKs, pings. */
  readonly wireEfficiency: number;
  /** Mean link throughput over the runs, Mbit/s (both directions added). */
  readonly linkMbitPerSecond: number;
}

export function summarizeRuns(rate: string, runs: readonly NetworkRun[], nativeK: number): NetworkRow {
  const r0 = runs[0]!;
  const timings = runs.flatMap((r) => r.timings);
  const gaps = timings.flatMap((t) => t.gapsMs);
  const ttft = timings.map((t) => t.ttftMs);
  const sum = (f: (r: NetworkRun) => number) => runs.reduce((a, r) => a + f(r), 0);
  const completion = sum((r) => r.completionTokens);
  const dispatch = sum((r) => r.dispatchBytes);
  const link = sum((r) => r.linkBytes);
  const activations = timings.reduce((a, t) => a + t.activations, 0);
  const native = timings.reduce((a, t) => a + t.nativeActivations, 0);
  const q2 = (xs: number[]) =>
    xs.length === 0 ? { p50: 0, p90: 0 } : { p50: quantile(xs, 0.5), p90: quantile(xs, 0.9) };
  return {
    rate,
    routing: r0.routing,
    streams: r0.streams,
    runs: runs.length,
    requests: timings.length + sum((r) => r.errors.length),
    errors: runs.flatMap((r) => r.errors),
    completionTokens: completion,
    promptTokens: sum((r) => r.promptTokens),
    outputTokensPerSecond: median(runs.map((r) => r.completionTokens / r.wallSeconds)),
    itlMs: q2(gaps),
    ttftMs: q2(ttft),
    avgK: native === 0 ? 0 : (activations / native) * nativeK,
    dispatchBytesPerOutputToken: completion === 0 ? 0 : dispatch / completion,
    linkBytesPerOutputToken: completion === 0 ? 0 : link / completion,
    linkBytesPerToken: link / Math.max(1, completion + sum((r) => r.promptTokens)),
    wireEfficiency: dispatch === 0 ? 0 : link / dispatch,
    linkMbitPerSecond: (link * 8) / 1e6 / sum((r) => r.wallSeconds),
  };
}

interface RateResult {
  readonly rate: string;
  readonly rtt: readonly RttLine[];
  readonly cell: NetworkCellResult;
}

/** Builds the network at one rate, runs the cell in it, returns what it measured. */
async function runRate(
  o: BenchNetworkOptions,
  rate: string,
  dir: string,
  tokenFile: string,
  ranges: readonly string[],
): Promise<RateResult> {
  const node = [process.execPath, ...cliArgv()].map(q).join(' ');
  const threads = o.threads === undefined ? '' : ` --threads ${o.threads}`;
  const cases = ranges.map((r, i) => `${i}) E=${r};;`).join(' ');
  const workerCmd =
    `case {i} in ${cases} esac; exec ${node} worker --model ${q(path.resolve(o.model))} --host {addr} ` +
    `--port ${WORKER_PORT} --experts "$E" --cluster-token-file ${q(tokenFile)}${threads}`;
  const specFile = path.join(dir, `cell-${rate}.json`);
  const outFile = path.join(dir, `result-${rate}.json`);
  const subnetBase = '10.213.0';
  const spec: NetworkCellSpec = {
    model: path.resolve(o.model),
    workerUrls: ranges.map((_, i) => `ws://${subnetBase}.${10 + i}:${WORKER_PORT}`),
    tokenFile,
    wire: o.wire,
    ...(o.threads === undefined ? {} : { threads: o.threads }),
    ...(o.overlap ? { overlap: true } : {}),
    ...(o.routing === undefined ? {} : { routing: o.routing.map((r) => r) }),
    streams: o.streams,
    ...(o.requests === undefined ? {} : { requests: o.requests }),
    maxTokens: o.maxTokens,
    promptChars: o.promptChars,
    repeats: o.repeats,
    timeoutSeconds: o.timeout,
    out: outFile,
  };
  await fs.writeFile(specFile, JSON.stringify(spec));
  const coordinatorCmd = `exec ${node} bench network-cell --spec ${q(specFile)}`;
  const args = [
    'run',
    '--workers',
    String(ranges.length),
    '--rate',
    rate,
    '--subnet',
    subnetBase,
    '--name',
    `kb${process.pid % 1_000_000}`,
    '--rtt-count',
    '20',
    '--wait-port',
    String(WORKER_PORT),
    '--wait-timeout',
    '1800',
    '--worker-cmd',
    workerCmd,
    '--coordinator-cmd',
    coordinatorCmd,
  ];
  const env = { ...process.env };
  // The children read the token from the file; both ways at once is refused.
  delete env['KMOE_CLUSTER_TOKEN'];
  const child = spawn(SCRIPT(), args, { cwd: projectRoot(), env, stdio: ['ignore', 'pipe', 'inherit'] });
  let stdout = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    stdout += d;
  });
  // A signal to this process reaches the script, which stops its namespaces' processes and
  // deletes the namespaces.
  let interrupted: NodeJS.Signals | undefined;
  const forward = (signal: NodeJS.Signals) => {
    interrupted ??= signal;
    child.kill(signal);
  };
  process.on('SIGINT', forward).on('SIGTERM', forward);
  const code = await new Promise<number | null>((resolve, reject) => {
    child.on('error', reject);
    child.on('close', resolve);
  });
  process.off('SIGINT', forward).off('SIGTERM', forward);
  if (interrupted !== undefined)
    throw new BenchConfigError(
      `interrupted by ${interrupted} during the run at ${rate} (kmoe-netns.sh exit ${code}); nothing was written`,
      {
        hint: 'the script stopped its processes and removed its namespaces (its last lines above say so)',
        details: { rate },
      },
    );
  let cell: NetworkCellResult;
  try {
    cell = JSON.parse(await fs.readFile(outFile, 'utf8')) as NetworkCellResult;
  } catch {
    throw new BenchConfigError(`the run at ${rate} produced no result (kmoe-netns.sh exit ${code})`, {
      hint: 'see the output above: the workers or kmoe serve failed in their namespaces',
      details: { rate },
    });
  }
  return { rate, rtt: parseRttLines(stdout), cell };
}

export async function run(o: BenchNetworkOptions, argv: readonly string[]): Promise<number> {
  const check = netnsCheck();
  if (!check.ok) {
    throw new BenchConfigError(`kmoe bench network cannot run on this host: ${check.reason}`, {
      hint: 'it needs root, ip netns, veth, bridges and tc htb (deploy/netns/kmoe-netns.sh check)',
    });
  }
  const ckpt = await Checkpoint.open(o.model);
  const ranges = expertRanges(ckpt.config.numExperts, o.workers);
  const nativeK = ckpt.config.numExpertsPerTok;
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'kmoe-bench-network-'));
  const loadAtStart = os.loadavg();
  const started = new Date().toISOString();
  try {
    const tokenFile = path.join(dir, 'cluster.token');
    await fs.writeFile(tokenFile, `${o.clusterToken ?? randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
    const perRate: RateResult[] = [];
    for (const rate of o.rates) perRate.push(await runRate(o, rate, dir, tokenFile, ranges));
    const rows = perRate.flatMap((pr) => {
      const keys = new Map<string, NetworkRun[]>();
      for (const r of pr.cell.runs) {
        const k = `${r.routing}\u0000${r.streams}`;
        keys.set(k, [...(keys.get(k) ?? []), r]);
      }
      return [...keys.values()].map((runs) => summarizeRuns(pr.rate, runs, nativeK));
    });
    const routings = perRate[0]!.cell.routings;
    const baseline = routings[0]!;
    const ratios = rows
      .filter((r) => r.routing !== baseline)
      .map((r) => {
        const b = rows.find((x) => x.rate === r.rate && x.streams === r.streams && x.routing === baseline)!;
        return {
          rate: r.rate,
          streams: r.streams,
          routing: r.routing,
          linkBytesVsBaseline: r.linkBytesPerOutputToken / b.linkBytesPerOutputToken,
          throughputVsBaseline: r.outputTokensPerSecond / b.outputTokensPerSecond,
          itlP50VsBaseline: r.itlMs.p50 / b.itlMs.p50,
        };
      });
    const totalLink = perRate.flatMap((p) => p.cell.runs).reduce((a, r) => a + r.linkBytes, 0);
    const totalDispatch = perRate.flatMap((p) => p.cell.runs).reduce((a, r) => a + r.dispatchBytes, 0);
    const report = {
      benchmark: 'network',
      command: `kmoe bench network ${argv.join(' ')}`.trim(),
      started,
      machine: machineInfo(),
      loadAverage1m: { start: loadAtStart[0], end: os.loadavg()[0] },
      model: {
        dir: o.model,
        hidden: ckpt.config.hiddenSize,
        layers: ckpt.config.numLayers,
        experts: ckpt.config.numExperts,
        nativeK,
        server: perRate[0]!.cell.server,
      },
      workers: ranges.map((experts, i) => ({ index: i, experts })),
      wire: o.wire,
      overlap: o.overlap === true,
      maxTokens: o.maxTokens,
      promptChars: o.promptChars,
      repeats: o.repeats,
      baseline,
      routings,
      notes: [
        'Each rate is its own network: kmoe-netns.sh builds namespaces, limits every link with tc htb both ways ' +
          '(the coordinator link carries every dispatch), measures the RTT (no delay is added: this kernel has no netem) ' +
          'and removes everything after the run.',
        'Routings run interleaved within the same network and the same kmoe serve, order alternating per repeat.',
        'Bytes per output token include the prefill of the prompts: every routing decodes the same prompts to the same length.',
        'linkBytes: rx+tx of the coordinator namespace eth0 (veth frames, Ethernet headers included, preamble/FCS not).',
        "On a synthetic checkpoint the router has random weights: its K distribution is not the demo model's.",
      ],
      wireEfficiency: totalDispatch === 0 ? 0 : totalLink / totalDispatch,
      rtt: perRate.map((p) => ({ rate: p.rate, workers: p.rtt })),
      rows,
      ratios,
    };
    writeOutputFile(o.out, `${JSON.stringify(report, null, 2)}\n`);
    writeOutputFile(o.chart, await chart(rows, routings, o.rates, o.streams));
    process.stdout.write(`${table(rows, perRate, baseline)}\nwrote ${o.out} and ${o.chart}\n`);
    const failed = rows.reduce((n, r) => n + r.errors.length, 0);
    if (failed > 0)
      process.stderr.write(`bench network: ${counted(failed, 'request')} failed; see "errors" in ${o.out}\n`);
    return failed > 0 ? 1 : 0;
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

function chart(
  rows: readonly NetworkRow[],
  routings: readonly string[],
  rates: readonly string[],
  streams: readonly number[],
): Promise<string> {
  const categories = streams.flatMap((s) => rates.map((r) => `${r}, ${counted(s, 'stream')}`));
  return renderBarChart({
    title: 'kmoe serve across a limited network: output tokens/s per link rate and load',
    yLabel: 'output tokens / s (median of runs)',
    categories,
    series: routings.map((routing) => ({
      name: routing,
      values: streams.flatMap((s) =>
        rates.map(
          (rate) =>
            rows.find((r) => r.rate === rate && r.streams === s && r.routing === routing)
              ?.outputTokensPerSecond ?? null,
        ),
      ),
    })),
    valueLabels: true,
    width: Math.max(480, 90 * categories.length * routings.length),
  });
}

function table(rows: readonly NetworkRow[], perRate: readonly RateResult[], baseline: string): string {
  const f = (v: number, d = 1) => v.toFixed(d);
  const rtt = (rate: string) => {
    const r = perRate.find((p) => p.rate === rate)?.rtt ?? [];
    return r.length === 0 ? 'n/a' : f(median(r.map((x) => x.typicalMs)), 3);
  };
  const lines = rows.map((r) => {
    const b = rows.find((x) => x.rate === r.rate && x.streams === r.streams && x.routing === baseline)!;
    const vs =
      r.routing === baseline ? '1.00x' : `${f(r.outputTokensPerSecond / b.outputTokensPerSecond, 2)}x`;
    return (
      `| ${r.rate} | ${rtt(r.rate)} | ${r.streams} | ${r.routing} | ${f(r.avgK, 2)} | ${f(r.linkBytesPerOutputToken / 1024)} | ` +
      `${f(r.wireEfficiency, 3)} | ${f(r.outputTokensPerSecond, 2)} | ${vs} | ${f(r.itlMs.p50)} | ${f(r.itlMs.p90)} | ${f(r.linkMbitPerSecond)} |`
    );
  });
  return [
    '| link | RTT ms | streams | routing | avg K | link KiB / output token | wire / payload | output tok/s | vs baseline | ITL p50 ms | ITL p90 ms | link Mbit/s |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...lines,
  ].join('\n');
}
