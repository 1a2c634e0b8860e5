// Routing trace files (`kmoe eval --trace FILE`): the router's decisions of a real forward pass,
// per window and MoE layer, for tools that cost routing without running the model (`kmoe bench
// traffic`). Format "kmoe-routing-trace" version 1, JSON Lines (gzip-compressed when the name ends
// in .gz), documented in coordinator/evaluation/README.md:
//
//   line 1: header  {"format":"kmoe-routing-trace","version":1,"model":{dir,type,fingerprint},
//                    "routing","corpus","windows":{start,end},"windowLen","numExperts","nativeK",
//                    "hidden","moeLayers":[decoder layer of each MoE layer],"command"}
//   then one line per window, in order:
//           {"window":W,"layers":[per MoE layer {"k":[experts per token],"experts":[...],
//            "weights":[...],"nativeExperts":[nativeK per token],"nativeWeights":[...]}]}
//
// `experts`/`weights` are what the routing in force chose (token t's are the k[t] entries after
// those of tokens < t, in the policy's order); `native*` are the model's native top-K on the same
// router scores. Weights are float32 values written with the fewest digits that read back exactly.

import { createReadStream, createWriteStream, renameSync, rmSync, type WriteStream } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { Readable, Writable } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import { z } from 'zod';
import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';
import { makeDirectory } from '../../shared/runtime/make-directory.js';
import { outputTarget, tempBeside } from '../../shared/runtime/output-file.js';
import type { RoutingTraceLayer } from '../moe/observers/routing-trace.js';
import { RoutingTraceError } from './errors.js';

export const ROUTING_TRACE_FORMAT = 'kmoe-routing-trace';
export const ROUTING_TRACE_VERSION = 1;

const headerSchema = z.object({
  format: z.literal(ROUTING_TRACE_FORMAT),
  version: z.literal(ROUTING_TRACE_VERSION),
  model: z.object({ dir: z.string(), type: z.string(), fingerprint: z.string() }),
  /** The --routing argument (spec, or profile path), or the native spec. */
  routing: z.string(),
  /** The --ids or --text file the windows were cut from. */
  corpus: z.string(),
  windows: z.object({ start: z.number().int().min(0), end: z.number().int().min(0) }),
  windowLen: z.number().int().min(1),
  numExperts: z.number().int().min(1),
  nativeK: z.number().int().min(1),
  hidden: z.number().int().min(1),
  moeLayers: z.array(z.number().int().min(0)).min(1),
  command: z.string(),
});

export type RoutingTraceHeader = z.infer<typeof headerSchema>;

/** One window's decisions: per MoE layer, what was chosen and native top-K, rows = the window's tokens. */
export interface TraceWindow {
  readonly window: number;
  readonly layers: readonly { readonly chosen: ExpertAssignment; readonly native: ExpertAssignment }[];
}

const layerSchema = z.object({
  k: z.array(z.number().int().min(0)),
  experts: z.array(z.number().int().min(0)),
  weights: z.array(z.number()),
  nativeExperts: z.array(z.number().int().min(0)),
  nativeWeights: z.array(z.number()),
});
const windowSchema = z.object({ window: z.number().int().min(0), layers: z.array(layerSchema) });

/** Shortest decimal that reads back as the same float32. */
function f32(x: number): number {
  for (let digits = 6; digits < 9; digits++) {
    const short = Number(x.toPrecision(digits));
    if (Math.fround(short) === x) return short;
  }
  return Number(x.toPrecision(9));
}

function rowsOf(a: ExpertAssignment, from: number, to: number) {
  const lo = a.offsets[from]!;
  const hi = a.offsets[to]!;
  const k: number[] = [];
  for (let t = from; t < to; t++) k.push(a.offsets[t + 1]! - a.offsets[t]!);
  return { k, experts: [...a.experts.subarray(lo, hi)], weights: [...a.weights.subarray(lo, hi)].map(f32) };
}

export class RoutingTraceWriter {
  private nextWindow: number;

  private constructor(
    private readonly header: RoutingTraceHeader,
    private readonly out: Writable,
    private readonly file: WriteStream,
    /** Where the trace is streamed: a temp file beside `target`, or `target` (a device, a FIFO). */
    private readonly written: string,
    private readonly target: string,
  ) {
    this.nextWindow = header.windows.start;
  }

