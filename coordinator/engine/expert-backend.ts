// Where the MoE block sends its (token, expert, weight) pairs: experts in this process or on remote
// workers. The forward pass only sees this interface, never sockets or sessions.

import type { ExpertHost, TokenExpertPairs } from '../../shared/onnx/expert-host.js';
import type { F32Tensor } from '../../shared/tensor.js';

export interface ExpertBackend {
  readonly description: string;
  /**
   * Whether compute() wants the model's native top-K choice for the same tokens alongside the
   * routing decision, to account its cost against native top-K (the caller routes it; a backend
   * never sees router probabilities or policies).
   */
  readonly wantsNativeBaseline: boolean;
  /**
   * accumulate[t] += sum over t's pairs of weight * expert_layer(x[t]). A backend that moves data
   * over the network adds the bytes it sent and received for token t into tokenBytes[t].
   */
  compute(
    layer: number,
    x: F32Tensor,
    pairs: TokenExpertPairs,
    accumulate: Float32Array,
    tokenBytes: Float64Array,
    native?: TokenExpertPairs,
  ): Promise<void>;
  close(): Promise<void>;
}

export class LocalExpertBackend implements ExpertBackend {
  readonly description = 'local experts (in-process onnxruntime sessions)';
  readonly wantsNativeBaseline = false;

  constructor(private readonly host: ExpertHost) {}

  async compute(
    layer: number,
    x: F32Tensor,
    pairs: TokenExpertPairs,
    accumulate: Float32Array,
  ): Promise<void> {
    await this.host.compute(layer, x, pairs, accumulate);
  }

  async close(): Promise<void> {
    this.host.release();
  }
}
