// `kmoe plan`: memory per worker and on the coordinator for a checkpoint, from config.json and the
// tensor index alone. Thin: options are parsed here, the arithmetic is coordinator/scale/memory-plan.ts.

import { UsageError } from '../../shared/errors/usage-error.js';
import { parseExpertSet } from '../../shared/protocol/expert-set.js';
import {
  fmtBytes,
  formatPlan,
  KV_DTYPES,
  type KvDType,
  PLAN_WEIGHT_FORMATS,
  type PlanWeightFormat,
  parseByteSize,
  planMemory,
} from '../scale/memory-plan.js';
import { readPlanModel } from '../scale/plan-input.js';
import { flag, num, parse, required, str } from './args.js';

const DEFAULT_RESERVE = '1GiB';

export const usage = `kmoe plan --model DIR --workers N [options]

Reads config.json and the tensor index (no weights) and prints the memory each worker needs for
its experts (every layer), the coordinator's dense weights and KV cache per context length and
batch, a placement that fits --memory per device, and what does not fit and why.

  --model DIR          checkpoint directory
  --workers N          expert workers, experts split evenly in contiguous ranges
  --placement SETS     explicit expert sets per worker, e.g. '0-3;4-7' or '0-4;3-7' (replicas allowed)
  --device cpu|cuda    where experts run (default cuda); on cpu, bf16/fp16 weights are widened to fp32
  --memory SIZE        memory of each device, e.g. 80GiB, 24GB (default: report sizes only)
  --expert-weights F   ${PLAN_WEIGHT_FORMATS.join(' | ')} (default bf16; kmoe computes in fp32 and int8 today)
  --dense-weights F    the coordinator's weights, same formats (default fp32, what kmoe does today)
  --kv-dtype D         ${KV_DTYPES.join(' | ')} (default fp32, what kmoe does today)
  --context LIST       context lengths, comma-separated (default: max_position_embeddings)
  --batch LIST         batch sizes, comma-separated (default 1)
  --reserve SIZE       per process on top of weights and KV: runtime, arenas, activations
                       (default ${DEFAULT_RESERVE}; an allowance, not a measurement)
  --json               print the plan as one JSON object

Exit status 0 when everything fits (or no --memory is given), 3 when something does not fit.`;

export async function run(argv: readonly string[]): Promise<number> {
  const p = parse(argv, {
    model: { type: 'string' },
    workers: { type: 'string' },
    placement: { type: 'string' },
    device: { type: 'string' },
    memory: { type: 'string' },
    'expert-weights': { type: 'string' },
    'dense-weights': { type: 'string' },
    'kv-dtype': { type: 'string' },
    context: { type: 'string' },
    batch: { type: 'string' },
    reserve: { type: 'string' },
    json: { type: 'boolean' },
  });
  const modelDir = required(p, 'model');
  const device = str(p, 'device') ?? 'cuda';
  if (device !== 'cpu' && device !== 'cuda')
    throw new UsageError(`--device must be cpu or cuda, got '${device}'`);
  const expertWeights = oneOf(p, 'expert-weights', PLAN_WEIGHT_FORMATS, 'bf16');
  const denseWeights = oneOf(p, 'dense-weights', PLAN_WEIGHT_FORMATS, 'fp32');
  const kvDType = oneOf(p, 'kv-dtype', KV_DTYPES, 'fp32') as KvDType;
  const memoryArg = str(p, 'memory');
  const memoryBytes = memoryArg === undefined ? undefined : size('memory', memoryArg);
  const reserveBytes = size('reserve', str(p, 'reserve') ?? DEFAULT_RESERVE);

  const model = await readPlanModel(modelDir);
  const E = model.config.numExperts;
  const placementArg = str(p, 'placement');
  if (placementArg !== undefined && str(p, 'workers') !== undefined)
    throw new UsageError('give --workers N or --placement SETS, not both');
  if (placementArg === undefined && str(p, 'workers') === undefined)
    throw new UsageError('--workers or --placement is required');
  const placement = placementArg?.split(';').map((set) => parseExpertSet(set, E));
  const workers = placement?.length ?? num(p, 'workers', 1, { integer: true, min: 1, max: E });
  const contexts = list(p, 'context', [model.config.maxPositionEmbeddings]);
  const batches = list(p, 'batch', [1]);

  const plan = planMemory({
    shape: model.shape,
    workers,
    ...(placement === undefined ? {} : { placement }),
    device,
    expertWeights: expertWeights as PlanWeightFormat,
    denseWeights: denseWeights as PlanWeightFormat,
    kvDType,
    contexts,
    batches,
    ...(memoryBytes === undefined ? {} : { memoryBytes }),
    reserveBytes,
  });
  const notes = [...model.notes, ...plan.notes];
  if (flag(p, 'json')) {
    const { request, ...rest } = plan;
    const { shape, ...options } = request;
    process.stdout.write(
      `${JSON.stringify({ model: modelDir, storedBytes: model.storedBytes, shape, options, ...rest, notes })}\n`,
    );
  } else {
    process.stdout.write(
      `${modelDir}: ${model.config.numLayers} layers x ${E} experts, ${fmtBytes(model.storedBytes)} stored (from ${model.source})\n`,
    );
    process.stdout.write(`${formatPlan({ ...plan, notes })}\n`);
  }
  return plan.fits === false ? 3 : 0;
}

function oneOf(
  p: Parameters<typeof str>[0],
  name: string,
  allowed: readonly string[],
  fallback: string,
): string {
  const v = str(p, name) ?? fallback;
  if (!allowed.includes(v))
    throw new UsageError(`--${name} must be one of ${allowed.join(', ')}, got '${v}'`);
  return v;
}

function size(name: string, text: string): number {
  try {
    return parseByteSize(text);
  } catch (err) {
    throw new UsageError(`--${name}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

function list(p: Parameters<typeof str>[0], name: string, fallback: number[]): number[] {
  const raw = str(p, name);
  if (raw === undefined) return fallback;
  return raw.split(',').map((s) => {
    const v = Number(s.trim());
    if (s.trim() === '' || !Number.isInteger(v) || v < 1)
      throw new UsageError(`--${name} takes integers >= 1 separated by commas, got '${raw}'`);
    return v;
  });
}
