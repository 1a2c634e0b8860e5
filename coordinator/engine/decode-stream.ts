// The channel of a streamed decode call (Engine.decodeEach with a stream): the engine thread writes
// each sampled token, with the activations and bytes of the step that sampled it, into memory both
// threads share, and reports progress; the caller reads the token as soon as the progress message
// arrives, while the engine goes on to the next step. The caller raises `interrupt` (a new request
// to admit, a cancel, a stop string) to make the call return after the step in hand: no message to
// the engine thread is needed, which would wait behind the call anyway.

const CONTROL = 0;

export class DecodeStream {
  readonly #control: Int32Array;
  readonly #tokens: Int32Array;
  readonly #activations: Float64Array;
  readonly #bytes: Float64Array;

  private constructor(
    /** What crosses to the engine thread inside the request (shared, not copied). */
    readonly buffer: SharedArrayBuffer,
    /** Tokens the buffer holds: the call's step limit. */
    readonly capacity: number,
  ) {
    // Float64 fields first so that every view is aligned.
    this.#activations = new Float64Array(buffer, 0, capacity);
    this.#bytes = new Float64Array(buffer, 8 * capacity, capacity);
    this.#control = new Int32Array(buffer, 16 * capacity, 1);
    this.#tokens = new Int32Array(buffer, 16 * capacity + 4, capacity);
  }

  static create(capacity: number): DecodeStream {
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`a decode stream holds at least one token, got ${capacity}`);
    }
    return new DecodeStream(new SharedArrayBuffer(20 * capacity + 4), capacity);
  }

  /** The engine thread's view of a caller's buffer. */
  static attach(buffer: SharedArrayBuffer): DecodeStream {
    const capacity = (buffer.byteLength - 4) / 20;
    if (!Number.isInteger(capacity) || capacity < 1) {
      throw new RangeError(`${buffer.byteLength} bytes are not a decode stream`);
    }
    return new DecodeStream(buffer, capacity);
  }

  /** Asks the engine to return after the step it is running. */
  interrupt(): void {
    Atomics.store(this.#control, CONTROL, 1);
  }

  get interrupted(): boolean {
    return Atomics.load(this.#control, CONTROL) === 1;
  }

  write(index: number, token: number, activations: number, bytes: number): void {
    this.#activations[index] = activations;
    this.#bytes[index] = bytes;
    // The token last, through Atomics: a reader that sees it sees the figures written before it.
    Atomics.store(this.#tokens, index, token);
  }

  token(index: number): number {
    return Atomics.load(this.#tokens, index);
  }

  activations(index: number): number {
    return this.#activations[index]!;
  }

  bytes(index: number): number {
    return this.#bytes[index]!;
  }
}
