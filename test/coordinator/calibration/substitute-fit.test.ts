// The fit behind linear substitutes: Cholesky solves, the symmetric eigen-decomposition, and the
// reduced-rank ridge fit from regression statistics, checked against data with a known answer.

import { describe, expect, it } from 'vitest';
import { choleskySolve, fitSubstitutes } from '../../../coordinator/calibration/substitute-fit.js';
import { symmetricEigen } from '../../../coordinator/calibration/symmetric-eigen.js';
import type { SubstituteStats } from '../../../coordinator/moe/observers/substitute-stats.js';
import { addSubstitute } from '../../../shared/routing/expert-substitutes.js';

function gaussian(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** Regression statistics of (x, y) rows for one layer, as SubstituteStatsProbe accumulates them. */
function statsOf(xs: number[][][], ys: number[][][], hidden: number): SubstituteStats {
  const experts = xs.length;
  const D = hidden + 1;
  const s: SubstituteStats = {
    layers: 1,
    experts,
    hidden,
    counts: new Float64Array(experts),
    gram: new Float64Array(experts * D * D),
    cross: new Float64Array(experts * D * hidden),
    sumSquares: new Float64Array(experts),
  };
  for (let e = 0; e < experts; e++) {
    xs[e]!.forEach((x, t) => {
      const a = [...x, 1];
      const y = ys[e]![t]!;
      s.counts[e]!++;
      for (let i = 0; i < D; i++) for (let j = 0; j < D; j++) s.gram[e * D * D + i * D + j]! += a[i]! * a[j]!;
      for (let i = 0; i < D; i++)
        for (let o = 0; o < hidden; o++) s.cross[e * D * hidden + i * hidden + o]! += a[i]! * y[o]!;
      for (const v of y) s.sumSquares[e]! += v * v;
    });
  }
  return s;
}

describe('substitute fit', () => {
  it('choleskySolve solves a symmetric positive definite system', () => {
    const n = 5;
    const rand = gaussian(1);
    const B = Array.from({ length: n * n }, rand);
    const A = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j < n; j++) {
        let s = i === j ? 1 : 0;
        for (let k = 0; k < n; k++) s += B[i * n + k]! * B[j * n + k]!;
        A[i * n + j] = s;
      }
    const x = [1, -2, 3, 0.5, -1];
    const b = Float64Array.from({ length: n }, (_, i) => x.reduce((s, v, k) => s + A[i * n + k]! * v, 0));
    choleskySolve(A.slice(), b, n, 1);
    for (let i = 0; i < n; i++) expect(b[i]).toBeCloseTo(x[i]!, 9);
    expect(() => choleskySolve(new Float64Array([1, 2, 2, 1]), new Float64Array(2), 2, 1)).toThrow(
      /not positive definite/,
    );
  });

  /** A v = lambda v for every pair, values descending, vectors orthonormal (to `digits`). */
  function expectEigen(S: Float64Array, n: number, digits: number): Float64Array {
    const { values, vectors } = symmetricEigen(S, n);
    const scale = Math.max(1, ...Array.from(S, Math.abs));
    for (let k = 1; k < n; k++) expect(values[k - 1]).toBeGreaterThanOrEqual(values[k]!);
    for (let k = 0; k < n; k++) {
      for (let i = 0; i < n; i++) {
        let av = 0;
        for (let j = 0; j < n; j++) av += S[i * n + j]! * vectors[j * n + k]!;
        expect((av - values[k]! * vectors[i * n + k]!) / scale).toBeCloseTo(0, digits);
      }
      for (let m = 0; m < n; m++) {
        let dot = 0;
        for (let i = 0; i < n; i++) dot += vectors[i * n + k]! * vectors[i * n + m]!;
        expect(dot).toBeCloseTo(k === m ? 1 : 0, digits);
      }
    }
    return values;
  }

  function randomSymmetric(n: number, seed: number): Float64Array {
    const rand = gaussian(seed);
    const S = new Float64Array(n * n);
    for (let i = 0; i < n; i++)
      for (let j = 0; j <= i; j++) {
        const v = rand();
        S[i * n + j] = v;
        S[j * n + i] = v;
      }
    return S;
  }

  it('symmetricEigen returns A v = lambda v, descending, orthonormal', () => {
    for (const n of [1, 2, 7, 40]) expectEigen(randomSymmetric(n, n), n, 9);
  });

  it('symmetricEigen handles zero, repeated and already-reduced matrices, and a low-rank covariance', () => {
    expect(Array.from(expectEigen(new Float64Array(9), 3, 12))).toEqual([0, 0, 0]);
    // Repeated eigenvalues: any orthonormal basis of the eigenspace is right.
    const diag = new Float64Array(16);
    [2, 5, 2, 5].forEach((v, i) => {
      diag[i * 4 + i] = v;
    });
    expect(Array.from(expectEigen(diag, 4, 12))).toEqual([5, 5, 2, 2]);
    // A row and column of zeros (nothing for a reflector to annihilate) inside a random matrix.
    const holed = randomSymmetric(6, 9);
    for (let k = 0; k < 6; k++) {
      holed[3 * 6 + k] = 0;
      holed[k * 6 + 3] = 0;
    }
    expect(Math.min(...Array.from(expectEigen(holed, 6, 9), Math.abs))).toBeLessThan(1e-12);
    // X^T X of rank 3 in 30 dimensions (as the fitted outputs' covariance is when few tokens fit).
    const n = 30;
    const rand = gaussian(4);
    const X = Float64Array.from({ length: 3 * n }, rand);
    const C = new Float64Array(n * n);
    for (let r = 0; r < 3; r++)
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) C[i * n + j]! += X[r * n + i]! * X[r * n + j]!;
    const values = expectEigen(C, n, 9);
    expect(values[2]).toBeGreaterThan(1e-3);
    for (let k = 3; k < n; k++) expect(Math.abs(values[k]!)).toBeLessThan(1e-9);
  });

  it('recovers an affine map of rank r exactly, and a lower rank explains less of the variance', () => {
    const H = 6;
    const r = 2;
    const rand = gaussian(3);
    // y = P (Q x) + c with P: H x r, Q: r x H: rank r; expert 1 never seen.
    const P = Array.from({ length: H * r }, rand);
    const Q = Array.from({ length: r * H }, rand);
    const c = Array.from({ length: H }, rand);
    const f = (x: number[]) =>
      Array.from({ length: H }, (_, o) => {
        let s = c[o]!;
        for (let k = 0; k < r; k++) s += P[o * r + k]! * x.reduce((a, v, i) => a + Q[k * H + i]! * v, 0);
        return s;
      });
    const xs = Array.from({ length: 200 }, () => Array.from({ length: H }, () => 2 + rand()));
    const stats = statsOf([xs, []], [xs.map(f), []], H);
    const fit = fitSubstitutes(stats, { rank: r, ridge: 0 });
    expect(fit.tokens).toEqual([[200, 0]]);
    expect(fit.explained[0]).toBeCloseTo(1, 9);
    const out = new Float32Array(H);
    const probe = Array.from({ length: H }, rand);
    addSubstitute(fit.substitutes, 0, 0, 1, Float32Array.from(probe), 0, out, 0, new Float64Array(r));
    const want = f(probe);
    for (let o = 0; o < H; o++) expect(out[o]).toBeCloseTo(want[o]!, 4);
    // The unseen expert keeps a zero substitute.
    expect(fit.substitutes.bias.subarray(H, 2 * H).every((v) => v === 0)).toBe(true);
    const rank1 = fitSubstitutes(stats, { rank: 1, ridge: 0 });
    expect(rank1.explained[0]).toBeLessThan(0.999);
    // explained = 1 - residual / variance of the outputs, measured directly on the fitting data.
    const ys = xs.map(f);
    const mean = Array.from({ length: H }, (_, o) => ys.reduce((s, y) => s + y[o]!, 0) / ys.length);
    let residual = 0;
    let variance = 0;
    xs.forEach((x, t) => {
      const got = new Float32Array(H);
      addSubstitute(rank1.substitutes, 0, 0, 1, Float32Array.from(x), 0, got, 0, new Float64Array(1));
      for (let o = 0; o < H; o++) {
        residual += (ys[t]![o]! - got[o]!) ** 2;
        variance += (ys[t]![o]! - mean[o]!) ** 2;
      }
    });
    expect(rank1.explained[0]).toBeCloseTo(1 - residual / variance, 4);
    expect(() => fitSubstitutes(stats, { rank: H + 1, ridge: 0 })).toThrow(/rank 7 is not in 1..6/);
  });
});
