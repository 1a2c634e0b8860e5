// `kmoe bench project`: gathers the projection's inputs (bench expert, bench network and bench
// adaptive-k results when present, else the stated assumptions), runs projection.ts and writes
// bench-results/projection.json and a markdown table that carry every input beside the numbers.

import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { markdownBeside } from '../../shared/runtime/companion-files.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { PlanError } from './errors.js';
import { presetConfig } from './presets.js';
import {
  EXPERT_SAMPLES,
  H100_BF16,
  type KProfile,
  kDistributionFromAverage,
  type MeasuredExpertTime,
  mixtralDenseParamsPerLayer,
  type ProjectionInputs,
  type ProjectionModel,
  type ProjectionRow,
  project,
  TCP_ETHERNET_EFFICIENCY,
} from './projection.js';

export interface ProjectOptions {
  readonly hosts: readonly number[];
  /** Gbit/s. */
  readonly links: readonly number[];
  readonly batches: readonly number[];
  /**
   * bench expert JSON given by the user (must exist; used whatever its device), or `assumed` for
   * the GPU roofline. Absent: the
   * default file is used only if it was measured on a GPU (the projection is for GPU hosts),
   * else the GPU roofline, and the assumptions say which and why.
   */
  readonly expertResults?: string;
  /** Which weight format's timings of that file. */
  readonly expertFormat?: string;
  /** bench network JSON given by the user (must exist), or `assumed`; absent: the default file if it exists. */
  readonly networkResults?: string;
  /** bench adaptive-k JSON: each profile's average K on unseen text (required). */
  readonly adaptiveK: string;
  readonly rttMs: number;
  readonly out: string;
}

export function mixtral8x22b(): ProjectionModel {
  const c = presetConfig('mixtral-8x22b') as Record<string, number>;
  return {
    name: 'Mixtral 8x22B',
    hidden: c['hidden_size']!,
    ffn: c['intermediate_size']!,
    moeLayers: c['num_hidden_layers']!,
    numExperts: c['num_local_experts']!,
    nativeK: c['num_experts_per_tok']!,
    denseParamsPerLayer: mixtralDenseParamsPerLayer({
      hidden: c['hidden_size']!,
      heads: c['num_attention_heads']!,
      kvHeads: c['num_key_value_heads']!,
      numExperts: c['num_local_experts']!,
    }),
  };
}

const adaptiveKSchema = z.looseObject({
  command: z.string().optional(),
  rows: z.array(
    z.looseObject({
      policy: z.string(),
      profile: z.string(),
      test: z.looseObject({ avgK: z.number(), pplIncrease: z.number() }),
    }),
  ),
});

/** Native top-2 first, then every calibrated profile's K on the unseen half of the demo model's text. */
export function profilesFromAdaptiveK(file: string, nativeK: number): KProfile[] {
  if (!existsSync(file))
    throw new PlanError(`no adaptive-K results at ${file}`, {
      hint: 'run kmoe bench adaptive-k --model models/tiny-mixtral (or give --adaptive-k FILE)',
    });
  const r = adaptiveKSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  return [
    { name: `native top-${nativeK}`, kDistribution: [0, 0, 1], source: 'every token K = 2' },
    ...r.rows.map((row) => ({
      name: `${path.basename(row.profile, '.json')} (K ${row.test.avgK.toFixed(2)}, ppl +${(row.test.pplIncrease * 100).toFixed(1)}%)`,
      kDistribution: kDistributionFromAverage(row.test.avgK, nativeK),
      source: `${file}: avg K ${row.test.avgK.toFixed(4)} of tiny-mixtral on the unseen half, K in {1, 2} (the profile's minimum K is 1)`,
    })),
  ];
}

const expertSchema = z.looseObject({
  command: z.string(),
  device: z.string(),
  machine: z.looseObject({ cpu: z.string().optional() }),
  shape: z.object({ hidden: z.number(), ffn: z.number() }),
  points: z.array(z.looseObject({ format: z.string(), batch: z.number(), seconds: z.number() })),
});

