// SVG figures rendered by Vega: well-formed standalone documents (parsed strictly as XML) whose
// marks carry the data (one marker per point, placed by value; one bar per measured value, height
// proportional to it) and legends name every series; bad data is refused with the point named.

import { DOMParser, type Element } from '@xmldom/xmldom';
import { describe, expect, it } from 'vitest';
import {
  type BarChartSpec,
  type LineChartSpec,
  renderBarChart,
  renderLineChart,
  renderLineCharts,
} from '../../../../coordinator/bench/report/chart.js';
import { ChartSpecError } from '../../../../coordinator/bench/report/errors.js';

const pareto: LineChartSpec = {
  title: 'Perplexity vs average experts per token',
  xLabel: 'avg experts / token',
  yLabel: 'perplexity',
  series: [
    {
      name: 'fixed top-k',
      points: [
        { x: 1, y: 9.8, label: 'k=1' },
        { x: 2, y: 7.1, label: 'k=2' },
        { x: 4, y: 6.6, label: 'k=4' },
        { x: 8, y: 6.5, label: 'k=8' },
      ],
    },
    {
      name: 'top-p 0.9',
      points: [
        { x: 1.7, y: 7.3 },
        { x: 2.9, y: 6.7 },
        { x: 3.6, y: 6.55 },
      ],
      dashed: true,
    },
    { name: 'entropy <adaptive> & "q"', points: [{ x: 2.4, y: 6.8 }] },
  ],
  referenceLines: [{ axis: 'y', value: 6.2, label: 'dense top-8' }],
};

/** Parse strictly: any XML error or warning fails the test. */
function parseSvg(svg: string): Element {
  const doc = new DOMParser({
    onError: (level, message) => {
      throw new Error(`${level}: ${message}`);
    },
  }).parseFromString(svg, 'image/svg+xml');
  const root = doc.documentElement;
  if (root === null) throw new Error('no root element');
  return root;
}

function elements(root: Element, tag: string): Element[] {
  return Array.from(root.getElementsByTagName(tag));
}

/** Vega marks each data item with role="graphics-symbol" and an aria-label listing its fields. */
function marks(root: Element, kind: 'point' | 'bar' | 'line'): Map<string, Element> {
  const out = new Map<string, Element>();
  for (const e of elements(root, 'path')) {
    if (e.getAttribute('aria-roledescription') !== kind) continue;
    const label = e.getAttribute('aria-label')!;
    expect(out.has(label), `duplicate ${kind} ${label}`).toBe(false);
    out.set(label, e);
  }
  return out;
}

function texts(root: Element): string[] {
  return elements(root, 'text').map((t) => t.textContent ?? '');
}

function translate(e: Element): { x: number; y: number } {
  const m = /translate\(([-\d.e]+),([-\d.e]+)\)/.exec(e.getAttribute('transform') ?? '');
  if (!m) throw new Error(`no translate() on ${e.getAttribute('aria-label')}`);
  return { x: Number(m[1]), y: Number(m[2]) };
}

