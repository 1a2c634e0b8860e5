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
  const L = corpus.windowLen;
  const out = new Uint16Array(count * L);
  for (let i = 0; i < count; i++) {
    const w = Math.floor((i * corpus.windows) / count);
    out.set(corpus.ids.subarray(w * L, (w + 1) * L), i * L);
  }
  return out;
}

export function describeCorpus(corpus: Corpus): string[] {
  return corpus.parts.map((p) => `${p.file}#windows=${p.start}:${p.end}`);
}
