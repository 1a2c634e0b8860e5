// `kmoe plan`'s arithmetic: memory per worker and on the coordinator for a model config, a number
// of workers (or an explicit placement), weight formats and context lengths, with no tensor data
// read. Pure functions; reading config.json and the index lives in plan-input.ts.

import { moeLayerIndices } from '../../shared/families/layer-plan.js';
import { familyOf } from '../../shared/families/registry.js';
import type { ModelConfig } from '../../shared/model/config.js';
import { INT8_BLOCK } from '../../shared/onnx/int8-weights.js';
import { splitExperts } from '../../shared/protocol/expert-set.js';
import { PlanError } from './errors.js';
import { fmtBytes, type KvDType, type PlanDevice, type PlanWeightFormat } from './units.js';

export {
  fmtBytes,
  KV_DTYPES,
  type KvDType,
  PLAN_WEIGHT_FORMATS,
  type PlanDevice,
  type PlanWeightFormat,
  parseByteSize,
} from './units.js';

import { counted } from '../../shared/text/counted.js';

/** Block of the weight-only formats: one fp32 scale per 32 weights, as kmoe's int8 and MatMulNBits use. */
export const QUANT_BLOCK = INT8_BLOCK;

/** Bytes per weight in memory, scales included: int8 = 1 + 4/32 = 1.125, int4 = 0.5 + 4/32 = 0.625. */
export const WEIGHT_BYTES: Readonly<Record<PlanWeightFormat, number>> = {
  fp32: 4,
  bf16: 2,
  fp16: 2,
  int8: 1 + 4 / QUANT_BLOCK,
  int4: 0.5 + 4 / QUANT_BLOCK,
};

/** Formats kmoe's expert host computes in (bf16 with --device cuda only); fp16 is a planning figure. */
export const IMPLEMENTED_EXPERT_FORMATS: readonly PlanWeightFormat[] = ['fp32', 'bf16', 'int8', 'int4'];

export const KV_BYTES: Readonly<Record<KvDType, number>> = { fp32: 4, bf16: 2, fp16: 2 };

/** Parameter counts of a model, from its config through the architecture table. */
export interface ModelShape {
  /** Decoder layers (MoE and dense). */
  readonly numLayers: number;
  /** Layers with routed experts: what one expert spans (DeepSeek's dense first layers have none). */
  readonly numMoeLayers: number;
  readonly numExperts: number;
  /** One routed expert's FFN in one MoE layer (w1 + w2 + w3). */
  readonly paramsPerExpertLayer: number;
  /**
   * Everything that is not a routed expert, all on the coordinator: embeddings, attention, norms,
   * router gates, dense layers' FFNs, shared experts, LM head.
   */
  readonly denseParams: number;
  /** Keys and values cached per token: layers x (key row + value row) widths of the family's graphs. */
  readonly kvValuesPerToken: number;
  readonly maxPositions: number;
}

export function modelShape(config: ModelConfig, present?: (name: string) => boolean): ModelShape {
  let expertParams = 0;
  let denseParams = 0;
  for (const spec of familyOf(config).tensorSpecs(config)) {
    // A tied LM head is absent from the checkpoint and shares the embedding's memory.
    if (!spec.required && present !== undefined && !present(spec.name)) continue;
    if (!spec.required && present === undefined) continue;
    const n = spec.shape.reduce((a, b) => a * b, 1);
    if (spec.expert === undefined) denseParams += n;
    else expertParams += n;
  }
  const family = familyOf(config);
  const numMoeLayers = moeLayerIndices(family.layerPlan(config)).length;
  const dims = family.graphDims(config);
  return {
    numLayers: config.numLayers,
    numMoeLayers,
    numExperts: config.numExperts,
    paramsPerExpertLayer: expertParams / (numMoeLayers * config.numExperts),
    denseParams,
    kvValuesPerToken: config.numLayers * (dims.keyWidth + dims.valueWidth),
    maxPositions: config.maxPositionEmbeddings,
  };
}

export interface PlanRequest {
  readonly shape: ModelShape;
  /** Workers, experts split evenly in contiguous ranges; ignored when `placement` is given. */
  readonly workers: number;
  /** Expert sets per worker (every layer), e.g. [[0,1,2,3],[4,5,6,7]]; replicas allowed. */
  readonly placement?: readonly (readonly number[])[];
  readonly device: PlanDevice;
  readonly expertWeights: PlanWeightFormat;
  /** Format of the coordinator's weights (kmoe widens them to fp32 today). */
  readonly denseWeights: PlanWeightFormat;
  readonly kvDType: KvDType;
  readonly contexts: readonly number[];
  readonly batches: readonly number[];
  /** Memory of each device (worker or coordinator), bytes; undefined: report sizes only. */
  readonly memoryBytes?: number;
  /** Per process, on top of weights and KV: runtime, allocator arenas, activations. */
  readonly reserveBytes: number;
}

