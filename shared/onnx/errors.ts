// Errors from creating or running onnxruntime sessions and from hosting experts in them.

import { KmoeError } from '../errors/kmoe-error.js';

/** The requested execution provider cannot be used here; kmoe never falls back to another one. */
export class DeviceUnavailableError extends KmoeError {
  constructor(
    readonly device: string,
    cause: unknown,
  ) {
    super(
      `execution provider '${device}' is not available: ${cause instanceof Error ? cause.message : cause}`,
      {
        hint:
          device === 'cuda'
            ? 'install onnxruntime-node with its CUDA provider (see README "GPU hosts") on a host with an NVIDIA GPU and CUDA 12, or use --device cpu'
            : 'use --device cpu',
        cause,
        details: { device },
      },
    );
  }
}

export class SessionError extends KmoeError {
  constructor(
    readonly graph: string,
    message: string,
    cause?: unknown,
  ) {
    super(`onnxruntime session '${graph}': ${message}`, { cause, details: { graph } });
  }
}

/** A token was sent to an expert this host does not hold. */
export class ExpertNotHeldError extends KmoeError {
  constructor(
    readonly layer: number,
    readonly expert: number,
    held: readonly number[],
  ) {
    super(`expert ${expert} of layer ${layer} is not held here (held: ${held.join(', ') || 'none'})`, {
      hint: 'the placement table sent a token to the wrong host',
      details: { layer, expert, held },
    });
  }
}

/** Expert weights in a format the chosen execution provider does not compute in. */
export class WeightFormatDeviceError extends KmoeError {
  constructor(
    readonly format: string,
    readonly device: string,
    supported: readonly string[],
  ) {
    super(
      `expert weights '${format}' cannot run on --device ${device}: onnxruntime's ${device} provider has no ` +
        `${format} MatMul kernel (it would widen the weights to fp32, or fail to load), and kmoe does not fall back silently`,
      {
        hint: `use --device cuda for ${format} weights, or one of ${supported.join(', ')} on ${device}`,
        details: { format, device, supported: [...supported] },
      },
    );
  }
}
