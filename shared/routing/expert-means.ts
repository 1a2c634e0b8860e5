// Mean output of each expert, per layer, as stored in a routing profile: the prior a skip policy
// adds for the experts it leaves out. Stored as base64 little-endian float32 with its shape, so a
// profile stays one self-contained JSON file.

import { z } from 'zod';
import { decodeF32Base64, encodeF32Base64 } from './f32-base64.js';

export const expertMeansSchema = z
  .object({
    encoding: z.literal('base64-f32le'),
    /** [layers, experts, hidden] */
    shape: z.tuple([z.number().int().min(1), z.number().int().min(1), z.number().int().min(1)]),
    data: z.string(),
  })
  .strict();

export type ExpertMeansJSON = z.infer<typeof expertMeansSchema>;

export interface ExpertMeans {
  readonly layers: number;
  readonly experts: number;
  readonly hidden: number;
  /** [layers, experts, hidden] */
  readonly data: Float32Array;
}

export function encodeExpertMeans(m: ExpertMeans): ExpertMeansJSON {
  return { encoding: 'base64-f32le', shape: [m.layers, m.experts, m.hidden], data: encodeF32Base64(m.data) };
}

/** Decodes and checks size and finiteness; returns a problem string instead of throwing. */
export function decodeExpertMeans(json: ExpertMeansJSON): ExpertMeans | string {
  const [layers, experts, hidden] = json.shape;
  const data = decodeF32Base64('expertMeans', json.data, layers * experts * hidden);
  if (typeof data === 'string') return data;
  return { layers, experts, hidden, data };
}
