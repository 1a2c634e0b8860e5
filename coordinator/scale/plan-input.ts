// What `kmoe plan` reads: config.json and the tensor index (model.safetensors.index.json, or the
// header of a single model.safetensors), never tensor data. Checks that the index holds every
// tensor the architecture table names for this config, so a plan is never made for another model.

import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { familyOf } from '../../shared/families/registry.js';
import { INDEX_FILE_NAME, SINGLE_FILE_NAME, weightsFileOf } from '../../shared/model/checkpoint.js';
import { loadModelConfig, type ModelConfig } from '../../shared/model/config.js';
import { SAFETENSORS_DTYPES, SafetensorsFile } from '../../shared/model/safetensors.js';
import { PlanError } from './errors.js';
import { type ModelShape, modelShape } from './memory-plan.js';

export interface PlanModel {
  readonly config: ModelConfig;
  readonly shape: ModelShape;
  /** Bytes of tensor data in the checkpoint as stored (index total_size or the single file's data). */
  readonly storedBytes: number;
  /** Where the tensor list came from. */
  readonly source: string;
  readonly notes: readonly string[];
}

const indexSchema = z.object({
  metadata: z.object({ total_size: z.number().nonnegative() }).partial().optional(),
  weight_map: z.record(z.string(), z.string()),
});

const TORCH_DTYPE_BYTES = { bfloat16: 2, float16: 2, float32: 4 } as const;

export async function readPlanModel(dir: string): Promise<PlanModel> {
  const config = await loadModelConfig(dir);
  const notes: string[] = [];
  let names: Set<string>;
  let storedBytes: number | undefined;
  let source: string;
  const weights = await weightsFileOf(dir);
  if (weights?.kind === 'single') {
    const single = weights.file;
    // Only the header is read (SafetensorsFile reads tensor data on demand).
    const file = await SafetensorsFile.open(single);
    try {
      names = new Set(file.names());
      storedBytes = file.fileSize - file.headerBytes;
    } finally {
      await file.close();
    }
    source = single;
  } else if (weights?.kind === 'index') {
    const indexFile = weights.file;
    let json: unknown;
    try {
      json = JSON.parse(await readFile(indexFile, 'utf8'));
    } catch (err) {
      throw new PlanError(
        `${indexFile}: cannot read the shard index (${err instanceof Error ? err.message : String(err)})`,
        {
          cause: err,
          details: { file: indexFile },
        },
      );
    }
    const index = indexSchema.safeParse(json);
    if (!index.success)
      throw new PlanError(`${indexFile}: expected {"metadata": {"total_size": N}, "weight_map": {...}}`, {
        details: { file: indexFile },
      });
    names = new Set(Object.keys(index.data.weight_map));
    storedBytes = index.data.metadata?.total_size;
    source = indexFile;
  } else {
    throw new PlanError(`${dir}: no ${SINGLE_FILE_NAME} and no ${INDEX_FILE_NAME}`, {
      details: { dir },
      hint: 'point --model at a Hugging Face checkpoint directory',
    });
  }

  const missing = familyOf(config)
    .tensorSpecs(config)
    .filter((s) => s.required && !names.has(s.name))
    .map((s) => s.name);
  if (missing.length > 0) {
    throw new PlanError(
      `${source} lacks ${missing.length} tensors that config.json implies (${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', ...' : ''})`,
      {
        details: { file: source },
        hint: 'config.json and the weights disagree: check they come from the same model',
      },
    );
  }
  const shape = modelShape(config, (n) => names.has(n));
  const params = shape.denseParams + shape.paramsPerExpertLayer * shape.numMoeLayers * shape.numExperts;
  if (config.torchDtype !== null) {
    const expected = params * TORCH_DTYPE_BYTES[config.torchDtype];
    if (storedBytes === undefined) {
      storedBytes = expected;
      notes.push(
        `${source} gives no metadata.total_size; stored size computed from torch_dtype ${config.torchDtype}`,
      );
    } else if (storedBytes !== expected) {
      notes.push(
        `${source} says ${storedBytes} bytes of tensors, the architecture table gives ${expected} for ${params} ` +
          `parameters in ${config.torchDtype}: the checkpoint holds other tensors or another dtype`,
      );
    }
  }
  if (storedBytes === undefined) {
    storedBytes = params * SAFETENSORS_DTYPES.BF16.bytes;
    notes.push('neither metadata.total_size nor torch_dtype is given; stored size assumes bf16');
  }
  return { config, shape, storedBytes, source, notes };
}
