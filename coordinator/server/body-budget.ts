// Memory held by request bodies still arriving. Each body is read whole before it is parsed (up to
// the body limit, 8 MiB), so without a shared bound one client holding a thousand connections with
// nearly complete 8 MiB uploads held ~8 GB of the server. A body is counted from its headers (its
// content-length, or the whole body limit when chunked) until it has been read or its response has
// ended; beyond the budget new uploads get 429 at once. At least one body is always admitted, so a
// budget below the body limit cannot refuse everything.

export class BodyBudget {
  #inFlight = 0;

  constructor(readonly limitBytes: number) {}

  /** Bytes counted for bodies being received now. */
  get inFlightBytes(): number {
    return this.#inFlight;
  }

  /** Whether tryReserve(bytes) would succeed now. */
  wouldAdmit(bytes: number): boolean {
    return bytes <= 0 || this.#inFlight === 0 || this.#inFlight + bytes <= this.limitBytes;
  }

  /** Counts `bytes` for a body about to be read: its release (call any number of times), or undefined when over budget. */
  tryReserve(bytes: number): (() => void) | undefined {
    if (bytes <= 0) return () => undefined;
    if (!this.wouldAdmit(bytes)) return undefined;
    this.#inFlight += bytes;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.#inFlight -= bytes;
    };
  }
}

/** What a request's body will hold at most, from its headers: 0 without a body. */
export function declaredBodyBytes(
  headers: { readonly 'content-length'?: string; readonly 'transfer-encoding'?: string },
  bodyLimitBytes: number,
): number {
  const length = headers['content-length'];
  if (length !== undefined && /^\d+$/.test(length)) return Math.min(Number(length), bodyLimitBytes);
  return headers['transfer-encoding'] === undefined ? 0 : bodyLimitBytes;
}
