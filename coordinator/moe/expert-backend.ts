// Where the MoE block's expert work runs: experts in this process or on remote workers. A backend
// only computes (prepare/dispatch -> experts -> combine into the caller's buffer); it never sees
// router probabilities, policies or accounting. A transport reports what it moved, and observers
// of the seam do the accounting.

import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';
import type { F32Tensor } from '../../shared/tensor.js';

/** One message a transport sent for a layer and its reply. */
export interface TransferMessage {
  /** Index of the worker in the transport's placement. */
  readonly worker: number;
  /** Rows of the layer input the message carried (each once), ascending. */
  readonly tokens: Int32Array;
  /** Token-expert pairs the worker computed. */
  readonly pairs: number;
  readonly bytesOut: number;
  readonly bytesIn: number;
  /** From handing the request to the socket to its reply being decoded. */
  readonly seconds: number;
}

/** What a backend moved over the network for one layer. */
export interface ExpertTransfer {
  readonly messages: readonly TransferMessage[];
}

export interface ExpertBackend<T extends ExpertTransfer = ExpertTransfer> {
  readonly description: string;
  /**
   * accumulate[t] += sum over t's pairs of weight * expert_layer(x[t]). Returns what was moved over
   * the network, or undefined when the experts are in this process.
   */
  compute(
    layer: number,
    x: F32Tensor,
    assignment: ExpertAssignment,
    accumulate: Float32Array,
  ): Promise<T | undefined>;
  close(): Promise<void>;
}

/** Bytes both ways charged to each token row: a message's bytes split evenly over its tokens. */
export function addTokenBytes(transfer: ExpertTransfer | undefined, tokenBytes: Float64Array): void {
  if (!transfer) return;
  for (const m of transfer.messages) {
    const perToken = (m.bytesOut + m.bytesIn) / m.tokens.length;
    for (let row = 0; row < m.tokens.length; row++) tokenBytes[m.tokens[row]!]! += perToken;
  }
}
