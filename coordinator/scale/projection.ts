// The step-time model behind `kmoe bench project`: Mixtral 8x22B served the way kmoe serves, one
// coordinator host (attention, dense layers) and N expert hosts, from the figures kmoe measures
// (per-expert compute time, wire overhead, the demo model's K per profile) and stated assumptions
// for what it cannot measure here (GPU roofline, link RTT). Pure arithmetic: every input and
// assumption is a field of ProjectionInputs and is written out next to the numbers.

import { PlanError } from './errors.js';
import { mulberry32 } from './prng.js';

/** The model's shapes that the step time depends on. */
export interface ProjectionModel {
  readonly name: string;
  readonly hidden: number;
  readonly ffn: number;
  readonly moeLayers: number;
  readonly numExperts: number;
  readonly nativeK: number;
  /** Parameters of one layer's dense part (attention projections, router, norms), all on the coordinator. */
  readonly denseParamsPerLayer: number;
}

/** Roofline of a GPU: time = max(FLOPs / achieved FLOP/s, bytes read / achieved bandwidth). */
export interface GpuAssumption {
  readonly name: string;
  readonly peakTflops: number;
  readonly flopFraction: number;
  readonly memoryTBps: number;
  readonly bandwidthFraction: number;
  /** Bytes per weight as stored (bf16: 2). */
  readonly weightBytes: number;
}

/** Seconds per expert call at a token batch, measured (bench expert) and interpolated. */
export interface MeasuredExpertTime {
  readonly source: string;
  readonly points: readonly { readonly batch: number; readonly seconds: number }[];
}

export interface KProfile {
  readonly name: string;
  /** p[k]: fraction of (token, layer) decisions with k experts, k = 0..nativeK; sums to 1. */
  readonly kDistribution: readonly number[];
  readonly source: string;
}

export interface ProjectionInputs {
  readonly model: ProjectionModel;
  readonly hosts: readonly number[];
  readonly linkGbitPerSecond: readonly number[];
  /** Tokens per step (decode streams, or prefill tokens) through every layer. */
  readonly batches: readonly number[];
  readonly profiles: readonly KProfile[];
  /** The GPU of every host: dense part always, experts unless `expertTime` is given. */
  readonly gpu: GpuAssumption;
  readonly expertTime?: MeasuredExpertTime;
  /** Bytes per hidden value on the wire (bf16: 2). */
  readonly wireBytesPerValue: number;
  /** Bytes on the link / dispatch payload. */
  readonly wireEfficiency: { readonly value: number; readonly source: string };
  /** One request/reply round trip to an expert host per layer, milliseconds (latency, not bandwidth). */
  readonly rttMs: { readonly value: number; readonly source: string };
}

export interface ProjectionRow {
  readonly hosts: number;
  readonly linkGbitPerSecond: number;
  readonly batch: number;
  readonly profile: string;
  readonly avgK: number;
  /** Expert hosts a token's hidden state goes to (one copy per host: kmoe dedups). */
  readonly hostsPerToken: number;
  /** Link bytes per token per MoE layer, one direction. */
  readonly bytesPerTokenLayer: number;
  /** Per step (all MoE layers), milliseconds. */
  readonly networkMs: number;
  readonly expertMs: number;
  readonly denseMs: number;
  readonly latencyMs: number;
  /** dense + send + RTT + experts + receive, one after the other. */
  readonly stepMsSerial: number;
  /** Ideal overlap: max(dense + experts, one-way transfer) + RTT (a lower bound). */
  readonly stepMsOverlap: number;
  readonly tokensPerSecondSerial: number;
  /** 1 - step / native step, same hosts, link and batch. */
  readonly savingSerial: number;
  readonly savingOverlap: number;
}

function choose(n: number, k: number): number {
  if (k < 0 || k > n) return 0;
  let c = 1;
  for (let i = 1; i <= k; i++) c = (c * (n - k + i)) / i;
  return c;
}

/**
 * Expected distinct hosts holding k experts chosen uniformly without replacement among E, placed
 * E/N per host: N (1 - C(E - E/N, k) / C(E, k)).
 */
export function hostsTouched(k: number, numExperts: number, hosts: number): number {
  if (k === 0) return 0;
  const perHost = numExperts / hosts;
  return hosts * (1 - choose(numExperts - perHost, k) / choose(numExperts, k));
}

export function averageK(p: readonly number[]): number {
  return p.reduce((a, pk, k) => a + k * pk, 0);
}

