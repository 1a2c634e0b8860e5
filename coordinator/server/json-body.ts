// Request bodies as JSON, with bounds checked on the raw text before JSON.parse, which is the one
// expensive step left on the event loop: nesting depth (V8 parses a deeply nested body slowly, and
// code that recurses over it overflows the stack), members per array or object (no API field needs
// more than the context has positions) and members in all (a body of a million small values
// would stall the server while parsing). Each refusal is a 400 naming the parameter at fault.

import { InvalidRequestError } from './errors.js';

/** Deepest nesting a body may have: an inline routing profile, the deepest legitimate field, needs 5. */
export const MAX_JSON_DEPTH = 32;

export interface JsonBounds {
  /** Most members any array or object of the body may hold (the context length). */
  readonly maxMembers: number;
}

/** Members of all arrays and objects of a body together: a few contexts' worth, plus room for profiles. */
export function maxTotalMembers(bounds: JsonBounds): number {
  return 16 * bounds.maxMembers + 65_536;
}

/** Parses a body that arrived as `application/json`. @throws InvalidRequestError */
export function parseJsonBody(text: string, bounds: JsonBounds): unknown {
  if (text.trim() === '') {
    throw new InvalidRequestError('the request body is empty; send a JSON object', { code: 'invalid_json' });
  }
  const refusal = scan(text, bounds);
  if (refusal) throw refusal;
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidRequestError(
      `the request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
      { code: 'invalid_json' },
    );
  }
}

/**
 * Why the raw JSON text is refused, or undefined. Linear in the text, no allocation per character;
 * only bracket, comma and string structure is read (JSON.parse judges the rest). Parameters are
 * named by up to two object keys (`kmoe.routing`), tracked for the two outer levels.
 */
function scan(text: string, bounds: JsonBounds): InvalidRequestError | undefined {
  const maxTotal = maxTotalMembers(bounds);
  let depth = 0;
  let total = 0;
  const keys: (string | undefined)[] = [undefined, undefined, undefined];
  const isObject: boolean[] = [false, false, false];
  // Members so far of the open container at each depth (commas + 1 once it holds anything).
  const members = new Int32Array(MAX_JSON_DEPTH + 2);
  let lastString: string | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      // A string: skip to its closing quote; keep it when it may be a key of a shallow object.
      const start = i;
      for (i++; i < text.length; i++) {
        const d = text.charCodeAt(i);
        if (d === 0x5c) i++;
        else if (d === 0x22) break;
      }
      lastString = depth <= 2 && i - start < 256 ? text.slice(start, i + 1) : undefined;
      if (members[depth] === 0) members[depth] = 1;
    } else if (c === 0x3a) {
      if (depth <= 2 && isObject[depth]) keys[depth] = decodeKey(lastString);
    } else if (c === 0x2c) {
      if (++members[depth]! > bounds.maxMembers) {
        const param = paramOf(keys, isObject, depth);
        return new InvalidRequestError(
          `${param ?? 'the request body'} holds more than ${bounds.maxMembers} ${depth > 2 ? 'members' : isObject[depth] ? 'fields' : 'items'}; at most ${bounds.maxMembers} (this model's context length) are accepted`,
          { param, code: param?.startsWith('prompt') ? 'context_length_exceeded' : 'too_many_items' },
        );
      }
      if (++total > maxTotal) {
        return new InvalidRequestError(
          `the request body holds more than ${maxTotal} values in all; no request to this model needs that many`,
          { param: null, code: 'too_many_items' },
        );
      }
    } else if (c === 0x7b || c === 0x5b) {
      if (members[depth] === 0) members[depth] = 1;
      depth++;
      if (depth > MAX_JSON_DEPTH) {
        const param = paramOf(keys, isObject, depth);
        return new InvalidRequestError(
          `${param ?? 'the request body'} nests deeper than ${MAX_JSON_DEPTH} levels; no field of this API needs that`,
          { param, code: 'json_too_deep' },
        );
      }
      members[depth] = 0;
      if (depth <= 2) {
        isObject[depth] = c === 0x7b;
        keys[depth] = undefined;
      }
    } else if (c === 0x7d || c === 0x5d) {
      if (depth > 0) depth--;
    } else if (c > 0x20 && members[depth] === 0) {
      // The first character of a number, true, false or null.
      members[depth] = 1;
    }
  }
  return undefined;
}

function decodeKey(literal: string | undefined): string | undefined {
  if (literal === undefined) return undefined;
  try {
    const key = JSON.parse(literal) as unknown;
    return typeof key === 'string' ? key : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The parameter holding the container at `depth`: the keys leading to it from the body (at most
 * two, e.g. `kmoe.routing`); null for the body itself; stops at the first array or unknown key.
 */
function paramOf(
  keys: readonly (string | undefined)[],
  isObject: readonly boolean[],
  depth: number,
): string | null {
  const parts: string[] = [];
  for (let d = 1; d <= Math.min(2, depth - 1); d++) {
    const key = keys[d];
    if (!isObject[d] || key === undefined) break;
    parts.push(key);
  }
  return parts.length === 0 ? null : parts.join('.');
}
