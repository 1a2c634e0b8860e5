// What a worker's --max-frame-mb fits in tokens (shared/protocol/frame-capacity.ts) agrees with
// where the coordinator cuts a share (cutRows with the protocol's size bound, as the backend cuts),
// the limit it suggests fits a prefill chunk, and the worker's start-up warning appears only for
// limits that fit fewer tokens than that.

import { describe, expect, it } from 'vitest';
import { cutRows } from '../../../coordinator/cluster/dispatch-plan.js';
import { dispatchSizeBound } from '../../../shared/protocol/codec.js';
import {
  chunkFrameMib,
  FEW_TOKENS_PER_FRAME,
  fewTokensWarning,
  tokensPerFrame,
} from '../../../shared/protocol/frame-capacity.js';
import { expertIndexDType } from '../../../shared/protocol/messages.js';
import type { WireDType } from '../../../shared/protocol/wire-dtype.js';

/** Where the coordinator cuts `tokens` rows of `held` pairs each for a worker of this limit. */
function firstPiece(o: {
  maxFrameBytes: number;
  hidden: number;
  numExperts: number;
  held: number;
  wire: WireDType;
  tokens: number;
}): number {
  const bound = dispatchSizeBound({ wire: o.wire, hidden: o.hidden, index: expertIndexDType(o.numExperts) });
  const offsets = Int32Array.from({ length: o.tokens + 1 }, (_, i) => i * o.held);
  const cut = cutRows(offsets, (rows, pairs) => bound(rows, pairs) <= o.maxFrameBytes);
  return 'tooLarge' in cut ? 0 : cut.cuts[1]!;
}

describe('tokensPerFrame', () => {
  it("is the coordinator's first cut of a share whose tokens use every expert the worker holds", () => {
    for (const [maxFrameBytes, hidden, numExperts, held, wire] of [
      [10_486, 256, 8, 4, 'fp32'],
      [10_486, 256, 8, 8, 'bf16'],
      [1_049, 256, 8, 8, 'fp32'],
      [1 << 20, 6144, 8, 2, 'fp32'],
      [1 << 20, 2048, 300, 37, 'fp16'],
      [64 << 20, 6144, 8, 8, 'fp32'],
    ] as const) {
      const o = { maxFrameBytes, hidden, numExperts, held, wire };
      const n = tokensPerFrame(o);
      expect(firstPiece({ ...o, tokens: n + 5 })).toBe(n);
    }
  });
});

describe('chunkFrameMib', () => {
  it('fits a prefill chunk on its wire, and 0.001 MiB less does not', () => {
    for (const [hidden, numExperts, held, wire] of [
      [256, 8, 8, 'bf16'],
      [256, 8, 4, 'fp32'],
      [6144, 8, 2, 'fp16'],
      [2048, 300, 37, 'fp32'],
    ] as const) {
      const o = { hidden, numExperts, held, wire };
      const mib = chunkFrameMib(o);
      expect(tokensPerFrame({ ...o, maxFrameBytes: Math.floor(mib * 2 ** 20) })).toBeGreaterThanOrEqual(
        FEW_TOKENS_PER_FRAME,
      );
      expect(tokensPerFrame({ ...o, maxFrameBytes: Math.floor((mib - 0.001) * 2 ** 20) })).toBeLessThan(
        FEW_TOKENS_PER_FRAME,
      );
    }
  });
});

describe('fewTokensWarning', () => {
  it('is silent for the default 64 MiB at Mixtral 8x22B shapes', () => {
    expect(
      fewTokensWarning({ maxFrameBytes: 64 << 20, hidden: 6144, numExperts: 8, held: 8 }),
    ).toBeUndefined();
  });

  it('names the tokens that fit on the default wire and on fp32, and the limit that fits a prefill chunk', () => {
    const o = { maxFrameBytes: 10_486, hidden: 256, numExperts: 8, held: 4 };
    expect(fewTokensWarning(o)).toBe(
      '--max-frame-mb 0.01 fits 19 tokens of hidden size 256 on the bf16 wire (the default) and 9 tokens on fp32, each token sent to all 4 experts this worker holds: coordinators cut larger shares into requests of about that many, one round trip each; --max-frame-mb 0.065 fits 64 on any wire',
    );
    expect(tokensPerFrame({ ...o, wire: 'bf16' })).toBe(19);
    // The limit it suggests does fit a chunk.
    expect(
      tokensPerFrame({ ...o, maxFrameBytes: Math.round(0.065 * 2 ** 20), wire: 'fp32' }),
    ).toBeGreaterThanOrEqual(FEW_TOKENS_PER_FRAME);
  });

  it('quotes the limit as given', () => {
    expect(
      fewTokensWarning({ maxFrameBytes: 100 * 2 ** 20, hidden: 600_000, numExperts: 8, held: 8 }),
    ).toMatch(
      /^--max-frame-mb 100 fits 87 tokens of hidden size 600000 on the bf16 wire \(the default\) and 43 tokens on fp32/,
    );
  });

  it('says what a coordinator does when not one token fits', () => {
    expect(fewTokensWarning({ maxFrameBytes: 1_049, hidden: 256, numExperts: 8, held: 8 })).toMatch(
      /^--max-frame-mb 0\.001 fits 1 token of hidden size 256 on the bf16 wire \(the default\) and not one token on fp32, .*; on a wire where not one token fits, a coordinator sends the pairs to other workers holding the experts, and fails the requests that need an expert only this worker holds; --max-frame-mb 0\.\d+ fits 64 on any wire$/,
    );
  });
});
