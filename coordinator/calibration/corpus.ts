// Assembles a calibration or evaluation corpus: windows taken from several token-id files, each
// restricted to a window range (the first half for calibration, the second for reporting).

import { parseWindowRange, readU16Ids } from '../../shared/data/token-ids.js';

export interface CorpusPart {
  readonly file: string;
  readonly start: number;
  readonly end: number;
}

export interface Corpus {
  /** Selected windows end to end. */
  readonly ids: Uint16Array;
  readonly windows: number;
  readonly windowLen: number;
  readonly parts: CorpusPart[];
}

export async function loadCorpus(
  files: readonly string[],
  range: string | undefined,
  windowLen: number,
): Promise<Corpus> {
  const parts: CorpusPart[] = [];
  const chunks: Uint16Array[] = [];
  for (const file of files) {
    const ids = await readU16Ids(file);
    const total = Math.floor(ids.length / windowLen);
    const r = parseWindowRange(range, total);
    parts.push({ file, start: r.start, end: r.end });
    chunks.push(ids.subarray(r.start * windowLen, r.end * windowLen));
  }
  const ids = new Uint16Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    ids.set(c, at);
    at += c.length;
  }
  return { ids, windows: ids.length / windowLen, windowLen, parts };
}

/** About `count` windows spread evenly over the corpus (every domain represented). */
export function spreadWindows(corpus: Corpus, count: number): Uint16Array {
  if (count >= corpus.windows) return corpus.ids;
  return windowsAt(corpus, spreadIndices(corpus.windows, count));
}

/** Indices of `count` windows spread evenly over `total` (all of them when count >= total). */
export function spreadIndices(total: number, count: number): number[] {
  if (count >= total) return Array.from({ length: total }, (_, w) => w);
  return Array.from({ length: count }, (_, i) => Math.floor((i * total) / count));
}

/** The windows at `indices`, end to end (a copy). */
export function windowsAt(corpus: Corpus, indices: readonly number[]): Uint16Array {
  const L = corpus.windowLen;
  const out = new Uint16Array(indices.length * L);
  indices.forEach((w, i) => {
    out.set(corpus.ids.subarray(w * L, (w + 1) * L), i * L);
  });
  return out;
}

/** Splits the corpus: windows at `indices` (ascending) and the rest, each as a corpus of the same parts. */
export function splitWindows(corpus: Corpus, indices: readonly number[]): { taken: Corpus; rest: Corpus } {
  const chosen = new Set(indices);
  const rest: number[] = [];
  for (let w = 0; w < corpus.windows; w++) if (!chosen.has(w)) rest.push(w);
  const as = (idx: readonly number[]): Corpus => ({
    ids: windowsAt(corpus, idx),
    windows: idx.length,
    windowLen: corpus.windowLen,
    parts: corpus.parts,
  });
  return { taken: as(indices), rest: as(rest) };
}

export function describeCorpus(corpus: Corpus): string[] {
  return corpus.parts.map((p) => `${p.file}#windows=${p.start}:${p.end}`);
}