  /**
   * Writes the header into a temp file beside `file` (its directory made first); close() renames
   * it over `file`, so a run that stops early leaves the file that was there, never half a trace.
   * A device or a FIFO (/dev/null) is written in place.
   */
  static async create(file: string, header: RoutingTraceHeader): Promise<RoutingTraceWriter> {
    makeDirectory(path.dirname(path.resolve(file)));
    const checked = headerSchema.parse(header);
    const { target, inPlace } = outputTarget(file);
    const written = inPlace ? target : tempBeside(target);
    const stream = createWriteStream(written, { flags: inPlace ? 'w' : 'wx' });
    await new Promise<void>((resolve, reject) => {
      stream.once('open', () => resolve());
      stream.once('error', reject);
    });
    let out: Writable = stream;
    if (file.endsWith('.gz')) {
      const gz = createGzip();
      gz.pipe(stream);
      out = gz;
    }
    const w = new RoutingTraceWriter(checked, out, stream, written, target);
    await w.line(checked);
    return w;
  }

  /**
   * One forward pass's recorded layers over `windows` windows laid end to end (rows = windows x
   * windowLen), which must be the next windows of the range.
   */
  async write(layers: readonly RoutingTraceLayer[], windows: number): Promise<void> {
    const L = this.header.windowLen;
    const K = this.header.nativeK;
    if (layers.length !== this.header.moeLayers.length)
      throw new RangeError(
        `routing trace: ${layers.length} MoE layers recorded, the model has ${this.header.moeLayers.length}`,
      );
    layers.forEach((l, i) => {
      if (l.layer !== this.header.moeLayers[i] || l.chosen.numTokens !== windows * L)
        throw new RangeError(
          `routing trace: layer ${l.layer} recorded ${l.chosen.numTokens} rows, expected decoder layer ` +
            `${this.header.moeLayers[i]} with ${windows * L}`,
        );
      for (let t = 0; t < l.native.numTokens; t++)
        if (l.native.offsets[t + 1]! - l.native.offsets[t]! !== K)
          throw new RangeError(
            `routing trace: native top-${K} of layer ${l.layer} row ${t} is not ${K} experts`,
          );
    });
    for (let w = 0; w < windows; w++) {
      const rows = (a: ExpertAssignment) => rowsOf(a, w * L, (w + 1) * L);
      await this.line({
        window: this.nextWindow++,
        layers: layers.map((l) => {
          const c = rows(l.chosen);
          const n = rows(l.native);
          return { ...c, nativeExperts: n.experts, nativeWeights: n.weights };
        }),
      });
    }
  }

  /**
   * Ends the file and puts it in place; fails, removing it, if fewer windows than the header's
   * range were written.
   */
  async close(): Promise<void> {
    const done = new Promise<void>((resolve, reject) => {
      this.file.once('close', () => resolve());
      this.file.once('error', reject);
    });
    this.out.end();
    await done;
    if (this.nextWindow !== this.header.windows.end) {
      this.removeTemp();
      throw new RangeError(
        `routing trace: wrote windows ${this.header.windows.start}:${this.nextWindow} of ${this.header.windows.start}:${this.header.windows.end}`,
      );
    }
    if (this.written !== this.target) renameSync(this.written, this.target);
  }

  /** Ends and deletes the temp file (the run failed): the file that was there stays, untouched. */
  async discard(): Promise<void> {
    const done = new Promise<void>((resolve) => this.file.once('close', () => resolve()));
    this.out.end();
    await done;
    this.removeTemp();
  }

  /**
   * Deletes the temp file at once, synchronously: for a signal handler, which cannot wait for the
   * stream to end.
   */
  removeTemp(): void {
    if (this.written !== this.target) rmSync(this.written, { force: true });
  }

  private async line(value: unknown): Promise<void> {
    if (!this.out.write(`${JSON.stringify(value)}\n`))
      await new Promise<void>((resolve) => this.out.once('drain', resolve));
  }
}

