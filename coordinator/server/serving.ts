// Assembles a running server from a loaded engine: tokenizers (detokenizing on the main thread,
// prompts on a thread of their own), routing catalog, scheduler, metrics, routes and the HTTP
// listener; and takes it down in order (stop admission, drain or cut at the deadline, close the
// listener and the tokenizer thread).

import type { Registry } from 'prom-client';
import { KmoeTokenizer } from '../../shared/model/tokenizer.js';
import type { RoutingStatsJSON } from '../../shared/routing/stats.js';
import type { DispatchStatsJSON } from '../cluster/dispatch-stats.js';
import type { EngineInfo } from '../engine/engine.js';
import { ApiServer } from './api-server.js';
import { generationHandler } from './generation-handler.js';
import { GenerationRequestBuilder } from './generation-request.js';
import { type HostCheck, hostCheckFor } from './host-check.js';
import { installLastResortHandlers } from './last-resort.js';
import type { Logger } from './logger.js';
import { ServerMetrics } from './metrics.js';
import { PromptTokenizer } from './prompt-tokenizer.js';
import type { RouteTable } from './router.js';
import { RoutingCatalog } from './routing-catalog.js';
import { Scheduler, type SchedulerOptions, type ShutdownReport, type StepEngine } from './scheduler.js';
import { type ExpertCoverage, statusEndpoints } from './status-endpoints.js';

/** Running requests get this long to finish when the process must exit after an uncaught exception. */
const FATAL_GRACE_MS = 5000;

/** The engine as the server uses it (EngineClient in production). */
export interface ServingEngine extends StepEngine {
  readonly info: EngineInfo;
  stats(): Promise<RoutingStatsJSON>;
  dispatchStats(): Promise<DispatchStatsJSON | null>;
  sequences(): Promise<number>;
}

export interface ServingOptions extends SchedulerOptions {
  readonly modelDir: string;
  readonly host: string;
  readonly port: number;
  readonly servedModelName: string;
  /** Profile files requests may name in kmoe.routing, besides the default routing. */
  readonly profiles: readonly string[];
  readonly bodyLimitBytes: number;
  /** Bytes all request bodies being received may hold at once (kmoe serve --max-body-memory). */
  readonly bodyBudgetBytes: number;
  /** Open HTTP connections at once (ApiServerOptions.maxConnections). */
  readonly maxConnections: number;
  /** Open HTTP connections from one client address at once, 0: no cap (ApiServerOptions). */
  readonly maxConnectionsPerClient: number;
  readonly experts: () => ExpertCoverage;
  /** Required as `Authorization: Bearer KEY` on every endpoint but /health, /ready, /metrics. */
  readonly apiKey?: string;
  /** Host names a loopback server without a key answers besides loopback ones (host-check.ts); '*': any. */
  readonly allowedHosts?: readonly string[];
  /** Adds metrics of other concerns (the cluster registry's gauges) to the /metrics registry. */
  readonly registerMetrics?: (registry: Registry) => void;
}

export interface Serving {
  readonly url: string;
  readonly info: EngineInfo;
  /** Which Host headers it answers (host-check.ts), for the serving log line. */
  readonly hostCheck: HostCheck;
  /** Stops admission, drains for up to graceMs, cancels the rest and closes the listener. */
  shutdown(graceMs: number): Promise<ShutdownReport>;
}

export async function startServing(
  engine: ServingEngine,
  options: ServingOptions,
  log: Logger,
): Promise<Serving> {
  const info = engine.info;
  const tokenizer = await KmoeTokenizer.load(options.modelDir);
  const routing = new RoutingCatalog(
    { ...info.routing, fingerprint: info.fingerprint },
    info.defaultRouting,
    options.profiles,
  );
  const metrics = new ServerMetrics(info.routing, {
    routingStats: () => engine.stats(),
    dispatchStats: () => engine.dispatchStats(),
    engineSequences: () => engine.sequences(),
  });
  options.registerMetrics?.(metrics.registry);
  const scheduler = new Scheduler(engine, tokenizer, options, {
    queue: (running, waiting) => metrics.queue(running, waiting),
    firstToken: (s) => metrics.firstToken(s),
    interToken: (s) => metrics.interToken(s),
    step: (report) => metrics.step(report),
    error: (message, err) => log.error({ err }, message),
    warn: (message, err) => log.warn({ err }, message),
  });
  // Started last before listening: a thread left running would keep a failed start-up alive.
  // As many prompts may wait for the tokenizer as the scheduler could take in (running + queued).
  const promptTokenizer = await PromptTokenizer.start(
    options.modelDir,
    options.maxRunning + options.maxQueued,
  );
  const builder = new GenerationRequestBuilder(promptTokenizer, info, routing, options.servedModelName);
  // Usage figures (avg K, native activations) count MoE layers only.
  const generation = { scheduler, builder, metrics, model: info.routing };
  let server: ApiServer | undefined;
  const status = statusEndpoints({
    info,
    servedModelName: options.servedModelName,
    routing,
    scheduler,
    metrics,
    engineSequences: () => engine.sequences(),
    experts: options.experts,
    draining: () => server?.draining ?? false,
    startedAt: Date.now(),
  });
  const routes: RouteTable = {
    '/v1/completions': {
      name: 'completions',
      methods: { POST: generationHandler('completions', generation) },
      generates: true,
    },
    '/v1/chat/completions': {
      name: 'chat',
      methods: { POST: generationHandler('chat', generation) },
      generates: true,
    },
    '/v1/models': { name: 'models', methods: { GET: status.models } },
    '/v1/models/*': { name: 'model', methods: { GET: status.model } },
    '/health': { name: 'health', methods: { GET: status.health } },
    '/ready': { name: 'ready', methods: { GET: status.ready } },
    '/metrics': { name: 'metrics', methods: { GET: status.metrics } },
  };
  const hostCheck = hostCheckFor(options.host, options.apiKey !== undefined, options.allowedHosts ?? []);
  server = new ApiServer(
    routes,
    {
      bodyLimitBytes: options.bodyLimitBytes,
      bodyBudgetBytes: options.bodyBudgetBytes,
      maxJsonMembers: info.maxPositions,
      maxConnections: options.maxConnections,
      maxConnectionsPerClient: options.maxConnectionsPerClient,
      ...(options.apiKey === undefined ? {} : { apiKey: options.apiKey }),
      hostCheck,
    },
    metrics,
    log,
  );
  const api = server;
  let url: string;
  try {
    url = await api.listen(options.host, options.port);
  } catch (err) {
    await promptTokenizer.close();
    throw err;
  }
  let stopped: Promise<ShutdownReport> | undefined;
  const serving: Serving = {
    url,
    info,
    hostCheck,
    shutdown(graceMs: number): Promise<ShutdownReport> {
      stopped ??= (async () => {
        api.stopAccepting();
        const report = await scheduler.shutdown(graceMs);
        await api.close();
        await promptTokenizer.close();
        uninstall();
        return report;
      })();
      return stopped;
    },
  };
  const uninstall = installLastResortHandlers(log, () => serving.shutdown(FATAL_GRACE_MS));
  return serving;
}
