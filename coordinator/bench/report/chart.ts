// SVG figures for `kmoe bench` and `kmoe eval --sweep --chart`: line charts (Pareto curves,
// throughput vs concurrency) and grouped bar charts, as Vega-Lite specs rendered to standalone
// SVG by Vega's headless renderer (no canvas, no browser). This module only checks the data and
// maps our chart specs to Vega-Lite; layout, ticks, legends and escaping are Vega's.

import type { TopLevelSpec } from 'vega-lite';
import { ChartSpecError } from './errors.js';

export interface ChartPoint {
  readonly x: number;
  readonly y: number;
  /** Drawn next to the marker, e.g. the threshold that produced this operating point. */
  readonly label?: string;
}

export interface LineSeries {
  readonly name: string;
  /** Connected in the given order, so a Pareto sweep is drawn in sweep order, not sorted by x. */
  readonly points: readonly ChartPoint[];
  readonly dashed?: boolean;
}

export interface ReferenceLine {
  readonly axis: 'x' | 'y';
  readonly value: number;
  readonly label: string;
}

export interface LineChartSpec {
  readonly title: string;
  readonly xLabel: string;
  readonly yLabel: string;
  readonly series: readonly LineSeries[];
  readonly width?: number;
  readonly height?: number;
  readonly xLog?: boolean;
  readonly yLog?: boolean;
  /** Baselines such as "dense top-8 perplexity"; the axes always extend to show them. */
  readonly referenceLines?: readonly ReferenceLine[];
}

export interface BarSeries {
  readonly name: string;
  /** One value per category; null marks "not measured" and is drawn as "n/a", never as 0. */
  readonly values: readonly (number | null)[];
}

export interface BarChartSpec {
  readonly title: string;
  readonly xLabel?: string;
  readonly yLabel: string;
  readonly categories: readonly string[];
  readonly series: readonly BarSeries[];
  readonly width?: number;
  readonly height?: number;
  readonly referenceLines?: readonly { readonly value: number; readonly label: string }[];
  /** Print each bar's value above it (useful when the exact numbers matter, e.g. bytes/token). */
  readonly valueLabels?: boolean;
}

// Okabe & Ito's palette, distinguishable under the common colour-vision deficiencies (their
// yellow left out: it nearly vanishes on white). Marker shapes double-encode the series so a
// greyscale print can still tell lines apart.
export const SERIES_COLORS = ['#0072B2', '#D55E00', '#009E73', '#CC79A7', '#E69F00', '#56B4E9', '#000000'];
const MARKER_SHAPES = [
  'circle',
  'square',
  'triangle-up',
  'diamond',
  'triangle-down',
  'cross',
  'triangle-right',
];

const DEFAULT_WIDTH = 720;
const DEFAULT_HEIGHT = 450;
const MIN_WIDTH = 240;
const MIN_HEIGHT = 160;
const REFERENCE_COLOR = '#666666';
const NOT_FINITE_HINT = 'fix or drop the measurement before plotting; a figure must not hide bad data';

/** One standalone SVG document for a line chart. */
export async function renderLineChart(spec: LineChartSpec): Promise<string> {
  return render({ ...lineSpec(spec), autosize: FIT });
}

/** Several line charts stacked vertically in one SVG document (e.g. throughput over latency). */
export async function renderLineCharts(specs: readonly LineChartSpec[]): Promise<string> {
  if (specs.length === 0) throw new ChartSpecError('no charts to stack');
  // Each panel keeps its own scales and legend; sizes are plot areas here ('fit' is for one view).
  return render({
    vconcat: specs.map((s) => lineSpec(s)),
    resolve: { scale: { color: 'independent', shape: 'independent', strokeDash: 'independent' } },
  });
}

/** One standalone SVG document for a grouped bar chart. */
export async function renderBarChart(spec: BarChartSpec): Promise<string> {
  return render({ ...barSpec(spec), autosize: FIT });
}

// Vega-Lite's `width`/`height` are the plot area; 'fit' makes them the whole figure instead.
const FIT = { type: 'fit', contains: 'padding' } as const;

