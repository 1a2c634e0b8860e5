// Expert sets as people write them on command lines and read them in logs: "0-3", "0,2,5-7".
// Workers announce theirs in the ready line; the coordinator names them in errors.

import { ProtocolError } from './errors.js';

/** Parses "0-3,6" into sorted distinct indices; each must be below numExperts when it is given. */
export function parseExpertSet(text: string, numExperts?: number): number[] {
  const out = new Set<number>();
  const fail = (why: string): never => {
    throw new ProtocolError('bad-value', `expert set '${text}': ${why}`, {
      hint: 'write expert indices and ranges like 0-3 or 0,2,5-7',
    });
  };
  if (text.trim() === '') fail('empty');
  for (const part of text.split(',')) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    if (!m) return fail(`'${part}' is not an index or a range A-B`);
    const lo = Number(m[1]);
    const hi = m[2] === undefined ? lo : Number(m[2]);
    if (hi < lo) fail(`range ${lo}-${hi} is backwards`);
    if (numExperts !== undefined && hi >= numExperts)
      fail(`expert ${hi} does not exist: the model has ${numExperts}`);
    for (let e = lo; e <= hi; e++) out.add(e);
  }
  return [...out].sort((a, b) => a - b);
}

/**
 * An expert list a worker sent (its welcome, a holdings notice) as the set it means: ascending,
 * each once. A list with repeats would put the worker twice among an expert's holders.
 */
export function expertSetOf(experts: readonly number[]): number[] {
  return [...new Set(experts)].sort((a, b) => a - b);
}

/** Compact form: [0,1,2,3,6] -> "0-3,6". */
export function formatExpertSet(experts: readonly number[]): string {
  const sorted = expertSetOf(experts);
  const parts: string[] = [];
  for (let i = 0; i < sorted.length; ) {
    let j = i;
    while (j + 1 < sorted.length && sorted[j + 1] === sorted[j]! + 1) j++;
    parts.push(j === i ? `${sorted[i]}` : `${sorted[i]}-${sorted[j]}`);
    i = j + 1;
  }
  return parts.join(',');
}

/** numExperts split into n contiguous ranges whose sizes differ by at most one. */
export function splitExperts(numExperts: number, n: number): number[][] {
  if (!Number.isInteger(n) || n < 1 || n > numExperts)
    throw new RangeError(`cannot split ${numExperts} experts over ${n} workers`);
  const out: number[][] = [];
  for (let w = 0, at = 0; w < n; w++) {
    const size = Math.floor(numExperts / n) + (w < numExperts % n ? 1 : 0);
    out.push(Array.from({ length: size }, (_, i) => at + i));
    at += size;
  }
  return out;
}
