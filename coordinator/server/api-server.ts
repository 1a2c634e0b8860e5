// The node:http server: request ids, routing to handlers, OpenAI error bodies for every failure
// (nothing a client sends can crash it), request metrics and one access log line per request,
// and the shutdown switch that turns new generation requests away with 503.

import { randomUUID } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ListenError } from '../../shared/runtime/errors.js';
import { ApiError, InternalServerError, ShuttingDownError } from './errors.js';
import { sendError } from './http-io.js';
import type { Logger } from './logger.js';
import type { ServerMetrics } from './metrics.js';
import type { RequestScope, Router } from './router.js';

const REQUEST_ID = /^[\w.:-]{1,128}$/;

export class ApiServer {
  readonly #server: http.Server;
  #draining = false;

  constructor(
    private readonly router: Router,
    private readonly metrics: ServerMetrics,
    private readonly log: Logger,
  ) {
    this.#server = http.createServer((req, res) => {
      void this.#handle(req, res);
    });
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Listens and returns the base URL (port 0 picks a free port); @throws ListenError */
  listen(host: string, port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const fail = (err: unknown) => reject(new ListenError(host, port, err));
      this.#server.once('error', fail);
      this.#server.listen(port, host, () => {
        this.#server.off('error', fail);
        const address = this.#server.address() as AddressInfo;
        const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
        resolve(`http://${shown}:${address.port}`);
      });
    });
  }

  /** New generation requests get 503 from now on; status endpoints keep answering. */
  stopAccepting(): void {
    this.#draining = true;
  }

  /** Stops listening and closes connections; call once in-flight responses have ended. */
  close(): Promise<void> {
    return new Promise((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const header = req.headers['x-request-id'];
    const requestId = typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID();
    res.setHeader('x-request-id', requestId);
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    const scope: RequestScope = {
      requestId,
      req,
      res,
      log: this.log.child({ reqId: requestId }),
      summary: {},
    };
    let endpoint = 'unknown';
    try {
      const route = this.router.match(req.method ?? 'GET', path);
      endpoint = route.name;
      if (route.generates && this.#draining) throw new ShuttingDownError();
      await route.handler(scope);
    } catch (err) {
      const error = err instanceof ApiError ? err : new InternalServerError(requestId, err);
      if (!(err instanceof ApiError)) scope.log.error({ err }, 'request failed unexpectedly');
      if (!res.headersSent) sendError(res, error);
      else if (!res.writableEnded) res.end();
      scope.summary['error'] = error.message;
    }
    const seconds = (performance.now() - started) / 1000;
    this.metrics.request(endpoint, res.statusCode, seconds);
    const level =
      res.statusCode >= 500 ? 'error' : endpoint === 'metrics' || endpoint === 'health' ? 'debug' : 'info';
    scope.log[level](
      { method: req.method, path, status: res.statusCode, ms: Math.round(seconds * 1000), ...scope.summary },
      'request',
    );
  }
}
