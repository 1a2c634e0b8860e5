// The route table of the API (path -> endpoint name, handler per method, whether it starts
// generation work) and the request scope every handler gets: its request id, the fastify request
// and reply, its logger and a summary the access log line reports when the response is done.

import type { FastifyReply, FastifyRequest } from 'fastify';
import type { Logger } from './logger.js';

export interface RequestScope {
  readonly requestId: string;
  readonly req: FastifyRequest;
  /** The fastify reply; a stream hijacks it and writes to `res.raw`. */
  readonly res: FastifyReply;
  readonly log: Logger;
  /** Facts for the access log line (tokens, finish reason, cancellation), filled in by handlers. */
  readonly summary: Record<string, unknown>;
  /**
   * Aborted when the client can no longer get the answer: its response closed, or its connection
   * did (a pipelined request's response waits for the ones before it and has no close of its own).
   */
  readonly clientGone: AbortSignal;
}

export type RouteHandler = (scope: RequestScope) => Promise<void>;

export interface Route {
  /** Metric label and log name of the endpoint. */
  readonly name: string;
  readonly methods: Readonly<Partial<Record<HttpMethod, RouteHandler>>>;
  /** Starts generation work: refused with 503 once shutdown begins. */
  readonly generates?: boolean;
}

export type HttpMethod = 'GET' | 'POST';

export type RouteTable = Readonly<Record<string, Route>>;

/**
 * The route at this path (no prototype keys), for 405s and metric labels: the exact path, or a
 * `PREFIX/*` route (fastify's wildcard) when the path starts with PREFIX/. The rest may be empty,
 * as fastify's wildcard matches `PREFIX/` too: its other methods get a 405 like any other path's.
 */
export function routeAt(routes: RouteTable, path: string): Route | undefined {
  if (Object.hasOwn(routes, path)) return routes[path];
  for (const [pattern, route] of Object.entries(routes)) {
    if (pattern.endsWith('/*') && path.startsWith(pattern.slice(0, -1))) return route;
  }
  return undefined;
}
