// The config.json reader: file errors, JSON errors, and dispatch on model_type to the family that
// validates the rest (the Mixtral schema itself is tested in test/shared/families/mixtral).

import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FamilyConfigError } from '../../../shared/families/errors.js';
import { loadModelConfig, parseModelConfig } from '../../../shared/model/config.js';
import { ModelConfigError } from '../../../shared/model/errors.js';
import { DEMO_DIR, demoJson, makeTempDir } from './fixtures.js';

const SOURCE = '/ckpt/config.json';

let demo: Record<string, unknown>;
beforeEach(async () => {
  demo = await demoJson('config.json');
});

/** The demo config with some fields replaced (undefined deletes the field). */
function edited(changes: Record<string, unknown>): Record<string, unknown> {
  const out = { ...demo };
  for (const [k, v] of Object.entries(changes)) {
    if (v === undefined) delete out[k];
    else out[k] = v;
  }
  return out;
}

function parseError(json: unknown): ModelConfigError {
  let caught: unknown;
  try {
    parseModelConfig(json, SOURCE);
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(ModelConfigError);
  const err = caught as ModelConfigError;
  expect(err.file).toBe(SOURCE);
  expect(err.message.startsWith(`${SOURCE}: `)).toBe(true);
  return err;
}

describe('parseModelConfig', () => {
  it('hands the object to the family its model_type names', () => {
    expect(parseModelConfig(demo, SOURCE).modelType).toBe('mixtral');
  });

  it('lists the supported model types for an unknown model_type', () => {
    const err = parseError(edited({ model_type: 'llama' }));
    expect(err.field).toBe('model_type');
    expect(err.message).toBe(
      `${SOURCE}: field "model_type" is "llama", which kmoe does not support (supported model types: "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "deepseek_v3", "deepseek_v2")`,
    );
  });

  it('names a missing model_type and lists the supported ones in the hint', () => {
    const err = parseError(edited({ model_type: undefined }));
    expect(err.field).toBe('model_type');
    expect(err.message).toContain('missing required field "model_type"');
    expect(err.hint).toContain('"mixtral"');
  });

  it('lists the supported model types when model_type is not a string', () => {
    const err = parseError(edited({ model_type: 7 }));
    expect(err.field).toBe('model_type');
    expect(err.message).toContain('field "model_type" is 7, which kmoe does not support');
  });

  it("names the file and the field of a family's schema error, keeping it as the cause", () => {
    const err = parseError(edited({ num_local_experts: 0 }));
    expect(err.field).toBe('num_local_experts');
    expect(err.cause).toBeInstanceOf(FamilyConfigError);
    expect(err.code).toBe('model_config');
    expect(err.details).toEqual({ file: SOURCE, field: 'num_local_experts' });
  });

  it('rejects JSON that is not an object', () => {
    expect(parseError([1, 2]).message).toBe(`${SOURCE}: expected a JSON object, got [1,2]`);
    expect(parseError(null).message).toBe(`${SOURCE}: expected a JSON object, got null`);
  });
});

describe('loadModelConfig', () => {
  let dir: string;
  let cleanup: () => Promise<void>;
  beforeEach(async () => {
    ({ dir, cleanup } = await makeTempDir());
  });
  afterEach(async () => {
    await cleanup();
  });

  it('loads the demo checkpoint config', async () => {
    expect(await loadModelConfig(DEMO_DIR)).toEqual(parseModelConfig(demo, SOURCE));
  });

  it('names the file when config.json is missing', async () => {
    const err = await loadModelConfig(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelConfigError);
    expect((err as ModelConfigError).file).toBe(path.join(dir, 'config.json'));
    expect((err as ModelConfigError).message).toContain(
      `${path.join(dir, 'config.json')}: cannot read the model config`,
    );
  });

  it('names the file when config.json is not JSON', async () => {
    await writeFile(path.join(dir, 'config.json'), '{"model_type": "mixtral",');
    await expect(loadModelConfig(dir)).rejects.toThrow(`${path.join(dir, 'config.json')}: not valid JSON`);
  });

  it('names the file in validation errors', async () => {
    await writeFile(path.join(dir, 'config.json'), JSON.stringify(edited({ num_local_experts: undefined })));
    await expect(loadModelConfig(dir)).rejects.toThrow(
      `${path.join(dir, 'config.json')}: missing required field "num_local_experts"`,
    );
  });
});
