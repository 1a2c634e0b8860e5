// The HTTP server, on fastify: connection limits (per client address, time for the headers),
// routing, body limits, JSON-only bodies (415 otherwise), request ids, an OpenAI-style JSON error
// with a stable code for every failure (Node's HTTP parser errors included, whenever a response is
// still possible), request metrics and one access log line per request, and the shutdown switch
// that turns new generation requests away with 503.

import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { ClientConnections } from '../../shared/runtime/client-connections.js';
import { ListenError } from '../../shared/runtime/errors.js';
import { BodyBudget } from './body-budget.js';
import {
  ApiError,
  ExpectationFailedError,
  HostNotAllowedError,
  InternalServerError,
  InvalidApiKeyError,
  MalformedHttpError,
  PayloadTooLargeError,
  RouteNotFoundError,
  ShuttingDownError,
  UnsupportedMediaTypeError,
} from './errors.js';
import { type HostCheck, hostAllowed, requestAuthority } from './host-check.js';
import { sendError } from './http-io.js';
import { parseJsonBody } from './json-body.js';
import type { Logger } from './logger.js';
import type { ServerMetrics } from './metrics.js';
import { endConnection, errorAnswer, parserError, writeRaw } from './raw-response.js';
import { type HttpMethod, type RequestScope, type RouteTable, routeAt } from './router.js';

const REQUEST_ID = /^[\w.:-]{1,128}$/;
/** Time to receive a whole request, headers and body: a stalled upload ends with a 408. */
const REQUEST_TIMEOUT_MS = 60_000;
/**
 * Time to receive a request's headers. Node's default is the request timeout, so 1,024 connections
 * sending partial headers held every connection slot for a minute. Real clients send their headers
 * in a packet or two; 10 s leaves room for a slow network.
 */
export const HEADERS_TIMEOUT_MS = 10_000;

/**
 * How long an idle keep-alive connection stays open (fastify's default was 72 s): as vLLM's
 * server (uvicorn) keeps them, 5 s. An idle connection holds one of its client's
 * --max-connections-per-client slots; clients reconnect at no cost beyond a handshake.
 */
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
/** Status recorded for a request whose client left before its response was complete (nginx's). */
const CLIENT_CLOSED = 499;
/** Metric label of failures Node's HTTP parser reports before any request exists. */
const PARSER_ENDPOINT = 'http_parser';
const NOT_FOUND_ENDPOINT = 'unknown';

export interface ApiServerOptions {
  readonly bodyLimitBytes: number;
  /** Bytes of request bodies received and not yet read past which uploads wait (body-budget.ts). */
  readonly bodyBudgetBytes: number;
  /**
   * Open TCP connections at once; Node closes any beyond at once (each costs a socket, parser
   * and buffers however idle): `kmoe serve --max-connections`.
   */
  readonly maxConnections: number;
  /**
   * Open TCP connections from one client address at once, 0: no cap (ClientConnections):
   * `kmoe serve --max-connections-per-client`.
   */
  readonly maxConnectionsPerClient: number;
  /** Time for a request's headers to arrive (default HEADERS_TIMEOUT_MS); then 408. */
  readonly headersTimeoutMs?: number;
  /** Time for a whole request, headers and body, to arrive (default REQUEST_TIMEOUT_MS); then 408. */
  readonly requestTimeoutMs?: number;
  /** Most members an array or object of a JSON body may hold (the context length). */
  readonly maxJsonMembers: number;
  /** Every request but OPEN_ENDPOINTS' must carry `Authorization: Bearer <apiKey>`; none: open. */
  readonly apiKey?: string;
  /** Which Host headers are answered (every endpoint); default any. */
  readonly hostCheck?: HostCheck;
}

/**
 * Endpoints that stay open with an API key: probes and scrapers (load balancers, Kubernetes,
 * Prometheus) carry no key, and these say nothing about prompts or outputs. Decided by the matched
 * route, not the path text, so no spelling of a /v1 path (encoded, doubled slashes) slips through;
 * requests that match no route need the key too.
 */
const OPEN_ENDPOINTS: ReadonlySet<string> = new Set(['health', 'ready', 'metrics']);

