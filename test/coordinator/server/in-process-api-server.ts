// An ApiServer in the test process, on a free loopback port, with the routes a test gives it: for
// limits and parser behaviour that a serve process reaches only after seconds (its time limits) or
// that need a handler the test controls. Metrics are real but never scraped; the log is captured.

import { routingModelOfConfig } from '../../../coordinator/moe/routing-model.js';
import { ApiServer, type ApiServerOptions } from '../../../coordinator/server/api-server.js';
import { ServerMetrics } from '../../../coordinator/server/metrics.js';
import type { RouteTable } from '../../../coordinator/server/router.js';
import { loadModelConfig } from '../../../shared/model/config.js';
import { MODEL_DIR } from '../../helpers/paths.js';
import { capturedLogger } from './access-log.js';

/** Small limits by default; `options` overrides any of them (e.g. the time limits). */
export async function inProcessApiServer(
  routes: RouteTable,
  options: Partial<ApiServerOptions> = {},
): Promise<{ readonly api: ApiServer; readonly url: string; readonly logText: () => string }> {
  const routing = routingModelOfConfig(await loadModelConfig(MODEL_DIR));
  const unused = () => Promise.reject(new Error('this test does not scrape /metrics'));
  const metrics = new ServerMetrics(routing, {
    routingStats: unused,
    dispatchStats: unused,
    engineSequences: unused,
  });
  const logged = capturedLogger();
  const api = new ApiServer(
    routes,
    {
      bodyLimitBytes: 1024,
      bodyBudgetBytes: 1024 * 1024,
      maxConnections: 16,
      maxConnectionsPerClient: 0,
      maxJsonMembers: 16,
      ...options,
    },
    metrics,
    logged.log,
  );
  return { api, url: await api.listen('127.0.0.1', 0), logText: logged.text };
}
