// Mean output of each expert, per layer, as stored in a routing profile: the prior a skip policy
// adds for the experts it leaves out. Stored as base64 little-endian float32 with its shape, so a
// profile stays one self-contained JSON file.

import { z } from 'zod';

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
  const bytes = Buffer.alloc(m.data.length * 4);
  for (let i = 0; i < m.data.length; i++) bytes.writeFloatLE(m.data[i]!, i * 4);
  return { encoding: 'base64-f32le', shape: [m.layers, m.experts, m.hidden], data: bytes.toString('base64') };
}

/** Decodes and checks size and finiteness; returns a problem string instead of throwing. */
export function decodeExpertMeans(json: ExpertMeansJSON): ExpertMeans | string {
  const [layers, experts, hidden] = json.shape;
  const bytes = Buffer.from(json.data, 'base64');
  if (bytes.length !== layers * experts * hidden * 4) {
    return `expertMeans holds ${bytes.length} bytes; shape [${json.shape.join(', ')}] needs ${layers * experts * hidden * 4}`;
  }
  const data = new Float32Array(layers * experts * hidden);
  for (let i = 0; i < data.length; i++) {
    const v = bytes.readFloatLE(i * 4);
    if (!Number.isFinite(v)) return `expertMeans value ${i} is ${v}`;
    data[i] = v;
  }
  return { layers, experts, hidden, data };
}
