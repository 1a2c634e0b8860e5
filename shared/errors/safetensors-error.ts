// Raised when a .safetensors file is malformed, truncated, uses a dtype kmoe cannot load, or a
// tensor is asked for that the file does not hold. Names the file and, when one is to blame, the tensor.

import { KmoeError } from './kmoe-error.js';

export class SafetensorsError extends KmoeError {
  readonly file: string;
  readonly tensor: string | undefined;

  constructor(message: string, options: { file: string; tensor?: string; hint?: string; cause?: unknown }) {
    super(message, options);
    this.file = options.file;
    this.tensor = options.tensor;
  }
}