export interface WorkerPlan {
  readonly index: number;
  readonly experts: readonly number[];
  readonly expertBytes: number;
  readonly totalBytes: number;
  readonly fits: boolean | undefined;
}

export interface KvPlan {
  readonly context: number;
  readonly batch: number;
  readonly kvBytes: number;
  /** Dense weights + KV + reserve. */
  readonly totalBytes: number;
  readonly fits: boolean | undefined;
  /** Longest context that fits at this batch size, when memory is given. */
  readonly maxContext: number | undefined;
}

export interface MemoryPlan {
  readonly request: PlanRequest;
  /** The format the expert weights take in memory on this device (see notes). */
  readonly expertFormat: PlanWeightFormat;
  readonly denseFormat: PlanWeightFormat;
  /** One expert across all layers, in the expert format. */
  readonly bytesPerExpert: number;
  readonly workers: readonly WorkerPlan[];
  readonly coordinator: { readonly denseBytes: number; readonly kv: readonly KvPlan[] };
  /** Experts one device can hold at most, given memory and reserve. */
  readonly expertsPerDevice: number | undefined;
  /** A placement that fits: the requested one if it does, else the fewest workers that fit. */
  readonly fittingPlacement: readonly (readonly number[])[] | undefined;
  readonly fits: boolean | undefined;
  /** What does not fit, and why. */
  readonly problems: readonly string[];
  readonly notes: readonly string[];
}

export function planMemory(req: PlanRequest): MemoryPlan {
  const { shape, memoryBytes: mem, reserveBytes } = req;
  const notes: string[] = [];
  const problems: string[] = [];
  const expertFormat = effectiveFormat(req.device, req.expertWeights, 'expert', notes);
  const denseFormat = effectiveFormat(req.device, req.denseWeights, 'dense', notes);
  if (!IMPLEMENTED_EXPERT_FORMATS.includes(expertFormat)) {
    notes.push(
      `kmoe workers compute in ${IMPLEMENTED_EXPERT_FORMATS.join(', ')} today; ${expertFormat} is a planning figure`,
    );
  }

  const placement = req.placement ?? splitExperts(shape.numExperts, req.workers);
  checkPlacement(placement, shape.numExperts);
  const bytesPerExpert = shape.paramsPerExpertLayer * shape.numMoeLayers * WEIGHT_BYTES[expertFormat];
  const workers = placement.map((experts, index): WorkerPlan => {
    const expertBytes = experts.length * bytesPerExpert;
    const totalBytes = expertBytes + reserveBytes;
    const fits = mem === undefined ? undefined : totalBytes <= mem;
    if (fits === false) {
      problems.push(
        `worker ${index} (${experts.length} experts x ${fmtBytes(bytesPerExpert)} of ${expertFormat} weights + ` +
          `${fmtBytes(reserveBytes)} reserve = ${fmtBytes(totalBytes)}) does not fit in ${fmtBytes(mem!)}`,
      );
    }
    return { index, experts, expertBytes, totalBytes, fits };
  });

  const denseBytes = shape.denseParams * WEIGHT_BYTES[denseFormat];
  const kvPerToken = shape.kvValuesPerToken * KV_BYTES[req.kvDType];
  const kv: KvPlan[] = [];
  for (const batch of req.batches) {
    for (const context of req.contexts) {
      const kvBytes = kvPerToken * context * batch;
      const totalBytes = denseBytes + kvBytes + reserveBytes;
      const fits = mem === undefined ? undefined : totalBytes <= mem;
      const room = mem === undefined ? undefined : mem - denseBytes - reserveBytes;
      const maxContext =
        room === undefined
          ? undefined
          : Math.max(0, Math.min(shape.maxPositions, Math.floor(room / (kvPerToken * batch))));
      if (fits === false) {
        problems.push(
          room !== undefined && room <= 0
            ? `coordinator: the dense weights (${fmtBytes(denseBytes)} ${denseFormat}) + ${fmtBytes(reserveBytes)} reserve alone exceed ${fmtBytes(mem!)}`
            : `coordinator at context ${context} x batch ${batch}: dense ${fmtBytes(denseBytes)} + KV cache ${fmtBytes(kvBytes)} ` +
                `(${req.kvDType}) + reserve = ${fmtBytes(totalBytes)} > ${fmtBytes(mem!)}; longest context that fits at batch ${batch}: ${maxContext}`,
        );
      }
      kv.push({ context, batch, kvBytes, totalBytes, fits, maxContext });
    }
  }

  let expertsPerDevice: number | undefined;
  let fittingPlacement: number[][] | readonly (readonly number[])[] | undefined;
  if (mem !== undefined) {
    expertsPerDevice = Math.max(0, Math.floor((mem - reserveBytes) / bytesPerExpert));
    if (workers.every((w) => w.fits)) fittingPlacement = placement;
    else if (expertsPerDevice === 0) {
      problems.push(
        `one expert across all ${shape.numMoeLayers} MoE layers takes ${fmtBytes(bytesPerExpert)} (${expertFormat}), more than a ` +
          `device holds (${fmtBytes(mem)} - ${fmtBytes(reserveBytes)} reserve): kmoe workers hold an expert in every ` +
          'layer, so use a smaller --expert-weights format or larger devices',
      );
    } else {
      const needed = Math.ceil(shape.numExperts / expertsPerDevice);
      fittingPlacement = splitExperts(shape.numExperts, needed);
      problems.push(
        `a device holds at most ${counted(expertsPerDevice, 'expert')} (${fmtBytes(bytesPerExpert)} each): ` +
          `${counted(needed, 'worker')} are needed for ${shape.numExperts} experts`,
      );
    }
  }
  const fits = mem === undefined ? undefined : problems.length === 0;
  return {
    request: req,
    expertFormat,
    denseFormat,
    bytesPerExpert,
    workers,
    coordinator: { denseBytes, kv },
    expertsPerDevice,
    fittingPlacement,
    fits,
    problems,
    notes,
  };
}

