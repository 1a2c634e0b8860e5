// Stop strings over streamed text: emits text as soon as it cannot be part of a stop string,
// holds back a tail that could still become one, and cuts the output before the first match (the
// stop string itself is never emitted, as in the OpenAI API).

export interface StopMatch {
  /** Text that is now safe to send. */
  readonly text: string;
  /** A stop string was found: generation ends and nothing more is emitted. */
  readonly stopped: boolean;
}

export class StopMatcher {
  readonly #stops: readonly string[];
  readonly #longest: number;
  #pending = '';
  #stopped = false;

  /** @param stops non-empty strings (the request schema rejects empty ones). */
  constructor(stops: readonly string[]) {
    if (stops.some((s) => s.length === 0)) throw new RangeError('stop strings must be non-empty');
    this.#stops = stops;
    this.#longest = Math.max(0, ...stops.map((s) => s.length));
  }

  push(text: string): StopMatch {
    if (this.#stopped) return { text: '', stopped: true };
    const buffer = this.#pending + text;
    let first = -1;
    for (const stop of this.#stops) {
      const at = buffer.indexOf(stop);
      if (at >= 0 && (first < 0 || at < first)) first = at;
    }
    if (first >= 0) {
      this.#stopped = true;
      this.#pending = '';
      return { text: buffer.slice(0, first), stopped: true };
    }
    // Everything before the longest tail that begins some stop string is final: a match that
    // started earlier would already be inside the buffer.
    const hold = this.#heldTail(buffer);
    this.#pending = buffer.slice(buffer.length - hold);
    return { text: buffer.slice(0, buffer.length - hold), stopped: false };
  }

  /** The held-back tail, for a generation that ended without reaching a stop string. */
  flush(): string {
    const rest = this.#stopped ? '' : this.#pending;
    this.#pending = '';
    return rest;
  }

  #heldTail(buffer: string): number {
    for (let k = Math.min(buffer.length, this.#longest - 1); k > 0; k--) {
      const tail = buffer.slice(buffer.length - k);
      if (this.#stops.some((s) => s.startsWith(tail))) return k;
    }
    return 0;
  }
}
