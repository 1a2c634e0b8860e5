// A small typed builder for ONNX graphs, so model graphs are written in TypeScript from the model
// config (no Python export step) and handed to onnxruntime as serialized bytes.

import protoPkg from 'onnx-proto';
import type { F32Tensor } from '../tensor.js';

const { onnx } = protoPkg;

export const ElemType = {
  float32: 1,
  uint8: 2,
  int32: 6,
  int64: 7,
  bool: 9,
  float16: 10,
  bfloat16: 16,
} as const;
export type ElemTypeName = keyof typeof ElemType;

/** A dimension: a fixed size or a symbolic name shared between inputs and outputs. */
export type Dim = number | string;

export type AttrValue = number | number[] | string | { float: number } | { floats: number[] };

export interface OpsetImport {
  readonly domain: string;
  readonly version: number;
}

export const DEFAULT_OPSETS: readonly OpsetImport[] = [
  { domain: '', version: 23 },
  { domain: 'com.microsoft', version: 1 },
];

export class GraphBuilder {
  private readonly nodes: protoPkg.onnx.INodeProto[] = [];
  private readonly initializers: protoPkg.onnx.ITensorProto[] = [];
  private readonly inputs: protoPkg.onnx.IValueInfoProto[] = [];
  private readonly outputs: protoPkg.onnx.IValueInfoProto[] = [];
  private readonly names = new Set<string>();
  /** Values some node outputs (what `output` may rename instead of copying). */
  private readonly produced = new Set<string>();
  /** Node outputs renamed to the graph output names they were given. */
  private readonly renames = new Map<string, string>();
  private counter = 0;

  constructor(readonly graphName: string) {}

  input(name: string, type: ElemTypeName, dims: readonly Dim[]): string {
    this.claim(name);
    this.inputs.push(valueInfo(name, type, dims));
    return name;
  }

  /**
   * Marks an existing value as a graph output under `name`. A node's output is renamed in place
   * (every use follows at build time); a graph input, an initializer or a value already output
   * under another name goes through an Identity node. Identities are not free: each is a kernel
   * launch and a copy per run (about 1-2 us on CPU, four of them per decoder layer before this).
   */
  output(value: string, name: string, type: ElemTypeName, dims: readonly Dim[]): void {
    if (value !== name) {
      if (this.produced.has(value) && !this.renames.has(value)) {
        this.claim(name);
        this.renames.set(value, name);
      } else {
        this.nodes.push({ opType: 'Identity', input: [this.renamed(value)], output: [this.claimed(name)] });
      }
    }
    this.outputs.push(valueInfo(name, type, dims));
  }

  weight(name: string, tensor: F32Tensor): string {
    this.claim(name);
    const t = tensor.data;
    this.initializers.push({
      name,
      dims: [...tensor.shape],
      dataType: ElemType.float32,
      rawData: new Uint8Array(t.buffer, t.byteOffset, t.byteLength),
    });
    return name;
  }

  /** An initializer of raw uint8 values (quantized weights). */
  bytes(name: string, data: Uint8Array, dims: readonly number[]): string {
    this.claim(name);
    this.initializers.push({ name, dims: [...dims], dataType: ElemType.uint8, rawData: data });
    return name;
  }

  /** An initializer of 16-bit float bits (bf16 or fp16 weights kept in their storage format). */
  halfs(name: string, type: 'bfloat16' | 'float16', data: Uint16Array, dims: readonly number[]): string {
    this.claim(name);
    this.initializers.push({
      name,
      dims: [...dims],
      dataType: ElemType[type],
      rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  }

  /** An fp32 initializer from a bare array (e.g. quantization scales). */
  floats(name: string, data: Float32Array, dims: readonly number[]): string {
    return this.weight(name, { dtype: 'float32', shape: dims, data });
  }

  constF32(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const name = this.fresh('const_f32');
    this.initializers.push({ name, dims: [...dims], dataType: ElemType.float32, floatData: [...values] });
    return name;
  }

  constI64(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const name = this.fresh('const_i64');
    this.initializers.push({ name, dims: [...dims], dataType: ElemType.int64, int64Data: [...values] });
    return name;
  }

  /** Adds a node with one output and returns the output's name. */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, domain = ''): string {
    return this.opN(opType, inputs, 1, attrs, domain)[0]!;
  }

  /** Adds a node with `outputs` outputs (empty string = optional input left out). */
  opN(
    opType: string,
    inputs: readonly string[],
    outputs: number,
    attrs: Record<string, AttrValue> = {},
    domain = '',
  ): string[] {
    const outs = Array.from({ length: outputs }, () => this.fresh(opType.toLowerCase()));
    for (const o of outs) this.produced.add(o);
    this.nodes.push({
      opType,
      domain,
      name: this.fresh(`n_${opType}`),
      input: [...inputs],
      output: outs,
      attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)),
    });
    return outs;
  }

  build(opsets: readonly OpsetImport[] = DEFAULT_OPSETS): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion: 10,
      producerName: 'kmoe',
      opsetImport: opsets.map((o) => ({ domain: o.domain, version: o.version })),
      graph: {
        name: this.graphName,
        node: this.nodes.map((n) => ({
          ...n,
          input: (n.input ?? []).map((v) => this.renamed(v)),
          output: (n.output ?? []).map((v) => this.renamed(v)),
        })),
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }

  private renamed(value: string): string {
    return this.renames.get(value) ?? value;
  }

  private fresh(prefix: string): string {
    let name: string;
    do name = `${prefix}_${this.counter++}`;
    while (this.names.has(name));
    this.names.add(name);
    return name;
  }

  private claim(name: string): void {
    if (this.names.has(name)) throw new Error(`graph ${this.graphName}: value name ${name} used twice`);
    this.names.add(name);
  }

  private claimed(name: string): string {
    this.claim(name);
    return name;
  }
}

function valueInfo(name: string, type: ElemTypeName, dims: readonly Dim[]): protoPkg.onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType: ElemType[type],
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, v: AttrValue): protoPkg.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (typeof v === 'number') return { name, type: T.INT, i: v };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v };
  if ('float' in v) return { name, type: T.FLOAT, f: v.float };
  return { name, type: T.FLOATS, floats: v.floats };
}
