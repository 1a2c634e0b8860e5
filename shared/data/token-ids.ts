// Token-id corpora for evaluation and calibration: little-endian uint16 files (the format of
// data/eval/*.u16) or text encoded with the model's tokenizer, cut into fixed-length windows.

import fs from 'node:fs/promises';
import { KmoeError } from '../errors/kmoe-error.js';
import type { KmoeTokenizer } from '../model/tokenizer.js';
import { counted } from '../text/counted.js';
import { looksLikeText } from '../text/looks-like-text.js';

export class CorpusError extends KmoeError {}

/** Said of a file given as token ids whose bytes are text: the usual slip behind a bad .u16 file. */
const TEXT_NOT_IDS = 'it looks like a text file, not token ids';

export async function readU16Ids(path: string): Promise<Uint16Array> {
  let buf: Buffer;
  try {
    buf = await fs.readFile(path);
  } catch (err) {
    throw new CorpusError(`cannot read token ids from ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (buf.byteLength % 2 !== 0) {
    throw new CorpusError(
      `${path} has ${counted(buf.byteLength, 'byte')}, an odd number; a .u16 file holds 2 bytes per token id` +
        (looksLikeText(buf) ? `; ${TEXT_NOT_IDS}` : ''),
    );
  }
  const ids = new Uint16Array(buf.byteLength / 2);
  for (let i = 0; i < ids.length; i++) ids[i] = buf.readUInt16LE(i * 2);
  return ids;
}

/**
 * Refuses a corpus with an id the model's vocabulary does not have, naming the file, the first
 * such id and its position (the engine would only say "token id outside the vocabulary" after
 * loading the model). Ids that are text bytes read in pairs are the usual cause, so say so.
 */
export function checkIdsInVocabulary(path: string, ids: Uint16Array, vocabSize: number): void {
  const first = ids.findIndex((id) => id >= vocabSize);
  if (first < 0) return;
  const outside = ids.reduce((n, id) => (id >= vocabSize ? n + 1 : n), 0);
  const bytes = new Uint8Array(ids.length * 2);
  for (let i = 0; i < ids.length; i++) {
    bytes[2 * i] = ids[i]! & 0xff;
    bytes[2 * i + 1] = ids[i]! >> 8;
  }
  throw new CorpusError(
    `${path}: ${outside} of its ${counted(ids.length, 'id')} ${outside === 1 ? 'is' : 'are'} outside the model's ` +
      `vocabulary of ${vocabSize} ids, the first ${ids[first]} at position ${first} (byte ${2 * first})` +
      (looksLikeText(bytes) ? `; ${TEXT_NOT_IDS}` : ''),
    { details: { file: path, position: first, id: ids[first]!, vocabSize } },
  );
}

/**
 * Encodes a long text in pieces of at most `pieceChars` characters cut at line ends — the way the
 * shipped .u16 files were made — so long documents tokenize in bounded time.
 */
export function encodeLongText(tokenizer: KmoeTokenizer, text: string, pieceChars = 4096): Uint16Array {
  const ids: number[] = [];
  let at = 0;
  while (at < text.length) {
    let end = Math.min(text.length, at + pieceChars);
    if (end < text.length) {
      const nl = text.lastIndexOf('\n', end - 1);
      if (nl >= at) end = nl + 1;
    }
    for (const id of tokenizer.encodeRaw(text.slice(at, end))) ids.push(id);
    at = end;
  }
  if (ids.some((id) => id > 0xffff))
    throw new CorpusError('token ids above 65535 cannot be stored as uint16');
  return Uint16Array.from(ids);
}

export async function readTextIds(path: string, tokenizer: KmoeTokenizer): Promise<Uint16Array> {
  let text: string;
  try {
    text = await fs.readFile(path, 'utf8');
  } catch (err) {
    throw new CorpusError(`cannot read text from ${path}: ${(err as Error).message}`, { cause: err });
  }
  return encodeLongText(tokenizer, text);
}

/** A contiguous range of whole windows: [start, end) in window units. */
export interface WindowRange {
  readonly start: number;
  readonly end: number;
}

/** The first `n` windows of a range (all of it when it has fewer): a warm-up that stays inside it. */
export function leadingWindows(range: WindowRange, n: number): WindowRange {
  return { start: range.start, end: Math.min(range.start + n, range.end) };
}

/** A corpus as read, and the window range of it a command runs on (checked against the corpus). */
export interface CorpusWindows {
  readonly ids: Uint16Array;
  readonly range: WindowRange;
}

/**
 * Parses `START:END` (window indices, END exclusive, either side may be empty) or `first-half` /
 * `second-half` (the split used to keep calibration and evaluation data apart).
 */
export function parseWindowRange(spec: string | undefined, total: number): WindowRange {
  if (spec === undefined) return { start: 0, end: total };
  const half = Math.floor(total / 2);
  if (spec === 'first-half') return { start: 0, end: half };
  if (spec === 'second-half') return { start: half, end: total };
  const m = /^(\d*):(\d*)$/.exec(spec);
  if (!m) throw new CorpusError(`window range '${spec}' is not START:END, first-half or second-half`);
  const start = m[1] === '' ? 0 : Number(m[1]);
  const end = m[2] === '' ? total : Number(m[2]);
  if (start >= end || end > total) {
    throw new CorpusError(`window range ${start}:${end} is empty or beyond the ${total} windows available`);
  }
  return { start, end };
}
