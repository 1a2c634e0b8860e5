// The cluster secret's proofs: bound to the role, both nonces and the secret; checked in constant
// time; never printed. A proof from one handshake fails in any other.

import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  ClusterSecret,
  clusterTokenProblem,
  newNonce,
  randomClusterToken,
} from '../../../shared/protocol/auth.js';
import { decodeMessage, encodeChallenge, encodeHello, encodeProof } from '../../../shared/protocol/codec.js';
import { PROTOCOL_VERSION } from '../../../shared/protocol/messages.js';

const TOKEN = 'correct horse battery staple'.replaceAll(' ', '-');
const limits = { maxFrameBytes: 4096, hidden: 8, numExperts: 8, numLayers: 2 };

describe('ClusterSecret', () => {
  const secret = new ClusterSecret(TOKEN);
  const nc = newNonce();
  const nw = newNonce();

  it('accepts the proof of the same role, nonces and token, and nothing else', () => {
    const proof = secret.proof('coordinator', nc, nw);
    expect(proof).toMatch(/^[0-9a-f]{64}$/);
    expect(secret.verify('coordinator', nc, nw, proof)).toBe(true);
    expect(new ClusterSecret(TOKEN).verify('coordinator', nc, nw, proof)).toBe(true);
    // Reflected to the other role, replayed with a fresh nonce on either side, swapped nonces.
    expect(secret.verify('worker', nc, nw, proof)).toBe(false);
    expect(secret.verify('coordinator', nc, newNonce(), proof)).toBe(false);
    expect(secret.verify('coordinator', newNonce(), nw, proof)).toBe(false);
    expect(secret.verify('coordinator', nw, nc, proof)).toBe(false);
    // Another token.
    expect(new ClusterSecret(`${TOKEN}x`).verify('coordinator', nc, nw, proof)).toBe(false);
    // Malformed proofs are refused, not thrown on.
    expect(secret.verify('coordinator', nc, nw, proof.slice(2))).toBe(false);
    expect(secret.verify('coordinator', nc, nw, proof.toUpperCase())).toBe(false);
    expect(secret.verify('coordinator', nc, nw, '')).toBe(false);
  });

  it('never shows the token', () => {
    const shown = [String(secret), JSON.stringify({ secret }), inspect({ secret }), `${secret}`];
    for (const text of shown) {
      expect(text).not.toContain(TOKEN);
      expect(text).toContain('[cluster secret]');
    }
  });

  it('refuses short tokens and tokens with white space', () => {
    expect(clusterTokenProblem('short')).toMatch(/5 characters; it needs at least 16/);
    expect(clusterTokenProblem('a long token with spaces')).toMatch(/white space/);
    expect(clusterTokenProblem(randomClusterToken())).toBeUndefined();
    expect(() => new ClusterSecret('short')).toThrow(RangeError);
    expect(randomClusterToken()).not.toBe(randomClusterToken());
  });
});

describe('handshake messages', () => {
  it('round-trip with their nonces and proofs, and reject malformed ones', () => {
    const nonce = newNonce();
    expect(
      decodeMessage(encodeHello({ version: PROTOCOL_VERSION, fingerprint: 'f', client: 'c', nonce }), limits),
    ).toEqual({
      type: 'hello',
      version: PROTOCOL_VERSION,
      fingerprint: 'f',
      client: 'c',
      nonce,
    });
    expect(decodeMessage(encodeChallenge({ version: PROTOCOL_VERSION, nonce }), limits)).toEqual({
      type: 'challenge',
      version: PROTOCOL_VERSION,
      nonce,
    });
    expect(decodeMessage(encodeProof({ proof: nonce }), limits)).toEqual({ type: 'proof', proof: nonce });
    expect(() => decodeMessage(encodeProof({ proof: 'abc' }), limits)).toThrow(/proof: must be 32 bytes/);
    expect(() => decodeMessage(encodeChallenge({ version: 2, nonce: nonce.toUpperCase() }), limits)).toThrow(
      /nonce: must be 32 bytes in lower-case hex/,
    );
  });
});
