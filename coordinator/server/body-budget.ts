// Memory held by request bodies still arriving. Each body is read whole before it is parsed (up to
// the body limit, 8 MiB), so without a shared bound one client holding a thousand connections with
// nearly complete 8 MiB uploads held ~8 GB of the server. Bodies are counted by the bytes that have
// actually arrived (a declared length costs nothing: headers alone must not lock anyone out), and
// once the bytes in flight pass the budget, every upload but the oldest stops being read (its
// stream is paused, so TCP holds the rest back) until an upload in flight has been read or
// answered. The oldest always proceeds, so some upload always completes.

/** What an upload's stream must offer: stop and restart its 'data' events. */
export interface PausableUpload {
  pause(): unknown;
  resume(): unknown;
}

export class BodyBudget {
  #inFlight = 0;
  /** Uploads being counted, oldest first, with the bytes each has brought in. */
  readonly #uploads = new Map<PausableUpload, number>();
  readonly #paused = new Set<PausableUpload>();

  constructor(readonly limitBytes: number) {}

  /** Bytes of bodies received and not yet read or answered. */
  get inFlightBytes(): number {
    return this.#inFlight;
  }

  /** Uploads waiting for room (for tests and metrics). */
  get pausedUploads(): number {
    return this.#paused.size;
  }

  /** An upload has brought in `bytes` more; it is paused when that passes the budget (unless oldest). */
  received(upload: PausableUpload, bytes: number): void {
    this.#uploads.set(upload, (this.#uploads.get(upload) ?? 0) + bytes);
    this.#inFlight += bytes;
    if (
      this.#inFlight > this.limitBytes &&
      this.#uploads.keys().next().value !== upload &&
      !this.#paused.has(upload)
    ) {
      this.#paused.add(upload);
      upload.pause();
    }
  }

  /** The upload has been read or answered: its bytes leave the count, waiting uploads go on while there is room. */
  release(upload: PausableUpload): void {
    const bytes = this.#uploads.get(upload);
    if (bytes === undefined) return;
    this.#uploads.delete(upload);
    this.#inFlight -= bytes;
    if (this.#paused.delete(upload)) upload.resume();
    for (const waiting of this.#paused) {
      if (this.#inFlight > this.limitBytes && this.#uploads.keys().next().value !== waiting) break;
      this.#paused.delete(waiting);
      waiting.resume();
    }
  }
}
