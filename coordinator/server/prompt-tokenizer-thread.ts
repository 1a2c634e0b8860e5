// The prompt tokenizer's worker thread: encodes prompts and renders chat templates, so that a long
// prompt costs this thread time and never the event loop that serves streams, /health and /metrics.

import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { type ChatMessage, KmoeTokenizer } from '../../shared/model/tokenizer.js';
import { serveThread } from '../../shared/runtime/thread-rpc.js';
import type { PromptTokenizerSchema } from './prompt-tokenizer.js';

let tokenizer: KmoeTokenizer | undefined;

function loaded(): KmoeTokenizer {
  if (!tokenizer) throw new Error('prompt tokenizer thread used before init');
  return tokenizer;
}

serveThread<PromptTokenizerSchema>({
  async init({ modelDir }) {
    tokenizer = await KmoeTokenizer.load(modelDir);
    const json = JSON.parse(await readFile(join(modelDir, 'tokenizer.json'), 'utf8')) as TokenizerJson;
    return { result: { charsPerTokenBound: charsPerTokenBound(json) } };
  },
  encode(text: string) {
    // Client text: control-token strings in it stay text (KmoeTokenizer.encodeText).
    return { result: loaded().encodeText(text) };
  },
  encodeChat(messages: ChatMessage[]) {
    return { result: loaded().encodeChat(messages) };
  },
});

interface TokenizerJson {
  readonly model?: { readonly vocab?: unknown };
  readonly added_tokens?: readonly { readonly content?: unknown }[];
  readonly normalizer?: Normalizer | null;
}

interface Normalizer {
  readonly type?: string;
  readonly normalizers?: readonly Normalizer[];
  readonly pattern?: { readonly String?: string };
  readonly content?: string;
}

/**
 * An upper bound on the UTF-16 code units of input text one token stands for: the longest
 * vocabulary entry (at least 2, for a surrogate pair), times 3 when the normalizer may shrink text
 * (NFC/NFKC compose at most three code points into one). Every token covers at most that much of
 * the text, so a text longer than context x bound cannot fit the context, whatever its content.
 * (A `Strip` normalizer dropping megabytes of whitespace is the one case this does not cover.)
 */
function charsPerTokenBound(json: TokenizerJson): number {
  let longest = 2;
  const vocab = json.model?.vocab;
  const pieces: unknown[] = Array.isArray(vocab)
    ? vocab.map((entry: unknown) => (Array.isArray(entry) ? entry[0] : entry))
    : typeof vocab === 'object' && vocab !== null
      ? Object.keys(vocab)
      : [];
  for (const t of json.added_tokens ?? []) pieces.push(t.content);
  for (const piece of pieces) if (typeof piece === 'string') longest = Math.max(longest, piece.length);
  return longest * (mayShrink(json.normalizer ?? null) ? 3 : 1);
}

function mayShrink(n: Normalizer | null): boolean {
  if (n === null) return false;
  switch (n.type) {
    case 'Sequence':
      return (n.normalizers ?? []).some(mayShrink);
    case 'Prepend':
    case 'NFD':
    case 'NFKD':
    case 'Lowercase':
      return false;
    case 'Replace':
      return n.pattern?.String === undefined || (n.content ?? '').length < n.pattern.String.length;
    default:
      return true;
  }
}
