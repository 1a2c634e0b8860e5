// `kmoe bench traffic`: network bytes per token per MoE layer and per request of expert
// parallelism at a chosen hidden size (default 6144, Mixtral 8x22B's), costed from recorded router
// traces (`kmoe eval --trace`) instead of a running cluster: per routing, cluster size and wire
// dtype, with and without same-worker dedup, beside native top-K on the same router scores.
// Arithmetic only (traffic-cost.ts), so it runs in seconds; writes JSON and an SVG, prints tables.

import path from 'node:path';
import { DEFAULT_WIRE_DTYPE, type WireDType } from '../../shared/protocol/wire-dtype.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { counted } from '../../shared/text/counted.js';
import { openRoutingTrace, type RoutingTraceHeader } from '../evaluation/routing-trace.js';
import { BenchConfigError } from './errors.js';
import { renderBarChart } from './report/chart.js';
import {
  addCounters,
  COSTED_REQUEST_ID,
  TrafficCluster,
  type TrafficCounters,
  zeroCounters,
} from './traffic-cost.js';

/** Mixtral 8x22B's hidden size. */
export const DEFAULT_TRAFFIC_HIDDEN = 6144;

export interface BenchTrafficOptions {
  /** Routing trace files; traces with the same routing are summed into one row. */
  readonly traces: readonly string[];
  /** Hidden size the hidden states are costed at. */
  readonly hidden: number;
  readonly clusterSizes: readonly number[];
  readonly wireDtypes: readonly WireDType[];
  readonly out: string;
  /** SVG bar chart for the default wire dtype (else the first one costed). */
  readonly chart: string;
}

/** The four ways of sending one set of decisions. */
interface Variants {
  chosen: TrafficCounters;
  chosenNoDedup: TrafficCounters;
  native: TrafficCounters;
  nativeNoDedup: TrafficCounters;
}

const zeroVariants = (): Variants => ({
  chosen: zeroCounters(),
  chosenNoDedup: zeroCounters(),
  native: zeroCounters(),
  nativeNoDedup: zeroCounters(),
});

interface Group {
  readonly routing: string;
  readonly label: string;
  readonly traces: { file: string; corpus: string; windows: { start: number; end: number } }[];
  windows: number;
  tokenLayers: number;
  pairs: number;
  nativePairs: number;
  /** [cluster index][wire index]: a request (window) as one batch, and token by token. */
  readonly batch: Variants[][];
  readonly perToken: Variants[][];
}

type PerVariant = Record<keyof Variants, number>;

export interface TrafficRow {
  readonly routing: string;
  readonly label: string;
  readonly workers: number;
  readonly wire: WireDType;
  readonly windows: number;
  readonly tokenLayers: number;
  readonly avgK: number;
  readonly nativeAvgK: number;
  /** Bytes (both directions) per token per MoE layer, each request (window) sent as one batch. */
  readonly bytesPerTokenLayer: PerVariant;
  /** The same, every token its own step (decode): one message per token per worker it uses. */
  readonly decodeBytesPerTokenLayer: PerVariant;
  /** Bytes per request: one window's tokens through every traced MoE layer, as one batch. */
  readonly bytesPerRequest: PerVariant;
  /** Hidden states sent per token per MoE layer (a token counts once per worker it goes to, with dedup). */
  readonly hiddenStatesPerTokenLayer: PerVariant;
  readonly messagesPerRequest: PerVariant;
  /** 1 - bytes / native top-K bytes, with dedup and without (batch framing). */
  readonly saving: { readonly dedup: number; readonly noDedup: number };
}

/** A routing's name for people: a profile by its file name, a spec as written, native top-K said so. */
export function routingLabel(routing: string, nativeK: number): string {
  if (routing === `topk:${nativeK}`) return `native (${routing})`;
  return routing.toLowerCase().endsWith('.json') ? path.basename(routing, '.json') : routing;
}