/**
 * onnxruntime's CPU provider has no bf16/fp16 MatMul kernels, so on CPU 16-bit weights would be
 * widened to fp32 (kmoe's workers refuse `--expert-weights bf16` on CPU rather than do that); the
 * CUDA provider computes in them directly.
 */
function effectiveFormat(
  device: PlanDevice,
  format: PlanWeightFormat,
  what: 'expert' | 'dense',
  notes: string[],
): PlanWeightFormat {
  if (device === 'cpu' && (format === 'bf16' || format === 'fp16')) {
    notes.push(
      `${what} weights: onnxruntime's CPU provider computes MatMul in fp32, so ${format} weights are widened to fp32 in memory`,
    );
    return 'fp32';
  }
  return format;
}

function checkPlacement(placement: readonly (readonly number[])[], numExperts: number): void {
  if (placement.length === 0) throw new PlanError('the placement has no workers');
  const held = new Set<number>();
  for (const [w, experts] of placement.entries()) {
    for (const e of experts) {
      if (!Number.isInteger(e) || e < 0 || e >= numExperts)
        throw new PlanError(
          `worker ${w} of the placement holds expert ${e}, but the model has ${numExperts}`,
        );
      held.add(e);
    }
  }
  const missing = Array.from({ length: numExperts }, (_, e) => e).filter((e) => !held.has(e));
  if (missing.length > 0)
    throw new PlanError(`experts ${missing.join(', ')} are held by no worker of the placement`, {
      details: { missing },
      hint: `every expert 0-${numExperts - 1} needs a worker: one expert set per worker, separated by ';' (e.g. '0-${Math.floor(numExperts / 2) - 1};${Math.floor(numExperts / 2)}-${numExperts - 1}')`,
    });
}

/** The plan as a person reads it. */
export function formatPlan(plan: MemoryPlan): string {
  const r = plan.request;
  const lines: string[] = [];
  const mem = r.memoryBytes === undefined ? '' : ` of ${fmtBytes(r.memoryBytes)} each`;
  lines.push(
    `experts: ${plan.expertFormat} weights, ${fmtBytes(plan.bytesPerExpert)} per expert (${counted(r.shape.numMoeLayers, 'MoE layer')}), ` +
      `${counted(plan.workers.length, 'worker')}${mem} on ${r.device}, reserve ${fmtBytes(r.reserveBytes)} per process`,
  );
  for (const w of plan.workers) {
    lines.push(
      `  worker ${w.index}: experts ${w.experts.join(',')}  ${fmtBytes(w.expertBytes)} + reserve = ${fmtBytes(w.totalBytes)}${fitText(w.fits)}`,
    );
  }
  lines.push(
    `coordinator: dense weights ${fmtBytes(plan.coordinator.denseBytes)} (${plan.denseFormat}), KV cache ${r.kvDType}`,
  );
  for (const k of plan.coordinator.kv) {
    lines.push(
      `  context ${k.context} x batch ${k.batch}: KV ${fmtBytes(k.kvBytes)}, total ${fmtBytes(k.totalBytes)}${fitText(k.fits)}` +
        (k.maxContext === undefined ? '' : `  (longest context at batch ${k.batch}: ${k.maxContext})`),
    );
  }
  if (plan.fittingPlacement !== undefined) {
    lines.push(
      `placement that fits: ${plan.fittingPlacement.map((s) => s.join(',')).join(' | ')} (${counted(plan.fittingPlacement.length, 'worker')})`,
    );
  }
  for (const p of plan.problems) lines.push(`does not fit: ${p}`);
  for (const n of plan.notes) lines.push(`note: ${n}`);
  return lines.join('\n');
}

function fitText(fits: boolean | undefined): string {
  return fits === undefined ? '' : fits ? '  fits' : '  DOES NOT FIT';
}
