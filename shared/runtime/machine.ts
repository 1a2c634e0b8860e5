// What a benchmark ran on, recorded next to its numbers: absolute times on a shared machine are only
// meaningful with the machine and versions beside them. Machines of one kind differ (the same "AMD
// EPYC" model name covers several generations), so the CPU's family/model and the SIMD extensions
// the kernels can use are recorded too where the platform exposes them.

import fs from 'node:fs';
import os from 'node:os';
import ort from 'onnxruntime-node';

export interface CpuIdentity {
  /** e.g. "AuthenticAMD family 26 model 2 stepping 1". */
  readonly signature: string;
  /** The vector extensions matmul kernels dispatch on, of those this CPU has. */
  readonly simd: readonly string[];
}

export interface MachineInfo {
  readonly cpu: string;
  /** Absent where /proc/cpuinfo is not readable (not Linux). */
  readonly cpuIdentity?: CpuIdentity;
  readonly cores: number;
  readonly memoryGiB: number;
  readonly node: string;
  readonly onnxruntime: string;
  readonly platform: string;
  readonly date: string;
}

const SIMD_FLAGS = ['avx2', 'fma', 'avx512f', 'avx512_vnni', 'avx512_bf16', 'amx_tile'] as const;

/** Parses the first processor block of /proc/cpuinfo text. */
export function parseCpuInfo(text: string): CpuIdentity | undefined {
  const block = text.split(/\n\s*\n/)[0] ?? '';
  const field = (name: string): string | undefined =>
    new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(block)?.[1]?.trim();
  const vendor = field('vendor_id');
  const family = field('cpu family');
  const model = field('model');
  if (vendor === undefined || family === undefined || model === undefined) return undefined;
  const stepping = field('stepping');
  const flags = new Set((field('flags') ?? '').split(/\s+/));
  return {
    signature: `${vendor} family ${family} model ${model}${stepping === undefined ? '' : ` stepping ${stepping}`}`,
    simd: SIMD_FLAGS.filter((flag) => flags.has(flag)),
  };
}

function readCpuIdentity(): CpuIdentity | undefined {
  try {
    return parseCpuInfo(fs.readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return undefined; // not Linux: the model name alone is what there is
  }
}

export function machineInfo(): MachineInfo {
  const cpuIdentity = readCpuIdentity();
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    ...(cpuIdentity === undefined ? {} : { cpuIdentity }),
    cores: os.availableParallelism(),
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    onnxruntime: ort.env.versions.node ?? 'unknown',
    platform: `${process.platform}-${process.arch}`,
    date: new Date().toISOString(),
  };
}
