// Trains the learned K allocator (`allocator` policy) on calibration text only:
// 1. measure, per token and MoE layer under native top-2, the residual error of K = 1 and K = 0
//    with dropped experts replaced by their mean (DropCostProbe; two passes: means, then costs);
// 2. fit two ridge regressions per layer, ln(cost) on router features + a one-hot of the expert;
// 3. map per-layer rates (fraction of tokens below a score) to thresholds and search them for the
//    fewest activations within a perplexity budget with real reduced-K forward passes;
// 4. choose the point of the search path by held-out calibration windows (the other fold), not by
//    the search windows: the budget is what a cross-validation on calibration data holds.
// A supervised target (measured per-token drop cost) instead of Ada-K's policy gradient: the cost of
// each action is measurable per token in one pass, so regression needs no rollouts, is
// deterministic and trains in seconds; the non-local effect on perplexity is handled by the
// per-layer thresholds, which are searched with real forward passes.

import { loadModelConfig } from '../../shared/model/config.js';
import { type ExpertMeans, encodeExpertMeans } from '../../shared/routing/expert-means.js';
import {
  ALLOCATOR_FEATURE_SET,
  ALLOCATOR_FEATURES,
  type AllocatorConfig,
  allocatorFeatures,
  headScore,
} from '../../shared/routing/policies/allocator.js';
import { profileVersionFor, type RoutingProfile } from '../../shared/routing/profile.js';
import type { EngineClient } from '../engine/engine-client.js';
import { evaluatePerplexity } from '../evaluation/perplexity.js';
import { STANDARD_WINDOW } from '../evaluation/windows.js';
import type { DropCostLayer } from '../moe/observers/drop-costs.js';
import { type Corpus, describeCorpus, spreadWindows } from './corpus.js';
import { CalibrationError } from './errors.js';
import { signedPercent } from './format.js';
import {
  describeSearchPoint,
  inlineProfile,
  maxSearchEvaluations,
  profileModel,
  qualitySearch,
  type SearchPoint,
} from './quality-search.js';

export interface AllocatorTrainingOptions {
  readonly corpus: Corpus;
  /** Windows of fold A the heads are fitted on (drop costs measured there). */
  readonly trainWindows: number;
  /** Windows of fold A the threshold search measures on. */
  readonly searchWindows: number;
  /** Windows of fold B (never searched on) that choose the point of the search path. */
  readonly holdoutWindows: number;
  /** Perplexity budget of the search on fold A (relative). */
  readonly searchBudget: number;
  /** Allowed relative perplexity increase on the held-out fold. */
  readonly target: number;
  readonly step: number;
  /** Ridge penalty of the head regressions. */
  readonly ridge: number;
  /** false: heads for K = 1 only (K = 0 never chosen). */
  readonly allowZero: boolean;
  readonly name: string;
  readonly command: string;
  readonly onPhase?: (phase: string, done: number, total: number, note?: string) => void;
  /**
   * The search of an earlier run with the same data and options (its profile's provenance): skip
   * the search and only choose the point on the held-out fold, e.g. for another --budget. The
   * heads are refitted (deterministic), so the rates mean the same thresholds.
   */
  readonly replay?: {
    readonly base: SearchPoint;
    readonly path: SearchPoint[];
    readonly evaluations: number;
  };
}

/** Offsets K = 0 thresholds when K = 0 is disabled or a rate is 0 / 1: scores are ln costs, far inside. */
const NEVER = -1e9;
const ALWAYS = 1e9;
/** Keeps ln(cost) finite for tokens whose expert output equals the mean. */
const COST_EPS = 1e-8;

/** Windows of even (fold 0) or odd (fold 1) index: two interleaved folds of the calibration corpus. */
export function foldOf(corpus: Corpus, fold: 0 | 1): Corpus {
  const L = corpus.windowLen;
  const count = Math.floor((corpus.windows - fold + 1) / 2);
  const ids = new Uint16Array(count * L);
  for (let i = 0; i < count; i++) {
    const w = 2 * i + fold;
    ids.set(corpus.ids.subarray(w * L, (w + 1) * L), i * L);
  }
  return { ids, windows: count, windowLen: L, parts: corpus.parts };
}

/**
 * Ridge regression by the normal equations (D is small: features + experts): minimises
 * ||X w - y||^2 + ridge ||w||^2 (the bias included, to keep the system well-posed). fp64.
 */
