// `kmoe bench traffic` on a hand-made routing trace, through the real CLI: bytes against sizes
// computed by hand from the frame layout (shared/protocol/frame.ts: 8-byte prefix, msgpack header,
// 8-aligned sections).
//
// Hand-computed frames at hidden 8, request id 65536 (msgpack uint32, 5 bytes), layer 0, section
// sizes < 128 (one msgpack byte each):
//   dispatch header {type, id, layer, wire, index, tokens, pairs, sections[4]} = 81 bytes -> 8 + 81
//   aligned to 96; sections: hidden rows*8*e, offsets (rows+1)*4, experts pairs*1, weights pairs*4,
//   each padded to 8.  result header {type, id, wire, tokens, sections[1]} = 50 -> 8 + 50 -> 64;
//   section rows*8*e.
//   fp32, rows 1, pairs 1 or 2: 96+32+8+8+8 = 152, reply 64+32 = 96: 248 both ways.
//   fp32, rows 2, pairs 2: 96+64+16+8+8 = 192, reply 128: 320.   rows 2, pairs 3 or 4: 96+64+16+8+16 = 200, reply 128: 328.
//   fp32, rows 3, pairs 3: 96+96+16+8+16 = 232, reply 160: 392.
//   fp32, rows 4, pairs 4: the hidden section is 128 bytes (msgpack uint8: 2 bytes), header 82 -> still 96;
//     96+128+24+8+16 = 272, reply (51 -> 64) 64+128 = 192: 464.
//   bf16 halves the hidden and reply sections: rows 1, pairs 1 or 2: 96+16+8+8+8 = 136, reply 64+16 = 80: 216.
//
// The trace: 4 experts, native top-2, one MoE layer, one window of 3 tokens:
//   token 0: chosen {0, 1}  native {0, 1}
//   token 1: chosen {3}     native {3, 2}
//   token 2: chosen {1}     native {1, 0}
// 2 workers hold {0,1} and {2,3}; 4 workers one expert each.

import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../helpers/cli.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kmoe-traffic-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

const header = {
  format: 'kmoe-routing-trace',
  version: 1,
  model: { dir: 'models/hand-made', type: 'mixtral', fingerprint: 'f'.repeat(64) },
  routing: 'profiles/hand-made.json',
  corpus: 'hand-made.u16',
  windows: { start: 0, end: 1 },
  windowLen: 3,
  numExperts: 4,
  nativeK: 2,
  hidden: 4,
  moeLayers: [0],
  command: 'by hand',
};
const window0 = {
  window: 0,
  layers: [
    {
      k: [2, 1, 1],
      experts: [0, 1, 3, 1],
      weights: [0.6, 0.4, 1, 1],
      nativeExperts: [0, 1, 3, 2, 1, 0],
      nativeWeights: [0.6, 0.4, 0.7, 0.3, 0.9, 0.1],
    },
  ],
};

interface Row {
  label: string;
  workers: number;
  wire: string;
  avgK: number;
  nativeAvgK: number;
  tokenLayers: number;
  bytesPerTokenLayer: Record<string, number>;
  decodeBytesPerTokenLayer: Record<string, number>;
  bytesPerRequest: Record<string, number>;
  hiddenStatesPerTokenLayer: Record<string, number>;
  saving: { dedup: number; noDedup: number };
}