function measuredExpertTime(file: string, model: ProjectionModel, format?: string): MeasuredExpertTime {
  const r = expertSchema.parse(JSON.parse(readFileSync(file, 'utf8')));
  if (r.shape.hidden !== model.hidden || r.shape.ffn !== model.ffn)
    throw new PlanError(
      `${file} timed a ${r.shape.hidden} x ${r.shape.ffn} expert, not ${model.name}'s ${model.hidden} x ${model.ffn}`,
      { hint: 'run kmoe bench expert --like mixtral-8x22b, or move the file away to use the GPU assumption' },
    );
  const fmt = format ?? r.points[0]?.format;
  const points = r.points.filter((p) => p.format === fmt);
  if (points.length === 0) throw new PlanError(`${file} has no timings of format ${fmt}`);
  return {
    source: `${file}: ${fmt} on ${r.device} (${r.machine.cpu ?? 'unknown machine'}), "${r.command}"`,
    points: points.map((p) => ({ batch: p.batch, seconds: p.seconds })),
  };
}

const networkSchema = z.looseObject({
  command: z.string(),
  wireEfficiency: z.number().positive(),
  model: z.looseObject({ hidden: z.number() }),
});

/** Where `kmoe bench expert` and `kmoe bench network` write by default. */
export const DEFAULT_EXPERT_RESULTS = 'bench-results/expert.json';
export const DEFAULT_NETWORK_RESULTS = 'bench-results/network.json';

/** `--expert-results assumed` / `--network-results assumed`: use the stated assumption, no file. */
export const ASSUMED = 'assumed';

/** A file the user named must exist: a typo must not silently become an assumption. */
function given(file: string, flag: string): string {
  if (!existsSync(file))
    throw new PlanError(`${flag} ${file}: no such file`, { hint: `omit ${flag} to use the default` });
  return file;
}

/** The expert timings to use: the file given, else the default one if it was timed on a GPU. */
function expertTimeOf(o: ProjectOptions, model: ProjectionModel): MeasuredExpertTime | undefined {
  if (o.expertResults === ASSUMED) return undefined;
  if (o.expertResults !== undefined)
    return measuredExpertTime(given(o.expertResults, '--expert-results'), model, o.expertFormat);
  if (!existsSync(DEFAULT_EXPERT_RESULTS)) return undefined;
  const device = expertSchema.parse(JSON.parse(readFileSync(DEFAULT_EXPERT_RESULTS, 'utf8'))).device;
  return device === 'cuda' ? measuredExpertTime(DEFAULT_EXPERT_RESULTS, model, o.expertFormat) : undefined;
}

export function projectionInputs(o: ProjectOptions): ProjectionInputs {
  const model = mixtral8x22b();
  const expertTime = expertTimeOf(o, model);
  const networkFile =
    o.networkResults === ASSUMED
      ? undefined
      : o.networkResults !== undefined
        ? given(o.networkResults, '--network-results')
        : existsSync(DEFAULT_NETWORK_RESULTS)
          ? DEFAULT_NETWORK_RESULTS
          : undefined;
  const network =
    networkFile === undefined
      ? undefined
      : networkSchema.parse(JSON.parse(readFileSync(networkFile, 'utf8')));
  return {
    model,
    hosts: o.hosts,
    linkGbitPerSecond: o.links,
    batches: o.batches,
    profiles: profilesFromAdaptiveK(o.adaptiveK, model.nativeK),
    gpu: H100_BF16,
    ...(expertTime === undefined ? {} : { expertTime }),
    wireBytesPerValue: 2,
    wireEfficiency:
      network === undefined
        ? {
            value: TCP_ETHERNET_EFFICIENCY,
            source: 'assumed: full-size TCP segments on Ethernet, 1538 wire bytes per 1448 payload bytes',
          }
        : {
            value: network.wireEfficiency,
            // Frames of a smaller hidden size carry relatively more header bytes: say which one.
            source: `measured at hidden ${network.model.hidden}: ${networkFile} ("${network.command}")`,
          },
    rttMs: {
      value: o.rttMs,
      source: 'assumed: one request/reply per MoE layer between hosts in one rack (TCP)',
    },
  };
}