export function ridgeFit(X: Float64Array, y: Float64Array, D: number, ridge: number): Float64Array {
  const n = y.length;
  const A = new Float64Array(D * D);
  const b = new Float64Array(D);
  for (let r = 0; r < n; r++) {
    const row = r * D;
    for (let i = 0; i < D; i++) {
      const xi = X[row + i]!;
      if (xi === 0) continue;
      b[i]! += xi * y[r]!;
      for (let j = 0; j < D; j++) A[i * D + j]! += xi * X[row + j]!;
    }
  }
  for (let i = 0; i < D; i++) A[i * D + i]! += ridge * n;
  // Gaussian elimination with partial pivoting.
  const w = b.slice();
  for (let c = 0; c < D; c++) {
    let p = c;
    for (let r = c + 1; r < D; r++) if (Math.abs(A[r * D + c]!) > Math.abs(A[p * D + c]!)) p = r;
    if (p !== c) {
      for (let j = 0; j < D; j++) {
        const t = A[c * D + j]!;
        A[c * D + j] = A[p * D + j]!;
        A[p * D + j] = t;
      }
      const t = w[c]!;
      w[c] = w[p]!;
      w[p] = t;
    }
    const pivot = A[c * D + c]!;
    for (let r = c + 1; r < D; r++) {
      const f = A[r * D + c]! / pivot;
      if (f === 0) continue;
      for (let j = c; j < D; j++) A[r * D + j]! -= f * A[c * D + j]!;
      w[r]! -= f * w[c]!;
    }
  }
  for (let c = D - 1; c >= 0; c--) {
    let s = w[c]!;
    for (let j = c + 1; j < D; j++) s -= A[c * D + j]! * w[j]!;
    w[c] = s / A[c * D + c]!;
  }
  return w;
}

interface FittedLayer {
  readonly dropSecond: number[];
  readonly dropAll: number[];
  /** Scores of the training tokens, ascending: rates map to thresholds through them. */
  readonly secondScores: Float64Array;
  readonly allScores: Float64Array;
  /** Spearman-free quality note: R^2 of each regression on its training tokens. */
  readonly r2: { dropSecond: number; dropAll: number };
}

function fitLayer(c: DropCostLayer, numExperts: number, ridge: number): FittedLayer {
  const F = ALLOCATOR_FEATURES.length;
  const D = F + numExperts;
  const n = c.p1.length;
  const feats = new Float64Array(F);
  const heads = (['dropSecond', 'dropAll'] as const).map((target) => {
    const X = new Float64Array(n * D);
    const y = new Float64Array(n);
    for (let t = 0; t < n; t++) {
      allocatorFeatures(c.p1[t]!, c.p2[t]!, c.entropy[t]!, feats);
      X.set(feats, t * D);
      X[t * D + F + (target === 'dropSecond' ? c.e2[t]! : c.e1[t]!)] = 1;
      y[t] = Math.log(c[target][t]! + COST_EPS);
    }
    const w = Array.from(ridgeFit(X, y, D, ridge));
    const scores = new Float64Array(n);
    let mean = 0;
    for (let t = 0; t < n; t++) mean += y[t]! / n;
    let ssRes = 0;
    let ssTot = 0;
    for (let t = 0; t < n; t++) {
      allocatorFeatures(c.p1[t]!, c.p2[t]!, c.entropy[t]!, feats);
      scores[t] = headScore(w, feats, target === 'dropSecond' ? c.e2[t]! : c.e1[t]!);
      ssRes += (y[t]! - scores[t]!) ** 2;
      ssTot += (y[t]! - mean) ** 2;
    }
    return { w, scores: scores.sort(), r2: ssTot > 0 ? 1 - ssRes / ssTot : 0 };
  });
  return {
    dropSecond: heads[0]!.w,
    dropAll: heads[1]!.w,
    secondScores: heads[0]!.scores,
    allScores: heads[1]!.scores,
    r2: { dropSecond: heads[0]!.r2, dropAll: heads[1]!.r2 },
  };
}

/** Score below which a fraction `rate` of the training tokens fall. */
function thresholdAt(sorted: Float64Array, rate: number): number {
  if (rate <= 0 || sorted.length === 0) return NEVER;
  if (rate >= 1) return ALWAYS;
  const i = Math.min(sorted.length - 1, Math.floor(rate * sorted.length));
  return sorted[i]!;
}

const zeroMeans = (layers: number, experts: number, hidden: number): ExpertMeans => ({
  layers,
  experts,
  hidden,
  data: new Float32Array(layers * experts * hidden),
});

