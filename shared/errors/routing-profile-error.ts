// Raised when a routing profile file cannot be read, is not valid JSON, has an unsupported
// version or schema violations, or was calibrated for a different model than the one loaded.

import { KmoeError } from './kmoe-error.js';

export class RoutingProfileError extends KmoeError {
  /** Path of the profile file. */
  readonly file: string;

  constructor(message: string, options: { file: string; hint?: string; cause?: unknown }) {
    super(message, options);
    this.file = options.file;
  }
}
