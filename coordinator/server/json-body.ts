// Request bodies as JSON, with bounds checked before any expensive work: nesting depth is measured
// on the raw text before JSON.parse (V8 parses a deeply nested body slowly, and code that recurses
// over it overflows the stack), and arrays and objects may not hold more members than the context
// has positions (no API field needs more, and validating millions of items would stall the server).
// Each refusal is a 400 naming the parameter at fault.

import { InvalidRequestError } from './errors.js';

/** Deepest nesting a body may have: an inline routing profile, the deepest legitimate field, needs 5. */
export const MAX_JSON_DEPTH = 32;

export interface JsonBounds {
  /** Most members any array or object of the body may hold (the context length). */
  readonly maxMembers: number;
}

/** Parses a body that arrived as `application/json`. @throws InvalidRequestError */
export function parseJsonBody(text: string, bounds: JsonBounds): unknown {
  if (text.trim() === '') {
    throw new InvalidRequestError('the request body is empty; send a JSON object', { code: 'invalid_json' });
  }
  const deep = tooDeep(text);
  if (deep !== undefined) throw nestingError(deep);
  let body: unknown;
  try {
    body = JSON.parse(text) as unknown;
  } catch (err) {
    throw new InvalidRequestError(
      `the request body is not valid JSON: ${err instanceof Error ? err.message : String(err)}`,
      { code: 'invalid_json' },
    );
  }
  checkMembers(body, bounds.maxMembers);
  return body;
}

function nestingError(param: string | null): InvalidRequestError {
  return new InvalidRequestError(
    `${param ?? 'the request body'} nests deeper than ${MAX_JSON_DEPTH} levels; no field of this API needs that`,
    { param, code: 'json_too_deep' },
  );
}

/**
 * The parameter (up to two object keys, e.g. `kmoe.routing`) under which the raw JSON text nests
 * deeper than MAX_JSON_DEPTH, or undefined. Linear in the text, no allocation per character; only
 * bracket and string structure is read (JSON.parse judges the rest).
 */
function tooDeep(text: string): string | null | undefined {
  let depth = 0;
  // Keys of the enclosing objects at depths 1 and 2, and whether those containers are objects.
  const keys: (string | undefined)[] = [undefined, undefined, undefined];
  const isObject: boolean[] = [false, false, false];
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
    } else if (c === 0x3a) {
      if (depth <= 2 && isObject[depth]) keys[depth] = decodeKey(lastString);
    } else if (c === 0x7b || c === 0x5b) {
      depth++;
      if (depth <= 2) {
        isObject[depth] = c === 0x7b;
        keys[depth] = undefined;
      }
      if (depth > MAX_JSON_DEPTH) return paramOf(keys, isObject);
    } else if (c === 0x7d || c === 0x5d) {
      depth--;
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

/** `kmoe.routing` from the keys at depths 1 and 2; stops at the first array or unknown key. */
function paramOf(keys: readonly (string | undefined)[], isObject: readonly boolean[]): string | null {
  const parts: string[] = [];
  for (let d = 1; d <= 2; d++) {
    const key = keys[d];
    if (!isObject[d] || key === undefined) break;
    parts.push(key);
  }
  return parts.length === 0 ? null : parts.join('.');
}

/** @throws InvalidRequestError when an array or object holds more than maxMembers members. */
function checkMembers(body: unknown, maxMembers: number): void {
  const stack: { value: unknown; path: string }[] = [{ value: body, path: '' }];
  while (stack.length > 0) {
    const { value, path } = stack.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    const entries = Array.isArray(value) ? value.length : Object.keys(value).length;
    if (entries > maxMembers) {
      const param = path === '' ? null : path;
      throw new InvalidRequestError(
        `${param ?? 'the request body'} holds ${entries} ${Array.isArray(value) ? 'items' : 'fields'}; at most ${maxMembers} (this model's context length) are accepted`,
        { param, code: param?.startsWith('prompt') ? 'context_length_exceeded' : 'too_many_items' },
      );
    }
    // Only containers are pushed: a million-number array costs one pass, not a million entries.
    if (Array.isArray(value)) {
      value.forEach((v, i) => {
        if (typeof v === 'object' && v !== null) stack.push({ value: v, path: join(path, String(i)) });
      });
    } else {
      for (const [k, v] of Object.entries(value)) {
        if (typeof v === 'object' && v !== null) stack.push({ value: v, path: join(path, k) });
      }
    }
  }
}

function join(path: string, key: string): string {
  return path === '' ? key : `${path}.${key}`;
}
