// Raised when a checkpoint's config.json is missing, unreadable, of an unsupported model family
// or internally inconsistent. Names the file and, when one is to blame, the field.

import { KmoeError } from './kmoe-error.js';

export class ModelConfigError extends KmoeError {
  /** Path of the config file (or a description of where the JSON came from). */
  readonly file: string;
  /** The config.json key at fault, in the file's own snake_case spelling, if one is. */
  readonly field: string | undefined;

  constructor(message: string, options: { file: string; field?: string; hint?: string; cause?: unknown }) {
    super(message, options);
    this.file = options.file;
    this.field = options.field;
  }
}
