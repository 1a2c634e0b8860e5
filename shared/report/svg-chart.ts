// Dependency-free SVG figures for `kmoe bench`: line/scatter charts (Pareto curves, throughput
// vs concurrency) and grouped bar charts, each returned as a complete standalone SVG document.
// Layout is computed here from estimated text widths, since there is no renderer to measure with.

import { ChartSpecError } from './errors.js';
import { formatCompact, linearTicks, logTicks, type Ticks } from './ticks.js';

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

// Okabe & Ito's palette, distinguishable under the common colour-vision deficiencies. Their
// yellow is left out because it nearly vanishes on a white background.
export const SERIES_COLORS = [
  '#0072B2',
  '#D55E00',
  '#009E73',
  '#CC79A7',
  '#E69F00',
  '#56B4E9',
  '#000000',
] as const;

export type MarkerShape = 'circle' | 'square' | 'triangle' | 'diamond' | 'triangle-down' | 'plus' | 'cross';
// Shapes double-encode the series so a greyscale print or a colour-blind reader can still tell
// lines apart.
export const MARKER_SHAPES: readonly MarkerShape[] = [
  'circle',
  'square',
  'triangle',
  'diamond',
  'triangle-down',
  'plus',
  'cross',
];

/** Colour and shape of series `index`; past seven series the shape shifts so pairs stay unique. */
export function seriesStyle(index: number): { color: string; shape: MarkerShape } {
  const n = SERIES_COLORS.length;
  return {
    color: SERIES_COLORS[index % n]!,
    shape: MARKER_SHAPES[(index + Math.floor(index / n)) % MARKER_SHAPES.length]!,
  };
}

const DEFAULT_WIDTH = 720;
const DEFAULT_HEIGHT = 450;
const MIN_WIDTH = 240;
const MIN_HEIGHT = 160;
const FONT = "system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
const TITLE_SIZE = 16;
const LABEL_SIZE = 13;
const TICK_SIZE = 12;
const NOTE_SIZE = 11;
const TEXT_COLOR = '#222222';
const MARKER_RADIUS = 4.5;
const LEGEND_ROW = 20;
const LEGEND_SYMBOL = 28;
const EDGE = 14;
// Line charts map the axis domain a few pixels inside the frame, so markers on the first or last
// tick are not cut in half by the frame. Bars need no inset: they must stand on the axis.
const DATA_INSET = 8;
// Category labels wider than their slot are rotated by this angle instead of overlapping.
const CATEGORY_ROTATION_DEG = 35;

const NOT_FINITE_HINT = 'fix or drop the measurement before plotting; a figure must not hide bad data';