/** K in {1, nativeK=2} with mean avgK (in {0, 1} below 1): the distribution a profile's avg K implies. */
export function kDistributionFromAverage(avgK: number, nativeK: number): number[] {
  if (nativeK !== 2) throw new PlanError(`a K distribution from an average needs native K 2, got ${nativeK}`);
  if (avgK < 0 || avgK > 2) throw new PlanError(`average K must be in [0, 2], got ${avgK}`);
  return avgK >= 1 ? [0, 2 - avgK, avgK - 1] : [1 - avgK, avgK, 0];
}

/** GPU roofline seconds of a matrix product reading `params` weights for `tokens` rows. */
function rooflineSeconds(gpu: GpuAssumption, params: number, tokens: number): number {
  if (tokens <= 0) return 0;
  const flops = 2 * tokens * params;
  return Math.max(
    flops / (gpu.peakTflops * 1e12 * gpu.flopFraction),
    (params * gpu.weightBytes) / (gpu.memoryTBps * 1e12 * gpu.bandwidthFraction),
  );
}

/** Seconds of one expert call on `tokens` rows: measured points (linear between, proportional beyond) or the roofline. */
export function expertSeconds(inputs: ProjectionInputs, tokens: number): number {
  if (tokens <= 0) return 0;
  const m = inputs.expertTime;
  if (m === undefined) return rooflineSeconds(inputs.gpu, 3 * inputs.model.hidden * inputs.model.ffn, tokens);
  const pts = [...m.points].sort((a, b) => a.batch - b.batch);
  if (pts.length === 0) throw new PlanError(`no expert timings in ${m.source}`);
  const first = pts[0]!;
  const last = pts[pts.length - 1]!;
  if (tokens <= first.batch) return first.seconds;
  if (tokens >= last.batch) return (last.seconds * tokens) / last.batch;
  const i = pts.findIndex((p) => p.batch >= tokens);
  const a = pts[i - 1]!;
  const b = pts[i]!;
  return a.seconds + ((b.seconds - a.seconds) * (tokens - a.batch)) / (b.batch - a.batch);
}

/** Steps sampled per (hosts, batch, profile) for the busiest host's expert time. */
export const EXPERT_SAMPLES = 2000;

/**
 * Mean over sampled steps of the busiest expert host's time in one MoE layer: every token draws K
 * from `p` and K distinct experts uniformly; a host runs each of its experts that got tokens once
 * on all of them (an expert no token chose reads no weights and costs nothing).
 */
export function busiestHostSeconds(
  inputs: ProjectionInputs,
  hosts: number,
  batch: number,
  p: readonly number[],
  samples = EXPERT_SAMPLES,
): number {
  const E = inputs.model.numExperts;
  const perHost = E / hosts;
  const rand = mulberry32(0x6b6d6f65 ^ (hosts * 7919 + batch * 104_729));
  const timeOf = new Map<number, number>();
  const t = (tokens: number) => {
    let v = timeOf.get(tokens);
    if (v === undefined) {
      v = expertSeconds(inputs, tokens);
      timeOf.set(tokens, v);
    }
    return v;
  };
  const tokensAt = new Array<number>(E);
  const experts = Array.from({ length: E }, (_, e) => e);
  let sum = 0;
  for (let s = 0; s < samples; s++) {
    tokensAt.fill(0);
    for (let b = 0; b < batch; b++) {
      let u = rand();
      let k = 0;
      while (k < p.length - 1 && u >= p[k]!) u -= p[k++]!;
      // Partial Fisher-Yates: the first k entries become k distinct experts.
      for (let j = 0; j < k; j++) {
        const r = j + Math.floor(rand() * (E - j));
        [experts[j], experts[r]] = [experts[r]!, experts[j]!];
        tokensAt[experts[j]!]!++;
      }
    }
    let busiest = 0;
    for (let h = 0; h < hosts; h++) {
      let host = 0;
      for (let e = h * perHost; e < (h + 1) * perHost; e++) host += t(tokensAt[e]!);
      busiest = Math.max(busiest, host);
    }
    sum += busiest;
  }
  return sum / samples;
}

