// The coordinator's Prometheus registry: routing (selected K and router entropy per layer, expert
// activations per layer and expert, from the engine's RoutingStats), dispatch to remote workers
// (bytes by direction and worker, messages, round-trip time per worker), latency (request, time to
// first token, inter-token) and load (running, queued, live engine sequences).

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import { DISPATCH_LATENCY_BUCKETS_SECONDS } from '../../shared/protocol/messages.js';
import type { RoutingModel } from '../../shared/routing/policy.js';
import { RoutingStats, type RoutingStatsJSON } from '../../shared/routing/stats.js';
import { oneLine } from '../../shared/text/printable.js';
import { type DispatchStatsJSON, summarizeDispatch } from '../cluster/dispatch-stats.js';
import { BinnedHistogram, type BinnedSeries } from './binned-histogram.js';
import type { StepReport } from './scheduler.js';

/** Reads the engine thread's state at scrape time. */
export interface EngineMetricSources {
  routingStats(): Promise<RoutingStatsJSON>;
  /** Null when the experts run in-process. */
  dispatchStats(): Promise<DispatchStatsJSON | null>;
  engineSequences(): Promise<number>;
}

/**
 * A label value from text a peer chose (a worker's URL from the registry or --workers), escaped by
 * the rule of every quoted peer text: controls, format (bidi, zero-width) and line-separator
 * characters as \uXXXX. prom-client then escapes backslash, quote and newline for the exposition
 * format, so the text stays valid. Not cut to a length: a cut could merge two workers' series.
 */
const peerLabel = (text: string): string => oneLine(text, Number.POSITIVE_INFINITY);

/**
 * The `worker` label of what was sent to workers whose slots were pruned (they left): one series,
 * so that a counter summed over workers never goes down when a worker leaves. No URL looks like it.
 */
const DEPARTED = '(departed)';

/** What went to departed workers, over every layer. */
function departed(d: DispatchStatsJSON | null): { messages: number; bytesOut: number; bytesIn: number } {
  let messages = 0;
  let bytesOut = 0;
  let bytesIn = 0;
  for (const l of d?.layers ?? []) {
    messages += l.departed.messages;
    bytesOut += l.departed.bytesOut;
    bytesIn += l.departed.bytesIn;
  }
  return { messages, bytesOut, bytesIn };
}