export function renderLineChart(spec: LineChartSpec): string {
  const { width, height } = checkSize(spec.width, spec.height);
  if (spec.series.length === 0) throw new ChartSpecError(`line chart "${spec.title}" has no series`);
  const refs = spec.referenceLines ?? [];
  const xs: number[] = [];
  const ys: number[] = [];
  spec.series.forEach((s, si) => {
    if (s.points.length === 0)
      throw new ChartSpecError(`line chart "${spec.title}": series "${s.name}" (index ${si}) has no points`, {
        hint: 'leave the series out, or say in the caption why it has no data',
      });
    s.points.forEach((p, pi) => {
      const where = `line chart "${spec.title}": series "${s.name}" (index ${si}), point ${pi}`;
      checkValue(p.x, `${where}: x`, spec.xLog === true);
      checkValue(p.y, `${where}: y`, spec.yLog === true);
      xs.push(p.x);
      ys.push(p.y);
    });
  });
  refs.forEach((r, ri) => {
    const log = r.axis === 'x' ? spec.xLog === true : spec.yLog === true;
    checkValue(r.value, `line chart "${spec.title}": reference line ${ri} ("${r.label}")`, log);
    (r.axis === 'x' ? xs : ys).push(r.value);
  });

  const xAxis = makeAxis(xs, spec.xLog === true, 6);
  const yAxis = makeAxis(ys, spec.yLog === true, 5);
  const legend: LegendEntry[] = spec.series.map((s, i) => ({
    name: s.name,
    ...seriesStyle(i),
    kind: 'line',
    dashed: s.dashed === true,
  }));
  const { frame, legendAt } = layout(
    spec.title,
    width,
    height,
    yAxis.ticks.labels,
    TICK_SIZE + 8,
    true,
    legend,
  );
  const px = (v: number) => frame.left + DATA_INSET + fraction(xAxis, v) * (frame.width - 2 * DATA_INSET);
  const py = (v: number) =>
    frame.top + DATA_INSET + (1 - fraction(yAxis, v)) * (frame.height - 2 * DATA_INSET);

  const body: string[] = [titleText(spec.title, width), ...yAxisParts(frame, yAxis, py)];
  xAxis.ticks.values.forEach((v, i) => {
    const x = px(v);
    body.push(gridLine(x, frame.top, x, frame.top + frame.height));
    body.push(
      text(
        { class: 'tick-label', x, y: frame.top + frame.height + TICK_SIZE + 6, 'text-anchor': 'middle' },
        xAxis.ticks.labels[i]!,
        TICK_SIZE,
      ),
    );
  });
  body.push(...axisFrameAndLabels(frame, spec.xLabel, spec.yLabel, TICK_SIZE + 8));
  for (const r of refs) {
    body.push(
      r.axis === 'y'
        ? horizontalReference(frame, py(r.value), r.label)
        : verticalReference(frame, px(r.value), r.label),
    );
  }
  spec.series.forEach((s, si) => {
    const { color, shape } = seriesStyle(si);
    const parts: string[] = [];
    if (s.points.length > 1) {
      const d = s.points.map((p, i) => `${i === 0 ? 'M' : 'L'}${num(px(p.x))} ${num(py(p.y))}`).join(' ');
      parts.push(
        el('path', {
          class: 'series-line',
          d,
          fill: 'none',
          stroke: color,
          'stroke-width': 2,
          'stroke-linejoin': 'round',
          'stroke-dasharray': s.dashed === true ? '6 4' : undefined,
        }),
      );
    }
    for (const p of s.points) {
      const tooltip = `${s.name}: ${spec.xLabel} ${formatCompact(p.x)}, ${spec.yLabel} ${formatCompact(p.y)}`;
      parts.push(marker(shape, px(p.x), py(p.y), color, 'marker', tooltip));
    }
    for (const p of s.points) {
      if (p.label === undefined || p.label === '') continue;
      // Labels near the right edge go left of their marker so they stay inside the frame.
      const flip = px(p.x) + 7 + textWidth(p.label, NOTE_SIZE - 1) > frame.left + frame.width;
      const x = flip ? px(p.x) - 7 : px(p.x) + 7;
      const attrs: Attrs = {
        class: 'point-label',
        x,
        y: py(p.y) - 7,
        fill: color,
        'text-anchor': flip ? 'end' : undefined,
      };
      parts.push(text(attrs, p.label, NOTE_SIZE - 1));
    }
    body.push(el('g', { class: 'series', 'data-name': s.name }, parts.join('')));
  });
  body.push(legendGroup(legend, legendAt.x, legendAt.y));
  return svgDocument(width, height, spec.title, body);
}

