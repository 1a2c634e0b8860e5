// Mutual authentication of a coordinator-worker connection with a shared cluster secret: each side
// sends a fresh random nonce and proves it knows the secret with an HMAC-SHA256 over both nonces,
// the URL the coordinator dialled (canonical form, worker-url.ts), its role and the protocol version.
// The secret never crosses the wire, a proof cannot be replayed in another handshake (the other
// side's nonce is new), nor reflected to the other role, nor passed on by a relay that answers at
// another URL than the worker's (the two sides' proofs then cover different URLs).
//
//   coordinator -> worker   hello { nonce: Nc, url: U }
//   worker -> coordinator   challenge { nonce: Nw }
//   coordinator -> worker   proof { proof: HMAC(k, "coordinator" | Nc | Nw | U) }   worker checks, or refuse 'auth'
//   worker -> coordinator   welcome { bound?, proof: HMAC(k, R | Nc | Nw | U) }     coordinator checks
//
// The coordinator proves on the URL it dialled. A worker that knows the URL its coordinators dial
// (the one it registered) refuses a hello naming another ('url') and proves on its own as
// R = "bound worker", saying so in the welcome (`bound`); one that does not (a fixed --workers list
// may name it in ways it cannot know) proves on the hello's as R = "worker". So a coordinator that
// took U from a registry can require a bound worker: a relay registered at U that forwards to a
// worker outside the registry gets that worker's proof for U, but not a bound one. The worker
// proves itself only to a coordinator that has already proved itself, so it is never an oracle for
// unauthenticated peers. What this does not protect against: docs/expert-parallelism.md.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { inspect } from 'node:util';
import { PROTOCOL_VERSION } from './messages.js';
import { canonicalWorkerUrl } from './worker-url.js';

/** Where the CLI reads the cluster token from (or --cluster-token-file); local clusters pass it on. */
export const CLUSTER_TOKEN_ENV = 'KMOE_CLUSTER_TOKEN';
export const NONCE_BYTES = 32;
/** An eavesdropper sees nonces and proofs and may try tokens offline: short ones fall quickly. */
export const MIN_TOKEN_CHARS = 16;
/** Hex text of a nonce or a proof (SHA-256 is 32 bytes, like the nonce). */
export const AUTH_HEX = /^[0-9a-f]{64}$/;

/**
 * Who proves: the coordinator; a worker proving on whatever URL the hello names; a worker bound to
 * that URL (it registered it and accepts no other). The role is the label's last word, which ends
 * at the first newline and no role holds one, so no role's proof is another's.
 */
export type AuthRole = 'coordinator' | 'worker' | 'bound worker';

/** Why a cluster token cannot be used, or undefined when it can. */
export function clusterTokenProblem(token: string): string | undefined {
  if (token.length < MIN_TOKEN_CHARS)
    return `the cluster token has ${token.length} characters; it needs at least ${MIN_TOKEN_CHARS} (e.g. openssl rand -hex 32)`;
  if (/\s/.test(token)) return 'the cluster token contains white space';
  return undefined;
}

/** A fresh random nonce, as hex. */
export function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString('hex');
}

/** A random cluster token, for workers only this process talks to. */
export function randomClusterToken(): string {
  return randomBytes(32).toString('hex');
}

/**
 * The cluster secret, holding the key; it prints as `[cluster secret]` (logs, JSON, inspect) so a
 * stray log of an options object cannot leak it.
 */
export class ClusterSecret {
  readonly #key: Buffer;

  constructor(token: string) {
    const problem = clusterTokenProblem(token);
    if (problem !== undefined) throw new RangeError(problem);
    this.#key = Buffer.from(token, 'utf8');
  }

  /** `role`'s proof for the handshake with these nonces, to the worker dialled at `url` (hex). */
  proof(role: AuthRole, coordinatorNonce: string, workerNonce: string, url: string): string {
    return (
      createHmac('sha256', this.#key)
        .update(`kmoe cluster auth v${PROTOCOL_VERSION} ${role}\n`)
        .update(nonceBytes(coordinatorNonce))
        .update(nonceBytes(workerNonce))
        // Last and after fixed-length fields, so nothing else can be read as part of it.
        .update(canonicalWorkerUrl(url), 'utf8')
        .digest('hex')
    );
  }

  /** Whether `proof` is `role`'s proof for these nonces and `url`; compares in constant time. */
  verify(role: AuthRole, coordinatorNonce: string, workerNonce: string, url: string, proof: string): boolean {
    if (!AUTH_HEX.test(proof)) return false;
    const expected = Buffer.from(this.proof(role, coordinatorNonce, workerNonce, url), 'hex');
    return timingSafeEqual(expected, Buffer.from(proof, 'hex'));
  }

  toString(): string {
    return '[cluster secret]';
  }

  toJSON(): string {
    return '[cluster secret]';
  }

  [inspect.custom](): string {
    return '[cluster secret]';
  }
}

function nonceBytes(nonce: string): Buffer {
  if (!AUTH_HEX.test(nonce)) throw new RangeError(`a nonce is ${NONCE_BYTES} bytes in lower-case hex`);
  return Buffer.from(nonce, 'hex');
}