interface Scope extends RequestScope {
  /** Aborts `clientGone`. */
  readonly abortClientGone: () => void;
  endpoint: string;
  /** A generation request (Route.generates): a client's FIN cancels it. */
  readonly generates: boolean;
  readonly started: number;
  /** A status Node's parser forced after the request began (e.g. bad chunked encoding mid-body). */
  forcedStatus?: number;
}

/** What a route's fastify config carries for the scope of its requests. */
interface RouteConfig {
  readonly endpoint: string;
  readonly generates: boolean;
}

export class ApiServer {
  readonly #app: FastifyInstance<Server, IncomingMessage, ServerResponse, Logger>;
  readonly #scopes = new WeakMap<IncomingMessage, Scope>();
  /**
   * Every request of a connection not yet finished, in arrival order, pipelined ones included: a
   * response queued behind another never gets the socket, so its own 'close' never fires; the
   * socket's does.
   */
  readonly #open = new WeakMap<Socket, Set<Scope>>();
  /**
   * Every response Node has begun on a connection and not yet written, in request order (Node
   * queues a pipelined one behind those before it): an answer written straight to the socket (a
   * parser error's, CONNECT's) must wait for them, since HTTP/1.1 answers in request order.
   */
  readonly #unwritten = new WeakMap<Socket, Set<ServerResponse>>();
  /** The response of the newest request Node parsed on a connection (its `req` is that request). */
  readonly #newest = new WeakMap<Socket, ServerResponse>();
  /**
   * Connections whose parser failed: llhttp stops at its first error and repeats it for every later
   * read (Node's timeouts may fire too); the first error's answer is already decided.
   */
  readonly #failed = new WeakSet<Socket>();
  readonly #bodies: BodyBudget;
  readonly #headersTimeoutMs: number;
  readonly #requestTimeoutMs: number;
  #draining = false;

