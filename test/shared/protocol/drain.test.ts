// The drain notice (protocol version 2): round-trips through the codec, and a drain frame with
// sections or a reason beyond its bound is refused like any other malformed header.

import { describe, expect, it } from 'vitest';
import { decodeMessage, encodeDrain } from '../../../shared/protocol/codec.js';
import { ProtocolError } from '../../../shared/protocol/errors.js';
import { allocFrame } from '../../../shared/protocol/frame.js';

const limits = { maxFrameBytes: 1 << 20, hidden: 16, numExperts: 8, numLayers: 2 };

describe('drain message', () => {
  it('round-trips its reason', () => {
    expect(decodeMessage(encodeDrain({ reason: 'SIGTERM' }), limits)).toEqual({
      type: 'drain',
      reason: 'SIGTERM',
    });
  });

  it('refuses a reason longer than 1024 characters and tensor sections', () => {
    expect(() => decodeMessage(encodeDrain({ reason: 'x'.repeat(1025) }), limits)).toThrow(ProtocolError);
    const withSection = allocFrame({ type: 'drain', reason: 'SIGTERM' }, [8]).bytes;
    expect(() => decodeMessage(withSection, limits)).toThrow(/a drain message has no tensor sections, got 1/);
  });
});