describe('renderLineChart', async () => {
  const svg = await renderLineChart(pareto);
  const root = parseSvg(svg);
  const points = marks(root, 'point');
  const at = (x: number, y: number, series: string) =>
    points.get(`avg experts / token: ${x}; perplexity: ${y}; series: ${series}`);

  it('is a standalone SVG document of the requested size on a white background', () => {
    expect(svg.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg ')).toBe(true);
    expect(root.tagName).toBe('svg');
    expect(root.getAttribute('xmlns')).toBe('http://www.w3.org/2000/svg');
    expect(root.getAttribute('width')).toBe('720');
    expect(root.getAttribute('height')).toBe('450');
    expect(root.getAttribute('viewBox')).toBe('0 0 720 450');
    expect(elements(root, 'rect')[0]!.getAttribute('fill')).toBe('white');
  });

  it('labels the title, axes, point labels, reference line and every series (escaped markup)', () => {
    const t = texts(root);
    for (const want of [
      pareto.title,
      'avg experts / token',
      'perplexity',
      'fixed top-k',
      'top-p 0.9',
      'entropy <adaptive> & "q"',
      'k=1',
      'k=8',
      'dense top-8',
    ])
      expect(t).toContain(want);
    expect(svg).not.toContain('<adaptive>');
  });

  it('draws one marker per data point, each carrying its values', () => {
    expect(points.size).toBe(8);
    for (const s of pareto.series)
      for (const p of s.points) expect(at(p.x, p.y, s.name), `${s.name} (${p.x}, ${p.y})`).toBeDefined();
  });

  it('places markers by value: larger x further right, larger y higher up', () => {
    const k1 = translate(at(1, 9.8, 'fixed top-k')!);
    const k2 = translate(at(2, 7.1, 'fixed top-k')!);
    const k8 = translate(at(8, 6.5, 'fixed top-k')!);
    expect(k2.x).toBeGreaterThan(k1.x);
    expect(k8.x).toBeGreaterThan(k2.x);
    expect(k1.y).toBeLessThan(k2.y);
    // Linear x: equal steps in x are equal steps in pixels.
    expect((k8.x - k2.x) / 6).toBeCloseTo(k2.x - k1.x, 6);
    // Markers on the extremes stay inside the frame rather than on its edge.
    expect(k1.x).toBeGreaterThan(0);
  });

  it('gives each series its own colour and marker shape, and one line per series', () => {
    const fill = (name: string, x: number, y: number) => at(x, y, name)!.getAttribute('fill');
    const shape = (name: string, x: number, y: number) => at(x, y, name)!.getAttribute('d');
    const a = ['fixed top-k', 1, 9.8] as const;
    const b = ['top-p 0.9', 1.7, 7.3] as const;
    expect(fill(...a)).toBe('#0072B2');
    expect(fill(...b)).toBe('#D55E00');
    expect(shape(...a)).not.toBe(shape(...b));
    const lines = elements(root, 'path').filter(
      (e) => e.getAttribute('aria-roledescription') === 'line mark',
    );
    expect(lines).toHaveLength(3);
    expect(lines.filter((l) => l.getAttribute('stroke-dasharray') === '6,4')).toHaveLength(1);
  });

  it('extends the y axis to show the reference line', () => {
    const yAxis = elements(root, 'g').find((g) => (g.getAttribute('aria-label') ?? '').startsWith('Y-axis'));
    const m = /values from ([\d.]+) to ([\d.]+)/.exec(yAxis!.getAttribute('aria-label')!);
    expect(Number(m![1])).toBeLessThanOrEqual(6.2);
    expect(Number(m![2])).toBeGreaterThanOrEqual(9.8);
  });

  it('spaces a log x axis by ratio', async () => {
    const log = parseSvg(
      await renderLineChart({
        title: 'throughput',
        xLabel: 'streams',
        yLabel: 'tok/s',
        xLog: true,
        series: [{ name: 's', points: [1, 4, 16].map((x) => ({ x, y: x })) }],
      }),
    );
    const p = [1, 4, 16].map((x) =>
      translate(marks(log, 'point').get(`streams: ${x}; tok/s: ${x}; series: s`)!),
    );
    expect(p[2]!.x - p[1]!.x).toBeCloseTo(p[1]!.x - p[0]!.x, 6);
  });

  it('rejects non-finite data and impossible log values with the offending point named', async () => {
    const bad = (y: number): LineChartSpec => ({
      ...pareto,
      series: [
        {
          name: 'top-p',
          points: [
            { x: 1, y: 2 },
            { x: 2, y },
          ],
        },
      ],
    });
    await expect(renderLineChart(bad(Number.NaN))).rejects.toThrow(ChartSpecError);
    await expect(renderLineChart(bad(Number.NaN))).rejects.toThrow(
      /series "top-p" \(index 0\), point 1: y is NaN/,
    );
    await expect(renderLineChart({ ...bad(0), yLog: true })).rejects.toThrow(
      /y is 0, which a log axis cannot show/,
    );
    await expect(renderLineChart({ ...pareto, series: [] })).rejects.toThrow(/has no series/);
    await expect(renderLineChart({ ...pareto, series: [{ name: 'e', points: [] }] })).rejects.toThrow(
      /series "e" \(index 0\) has no points/,
    );
    await expect(renderLineChart({ ...pareto, width: 10 })).rejects.toThrow(/not drawable/);
  });
});

describe('renderLineCharts', () => {
  it('stacks panels in one document, each with its own series', async () => {
    const root = parseSvg(
      await renderLineCharts([
        { ...pareto, height: 300 },
        {
          title: 'second',
          xLabel: 'a',
          yLabel: 'b',
          height: 300,
          series: [{ name: 'only here', points: [{ x: 1, y: 2 }] }],
        },
      ]),
    );
    expect(Number(root.getAttribute('height'))).toBeGreaterThanOrEqual(600);
    expect(texts(root)).toEqual(expect.arrayContaining([pareto.title, 'second', 'only here', 'fixed top-k']));
    expect(marks(root, 'point').get('a: 1; b: 2; series: only here')).toBeDefined();
  });
});

describe('renderBarChart', async () => {
  const spec: BarChartSpec = {
    title: 'Bytes per token',
    yLabel: 'bytes',
    categories: ['top-2', 'adaptive'],
    series: [
      { name: '2 workers', values: [100, 50] },
      { name: '4 workers', values: [null, 80] },
    ],
    valueLabels: true,
    referenceLines: [{ value: 90, label: 'native' }],
  };
  const root = parseSvg(await renderBarChart(spec));
  const bars = marks(root, 'bar');
  const height = (category: string, value: number, series: string) => {
    const d = bars.get(`category: ${category}; bytes: ${value}; series: ${series}`)?.getAttribute('d');
    const m = /v([\d.]+)h/.exec(d ?? '');
    if (!m) throw new Error(`no bar for ${category}/${series}/${value}: ${d}`);
    return Number(m[1]);
  };

  it('draws one bar per measured value, heights proportional to the value', () => {
    expect(bars.size).toBe(3);
    const h100 = height('top-2', 100, '2 workers');
    expect(height('adaptive', 50, '2 workers') / h100).toBeCloseTo(0.5, 6);
    expect(height('adaptive', 80, '4 workers') / h100).toBeCloseTo(0.8, 6);
  });

  it('says n/a for a missing value, and labels values, categories, legend and reference line', () => {
    const t = texts(root);
    expect(t.filter((s) => s === 'n/a')).toHaveLength(1);
    for (const want of ['100', '50', '80', 'top-2', 'adaptive', '2 workers', '4 workers', 'native', 'bytes'])
      expect(t).toContain(want);
  });

  it('rejects mismatched lengths, non-finite values and all-missing data', async () => {
    await expect(renderBarChart({ ...spec, series: [{ name: 'x', values: [1] }] })).rejects.toThrow(
      /series "x" \(index 0\) has 1 values for 2 categories/,
    );
    await expect(
      renderBarChart({ ...spec, series: [{ name: 'x', values: [1, Number.POSITIVE_INFINITY] }] }),
    ).rejects.toThrow(/category "adaptive" is Infinity/);
    await expect(renderBarChart({ ...spec, series: [{ name: 'x', values: [null, null] }] })).rejects.toThrow(
      /every value is null/,
    );
  });
});
