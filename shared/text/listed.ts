// A list for a message that may be long (a registry's thousands of workers, their failures): the
// first few items one by one, then how many more.

/** "a; b; and 3 more": `what` of the first `max` items joined by "; ", then a count of the rest. */
export function listed<T>(items: readonly T[], max: number, what: (item: T) => string): string {
  const named = items.slice(0, max).map(what);
  const more = items.length - named.length;
  return `${named.join('; ')}${more > 0 ? `; and ${more.toLocaleString('en-US')} more` : ''}`;
}
