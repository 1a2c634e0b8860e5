// Tokenizer files for a synthetic checkpoint. The real Mixtral tokenizers cannot be downloaded
// here, so: the demo model's files when its vocabulary has exactly the config's size, otherwise a
// minimal Llama-style tokenizer.json whose ids cover exactly [0, vocab_size): <unk> <s> </s>, the
// 256 byte-fallback tokens, "▁" and printable ASCII, then reserved filler tokens. Any text encodes
// (characters, else bytes); the weights are random, so nothing better is needed.

import { copyFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SynthError } from './errors.js';

export const TOKENIZER_FILES = ['tokenizer.json', 'tokenizer_config.json'] as const;

/** <unk>, <s>, </s> and <0x00>..<0xFF>: the ids every Llama/Mistral SentencePiece vocabulary starts with. */
const FIXED_TOKENS = 3 + 256;

export interface TokenizerSource {
  /** A directory with tokenizer.json / tokenizer_config.json to copy when its vocabulary fits. */
  readonly dir: string;
}

export type TokenizerOrigin = { kind: 'copied'; from: string } | { kind: 'minimal' };

export async function writeSynthTokenizer(
  outDir: string,
  vocabSize: number,
  source?: TokenizerSource,
): Promise<TokenizerOrigin> {
  if (source !== undefined && (await vocabularySize(path.join(source.dir, 'tokenizer.json'))) === vocabSize) {
    for (const f of TOKENIZER_FILES) await copyFile(path.join(source.dir, f), path.join(outDir, f));
    return { kind: 'copied', from: source.dir };
  }
  await writeFile(path.join(outDir, 'tokenizer.json'), JSON.stringify(minimalTokenizerJson(vocabSize)));
  await writeFile(
    path.join(outDir, 'tokenizer_config.json'),
    `${JSON.stringify(MIXTRAL_TOKENIZER_CONFIG, null, 2)}\n`,
  );
  return { kind: 'minimal' };
}

// What Mixtral's tokenizer_config.json says about special tokens (it adds <s>, as the real one does).
const MIXTRAL_TOKENIZER_CONFIG = {
  add_bos_token: true,
  add_eos_token: false,
  bos_token: '<s>',
  eos_token: '</s>',
  unk_token: '<unk>',
  clean_up_tokenization_spaces: false,
  legacy: false,
  tokenizer_class: 'LlamaTokenizer',
};

/** Largest id + 1 of a tokenizer.json's model vocabulary and added tokens; -1 when it cannot tell. */
async function vocabularySize(file: string): Promise<number> {
  let json: unknown;
  try {
    json = JSON.parse(await readFile(file, 'utf8'));
  } catch (err) {
    // A source without a tokenizer.json does not fit; an unreadable or corrupt one is an error.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return -1;
    throw new SynthError(
      `cannot read the source tokenizer ${file}: ${err instanceof Error ? err.message : String(err)}`,
      {
        cause: err,
        details: { file },
      },
    );
  }
  const model = (json as { model?: { vocab?: unknown } }).model;
  const vocab = model?.vocab;
  if (typeof vocab !== 'object' || vocab === null) return -1;
  let max = -1;
  for (const id of Object.values(vocab as Record<string, unknown>))
    if (typeof id === 'number') max = Math.max(max, id);
  for (const t of (json as { added_tokens?: { id?: unknown }[] }).added_tokens ?? []) {
    if (typeof t.id === 'number') max = Math.max(max, t.id);
  }
  return max + 1;
}

export function minimalTokenizerJson(vocabSize: number): Record<string, unknown> {
  const pieces = ['▁'];
  for (let c = 0x21; c < 0x7f; c++) pieces.push(String.fromCharCode(c));
  if (vocabSize < FIXED_TOKENS + pieces.length) {
    throw new SynthError(
      `vocab_size ${vocabSize} is too small for a byte-fallback tokenizer (needs at least ${FIXED_TOKENS + pieces.length} ids)`,
      { hint: 'use a vocab_size of at least 355, or a source tokenizer whose vocabulary matches' },
    );
  }
  const vocab: Record<string, number> = { '<unk>': 0, '<s>': 1, '</s>': 2 };
  for (let b = 0; b < 256; b++) vocab[`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`] = 3 + b;
  let id = FIXED_TOKENS;
  for (const p of pieces) vocab[p] = id++;
  for (let i = 0; id < vocabSize; i++) vocab[`<synth_reserved_${i}>`] = id++;
  const special = (tokenId: number, content: string) => ({
    id: tokenId,
    content,
    single_word: false,
    lstrip: false,
    rstrip: false,
    normalized: false,
    special: true,
  });
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: null,
    pre_tokenizer: { type: 'Metaspace', replacement: '▁', prepend_scheme: 'first', split: false },
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [
        { SpecialToken: { id: '<s>', type_id: 0 } },
        { Sequence: { id: 'A', type_id: 0 } },
        { SpecialToken: { id: '<s>', type_id: 1 } },
        { Sequence: { id: 'B', type_id: 1 } },
      ],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [
        { type: 'Replace', pattern: { String: '▁' }, content: ' ' },
        { type: 'ByteFallback' },
        { type: 'Fuse' },
        { type: 'Strip', content: ' ', start: 1, stop: 0 },
      ],
    },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: '<unk>',
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: true,
      ignore_merges: false,
      vocab,
      merges: [],
    },
  };
}
