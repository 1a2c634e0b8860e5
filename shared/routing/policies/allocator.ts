// `allocator` — a learned K in {0, 1, 2} per token and MoE layer (Ada-K in spirit). Two small linear
// heads per layer read router-derived features of the token and predict the log cost of dropping
// its second expert (`dropSecond`) and of dropping both (`dropAll`); a per-layer threshold on each
// score picks K. Kept experts keep their native weights and every dropped native expert is replaced
// by native weight x its calibrated mean output (the prior), so K = 0 costs no expert call and no
// network. Weights and thresholds live in a profile only (`kmoe train-allocator`).
//
// Features are functions of the router softmax, which is itself a linear projection of the hidden
// state (softmax(W_gate x)), plus a one-hot of the expert the head is about: that one-hot's weights
// act as per-expert thresholds.

import { z } from 'zod';
import { decodeExpertMeans, type ExpertMeans, expertMeansSchema } from '../expert-means.js';
import type { RouterProbs, RoutingDecision, RoutingModel } from '../policy.js';
import { SelectingPolicy, skippedExpertPrior } from './kernel.js';
import { checkExpertTable, checkLayerCount, type PolicyKind, validatePolicy } from './policy-kind.js';

/** The dense features every head reads, in this order, before the one-hot of its expert. */
export const ALLOCATOR_FEATURES = ['bias', 'w2', 'ratio', 'entropy', 'p1', 'logW2'] as const;
/** Name of the feature set above; a profile records it so a change of features is detected, not misread. */
export const ALLOCATOR_FEATURE_SET = 'router-v1';
const F = ALLOCATOR_FEATURES.length;
/** Keeps ln(w2) finite for one-hot rows. */
const LOG_EPS = 1e-6;

const layerHeadSchema = z
  .object({
    /** [features..., one weight per expert (the token's rank-2 expert)]: predicted ln cost of K=1. */
    dropSecond: z.array(z.number()),
    /** [features..., one weight per expert (the token's rank-1 expert)]: predicted ln cost of K=0. */
    dropAll: z.array(z.number()),
    /** K <= 1 when the dropSecond score is below this. */
    k1Below: z.number(),
    /** K = 0 when K <= 1 and the dropAll score is below this. */
    k0Below: z.number(),
  })
  .strict();

export const allocatorSchema = z
  .object({
    kind: z.literal('allocator'),
    featureSet: z.literal(ALLOCATOR_FEATURE_SET),
    /** One head pair per MoE layer. */
    layers: z.array(layerHeadSchema).min(1),
    /** Mean output of every (layer, expert) over tokens that had it at rank 2: replaces a dropped rank-2 expert. */
    expertMeans: expertMeansSchema,
    /** The same over tokens that had it at rank 1: replaces the rank-1 expert at K = 0. */
    leadMeans: expertMeansSchema,
  })
  .strict()
  .superRefine((config, ctx) => {
    for (const message of checkAllocator(config)) ctx.addIssue({ code: 'custom', message });
  });

export type AllocatorConfig = z.infer<typeof allocatorSchema>;
export type AllocatorLayerHead = z.infer<typeof layerHeadSchema>;

function checkAllocator(config: AllocatorConfig, model?: RoutingModel): string[] {
  const problems = checkLayerCount('layers', config.layers.length, model);
  const means = decodeExpertMeans(config.expertMeans);
  if (typeof means === 'string') return [...problems, means];
  const lead = decodeExpertMeans(config.leadMeans);
  if (typeof lead === 'string') return [...problems, `leadMeans: ${lead}`];
  if (lead.layers !== means.layers || lead.experts !== means.experts || lead.hidden !== means.hidden)
    problems.push('leadMeans and expertMeans differ in shape');
  // The features (w2 = p2 / (p1 + p2), p1, entropy) and the drop-cost training are defined on a
  // softmax router: a sigmoid gate's scores are not a distribution the heads were fitted on.
  const gate = model?.rule?.gate ?? 'softmax';
  if (gate !== 'softmax')
    problems.push(`the allocator needs a softmax router gate; the model's gate is ${gate}`);
  if (model !== undefined && model.nativeK !== 2)
    problems.push(`the allocator picks K in {0, 1, 2}; the model's native K is ${model.nativeK}`);
  const E = model?.numExperts ?? means.experts;
  problems.push(...checkExpertTable('expertMeans', means, model));
  config.layers.forEach((head, l) => {
    for (const name of ['dropSecond', 'dropAll'] as const) {
      if (head[name].length !== F + E)
        problems.push(
          `layers[${l}].${name} has ${head[name].length} weights, expected ${F} features + ${E} experts`,
        );
      if (!head[name].every(Number.isFinite)) problems.push(`layers[${l}].${name} has a non-finite weight`);
    }
  });
  return problems;
}

