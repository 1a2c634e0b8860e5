// `kmoe bench workers`: the distribution tax, in one run. Two engines of one model in this process:
// experts in process, and experts in N local workers. For each stream count they decode the same
// prompts greedily, one batched step per token, round by round interleaved (the order swapped
// every round), and the ratio of their tokens/s is reported per round. One more timed pass per
// stream count breaks a step through workers down from instrumentation: the coordinator's
// onnxruntime time, the expert round trips (coordinator side) and the workers' own service time
// (their /metrics), whose difference is the transport: framing, sockets, hand-offs, wake-ups.

import { readU16Ids } from '../../shared/data/token-ids.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { counted } from '../../shared/text/counted.js';
import type { EngineClient } from '../engine/engine-client.js';
import { batchedDecode } from './batched-decode.js';
import { sumMetric } from './prometheus-text.js';
import { median } from './report/quantiles.js';

export interface BenchWorkersOptions {
  /** Experts in this process. */
  readonly inProcess: EngineClient;
  /** Experts in local workers. */
  readonly remote: EngineClient;
  /** The workers' ws:// URLs (their /metrics is on the same port). */
  readonly workerUrls: readonly string[];
  readonly routing: string;
  readonly streams: readonly number[];
  readonly tokens: number;
  readonly repeats: number;
  readonly ids: string;
  readonly settings: Record<string, unknown>;
  readonly out: string;
  readonly command: string;
}

interface StepBreakdown {
  readonly wallMsPerStep: number;
  /** Coordinator onnxruntime time per step, by graph kind (dense, lm-head). */
  readonly coordinatorOnnxruntimeMsPerStep: Record<string, number>;
  /** Per worker: requests per step, mean round trip seen by the coordinator, mean service time in the worker. */
  readonly workers: readonly {
    readonly url: string;
    readonly requestsPerStep: number;
    readonly roundTripMicros: number;
    readonly serviceMicros: number;
    /** Round trip minus service: framing, (de)serialisation, sockets, hand-offs and wake-ups. */
    readonly transportMicros: number;
  }[];
}

export async function runBenchWorkers(o: BenchWorkersOptions): Promise<number> {
  const ids = await readU16Ids(o.ids);
  const decode = (engine: EngineClient, streams: number, tag: string, beforeTimed?: () => Promise<void>) =>
    batchedDecode(engine, {
      ids,
      streams,
      tokens: o.tokens,
      routing: o.routing,
      tag,
      ...(beforeTimed ? { beforeTimed } : {}),
    });
  const tokensPerSecond = (streams: number, wallMs: number) => (o.tokens * streams * 1000) / wallMs;

  process.stderr.write('bench workers: warm-up...\n');
  for (const engine of [o.inProcess, o.remote]) await decode(engine, 4, 'warm');

  const rows = [];
  for (const streams of o.streams) {
    const inProcess: number[] = [];
    const remote: number[] = [];
    const ratios: number[] = [];
    for (let r = 0; r < o.repeats; r++) {
      process.stderr.write(`bench workers: ${counted(streams, 'stream')}, round ${r + 1}/${o.repeats}\n`);
      const order = r % 2 === 0 ? (['in', 'remote'] as const) : (['remote', 'in'] as const);
      const rate: Record<'in' | 'remote', number> = { in: 0, remote: 0 };
      for (const side of order) {
        const engine = side === 'in' ? o.inProcess : o.remote;
        rate[side] = tokensPerSecond(
          streams,
          (await decode(engine, streams, `${side}${streams}-${r}`)).wallMs,
        );
      }
      inProcess.push(rate.in);
      remote.push(rate.remote);
      ratios.push(rate.remote / rate.in);
    }
    const breakdown = await breakDown(o, (before) => decode(o.remote, streams, `timed${streams}`, before));
    rows.push({
      streams,
      inProcessTokensPerSecond: median(inProcess),
      workersTokensPerSecond: median(remote),
      ratio: median(ratios),
      ratioOfFastest: Math.max(...remote) / Math.max(...inProcess),
      samples: { inProcess, workers: remote, ratios },
      workersStep: breakdown,
    });
  }
  const result = {
    benchmark: 'workers',
    command: o.command,
    machine: machineInfo(),
    note: 'the same engine code twice in this process: experts in process vs in local workers; ratio = workers / in process, per round (median) and of the fastest rounds',
    workers: o.workerUrls.length,
    routing: o.routing,
    settings: o.settings,
    tokensPerRound: o.tokens,
    repeats: o.repeats,
    rows,
  };
  writeOutputFile(o.out, `${JSON.stringify(result, null, 2)}\n`);
  const f = (x: number, d = 0) => x.toFixed(d);
  const lines = [
    `| streams | in process tok/s | ${counted(o.workerUrls.length, 'worker')} tok/s | workers / in process (median of rounds) | of fastest rounds |`,
    '|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.streams} | ${f(r.inProcessTokensPerSecond)} | ${f(r.workersTokensPerSecond)} | ${f(r.ratio, 2)}x | ${f(r.ratioOfFastest, 2)}x |`,
    ),
    '',
    '| streams | step through workers | coordinator onnxruntime | per worker: requests/step, round trip, worker service, transport |',
    '|---|---|---|---|',
    ...rows.map((r) => {
      const b = r.workersStep;
      const ort = Object.entries(b.coordinatorOnnxruntimeMsPerStep)
        .map(([k, ms]) => `${k} ${f(ms * 1000)} us`)
        .join(', ');
      const ws = b.workers
        .map(
          (w) =>
            `${f(w.requestsPerStep, 1)} x ${f(w.roundTripMicros)} us = ${f(w.serviceMicros)} + ${f(w.transportMicros)} us`,
        )
        .join('; ');
      return `| ${r.streams} | ${f(b.wallMsPerStep * 1000)} us | ${ort} | ${ws} |`;
    }),
  ];
  process.stdout.write(`${lines.join('\n')}\nwrote ${o.out}\n`);
  return 0;
}

