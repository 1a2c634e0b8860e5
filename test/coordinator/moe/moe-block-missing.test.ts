// MoeBlock when its backend cannot compute some experts (MissingExpertsError): the error is charged
// to the batch items (spans) with a pair on a missing expert, each with the experts it needed, and
// keeps the backend's message and code; an error naming no expert of the batch, and any other
// error, pass through unchanged.

import { describe, expect, it } from 'vitest';
import { MissingExpertsError, MissingExpertsInBatchError } from '../../../coordinator/moe/errors.js';
import type { ExpertBackend } from '../../../coordinator/moe/expert-backend.js';
import { MoeBlock, spansNeeding } from '../../../coordinator/moe/moe-block.js';
import type { MoeLayerPlan } from '../../../shared/families/layer-plan.js';
import type { ExpertAssignment } from '../../../shared/moe/expert-assignment.js';
import { createRoutingPolicy } from '../../../shared/routing/registry.js';

const MODEL = { numLayers: 2, numExperts: 4, nativeK: 1 };
const PLAN: MoeLayerPlan = {
  kind: 'moe',
  numExperts: 4,
  nativeK: 1,
  gate: 'softmax',
  renormalize: true,
  sharedExperts: 0,
  routedScalingFactor: 1,
};
const policy = createRoutingPolicy({ kind: 'topk', k: 1 }, MODEL);

/** Tokens 0..4 prefer experts 0, 3, 1, 3, 2 (top-1). */
const PREFERRED = [0, 3, 1, 3, 2];
const PROBS = Float32Array.from(PREFERRED.flatMap((e) => [0, 1, 2, 3].map((x) => (x === e ? 0.7 : 0.1))));
// Spans: item 0 = tokens 0-1 (experts 0, 3), item 1 = token 2 (1), item 2 = tokens 3-4 (3, 2).
const SPANS = [
  { start: 0, end: 2, policy },
  { start: 2, end: 3, policy },
  { start: 3, end: 5, policy },
];

class Failing implements ExpertBackend {
  readonly description = 'failing';
  constructor(private readonly error: Error) {}
  async compute(): Promise<undefined> {
    throw this.error;
  }
  async close(): Promise<void> {}
}

function forward(backend: ExpertBackend): Promise<unknown> {
  const H = 2;
  const block = new MoeBlock(3, 1, PLAN, backend);
  return block.forward(
    {
      x: { dtype: 'float32', shape: [5, H], data: new Float32Array(5 * H).fill(1) },
      probs: PROBS,
      spans: SPANS,
      accumulate: new Float32Array(5 * H),
    },
    [],
  );
}

describe('MoeBlock with missing experts', () => {
  it('names the spans routed to the missing experts and what each needed', async () => {
    const cause = new MissingExpertsError('experts 2-3 have no live worker (failed: ws://b)', {
      missing: [2, 3],
      code: 'placement',
    });
    const err = await forward(new Failing(cause)).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(MissingExpertsInBatchError);
    const e = err as MissingExpertsInBatchError;
    expect(e.layer).toBe(3);
    expect(e.needs).toEqual([
      { span: 0, missing: [3] },
      { span: 2, missing: [2, 3] },
    ]);
    expect(e.message).toBe(cause.message);
    expect(e.code).toBe('placement');
    expect(e.cause).toBe(cause);
    expect(e.details).toEqual({ layer: 3, spans: [0, 2], missing: [2, 3] });
  });

  it('passes through an error naming no expert of the batch, and any other error', async () => {
    const none = new MissingExpertsError('worker ws://a is listed twice', { missing: [], code: 'placement' });
    await expect(forward(new Failing(none))).rejects.toBe(none);
    const other = new Error('socket hang up');
    await expect(forward(new Failing(other))).rejects.toBe(other);
  });

  it('spansNeeding: every pair on a missing expert is charged to the span owning its row', () => {
    const a: ExpertAssignment = {
      numTokens: 5,
      offsets: Int32Array.from([0, 2, 3, 3, 5, 6]),
      experts: Int32Array.from([0, 1, 2, 3, 1, 1]),
      weights: new Float32Array(6).fill(0.5),
    };
    expect(spansNeeding(a, SPANS, [1])).toEqual([
      { span: 0, missing: [1] },
      { span: 2, missing: [1] },
    ]);
    expect(spansNeeding(a, SPANS, [2])).toEqual([{ span: 0, missing: [2] }]);
    expect(spansNeeding(a, SPANS, [])).toEqual([]);
  });
});
