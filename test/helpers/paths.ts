// Locations of the shipped demo model, evaluation data and reference outputs, for tests.

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const MODEL_DIR = `${ROOT}models/tiny-mixtral`;
export const EVAL_DIR = `${ROOT}data/eval`;
export const REFERENCE_DIR = `${ROOT}test/fixtures/reference/tiny-mixtral`;
/** argv (after `node`) that starts the compiled kmoe CLI, which build-dist.ts builds before any test. */
export const KMOE_ARGV: readonly string[] = [`${ROOT}dist/coordinator/cli/main.js`];
/** `npm run test:full` (KMOE_FULL=1): full-corpus checks that `npm test` runs a subset of. */
export const FULL = process.env['KMOE_FULL'] === '1';

export interface ReferenceCase {
  name: string;
  ids: number[];
  routing: string;
  logits: string;
  shape: [number, number];
}

export interface GreedyCase {
  name: string;
  prompt: string;
  promptIds: number[];
  routing: string;
  greedyIds: number[];
  minLogitMargin: number;
}

export interface PerplexityReference {
  file: string;
  routing: string;
  ppl: number;
  avgK: number;
  avgKPerLayer: Record<string, number>;
  tokensScored: number;
}

export function referenceCases(): ReferenceCase[] {
  return JSON.parse(readFileSync(`${REFERENCE_DIR}/cases.json`, 'utf8')) as ReferenceCase[];
}

export function referenceLogits(c: ReferenceCase): Float32Array {
  const buf = readFileSync(`${REFERENCE_DIR}/${c.logits}`);
  return new Float32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.byteLength));
}

export function greedyCases(): GreedyCase[] {
  return JSON.parse(readFileSync(`${REFERENCE_DIR}/greedy.json`, 'utf8')) as GreedyCase[];
}

export function perplexityReferences(): PerplexityReference[] {
  return (
    JSON.parse(readFileSync(`${REFERENCE_DIR}/perplexity.json`, 'utf8')) as { results: PerplexityReference[] }
  ).results;
}

export function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  if (a.length !== b.length) throw new RangeError(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** The text a reference greedy continuation decodes to after its prompt (what `kmoe generate` prints). */
export function referenceGreedyText(
  tokenizer: { decode(ids: readonly number[]): string },
  c: Pick<GreedyCase, 'promptIds' | 'greedyIds'>,
): string {
  return tokenizer.decode([...c.promptIds, ...c.greedyIds]).slice(tokenizer.decode(c.promptIds).length);
}
