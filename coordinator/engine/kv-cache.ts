// Per-sequence key/value cache, owned by the engine: for each layer, rotated keys and values of every
// position so far, token-major ([positions, keyWidth] and [positions, valueWidth]; the widths differ
// for DeepSeek's MLA) so appending and reading a prefix are single contiguous copies.

export class SequenceKvCache {
  private keys: Float32Array[];
  private values: Float32Array[];
  private capacity: number;
  private filled = 0;

  private readonly keyWidth: number;
  private readonly valueWidth: number;

  /** `width`: one width for both rows, or a family's keyWidth / valueWidth when they differ. */
  constructor(
    private readonly numLayers: number,
    width: number | { readonly keyWidth: number; readonly valueWidth: number },
    initialCapacity = 64,
  ) {
    const keyWidth = typeof width === 'number' ? width : width.keyWidth;
    const valueWidth = typeof width === 'number' ? width : width.valueWidth;
    this.keyWidth = keyWidth;
    this.valueWidth = valueWidth;
    this.capacity = Math.max(1, initialCapacity);
    this.keys = Array.from({ length: numLayers }, () => new Float32Array(this.capacity * keyWidth));
    this.values = Array.from({ length: numLayers }, () => new Float32Array(this.capacity * valueWidth));
  }

  /** Cached positions (all layers hold the same number once a forward pass completes). */
  get length(): number {
    return this.filled;
  }

  /** Views of the first `length` positions of one layer (no copy; valid until the next append). */
  keysOf(layer: number): Float32Array {
    return this.keys[layer]!.subarray(0, this.filled * this.keyWidth);
  }

  valuesOf(layer: number): Float32Array {
    return this.values[layer]!.subarray(0, this.filled * this.valueWidth);
  }

  /**
   * Stores `count` new positions of one layer, read from rows [from, from+count) of k/v.
   * Positions become visible through `length` only after commit(count), once every layer has them.
   */
  write(layer: number, k: Float32Array, v: Float32Array, from: number, count: number): void {
    this.reserve(this.filled + count);
    const kw = this.keyWidth;
    const vw = this.valueWidth;
    this.keys[layer]!.set(k.subarray(from * kw, (from + count) * kw), this.filled * kw);
    this.values[layer]!.set(v.subarray(from * vw, (from + count) * vw), this.filled * vw);
  }

  commit(count: number): void {
    this.filled += count;
  }

  /** Bytes held, for admission control and metrics. */
  get bytes(): number {
    return this.numLayers * this.capacity * (this.keyWidth + this.valueWidth) * 4;
  }

  private reserve(positions: number): void {
    if (positions <= this.capacity) return;
    let cap = this.capacity;
    while (cap < positions) cap *= 2;
    const grow =
      (width: number) =>
      (old: Float32Array): Float32Array => {
        const next = new Float32Array(cap * width);
        next.set(old);
        return next;
      };
    this.keys = this.keys.map(grow(this.keyWidth));
    this.values = this.values.map(grow(this.valueWidth));
    this.capacity = cap;
  }
}
