// The words of a failed connect: a name with several addresses fails with an AggregateError of
// empty message (Node tries each address in turn); before, the handshake error read "cannot
// connect: " and nothing more. A review met it with many A records; this machine's resolver has
// none, so the errors are built as Node builds them.

import { describe, expect, it } from 'vitest';
import { connectErrorText } from '../../../coordinator/cluster/worker-connection.js';

describe('connectErrorText', () => {
  it("names each address's error once", () => {
    const refused = new Error('connect ECONNREFUSED 10.0.0.1:7070');
    const timedOut = new Error('connect ETIMEDOUT 10.0.0.2:7070');
    const err = new AggregateError([refused, timedOut, timedOut], '');
    expect(connectErrorText(err)).toBe('connect ECONNREFUSED 10.0.0.1:7070; connect ETIMEDOUT 10.0.0.2:7070');
  });

  it('keeps a message that says something', () => {
    expect(connectErrorText(new Error('connect ECONNREFUSED 127.0.0.1:1'))).toBe(
      'connect ECONNREFUSED 127.0.0.1:1',
    );
  });
});