/**
 * The dense features of one token from its two largest normalised scores (the kernel's `top`) and its router entropy, in
 * ALLOCATOR_FEATURES order; `out` must hold F values.
 */
export function allocatorFeatures(p1: number, p2: number, entropy: number, out: Float64Array): Float64Array {
  const w2 = p1 + p2 > 0 ? p2 / (p1 + p2) : 0;
  out[0] = 1;
  out[1] = w2;
  out[2] = p1 > 0 ? p2 / p1 : 0;
  out[3] = Math.max(entropy, 0);
  out[4] = p1;
  out[5] = Math.log(w2 + LOG_EPS);
  return out;
}

/** One head's score: dense weights . features + the weight of `expert`. */
export function headScore(weights: readonly number[], features: Float64Array, expert: number): number {
  let s = weights[F + expert]!;
  for (let i = 0; i < F; i++) s += weights[i]! * features[i]!;
  return s;
}

export class AllocatorPolicy extends SelectingPolicy {
  private readonly heads: readonly AllocatorLayerHead[];
  private readonly means: ExpertMeans;
  private readonly leadMeans: ExpertMeans;
  private readonly features = new Float64Array(F);
  protected override readonly zeroK = true;

  constructor(config: AllocatorConfig, model: RoutingModel, name?: string) {
    const spec = validatePolicy(allocatorKind, config, model, name);
    super(spec, model.nativeK, model);
    this.heads = config.layers;
    // validatePolicy already rejected undecodable means.
    this.means = decodeExpertMeans(config.expertMeans) as ExpertMeans;
    this.leadMeans = decodeExpertMeans(config.leadMeans) as ExpertMeans;
  }

  override route(input: RouterProbs): RoutingDecision {
    const { decision, candidates } = this.routeWithCandidates(input);
    const prior = skippedExpertPrior(input, decision, candidates, {
      K: this.maxK,
      normaliser: (raw) => this.weightNormaliser(this.maxK, raw),
      scale: this.rule.routedScalingFactor,
      // A dropped rank-1 expert is replaced by its rank-1 mean, a dropped rank-2 one by its rank-2 mean.
      estimates: [
        { kind: 'mean', means: this.leadMeans },
        { kind: 'mean', means: this.means },
      ],
    });
    return { ...decision, prior };
  }

  protected chooseK(layer: number, entropy: number, top: Float64Array, topExperts: Int32Array): number {
    const head = this.heads[layer]!;
    const f = allocatorFeatures(top[0]!, top[1]!, entropy, this.features);
    if (!(headScore(head.dropSecond, f, topExperts[1]!) < head.k1Below)) return 2;
    return headScore(head.dropAll, f, topExperts[0]!) < head.k0Below ? 0 : 1;
  }

  /**
   * Native weights whatever K was kept: under a renormalising rule divide by the native top-K's
   * scores; without renormalisation the weights are the scores themselves.
   */
  protected override weightNormaliser(k: number, raw: Float64Array): number {
    return super.weightNormaliser(this.rule.renormalize ? this.maxK : k, raw);
  }
}

export const allocatorKind: PolicyKind<AllocatorConfig> = {
  kind: 'allocator',
  grammar: 'allocator (profile only)',
  summary: 'learned per-layer heads choose K in {0,1,2}; dropped experts replaced by their mean output',
  parseSpec: (_body, fail) =>
    fail('the allocator has learned weights: pass its profile (kmoe train-allocator)'),
  formatSpec: () => undefined,
  check: checkAllocator,
  create: (config, model, name) => new AllocatorPolicy(config, model, name),
};
