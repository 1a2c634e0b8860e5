// SVG figures: well-formed standalone documents whose elements match the data (one marker per
// point, one line per multi-point series, bars proportional to values) and that refuse bad data.

import { describe, expect, it } from 'vitest';
import { ChartSpecError } from '../../../shared/report/errors.js';
import {
  type BarChartSpec,
  escapeXml,
  type LineChartSpec,
  renderBarChart,
  renderLineChart,
  SERIES_COLORS,
  seriesStyle,
} from '../../../shared/report/svg-chart.js';
import { byClass, findAll, parseXml, textOf, type XmlElement } from './xml.js';

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
    { name: 'entropy-adaptive', points: [{ x: 2.4, y: 6.8 }] },
  ],
  referenceLines: [{ axis: 'y', value: 6.2, label: 'dense top-8' }],
};

function num(e: XmlElement, attr: string): number {
  const v = e.attrs[attr];
  if (v === undefined) throw new Error(`<${e.name}> has no ${attr}`);
  return Number(v);
}

function texts(root: XmlElement, cls: string): string[] {
  return byClass(root, cls).map(textOf);
}

describe('renderLineChart', () => {
  const svg = renderLineChart(pareto);
  const root = parseXml(svg);

  it('is a standalone SVG document with a viewBox and a white background', () => {
    expect(svg.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg ')).toBe(true);
    expect(root.name).toBe('svg');
    expect(root.attrs['xmlns']).toBe('http://www.w3.org/2000/svg');
    expect(root.attrs['viewBox']).toBe('0 0 720 450');
    expect(root.children[0]!.name).toBe('title');
    const bg = byClass(root, 'background')[0]!;
    expect([num(bg, 'width'), num(bg, 'height'), bg.attrs['fill']]).toEqual([720, 450, '#ffffff']);
  });

  it('labels the title, axes and every series', () => {
    expect(texts(root, 'chart-title')).toEqual([pareto.title]);
    expect(texts(root, 'axis-label')).toEqual(['avg experts / token', 'perplexity']);
    expect(texts(root, 'legend-label')).toEqual(['fixed top-k', 'top-p 0.9', 'entropy-adaptive']);
    expect(texts(root, 'point-label')).toEqual(['k=1', 'k=2', 'k=4', 'k=8']);
    // The rightmost label would cross the frame, so it is anchored left of its marker.
    expect(byClass(root, 'point-label').map((l) => l.attrs['text-anchor'])).toEqual([
      undefined,
      undefined,
      undefined,
      'end',
    ]);
  });

  it('draws one marker per point and one line per series with more than one point', () => {
    const groups = byClass(root, 'series');
    expect(groups.map((g) => g.attrs['data-name'])).toEqual(['fixed top-k', 'top-p 0.9', 'entropy-adaptive']);
    expect(groups.map((g) => byClass(g, 'marker').length)).toEqual([4, 3, 1]);
    expect(groups.map((g) => byClass(g, 'series-line').length)).toEqual([1, 1, 0]);
    const lines = byClass(root, 'series-line');
    expect(lines.map((l) => l.attrs['stroke-dasharray'])).toEqual([undefined, '6 4']);
    // Points are connected in the order given: four vertices for four points.
    expect((lines[0]!.attrs['d']!.match(/[ML]/g) ?? []).length).toBe(4);
  });

  it('gives each series its own colour and marker shape', () => {
    const groups = byClass(root, 'series');
    const firstMarkers = groups.map((g) => byClass(g, 'marker')[0]!);
    expect(new Set(firstMarkers.map((m) => m.attrs['fill'])).size).toBe(3);
    expect(firstMarkers.map((m) => m.name)).toEqual(['circle', 'rect', 'path']);
    const styles = Array.from({ length: 14 }, (_, i) => seriesStyle(i));
    expect(new Set(styles.map((s) => `${s.color}/${s.shape}`)).size).toBe(14);
    expect(new Set(styles.slice(0, SERIES_COLORS.length).map((s) => s.color)).size).toBe(
      SERIES_COLORS.length,
    );
  });

  it('places markers by value: larger x further right, larger y higher up', () => {
    const [m1, m2] = byClass(byClass(root, 'series')[0]!, 'marker');
    const m1x = num(m1!, 'cx');
    const m1y = num(m1!, 'cy');
    const frame = byClass(root, 'axis-frame')[0]!;
    const left = num(frame, 'x');
    const top = num(frame, 'y');
    expect(m1!.name).toBe('circle');
    expect(num(m2!, 'cx')).toBeGreaterThan(m1x);
    expect(num(m2!, 'cy')).toBeGreaterThan(m1y);
    expect(m1x).toBeGreaterThanOrEqual(left);
    expect(m1y).toBeGreaterThanOrEqual(top);
    expect(m1y).toBeLessThanOrEqual(top + num(frame, 'height'));
  });

  it('extends the axis to show reference lines', () => {
    const yTicks = byClass(root, 'tick-label')
      .filter((t) => t.attrs['text-anchor'] === 'end')
      .map((t) => Number(textOf(t)));
    expect(Math.min(...yTicks)).toBeLessThanOrEqual(6.2);
    const ref = byClass(root, 'reference-line')[0]!;
    expect(textOf(ref)).toBe('dense top-8');
  });

  it('escapes markup in every piece of text', () => {
    const nasty = 'a <b> & "c" \'d\'';
    const out = renderLineChart({
      ...pareto,
      title: nasty,
      xLabel: '<x>',
      series: [{ name: '</g>&', points: [{ x: 1, y: 2, label: '<&>' }] }],
    });
    expect(out).not.toContain('<b>');
    expect(out).not.toContain('</g>&');
    const r = parseXml(out);
    expect(textOf(r.children[0]!)).toBe(nasty);
    expect(texts(r, 'chart-title')).toEqual([nasty]);
    expect(texts(r, 'axis-label')[0]).toBe('<x>');
    expect(texts(r, 'legend-label')).toEqual(['</g>&']);
    expect(texts(r, 'point-label')).toEqual(['<&>']);
    expect(escapeXml('ok\u0000\uD800')).toBe('ok\uFFFD\uFFFD');
  });

  it('draws a single point and all-equal values on a padded axis', () => {
    const r = parseXml(
      renderLineChart({ ...pareto, referenceLines: [], series: [{ name: 's', points: [{ x: 3, y: 3 }] }] }),
    );
    expect(byClass(r, 'marker')).toHaveLength(1);
    expect(byClass(r, 'series-line')).toHaveLength(0);
    const flat = parseXml(
      renderLineChart({
        ...pareto,
        referenceLines: [],
        series: [{ name: 'flat', points: [1, 2, 3].map((x) => ({ x, y: 0.5 })) }],
      }),
    );
    const ys = byClass(flat, 'marker').map((m) => num(m, 'cy'));
    const frame = byClass(flat, 'axis-frame')[0]!;
    // All at the same height, strictly inside the plot (the range was padded, not collapsed).
    expect(new Set(ys).size).toBe(1);
    expect(ys[0]!).toBeGreaterThan(num(frame, 'y'));
    expect(ys[0]!).toBeLessThan(num(frame, 'y') + num(frame, 'height'));
    expect(svgHasNoNaN(flat)).toBe(true);
  });

  it('spaces a log x axis by ratio', () => {
    const r = parseXml(
      renderLineChart({
        title: 'tok/s vs concurrency',
        xLabel: 'concurrent requests',
        yLabel: 'output tok/s',
        xLog: true,
        series: [
          { name: 'native', points: [1, 2, 4, 8, 16, 32, 64].map((x) => ({ x, y: 100 * Math.sqrt(x) })) },
        ],
      }),
    );
    const xs = byClass(r, 'marker').map((m) => num(m, 'cx'));
    const gaps = xs.slice(1).map((x, i) => x - xs[i]!);
    for (const g of gaps) expect(Math.abs(g - gaps[0]!)).toBeLessThan(0.05);
    const xTicks = byClass(r, 'tick-label').filter((t) => t.attrs['text-anchor'] === 'middle');
    expect(xTicks.map(textOf)).toEqual(['1', '2', '5', '10', '20', '50', '100']);
  });

  it('rejects non-finite data and impossible log values with the offending point named', () => {
    const bad = (y: number) => ({
      ...pareto,
      series: [
        {
          name: 'top-p',
          points: [
            { x: 1, y: 1 },
            { x: 2, y },
          ],
        },
      ],
    });
    expect(() => renderLineChart(bad(Number.NaN))).toThrow(ChartSpecError);
    expect(() => renderLineChart(bad(Number.NaN))).toThrow(/series "top-p" \(index 0\), point 1: y is NaN/);
    expect(() => renderLineChart(bad(Number.POSITIVE_INFINITY))).toThrow(/y is Infinity/);
    expect(() =>
      renderLineChart({ ...bad(1), xLog: true, series: [{ name: 'z', points: [{ x: 0, y: 1 }] }] }),
    ).toThrow(/log axis/);
    expect(() =>
      renderLineChart({ ...pareto, referenceLines: [{ axis: 'x', value: Number.NaN, label: 'r' }] }),
    ).toThrow(/reference line 0/);
    expect(() => renderLineChart({ ...pareto, series: [] })).toThrow(/no series/);
    expect(() => renderLineChart({ ...pareto, series: [{ name: 'e', points: [] }] })).toThrow(/no points/);
    expect(() => renderLineChart({ ...pareto, width: 100 })).toThrow(/not drawable/);
  });

  it('moves a legend with long names below the plot', () => {
    const long = 'x'.repeat(60);
    const r = parseXml(renderLineChart({ ...pareto, series: [{ name: long, points: [{ x: 1, y: 1 }] }] }));
    const label = byClass(r, 'legend-label')[0]!;
    const frame = byClass(r, 'axis-frame')[0]!;
    expect(textOf(label)).toBe(long);
    expect(num(label, 'y')).toBeGreaterThan(num(frame, 'y') + num(frame, 'height'));
  });
});

describe('renderBarChart', () => {
  const spec: BarChartSpec = {
    title: 'Bytes per token by configuration',
    yLabel: 'bytes / token',
    categories: ['fp32 wire', 'bf16 wire', 'bf16 + top-p'],
    series: [
      { name: 'dispatch', values: [8192, 4096, 2900] },
      { name: 'combine', values: [8192, 4096, null] },
    ],
    valueLabels: true,
  };
  const root = parseXml(renderBarChart(spec));

  it('draws one bar per measured value, heights proportional to the value', () => {
    const bars = byClass(root, 'bar');
    expect(bars).toHaveLength(5);
    const heights = bars.map((b) => num(b, 'height'));
    expect(heights[0]! / heights[1]!).toBeCloseTo(2, 2);
    expect(heights[1]! / heights[2]!).toBeCloseTo(4096 / 2900, 2);
    // Bars stand on the zero line: same bottom edge.
    const bottoms = bars.map((b) => num(b, 'y') + num(b, 'height'));
    for (const b of bottoms) expect(b).toBeCloseTo(bottoms[0]!, 1);
  });

  it('says n/a for a missing value instead of drawing zero', () => {
    expect(texts(root, 'missing-label')).toEqual(['n/a']);
  });

  it('labels categories, values, legend and axes', () => {
    expect(texts(root, 'category-label')).toEqual(spec.categories);
    expect(texts(root, 'value-label')).toEqual(['8192', '4096', '2900', '8192', '4096']);
    expect(texts(root, 'legend-label')).toEqual(['dispatch', 'combine']);
    expect(byClass(root, 'legend-swatch')).toHaveLength(2);
    expect(texts(root, 'axis-label')).toEqual(['bytes / token']);
    const zeroTick = byClass(root, 'tick-label').map(textOf);
    expect(zeroTick[0]).toBe('0');
  });

  it('draws negative values below a zero line', () => {
    const r = parseXml(
      renderBarChart({
        title: 'delta',
        yLabel: 'Δ ppl',
        categories: ['a', 'b'],
        series: [{ name: 's', values: [2, -1] }],
      }),
    );
    const [pos, neg] = byClass(r, 'bar');
    const zero = num(byClass(r, 'zero-line')[0]!, 'y1');
    expect(num(pos!, 'y') + num(pos!, 'height')).toBeCloseTo(zero, 1);
    expect(num(neg!, 'y')).toBeCloseTo(zero, 1);
    expect(num(pos!, 'height') / num(neg!, 'height')).toBeCloseTo(2, 2);
  });

  it('rotates category labels that do not fit their slot', () => {
    const r = parseXml(
      renderBarChart({
        ...spec,
        categories: spec.categories.map((c) => `${c} with a very long description`),
      }),
    );
    expect(
      byClass(r, 'category-label').every((l) => (l.attrs['transform'] ?? '').startsWith('rotate(-35')),
    ).toBe(true);
    expect(findAll(root, (e) => (e.attrs['transform'] ?? '').startsWith('rotate(-35'))).toHaveLength(0);
  });

  it('rejects mismatched lengths, non-finite values and all-missing data', () => {
    expect(() => renderBarChart({ ...spec, series: [{ name: 's', values: [1, 2] }] })).toThrow(
      /has 2 values for 3 categories/,
    );
    expect(() => renderBarChart({ ...spec, series: [{ name: 's', values: [1, Number.NaN, 3] }] })).toThrow(
      /category "bf16 wire" is NaN/,
    );
    expect(() => renderBarChart({ ...spec, series: [{ name: 's', values: [null, null, null] }] })).toThrow(
      /every value is null/,
    );
  });
});

function svgHasNoNaN(root: XmlElement): boolean {
  return findAll(root, () => true).every((e) => Object.values(e.attrs).every((v) => !v.includes('NaN')));
}
