// The arithmetic of `kmoe bench traffic`: what one MoE layer's routing decisions would move between
// a coordinator and W workers, costed (not sent) with the runtime's own rules: the placement's
// expert -> worker assignment (coordinator/cluster/placement.ts), the per-worker shares
// (dispatch-plan.ts `shareSizes`: a token's hidden state once per worker with dedup, once per
// (token, expert) pair without) and the wire protocol's frame sizes (shared/protocol
// `dispatchRequestBytes` + `dispatchResultBytes`: request with hidden states, offsets, expert
// indices and weights; reply with one partial sum per row). WebSocket and TCP/IP headers are not
// counted, as in the runtime's dispatch accounting. One message per worker: a share larger than a
// worker's frame limit (64 MiB by default; 2,729 fp32 tokens at hidden 6,144) is sent in several,
// whose extra headers (under 260 bytes each) are not counted here.

import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';
import { dispatchRequestBytes, dispatchResultBytes } from '../../shared/protocol/codec.js';
import { splitExperts } from '../../shared/protocol/expert-set.js';
import { type ExpertIndexDType, expertIndexDType } from '../../shared/protocol/messages.js';
import type { WireDType } from '../../shared/protocol/wire-dtype.js';
import { pairsOfExperts, shareSizes } from '../cluster/dispatch-plan.js';
import { PlacementTable } from '../cluster/placement.js';

/**
 * The request id every costed message carries. Header sizes depend on it (msgpack integers); a
 * coordinator that has run for a while has ids >= 65536 (encoded in 5 bytes), so that is what is
 * costed, whatever the position in the trace.
 */
export const COSTED_REQUEST_ID = 0x10000;

/** Bytes (both directions), messages, hidden states sent and (token, expert) pairs. */
export interface TrafficCounters {
  bytes: number;
  messages: number;
  hiddenStates: number;
  pairs: number;
}

export const zeroCounters = (): TrafficCounters => ({ bytes: 0, messages: 0, hiddenStates: 0, pairs: 0 });

export function addCounters(into: TrafficCounters, c: TrafficCounters): void {
  into.bytes += c.bytes;
  into.messages += c.messages;
  into.hiddenStates += c.hiddenStates;
  into.pairs += c.pairs;
}

/** A cluster of `workers` workers holding the model's experts in contiguous ranges, each once. */
export class TrafficCluster {
  readonly placement: PlacementTable;
  private readonly live: boolean[];
  private readonly index: ExpertIndexDType;
  private readonly frameCache = new Map<string, number>();

  constructor(
    readonly workers: number,
    readonly numExperts: number,
    readonly hidden: number,
  ) {
    // The split `kmoe local-cluster` and `--workers N` use.
    this.placement = PlacementTable.create(
      splitExperts(numExperts, workers).map((experts, w) => ({ url: `worker-${w}`, experts })),
      numExperts,
    );
    this.live = new Array<boolean>(workers).fill(true);
    this.index = expertIndexDType(numExperts);
  }

  /** Per worker: distinct tokens and pairs of `a` it would receive. */
  shares(a: ExpertAssignment): { tokens: Int32Array; pairs: Int32Array } {
    return shareSizes(a, pairsOfExperts(a, this.placement.assign(a, this.live)), this.workers);
  }

  /** One request with `rows` hidden states and `pairs` pairs to a worker, and its reply. */
  messageBytes(layer: number, wire: WireDType, rows: number, pairs: number): number {
    const key = `${layer}/${wire}/${rows}/${pairs}`;
    let bytes = this.frameCache.get(key);
    if (bytes === undefined) {
      const id = COSTED_REQUEST_ID;
      bytes =
        dispatchRequestBytes({
          id,
          layer,
          wire,
          numTokens: rows,
          numPairs: pairs,
          hidden: this.hidden,
          index: this.index,
        }) + dispatchResultBytes({ id, wire, numTokens: rows, hidden: this.hidden });
      this.frameCache.set(key, bytes);
    }
    return bytes;
  }

  /**
   * The layer sent as one message per worker that has pairs (a batch: a prefill, or a step of
   * several sequences). `layer` is the decoder layer index the request header carries.
   */
  cost(
    layer: number,
    wire: WireDType,
    sizes: { tokens: Int32Array; pairs: Int32Array },
    dedup: boolean,
  ): TrafficCounters {
    const c = zeroCounters();
    for (let w = 0; w < this.workers; w++) {
      const m = sizes.pairs[w]!;
      if (m === 0) continue;
      const rows = dedup ? sizes.tokens[w]! : m;
      c.messages++;
      c.pairs += m;
      c.hiddenStates += rows;
      c.bytes += this.messageBytes(layer, wire, rows, m);
    }
    return c;
  }

  /**
   * Decode framing (every token its own step, one message per worker its experts are on):
   * messages[m] = how many such messages carry m pairs. Cost them with `costMessages`.
   */
  perTokenMessages(a: ExpertAssignment): Float64Array {
    const messages = new Float64Array(this.numExperts + 1);
    const pairWorker = pairsOfExperts(a, this.placement.assign(a, this.live));
    for (let t = 0; t < a.numTokens; t++) {
      // Token t alone; pair indices stay those of `a`, which pairWorker is indexed by.
      const one = {
        numTokens: 1,
        offsets: a.offsets.subarray(t, t + 2),
        experts: a.experts,
        weights: a.weights,
      };
      const sizes = shareSizes(one, pairWorker, this.workers);
      for (let w = 0; w < this.workers; w++) if (sizes.pairs[w]! > 0) messages[sizes.pairs[w]!]!++;
    }
    return messages;
  }

  /** Messages of one token each (`perTokenMessages`): with dedup one hidden state, without one per pair. */
  costMessages(layer: number, wire: WireDType, messages: Float64Array, dedup: boolean): TrafficCounters {
    const c = zeroCounters();
    for (let m = 1; m < messages.length; m++) {
      const n = messages[m]!;
      if (n === 0) continue;
      const rows = dedup ? 1 : m;
      c.messages += n;
      c.pairs += n * m;
      c.hiddenStates += n * rows;
      c.bytes += n * this.messageBytes(layer, wire, rows, m);
    }
    return c;
  }
}
