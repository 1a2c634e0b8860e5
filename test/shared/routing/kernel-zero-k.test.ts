// The kernel's K = 0 guard: only a policy whose prior stands in for every dropped expert
// (`zeroK`, the allocator) may give a token no expert; any other policy choosing 0 is a bug.

import { describe, expect, it } from 'vitest';
import { SelectingPolicy } from '../../../shared/routing/policies/kernel.js';
import type { RoutingModel } from '../../../shared/routing/policy.js';
import { routerInput, softmax, TINY_MIXTRAL } from './helpers.js';

class FixedK extends SelectingPolicy {
  constructor(
    private readonly k: number,
    model: RoutingModel,
  ) {
    super(`fixed:${k}`, model.nativeK, model);
  }
  protected chooseK(): number {
    return this.k;
  }
}

class FixedKWithPrior extends FixedK {
  protected override readonly zeroK = true;
}

const probs = Float32Array.from(softmax([0.5, 2, -1, 0.25, 1, -2, 0, 3]));

describe('SelectingPolicy K = 0', () => {
  it('refuses K = 0 from a policy without a prior, and K above maxK from any policy', () => {
    expect(() => new FixedK(0, TINY_MIXTRAL).route(routerInput(0, 8, probs))).toThrow(
      /chose K = 0 at layer 0, outside 1\.\.2/,
    );
    expect(() => new FixedKWithPrior(3, TINY_MIXTRAL).route(routerInput(0, 8, probs))).toThrow(
      /chose K = 3 at layer 0, outside 0\.\.2/,
    );
  });

  it('gives a zero-K policy a token with no pairs', () => {
    const d = new FixedKWithPrior(0, TINY_MIXTRAL).route(routerInput(1, 8, probs));
    expect(Array.from(d.offsets)).toEqual([0, 0]);
    expect(d.experts).toHaveLength(0);
    expect(d.weights).toHaveLength(0);
  });
});
