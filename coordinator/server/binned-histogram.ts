// A Prometheus histogram whose bucket counts are already counted elsewhere (RoutingStats bins K
// and router entropy per layer on the engine thread). prom-client only builds histograms from
// single observations, so this subclass reports the given counts in the same exposition format.

import { Histogram, type Registry } from 'prom-client';

export interface BinnedSeries {
  readonly labels: Readonly<Record<string, string>>;
  /**
   * counts[i] = observations in (upperBounds[i-1], upperBounds[i]]. With as many counts as bounds
   * the last bin also takes anything above (bounded quantities); one more count is the overflow,
   * which only the +Inf bucket includes.
   */
  readonly counts: readonly number[];
  readonly sum: number;
}

type HistogramData<T extends string> = Awaited<ReturnType<Histogram<T>['get']>>;

export class BinnedHistogram<T extends string> extends Histogram<T> {
  readonly #name: string;
  readonly #help: string;
  readonly #bounds: readonly number[];

  constructor(
    config: { name: string; help: string; labelNames: readonly T[]; buckets: number[]; registry: Registry },
    private readonly source: () => readonly BinnedSeries[],
  ) {
    super({
      name: config.name,
      help: config.help,
      labelNames: config.labelNames,
      buckets: config.buckets,
      registers: [config.registry],
    });
    this.#name = config.name;
    this.#help = config.help;
    this.#bounds = config.buckets;
  }

  override async get(): Promise<HistogramData<T>> {
    return this.#data();
  }

  /** prom-client's Registry renders text from this method when a metric has it. */
  async getForPromString(): Promise<HistogramData<T>> {
    return this.#data();
  }

  #data(): HistogramData<T> {
    const values: HistogramData<T>['values'] = [];
    for (const s of this.source()) {
      if (s.counts.length !== this.#bounds.length && s.counts.length !== this.#bounds.length + 1) {
        throw new RangeError(`${this.#name}: ${s.counts.length} counts for ${this.#bounds.length} buckets`);
      }
      const labels = s.labels as HistogramData<T>['values'][number]['labels'];
      let cumulative = 0;
      this.#bounds.forEach((le, i) => {
        cumulative += s.counts[i]!;
        values.push({ metricName: `${this.#name}_bucket`, labels: { ...labels, le }, value: cumulative });
      });
      cumulative += s.counts[this.#bounds.length] ?? 0;
      values.push({
        metricName: `${this.#name}_bucket`,
        labels: { ...labels, le: '+Inf' },
        value: cumulative,
      });
      values.push({ metricName: `${this.#name}_sum`, labels, value: s.sum });
      values.push({ metricName: `${this.#name}_count`, labels, value: cumulative });
    }
    return {
      name: this.#name,
      help: this.#help,
      // The typings declare a numeric enum; at run time prom-client uses (and renders) the string.
      type: 'histogram' as unknown as HistogramData<T>['type'],
      values,
      aggregator: 'sum',
      collect: () => undefined,
    };
  }
}