export async function run(o: BenchTrafficOptions, argv: readonly string[]): Promise<number> {
  const { out, chart: svg, hidden } = o;
  const wires = [...new Set(o.wireDtypes)];
  const sizes = [...new Set(o.clusterSizes)];
  const log = (line: string) => process.stderr.write(`bench traffic: ${line}\n`);
  let first: RoutingTraceHeader | undefined;
  let clusters: TrafficCluster[] = [];
  const groups = new Map<string, Group>();
  for (const file of o.traces) {
    const trace = await openRoutingTrace(file);
    const h = trace.header;
    if (!first) {
      first = h;
      for (const n of sizes)
        if (n > h.numExperts)
          throw new BenchConfigError(
            `--cluster-sizes: ${counted(n, 'worker')} exceed the model's ${h.numExperts} experts`,
            {
              details: { workers: n, experts: h.numExperts },
              hint: `costs need every worker to hold at least one expert: use at most ${h.numExperts}`,
            },
          );
      clusters = sizes.map((n) => new TrafficCluster(n, h.numExperts, hidden));
    } else if (h.model.fingerprint !== first.model.fingerprint || h.windowLen !== first.windowLen) {
      throw new BenchConfigError(
        `${file} was recorded on another model or window length than ${o.traces[0]} ` +
          `(${h.model.dir}, windows of ${h.windowLen} vs ${first.model.dir}, ${first.windowLen})`,
        { details: { file, first: o.traces[0]! }, hint: 'compare traces of one model and window length' },
      );
    }
    let g = groups.get(h.routing);
    if (!g) {
      const grid = () => clusters.map(() => wires.map(zeroVariants));
      g = {
        routing: h.routing,
        label: routingLabel(h.routing, h.nativeK),
        traces: [],
        windows: 0,
        tokenLayers: 0,
        pairs: 0,
        nativePairs: 0,
        batch: grid(),
        perToken: grid(),
      };
      groups.set(h.routing, g);
    }
    const overlap = g.traces.find(
      (t) => t.corpus === h.corpus && t.windows.start < h.windows.end && h.windows.start < t.windows.end,
    );
    if (overlap)
      throw new BenchConfigError(
        `${file} and ${overlap.file} trace ${g.label} on the same windows of ${h.corpus}: they would be counted twice`,
        { details: { file, other: overlap.file }, hint: 'give each (routing, text window) once' },
      );
    g.traces.push({ file, corpus: h.corpus, windows: h.windows });
    for await (const w of trace.windows) {
      g.windows++;
      w.layers.forEach((l, m) => {
        const layer = h.moeLayers[m]!;
        g.tokenLayers += l.chosen.numTokens;
        g.pairs += l.chosen.offsets[l.chosen.numTokens]!;
        g.nativePairs += l.native.offsets[l.native.numTokens]!;
        clusters.forEach((cluster, c) => {
          const chosen = cluster.shares(l.chosen);
          const native = cluster.shares(l.native);
          const chosenTokens = cluster.perTokenMessages(l.chosen);
          const nativeTokens = cluster.perTokenMessages(l.native);
          wires.forEach((wire, i) => {
            const b = g.batch[c]![i]!;
            addCounters(b.chosen, cluster.cost(layer, wire, chosen, true));
            addCounters(b.chosenNoDedup, cluster.cost(layer, wire, chosen, false));
            addCounters(b.native, cluster.cost(layer, wire, native, true));
            addCounters(b.nativeNoDedup, cluster.cost(layer, wire, native, false));
            const t = g.perToken[c]![i]!;
            addCounters(t.chosen, cluster.costMessages(layer, wire, chosenTokens, true));
            addCounters(t.chosenNoDedup, cluster.costMessages(layer, wire, chosenTokens, false));
            addCounters(t.native, cluster.costMessages(layer, wire, nativeTokens, true));
            addCounters(t.nativeNoDedup, cluster.costMessages(layer, wire, nativeTokens, false));
          });
        });
      });
    }
    log(
      `${file}: ${routingLabel(h.routing, h.nativeK)}, ${h.corpus} windows ${h.windows.start}:${h.windows.end}`,
    );
  }
  if (!first)
    throw new BenchConfigError('no --trace given', { hint: 'record traces with kmoe eval --trace FILE' });
  const header = first;

  const rows: TrafficRow[] = [];
  for (const g of groups.values()) {
    sizes.forEach((n, c) => {
      wires.forEach((wire, i) => {
        const b = g.batch[c]![i]!;
        const t = g.perToken[c]![i]!;
        const per = (v: Variants, f: (x: TrafficCounters) => number, d: number): PerVariant => ({
          chosen: f(v.chosen) / d,
          chosenNoDedup: f(v.chosenNoDedup) / d,
          native: f(v.native) / d,
          nativeNoDedup: f(v.nativeNoDedup) / d,
        });
        rows.push({
          routing: g.routing,
          label: g.label,
          workers: n,
          wire,
          windows: g.windows,
          tokenLayers: g.tokenLayers,
          avgK: g.pairs / g.tokenLayers,
          nativeAvgK: g.nativePairs / g.tokenLayers,
          bytesPerTokenLayer: per(b, (x) => x.bytes, g.tokenLayers),
          decodeBytesPerTokenLayer: per(t, (x) => x.bytes, g.tokenLayers),
          bytesPerRequest: per(b, (x) => x.bytes, g.windows),
          hiddenStatesPerTokenLayer: per(b, (x) => x.hiddenStates, g.tokenLayers),
          messagesPerRequest: per(b, (x) => x.messages, g.windows),
          saving: {
            dedup: 1 - b.chosen.bytes / b.native.bytes,
            noDedup: 1 - b.chosenNoDedup.bytes / b.nativeNoDedup.bytes,
          },
        });
      });
    });
  }

  const note = provenance(header, hidden, [...groups.values()]);
  const result = {
    benchmark: 'traffic',
    command: `kmoe bench traffic ${argv.join(' ')}`.trim(),
    note,
    model: header.model,
    tracedHidden: header.hidden,
    hidden,
    numExperts: header.numExperts,
    nativeK: header.nativeK,
    moeLayers: header.moeLayers,
    placement:
      'contiguous: worker w holds an even, contiguous range of experts (as --workers N and kmoe local-cluster)',
    request: `one window of ${header.windowLen} tokens of the traced text through the ${header.moeLayers.length} traced MoE layers, sent as one batch (a prefill)`,
    costedRequestId: COSTED_REQUEST_ID,
    traces: [...groups.values()].map((g) => ({ routing: g.routing, label: g.label, traces: g.traces })),
    rows,
  };
  writeOutputFile(out, `${JSON.stringify(result, null, 2)}\n`);
  const chartWire = wires.includes(DEFAULT_WIRE_DTYPE) ? DEFAULT_WIRE_DTYPE : wires[0]!;
  writeOutputFile(svg, await chart(rows, [...groups.values()], sizes, chartWire, hidden));
  process.stdout.write(`${note}\n\n${tables(rows, wires, header, hidden)}`);
  process.stdout.write(`wrote ${out} and ${svg}\n`);
  return 0;
}

