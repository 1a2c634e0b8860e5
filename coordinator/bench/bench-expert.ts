// `kmoe bench expert`: one expert of a real model's shape across token batches, against this
// machine's GEMM peak and memory bandwidth measured in the same run. Thin: the measurements are
// coordinator/scale/expert-bench.ts.

import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { UsageError } from '../../shared/errors/usage-error.js';
import { EXPERT_WEIGHT_FORMATS, type ExpertWeightFormat } from '../../shared/onnx/expert-weight-format.js';
import { renderLineChart } from '../../shared/report/svg-chart.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { type ExpertBenchResult, runExpertBench } from '../scale/expert-bench.js';
import { isSynthPreset, presetConfig, SYNTH_PRESETS } from '../scale/presets.js';
import { num, optionalNum, parse, str } from './args.js';

const DEFAULT_BATCHES = '1,2,4,8,16,32,64,128,256,512';

export const usage = `kmoe bench expert [options]

Times one SwiGLU expert of MODEL's shape (seeded synthetic weights, kmoe's own expert graph) for
each token batch and weight format: tokens/s, GFLOP/s (6 x batch x hidden x ffn per call) and the
weight bytes read per second. In the same run it measures this machine's fp32 GEMM peak (one large
onnxruntime MatMul) and memory bandwidth (a ReduceSum streaming --bandwidth-mib), and reports each
point as a fraction of them: large batches are compute-bound, single tokens memory-bound.
Memory: an 8x22B expert is 1.2 GB in fp32, plus about 4 GB while its graph is built.

  --like MODEL         ${SYNTH_PRESETS.join(' | ')} (default mixtral-8x22b)
  --hidden N --ffn N   override the shape (e.g. for a quick check)
  --formats LIST       ${EXPERT_WEIGHT_FORMATS.join(',')} (default all)
  --batches LIST       token batches (default ${DEFAULT_BATCHES})
  --seconds S          time budget per point, at least 3 timed calls (default 2)
  --peak M,K,N         GEMM of the peak measurement (default 1024,4096,4096)
  --bandwidth-mib N    bytes streamed by the bandwidth probe (default 1024)
  --threads N          onnxruntime threads (default: all cores)
  --seed S             weight seed (default 0)
  --out FILE           JSON results (default bench-results/expert.json)
  --svg FILE           GFLOP/s vs batch with the peak (default bench-results/expert.svg)`;

export async function run(argv: readonly string[]): Promise<number> {
  const p = parse(argv, {
    like: { type: 'string' },
    hidden: { type: 'string' },
    ffn: { type: 'string' },
    formats: { type: 'string' },
    batches: { type: 'string' },
    seconds: { type: 'string' },
    peak: { type: 'string' },
    'bandwidth-mib': { type: 'string' },
    threads: { type: 'string' },
    seed: { type: 'string' },
    out: { type: 'string' },
    svg: { type: 'string' },
  });
  const like = str(p, 'like') ?? 'mixtral-8x22b';
  if (!isSynthPreset(like))
    throw new UsageError(`--like must be one of ${SYNTH_PRESETS.join(', ')}, got '${like}'`);
  const preset = presetConfig(like);
  const shape = {
    hidden: optionalNum(p, 'hidden', { integer: true }) ?? (preset['hidden_size'] as number),
    ffn: optionalNum(p, 'ffn', { integer: true }) ?? (preset['intermediate_size'] as number),
  };
  // The int8 format quantizes rows in blocks of 32 columns.
  if (shape.hidden < 32 || shape.ffn < 32 || shape.hidden % 32 !== 0 || shape.ffn % 32 !== 0)
    throw new UsageError(`--hidden and --ffn must be multiples of 32, got ${shape.hidden} and ${shape.ffn}`);
  const formats = (str(p, 'formats') ?? EXPERT_WEIGHT_FORMATS.join(',')).split(',').map((f) => {
    if (!(EXPERT_WEIGHT_FORMATS as readonly string[]).includes(f))
      throw new UsageError(`--formats: '${f}' is not one of ${EXPERT_WEIGHT_FORMATS.join(', ')}`);
    return f as ExpertWeightFormat;
  });
  const batches = ints('batches', str(p, 'batches') ?? DEFAULT_BATCHES);
  const peakDims = ints('peak', str(p, 'peak') ?? '1024,4096,4096');
  if (peakDims.length !== 3) throw new UsageError('--peak takes three integers M,K,N');
  const threads = num(p, 'threads', os.availableParallelism(), { integer: true, min: 1, max: 256 });
  const out = str(p, 'out') ?? 'bench-results/expert.json';
  const svg = str(p, 'svg') ?? 'bench-results/expert.svg';

  const result = await runExpertBench({
    shape,
    formats,
    batches,
    settings: { device: 'cpu', threads },
    seed: num(p, 'seed', 0, { integer: true, min: 0 }),
    secondsPerPoint: num(p, 'seconds', 2, { min: 0 }),
    peakGemm: { m: peakDims[0]!, k: peakDims[1]!, n: peakDims[2]! },
    bandwidthBytes: num(p, 'bandwidth-mib', 1024, { integer: true, min: 1 }) * 2 ** 20,
    onProgress: (what) => process.stderr.write(`bench expert: ${what}\n`),
  });
  const json = {
    benchmark: 'expert',
    command: `kmoe bench expert ${argv.join(' ')}`.trim(),
    machine: machineInfo(),
    like: str(p, 'hidden') === undefined && str(p, 'ffn') === undefined ? like : 'custom shape',
    threads,
    ...result,
  };
  await fs.mkdir(path.dirname(out), { recursive: true });
  await fs.writeFile(out, `${JSON.stringify(json, null, 2)}\n`);
  await fs.mkdir(path.dirname(svg), { recursive: true });
  await fs.writeFile(svg, chart(result, like));
  process.stdout.write(`${table(result)}\nwrote ${out} and ${svg}\n`);
  return 0;
}

function ints(name: string, text: string): number[] {
  return text.split(',').map((s) => {
    const v = Number(s.trim());
    if (s.trim() === '' || !Number.isInteger(v) || v < 1)
      throw new UsageError(`--${name} takes integers >= 1 separated by commas, got '${text}'`);
    return v;
  });
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

function chart(r: ExpertBenchResult, like: string): string {
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