export function renderBarChart(spec: BarChartSpec): string {
  const { width, height } = checkSize(spec.width, spec.height);
  const where = `bar chart "${spec.title}"`;
  if (spec.categories.length === 0) throw new ChartSpecError(`${where} has no categories`);
  if (spec.series.length === 0) throw new ChartSpecError(`${where} has no series`);
  // Bars start at zero: a bar's length is its value, so the axis must include 0.
  const ys: number[] = [0];
  spec.series.forEach((s, si) => {
    if (s.values.length !== spec.categories.length)
      throw new ChartSpecError(
        `${where}: series "${s.name}" (index ${si}) has ${s.values.length} values for ${spec.categories.length} categories`,
        { hint: 'give one value per category, null where it was not measured' },
      );
    s.values.forEach((v, ci) => {
      if (v === null) return;
      checkValue(v, `${where}: series "${s.name}" (index ${si}), category "${spec.categories[ci]}"`, false);
      ys.push(v);
    });
  });
  if (ys.length === 1) throw new ChartSpecError(`${where}: every value is null, nothing to draw`);
  const refs = spec.referenceLines ?? [];
  refs.forEach((r, ri) => {
    checkValue(r.value, `${where}: reference line ${ri} ("${r.label}")`, false);
    ys.push(r.value);
  });

  const yAxis = makeAxis(ys, false, 5);
  const legend: LegendEntry[] = spec.series.map((s, i) => ({ name: s.name, ...seriesStyle(i), kind: 'bar' }));
  const hasXLabel = spec.xLabel !== undefined && spec.xLabel !== '';
  const widest = Math.max(...spec.categories.map((c) => textWidth(c, TICK_SIZE)));
  let band = TICK_SIZE + 8;
  let placed = layout(spec.title, width, height, yAxis.ticks.labels, band, hasXLabel, legend);
  const rotate = widest > (placed.frame.width / spec.categories.length) * 0.95;
  if (rotate) {
    band = widest * Math.sin((CATEGORY_ROTATION_DEG * Math.PI) / 180) + TICK_SIZE + 10;
    placed = layout(spec.title, width, height, yAxis.ticks.labels, band, hasXLabel, legend);
  }
  const { frame, legendAt } = placed;
  const py = (v: number) => frame.top + (1 - fraction(yAxis, v)) * frame.height;
  const slot = frame.width / spec.categories.length;
  const barWidth = (slot * 0.8) / spec.series.length;
  // A 1px gap separates neighbouring bars unless the bars are too thin to spare it.
  const gap = barWidth > 4 ? 1 : 0;

  const body: string[] = [titleText(spec.title, width), ...yAxisParts(frame, yAxis, py)];
  const labelY = frame.top + frame.height + TICK_SIZE + 6;
  spec.categories.forEach((c, ci) => {
    const cx = frame.left + (ci + 0.5) * slot;
    const attrs: Attrs = rotate
      ? {
          class: 'category-label',
          x: cx,
          y: labelY,
          'text-anchor': 'end',
          transform: `rotate(-${CATEGORY_ROTATION_DEG} ${num(cx)} ${num(labelY)})`,
        }
      : { class: 'category-label', x: cx, y: labelY, 'text-anchor': 'middle' };
    body.push(text(attrs, c, TICK_SIZE));
  });
  body.push(...axisFrameAndLabels(frame, spec.xLabel ?? '', spec.yLabel, band));
  const zero = py(0);
  if (yAxis.ticks.min < 0)
    body.push(
      el('line', {
        class: 'zero-line',
        x1: frame.left,
        y1: zero,
        x2: frame.left + frame.width,
        y2: zero,
        stroke: '#444444',
      }),
    );
  spec.series.forEach((s, si) => {
    const { color } = seriesStyle(si);
    const parts: string[] = [];
    s.values.forEach((v, ci) => {
      const x = frame.left + ci * slot + slot * 0.1 + si * barWidth;
      const cx = x + barWidth / 2;
      if (v === null) {
        parts.push(
          text(
            { class: 'missing-label', x: cx, y: zero - 4, 'text-anchor': 'middle', fill: '#777777' },
            'n/a',
            NOTE_SIZE - 2,
          ),
        );
        return;
      }
      const y = py(v);
      const tooltip = `${s.name}, ${spec.categories[ci]}: ${formatCompact(v)}`;
      parts.push(
        el(
          'rect',
          {
            class: 'bar',
            x: x + gap / 2,
            y: Math.min(y, zero),
            width: barWidth - gap,
            height: Math.abs(zero - y),
            fill: color,
          },
          el('title', {}, escapeXml(tooltip)),
        ),
      );
      if (spec.valueLabels === true) {
        const ly = v >= 0 ? y - 4 : y + NOTE_SIZE + 2;
        parts.push(
          text(
            { class: 'value-label', x: cx, y: ly, 'text-anchor': 'middle' },
            formatCompact(v),
            NOTE_SIZE - 1,
          ),
        );
      }
    });
    body.push(el('g', { class: 'series', 'data-name': s.name }, parts.join('')));
  });
  for (const r of refs) body.push(horizontalReference(frame, py(r.value), r.label));
  body.push(legendGroup(legend, legendAt.x, legendAt.y));
  return svgDocument(width, height, spec.title, body);
}

