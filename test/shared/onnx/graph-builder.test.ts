// GraphBuilder's outputs: a node's output is renamed to the graph output's name in place (its other
// uses follow), so no Identity copy runs per call; a graph input, or a value output twice, still
// goes through an Identity. onnxruntime computes the same values either way.

import protoPkg from 'onnx-proto';
import { describe, expect, it } from 'vitest';
import { GraphBuilder } from '../../../shared/onnx/graph-builder.js';
import { defaultSessionSettings, f32Input, f32Output, Session } from '../../../shared/onnx/session.js';

const { onnx } = protoPkg;

describe('GraphBuilder outputs', () => {
  it('rename node outputs in place, keep Identity for inputs and second names, and compute the same', () => {
    const g = new GraphBuilder('outputs');
    const x = g.input('x', 'float32', [2]);
    const doubled = g.op('Add', [x, x]);
    // `doubled` is an output and also feeds the next node.
    const squared = g.op('Mul', [doubled, doubled]);
    g.output(doubled, 'doubled', 'float32', [2]);
    g.output(squared, 'squared', 'float32', [2]);
    g.output(doubled, 'doubled_again', 'float32', [2]);
    g.output(x, 'x_out', 'float32', [2]);
    const bytes = g.build();

    const graph = onnx.ModelProto.decode(bytes).graph!;
    const nodes = graph.node!.map((n) => ({ op: n.opType, input: n.input, output: n.output }));
    expect(nodes).toEqual([
      { op: 'Add', input: ['x', 'x'], output: ['doubled'] },
      { op: 'Mul', input: ['doubled', 'doubled'], output: ['squared'] },
      { op: 'Identity', input: ['doubled'], output: ['doubled_again'] },
      { op: 'Identity', input: ['x'], output: ['x_out'] },
    ]);

    const session = Session.create('outputs', 'test', bytes, { ...defaultSessionSettings(), threads: 1 });
    try {
      const out = session.run({ x: f32Input(Float32Array.from([1.5, -2]), [2]) });
      expect(Array.from(f32Output(out, 'doubled'))).toEqual([3, -4]);
      expect(Array.from(f32Output(out, 'squared'))).toEqual([9, 16]);
      expect(Array.from(f32Output(out, 'doubled_again'))).toEqual([3, -4]);
      expect(Array.from(f32Output(out, 'x_out'))).toEqual([1.5, -2]);
    } finally {
      session.release();
    }
  });

  it('refuse an output name already taken', () => {
    const g = new GraphBuilder('taken');
    const x = g.input('x', 'float32', [1]);
    const y = g.op('Neg', [x]);
    expect(() => g.output(y, 'x', 'float32', [1])).toThrow(/value name x used twice/);
  });
});