function assignmentOf(
  k: readonly number[],
  experts: readonly number[],
  weights: readonly number[],
  numExperts: number,
): ExpertAssignment | string {
  const offsets = new Int32Array(k.length + 1);
  for (let t = 0; t < k.length; t++) offsets[t + 1] = offsets[t]! + k[t]!;
  const n = offsets[k.length]!;
  if (experts.length !== n || weights.length !== n)
    return `${experts.length} experts and ${weights.length} weights for ${n} pairs`;
  if (experts.some((e) => e >= numExperts)) return `an expert index is >= ${numExperts}`;
  return {
    numTokens: k.length,
    offsets,
    experts: Int32Array.from(experts),
    weights: Float32Array.from(weights),
  };
}

/** Reads a trace: the header at once, the windows as they are iterated (the file is streamed). */
export async function openRoutingTrace(
  file: string,
): Promise<{ header: RoutingTraceHeader; windows: AsyncIterable<TraceWindow> }> {
  let input: Readable = createReadStream(file);
  await new Promise<void>((resolve, reject) => {
    input.once('open', () => resolve());
    input.once('error', (err) =>
      reject(
        new RoutingTraceError(`cannot read routing trace ${file}: ${(err as NodeJS.ErrnoException).code}`, {
          cause: err,
          details: { file },
          hint: 'record one with kmoe eval --trace FILE',
        }),
      ),
    );
  });
  if (file.endsWith('.gz')) input = input.pipe(createGunzip());
  const lines = createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })[Symbol.asyncIterator]();
  const bad = (line: number, what: string) =>
    new RoutingTraceError(`${file} line ${line}: ${what}`, {
      details: { file, line },
      hint: `a ${ROUTING_TRACE_FORMAT} version ${ROUTING_TRACE_VERSION} file is written by kmoe eval --trace`,
    });
  const first = await lines.next();
  if (first.done) throw bad(1, 'empty file');
  const header = parseLine(first.value, headerSchema, (why) =>
    bad(1, `not a ${ROUTING_TRACE_FORMAT} version ${ROUTING_TRACE_VERSION} header (${why})`),
  );
  const L = header.windowLen;
  const K = header.nativeK;
  async function* windows(): AsyncGenerator<TraceWindow> {
    try {
      yield* records();
    } catch (err) {
      if (err instanceof RoutingTraceError) throw err;
      // A damaged gzip stream or a read error: say which file.
      throw new RoutingTraceError(`cannot read routing trace ${file}: ${(err as Error).message}`, {
        cause: err,
        details: { file },
        hint: 'record it again with kmoe eval --trace FILE',
      });
    }
  }
  async function* records(): AsyncGenerator<TraceWindow> {
    let lineNo = 1;
    let expect = header.windows.start;
    for (let r = await lines.next(); !r.done; r = await lines.next()) {
      lineNo++;
      if (r.value.trim() === '') continue;
      const w = parseLine(r.value, windowSchema, (why) => bad(lineNo, `not a window record (${why})`));
      if (w.window !== expect) throw bad(lineNo, `window ${w.window}, expected ${expect}`);
      if (w.layers.length !== header.moeLayers.length)
        throw bad(lineNo, `${w.layers.length} layers, the header has ${header.moeLayers.length} MoE layers`);
      const layers = w.layers.map((l, i) => {
        if (l.k.length !== L) throw bad(lineNo, `layer ${i}: ${l.k.length} tokens, windows have ${L}`);
        const chosen = assignmentOf(l.k, l.experts, l.weights, header.numExperts);
        const native = assignmentOf(
          new Array<number>(L).fill(K),
          l.nativeExperts,
          l.nativeWeights,
          header.numExperts,
        );
        if (typeof chosen === 'string') throw bad(lineNo, `layer ${i}: ${chosen}`);
        if (typeof native === 'string') throw bad(lineNo, `layer ${i} native top-${K}: ${native}`);
        return { chosen, native };
      });
      expect++;
      yield { window: w.window, layers };
    }
    if (expect !== header.windows.end)
      throw bad(
        lineNo,
        `the file ends after window ${expect - 1}; the header promises ${header.windows.start}:${header.windows.end}`,
      );
  }
  return { header, windows: windows() };
}

function parseLine<T>(text: string, schema: z.ZodType<T>, bad: (why: string) => RoutingTraceError): T {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  const r = schema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0];
    throw bad(issue ? `${issue.path.join('.') || 'value'}: ${issue.message}` : 'invalid');
  }
  return r.data;
}
