// What a worker's --max-frame-mb means in tokens. A coordinator cuts a share larger than the
// worker's frame limit into pieces, one round trip each (at most two in flight): a limit that fits
// only a few tokens works, but a prefill or a batch of many streams then costs many round trips
// instead of one. So the worker says so when it starts, and `kmoe serve` when it connects one,
// each with the limit that would fit a prefill chunk.

import { dispatchSizeBound } from './codec.js';
import { expertIndexDType } from './messages.js';
import { DEFAULT_WIRE_DTYPE, type WireDType } from './wire-dtype.js';

/** A worker whose frame fits fewer tokens than this warns: serve's default prefill chunk. */
export const FEW_TOKENS_PER_FRAME = 64;

/** A worker's shape as a frame limit sees it: the model's and what the worker holds. */
export interface FrameShape {
  readonly hidden: number;
  readonly numExperts: number;
  readonly held: number;
  readonly wire: WireDType;
}

/** Bytes of a request of `tokens` tokens, each sent to every expert the worker holds. */
function requestBytes(o: FrameShape, tokens: number): number {
  const bound = dispatchSizeBound({ wire: o.wire, hidden: o.hidden, index: expertIndexDType(o.numExperts) });
  return bound(tokens, tokens * o.held);
}

/**
 * Tokens of one request that fit `maxFrameBytes` on the `wire`, at the worst: every expert the
 * worker holds chosen for each token.
 */
export function tokensPerFrame(o: FrameShape & { readonly maxFrameBytes: number }): number {
  const fixed = requestBytes(o, 0);
  const perToken = requestBytes(o, 1) - fixed;
  return Math.max(0, Math.floor((o.maxFrameBytes - fixed) / perToken));
}

/** The --max-frame-mb (rounded up to 0.001) that fits FEW_TOKENS_PER_FRAME tokens on the `wire`. */
export function chunkFrameMib(o: FrameShape): number {
  return Math.ceil((requestBytes(o, FEW_TOKENS_PER_FRAME) / 2 ** 20) * 1000) / 1000;
}

/**
 * The warning for a frame limit that fits fewer than FEW_TOKENS_PER_FRAME tokens on the fp32 wire
 * (the largest rows), if it does; it names what fits on the default wire too.
 */
export function fewTokensWarning(o: {
  readonly maxFrameBytes: number;
  readonly hidden: number;
  readonly numExperts: number;
  readonly held: number;
}): string | undefined {
  const fp32 = tokensPerFrame({ ...o, wire: 'fp32' });
  if (fp32 >= FEW_TOKENS_PER_FRAME) return undefined;
  const usual = tokensPerFrame({ ...o, wire: DEFAULT_WIRE_DTYPE });
  const mib = chunkFrameMib({ ...o, wire: 'fp32' });
  const none =
    fp32 === 0
      ? '; on a wire where not one token fits, a coordinator sends the pairs to other workers holding the experts, and fails the requests that need an expert only this worker holds'
      : '';
  return (
    `--max-frame-mb ${frameMib(o.maxFrameBytes)} fits ${tokenCount(usual)} of hidden size ${o.hidden} on the ${DEFAULT_WIRE_DTYPE} wire (the default) and ${tokenCount(fp32)} on fp32, ` +
    `each token sent to all ${o.held} experts this worker holds: coordinators cut larger shares into requests of about that many, one round trip each${none}; ` +
    `--max-frame-mb ${mib} fits ${FEW_TOKENS_PER_FRAME} on any wire`
  );
}

/** "not one token", "1 token", "n tokens". */
export function tokenCount(n: number): string {
  return n === 0 ? 'not one token' : n === 1 ? '1 token' : `${n} tokens`;
}

/** A frame limit in MiB as --max-frame-mb is written (to 6 decimals, no trailing zeros). */
export function frameMib(bytes: number): number {
  return Number((bytes / 2 ** 20).toFixed(6));
}
