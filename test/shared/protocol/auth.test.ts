// The cluster secret's proofs: bound to the role, both nonces, the URL dialled and the secret;
// checked in constant time; never printed. A proof from one handshake fails in any other, and one
// for a URL fails for any other URL. A worker's proof says whether it is bound to the URL (its
// welcome's `bound`), so that flag cannot be added on the way.

import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import {
  ClusterSecret,
  clusterTokenProblem,
  newNonce,
  randomClusterToken,
} from '../../../shared/protocol/auth.js';
import {
  decodeMessage,
  encodeChallenge,
  encodeHello,
  encodeProof,
  encodeWelcome,
} from '../../../shared/protocol/codec.js';
import { PROTOCOL_VERSION } from '../../../shared/protocol/messages.js';
import { MAX_WORKER_URL_CHARS } from '../../../shared/protocol/worker-url.js';

const TOKEN = 'correct horse battery staple'.replaceAll(' ', '-');
const limits = { maxFrameBytes: 4096, hidden: 8, numExperts: 8, numLayers: 2 };

describe('ClusterSecret', () => {
  const secret = new ClusterSecret(TOKEN);
  const nc = newNonce();
  const nw = newNonce();
  const url = 'ws://10.0.0.7:7070/';

  it('accepts the proof of the same role, nonces, URL and token, and nothing else', () => {
    const proof = secret.proof('coordinator', nc, nw, url);
    expect(proof).toMatch(/^[0-9a-f]{64}$/);
    expect(secret.verify('coordinator', nc, nw, url, proof)).toBe(true);
    expect(new ClusterSecret(TOKEN).verify('coordinator', nc, nw, url, proof)).toBe(true);
    // Reflected to the other role, replayed with a fresh nonce on either side, swapped nonces.
    expect(secret.verify('worker', nc, nw, url, proof)).toBe(false);
    expect(secret.verify('coordinator', nc, newNonce(), url, proof)).toBe(false);
    expect(secret.verify('coordinator', newNonce(), nw, url, proof)).toBe(false);
    expect(secret.verify('coordinator', nw, nc, url, proof)).toBe(false);
    // Passed on by a relay at another URL: another port, host, path or scheme.
    for (const other of [
      'ws://10.0.0.7:7071/',
      'ws://10.0.0.8:7070/',
      'ws://10.0.0.7:7070/x',
      'wss://10.0.0.7:7070/',
    ])
      expect(secret.verify('coordinator', nc, nw, other, proof)).toBe(false);
    // Another token.
    expect(new ClusterSecret(`${TOKEN}x`).verify('coordinator', nc, nw, url, proof)).toBe(false);
    // Malformed proofs are refused, not thrown on.
    expect(secret.verify('coordinator', nc, nw, url, proof.slice(2))).toBe(false);
    expect(secret.verify('coordinator', nc, nw, url, proof.toUpperCase())).toBe(false);
    expect(secret.verify('coordinator', nc, nw, url, '')).toBe(false);
  });

  it("a bound worker's proof is not an unbound worker's, nor the other way round", () => {
    const bound = secret.proof('bound worker', nc, nw, url);
    const unbound = secret.proof('worker', nc, nw, url);
    expect(secret.verify('bound worker', nc, nw, url, bound)).toBe(true);
    expect(secret.verify('worker', nc, nw, url, bound)).toBe(false);
    expect(secret.verify('bound worker', nc, nw, url, unbound)).toBe(false);
    expect(secret.verify('coordinator', nc, nw, url, bound)).toBe(false);
  });

  it('covers the URL in its canonical form: two spellings of one URL are one URL', () => {
    const proof = secret.proof('worker', nc, nw, 'ws://10.0.0.7:7070');
    for (const same of ['ws://10.0.0.7:7070/', 'WS://10.0.0.7:7070', 'ws://user:pw@10.0.0.7:7070/'])
      expect(secret.verify('worker', nc, nw, same, proof)).toBe(true);
    expect(secret.proof('worker', nc, nw, 'wss://Worker.Example:443')).toBe(
      secret.proof('worker', nc, nw, 'wss://worker.example/'),
    );
    // Names the worker cannot tell apart from the URL alone stay apart.
    expect(
      secret.verify(
        'worker',
        nc,
        nw,
        'ws://localhost:7070/',
        secret.proof('worker', nc, nw, 'ws://127.0.0.1:7070'),
      ),
    ).toBe(false);
    expect(() => secret.proof('worker', nc, nw, 'http://10.0.0.7:7070')).toThrow(RangeError);
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
      decodeMessage(
        encodeHello({ version: PROTOCOL_VERSION, fingerprint: 'f', client: 'c', nonce, url: 'ws://w:1/' }),
        limits,
      ),
    ).toEqual({
      type: 'hello',
      version: PROTOCOL_VERSION,
      fingerprint: 'f',
      client: 'c',
      nonce,
      url: 'ws://w:1/',
    });
    const long = `ws://w:1/${'a'.repeat(MAX_WORKER_URL_CHARS)}`;
    expect(() =>
      decodeMessage(
        encodeHello({ version: PROTOCOL_VERSION, fingerprint: 'f', client: 'c', url: long }),
        limits,
      ),
    ).toThrow(/url/);
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

  it("a welcome's `bound` comes with a proof, and is true or absent", () => {
    const welcome = {
      version: PROTOCOL_VERSION,
      fingerprint: 'f',
      worker: 'w',
      experts: [0],
      numLayers: 2,
      numExperts: 8,
      hidden: 8,
      wire: ['fp32' as const],
      maxFrameBytes: 4096,
    };
    const proof = newNonce();
    expect(decodeMessage(encodeWelcome({ ...welcome, proof, bound: true }), limits)).toEqual({
      type: 'welcome',
      ...welcome,
      proof,
      bound: true,
    });
    expect(() => decodeMessage(encodeWelcome({ ...welcome, bound: true }), limits)).toThrow(
      /invalid welcome header: bound: comes with a proof only/,
    );
    const falseBound = encodeWelcome({ ...welcome, proof, bound: false as unknown as true });
    expect(() => decodeMessage(falseBound, limits)).toThrow(/invalid welcome header: bound/);
  });
});
