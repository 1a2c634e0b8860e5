// `kmoe bench expert`: one expert of a real model's shape across token batches, against this
// machine's GEMM peak and memory bandwidth measured in the same run. The measurements are
// coordinator/scale/expert-bench.ts; this writes the JSON, the table and the chart.

import os from 'node:os';
import type { ExpertWeightFormat } from '../../shared/onnx/expert-weight-format.js';
import type { Device } from '../../shared/onnx/session.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { type ExpertBenchResult, type ExpertShape, runExpertBench } from '../scale/expert-bench.js';
import { renderLineChart } from './report/chart.js';

export const DEFAULT_EXPERT_BATCHES = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512];
export const DEFAULT_PEAK_GEMM = [1024, 4096, 4096];

export interface BenchExpertOptions {
  /** The model the shape comes from (`custom shape` when --hidden/--ffn override it). */
  readonly like: string;
  readonly shape: ExpertShape;
  readonly formats: readonly ExpertWeightFormat[];
  readonly batches: readonly number[];
  readonly seconds: number;
  /** M, K, N of the peak GEMM. */
  readonly peak: readonly [number, number, number];
  readonly bandwidthMib: number;
  readonly threads?: number;
  readonly device?: Device;
  readonly seed: number;
  readonly out: string;
  readonly chart: string;
}

export async function run(o: BenchExpertOptions, argv: readonly string[]): Promise<number> {
  const threads = o.threads ?? os.availableParallelism();
  const device = o.device ?? 'cpu';
  const [m, k, n] = o.peak;
  const result = await runExpertBench({
    shape: o.shape,
    formats: o.formats,
    batches: o.batches,
    settings: { device, threads },
    seed: o.seed,
    secondsPerPoint: o.seconds,
    peakGemm: { m, k, n },
    bandwidthBytes: o.bandwidthMib * 2 ** 20,
    onProgress: (what) => process.stderr.write(`bench expert: ${what}\n`),
  });
  const json = {
    benchmark: 'expert',
    command: `kmoe bench expert ${argv.join(' ')}`.trim(),
    machine: machineInfo(),
    like: o.like,
    device,
    threads,
    ...result,
  };
  writeOutputFile(o.out, `${JSON.stringify(json, null, 2)}\n`);
  writeOutputFile(o.chart, await chart(result, o.like));
  process.stdout.write(`${table(result)}\nwrote ${o.out} and ${o.chart}\n`);
  return 0;
}

function table(r: ExpertBenchResult): string {
  const lines = [
    `GEMM peak ${r.peak.gflopPerSecond.toFixed(1)} GFLOP/s ([${r.peak.m}, ${r.peak.k}] x [${r.peak.k}, ${r.peak.n}] fp32), ` +
      `memory bandwidth ${r.bandwidth.gbPerSecond.toFixed(1)} GB/s, expert ${r.shape.hidden} x ${r.shape.ffn}`,
    '',
    '| format | batch | tokens/s | GFLOP/s | of peak | weight GB/s | of bandwidth |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const x of r.points) {
    lines.push(
      `| ${x.format} | ${x.batch} | ${x.tokensPerSecond.toFixed(1)} | ${x.gflopPerSecond.toFixed(1)} | ` +
        `${(x.fractionOfPeak * 100).toFixed(0)}% | ${x.weightGBPerSecond.toFixed(1)} | ${(x.fractionOfBandwidth * 100).toFixed(0)}% |`,
    );
  }
  return lines.join('\n');
}

function chart(r: ExpertBenchResult, like: string): Promise<string> {
  const formats = [...new Set(r.points.map((x) => x.format))];
  return renderLineChart({
    title: `${like} expert (${r.shape.hidden} x ${r.shape.ffn}) on this machine`,
    xLabel: 'tokens per call',
    yLabel: 'GFLOP/s',
    xLog: true,
    series: formats.map((f) => ({
      name: f,
      points: r.points.filter((x) => x.format === f).map((x) => ({ x: x.batch, y: x.gflopPerSecond })),
    })),
    referenceLines: [{ axis: 'y', value: r.peak.gflopPerSecond, label: 'fp32 GEMM peak (same run)' }],
  });
}
