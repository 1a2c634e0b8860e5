// Raised when bytes received from a peer are not a valid kmoe protocol frame or message: wrong
// magic, a header that is not what its type requires, sections whose sizes disagree with the
// header, values out of range. The code travels in error replies so the sender can tell why.

import { KmoeError } from '../errors/kmoe-error.js';

export type ProtocolErrorCode =
  | 'bad-frame'
  | 'oversize'
  | 'bad-header'
  | 'bad-section'
  | 'bad-value'
  | 'unexpected-message'
  | 'not-held';

export class ProtocolError extends KmoeError {
  declare readonly code: ProtocolErrorCode;

  constructor(code: ProtocolErrorCode, message: string, options: { hint?: string; cause?: unknown } = {}) {
    super(message, { ...options, code });
  }
}
