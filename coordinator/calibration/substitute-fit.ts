// Fits the linear substitutes of skipped experts from regression statistics (SubstituteStatsProbe):
// per (MoE layer, expert), ridge regression of the rank-2 expert's output on [x, 1], then the best
// rank-r approximation of that map in the output space (reduced-rank regression: project the fitted
// outputs onto the top-r principal directions of their covariance), stored as up (down x) + bias.
// Low rank because the substitute runs per skipped pair on the coordinator: 2 r hidden multiply-adds.

import type { ExpertSubstitutes } from '../../shared/routing/expert-substitutes.js';
import type { SubstituteStats } from '../moe/observers/substitute-stats.js';
import { symmetricEigen } from './symmetric-eigen.js';

export interface SubstituteFitOptions {
  readonly rank: number;
  /** Ridge penalty per token on the input weights (not the bias). */
  readonly ridge: number;
}

export interface SubstituteFit {
  readonly substitutes: ExpertSubstitutes;
  /** [layers][experts]: tokens each fit saw. */
  readonly tokens: number[][];
  /**
   * [layers]: share of the rank-2 outputs' variance around their mean that the rank-r fit explains
   * on the fitting tokens, token-weighted over experts (1 - residual / variance).
   */
  readonly explained: number[];
}

/** Solves A w = b in place for symmetric positive definite A (n x n, row-major), b of shape [n, m]. */
export function choleskySolve(A: Float64Array, b: Float64Array, n: number, m: number): void {
  for (let j = 0; j < n; j++) {
    let d = A[j * n + j]!;
    for (let k = 0; k < j; k++) d -= A[j * n + k]! * A[j * n + k]!;
    if (!(d > 0)) throw new RangeError(`choleskySolve: matrix not positive definite at ${j} (${d})`);
    const l = Math.sqrt(d);
    A[j * n + j] = l;
    for (let i = j + 1; i < n; i++) {
      let s = A[i * n + j]!;
      for (let k = 0; k < j; k++) s -= A[i * n + k]! * A[j * n + k]!;
      A[i * n + j] = s / l;
    }
  }
  for (let c = 0; c < m; c++) {
    for (let i = 0; i < n; i++) {
      let s = b[i * m + c]!;
      for (let k = 0; k < i; k++) s -= A[i * n + k]! * b[k * m + c]!;
      b[i * m + c] = s / A[i * n + i]!;
    }
    for (let i = n - 1; i >= 0; i--) {
      let s = b[i * m + c]!;
      for (let k = i + 1; k < n; k++) s -= A[k * n + i]! * b[k * m + c]!;
      b[i * m + c] = s / A[i * n + i]!;
    }
  }
}

export function fitSubstitutes(stats: SubstituteStats, o: SubstituteFitOptions): SubstituteFit {
  const { layers, experts: E, hidden: H } = stats;
  const R = o.rank;
  if (!(Number.isInteger(R) && R >= 1 && R <= H))
    throw new RangeError(`substitute rank ${R} is not in 1..${H}`);
  const D = H + 1;
  const down = new Float32Array(layers * E * R * H);
  const up = new Float32Array(layers * E * H * R);
  const bias = new Float32Array(layers * E * H);
  const tokens: number[][] = [];
  const explained: number[] = [];
  for (let l = 0; l < layers; l++) {
    tokens.push([]);
    let variance = 0;
    let residual = 0;
    for (let e = 0; e < E; e++) {
      const le = l * E + e;
      const n = stats.counts[le]!;
      tokens[l]!.push(n);
      // An expert never at rank 2 in the calibration text keeps a zero substitute (no information).
      if (n === 0) continue;
      const A = stats.gram.slice(le * D * D, (le + 1) * D * D);
      const W = stats.cross.slice(le * D * H, (le + 1) * D * H);
      const ySum = W.subarray(H * H, D * H).slice();
      for (let i = 0; i < H; i++) A[i * D + i]! += o.ridge * n;
      choleskySolve(A, W, D, H);
      // Mean input and the covariance of the inputs around it.
      const mu = new Float64Array(H);
      const G = stats.gram.subarray(le * D * D, (le + 1) * D * D);
      for (let i = 0; i < H; i++) mu[i] = G[i * D + H]! / n;
      // M = Wx^T Cov(x) Wx: covariance of the fitted outputs; its top eigenvectors are the rank-r directions.
      const covW = new Float64Array(H * H); // Cov(x) Wx, [H in, H out]
      for (let i = 0; i < H; i++) {
        for (let k = 0; k < H; k++) {
          const cik = G[i * D + k]! / n - mu[i]! * mu[k]!;
          if (cik === 0) continue;
          for (let o2 = 0; o2 < H; o2++) covW[i * H + o2]! += cik * W[k * H + o2]!;
        }
      }
      const M = new Float64Array(H * H);
      for (let i = 0; i < H; i++) {
        for (let o1 = 0; o1 < H; o1++) {
          const w = W[i * H + o1]!;
          if (w === 0) continue;
          for (let o2 = 0; o2 < H; o2++) M[o1 * H + o2]! += w * covW[i * H + o2]!;
        }
      }
      const { values, vectors: V } = symmetricEigen(M, H);
      // down = (Wx V)^T, up = V, bias = fitted mean - V (down mu).
      const d0 = le * R * H;
      for (let r = 0; r < R; r++) {
        for (let i = 0; i < H; i++) {
          let s = 0;
          for (let o2 = 0; o2 < H; o2++) s += W[i * H + o2]! * V[o2 * H + r]!;
          down[d0 + r * H + i] = s;
        }
      }
      const u0 = le * H * R;
      for (let o1 = 0; o1 < H; o1++) for (let r = 0; r < R; r++) up[u0 + o1 * R + r] = V[o1 * H + r]!;
      const zMu = new Float64Array(R);
      for (let r = 0; r < R; r++) {
        let s = 0;
        for (let i = 0; i < H; i++) s += down[d0 + r * H + i]! * mu[i]!;
        zMu[r] = s;
      }
      let yMeanSq = 0;
      for (let o1 = 0; o1 < H; o1++) {
        // The fitted mean equals the mean output (the bias column absorbs it), up to the ridge.
        let fitted = W[H * H + o1]!;
        for (let i = 0; i < H; i++) fitted += mu[i]! * W[i * H + o1]!;
        let proj = 0;
        for (let r = 0; r < R; r++) proj += V[o1 * H + r]! * zMu[r]!;
        bias[le * H + o1] = fitted - proj;
        yMeanSq += (ySum[o1]! / n) ** 2;
      }
      const total = stats.sumSquares[le]! - n * yMeanSq;
      let kept = 0;
      for (let r = 0; r < R; r++) kept += Math.max(values[r]!, 0);
      variance += total;
      residual += Math.max(total - n * kept, 0);
    }
    explained.push(variance > 0 ? 1 - residual / variance : 0);
  }
  return { substitutes: { layers, experts: E, rank: R, hidden: H, down, up, bias }, tokens, explained };
}
