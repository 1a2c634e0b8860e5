// Reading the Prometheus text exposition that kmoe serve and kmoe worker answer on /metrics: what the
// benchmarks take their before/after deltas from.

/** Sum of every series of the metric `name` (all label sets) in Prometheus text exposition. */
export function sumMetric(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (line.startsWith(`${name} `) || line.startsWith(`${name}{`))
      sum += Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return sum;
}
