// Rewrites a serialized ONNX graph so that its weight matmuls compute in int8: every
// MatMul(x, Transpose(W)) with W an fp32 [N, K] initializer becomes com.microsoft MatMulNBits on
// W's blockwise 8-bit form (int8-weights.ts, accuracy_level 4 as for the int8 experts). Family
// agnostic: every family's graphs write a projection as Transpose(initializer) -> MatMul, so
// dense layers and LM heads of all families quantize without a per-family builder.
//
// Router matmuls stay fp32 (a matmul whose output feeds Softmax, Sigmoid or TopK): routing is a
// discrete choice and llama.cpp's Q8_0 files keep ffn_gate_inp in f32 too.

import protoPkg from 'onnx-proto';
import { ElemType } from './graph-builder.js';
import { INT8_BLOCK, quantizeInt8Blockwise } from './int8-weights.js';

const { onnx } = protoPkg;

type NodeProto = protoPkg.onnx.INodeProto;
type TensorProto = protoPkg.onnx.ITensorProto;

const ROUTER_CONSUMERS = new Set(['Softmax', 'Sigmoid', 'TopK']);

export interface QuantizedGraph {
  readonly model: Uint8Array;
  /** Weight matrices turned into int8 (by initializer name). */
  readonly quantized: readonly string[];
}

/** `model` with its projection matmuls in int8 (see the module comment). */
export function quantizeMatMulsInt8(model: Uint8Array, block = INT8_BLOCK): QuantizedGraph {
  const proto = onnx.ModelProto.decode(model);
  const graph = proto.graph;
  if (!graph) throw new RangeError('quantizeMatMulsInt8: model without a graph');
  const nodes = graph.node ?? [];
  const inits = new Map<string, TensorProto>();
  for (const t of graph.initializer ?? []) if (t.name) inits.set(t.name, t);
  const consumers = new Map<string, NodeProto[]>();
  for (const n of nodes) {
    for (const i of n.input ?? []) {
      const list = consumers.get(i) ?? [];
      list.push(n);
      consumers.set(i, list);
    }
  }
  const graphOutputs = new Set((graph.output ?? []).map((o) => o.name ?? ''));

  const dropNodes = new Set<NodeProto>();
  const dropInits = new Set<string>();
  const quantized: string[] = [];
  for (const t of nodes) {
    if (t.opType !== 'Transpose' || (t.domain ?? '') !== '') continue;
    const wName = t.input?.[0];
    const tOut = t.output?.[0];
    const w = wName === undefined ? undefined : inits.get(wName);
    if (!w || tOut === undefined || graphOutputs.has(tOut)) continue;
    if (w.dataType !== ElemType.float32 || w.dims?.length !== 2) continue;
    const perm = t.attribute?.find((a) => a.name === 'perm')?.ints?.map(Number);
    if (perm?.[0] !== 1 || perm[1] !== 0) continue;
    const [n, k] = (w.dims as (number | { toNumber(): number })[]).map(Number) as [number, number];
    if (k % block !== 0) continue;
    const users = consumers.get(tOut) ?? [];
    const matmuls = users.filter(
      (u) => u.opType === 'MatMul' && (u.domain ?? '') === '' && u.input?.[1] === tOut && u.input[0] !== tOut,
    );
    if (matmuls.length === 0 || matmuls.length !== users.length) continue;
    const feedsRouter = matmuls.some((m) =>
      (consumers.get(m.output?.[0] ?? '') ?? []).some((c) => ROUTER_CONSUMERS.has(c.opType ?? '')),
    );
    if (feedsRouter) continue;
    if ((consumers.get(wName!) ?? []).length !== 1) continue;

    const q = quantizeInt8Blockwise({ dtype: 'float32', shape: [n, k], data: initializerFloats(w) }, block);
    const qName = `${wName}_q8`;
    const sName = `${wName}_q8_scales`;
    graph.initializer!.push(
      { name: qName, dims: [n, k / block, block], dataType: ElemType.uint8, rawData: q.q },
      {
        name: sName,
        dims: [q.scales.length],
        dataType: ElemType.float32,
        rawData: new Uint8Array(q.scales.buffer, q.scales.byteOffset, q.scales.byteLength),
      },
    );
    for (const m of matmuls) {
      m.opType = 'MatMulNBits';
      m.domain = 'com.microsoft';
      m.input = [m.input![0]!, qName, sName];
      m.attribute = [
        { name: 'K', type: onnx.AttributeProto.AttributeType.INT, i: k },
        { name: 'N', type: onnx.AttributeProto.AttributeType.INT, i: n },
        { name: 'bits', type: onnx.AttributeProto.AttributeType.INT, i: 8 },
        { name: 'block_size', type: onnx.AttributeProto.AttributeType.INT, i: block },
        { name: 'accuracy_level', type: onnx.AttributeProto.AttributeType.INT, i: 4 },
      ];
    }
    dropNodes.add(t);
    dropInits.add(wName!);
    quantized.push(wName!);
  }
  graph.node = nodes.filter((n) => !dropNodes.has(n));
  graph.initializer = (graph.initializer ?? []).filter((t) => !dropInits.has(t.name ?? ''));
  if (quantized.length > 0 && !(proto.opsetImport ?? []).some((o) => o.domain === 'com.microsoft')) {
    proto.opsetImport = [...(proto.opsetImport ?? []), { domain: 'com.microsoft', version: 1 }];
  }
  return { model: onnx.ModelProto.encode(proto).finish(), quantized };
}

function initializerFloats(t: TensorProto): Float32Array {
  if (t.rawData && t.rawData.length > 0) {
    // rawData is a view at any byte offset of the decoded buffer: copy it to an aligned array.
    return new Float32Array(new Uint8Array(t.rawData).buffer);
  }
  return Float32Array.from(t.floatData ?? []);
}
