// Raised when a checkpoint directory does not hold a loadable model: no weights file, a shard index
// pointing at missing files or tensors, or tensors whose shapes disagree with the architecture.

import { KmoeError } from './kmoe-error.js';

export class CheckpointError extends KmoeError {
  /** The checkpoint directory. */
  readonly dir: string;
  /** The file at fault (index or shard), if one is. */
  readonly file: string | undefined;
  /** The tensor at fault, if exactly one is. */
  readonly tensor: string | undefined;

  constructor(
    message: string,
    options: { dir: string; file?: string; tensor?: string; hint?: string; cause?: unknown },
  ) {
    super(message, options);
    this.dir = options.dir;
    this.file = options.file;
    this.tensor = options.tensor;
  }
}