/** Escape text for XML content and attributes; characters XML 1.0 forbids become U+FFFD. */
export function escapeXml(s: string): string {
  let out = '';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '&') out += '&amp;';
    else if (ch === '<') out += '&lt;';
    else if (ch === '>') out += '&gt;';
    else if (ch === '"') out += '&quot;';
    else if (ch === "'") out += '&apos;';
    else if (isXmlChar(cp)) out += ch;
    else out += '\uFFFD';
  }
  return out;
}

function isXmlChar(cp: number): boolean {
  // XML 1.0 Char production; iterating by code point leaves lone surrogates as D800-DFFF here.
  return (
    cp === 0x9 ||
    cp === 0xa ||
    cp === 0xd ||
    (cp >= 0x20 && cp <= 0xd7ff) ||
    (cp >= 0xe000 && cp <= 0xfffd) ||
    (cp >= 0x10000 && cp <= 0x10ffff)
  );
}

interface Axis {
  readonly ticks: Ticks;
  readonly log: boolean;
}

interface Frame {
  readonly left: number;
  readonly top: number;
  readonly width: number;
  readonly height: number;
}

interface LegendEntry {
  readonly name: string;
  readonly color: string;
  readonly shape: MarkerShape;
  readonly kind: 'line' | 'bar';
  readonly dashed?: boolean;
}

type Attrs = Record<string, string | number | undefined>;

function checkSize(width: number | undefined, height: number | undefined): { width: number; height: number } {
  const w = width ?? DEFAULT_WIDTH;
  const h = height ?? DEFAULT_HEIGHT;
  if (!Number.isFinite(w) || !Number.isFinite(h) || w < MIN_WIDTH || h < MIN_HEIGHT)
    throw new ChartSpecError(`chart size ${w}x${h} is not drawable`, {
      hint: `use at least ${MIN_WIDTH}x${MIN_HEIGHT} (default ${DEFAULT_WIDTH}x${DEFAULT_HEIGHT})`,
    });
  return { width: w, height: h };
}

function checkValue(v: number, where: string, log: boolean): void {
  if (typeof v !== 'number' || !Number.isFinite(v))
    throw new ChartSpecError(`${where} is ${String(v)}, not a finite number`, { hint: NOT_FINITE_HINT });
  if (log && v <= 0)
    throw new ChartSpecError(`${where} is ${v}, which a log axis cannot show`, {
      hint: 'use a linear axis, or drop non-positive values and say so in the caption',
    });
}

function makeAxis(values: readonly number[], log: boolean, target: number): Axis {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const v of values) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  try {
    return { ticks: log ? logTicks(lo, hi) : linearTicks(lo, hi, target), log };
  } catch (cause) {
    throw new ChartSpecError(`cannot build an axis for values in [${lo}, ${hi}]`, { cause });
  }
}

/** Position of `v` along the axis, 0 at the first tick and 1 at the last. */
function fraction(axis: Axis, v: number): number {
  const { min, max } = axis.ticks;
  if (axis.log) return (Math.log10(v) - Math.log10(min)) / (Math.log10(max) - Math.log10(min));
  return (v - min) / (max - min);
}

function layout(
  title: string,
  width: number,
  height: number,
  yTickLabels: readonly string[],
  xTickBand: number,
  hasXLabel: boolean,
  legend: readonly LegendEntry[],
): { frame: Frame; legendAt: { x: number; y: number } } {
  const left = EDGE + LABEL_SIZE + 10 + Math.max(...yTickLabels.map((l) => textWidth(l, TICK_SIZE))) + 8;
  const top = EDGE + TITLE_SIZE + 16;
  let bottom = xTickBand + (hasXLabel ? LABEL_SIZE + 12 : 0) + EDGE;
  let right = EDGE + 10;
  const legendWidth = LEGEND_SYMBOL + 6 + Math.max(...legend.map((e) => textWidth(e.name, LABEL_SIZE)));
  const legendHeight = legend.length * LEGEND_ROW;
  // The legend goes beside the plot, where it can never cover data, unless the names are so long
  // that the plot would lose more than 30% of the width; then it stacks below.
  const beside = legendWidth + 2 * EDGE <= 0.3 * width;
  if (beside) right = legendWidth + 2 * EDGE;
  else bottom += legendHeight + 10;
  const frame = { left, top, width: width - left - right, height: height - top - bottom };
  if (frame.width < 80 || frame.height < 60)
    throw new ChartSpecError(
      `chart "${title}" leaves a ${Math.round(frame.width)}x${Math.round(frame.height)} px plot area after labels and legend`,
      { hint: 'increase width/height or shorten the series and category names' },
    );
  const legendAt = beside
    ? { x: width - right + EDGE, y: top }
    : { x: left, y: height - EDGE - legendHeight };
  return { frame, legendAt };
}

