// The calls a worker's network thread makes on its expert computation (a compute thread, or inline).

import type { SessionSettings } from '../shared/onnx/session.js';

export interface ComputeInit {
  readonly modelDir: string;
  readonly experts: readonly number[];
  readonly settings: SessionSettings;
}

/** What the compute thread loaded: the handshake is answered from this. */
export interface ComputeModel {
  readonly fingerprint: string;
  readonly numLayers: number;
  readonly numExperts: number;
  readonly hidden: number;
  readonly experts: readonly number[];
  /** The decoder layers that have experts (a dense layer takes no dispatch). */
  readonly moeLayers: readonly number[];
  /** Checkpoint bytes read to load these experts (headers included): shows only they were read. */
  readonly bytesRead: number;
}

/**
 * A dispatch frame the network thread has validated, in a buffer of its own (moved, not copied,
 * to the compute thread), with the limits it was validated against.
 */
export interface ComputeRequest {
  readonly frame: Uint8Array;
  readonly maxFrameBytes: number;
}

/** The result frame, or the index of the first NaN or infinity in it (then it is not sent). */
export type ComputeReply =
  | { readonly result: Uint8Array }
  | { readonly nonFinite: number }
  /** Not computed: the worker is shutting down and nothing can be answered any more. */
  | { readonly skipped: true };

/**
 * The init call's parameters: what to load, and a flag (one Int32 over shared memory) the network
 * thread sets once no reply can be sent any more (its connections are closed at shutdown), so
 * dispatches still queued are skipped rather than computed before the worker can exit.
 */
export interface ComputeStart extends ComputeInit {
  readonly skipQueued: Int32Array;
}

/** What a load or unload changed: the experts held afterwards and the checkpoint bytes read so far. */
export interface ComputeHoldings {
  readonly experts: readonly number[];
  readonly bytesRead: number;
}

export type ComputeSchema = {
  init: [ComputeStart, ComputeModel];
  /** Returns the complete result frame, ready to send, unless it holds a non-finite value. */
  dispatch: [ComputeRequest, ComputeReply];
  /** Builds the sessions of more experts (every MoE layer); the ones held keep serving meanwhile. */
  load: [readonly number[], ComputeHoldings];
  /** Releases experts' sessions; the network thread has stopped accepting requests for them. */
  unload: [readonly number[], ComputeHoldings];
  close: [null, null];
};