async function render(spec: object): Promise<string> {
  const top = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    background: 'white',
    // Series names are the figure's key; Vega would cut them at 160 px.
    config: { legend: { labelLimit: 400 } },
    ...spec,
  } as TopLevelSpec;
  // Loaded on first use: ~0.2 s that `kmoe eval` without --sweep (which imports this) need not pay.
  const [{ parse, View }, { compile }] = await Promise.all([import('vega'), import('vega-lite')]);
  const view = new View(parse(compile(top).spec), { renderer: 'none' });
  try {
    return `<?xml version="1.0" encoding="UTF-8"?>\n${await view.toSVG()}\n`;
  } finally {
    view.finalize();
  }
}

function frame(title: string, width?: number, height?: number) {
  const w = width ?? DEFAULT_WIDTH;
  const h = height ?? DEFAULT_HEIGHT;
  if (!Number.isFinite(w) || !Number.isFinite(h) || w < MIN_WIDTH || h < MIN_HEIGHT)
    throw new ChartSpecError(`chart "${title}": size ${w}x${h} is not drawable`, {
      hint: `use at least ${MIN_WIDTH}x${MIN_HEIGHT} (default ${DEFAULT_WIDTH}x${DEFAULT_HEIGHT})`,
    });
  return { title, width: w, height: h } as const;
}

function lineSpec(spec: LineChartSpec): object {
  const top = frame(spec.title, spec.width, spec.height);
  const where = `line chart "${spec.title}"`;
  if (spec.series.length === 0) throw new ChartSpecError(`${where} has no series`);
  const names = spec.series.map((s) => s.name);
  if (new Set(names).size !== names.length)
    throw new ChartSpecError(`${where}: series names must be unique, got ${names.join(', ')}`);
  const rows = spec.series.flatMap((s, si) => {
    if (s.points.length === 0)
      throw new ChartSpecError(`${where}: series "${s.name}" (index ${si}) has no points`, {
        hint: 'leave the series out, or say in the caption why it has no data',
      });
    return s.points.map((p, pi) => {
      const at = `${where}: series "${s.name}" (index ${si}), point ${pi}`;
      checkValue(p.x, `${at}: x`, spec.xLog === true);
      checkValue(p.y, `${at}: y`, spec.yLog === true);
      return { series: s.name, order: pi, x: p.x, y: p.y, label: p.label ?? '', dashed: s.dashed === true };
    });
  });
  const refs = (spec.referenceLines ?? []).map((r, ri) => {
    const log = r.axis === 'x' ? spec.xLog === true : spec.yLog === true;
    checkValue(r.value, `${where}: reference line ${ri} ("${r.label}")`, log);
    return r;
  });
  const x = { field: 'x', type: 'quantitative', title: spec.xLabel, scale: axisScale(spec.xLog) } as const;
  const y = { field: 'y', type: 'quantitative', title: spec.yLabel, scale: axisScale(spec.yLog) } as const;
  const color = {
    field: 'series',
    type: 'nominal',
    title: null,
    scale: { domain: names, range: SERIES_COLORS },
  };
  const layers: object[] = [
    {
      mark: { type: 'line', strokeWidth: 2 },
      encoding: {
        x,
        y,
        color,
        order: { field: 'order', type: 'quantitative' },
        strokeDash: {
          field: 'dashed',
          type: 'nominal',
          legend: null,
          scale: {
            domain: [false, true],
            range: [
              [1, 0],
              [6, 4],
            ],
          },
        },
      },
    },
    {
      mark: { type: 'point', filled: true, size: 60, opacity: 1 },
      encoding: {
        x,
        y,
        color,
        shape: {
          field: 'series',
          type: 'nominal',
          title: null,
          scale: { domain: names, range: MARKER_SHAPES },
        },
      },
    },
    {
      transform: [{ filter: 'datum.label !== ""' }],
      mark: { type: 'text', align: 'left', dx: 7, dy: -7, fontSize: 11 },
      encoding: { x, y, text: { field: 'label' }, color },
    },
  ];
  for (const axis of ['x', 'y'] as const) {
    const on = refs.filter((r) => r.axis === axis);
    if (on.length === 0) continue;
    const enc =
      axis === 'x'
        ? { x: { field: 'value', type: 'quantitative' } }
        : { y: { field: 'value', type: 'quantitative' } };
    layers.push(
      {
        data: { values: on.map((r) => ({ value: r.value, label: r.label })) },
        mark: { type: 'rule', color: REFERENCE_COLOR, strokeDash: [2, 3] },
        encoding: enc,
      },
      {
        data: { values: on.map((r) => ({ value: r.value, label: r.label })) },
        mark:
          axis === 'y'
            ? { type: 'text', align: 'right', baseline: 'bottom', dy: -2, x: 'width', color: REFERENCE_COLOR }
            : { type: 'text', align: 'left', baseline: 'top', dx: 3, y: 0, color: REFERENCE_COLOR },
        encoding: { ...enc, text: { field: 'label' } },
      },
    );
  }
  return { ...top, data: { values: rows }, layer: layers };
}