function svgDocument(width: number, height: number, title: string, body: readonly string[]): string {
  const content = [
    el('title', {}, escapeXml(title)),
    el('rect', { class: 'background', x: 0, y: 0, width, height, fill: '#ffffff' }),
    ...body,
  ].join('\n');
  const svg = el(
    'svg',
    {
      xmlns: 'http://www.w3.org/2000/svg',
      width,
      height,
      viewBox: `0 0 ${num(width)} ${num(height)}`,
      role: 'img',
      'font-family': FONT,
      fill: TEXT_COLOR,
    },
    `\n${content}\n`,
  );
  return `<?xml version="1.0" encoding="UTF-8"?>\n${svg}\n`;
}

function titleText(title: string, width: number): string {
  return text(
    {
      class: 'chart-title',
      x: width / 2,
      y: EDGE + TITLE_SIZE,
      'text-anchor': 'middle',
      'font-weight': 'bold',
    },
    title,
    TITLE_SIZE,
  );
}

function yAxisParts(frame: Frame, axis: Axis, py: (v: number) => number): string[] {
  const parts: string[] = [];
  axis.ticks.values.forEach((v, i) => {
    const y = py(v);
    parts.push(gridLine(frame.left, y, frame.left + frame.width, y));
    parts.push(
      text(
        { class: 'tick-label', x: frame.left - 6, y, dy: '0.32em', 'text-anchor': 'end' },
        axis.ticks.labels[i]!,
        TICK_SIZE,
      ),
    );
  });
  return parts;
}

function axisFrameAndLabels(frame: Frame, xLabel: string, yLabel: string, xTickBand: number): string[] {
  const parts = [
    el('rect', {
      class: 'axis-frame',
      x: frame.left,
      y: frame.top,
      width: frame.width,
      height: frame.height,
      fill: 'none',
      stroke: '#444444',
    }),
  ];
  if (xLabel !== '') {
    const y = frame.top + frame.height + xTickBand + LABEL_SIZE + 2;
    parts.push(
      text(
        { class: 'axis-label', x: frame.left + frame.width / 2, y, 'text-anchor': 'middle' },
        xLabel,
        LABEL_SIZE,
      ),
    );
  }
  const x = EDGE + LABEL_SIZE;
  const y = frame.top + frame.height / 2;
  parts.push(
    text(
      { class: 'axis-label', x, y, 'text-anchor': 'middle', transform: `rotate(-90 ${num(x)} ${num(y)})` },
      yLabel,
      LABEL_SIZE,
    ),
  );
  return parts;
}

function gridLine(x1: number, y1: number, x2: number, y2: number): string {
  return el('line', { class: 'grid', x1, y1, x2, y2, stroke: '#e3e3e3', 'stroke-width': 1 });
}

function horizontalReference(frame: Frame, y: number, label: string): string {
  const right = frame.left + frame.width;
  return el(
    'g',
    { class: 'reference-line' },
    el('line', { x1: frame.left, y1: y, x2: right, y2: y, stroke: '#777777', 'stroke-dasharray': '2 3' }) +
      text({ x: right - 4, y: y - 4, 'text-anchor': 'end', fill: '#555555' }, label, NOTE_SIZE),
  );
}

function verticalReference(frame: Frame, x: number, label: string): string {
  // Keep the label inside the plot: right of the line in the left half, left of it otherwise.
  const leftHalf = x < frame.left + frame.width / 2;
  return el(
    'g',
    { class: 'reference-line' },
    el('line', {
      x1: x,
      y1: frame.top,
      x2: x,
      y2: frame.top + frame.height,
      stroke: '#777777',
      'stroke-dasharray': '2 3',
    }) +
      text(
        {
          x: leftHalf ? x + 4 : x - 4,
          y: frame.top + NOTE_SIZE + 2,
          'text-anchor': leftHalf ? 'start' : 'end',
          fill: '#555555',
        },
        label,
        NOTE_SIZE,
      ),
  );
}

