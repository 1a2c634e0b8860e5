// Whether onnxruntime can run on a device at all, asked before any work: a command that reached
// the provider only at its first real session had by then built graphs or measured (bench expert
// timed its GEMM peak), or started worker processes (serve, local-cluster) that each failed alone.

import { GraphBuilder } from './graph-builder.js';
import { type Device, Session } from './session.js';

/**
 * Throws DeviceUnavailableError (from Session.create, with its hint) unless a session can be made
 * on `device`: one Identity graph of one float, created and released. The CPU provider is always
 * there; for CUDA this loads the provider's libraries, which the command's own sessions would load
 * next anyway.
 */
export function requireDevice(device: Device): void {
  if (device === 'cpu') return;
  const g = new GraphBuilder('device_check');
  g.output(g.input('x', 'float32', [1]), 'y', 'float32', [1]);
  Session.create('device check', 'device-check', g.build(), {
    device,
    threads: 1,
    expertWeights: 'fp32',
  }).release();
}
