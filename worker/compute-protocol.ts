// The calls a worker's network thread makes on its compute thread.

import type { SessionSettings } from '../shared/onnx/session.js';
import type { WireArray, WireDType } from '../shared/protocol/wire-dtype.js';

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
  /** Checkpoint bytes read to load these experts (headers included): shows only they were read. */
  readonly bytesRead: number;
}

/** A validated dispatch, with every array in its own buffer so it can be moved, not copied. */
export interface ComputeRequest {
  readonly id: number;
  readonly layer: number;
  readonly wire: WireDType;
  readonly numTokens: number;
  readonly hidden: WireArray;
  readonly offsets: Int32Array;
  readonly experts: Int32Array;
  readonly weights: Float32Array;
}

export type ComputeSchema = {
  init: [ComputeInit, ComputeModel];
  /** Returns the complete result frame, ready to send. */
  dispatch: [ComputeRequest, Uint8Array];
  close: [null, null];
};