  constructor(
    routes: RouteTable,
    private readonly options: ApiServerOptions,
    private readonly metrics: ServerMetrics,
    private readonly log: Logger,
  ) {
    const app = Fastify({
      loggerInstance: log,
      logController: new LogController({ disableRequestLogging: true, requestIdLogLabel: 'reqId' }),
      genReqId: requestIdOf,
      bodyLimit: options.bodyLimitBytes,
      requestTimeout: options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
      // Node checks those timeouts every 30 s by default, so a slow sender held its connection
      // 60-90 s; checking every second keeps the 408 within a second of the limit.
      http: {
        connectionsCheckingInterval: 1000,
        requireHostHeader: false,
        headersTimeout: options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS,
      },
      // Shutdown closes the listener once the scheduler has ended every sequence: nothing is left
      // to wait for, and idle keep-alive connections must not hold the process open.
      forceCloseConnections: true,
      return503OnClosing: false,
      clientErrorHandler: (err, socket) => this.#clientError(err, socket as Socket),
      frameworkErrors: (err, request, reply) => {
        this.#begin(request, reply);
        this.#fail(err, request, reply);
      },
    });
    this.#app = app;
    this.#headersTimeoutMs = options.headersTimeoutMs ?? HEADERS_TIMEOUT_MS;
    this.#requestTimeoutMs = options.requestTimeoutMs ?? REQUEST_TIMEOUT_MS;
    this.#bodies = new BodyBudget(options.bodyBudgetBytes);
    app.server.maxConnections = options.maxConnections;
    app.server.on('drop', () => metrics.connectionRefused('max_connections'));
    const perClient = new ClientConnections(options.maxConnectionsPerClient, {
      refused: () => metrics.connectionRefused('max_connections_per_client'),
      warn: (remote, refused) =>
        log.warn(
          { remote, refused, max: options.maxConnectionsPerClient },
          'closed connections over --max-connections-per-client (behind a reverse proxy every client has its address: raise it or set 0)',
        ),
    });
    // A client that ends its side after a complete request (TCP FIN: `nc -N`, a socket's end())
    // still reads: Node would end the connection at once and drop the answer. httpAllowHalfOpen
    // is an undocumented property of Node's http.Server; aborts.test.ts asserts the behaviour, so
    // a Node without it fails there. Generation requests are the exception: a client that closes
    // its socket sends the same FIN, and a generation runs for seconds to minutes, so the FIN
    // cancels it as a disconnect (as nginx does while it waits for its upstream); cheap answers
    // (status endpoints, errors) are sent, then the connection ends.
    (app.server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    app.server.on('connection', (socket: Socket) => {
      perClient.admit(socket);
      this.#open.set(socket, new Set());
      this.#unwritten.set(socket, new Set());
      socket.once('end', () => {
        // Any generation on the connection, not only the newest request: a generation followed by
        // a pipelined GET /health and a FIN must not run on unwatched.
        const open = this.#open.get(socket) ?? [];
        if ([...open].some((scope) => scope.generates) && !socket.destroyed) socket.destroy();
      });
      // Requests still open when the connection is gone (pipelined ones wait for the socket and
      // get no close of their own) are cancelled, then finished as the client's close (499).
      socket.once('close', () => {
        const open = [...(this.#open.get(socket) ?? [])];
        for (const scope of open) scope.abortClientGone();
        queueMicrotask(() => {
          for (const scope of open) this.#finish(scope);
        });
      });
    });
    // Before fastify's listener, so every request's response is known before any handler runs.
    app.server.prependListener('request', (_req: IncomingMessage, res: ServerResponse) => this.#track(res));
    // Only JSON bodies: anything else (a cross-origin form post, text/plain) is a 415.
    app.removeAllContentTypeParsers();
    app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
      // Read whole: from here the text is the handler's, no longer an upload in progress.
      this.#bodies.release(request.raw);
      try {
        // JSON is UTF-8 (RFC 8259); a body declared in another charset would be misread.
        const charset = /;\s*charset\s*=\s*"?([^";\s]*)/i.exec(request.headers['content-type'] ?? '')?.[1];
        if (charset !== undefined && !/^utf-?8$/i.test(charset)) {
          throw new UnsupportedMediaTypeError(request.headers['content-type']);
        }
        done(null, parseJsonBody(body as string, { maxMembers: options.maxJsonMembers }));
      } catch (err) {
        done(err as Error, undefined);
      }
    });
    const keyDigest = options.apiKey === undefined ? undefined : sha256(options.apiKey);
    const hostCheck = options.hostCheck ?? { kind: 'any' };
    /** Why a request is refused whatever its body (the Host check, then the API key), or undefined. */
    const refusal = (req: IncomingMessage, endpoint: string): ApiError | undefined => {
      // Node keeps the first of several Host headers; RFC 9112 (3.2) has such a request refused,
      // so that no two readers of it see different hosts.
      const hosts = req.rawHeaders.filter((_, i) => i % 2 === 0 && /^host$/i.test(req.rawHeaders[i]!)).length;
      if (hosts > 1)
        return new MalformedHttpError(400, 'duplicate_host', 'the request has more than one Host header');
      const host = requestAuthority(req.url ?? '', req.headers.host);
      // HTTP/1.1 requires Host (RFC 9112, 3.2) unless the target names the authority; Node's own
      // refusal (requireHostHeader) was a bare 400 with no JSON and no request id.
      if (host === undefined && req.httpVersion !== '1.0')
        return new MalformedHttpError(400, 'missing_host', 'an HTTP/1.1 request needs a Host header');
      if (!hostAllowed(hostCheck, host)) return new HostNotAllowedError(host!);
      if (keyDigest !== undefined && !OPEN_ENDPOINTS.has(endpoint)) {
        const given = bearerToken(req.headers.authorization);
        // Digests have one length whatever was sent, so the comparison's time says nothing either.
        if (given === undefined || !timingSafeEqual(sha256(given), keyDigest))
          return new InvalidApiKeyError(given !== undefined);
      }
      return undefined;
    };
    // `Expect: 100-continue`: Node would invite every upload at once; only one that will be read
    // (not refused by the Host check or the key, not over the body limit) is invited. The others
    // get their refusal without the body (Node then closes the connection).
    app.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      const endpoint = routeAt(routes, pathOf(req.url ?? '/'))?.name ?? NOT_FOUND_ENDPOINT;
      const length = req.headers['content-length'];
      const tooLarge =
        length !== undefined && /^\d+$/.test(length) && Number(length) > options.bodyLimitBytes;
      if (refusal(req, endpoint) === undefined && !tooLarge) res.writeContinue();
      app.server.emit('request', req, res);
    });
    app.addHook('onRequest', (request, reply, done) => {
      const scope = this.#begin(request, reply);
      const refused = refusal(request.raw, scope.endpoint);
      if (refused !== undefined) {
        done(refused);
        return;
      }
      done();
    });
    // Every body is counted by the bytes that arrive (body-budget.ts), before fastify reads them.
    app.addHook('preParsing', (request, reply, payload, done) => {
      const upload = request.raw;
      upload.on('data', (chunk: Buffer) => this.#bodies.received(upload, chunk.length));
      reply.raw.once('close', () => this.#bodies.release(upload));
      done(null, payload);
    });
    app.setErrorHandler((err, request, reply) => this.#fail(err, request, reply));
    app.setNotFoundHandler((request, reply) => {
      const scope = this.#begin(request, reply);
      const path = pathOf(request.url);
      const route = routeAt(routes, path);
      if (route) scope.endpoint = route.name;
      this.#fail(
        new RouteNotFoundError(request.method, path, route ? Object.keys(route.methods) : []),
        request,
        reply,
      );
    });
    for (const [path, route] of Object.entries(routes)) {
      for (const [method, handler] of Object.entries(route.methods)) {
        app.route({
          method: method as HttpMethod,
          url: path,
          config: { endpoint: route.name, generates: route.generates === true } satisfies RouteConfig,
          handler: async (request, reply) => {
            const scope = this.#begin(request, reply);
            if (route.generates && this.#draining) throw new ShuttingDownError();
            await handler!(scope);
          },
        });
      }
    }
    // Node answers an Expect header other than 100-continue itself, with an empty body; say why.
    // Through the request's own response, not writeRaw: pipelined behind a request still running,
    // the answer must wait for that one's, as Node queues responses.
    app.server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      const started = performance.now();
      const error = new ExpectationFailedError(String(req.headers.expect));
      const requestId = requestIdOf(req);
      const path = pathOf(req.url ?? '/');
      const answer = errorAnswer(error, requestId);
      this.#track(res);
      res.writeHead(answer.status, answer.headers);
      res.end(answer.body);
      this.#finishUnrouted(
        requestId,
        routeAt(routes, path)?.name ?? NOT_FOUND_ENDPOINT,
        error,
        { method: req.method, path: path.slice(0, 256) },
        started,
      );
    });
    // CONNECT never reaches a route: Node hands its socket over. Answer it like any unknown method:
    // a target that is one of the paths gets that path's methods, a host (its usual target) every
    // method the server takes.
    const serverMethods = [...new Set(Object.values(routes).flatMap((route) => Object.keys(route.methods)))];
    app.server.on('connect', (req: IncomingMessage, socket: Socket) => {
      const started = performance.now();
      // Node removes its own error listener when it hands the socket over: a client's reset would
      // otherwise be an uncaught exception that takes the server down.
      socket.on('error', () => socket.destroy());
      // Nothing after CONNECT is parsed any more: read and drop it, so a FIN is still seen (it
      // cancels a generation pipelined before, as on any connection) and the close after the answer
      // does not meet unread bytes (which would reset the connection, answer and all).
      socket.resume();
      const target = String(req.url);
      const route = routeAt(routes, pathOf(target));
      const error = new RouteNotFoundError(
        'CONNECT',
        target.slice(0, 200),
        route ? Object.keys(route.methods) : serverMethods,
      );
      const requestId = requestIdOf(req);
      const known = { method: 'CONNECT', path: pathOf(target).slice(0, 256) };
      // Pipelined behind requests still being answered, the 405 is the connection's next response
      // once theirs are written (Node still writes them: it keeps its queue of responses).
      this.#whenWritten(socket, [...(this.#unwritten.get(socket) ?? [])], () => {
        if (!socket.writable) {
          // An earlier answer closed the connection (`connection: close`; Node ends it once that
          // answer is out), or the client left.
          this.#record(
            this.log.child({ reqId: requestId }),
            NOT_FOUND_ENDPOINT,
            known,
            CLIENT_CLOSED,
            started,
            {
              cancelled: 'the connection closed before its answer was due',
            },
          );
          return;
        }
        writeRaw(socket, error, requestId);
        this.#finishUnrouted(requestId, NOT_FOUND_ENDPOINT, error, known, started);
      });
    });
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Listens and returns the base URL (port 0 picks a free port); @throws ListenError */
  async listen(host: string, port: number): Promise<string> {
    try {
      await this.#app.listen({ host, port });
    } catch (err) {
      throw new ListenError(host, port, err);
    }
    const address = this.#app.server.address() as AddressInfo;
    const shown = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    return `http://${shown}:${address.port}`;
  }

  /**
   * New generation requests get 503 from now on; status endpoints keep answering (/ready: 503).
   * Idle keep-alive connections are closed now, so clients and load balancers reconnect elsewhere
   * instead of sending their next request here; busy ones close after their response.
   */
  stopAccepting(): void {
    this.#draining = true;
    this.#app.server.closeIdleConnections();
  }

  /** Stops listening and closes connections; call once in-flight responses have ended. */
  close(): Promise<void> {
    return this.#app.close();
  }

  /** The request's scope, created on first sight (hooks do not run for every framework error). */
  #begin(request: FastifyRequest, reply: FastifyReply): Scope {
    const known = this.#scopes.get(request.raw);
    if (known) return known;
    const config = request.routeOptions.config as Partial<RouteConfig> | undefined;
    const gone = new AbortController();
    const scope: Scope = {
      clientGone: gone.signal,
      abortClientGone: () => gone.abort(),
      requestId: request.id,
      req: request,
      res: reply,
      log: request.log as Logger,
      summary: {},
      // Known from the route before the body is read, so a failed upload is counted where it was sent.
      endpoint: config?.endpoint ?? NOT_FOUND_ENDPOINT,
      generates: config?.generates === true,
      started: performance.now(),
    };
    this.#scopes.set(request.raw, scope);
    this.#open.get(request.raw.socket)?.add(scope);
    // On the node response, so hijacked (streamed) replies carry it too.
    reply.raw.setHeader('x-request-id', request.id);
    reply.raw.once('close', () => {
      scope.abortClientGone();
      // After the handlers' cancellation, which fills in the summary.
      queueMicrotask(() => this.#finish(scope));
    });
    return scope;
  }

  #fail(err: unknown, request: FastifyRequest, reply: FastifyReply): void {
    const scope = this.#begin(request, reply);
    // The parser already answered (bad chunked encoding) and closed the connection: nothing to add.
    if (scope.forcedStatus !== undefined) return;
    if (clientGone(err, request)) {
      // Nothing to answer: the client left mid-upload. Not a server error.
      scope.summary['cancelled'] = 'client disconnected before the body was complete';
      return;
    }
    const error = this.#toApiError(err, request, scope);
    scope.summary['error'] = error.message;
    if (error.code !== (err as { code?: unknown } | null)?.code) scope.summary['errorCode'] = error.code;
    if (reply.sent || reply.raw.headersSent) {
      if (!reply.raw.writableEnded) reply.raw.end();
      return;
    }
    sendError(reply, error);
  }

  #toApiError(err: unknown, request: FastifyRequest, scope: Scope): ApiError {
    if (err instanceof ApiError) return err;
    const code = (err as { code?: unknown } | null)?.code;
    const status = (err as { statusCode?: unknown } | null)?.statusCode;
    switch (code) {
      case 'FST_ERR_CTP_BODY_TOO_LARGE':
        return new PayloadTooLargeError(this.options.bodyLimitBytes);
      case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
        return new UnsupportedMediaTypeError(request.headers['content-type']);
      case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
        return new MalformedHttpError(
          400,
          'invalid_content_length',
          'the body is not as long as its content-length header says',
        );
      case 'FST_ERR_BAD_URL':
        return new MalformedHttpError(400, 'invalid_url', 'the request target is not a valid URL path');
    }
    if (typeof code === 'string' && code.startsWith('FST_') && typeof status === 'number' && status < 500) {
      return new MalformedHttpError(status, 'bad_request', (err as Error).message);
    }
    scope.log.error({ err }, 'request failed unexpectedly');
    return new InternalServerError(scope.requestId, err);
  }

  /** Counts and logs a request once, when its response closed or its connection did. */
  #finish(scope: Scope): void {
    if (!this.#open.get(scope.req.raw.socket)?.delete(scope)) return;
    const res = scope.res.raw;
    // A stream whose client left after its headers (200) is as incomplete as any other response.
    const status = scope.forcedStatus ?? (res.writableFinished ? res.statusCode : CLIENT_CLOSED);
    this.#record(
      scope.log,
      scope.endpoint,
      { method: scope.req.method, path: pathOf(scope.req.url).slice(0, 256) },
      status,
      scope.started,
      scope.summary,
    );
  }

  /** Counts a response Node began as unwritten until it is written or its connection is gone. */
  #track(res: ServerResponse): void {
    const socket = res.req.socket;
    this.#newest.set(socket, res);
    const unwritten = this.#unwritten.get(socket);
    unwritten?.add(res);
    const written = () => unwritten?.delete(res);
    res.once('finish', written);
    res.once('close', written);
  }

  /**
   * Calls `then` once each of `earlier` is written (in order: Node writes a pipelined response only
   * after the one before it), or once the connection is gone; at once if they all are. An answer
   * written straight to the socket then follows them on the wire.
   */
  #whenWritten(socket: Socket, earlier: readonly ServerResponse[], then: () => void): void {
    let done = false;
    const check = () => {
      if (done || !(socket.destroyed || earlier.every((res) => res.writableFinished))) return;
      done = true;
      then();
    };
    for (const res of earlier) res.once('finish', check);
    socket.once('close', check);
    check();
  }

  /**
   * Node's HTTP parser failed (bad request line, bad chunked encoding, oversized headers, a request
   * that took too long to arrive). The failing request is answered with a JSON error as the
   * connection's next response, once the answers of the requests before it are written (HTTP/1.1
   * answers in request order; Node still writes those it queued), then the connection closes: the
   * byte stream is no longer trustworthy. Nothing is answered where nothing can follow: the
   * connection is gone or closes with an earlier answer, or the request had its answer already.
   * With this listener attached Node writes nothing itself, so every answer here carries a request
   * id and gets an access line like any other.
   */
  #clientError(err: Error & { code?: string }, socket: Socket): void {
    if (this.#failed.has(socket)) return;
    // The request being read, to which the error belongs: the newest one parsed, unless it has all
    // arrived (its handler may still be running). Then the bytes that failed were pipelined after
    // it and began a request of their own, not yet parsed and so without a scope or id: the error is
    // not the complete request's to answer under its id or to log as its status.
    const newest = this.#newest.get(socket);
    const reading = newest !== undefined && !newest.req.complete ? newest : undefined;
    // No request being read: its headers had not all arrived (a timeout is the headers' one).
    const error = parserError(
      err,
      reading === undefined
        ? { what: 'request headers', ms: this.#headersTimeoutMs }
        : { what: 'request', ms: this.#requestTimeoutMs },
    );
    // A reset or other socket error leaves nothing to write to, and a connection closed mid-request
    // (HPE_INVALID_EOF_STATE) is a client that left, not bad HTTP.
    if (!fromParser(err) || err.code === 'HPE_INVALID_EOF_STATE' || socket.destroyed) {
      // Nothing recorded: a request in progress is logged by its own first reason (the 408 that made
      // the client close) or as the client's leaving (#fail's `cancelled`, or 499).
      socket.destroy();
      return;
    }
    this.#failed.add(socket);
    // Nothing more is read until the answer is written (endConnection reads on). A timeout is
    // Node's: the parser would read on, and a request completed after it would be answered before
    // this error. llhttp stops at its own errors, but the client's FIN after them would still be
    // read, and Node, taking the answer in flight for the connection's last, would end the
    // connection after it, before this one. A generation other than the failing request is the
    // exception: its client's FIN must still cancel it (the 'end' listener), answer and all.
    const generating = [...(this.#open.get(socket) ?? [])].some(
      (scope) => scope.generates && scope.res.raw !== reading,
    );
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' || !generating) socket.pause();
    // The requests before the failing one have all arrived: their answers go first. The failing
    // request's own answer goes with them if it has one already (a 404 or 413 given before its body
    // was read); if not, it can only be this error's, written after them.
    const answered = reading?.headersSent === true;
    const earlier = [...(this.#unwritten.get(socket) ?? [])].filter((res) => answered || res !== reading);
    this.#whenWritten(socket, earlier, () => this.#answerParserError(err, error, socket, reading));
  }

  /** #clientError's answer, once the answers before it are written. */
  #answerParserError(
    err: Error & { code?: string },
    error: ApiError,
    socket: Socket,
    reading: ServerResponse | undefined,
  ): void {
    // The connection's close logs the requests it cut short.
    if (socket.destroyed) return;
    const answered = reading?.headersSent === true;
    // Not writable: an earlier answer closed the connection (`connection: close`, a 413).
    const answerable = socket.writable && !answered;
    const scope = reading === undefined ? undefined : this.#scopes.get(reading.req);
    if (reading !== undefined && scope !== undefined) {
      // The request had begun (e.g. its body was malformed): its own access line reports this, with
      // the first reason recorded for it (an error #fail already answered stays the reason); the
      // status is the answer it got, or 499 if the connection closed before any.
      if (answered) scope.forcedStatus ??= reading.statusCode;
      else if (answerable) scope.forcedStatus ??= error.status;
      if (scope.summary['error'] === undefined) {
        Object.assign(scope.summary, { error: error.message, errorCode: error.code, parserCode: err.code });
      }
    }
    if (!answerable) {
      // Nothing sent, so no line for bytes that failed outside any request.
      if (socket.writable) endConnection(socket);
      return;
    }
    // No request was parsed for the bytes that failed, so there is no client id to echo: a fresh
    // one, on the answer and on the access line, lets the client's report of the answer be found in
    // the log.
    const requestId = scope?.requestId ?? randomUUID();
    if (scope === undefined) {
      this.#finishUnrouted(requestId, PARSER_ENDPOINT, error, {
        parserCode: err.code,
        remote: socket.remoteAddress,
      });
    }
    writeRaw(socket, error, requestId);
  }

  /**
   * Counts and logs an error answered outside fastify (a parser error, the 417, CONNECT's 405),
   * which has no scope and so no #finish: the access line has a scope's fields as far as they are
   * known (no method or path when no request line was parsed), under the id the answer carries.
   * `started`: when Node handed the request over; none for a parser error, which has no start.
   */
  #finishUnrouted(
    requestId: string,
    endpoint: string,
    error: ApiError,
    known: Readonly<Record<string, unknown>>,
    started?: number,
  ): void {
    this.#record(this.log.child({ reqId: requestId }), endpoint, known, error.status, started, {
      error: error.message,
      errorCode: error.code,
    });
  }

  /**
   * Counts a request and writes its access line, one shape for every answer, fastify's or not:
   * what is known of the request, its status, `ms` since `started` (when a start is known), then
   * what happened. Probes and scrapes (/health, /metrics) are logged at debug, errors of the
   * server at error level.
   */
  #record(
    log: Logger,
    endpoint: string,
    request: Readonly<Record<string, unknown>>,
    status: number,
    started: number | undefined,
    facts: Readonly<Record<string, unknown>>,
  ): void {
    const seconds = started === undefined ? undefined : (performance.now() - started) / 1000;
    this.metrics.request(endpoint, status, seconds ?? 0);
    const quiet = endpoint === 'metrics' || endpoint === 'health';
    const level = status >= 500 ? 'error' : quiet ? 'debug' : 'info';
    const ms = seconds === undefined ? {} : { ms: Math.round(seconds * 1000) };
    log[level]({ ...request, status, ...ms, ...facts }, 'request');
  }
}

/**
 * An error of Node's HTTP parser, or its timeout, which can be answered; anything else is a socket
 * error (ECONNRESET, EPIPE, ETIMEDOUT), after which nothing can be written.
 */
function fromParser(err: { code?: string }): boolean {
  return err.code !== undefined && (err.code.startsWith('HPE_') || err.code === 'ERR_HTTP_REQUEST_TIMEOUT');
}

/** The client's `x-request-id` when it is a valid one (echoed, so its logs and ours line up), else a fresh id. */
function requestIdOf(req: IncomingMessage): string {
  const header = req.headers['x-request-id'];
  return typeof header === 'string' && REQUEST_ID.test(header) ? header : randomUUID();
}

function clientGone(err: unknown, request: FastifyRequest): boolean {
  const code = (err as { code?: unknown } | null)?.code;
  return code === 'ECONNRESET' || code === 'ECONNABORTED' || request.raw.socket.destroyed;
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** The token of an `Authorization: Bearer <token>` header (scheme case-insensitive, RFC 7235). */
function bearerToken(header: string | undefined): string | undefined {
  const m = header === undefined ? null : /^bearer[ ]+(\S+)\s*$/i.exec(header);
  return m ? m[1] : undefined;
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
