// The one tensor shape that crosses module boundaries: dtype + shape + flat row-major data,
// with the element count checked where the tensor is made.

export type TensorDType = 'float32' | 'float16' | 'bfloat16' | 'int32' | 'int64';

export interface TensorDataOf {
  float32: Float32Array;
  float16: Uint16Array;
  bfloat16: Uint16Array;
  int32: Int32Array;
  int64: BigInt64Array;
}

export interface Tensor<D extends TensorDType = TensorDType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly data: TensorDataOf[D];
}

export type F32Tensor = Tensor<'float32'>;

export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0)
      throw new RangeError(`invalid dimension ${d} in shape [${shape.join(', ')}]`);
    n *= d;
  }
  return n;
}

/** Wraps data as a tensor after checking that shape and data length agree. */
export function makeTensor<D extends TensorDType>(
  dtype: D,
  shape: readonly number[],
  data: TensorDataOf[D],
): Tensor<D> {
  const n = elementCount(shape);
  if (data.length !== n) {
    throw new RangeError(
      `tensor data has ${data.length} elements but shape [${shape.join(', ')}] needs ${n}`,
    );
  }
  return { dtype, shape: [...shape], data };
}

export function f32(shape: readonly number[], data?: Float32Array): F32Tensor {
  return makeTensor('float32', shape, data ?? new Float32Array(elementCount(shape)));
}

/** Concatenates [r_i, c] matrices along rows (projections that share an input become one matmul). */
export function stackRows(parts: readonly F32Tensor[]): F32Tensor {
  const cols = parts[0]!.shape[1]!;
  let rows = 0;
  for (const p of parts) {
    if (p.shape.length !== 2 || p.shape[1] !== cols) throw new RangeError('stackRows: column counts differ');
    rows += p.shape[0]!;
  }
  const data = new Float32Array(rows * cols);
  let at = 0;
  for (const p of parts) {
    data.set(p.data, at);
    at += p.data.length;
  }
  return { dtype: 'float32', shape: [rows, cols], data };
}
