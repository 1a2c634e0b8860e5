// A session gives the memory of a large call back when the call ends. With onnxruntime's CPU arena
// (its default) every session kept the high-water mark of its largest call for the life of the
// process: one 16k-row prefill left a worker's expert sessions holding about 1 GB.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../shared/onnx/graph-builder.js';
import { defaultSessionSettings, f32Input, f32Output, Session } from '../../../shared/onnx/session.js';

const HIDDEN = 64;
const WIDE = 4096;
/** 8,192 rows x 4,096 fp32 = 128 MiB per intermediate; the graph has two of them. */
const ROWS = 8192;
const MIB = 2 ** 20;

/** Resident memory from /proc, as the kernel counts it (process.memoryUsage().rss reads the same). */
function residentBytes(): number {
  const line = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  if (line === null) throw new Error('no VmRSS in /proc/self/status');
  return Number(line[1]) * 1024;
}

/** y = sigmoid(x W1) W2: two [ROWS, WIDE] intermediates per call. */
function wideGraph(): Uint8Array {
  const g = new GraphBuilder('wide');
  const x = g.input('x', 'float32', ['N', HIDDEN]);
  const w1 = g.floats('w1', new Float32Array(HIDDEN * WIDE).fill(1 / HIDDEN), [HIDDEN, WIDE]);
  const w2 = g.floats('w2', new Float32Array(WIDE * HIDDEN).fill(1 / WIDE), [WIDE, HIDDEN]);
  g.output(g.op('MatMul', [g.op('Sigmoid', [g.op('MatMul', [x, w1])]), w2]), 'y', 'float32', ['N', HIDDEN]);
  return g.build();
}

describe.runIf(process.platform === 'linux')('Session memory', () => {
  it('returns the intermediates of a large call to the system when the call ends', () => {
    const session = Session.create('wide', 'test', wideGraph(), { ...defaultSessionSettings(), threads: 1 });
    try {
      const one = session.run({ x: f32Input(new Float32Array(HIDDEN), [1, HIDDEN]) });
      // sigmoid(0) = 0.5 on every wide unit, averaged back: 0.5.
      expect(f32Output(one, 'y')[0]).toBeCloseTo(0.5, 5);
      const before = residentBytes();
      const large = session.run({ x: f32Input(new Float32Array(ROWS * HIDDEN), [ROWS, HIDDEN]) });
      expect(f32Output(large, 'y').length).toBe(ROWS * HIDDEN);
      session.run({ x: f32Input(new Float32Array(HIDDEN), [1, HIDDEN]) });
      const grown = residentBytes() - before;
      // The large call touched 256 MiB of intermediates; an arena would still hold them. What may
      // remain is the 2 MiB output and the allocator's slack.
      expect(grown).toBeLessThan(64 * MIB);
    } finally {
      session.release();
    }
  });
});
