// The messages coordinator and workers exchange, and the protocol version that names this set.
// A connection starts with hello -> welcome | refuse, with challenge -> proof in between when the
// cluster has a secret (auth.ts; the proofs cover the URL the hello says was dialled); after that
// the coordinator sends dispatch requests and the worker answers each with a result or an error
// reply carrying the same id. A worker that is going away (SIGTERM) sends a drain notice: no new
// requests, please; the ones already sent are still answered, then it closes the connection. A
// worker whose experts change while it serves (`kmoe cluster rebalance` loads or unloads some)
// sends a holdings notice with its new set.

import type { ExpertAssignment } from '../moe/expert-assignment.js';
import type { ProtocolErrorCode } from './errors.js';
import type { WireArray, WireDType } from './wire-dtype.js';

/** Bumped on any change a peer of the previous version would misread; peers must match exactly. */
export const PROTOCOL_VERSION = 4;

/** Per-pair expert index element type: the smallest that holds every expert index of the model. */
export type ExpertIndexDType = 'uint8' | 'int16' | 'int32';
export type ExpertIndexArray = Uint8Array | Int16Array | Int32Array;

export function expertIndexDType(numExperts: number): ExpertIndexDType {
  return numExperts <= 256 ? 'uint8' : numExperts <= 32768 ? 'int16' : 'int32';
}

export function expertIndexBytes(dtype: ExpertIndexDType): number {
  return dtype === 'uint8' ? 1 : dtype === 'int16' ? 2 : 4;
}

/** Coordinator -> worker, first message of a connection. */
export interface Hello {
  readonly type: 'hello';
  readonly version: number;
  /** Checkpoint.fingerprint() of the coordinator's model. */
  readonly fingerprint: string;
  /** Who is connecting, for the worker's log. */
  readonly client: string;
  /** The coordinator's nonce (hex), present when it authenticates with a cluster token. */
  readonly nonce?: string;
  /**
   * The URL the coordinator dialled, canonical (worker-url.ts), which both proofs cover (version
   * 4). Required with a nonce: a worker refuses an authenticating hello without it (a check of its
   * own, so that an older coordinator's hello is refused for its version, not for a missing field).
   */
  readonly url?: string;
}

/** Worker -> coordinator, after an authenticating hello: the worker's nonce to prove the token on. */
export interface Challenge {
  readonly type: 'challenge';
  readonly version: number;
  readonly nonce: string;
}

/** Coordinator -> worker: the coordinator's proof that it holds the cluster token (auth.ts). */
export interface Proof {
  readonly type: 'proof';
  readonly proof: string;
}

/** Worker -> coordinator: the hello was accepted; what this worker holds and accepts. */
export interface Welcome {
  readonly type: 'welcome';
  readonly version: number;
  readonly fingerprint: string;
  /** Who answers, for the coordinator's messages (e.g. "pid 1234 on host"). */
  readonly worker: string;
  /** Expert indices held for every layer, ascending. */
  readonly experts: readonly number[];
  readonly numLayers: number;
  readonly numExperts: number;
  readonly hidden: number;
  readonly wire: readonly WireDType[];
  /** Largest frame the worker accepts; the coordinator must not send more. */
  readonly maxFrameBytes: number;
  /** The worker's proof that it holds the cluster token, after an authenticated handshake. */
  readonly proof?: string;
  /**
   * With a proof only: this worker registered the URL the hello names and accepts no other, and
   * proved as the 'bound worker' role (auth.ts), so the flag cannot be added on the way. A
   * coordinator that took the URL from a registry requires it: a worker outside the registry
   * proves on any URL it is reached by, a relay's too (version 4).
   */
  readonly bound?: true;
}

/** `url`: the coordinator dialled another URL than the one this worker registered (version 4). */
export const REFUSE_REASONS = ['version', 'model', 'bad-hello', 'auth', 'url'] as const;
export type RefuseReason = (typeof REFUSE_REASONS)[number];

/** Worker -> coordinator: the hello was refused; the worker closes the connection after it. */
export interface Refuse {
  readonly type: 'refuse';
  readonly version: number;
  readonly reason: RefuseReason;
  readonly message: string;
}

/**
 * How long either side lets a WebSocket closing handshake take before it tears the socket down
 * (ws' own default is 30 s). An honest peer answers a close frame within a round trip; a peer that
 * sends or receives one and then holds its TCP connection open would otherwise keep a worker's
 * connection unusable and unreported on the coordinator, with requests pending on it, and keep a
 * coordinator's connection slot and the worker's shutdown waiting.
 */
export const CLOSE_HANDSHAKE_MS = 1_000;

/**
 * Upper bounds (seconds) of the latency bins of a dispatch request, shared by the worker's
 * service-time histogram and the coordinator's round-trip histogram so the two compare bin by
 * bin: a decode step of a few tokens takes ~0.1 ms, a long prefill seconds.
 */
export const DISPATCH_LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** Coordinator -> worker: one MoE layer's work for this worker, for a batch. */
export interface DispatchRequest {
  readonly type: 'dispatch';
  readonly id: number;
  readonly layer: number;
  readonly wire: WireDType;
  readonly numTokens: number;
  /** [numTokens, hidden]: each distinct token's hidden state once. */
  readonly hidden: WireArray;
  /** CSR over tokens, [numTokens + 1]. */
  readonly offsets: Int32Array;
  /** [offsets[numTokens]] expert per pair. */
  readonly experts: ExpertIndexArray;
  /** [offsets[numTokens]] combine weight per pair, fp32. */
  readonly weights: Float32Array;
}

/** The request's (token, expert, weight) table as the MoE seam's ExpertAssignment (indices widened). */
export function dispatchAssignment(req: DispatchRequest): ExpertAssignment {
  return {
    numTokens: req.numTokens,
    offsets: req.offsets,
    experts: req.experts instanceof Int32Array ? req.experts : Int32Array.from(req.experts),
    weights: req.weights,
  };
}

/** Worker -> coordinator: per token, the weighted sum of its experts held here. */
export interface DispatchResult {
  readonly type: 'result';
  readonly id: number;
  readonly wire: WireDType;
  readonly numTokens: number;
  /** [numTokens, hidden]. */
  readonly partial: WireArray;
}

export type ErrorReplyCode = ProtocolErrorCode | 'compute-failed';

/** Either side: a message could not be handled. id is the request's, null if it could not be read. */
export interface ErrorReply {
  readonly type: 'error';
  readonly id: number | null;
  readonly code: ErrorReplyCode;
  readonly message: string;
}

/**
 * Worker -> coordinator, at any time after the welcome: this worker is shutting down. The
 * coordinator sends it no new requests; requests already sent are answered; the worker then closes
 * the connection (1001). Not an error: the coordinator does not fail or retry anything because of it.
 */
export interface Drain {
  readonly type: 'drain';
  /** Why, for the coordinator's log (e.g. "SIGTERM"). */
  readonly reason: string;
}

/**
 * Worker -> coordinator, at any time after the welcome: the experts this worker holds from now on
 * (it loaded or unloaded some). Sent before an unloaded expert's weights are released, so requests
 * the coordinator sends after reading it go elsewhere; ones already on the way are still answered
 * or refused with `not-held` (and then re-sent to a replica).
 */
export interface Holdings {
  readonly type: 'holdings';
  /** Expert indices held for every layer, ascending. */
  readonly experts: readonly number[];
}

export type Message =
  | Hello
  | Challenge
  | Proof
  | Welcome
  | Refuse
  | DispatchRequest
  | DispatchResult
  | ErrorReply
  | Drain
  | Holdings;
