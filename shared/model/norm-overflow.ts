// Whether a hidden-state row is still something RMSNorm can normalise in float32: the engine checks
// the final hidden state with it, the remote expert backend the residual after combining workers'
// results (values a worker may choose).

const FLOAT32_MAX = 3.4028234663852886e38;

/**
 * A hidden-state row RMSNorm cannot normalise in float32: a NaN or infinity, or a sum of squares
 * beyond float32's range (the norm then divides by infinity and the row comes out 0).
 */
export function normOverflows(row: Float32Array): boolean {
  // Four sums keep the adds independent (about twice as fast as one chain): the remote backend
  // checks every row of every layer.
  let a = 0;
  let b = 0;
  let c = 0;
  let d = 0;
  const n = row.length;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const w = row[i]!;
    const x = row[i + 1]!;
    const y = row[i + 2]!;
    const z = row[i + 3]!;
    a += w * w;
    b += x * x;
    c += y * y;
    d += z * z;
  }
  for (; i < n; i++) a += row[i]! * row[i]!;
  return !(a + b + (c + d) < FLOAT32_MAX);
}
