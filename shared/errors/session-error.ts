// Errors from creating or running onnxruntime sessions.

import { KmoeError } from './kmoe-error.js';

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
    super(`onnxruntime session '${graph}': ${message}`, { cause });
  }
}
