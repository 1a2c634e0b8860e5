// The Mixtral family's config.json schema: defaults, derived fields, and one precise error per
// inconsistency. Parsed through parseModelConfig so every error also names the file.

import { beforeEach, describe, expect, it } from 'vitest';
import { FamilyConfigError } from '../../../../shared/families/errors.js';
import { parseMixtralConfig } from '../../../../shared/families/mixtral/config.js';
import { type ModelConfig, parseModelConfig } from '../../../../shared/model/config.js';
import { ModelConfigError } from '../../../../shared/model/errors.js';
import { demoJson } from '../../model/fixtures.js';

const SOURCE = '/ckpt/config.json';

const DEMO_CONFIG: ModelConfig = {
  modelType: 'mixtral',
  hiddenSize: 256,
  intermediateSize: 512,
  numLayers: 4,
  numHeads: 8,
  numKvHeads: 4,
  headDim: 32,
  numExperts: 8,
  numExpertsPerTok: 2,
  vocabSize: 4096,
  rmsNormEps: 1e-5,
  ropeTheta: 1e6,
  maxPositionEmbeddings: 4096,
  bosTokenId: 1,
  eosTokenId: [2],
  tieWordEmbeddings: false,
  slidingWindow: null,
  torchDtype: 'bfloat16',
};

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