/** The assumptions, one line each, as written above the table and into the JSON. */
export function assumptions(i: ProjectionInputs): string[] {
  const g = i.gpu;
  return [
    `model: ${i.model.name}, ${i.model.moeLayers} MoE layers, hidden ${i.model.hidden}, expert FFN ${i.model.ffn}, ` +
      `${i.model.numExperts} experts, native top-${i.model.nativeK}; dense part ${i.model.denseParamsPerLayer.toLocaleString('en-US')} parameters per layer`,
    "topology (kmoe's): one coordinator host runs embeddings, attention and the router; N expert hosts hold E/N experts of every " +
      "layer each; per MoE layer the coordinator sends each token's hidden state once to every host holding one of its experts " +
      "(dedup) and gets one partial sum back per (token, host); the coordinator's link carries all of it, full duplex",
    `expert choice: uniform over experts, so a K=2 token touches N(1 - C(E-E/N,2)/C(E,2)) hosts on average; each layer waits for the busiest expert host (mean over ${EXPERT_SAMPLES} sampled steps, seeded: at 1-16 tokens per step one host often gets both experts of a token)`,
    `experts: ${i.expertTime === undefined ? `roofline of ${g.name} (no GPU kmoe bench expert result: ${DEFAULT_EXPERT_RESULTS}, if present, was timed on a CPU): max(6 x tokens x hidden x ffn / (${g.peakTflops} TFLOP/s x ${g.flopFraction}), weights / (${g.memoryTBps} TB/s x ${g.bandwidthFraction})) per expert with tokens` : `measured, ${i.expertTime.source}, interpolated linearly in tokens per call`}; a host's experts run one after another, hosts in parallel`,
    'memory is not checked: a host holds 8/N experts x 31.5 GiB (bf16, 56 layers), 126 GiB on 2 hosts, more than one 80 GB GPU; ' +
      "each host computes at one GPU's rate (a host whose experts sit on several GPUs would run them in parallel: less expert time)",
    `dense part: roofline of ${g.name} (the same fractions); attention over the KV cache, embeddings and the LM head are not counted`,
    `wire: bf16 hidden states (${i.wireBytesPerValue} bytes per value), bytes on the link / payload = ${i.wireEfficiency.value.toFixed(4)} (${i.wireEfficiency.source}); per-pair indices and weights not counted`,
    `latency: ${i.rttMs.value} ms per MoE layer (${i.rttMs.source})`,
    'serial step = layers x (dense + send + RTT + experts + receive); overlap step = layers x (max(dense + experts, one-way transfer) + RTT), ' +
      'the bound an ideal two-batch overlap approaches',
    "K per profile: the demo model's (tiny-mixtral, 4 MoE layers, 8 experts) measured average K applied to 8x22B: nobody has measured 8x22B's router on these profiles",
  ];
}

export function projectionTable(rows: readonly ProjectionRow[]): string {
  const f = (v: number, d = 2) => v.toFixed(d);
  const pct = (v: number) => `${(v * 100).toFixed(1)}%`;
  return [
    '| hosts | link Gbit/s | tokens/step | profile | avg K | hosts/token | network ms | experts ms | dense ms | step ms (serial) | saving | step ms (overlap) | saving |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.hosts} | ${r.linkGbitPerSecond} | ${r.batch} | ${r.profile} | ${f(r.avgK)} | ${f(r.hostsPerToken)} | ${f(r.networkMs)} | ` +
        `${f(r.expertMs)} | ${f(r.denseMs)} | ${f(r.stepMsSerial)} | ${pct(r.savingSerial)} | ${f(r.stepMsOverlap)} | ${pct(r.savingOverlap)} |`,
    ),
  ].join('\n');
}

export async function run(o: ProjectOptions, argv: readonly string[]): Promise<number> {
  const inputs = projectionInputs(o);
  const rows = project(inputs);
  const notes = assumptions(inputs);
  const md = [
    `Projection: ${inputs.model.name} on N expert hosts (${`kmoe bench project ${argv.join(' ')}`.trim()})`,
    '',
    ...notes.map((n) => `- ${n}`),
    '',
    projectionTable(rows),
    '',
  ].join('\n');
  writeOutputFile(
    o.out,
    `${JSON.stringify({ benchmark: 'projection', command: `kmoe bench project ${argv.join(' ')}`.trim(), assumptions: notes, inputs, rows }, null, 2)}\n`,
  );
  const mdPath = markdownBeside(o.out);
  writeOutputFile(mdPath, md);
  process.stdout.write(`${md}\nwrote ${o.out} and ${mdPath}\n`);
  return 0;
}