function barSpec(spec: BarChartSpec): object {
  const top = frame(spec.title, spec.width, spec.height);
  const where = `bar chart "${spec.title}"`;
  if (spec.categories.length === 0) throw new ChartSpecError(`${where} has no categories`);
  if (spec.series.length === 0) throw new ChartSpecError(`${where} has no series`);
  const names = spec.series.map((s) => s.name);
  let measured = 0;
  const rows = spec.series.flatMap((s, si) => {
    if (s.values.length !== spec.categories.length)
      throw new ChartSpecError(
        `${where}: series "${s.name}" (index ${si}) has ${s.values.length} values for ${spec.categories.length} categories`,
        { hint: 'give one value per category, null where it was not measured' },
      );
    return s.values.map((v, ci) => {
      if (v !== null) {
        checkValue(v, `${where}: series "${s.name}" (index ${si}), category "${spec.categories[ci]}"`, false);
        measured++;
      }
      return { series: s.name, category: spec.categories[ci]!, value: v };
    });
  });
  if (measured === 0) throw new ChartSpecError(`${where}: every value is null, nothing to draw`);
  const refs = (spec.referenceLines ?? []).map((r, ri) => {
    checkValue(r.value, `${where}: reference line ${ri} ("${r.label}")`, false);
    return r;
  });
  const x = {
    field: 'category',
    type: 'nominal',
    title: spec.xLabel ?? null,
    sort: spec.categories,
    axis: { labelAngle: -35, labelLimit: 240 },
  } as const;
  const y = { field: 'value', type: 'quantitative', title: spec.yLabel } as const;
  const xOffset = { field: 'series', type: 'nominal', sort: names, scale: { domain: names } } as const;
  const color = {
    field: 'series',
    type: 'nominal',
    title: null,
    scale: { domain: names, range: SERIES_COLORS },
  };
  const layers: object[] = [
    {
      transform: [{ filter: 'datum.value !== null' }],
      mark: { type: 'bar' },
      encoding: { x, xOffset, y, color },
    },
    // A missing measurement is said, not drawn as a zero-height bar.
    {
      transform: [{ filter: 'datum.value === null' }, { calculate: '0', as: 'zero' }],
      mark: { type: 'text', baseline: 'bottom', dy: -3, fontSize: 10, text: 'n/a' },
      encoding: { x, xOffset, y: { field: 'zero', type: 'quantitative' } },
    },
  ];
  if (spec.valueLabels === true)
    layers.push({
      transform: [{ filter: 'datum.value !== null' }],
      mark: { type: 'text', baseline: 'bottom', dy: -3, fontSize: 10 },
      encoding: { x, xOffset, y, text: { field: 'value', type: 'quantitative', format: '~r' } },
    });
  if (refs.length > 0) {
    const data = { values: refs.map((r) => ({ value: r.value, label: r.label })) };
    layers.push(
      { data, mark: { type: 'rule', color: REFERENCE_COLOR, strokeDash: [2, 3] }, encoding: { y } },
      {
        data,
        mark: {
          type: 'text',
          align: 'right',
          baseline: 'bottom',
          dy: -2,
          x: 'width',
          color: REFERENCE_COLOR,
        },
        encoding: { y, text: { field: 'label' } },
      },
    );
  }
  return { ...top, data: { values: rows }, layer: layers };
}

// Padding keeps markers on the first and last value clear of the frame instead of cut in half.
function axisScale(log: boolean | undefined) {
  return log === true ? { type: 'log', padding: 10 } : { zero: false, padding: 10 };
}

function checkValue(v: number, where: string, log: boolean): void {
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new ChartSpecError(`${where} is ${String(v)}, not a finite number`, { hint: NOT_FINITE_HINT });
  if (log && v <= 0)
    throw new ChartSpecError(`${where} is ${v}, which a log axis cannot show`, {
      hint: 'use a linear axis, or drop non-positive values and say so in the caption',
    });
}