/** One (hosts, link, batch, profile) cell of the projection, without the saving columns. */
export function projectCell(
  inputs: ProjectionInputs,
  hosts: number,
  linkGbit: number,
  batch: number,
  profile: KProfile,
): Omit<ProjectionRow, 'savingSerial' | 'savingOverlap'> {
  const { model } = inputs;
  if (model.numExperts % hosts !== 0)
    throw new PlanError(`${hosts} hosts do not divide ${model.numExperts} experts evenly`);
  const p = profile.kDistribution;
  const avgK = averageK(p);
  const hostsPerToken = p.reduce((a, pk, k) => a + pk * hostsTouched(k, model.numExperts, hosts), 0);
  const bytesPerTokenLayer =
    hostsPerToken * model.hidden * inputs.wireBytesPerValue * inputs.wireEfficiency.value;
  // Out and back each carry one hidden state per (token, host); the coordinator's link carries all
  // of it (every expert host's own link only its share), full duplex.
  const oneWaySeconds = (batch * bytesPerTokenLayer * 8) / (linkGbit * 1e9);
  // Expert hosts work in parallel, each its E/N experts one after another; the step waits for the
  // busiest host (sampled: at small batches one host often gets both experts of a token).
  const hostSeconds = busiestHostSeconds(inputs, hosts, batch, p);
  const denseSeconds = rooflineSeconds(inputs.gpu, model.denseParamsPerLayer, batch);
  const rtt = inputs.rttMs.value / 1000;
  const L = model.moeLayers;
  const serial = denseSeconds + 2 * oneWaySeconds + rtt + hostSeconds;
  const overlap = Math.max(denseSeconds + hostSeconds, oneWaySeconds) + rtt;
  return {
    hosts,
    linkGbitPerSecond: linkGbit,
    batch,
    profile: profile.name,
    avgK,
    hostsPerToken,
    bytesPerTokenLayer,
    networkMs: L * 2 * oneWaySeconds * 1000,
    expertMs: L * hostSeconds * 1000,
    denseMs: L * denseSeconds * 1000,
    latencyMs: L * rtt * 1000,
    stepMsSerial: L * serial * 1000,
    stepMsOverlap: L * overlap * 1000,
    tokensPerSecondSerial: batch / (L * serial),
  };
}

/** Every cell; the first profile is the baseline (native top-K) the savings are relative to. */
export function project(inputs: ProjectionInputs): ProjectionRow[] {
  const baseline = inputs.profiles[0];
  if (baseline === undefined) throw new PlanError('the projection needs at least one K profile');
  for (const pr of inputs.profiles) {
    const total = pr.kDistribution.reduce((a, b) => a + b, 0);
    if (Math.abs(total - 1) > 1e-9 || pr.kDistribution.length !== inputs.model.nativeK + 1)
      throw new PlanError(
        `profile ${pr.name}: the K distribution must have nativeK + 1 entries summing to 1`,
      );
  }
  const rows: ProjectionRow[] = [];
  for (const hosts of inputs.hosts)
    for (const link of inputs.linkGbitPerSecond)
      for (const batch of inputs.batches) {
        const base = projectCell(inputs, hosts, link, batch, baseline);
        for (const pr of inputs.profiles) {
          const c = pr === baseline ? base : projectCell(inputs, hosts, link, batch, pr);
          rows.push({
            ...c,
            savingSerial: 1 - c.stepMsSerial / base.stepMsSerial,
            savingOverlap: 1 - c.stepMsOverlap / base.stepMsOverlap,
          });
        }
      }
  return rows;
}

/** Parameters of one Mixtral layer's dense part: q, k, v, o, router and the two norms. */
export function mixtralDenseParamsPerLayer(c: {
  hidden: number;
  heads: number;
  kvHeads: number;
  numExperts: number;
}): number {
  const kv = (c.hidden / c.heads) * c.kvHeads;
  return 2 * c.hidden * c.hidden + 2 * c.hidden * kv + c.hidden * c.numExperts + 2 * c.hidden;
}

/**
 * H100 SXM: 989 TFLOP/s dense bf16 tensor peak and 3.35 TB/s HBM3 (NVIDIA's data sheet); the
 * achieved fractions are assumptions (large GEMMs commonly reach 60-70% of peak, weight streaming
 * 70-80% of bandwidth), not measurements.
 */
export const H100_BF16: GpuAssumption = {
  name: 'H100 SXM, bf16 weights',
  peakTflops: 989,
  flopFraction: 0.6,
  memoryTBps: 3.35,
  bandwidthFraction: 0.7,
  weightBytes: 2,
};

/** Full-size TCP segments on Ethernet: 1448 payload bytes per 1538 bytes on the wire (ACKs ignored). */
export const TCP_ETHERNET_EFFICIENCY = 1538 / 1448;