describe('the mixtral config schema (through parseModelConfig)', () => {
  it('turns the demo config.json into the typed camelCase config', () => {
    expect(parseModelConfig(demo, SOURCE)).toEqual(DEMO_CONFIG);
  });

  it('normalises eos_token_id to a list', () => {
    expect(parseModelConfig(edited({ eos_token_id: [2, 7] }), SOURCE).eosTokenId).toEqual([2, 7]);
    expect(parseModelConfig(edited({ eos_token_id: 3 }), SOURCE).eosTokenId).toEqual([3]);
  });

  it("uses MixtralConfig's defaults for rope_theta, sliding_window and tie_word_embeddings", () => {
    const c = parseModelConfig(
      edited({ rope_theta: undefined, sliding_window: undefined, tie_word_embeddings: undefined }),
      SOURCE,
    );
    expect(c.ropeTheta).toBe(1e6);
    expect(c.slidingWindow).toBeNull();
    expect(c.tieWordEmbeddings).toBe(false);
  });

  it('keeps explicit values for rope_theta, sliding_window, head_dim and the newer "dtype" key', () => {
    const c = parseModelConfig(
      edited({
        rope_theta: 10000,
        sliding_window: 4096,
        head_dim: 64,
        torch_dtype: undefined,
        dtype: 'float16',
      }),
      SOURCE,
    );
    expect(c.ropeTheta).toBe(10000);
    expect(c.slidingWindow).toBe(4096);
    expect(c.headDim).toBe(64);
    expect(c.torchDtype).toBe('float16');
  });

  it('derives head_dim from hidden_size / num_attention_heads when head_dim is null or absent', () => {
    expect(parseModelConfig(edited({ head_dim: null }), SOURCE).headDim).toBe(32);
    expect(
      parseModelConfig(edited({ num_attention_heads: 16, num_key_value_heads: 8 }), SOURCE).headDim,
    ).toBe(16);
  });

  it('reports torchDtype as null when config.json does not state it', () => {
    expect(parseModelConfig(edited({ torch_dtype: undefined }), SOURCE).torchDtype).toBeNull();
  });

  it('names a missing required field', () => {
    const err = parseError(edited({ intermediate_size: undefined }));
    expect(err.field).toBe('intermediate_size');
    expect(err.message).toBe(`${SOURCE}: missing required field "intermediate_size"`);
  });

  it('names every missing field, and blames the first', () => {
    const err = parseError(edited({ hidden_size: undefined, vocab_size: undefined }));
    expect(err.field).toBe('hidden_size');
    expect(err.message).toContain('missing required field "hidden_size"');
    expect(err.message).toContain('missing required field "vocab_size"');
  });

  it('rejects heads that do not divide into key/value heads', () => {
    const err = parseError(edited({ num_key_value_heads: 3 }));
    expect(err.field).toBe('num_key_value_heads');
    expect(err.message).toContain('num_attention_heads 8 is not divisible by num_key_value_heads 3');
  });

  it('rejects more key/value heads than query heads', () => {
    const err = parseError(edited({ num_key_value_heads: 16 }));
    expect(err.field).toBe('num_key_value_heads');
    expect(err.message).toContain('num_attention_heads 8 is not divisible by num_key_value_heads 16');
  });

  it('rejects a hidden size that does not split into heads when head_dim is not given', () => {
    const err = parseError(edited({ hidden_size: 260 }));
    expect(err.field).toBe('hidden_size');
    expect(err.message).toContain('hidden_size 260 is not divisible by num_attention_heads 8');
    // With an explicit head_dim the split is not needed (as in transformers).
    expect(parseModelConfig(edited({ hidden_size: 260, head_dim: 32 }), SOURCE).headDim).toBe(32);
  });

  it('rejects num_experts_per_tok outside 1..num_local_experts', () => {
    const tooMany = parseError(edited({ num_experts_per_tok: 9 }));
    expect(tooMany.field).toBe('num_experts_per_tok');
    expect(tooMany.message).toContain('num_experts_per_tok 9 exceeds num_local_experts 8');
    const zero = parseError(edited({ num_experts_per_tok: 0 }));
    expect(zero.field).toBe('num_experts_per_tok');
    expect(zero.message).toContain('field "num_experts_per_tok": expected an integer >= 1, got 0');
    expect(parseModelConfig(edited({ num_experts_per_tok: 8 }), SOURCE).numExpertsPerTok).toBe(8);
  });

  it('rejects sizes that are not positive integers, quoting the bad value', () => {
    expect(parseError(edited({ num_hidden_layers: 2.5 })).message).toContain(
      'field "num_hidden_layers": expected an integer >= 1, got 2.5',
    );
    expect(parseError(edited({ vocab_size: -4096 })).message).toContain(
      'field "vocab_size": expected an integer >= 1, got -4096',
    );
    expect(parseError(edited({ hidden_size: '256' })).message).toContain(
      'field "hidden_size": expected an integer >= 1, got "256"',
    );
    expect(parseError(edited({ rms_norm_eps: 0 })).message).toContain(
      'field "rms_norm_eps": expected a number > 0, got 0',
    );
  });

  it('rejects token ids outside the vocabulary and malformed eos lists', () => {
    const eos = parseError(edited({ eos_token_id: [2, 4096] }));
    expect(eos.field).toBe('eos_token_id');
    expect(eos.message).toContain('eos_token_id 4096 is outside the vocabulary (vocab_size 4096)');
    expect(parseError(edited({ bos_token_id: 5000 })).field).toBe('bos_token_id');
    expect(parseError(edited({ eos_token_id: 'eos' })).message).toContain(
      'field "eos_token_id": expected a token id or a non-empty list of token ids, got "eos"',
    );
    expect(parseError(edited({ eos_token_id: [] })).message).toContain(
      'field "eos_token_id": expected at least one token id, got []',
    );
  });

  it('rejects an unsupported torch_dtype', () => {
    const err = parseError(edited({ torch_dtype: 'float64' }));
    expect(err.field).toBe('torch_dtype');
    expect(err.message).toContain(
      'field "torch_dtype": expected one of bfloat16, float16, float32, got "float64"',
    );
  });
});

describe('parseMixtralConfig', () => {
  it('knows the field at fault but not the file: the config.json reader adds it', () => {
    let caught: unknown;
    try {
      parseMixtralConfig(edited({ num_experts_per_tok: 9 }));
    } catch (err) {
      caught = err;
    }
    expect(caught).toBeInstanceOf(FamilyConfigError);
    const err = caught as FamilyConfigError;
    expect(err.field).toBe('num_experts_per_tok');
    expect(err.message).toBe('num_experts_per_tok 9 exceeds num_local_experts 8');
    expect(err.details).toEqual({ field: 'num_experts_per_tok' });
  });

  it('is what parseModelConfig runs for model_type "mixtral"', () => {
    expect(parseMixtralConfig(demo)).toEqual(DEMO_CONFIG);
  });
});