function provenance(h: RoutingTraceHeader, hidden: number, groups: readonly Group[]): string {
  const texts = [
    ...new Set(groups.flatMap((g) => g.traces.map((t) => `${t.corpus} ${t.windows.start}:${t.windows.end}`))),
  ];
  return (
    `Routing decisions come from recorded router traces of the demo model (${h.model.dir}, ${h.model.type}, ` +
    `${h.numExperts} experts, native top-${h.nativeK}, ${h.moeLayers.length} MoE layers, hidden ${h.hidden}) ` +
    `on validation text (kmoe eval --trace; windows ${texts.join(', ')}), not from random numbers. ` +
    `Bytes are the wire protocol's frame sizes with the hidden size scaled to ${hidden}` +
    `${hidden === DEFAULT_TRAFFIC_HIDDEN ? ' (Mixtral 8x22B)' : ''}, both directions (hidden states out, ` +
    'partial sums back), WebSocket/TCP headers not counted. Native top-K is costed on the same router ' +
    'scores of each trace. A request = one window of the text sent as one batch.'
  );
}

function tables(
  rows: readonly TrafficRow[],
  wires: readonly WireDType[],
  h: RoutingTraceHeader,
  hidden: number,
): string {
  const n0 = (x: number) => Math.round(x).toLocaleString('en-US');
  const mb = (x: number) => `${(x / 1e6).toFixed(2)} MB`;
  const pct = (x: number) => `${(100 * x).toFixed(1)}%`;
  const out: string[] = [];
  for (const wire of wires) {
    out.push(
      `${wire} wire, hidden ${hidden}: bytes per token per MoE layer, and per request (${h.windowLen} tokens x ` +
        `${h.moeLayers.length} MoE layers); native = native top-${h.nativeK} on the same router scores`,
      '',
      '| routing | avg K | workers | dedup | native, dedup | saving | no dedup | native, no dedup | saving | per request, dedup | native per request, dedup |',
      '|---|---|---|---|---|---|---|---|---|---|---|',
    );
    for (const r of rows.filter((x) => x.wire === wire)) {
      const b = r.bytesPerTokenLayer;
      const q = r.bytesPerRequest;
      out.push(
        `| ${r.label} | ${r.avgK.toFixed(3)} | ${r.workers} | ${n0(b.chosen)} | ${n0(b.native)} | ${pct(r.saving.dedup)} | ` +
          `${n0(b.chosenNoDedup)} | ${n0(b.nativeNoDedup)} | ${pct(r.saving.noDedup)} | ${mb(q.chosen)} | ${mb(q.native)} |`,
      );
    }
    out.push('');
  }
  return `${out.join('\n')}`;
}

function chart(
  rows: readonly TrafficRow[],
  groups: readonly Group[],
  sizes: readonly number[],
  wire: WireDType,
  hidden: number,
): Promise<string> {
  const labels = groups.map((g) => g.label);
  const value = (label: string, n: number, key: 'chosen' | 'chosenNoDedup') => {
    const r = rows.find((x) => x.label === label && x.workers === n && x.wire === wire);
    // Whole bytes: the labels above the bars stay short enough for 24 bars.
    return r ? Math.round(r.bytesPerTokenLayer[key]) : null;
  };
  return renderBarChart({
    title: `Bytes per token per MoE layer at hidden ${hidden}, ${wire} wire (routing from recorded traces)`,
    yLabel: 'bytes per token per MoE layer',
    categories: labels,
    series: sizes.flatMap((n) => [
      { name: `${counted(n, 'worker')}`, values: labels.map((l) => value(l, n, 'chosen')) },
      { name: `${counted(n, 'worker')}, no dedup`, values: labels.map((l) => value(l, n, 'chosenNoDedup')) },
    ]),
    valueLabels: true,
    width: 1100,
  });
}