const LATENCY_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];
const TOKEN_GAP_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export class ServerMetrics {
  readonly registry = new Registry();
  #routing: RoutingStatsJSON | undefined;
  #dispatch: DispatchStatsJSON | null = null;
  #engineSequences = 0;
  readonly #running: Gauge;
  readonly #waiting: Gauge;
  readonly #ttft: Histogram;
  readonly #itl: Histogram;
  readonly #stepSeconds: Histogram;
  readonly #stepDecodes: Histogram;
  readonly #requestSeconds: Histogram<'endpoint' | 'status'>;
  readonly #requests: Counter<'endpoint' | 'status'>;
  readonly #promptTokens: Counter;
  readonly #completionTokens: Counter;
  readonly #refusedConnections: Counter<'reason'>;

  constructor(
    model: RoutingModel,
    private readonly sources: EngineMetricSources,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const layers = (f: (l: RoutingStatsJSON['layers'][number]) => BinnedSeries): readonly BinnedSeries[] =>
      this.#routing?.layers.map(f) ?? [];
    new BinnedHistogram(
      {
        name: 'kmoe_routing_selected_k',
        help: 'Experts selected per token (K) by the routing policy, per MoE layer',
        labelNames: ['layer'],
        buckets: Array.from({ length: model.numExperts }, (_, k) => k + 1),
        registry: this.registry,
      },
      () => layers((l) => ({ labels: { layer: String(l.layer) }, counts: l.kHistogram, sum: l.sumK })),
    );
    new BinnedHistogram(
      {
        name: 'kmoe_router_entropy_nats',
        help: 'Entropy of the router probabilities per token, per MoE layer',
        labelNames: ['layer'],
        buckets: new RoutingStats(model).entropyBinUpperEdges(),
        registry: this.registry,
      },
      () =>
        layers((l) => ({
          labels: { layer: String(l.layer) },
          counts: l.entropyHistogram,
          sum: l.entropySum,
        })),
    );
    const routing = () => this.#routing;
    new Counter({
      name: 'kmoe_expert_token_activations_total',
      help: 'Tokens routed to each expert, per MoE layer (expert-token activations)',
      labelNames: ['layer', 'expert'],
      registers,
      collect() {
        this.reset();
        for (const l of routing()?.layers ?? []) {
          l.expertTokens.forEach((n, e) => {
            this.inc({ layer: String(l.layer), expert: String(e) }, n);
          });
        }
      },
    });
    const dispatch = () => this.#dispatch;
    new Counter({
      name: 'kmoe_dispatch_bytes_total',
      help: 'Bytes of expert dispatch frames by direction (out = to the worker) and worker',
      labelNames: ['direction', 'worker'],
      registers,
      collect() {
        this.reset();
        const d = dispatch();
        d?.workers.forEach((w, i) => {
          const out = d.layers.reduce((a, l) => a + (l.workers[i]?.bytesOut ?? 0), 0);
          const back = d.layers.reduce((a, l) => a + (l.workers[i]?.bytesIn ?? 0), 0);
          this.inc({ direction: 'out', worker: peerLabel(w.url) }, out);
          this.inc({ direction: 'in', worker: peerLabel(w.url) }, back);
        });
        const gone = departed(d);
        if (gone.messages > 0) {
          this.inc({ direction: 'out', worker: DEPARTED }, gone.bytesOut);
          this.inc({ direction: 'in', worker: DEPARTED }, gone.bytesIn);
        }
      },
    });
    new Counter({
      name: 'kmoe_dispatch_messages_total',
      help: 'Expert dispatch requests sent to each worker (one per worker and MoE layer per forward pass)',
      labelNames: ['worker'],
      registers,
      collect() {
        this.reset();
        const d = dispatch();
        d?.workers.forEach((w, i) => {
          this.inc(
            { worker: peerLabel(w.url) },
            d.layers.reduce((a, l) => a + (l.workers[i]?.messages ?? 0), 0),
          );
        });
        const gone = departed(d);
        if (gone.messages > 0) this.inc({ worker: DEPARTED }, gone.messages);
      },
    });
    new BinnedHistogram(
      {
        name: 'kmoe_worker_round_trip_seconds',
        help: 'Time from sending an expert dispatch request to a worker to decoding its reply (network, queueing and compute)',
        labelNames: ['worker'],
        buckets: [...DISPATCH_LATENCY_BUCKETS_SECONDS],
        registry: this.registry,
      },
      () =>
        this.#dispatch?.workers.map((w, i) => ({
          labels: { worker: peerLabel(w.url) },
          counts: this.#dispatch!.roundTrips[i]!.counts,
          sum: this.#dispatch!.roundTrips[i]!.sumSeconds,
        })) ?? [],
    );
    const summary = () => {
      const d = dispatch();
      return d === null ? undefined : summarizeDispatch(d);
    };
    new Gauge({
      name: 'kmoe_dispatch_bytes_per_token_layer',
      help: 'Dispatch bytes (both directions) per token per MoE layer since start, as sent',
      registers,
      collect() {
        const s = summary();
        if (s) this.set(s.bytesPerTokenLayer);
      },
    });
    new Gauge({
      name: 'kmoe_dispatch_imbalance',
      help: 'Mean over dispatched batches of max / mean expected cost per live worker (1 = even), since start',
      registers,
      collect() {
        const s = summary();
        if (s) this.set(s.imbalance);
      },
    });
    new Counter({
      name: 'kmoe_dispatch_retried_pairs_total',
      help: 'Token-expert pairs re-sent to a replica because their worker failed, disconnected or stalled',
      registers,
      collect() {
        this.reset();
        const s = summary();
        if (s) this.inc(s.retriedPairs);
      },
    });
    const engineSequences = () => this.#engineSequences;
    new Gauge({
      name: 'kmoe_engine_sequences',
      help: 'Sequences whose KV cache the engine holds',
      registers,
      collect() {
        this.set(engineSequences());
      },
    });
    this.#running = new Gauge({
      name: 'kmoe_sequences_running',
      help: 'Sequences in the running batch',
      registers,
    });
    this.#waiting = new Gauge({
      name: 'kmoe_sequences_queued',
      help: 'Accepted sequences waiting for a place in the running batch',
      registers,
    });
    this.#ttft = new Histogram({
      name: 'kmoe_time_to_first_token_seconds',
      help: 'Time from accepting a request to sampling its first token (queueing and prefill included)',
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#itl = new Histogram({
      name: 'kmoe_inter_token_latency_seconds',
      help: 'Time between consecutive sampled tokens of one sequence',
      buckets: TOKEN_GAP_BUCKETS,
      registers,
    });
    this.#stepSeconds = new Histogram({
      name: 'kmoe_engine_step_seconds',
      help: 'Duration of one scheduler step (all decodes plus at most one prefill chunk)',
      buckets: TOKEN_GAP_BUCKETS,
      registers,
    });
    this.#stepDecodes = new Histogram({
      name: 'kmoe_engine_step_decode_sequences',
      help: 'Decoding sequences batched into one scheduler step (they share one dispatch per worker and layer)',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
      registers,
    });
    this.#requestSeconds = new Histogram({
      name: 'kmoe_request_duration_seconds',
      help: 'Time from receiving a request to sending its last byte',
      labelNames: ['endpoint', 'status'],
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#requests = new Counter({
      name: 'kmoe_requests_total',
      help: 'HTTP requests by endpoint and status code',
      labelNames: ['endpoint', 'status'],
      registers,
    });
    this.#promptTokens = new Counter({
      name: 'kmoe_prompt_tokens_total',
      help: 'Prompt tokens of completed requests',
      registers,
    });
    this.#completionTokens = new Counter({
      name: 'kmoe_completion_tokens_total',
      help: 'Generated tokens of completed requests',
      registers,
    });
    this.#refusedConnections = new Counter({
      name: 'kmoe_http_connections_refused_total',
      help: 'HTTP connections closed on arrival: over --max-connections, or over --max-connections-per-client from one address',
      labelNames: ['reason'],
      registers,
    });
    // Both series from the start, so a rate() or an alert sees 0 before the first refusal.
    for (const reason of ['max_connections', 'max_connections_per_client'] as const)
      this.#refusedConnections.inc({ reason }, 0);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The exposition text, with routing and dispatch counters and engine sequences read from the engine now. */
  async render(): Promise<string> {
    const [routing, dispatch, sequences] = await Promise.all([
      this.sources.routingStats(),
      this.sources.dispatchStats(),
      this.sources.engineSequences(),
    ]);
    this.#routing = routing;
    this.#dispatch = dispatch;
    this.#engineSequences = sequences;
    return this.registry.metrics();
  }

  queue(running: number, waiting: number): void {
    this.#running.set(running);
    this.#waiting.set(waiting);
  }

  firstToken(seconds: number): void {
    this.#ttft.observe(seconds);
  }

  interToken(seconds: number): void {
    this.#itl.observe(seconds);
  }

  step(report: StepReport): void {
    this.#stepSeconds.observe(report.seconds);
    if (report.decodes > 0) this.#stepDecodes.observe(report.decodes);
  }

  request(endpoint: string, status: number, seconds: number): void {
    const labels = { endpoint, status: String(status) };
    this.#requests.inc(labels);
    this.#requestSeconds.observe(labels, seconds);
  }

  connectionRefused(reason: 'max_connections' | 'max_connections_per_client'): void {
    this.#refusedConnections.inc({ reason });
  }

  tokens(prompt: number, completion: number): void {
    this.#promptTokens.inc(prompt);
    this.#completionTokens.inc(completion);
  }
}
