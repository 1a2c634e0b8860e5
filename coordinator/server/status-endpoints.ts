// The GET endpoints: /v1/models (what this server serves) and /v1/models/NAME (OpenAI's retrieve
// model), /health (the process answers, with
// live sequence counts for debugging), /ready (able to serve: experts covered, not shutting down)
// and /metrics (Prometheus text). Coverage comes from the cluster's health (coordinator/cluster).

import type { ExpertCoverage } from '../cluster/cluster-health.js';
import type { EngineInfo } from '../engine/engine.js';
import { ModelNotFoundError } from './errors.js';
import { sendJson, sendText } from './http-io.js';
import type { ServerMetrics } from './metrics.js';
import { modelEntry } from './openai-format.js';
import type { RequestScope, RouteHandler } from './router.js';
import type { RoutingCatalog } from './routing-catalog.js';
import type { Scheduler } from './scheduler.js';

export type { ExpertCoverage } from '../cluster/cluster-health.js';

export interface StatusDeps {
  readonly info: EngineInfo;
  readonly servedModelName: string;
  readonly routing: RoutingCatalog;
  readonly scheduler: Scheduler;
  readonly metrics: ServerMetrics;
  readonly engineSequences: () => Promise<number>;
  readonly experts: () => ExpertCoverage;
  readonly draining: () => boolean;
  readonly startedAt: number;
}

export interface StatusHandlers {
  readonly models: RouteHandler;
  /** GET /v1/models/* : the served model's entry, or 404 model_not_found. */
  readonly model: RouteHandler;
  readonly health: RouteHandler;
  readonly ready: RouteHandler;
  readonly metrics: RouteHandler;
}

export function statusEndpoints(deps: StatusDeps): StatusHandlers {
  const entry = () =>
    modelEntry(deps.servedModelName, Math.floor(deps.startedAt / 1000), {
      kmoe: {
        model_type: deps.info.modelType,
        context_length: deps.info.maxPositions,
        num_layers: deps.info.numLayers,
        num_moe_layers: deps.info.routing.numLayers,
        num_experts: deps.info.numExperts,
        native_k: deps.info.nativeK,
        default_routing: deps.routing.default.name,
        profiles: deps.routing.profileNames,
        profile_digests: deps.routing.profileDigests,
      },
    });
  return {
    models: async ({ res }: RequestScope) => {
      sendJson(res, 200, { object: 'list', data: [entry()] });
    },
    model: async ({ req, res }: RequestScope) => {
      // fastify hands the wildcard's part of the path over percent-decoded: "org%2Fname" is "org/name".
      const name = (req.params as { '*': string })['*'];
      if (name !== deps.servedModelName) throw new ModelNotFoundError(name, deps.servedModelName);
      sendJson(res, 200, entry());
    },
    health: async ({ res }: RequestScope) => {
      sendJson(res, 200, {
        status: deps.draining() ? 'draining' : 'ok',
        sequences: {
          running: deps.scheduler.running,
          queued: deps.scheduler.waiting,
          engine: await deps.engineSequences(),
        },
      });
    },
    ready: async ({ res }: RequestScope) => {
      const experts = deps.experts();
      const draining = deps.draining();
      const ready = experts.covered && !draining;
      // As every other 503 of the API: a load balancer's probe may try again in a second.
      if (!ready) void res.header('retry-after', '1');
      sendJson(res, ready ? 200 : 503, {
        status: ready ? 'ready' : 'not_ready',
        ...(draining ? { reason: 'shutting down' } : {}),
        experts,
      });
    },
    metrics: async ({ res }: RequestScope) => {
      sendText(res, 200, deps.metrics.contentType, await deps.metrics.render());
    },
  };
}