/** One more timed decode through the workers, with every counter read before and after it. */
async function breakDown(
  o: BenchWorkersOptions,
  run: (beforeTimed: () => Promise<void>) => Promise<{ wallMs: number }>,
): Promise<StepBreakdown> {
  let before: readonly ServiceCounters[] = [];
  const { wallMs } = await run(async () => {
    before = await Promise.all(o.workerUrls.map(serviceCounters));
    await o.remote.dispatchStats(true);
    await o.remote.timing(true);
  });
  const onnxruntime = await o.remote.timing(false);
  const stats = await o.remote.dispatchStats(false);
  const after = await Promise.all(o.workerUrls.map(serviceCounters));
  const steps = o.tokens;
  return {
    wallMsPerStep: wallMs / steps,
    coordinatorOnnxruntimeMsPerStep: Object.fromEntries(
      Object.entries(onnxruntime).map(([kind, t]) => [kind, t.ms / steps]),
    ),
    workers: o.workerUrls.map((url, w) => {
      const rt = stats?.roundTrips[w];
      const requests = rt ? rt.counts.reduce((a, b) => a + b, 0) : 0;
      const served = after[w]!.count - before[w]!.count;
      const roundTripMicros = requests === 0 ? 0 : (rt!.sumSeconds / requests) * 1e6;
      const serviceMicros =
        served === 0 ? 0 : ((after[w]!.sumSeconds - before[w]!.sumSeconds) / served) * 1e6;
      return {
        url,
        requestsPerStep: requests / steps,
        roundTripMicros,
        serviceMicros,
        transportMicros: roundTripMicros - serviceMicros,
      };
    }),
  };
}

interface ServiceCounters {
  readonly count: number;
  readonly sumSeconds: number;
}

/** The worker's request-service histogram totals, from its /metrics. */
async function serviceCounters(wsUrl: string): Promise<ServiceCounters> {
  const url = `${wsUrl.replace(/^ws:/, 'http:')}/metrics`;
  const res = await fetch(url);
  if (res.status !== 200) throw new Error(`bench workers: GET ${url} answered HTTP ${res.status}`);
  const text = await res.text();
  const series = (name: string): number => {
    // Absent only from something that is not a kmoe worker (the histogram exists from start-up).
    if (!new RegExp(`^${name} `, 'm').test(text)) throw new Error(`bench workers: ${url} has no ${name}`);
    return sumMetric(text, name);
  };
  return {
    count: series('kmoe_worker_request_seconds_count'),
    sumSeconds: series('kmoe_worker_request_seconds_sum'),
  };
}