function legendGroup(entries: readonly LegendEntry[], x: number, y: number): string {
  const rows = entries.map((e, i) => {
    const cy = y + i * LEGEND_ROW + LEGEND_ROW / 2;
    const symbol =
      e.kind === 'bar'
        ? el('rect', { class: 'legend-swatch', x: x + 8, y: cy - 6, width: 12, height: 12, fill: e.color })
        : el('line', {
            x1: x,
            y1: cy,
            x2: x + LEGEND_SYMBOL - 4,
            y2: cy,
            stroke: e.color,
            'stroke-width': 2,
            'stroke-dasharray': e.dashed === true ? '6 4' : undefined,
          }) + marker(e.shape, x + (LEGEND_SYMBOL - 4) / 2, cy, e.color, 'legend-marker');
    return (
      symbol +
      text({ class: 'legend-label', x: x + LEGEND_SYMBOL + 4, y: cy, dy: '0.32em' }, e.name, LABEL_SIZE)
    );
  });
  return el('g', { class: 'legend' }, rows.join(''));
}

function marker(
  shape: MarkerShape,
  cx: number,
  cy: number,
  color: string,
  cls: string,
  tooltip?: string,
): string {
  const r = MARKER_RADIUS;
  const title = tooltip === undefined ? undefined : el('title', {}, escapeXml(tooltip));
  // Filled shapes get a thin white outline so overlapping markers stay separable.
  const filled = { class: cls, fill: color, stroke: '#ffffff', 'stroke-width': 1 };
  const stroked = { class: cls, fill: 'none', stroke: color, 'stroke-width': 2 };
  const path = (attrs: Attrs, points: readonly (readonly [number, number])[]) =>
    el('path', { ...attrs, d: `M${points.map(([px, py]) => `${num(px)} ${num(py)}`).join(' L')} Z` }, title);
  switch (shape) {
    case 'circle':
      return el('circle', { ...filled, cx, cy, r }, title);
    case 'square':
      return el(
        'rect',
        { ...filled, x: cx - r * 0.9, y: cy - r * 0.9, width: r * 1.8, height: r * 1.8 },
        title,
      );
    case 'triangle':
      return path(filled, [
        [cx, cy - r * 1.15],
        [cx + r, cy + r * 0.75],
        [cx - r, cy + r * 0.75],
      ]);
    case 'triangle-down':
      return path(filled, [
        [cx, cy + r * 1.15],
        [cx + r, cy - r * 0.75],
        [cx - r, cy - r * 0.75],
      ]);
    case 'diamond':
      return path(filled, [
        [cx, cy - r * 1.25],
        [cx + r, cy],
        [cx, cy + r * 1.25],
        [cx - r, cy],
      ]);
    case 'plus':
      return el(
        'path',
        {
          ...stroked,
          d: `M${num(cx - r)} ${num(cy)} H${num(cx + r)} M${num(cx)} ${num(cy - r)} V${num(cy + r)}`,
        },
        title,
      );
    case 'cross': {
      const a = r * 0.8;
      const d = `M${num(cx - a)} ${num(cy - a)} L${num(cx + a)} ${num(cy + a)} M${num(cx - a)} ${num(cy + a)} L${num(cx + a)} ${num(cy - a)}`;
      return el('path', { ...stroked, d }, title);
    }
  }
}

function text(attrs: Attrs, content: string, size: number): string {
  return el('text', { ...attrs, 'font-size': size }, escapeXml(content));
}

/** One element; `content` is markup that is already escaped. */
function el(name: string, attrs: Attrs, content?: string): string {
  let open = `<${name}`;
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined) continue;
    open += ` ${k}="${typeof v === 'number' ? num(v) : escapeXml(v)}"`;
  }
  return content === undefined ? `${open}/>` : `${open}>${content}</${name}>`;
}

/** Coordinates to 0.01 px: finer is invisible and only bloats the file. */
function num(v: number): string {
  const r = Math.round(v * 100) / 100;
  return String(r === 0 ? 0 : r);
}

/** Sans-serif glyphs average ~0.6 em; without a renderer this estimate reserves label space. */
function textWidth(s: string, size: number): number {
  return [...s].length * size * 0.6;
}
