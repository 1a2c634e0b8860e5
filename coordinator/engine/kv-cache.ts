// Per-sequence key/value cache, owned by the engine: for each layer, rotated keys and values of every
// position so far, token-major ([positions, kvHeads*headDim]) so appending and reading a prefix are
// single contiguous copies.

export class SequenceKvCache {
  private keys: Float32Array[];
  private values: Float32Array[];
  private capacity: number;
  private filled = 0;

  constructor(
    private readonly numLayers: number,
    private readonly width: number,
    initialCapacity = 64,
  ) {
    this.capacity = Math.max(1, initialCapacity);
    this.keys = Array.from({ length: numLayers }, () => new Float32Array(this.capacity * width));
    this.values = Array.from({ length: numLayers }, () => new Float32Array(this.capacity * width));
  }

  /** Cached positions (all layers hold the same number once a forward pass completes). */
  get length(): number {
    return this.filled;
  }

  /** Views of the first `length` positions of one layer (no copy; valid until the next append). */
  keysOf(layer: number): Float32Array {
    return this.keys[layer]!.subarray(0, this.filled * this.width);
  }

  valuesOf(layer: number): Float32Array {
    return this.values[layer]!.subarray(0, this.filled * this.width);
  }

  /**
   * Stores `count` new positions of one layer, read from rows [from, from+count) of k/v.
   * Positions become visible through `length` only after commit(count), once every layer has them.
   */
  write(layer: number, k: Float32Array, v: Float32Array, from: number, count: number): void {
    this.reserve(this.filled + count);
    const w = this.width;
    this.keys[layer]!.set(k.subarray(from * w, (from + count) * w), this.filled * w);
    this.values[layer]!.set(v.subarray(from * w, (from + count) * w), this.filled * w);
  }

  commit(count: number): void {
    this.filled += count;
  }

  /** Bytes held, for admission control and metrics. */
  get bytes(): number {
    return 2 * this.numLayers * this.capacity * this.width * 4;
  }

  private reserve(positions: number): void {
    if (positions <= this.capacity) return;
    let cap = this.capacity;
    while (cap < positions) cap *= 2;
    const grow = (old: Float32Array): Float32Array => {
      const next = new Float32Array(cap * this.width);
      next.set(old);
      return next;
    };
    this.keys = this.keys.map(grow);
    this.values = this.values.map(grow);
    this.capacity = cap;
  }
}
