// The vocabulary of the scale tools that the command line needs before anything runs: weight and
// KV formats a plan can assume, byte sizes as people write them. No model, no onnxruntime: the CLI
// imports this to define its options.

import { PlanError } from './errors.js';

/** Weight formats a memory plan can assume (kmoe computes experts in fp32 and int8 today). */
export const PLAN_WEIGHT_FORMATS = ['fp32', 'bf16', 'fp16', 'int8', 'int4'] as const;
export type PlanWeightFormat = (typeof PLAN_WEIGHT_FORMATS)[number];

export const KV_DTYPES = ['fp32', 'bf16', 'fp16'] as const;
export type KvDType = (typeof KV_DTYPES)[number];

export type PlanDevice = 'cpu' | 'cuda';

/** "80GiB", "80 GB", "512MiB", "1e9" -> bytes (GB = 10^9, GiB = 2^30). */
export function parseByteSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?(?:e\d+)?)\s*([KMGT]i?B|B)?\s*$/i.exec(text);
  if (!m) throw new PlanError(`'${text}' is not a size: write e.g. 80GiB, 24GB, 512MiB or a byte count`);
  const value = Number(m[1]);
  const unit = (m[2] ?? 'B').toUpperCase();
  const powers: Record<string, number> = { K: 1, M: 2, G: 3, T: 4 };
  const bytes = unit === 'B' ? value : value * (unit.includes('I') ? 1024 : 1000) ** powers[unit[0]!]!;
  return Math.round(bytes);
}

/** Bytes as GiB with two decimals (MiB below 1 GiB). */
export function fmtBytes(bytes: number): string {
  if (Math.abs(bytes) < 2 ** 30) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
}
