// Where the MoE block sends its (token, expert, weight) pairs: experts in this process or on remote
// workers. The forward pass only sees this interface, never sockets or sessions.

import type { ExpertHost, TokenExpertPairs } from '../../shared/onnx/expert-host.js';
import type { F32Tensor } from '../../shared/tensor.js';

export interface ExpertBackend {
  readonly description: string;
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
  ): Promise<void>;
  close(): Promise<void>;
}

export class LocalExpertBackend implements ExpertBackend {
  readonly description = 'local experts (in-process onnxruntime sessions)';

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
