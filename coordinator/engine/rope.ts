// Rotary-embedding tables: cos/sin of position * inv_freq over `ropeDim` rotary dimensions (a
// family's GraphDims.ropeDim: headDim, or MLA's rope part), computed in fp32 the way transformers
// does, for every position the model may see. The graphs pair the dimensions (rotate-half or interleaved).

export class RopeTable {
  readonly half: number;
  private readonly cos: Float32Array;
  private readonly sin: Float32Array;

  constructor(
    ropeDim: number,
    theta: number,
    readonly maxPositions: number,
  ) {
    this.half = ropeDim / 2;
    const invFreq = new Float32Array(this.half);
    for (let i = 0; i < this.half; i++) invFreq[i] = 1 / Math.fround(theta ** Math.fround((2 * i) / ropeDim));
    this.cos = new Float32Array(maxPositions * this.half);
    this.sin = new Float32Array(maxPositions * this.half);
    for (let p = 0; p < maxPositions; p++) {
      for (let i = 0; i < this.half; i++) {
        const angle = Math.fround(p * invFreq[i]!);
        this.cos[p * this.half + i] = Math.cos(angle);
        this.sin[p * this.half + i] = Math.sin(angle);
      }
    }
  }

  /** Writes the rows for `count` consecutive positions starting at `start` into cos/sin at row `at`. */
  fill(cos: Float32Array, sin: Float32Array, at: number, start: number, count: number): void {
    if (start + count > this.maxPositions) {
      throw new RangeError(
        `position ${start + count - 1} exceeds the model's ${this.maxPositions} positions`,
      );
    }
    const h = this.half;
    cos.set(this.cos.subarray(start * h, (start + count) * h), at * h);
    sin.set(this.sin.subarray(start * h, (start + count) * h), at * h);
  }
}