describe('kmoe bench traffic', () => {
  it('costs a hand-made trace to the hand-computed bytes', async () => {
    const trace = path.join(dir, 'hand.jsonl');
    await writeFile(trace, `${JSON.stringify(header)}\n${JSON.stringify(window0)}\n`);
    const out = path.join(dir, 'traffic.json');
    const chart = path.join(dir, 'traffic.svg');
    const r = await runCli([
      'bench',
      'traffic',
      '--trace',
      trace,
      '--hidden',
      '8',
      '--cluster-sizes',
      '2,4',
      '--wire-dtypes',
      'fp32,bf16',
      '--out',
      out,
      '--chart',
      chart,
    ]);
    expect(r.stderr).not.toMatch(/error/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/Routing decisions come from recorded router traces of the demo model/);
    expect(r.stdout).toMatch(/\| hand-made \| 1\.333 \| 2 \| 192 \| 192 \| 0\.0% \| 213 \| 261 \| 18\.4% \|/);
    const json = JSON.parse(await readFile(out, 'utf8')) as { hidden: number; rows: Row[] };
    expect(json.hidden).toBe(8);
    const row = (workers: number, wire: string) =>
      json.rows.find((x) => x.workers === workers && x.wire === wire)!;
    expect(json.rows).toHaveLength(4);

    const two = row(2, 'fp32');
    expect(two.label).toBe('hand-made');
    expect(two.tokenLayers).toBe(3);
    expect(two.avgK).toBeCloseTo(4 / 3, 12);
    expect(two.nativeAvgK).toBe(2);
    // chosen, dedup: worker 0 gets tokens 0 and 2 (3 pairs) = 328, worker 1 token 1 (1 pair) = 248.
    expect(two.bytesPerRequest['chosen']).toBe(328 + 248);
    // chosen, no dedup: worker 0 three rows (3 pairs) = 392, worker 1 = 248.
    expect(two.bytesPerRequest['chosenNoDedup']).toBe(392 + 248);
    // native, dedup: worker 0 tokens 0 and 2 (4 pairs) = 328, worker 1 token 1 (2 pairs) = 248.
    expect(two.bytesPerRequest['native']).toBe(328 + 248);
    // native, no dedup: worker 0 four rows = 464, worker 1 two rows = 320.
    expect(two.bytesPerRequest['nativeNoDedup']).toBe(464 + 320);
    expect(two.bytesPerTokenLayer['chosen']).toBeCloseTo(576 / 3, 9);
    expect(two.saving.dedup).toBeCloseTo(0, 12);
    expect(two.saving.noDedup).toBeCloseTo(1 - 640 / 784, 12);
    // decode: one message per token per worker its experts are on, 1 row each: chosen token 0 -> worker 0
    // (2 pairs), 1 -> worker 1, 2 -> worker 0; native the same workers with 2 pairs each: 248 x 3 both.
    expect(two.decodeBytesPerTokenLayer['chosen']).toBeCloseTo((3 * 248) / 3, 9);
    expect(two.decodeBytesPerTokenLayer['native']).toBeCloseTo((3 * 248) / 3, 9);
    // decode without dedup: token 0's two pairs on worker 0 = rows 2 (320); the others 248.
    expect(two.decodeBytesPerTokenLayer['chosenNoDedup']).toBeCloseTo((320 + 248 + 248) / 3, 9);
    expect(two.decodeBytesPerTokenLayer['nativeNoDedup']).toBeCloseTo((3 * 320) / 3, 9);
    expect(two.hiddenStatesPerTokenLayer['chosen']).toBeCloseTo(3 / 3, 12);
    expect(two.hiddenStatesPerTokenLayer['nativeNoDedup']).toBeCloseTo(6 / 3, 12);

    // 4 workers, one expert each: dedup changes nothing.
    const four = row(4, 'fp32');
    // chosen: worker 0 token 0 (248), worker 1 tokens 0 and 2 (320), worker 3 token 1 (248).
    expect(four.bytesPerRequest['chosen']).toBe(248 + 320 + 248);
    expect(four.bytesPerRequest['chosenNoDedup']).toBe(248 + 320 + 248);
    // native: workers 0 and 1 tokens 0 and 2 (320 each), workers 2 and 3 token 1 (248 each).
    expect(four.bytesPerRequest['native']).toBe(320 + 320 + 248 + 248);
    expect(four.saving.dedup).toBeCloseTo(1 - 816 / 1136, 12);

    // bf16: rows 1 messages are 216; worker 0's 2 rows, 3 pairs: 96+32+16+8+16 = 168, reply 64+32 = 96: 264.
    const bf16 = row(2, 'bf16');
    expect(bf16.bytesPerRequest['chosen']).toBe(264 + 216);

    const svg = await readFile(chart, 'utf8');
    // The chart draws the bf16 rows: (264 + 216) / 3 = 160 bytes per token per MoE layer on 2 workers.
    expect(svg).toContain('<svg');
    expect(svg).toContain('category: hand-made; bytes per token per MoE layer: 160; series: 2 workers');
  });

  it('refuses more workers than experts, a trace given twice, and a missing trace', async () => {
    const trace = path.join(dir, 'hand2.jsonl');
    await writeFile(trace, `${JSON.stringify(header)}\n${JSON.stringify(window0)}\n`);
    const more = await runCli([
      'bench',
      'traffic',
      '--trace',
      trace,
      '--cluster-sizes',
      '8',
      '--out',
      path.join(dir, 'x.json'),
    ]);
    expect(more.code).toBe(1);
    expect(more.stderr).toMatch(/8 workers exceed the model's 4 experts/);
    // One file named twice is a usage error of the list; two files of the same windows are refused
    // by the bench itself.
    const sameFile = await runCli([
      'bench',
      'traffic',
      '--trace',
      `${trace},${trace}`,
      '--cluster-sizes',
      '2',
      '--out',
      path.join(dir, 'x.json'),
    ]);
    expect(sameFile.code).toBe(2);
    expect(sameFile.stderr).toMatch(/--trace names .*hand2\.jsonl twice/);
    const copy = path.join(dir, 'hand2-copy.jsonl');
    await writeFile(copy, `${JSON.stringify(header)}\n${JSON.stringify(window0)}\n`);
    const twice = await runCli([
      'bench',
      'traffic',
      '--trace',
      `${trace},${copy}`,
      '--cluster-sizes',
      '2',
      '--out',
      path.join(dir, 'x.json'),
    ]);
    expect(twice.code).toBe(1);
    expect(twice.stderr).toMatch(
      /trace hand-made on the same windows of hand-made\.u16: they would be counted twice/,
    );
    const missing = await runCli(['bench', 'traffic', '--trace', path.join(dir, 'none.jsonl')]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/cannot read routing trace .*none\.jsonl/);
  });
});
