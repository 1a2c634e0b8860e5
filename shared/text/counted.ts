// "1 token", "2 tokens": counts in messages and reports, with the noun's plural where it needs one.

/** `n` and `noun`, plural unless n is 1 (`plural` for nouns that do not just take an s). */
export function counted(n: number, noun: string, plural = `${noun}s`): string {
  return `${n} ${n === 1 ? noun : plural}`;
}