export async function trainAllocator(
  engine: EngineClient,
  o: AllocatorTrainingOptions,
): Promise<RoutingProfile> {
  const info = engine.info;
  if (info.nativeK !== 2) {
    throw new CalibrationError(
      `the allocator picks K in {0, 1, 2}; this model's native K is ${info.nativeK}`,
      {
        code: 'calibration_native_k',
        details: { nativeK: info.nativeK },
      },
    );
  }
  const gate = info.routing.rule?.gate ?? 'softmax';
  if (gate !== 'softmax') {
    throw new CalibrationError(`the allocator needs a softmax router gate; this model's gate is ${gate}`, {
      code: 'calibration_allocator_gate',
      details: { gate },
    });
  }
  // Policies, means and heads are indexed by MoE layer.
  const L = info.routing.numLayers;
  const E = info.numExperts;
  const H = (await loadModelConfig(info.modelDir)).hiddenSize;
  const foldA = foldOf(o.corpus, 0);
  const foldB = foldOf(o.corpus, 1);
  const trainIds = spreadWindows(foldA, o.trainWindows);
  const started = Date.now();

  // Pass 1: the rank-1 / rank-2 means (its costs are against zero and discarded); pass 2: costs.
  const zero = encodeExpertMeans(zeroMeans(L, E, H));
  const first = await engine.dropCosts(trainIds.slice(), STANDARD_WINDOW, {
    lead: zero,
    second: zero,
    onProgress: (d, t) => o.onPhase?.('means', d, t),
  });
  const lead = encodeExpertMeans(first.leadMeans);
  const second = encodeExpertMeans(first.secondMeans);
  const costs = await engine.dropCosts(trainIds.slice(), STANDARD_WINDOW, {
    lead,
    second,
    onProgress: (d, t) => o.onPhase?.('costs', d, t),
  });
  const fitted = costs.layers.map((c) => fitLayer(c, E, o.ridge));
  const trainSeconds = (Date.now() - started) / 1000;

  const configFor = (rates: readonly number[]): AllocatorConfig => ({
    kind: 'allocator',
    featureSet: ALLOCATOR_FEATURE_SET,
    layers: fitted.map((f, l) => ({
      dropSecond: f.dropSecond,
      dropAll: f.dropAll,
      k1Below: thresholdAt(f.secondScores, rates[l]!),
      k0Below: o.allowZero ? thresholdAt(f.allScores, rates[L + l]!) : NEVER,
    })),
    expertMeans: second,
    leadMeans: lead,
  });

  const searchIds = spreadWindows(foldA, o.searchWindows);
  const dims = o.allowZero ? 2 * L : L;
  // Upper bound, as in calibrate(): each round raises one rate by one step after `dims` trials.
  const maxEvaluations = maxSearchEvaluations(dims, o.step);
  const search =
    o.replay ??
    (await qualitySearch(engine, {
      configFor: (rates) => configFor(o.allowZero ? rates : [...rates, ...new Array<number>(L).fill(0)]),
      dims,
      ids: searchIds,
      windowLen: STANDARD_WINDOW,
      budget: o.searchBudget,
      step: o.step,
      minStep: o.step / 4,
      onEvaluation: (n, best: SearchPoint, base: SearchPoint) =>
        o.onPhase?.('search', n, maxEvaluations, describeSearchPoint(best, base)),
    }));
  const full = (rates: readonly number[]) =>
    o.allowZero ? rates : [...rates, ...new Array<number>(L).fill(0)];

  // Cross-validation: walk the path from the most saving point back; the first within target on
  // the held-out fold is taken (the path ends at native routing, within any target).
  const holdoutIds = spreadWindows(foldB, o.holdoutWindows);
  const native = await evaluatePerplexity(engine, holdoutIds, { routing: `topk:${info.nativeK}` });
  const candidates = [...search.path].reverse();
  const checked: { rates: number[]; avgK: number; ppl: number }[] = [];
  for (const [i, point] of candidates.entries()) {
    const config = configFor(full(point.rates));
    const r = await evaluatePerplexity(engine, holdoutIds, { routing: inlineProfile(config, o.name) });
    const increase = r.perplexity / native.perplexity - 1;
    checked.push({ rates: point.rates, avgK: r.avgK, ppl: r.perplexity });
    o.onPhase?.(
      'holdout',
      i + 1,
      candidates.length,
      `avgK ${r.avgK.toFixed(3)} ppl ${signedPercent(increase)}`,
    );
    if (increase <= o.target || i === candidates.length - 1) {
      return {
        kmoeRoutingProfile: profileVersionFor(config),
        policy: config,
        model: profileModel(info.routing, info.fingerprint),
        provenance: {
          name: o.name,
          createdAt: new Date().toISOString(),
          method: 'allocator',
          data: describeCorpus(o.corpus),
          command: o.command,
          target: 'ridge regression of ln(residual error of K=1 / K=0 with mean prior) per layer',
          folds: 'fold A = even calibration windows (heads, search), fold B = odd windows (choice of point)',
          trainWindows: trainIds.length / STANDARD_WINDOW,
          trainTokens: costs.tokens,
          trainSeconds,
          r2: fitted.map((f) => f.r2),
          searchWindows: searchIds.length / STANDARD_WINDOW,
          searchBudget: o.searchBudget,
          holdoutWindows: holdoutIds.length / STANDARD_WINDOW,
          budget: o.target,
          avgK: r.avgK,
          ppl: r.perplexity,
          nativePpl: native.perplexity,
          pplIncrease: increase,
          savingVsNative: r.savingVsNative,
          avgKPerLayer: r.avgKPerLayer,
          rates: full(point.rates),
          evaluations: search.evaluations,
          search: {
            nativePpl: search.base.perplexity,
            path: search.path.map((pt) => ({ rates: pt.rates, ppl: pt.perplexity, avgK: pt.avgK })),
          },
          holdout: checked,
        } as unknown as RoutingProfile['provenance'],
      };
    }
  }
  throw new Error('allocator training produced no candidate');
}
