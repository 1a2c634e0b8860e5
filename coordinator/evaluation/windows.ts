// How a token corpus divides into scoring windows, apart from the evaluation so the CLI checks a
// --windows range without loading it.

export const STANDARD_WINDOW = 256;

export function windowCount(ids: Uint16Array, windowLen = STANDARD_WINDOW): number {
  return Math.floor(ids.length / windowLen);
}
