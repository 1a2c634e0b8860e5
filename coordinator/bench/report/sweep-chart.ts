// The routing-frontier figure of `kmoe eval --sweep` and `kmoe bench adaptive-k`: perplexity
// against average experts per token, one line per policy series, with the native reference.

import type { SweepPoint } from '../../evaluation/sweep.js';
import { renderLineChart } from './chart.js';

export function sweepChart(title: string, native: number, points: readonly SweepPoint[]): Promise<string> {
  const names = [...new Set(points.map((p) => p.series))];
  return renderLineChart({
    title,
    xLabel: 'average experts per token (K)',
    yLabel: 'perplexity',
    series: names.map((name) => ({
      name,
      points: points
        .filter((p) => p.series === name)
        .sort((a, b) => a.avgK - b.avgK)
        .map((p) => ({ x: p.avgK, y: p.perplexity })),
    })),
    referenceLines: [
      { axis: 'y', value: native, label: 'native top-2' },
      { axis: 'y', value: native * 1.01, label: '+1% perplexity' },
    ],
  });
}
