// `kmoe plan`: memory per worker and on the coordinator for a checkpoint, from config.json and the
// tensor index alone. Orchestration only: the options arrive parsed (program.ts), the arithmetic is
// coordinator/scale/memory-plan.ts.

import { parseExpertSet } from '../../../shared/protocol/expert-set.js';
import { counted } from '../../../shared/text/counted.js';
import { formatPlan, planMemory } from '../../scale/memory-plan.js';
import { readPlanModel } from '../../scale/plan-input.js';
import { fmtBytes, type KvDType, type PlanDevice, type PlanWeightFormat } from '../../scale/units.js';
import { UsageError } from '../usage-error.js';

/** Exit status of a plan in which something does not fit in --memory. */
export const DOES_NOT_FIT = 3;

export interface PlanOptions {
  readonly model: string;
  readonly workers?: number;
  readonly placement?: string;
  readonly device: PlanDevice;
  readonly memory?: number;
  readonly expertWeights: PlanWeightFormat;
  readonly denseWeights: PlanWeightFormat;
  readonly kvDtype: KvDType;
  readonly context?: number[];
  readonly batch: number[];
  readonly reserve: number;
  readonly json?: boolean;
}

export async function run(o: PlanOptions): Promise<number> {
  // One of --workers and --placement was checked before this module loaded (checkPlanFlags).
  const model = await readPlanModel(o.model);
  const E = model.config.numExperts;
  let placement: number[][] | undefined;
  if (o.placement !== undefined) {
    placement = o.placement.split(';').map((set) => {
      try {
        return parseExpertSet(set, E);
      } catch (err) {
        throw new UsageError(`--placement: ${err instanceof Error ? err.message : String(err)}`);
      }
    });
  }
  if (o.workers !== undefined && o.workers > E)
    throw new UsageError(`--workers must be <= ${E} (the model's experts), got ${o.workers}`);
  const workers = placement?.length ?? o.workers!;

  const plan = planMemory({
    shape: model.shape,
    workers,
    ...(placement === undefined ? {} : { placement }),
    device: o.device,
    expertWeights: o.expertWeights,
    denseWeights: o.denseWeights,
    kvDType: o.kvDtype,
    contexts: o.context ?? [model.config.maxPositionEmbeddings],
    batches: o.batch,
    ...(o.memory === undefined ? {} : { memoryBytes: o.memory }),
    reserveBytes: o.reserve,
  });
  const notes = [...model.notes, ...plan.notes];
  if (o.json) {
    const { request, ...rest } = plan;
    const { shape, ...options } = request;
    process.stdout.write(
      `${JSON.stringify({ model: o.model, storedBytes: model.storedBytes, shape, options, ...rest, notes })}\n`,
    );
  } else {
    process.stdout.write(
      `${o.model}: ${counted(model.config.numLayers, 'layer')} (${model.shape.numMoeLayers} MoE) x ${counted(E, 'expert')}, ${fmtBytes(model.storedBytes)} stored (from ${model.source})\n`,
    );
    process.stdout.write(`${formatPlan({ ...plan, notes })}\n`);
  }
  return plan.fits === false ? DOES_NOT_FIT : 0;
}
