// Reads a Hugging Face config.json and hands it to the model family its `model_type` names (the
// family validates it with its schema); the rest of kmoe gets the common typed ModelConfig.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describeValue } from '../families/config-schema.js';
import { FamilyConfigError } from '../families/errors.js';
import type { ModelConfig } from '../families/family.js';
import { findModelFamily, supportedModelTypesList } from '../families/registry.js';
import { ModelConfigError } from './errors.js';

export type { ModelConfig, TorchDtype } from '../families/family.js';

export const CONFIG_FILE_NAME = 'config.json';

/**
 * Validates a parsed config.json. `source` names where it came from (normally the file path)
 * so that every error can say which file is wrong.
 */
export function parseModelConfig(json: unknown, source: string): ModelConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelConfigError(`${source}: expected a JSON object, got ${describeValue(json)}`, {
      file: source,
    });
  }
  const obj = json as Record<string, unknown>;
  const modelType = obj['model_type'];
  if (modelType === undefined) {
    throw new ModelConfigError(`${source}: missing required field "model_type"`, {
      file: source,
      field: 'model_type',
      hint: `kmoe supports model_type ${supportedModelTypesList()}`,
    });
  }
  const family = typeof modelType === 'string' ? findModelFamily(modelType) : undefined;
  if (family === undefined) {
    throw new ModelConfigError(
      `${source}: field "model_type" is ${JSON.stringify(modelType)}, which kmoe does not support ` +
        `(supported model types: ${supportedModelTypesList()})`,
      { file: source, field: 'model_type' },
    );
  }
  try {
    return family.parseConfig(obj);
  } catch (err) {
    if (!(err instanceof FamilyConfigError)) throw err;
    throw new ModelConfigError(`${source}: ${err.message}`, {
      file: source,
      ...(err.field === undefined ? {} : { field: err.field }),
      cause: err,
    });
  }
}

/** Reads and validates `<dir>/config.json`. */
export async function loadModelConfig(dir: string): Promise<ModelConfig> {
  return (await readModelConfigFile(dir)).config;
}

/**
 * Like loadModelConfig, but also returns the JSON exactly as parsed, for callers that need the
 * fields kmoe does not model (the checkpoint fingerprint covers the whole file).
 */
export async function readModelConfigFile(
  dir: string,
): Promise<{ config: ModelConfig; raw: unknown; file: string }> {
  const file = path.join(dir, CONFIG_FILE_NAME);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new ModelConfigError(`${file}: cannot read the model config (${errorMessage(err)})`, {
      file,
      hint: 'point kmoe at a Hugging Face checkpoint directory (config.json next to the *.safetensors files)',
      cause: err,
    });
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new ModelConfigError(`${file}: not valid JSON (${errorMessage(err)})`, { file, cause: err });
  }
  return { config: parseModelConfig(raw, file), raw, file };
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
