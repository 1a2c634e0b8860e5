// Maps method + path to a handler, and the request scope every handler gets: its request id,
// its logger and a summary the access log line reports when the response is done.

import type { IncomingMessage, ServerResponse } from 'node:http';
import { RouteNotFoundError } from './errors.js';
import type { Logger } from './logger.js';

export interface RequestScope {
  readonly requestId: string;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  readonly log: Logger;
  /** Facts for the access log line (tokens, finish reason, cancellation), filled in by handlers. */
  readonly summary: Record<string, unknown>;
}

export type RouteHandler = (scope: RequestScope) => Promise<void>;

export interface Route {
  /** Metric label and log name of the endpoint. */
  readonly name: string;
  readonly methods: Readonly<Record<string, RouteHandler>>;
  /** Starts generation work: refused with 503 once shutdown begins. */
  readonly generates?: boolean;
}

export interface MatchedRoute {
  readonly name: string;
  readonly handler: RouteHandler;
  readonly generates: boolean;
}

export class Router {
  constructor(private readonly routes: Readonly<Record<string, Route>>) {}

  /** @throws RouteNotFoundError (404 unknown path, 405 known path with another method) */
  match(method: string, path: string): MatchedRoute {
    const route = Object.hasOwn(this.routes, path) ? this.routes[path] : undefined;
    const handler = route?.methods[method];
    if (!route || !handler)
      throw new RouteNotFoundError(method, path, route ? Object.keys(route.methods) : []);
    return { name: route.name, handler, generates: route.generates ?? false };
  }
}
