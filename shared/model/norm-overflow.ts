// Whether a hidden-state row is still something RMSNorm can normalise in float32: the engine checks
// the final hidden state with it, the remote expert backend the residual after combining workers'
// results (values a worker may choose).

const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * A hidden-state row RMSNorm cannot normalise in float32: a NaN or infinity, or a sum of squares
 * beyond float32's range (the norm then divides by infinity and the row comes out 0).
 */
export function normOverflows(row: Float32Array): boolean {
  let sumSquares = 0;
  for (let i = 0; i < row.length; i++) sumSquares += row[i]! * row[i]!;
  return !(sumSquares < FLOAT32_MAX);
}
