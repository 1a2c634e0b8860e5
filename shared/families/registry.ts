// The one registry of model families, keyed by config.json `model_type`. Adding a family means
// adding it to FAMILIES; nothing outside shared/families names a family.

import { deepseekV2Family, deepseekV3Family } from './deepseek/family.js';
import { quoteList, UnsupportedModelTypeError } from './errors.js';
import type { ModelConfig, ModelFamily } from './family.js';
import { mixtralFamily } from './mixtral/family.js';
import { olmoeFamily } from './olmoe/family.js';
import { qwen2MoeFamily } from './qwen2-moe/family.js';
import { qwen3MoeFamily } from './qwen3-moe/family.js';

const FAMILIES: readonly ModelFamily[] = [
  mixtralFamily,
  qwen2MoeFamily,
  qwen3MoeFamily,
  olmoeFamily,
  deepseekV3Family,
  deepseekV2Family,
];

const BY_TYPE: ReadonlyMap<string, ModelFamily> = new Map(FAMILIES.map((f) => [f.modelType, f]));

/** The `model_type`s kmoe loads, in registry order. */
export const SUPPORTED_MODEL_TYPES: readonly string[] = FAMILIES.map((f) => f.modelType);

/** `"mixtral"`, as error messages list the supported types. */
export function supportedModelTypesList(): string {
  return quoteList(SUPPORTED_MODEL_TYPES);
}

/** The family for a `model_type`, or undefined when none loads it. */
export function findModelFamily(modelType: string): ModelFamily | undefined {
  return BY_TYPE.get(modelType);
}

/** The family for a `model_type`; throws UnsupportedModelTypeError naming the supported ones. */
export function modelFamily(modelType: string): ModelFamily {
  const family = BY_TYPE.get(modelType);
  if (family === undefined) throw new UnsupportedModelTypeError(modelType, SUPPORTED_MODEL_TYPES);
  return family;
}

/** The family that parsed this config. */
export function familyOf(config: ModelConfig): ModelFamily {
  return modelFamily(config.modelType);
}
