// Lexical pieces of routing spec bodies shared by the policy kinds: non-negative decimal numbers,
// integers and comma lists, plus the canonical number formatting that makes specs round-trip.

type Fail = (problem: string) => never;

// Non-negative decimal with optional exponent: every output of String(x) for finite x >= 0 matches.
const NUMBER = /^(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;
const INTEGER = /^\d+$/;

export function parseSpecNumber(text: string, what: string, fail: Fail): number {
  const value = Number(text);
  if (!NUMBER.test(text) || !Number.isFinite(value))
    fail(`${what} "${text}" is not a non-negative decimal number`);
  return value;
}

export function parseSpecInteger(text: string, what: string, fail: Fail): number {
  const value = Number(text);
  if (!INTEGER.test(text) || !Number.isSafeInteger(value)) fail(`${what} "${text}" is not an integer`);
  return value;
}

export function parseSpecList(
  text: string,
  what: string,
  fail: Fail,
  parseOne: (item: string, what: string, fail: Fail) => number,
): number[] {
  return text.split(',').map((item, i) => parseOne(item, `${what}[${i}]`, fail));
}

/** Shortest decimal that reads back as the same double, so format(parse(s)) is stable. */
export function formatSpecNumber(value: number): string {
  return String(value);
}

/** Splits `A@B` into its two parts; B is undefined without `@`, and a second `@` is an error. */
export function splitAtSign(body: string, fail: Fail): [string, string | undefined] {
  const parts = body.split('@');
  if (parts.length > 2) fail(`"${body}" has more than one "@"`);
  return [parts[0]!, parts[1]];
}
