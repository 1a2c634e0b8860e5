// A worker's Prometheus registry, served at GET /metrics on its WebSocket port: dispatch requests
// by outcome, their service time on this worker, hidden states and expert-token activations per
// (layer, expert) computed here, frame bytes each way, connected coordinators and refused
// handshakes by reason (a rising `auth` count is someone without the cluster token knocking).

import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import {
  DISPATCH_LATENCY_BUCKETS_SECONDS,
  type DispatchRequest,
  type ErrorReplyCode,
  REFUSE_REASONS,
  type RefuseReason,
} from '../shared/protocol/messages.js';

/** What a request was, read before its frame moves to the compute thread. */
export interface DispatchShape {
  readonly layer: number;
  readonly tokens: number;
  /** Token rows per expert of the model. */
  readonly expertTokens: Uint32Array;
}

export function dispatchShape(msg: DispatchRequest, numExperts: number): DispatchShape {
  const expertTokens = new Uint32Array(numExperts);
  for (const e of msg.experts) expertTokens[e]!++;
  return { layer: msg.layer, tokens: msg.numTokens, expertTokens };
}

export class WorkerMetrics {
  readonly registry = new Registry();
  readonly #requests: Counter<'outcome'>;
  readonly #serviceSeconds: Histogram;
  readonly #tokens: Counter<'layer'>;
  readonly #activations: Counter<'layer' | 'expert'>;
  readonly #bytes: Counter<'direction'>;
  readonly #coordinators: Gauge;
  readonly #refused: Counter<'reason'>;

  constructor() {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    this.#requests = new Counter({
      name: 'kmoe_worker_requests_total',
      help: 'Frames received from coordinators after the handshake, by outcome (ok or the error-reply code)',
      labelNames: ['outcome'],
      registers,
    });
    this.#serviceSeconds = new Histogram({
      name: 'kmoe_worker_request_seconds',
      help: 'Time from receiving a dispatch request to its result frame being ready (queueing behind earlier requests of the connection and expert compute)',
      buckets: [...DISPATCH_LATENCY_BUCKETS_SECONDS],
      registers,
    });
    this.#tokens = new Counter({
      name: 'kmoe_worker_tokens_total',
      help: 'Hidden states received in dispatch requests answered ok, per MoE layer',
      labelNames: ['layer'],
      registers,
    });
    this.#activations = new Counter({
      name: 'kmoe_worker_expert_token_activations_total',
      help: 'Token rows computed per expert held here, per MoE layer',
      labelNames: ['layer', 'expert'],
      registers,
    });
    this.#bytes = new Counter({
      name: 'kmoe_worker_bytes_total',
      help: 'WebSocket frame bytes by direction (in = from coordinators), handshakes included',
      labelNames: ['direction'],
      registers,
    });
    this.#coordinators = new Gauge({
      name: 'kmoe_worker_coordinators',
      help: 'Coordinators connected and past the handshake',
      registers,
    });
    this.#refused = new Counter({
      name: 'kmoe_worker_handshakes_refused_total',
      help: 'Connections refused in the handshake, by reason (version, model, bad-hello, auth)',
      labelNames: ['reason'],
      registers,
    });
    // Every reason present from the start, so an alert on `auth` sees a 0 before the first refusal.
    for (const reason of REFUSE_REASONS) this.#refused.inc({ reason }, 0);
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  bytes(direction: 'in' | 'out', n: number): void {
    this.#bytes.inc({ direction }, n);
  }

  coordinators(delta: 1 | -1): void {
    this.#coordinators.inc(delta);
  }

  /** A peer refused in the handshake. */
  refused(reason: RefuseReason): void {
    this.#refused.inc({ reason });
  }

  /** A frame answered with an error reply. */
  failed(code: ErrorReplyCode): void {
    this.#requests.inc({ outcome: code });
  }

  /** A dispatch request answered with its result. */
  served(shape: DispatchShape, seconds: number): void {
    this.#requests.inc({ outcome: 'ok' });
    this.#serviceSeconds.observe(seconds);
    const layer = String(shape.layer);
    this.#tokens.inc({ layer }, shape.tokens);
    shape.expertTokens.forEach((n, e) => {
      if (n > 0) this.#activations.inc({ layer, expert: String(e) }, n);
    });
  }
}
