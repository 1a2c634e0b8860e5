// The expert backend of a single process: every expert is an in-process onnxruntime session.

import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';
import type { ExpertHost } from '../../shared/onnx/expert-host.js';
import type { F32Tensor } from '../../shared/tensor.js';
import type { ExpertBackend } from './expert-backend.js';

export class LocalExpertBackend implements ExpertBackend {
  readonly description = 'local experts (in-process onnxruntime sessions)';

  constructor(private readonly host: ExpertHost) {}

  async compute(
    layer: number,
    x: F32Tensor,
    assignment: ExpertAssignment,
    accumulate: Float32Array,
  ): Promise<undefined> {
    await this.host.compute(layer, x, assignment, accumulate);
    return undefined;
  }

  async close(): Promise<void> {
    this.host.release();
  }
}
