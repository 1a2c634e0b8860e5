// A worker's WebSocket server, on the process's main thread: handshake (with the cluster secret's
// challenge-response when the worker has one, shared/protocol/auth.ts, bound to the URL it
// registered when it has one), validation of every frame at the edge, per-connection ordering and
// backpressure. A bad frame gets an error reply and the connection lives on; only the handshake can
// end a connection (refused coordinator), and no frame is worked on before it completes. Plain HTTP
// on the same port answers GET /metrics (Prometheus) and GET /health.

import http from 'node:http';
import type { Socket } from 'node:net';
import os from 'node:os';
import type { Duplex } from 'node:stream';
import { type RawData, type ServerOptions, type WebSocket, WebSocketServer } from 'ws';
import { type ClusterSecret, newNonce } from '../shared/protocol/auth.js';
import {
  decodeMessage,
  encodeChallenge,
  encodeDrain,
  encodeErrorReply,
  encodeHoldings,
  encodeRefuse,
  encodeWelcome,
  requestIdOf,
} from '../shared/protocol/codec.js';
import { ProtocolError } from '../shared/protocol/errors.js';
import { formatExpertSet } from '../shared/protocol/expert-set.js';
import { decodeFrame, frameBytes } from '../shared/protocol/frame.js';
import {
  CLOSE_HANDSHAKE_MS,
  type DispatchRequest,
  type ErrorReplyCode,
  type Hello,
  PROTOCOL_VERSION,
  type RefuseReason,
} from '../shared/protocol/messages.js';
import { firstNonFinite, WIRE_DTYPES } from '../shared/protocol/wire-dtype.js';
import { canonicalWorkerUrl, workerUrlProblem } from '../shared/protocol/worker-url.js';
import { ClientConnections } from '../shared/runtime/client-connections.js';
import { ListenError } from '../shared/runtime/errors.js';
import type { Logger } from '../shared/runtime/logger.js';
import { printable } from '../shared/text/printable.js';
import type { ExpertCompute } from './expert-compute.js';
import { dispatchShape, WorkerMetrics } from './metrics.js';

/** Default largest accepted frame: a prefill of 16k tokens of hidden 2048 in bf16 fits. */
export const DEFAULT_MAX_FRAME_BYTES = 64 * 1024 * 1024;
/**
 * Frames up to maxFrameBytes are answered; ones up to this multiple are read and refused with an
 * error reply; beyond it ws closes the connection (1009) without buffering the whole frame.
 */
const HARD_LIMIT_FACTOR = 2;
/** Requests of one connection waiting for the compute thread before the socket stops being read. */
const MAX_QUEUED = 8;
/** Unsent reply bytes above which the socket stops being read until the peer catches up. */
const HIGH_WATER_BYTES = 16 * 1024 * 1024;
/** A peer that has not completed the handshake by then is refused: it holds a socket and does no work. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/**
 * Bytes a peer may send before its handshake completes. A hello is under 8 KiB (client string
 * at most 1024 characters, URL at most 2048) and a proof under 100 bytes; more is a client that
 * skips the handshake, and its frame is not buffered beyond this (ws's maxPayload is one per server).
 */
export const HANDSHAKE_MAX_BYTES = 16 * 1024;
/** Characters of a URL quoted in a log line: enough to tell URLs apart, a bounded line. */
const URL_QUOTED_CHARS = 300;
/** How long a refused peer's socket stays open for the refuse message to reach it. */
const REFUSED_LINGER_MS = 1000;
/** Default cap on WebSocket connections at once, handshaking or greeted (`--max-connections`). */
export const DEFAULT_MAX_CONNECTIONS = 64;
/**
 * Default cap on one client's sockets (`--max-connections-per-client`): a coordinator holds one
 * connection to a worker, so one unauthenticated peer cannot fill the 64 WebSocket slots (or the
 * 80 sockets) and lock coordinators out while its handshakes time out.
 */
export const DEFAULT_MAX_CONNECTIONS_PER_CLIENT = 16;
/** Sockets beyond the WebSocket cap left for plain HTTP (metrics scrapers, health probes). */
const HTTP_SOCKET_ROOM = 16;
/** Where a coordinator and a worker with or without a cluster secret disagree, both are told how to fix it. */
const TOKEN_HINT = 'KMOE_CLUSTER_TOKEN or --cluster-token-file';
/**
 * After a drain notice, how long every connection must stay without work before the worker closes:
 * covers requests the coordinator sent before it read the notice (one network round trip).
 */
const DRAIN_QUIET_MS = 100;

export interface WorkerServerOptions {
  readonly host: string;
  readonly port: number;
  readonly maxFrameBytes: number;
  readonly compute: ExpertCompute;
  /** One record per event worth an operator's attention (accepted/refused coordinators, bad frames). */
  readonly log: Logger;
  /** The cluster secret every coordinator must prove it holds; none: any peer is accepted. */
  readonly secret?: ClusterSecret;
  /**
   * The URL coordinators are told to dial (the registry record's), from the listen URL. With a
   * secret, a coordinator must have dialled exactly it (canonical form): a relay registered under
   * another URL is refused, and the proofs cover it. None: the proofs cover the URL the coordinator
   * says it dialled, whatever name it reached this worker by (a fixed --workers list).
   */
  readonly advertise?: (listenUrl: string) => string;
  /** Default HANDSHAKE_TIMEOUT_MS. */
  readonly handshakeTimeoutMs?: number;
  /** WebSocket connections at once; beyond, the upgrade gets HTTP 503. Default DEFAULT_MAX_CONNECTIONS. */
  readonly maxConnections?: number;
  /**
   * Sockets from one client at once (ClientConnections: an IPv4 address or an IPv6 /64), whatever
   * they speak; beyond, closed at once. 0: no cap. Default DEFAULT_MAX_CONNECTIONS_PER_CLIENT.
   */
  readonly maxConnectionsPerClient?: number;
}

export class WorkerServer {
  private readonly held: Uint8Array;
  /** 1 for the decoder layers that have experts; a dispatch to a dense layer is refused. */
  private readonly moeLayer: Uint8Array;
  /** The experts requests are accepted for (changed by setHoldings while serving). */
  private holdings: readonly number[];
  private readonly peers = new Set<PeerConnection>();
  private drainReason: string | undefined;
  /** advertisedUrl's canonical form, which authenticated coordinators must have dialled. */
  readonly boundUrl: string | undefined;

  private constructor(
    private readonly httpServer: http.Server,
    private readonly wss: WebSocketServer,
    readonly options: WorkerServerOptions,
    readonly metrics: WorkerMetrics,
    readonly url: string,
    /** The URL coordinators are told to dial (options.advertise), if any. */
    readonly advertisedUrl: string | undefined,
  ) {
    this.boundUrl = advertisedUrl === undefined ? undefined : canonicalWorkerUrl(advertisedUrl);
    const m = options.compute.model;
    this.held = new Uint8Array(m.numExperts);
    this.moeLayer = new Uint8Array(m.numLayers);
    for (const l of m.moeLayers) this.moeLayer[l] = 1;
    this.holdings = [...m.experts];
    for (const e of m.experts) this.held[e] = 1;
    wss.on('connection', (ws, req) => {
      const peer = `${req.socket.remoteAddress}:${req.socket.remotePort}`;
      if (this.drainReason !== undefined) {
        ws.close(1001, 'worker draining');
        return;
      }
      const conn = new PeerConnection(this, ws, req.socket, peer);
      this.peers.add(conn);
      ws.once('close', () => this.peers.delete(conn));
      conn.start();
    });
  }

  static async start(options: WorkerServerOptions): Promise<WorkerServer> {
    const metrics = new WorkerMetrics();
    let server: WorkerServer | undefined;
    // Timeouts below are checked this often (Node's default, 30 s, would let them run 3x over).
    const httpServer = http.createServer({ connectionsCheckingInterval: 1000 }, (req, res) => {
      serveHttp(req, res, metrics, server?.experts ?? options.compute.model.experts).catch((err: unknown) => {
        options.log.error(`HTTP ${req.method} ${req.url} failed: ${(err as Error).message}`);
        if (!res.headersSent) res.writeHead(500);
        res.end();
      });
    });
    const maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    // Node closes sockets beyond this at once: a hard ceiling whatever they speak.
    httpServer.maxConnections = maxConnections + HTTP_SOCKET_ROOM;
    const perClient = new ClientConnections(
      options.maxConnectionsPerClient ?? DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
      {
        refused: () => undefined,
        warn: (client, refused) =>
          options.log.warn(
            `closed ${refused} connection(s) from ${client} over --max-connections-per-client ${perClient.max}`,
          ),
      },
    );
    httpServer.on('connection', (socket: Socket) => perClient.admit(socket));
    // A socket that sends no complete request head (no upgrade, no GET) within the handshake bound
    // is closed: silent sockets must not hold the connection cap for Node's default minute.
    const handshakeMs = options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    httpServer.headersTimeout = handshakeMs;
    httpServer.requestTimeout = handshakeMs;
    // ws 8.23 reads closeTimeout (package.json asks for it); @types/ws 8.18 does not list it.
    const wssOptions: ServerOptions & { closeTimeout: number } = {
      closeTimeout: CLOSE_HANDSHAKE_MS,
      server: httpServer,
      maxPayload: options.maxFrameBytes * HARD_LIMIT_FACTOR,
      perMessageDeflate: false,
      verifyClient: (info, accept) => {
        const peer = `${info.req.socket.remoteAddress}:${info.req.socket.remotePort}`;
        // Browsers send Origin with every WebSocket upgrade and do not apply the same-origin rule to
        // them, so without this any web page could drive a loopback worker that has no token (use
        // its CPU, fill its connections). Coordinators (Node's ws client) send none.
        // Either header, even empty: ws reads only one of them, by the handshake's version.
        const origin = info.req.headers.origin ?? info.req.headers['sec-websocket-origin'];
        if (origin !== undefined) {
          const shown = JSON.stringify(String(origin).slice(0, 100));
          options.log.warn(`refused connection from ${peer}: it carries Origin ${shown} (a web page)`);
          accept(false, 403, 'worker: connections from web pages (an Origin header) are refused');
          return;
        }
        if (wss.clients.size < maxConnections) {
          accept(true);
          return;
        }
        options.log.warn(
          `refused connection from ${peer}: ${maxConnections} connections open (--max-connections)`,
        );
        accept(false, 503, `worker busy: ${maxConnections} connections open (--max-connections)`);
      },
    };
    const wss: WebSocketServer = new WebSocketServer(wssOptions);
    await new Promise<void>((resolve, reject) => {
      httpServer.once('error', (err) => reject(new ListenError(options.host, options.port, err)));
      httpServer.listen(options.port, options.host, resolve);
    });
    const address = httpServer.address();
    const port = typeof address === 'object' && address !== null ? address.port : options.port;
    const host = options.host.includes(':') ? `[${options.host}]` : options.host;
    const url = `ws://${host}:${port}`;
    // Fixed with the server: every handshake is checked against the same URL.
    server = new WorkerServer(httpServer, wss, options, metrics, url, options.advertise?.(url));
    return server;
  }

  get experts(): readonly number[] {
    return this.holdings;
  }

  /** Why the worker is draining (its drain notice's reason), or undefined while it is not. */
  get draining(): string | undefined {
    return this.drainReason;
  }

  holds(expert: number): boolean {
    return this.held[expert] === 1;
  }

  hasExperts(layer: number): boolean {
    return this.moeLayer[layer] === 1;
  }

  /**
   * The experts requests are accepted for from now on, told at once to every connected coordinator
   * (a holdings notice) so they route accordingly; new connections get them in the welcome.
   * Resolves once every request accepted before the change has been answered: after that no
   * request for an expert no longer held can reach the compute thread.
   */
  async setHoldings(experts: readonly number[]): Promise<void> {
    const next = [...new Set(experts)].sort((a, b) => a - b);
    this.held.fill(0);
    for (const e of next) this.held[e] = 1;
    this.holdings = next;
    for (const p of this.peers) p.holdings(next);
    await Promise.all([...this.peers].map((p) => p.answered()));
  }

  /**
   * Graceful shutdown, first half: tells every coordinator to send nothing new (drain message),
   * refuses new connections, and resolves once every request received has been answered and no
   * byte arrived for DRAIN_QUIET_MS, or after `timeoutMs`. Returns whether it finished in time.
   */
  async drain(reason: string, timeoutMs: number): Promise<boolean> {
    this.drainReason ??= reason;
    for (const p of this.peers) p.drain(reason);
    const deadline = performance.now() + timeoutMs;
    let quietSince = performance.now();
    let bytesSeen = this.bytesReceived();
    // Quiet = nothing queued and no byte received over DRAIN_QUIET_MS and two checks in a row. Bytes
    // count, not just whole frames: a large frame still arriving is a request already sent. Two
    // checks: with experts computed inline the loop can be blocked for longer than the quiet period,
    // and only the poll phase between two checks reads what arrived meanwhile.
    let quietChecks = 0;
    while (performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
      const bytes = this.bytesReceived();
      if (bytes !== bytesSeen || [...this.peers].some((p) => p.busy)) {
        bytesSeen = bytes;
        quietSince = performance.now();
        quietChecks = 0;
      } else if (++quietChecks >= 2 && performance.now() - quietSince >= DRAIN_QUIET_MS) return true;
    }
    return false;
  }

  private bytesReceived(): number {
    let n = 0;
    for (const p of this.peers) n += p.bytesIn;
    return n;
  }

  /**
   * Stops accepting, closes every connection (1001 going away) and waits for the server to end.
   * The close frames are sent once every connection's requests are answered and its answers have
   * left this process, or after `flushMs`: ws' close timer (CLOSE_HANDSHAKE_MS) runs from the close
   * call, not from when the close frame is written, so on a slow link answers still queued then
   * were cut off with the socket. A coordinator that reads nothing holds the shutdown for `flushMs`
   * at most.
   */
  async close(flushMs = 0): Promise<void> {
    const deadline = performance.now() + flushMs;
    while ([...this.peers].some((p) => !p.settled) && performance.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    for (const ws of this.wss.clients) ws.close(1001, 'worker shutting down');
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    // No coordinator is connected any more: what is still queued for the compute cannot be answered.
    this.options.compute.skipQueuedDispatches();
    const closed = new Promise<void>((resolve) => this.httpServer.close(() => resolve()));
    // Idle keep-alive connections of metrics scrapers would hold the listener open. So would any
    // other socket that has not completed a request (a bare TCP connection, a request head still
    // arriving): server.close() stops the headersTimeout/requestTimeout checks, so those are cut
    // after CLOSE_HANDSHAKE_MS, the bound a WebSocket peer gets, and a scrape in progress has that long.
    this.httpServer.closeIdleConnections();
    const cut = setTimeout(() => this.httpServer.closeAllConnections(), CLOSE_HANDSHAKE_MS);
    await closed;
    clearTimeout(cut);
  }
}

/** The plain-HTTP side of the port: scrapes and liveness probes. */
async function serveHttp(
  req: http.IncomingMessage,
  res: http.ServerResponse,
  metrics: WorkerMetrics,
  experts: readonly number[],
): Promise<void> {
  const path = (req.url ?? '/').split('?')[0];
  const reply = (status: number, type: string, body: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'content-type': type, ...headers });
    res.end(body);
  };
  const json = (status: number, body: unknown, headers?: Record<string, string>) =>
    reply(status, 'application/json', JSON.stringify(body), headers);
  if (path !== '/metrics' && path !== '/health') {
    json(404, {
      error: `no ${path} here: a kmoe worker serves WebSocket dispatch, GET /metrics and GET /health`,
    });
  } else if (req.method !== 'GET' && req.method !== 'HEAD') {
    json(405, { error: `${path} takes GET, not ${req.method}` }, { allow: 'GET, HEAD' });
  } else if (path === '/metrics') {
    reply(200, metrics.contentType, await metrics.render());
  } else {
    json(200, { status: 'ok', experts: formatExpertSet(experts) });
  }
}

/** Where a connection is in the handshake. */
type Stage =
  | { readonly kind: 'hello' }
  /** Challenged: waiting for the coordinator's proof on these nonces and the URL it dialled. */
  | {
      readonly kind: 'proof';
      readonly hello: Hello;
      readonly coordinatorNonce: string;
      readonly workerNonce: string;
      /** Canonical. */
      readonly url: string;
    }
  | { readonly kind: 'greeted' }
  | { readonly kind: 'refused' };

class PeerConnection {
  private stage: Stage = { kind: 'hello' };
  private handshakeTimer: NodeJS.Timeout | undefined;
  private replies: Promise<void> = Promise.resolve();
  private queued = 0;
  #bytesIn = 0;
  /** Reading is paused: more than HIGH_WATER_BYTES of replies wait for the peer to take them. */
  private backlogged = false;
  private drainSent = false;

  constructor(
    private readonly server: WorkerServer,
    private readonly ws: WebSocket,
    private readonly socket: Duplex,
    private readonly peer: string,
  ) {}

  private get greeted(): boolean {
    return this.stage.kind === 'greeted';
  }

  start(): void {
    this.ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
    // Socket errors (e.g. a frame above the hard limit) close the connection; say why.
    this.ws.on('error', (err) => this.server.options.log.warn(`connection ${this.peer}: ${err.message}`));
    // Bytes are counted on the socket, not per message. Drain needs it: a frame still arriving is a
    // request already sent. So does the handshake limit: ws buffers a whole frame before 'message',
    // so a peer that opens with a 100 MiB frame is cut off after HANDSHAKE_MAX_BYTES, not 100 MiB.
    this.socket.on('data', (chunk: Buffer) => {
      this.#bytesIn += chunk.byteLength;
    });
    // Registered after the counter, so it sees the chunk already counted.
    const count = () => {
      if (this.greeted) this.socket.off('data', count);
      else if (this.#bytesIn > HANDSHAKE_MAX_BYTES) {
        this.socket.off('data', count);
        this.refuse('bad-hello', `sent over ${HANDSHAKE_MAX_BYTES} bytes before completing the handshake`);
        // Not close(): that would keep reading (and buffering) until the peer's close frame.
        this.ws.terminate();
      }
    };
    this.socket.on('data', count);
    const timeoutMs = this.server.options.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS;
    this.handshakeTimer = setTimeout(() => {
      const what = this.stage.kind === 'proof' ? 'proof of the cluster token' : 'hello';
      this.refuse(this.stage.kind === 'proof' ? 'auth' : 'bad-hello', `no ${what} within ${timeoutMs} ms`);
    }, timeoutMs);
    this.ws.on('close', (code) => {
      clearTimeout(this.handshakeTimer);
      if (!this.greeted) return;
      this.server.metrics.coordinators(-1);
      this.server.options.log.info(`coordinator ${this.peer} disconnected (code ${code})`);
    });
  }

  /** Bytes read from the socket so far (frames in progress included). */
  get bytesIn(): number {
    return this.#bytesIn;
  }

  /**
   * Requests received and not answered yet, or reading paused behind replies the peer has not
   * taken (requests it sent may still wait unread in the socket: a drain must not call that quiet).
   */
  get busy(): boolean {
    return this.queued > 0 || this.backlogged;
  }

  /** Nothing of this connection's is left to do or to send (or it can no longer send). */
  get settled(): boolean {
    return this.ws.readyState !== this.ws.OPEN || (!this.busy && this.ws.bufferedAmount === 0);
  }

  /** Resolves when every request received so far has been answered. */
  answered(): Promise<void> {
    return this.replies;
  }

  /** Tells a greeted coordinator the experts this worker holds now. */
  holdings(experts: readonly number[]): void {
    if (!this.greeted || this.ws.readyState !== this.ws.OPEN) return;
    this.sendFrame(encodeHoldings({ experts: [...experts] }));
  }

  /** Sends the drain notice (once), after the welcome if the handshake has not happened yet. */
  drain(reason: string): void {
    if (this.drainSent || !this.greeted || this.ws.readyState !== this.ws.OPEN) return;
    this.drainSent = true;
    this.sendFrame(encodeDrain({ reason }));
  }

  private get limits() {
    const m = this.server.options.compute.model;
    return {
      maxFrameBytes: this.server.options.maxFrameBytes,
      hidden: m.hidden,
      numExperts: m.numExperts,
      numLayers: m.numLayers,
    };
  }

  private onMessage(data: RawData, isBinary: boolean): void {
    const bytes = frameBytes(data);
    this.server.metrics.bytes('in', bytes.byteLength);
    if (this.stage.kind === 'refused') return;
    if (!isBinary && !this.greeted) {
      this.refuse('bad-hello', 'text frames are not part of the kmoe protocol; send a binary hello');
      return;
    }
    if (!isBinary) {
      this.enqueue(async () =>
        this.errorReply(
          null,
          'bad-frame',
          'text frames are not part of the kmoe protocol; send binary frames',
        ),
      );
      return;
    }
    if (!this.greeted) {
      this.handshake(bytes);
      return;
    }
    this.enqueue(() => this.handle(bytes));
  }

  /**
   * Refuses the peer: logged with its address (never a secret), a refuse message, close 1008.
   * `logged`: what this worker's log says instead of `message`, when the peer (not authenticated
   * yet) is to learn less than the operator.
   */
  private refuse(reason: RefuseReason, message: string, logged = message): void {
    if (this.stage.kind === 'refused' || this.stage.kind === 'greeted') return;
    this.stage = { kind: 'refused' };
    clearTimeout(this.handshakeTimer);
    this.server.metrics.refused(reason);
    this.server.options.log.warn({ reason, peer: this.peer }, `refused coordinator ${this.peer}: ${logged}`);
    this.sendFrame(encodeRefuse({ version: PROTOCOL_VERSION, reason, message }));
    this.ws.close(1008, reason);
    // A refused peer gets a moment to read why, not ws's 30 s wait for its close frame: sockets of
    // refused peers must not pile up against --max-connections.
    setTimeout(() => this.ws.terminate(), REFUSED_LINGER_MS).unref();
  }

  private handshake(bytes: Uint8Array): void {
    const { secret } = this.server.options;
    // Only a hello or a proof is read before the handshake completes: any other message is refused
    // by its type alone, so an unauthenticated peer learns nothing of the model from the validation
    // of, say, a dispatch's tensor sizes.
    const expected = this.stage.kind === 'proof' ? 'proof' : 'hello';
    let type: unknown;
    try {
      type = decodeFrame(bytes, HANDSHAKE_MAX_BYTES).header['type'];
    } catch {
      type = undefined;
    }
    if (type !== expected) {
      this.refuse(
        expected === 'proof' ? 'auth' : 'bad-hello',
        expected === 'proof'
          ? 'expected the proof of the cluster token'
          : 'first message must be a hello (a binary kmoe frame)',
      );
      return;
    }
    let msg: ReturnType<typeof decodeMessage>;
    try {
      msg = decodeMessage(bytes, this.limits);
    } catch (err) {
      const what = this.stage.kind === 'proof' ? 'proof' : 'hello';
      this.refuse(
        this.stage.kind === 'proof' ? 'auth' : 'bad-hello',
        `${what === 'hello' ? 'first message' : 'second message'} is not a valid ${what}: ${printable((err as Error).message, 500)}`,
      );
      return;
    }
    if (this.stage.kind === 'proof') {
      const challenged = this.stage;
      if (msg.type !== 'proof') {
        this.refuse('auth', `expected the proof of the cluster token, got a ${msg.type}`);
        return;
      }
      const { coordinatorNonce, workerNonce, url } = challenged;
      if (!secret!.verify('coordinator', coordinatorNonce, workerNonce, url, msg.proof)) {
        // A hello whose URL was changed on the way also ends here: the coordinator proved on its own.
        const altered = this.server.boundUrl === undefined ? '' : `, or its hello was altered on the way`;
        this.refuse(
          'auth',
          `wrong proof of the cluster token: the coordinator and this worker have different tokens (${TOKEN_HINT})${altered}`,
        );
        return;
      }
      // Bound: `url` is the registered one (checked at the hello), and the proof says so.
      const bound = this.server.boundUrl !== undefined;
      const proof = secret!.proof(bound ? 'bound worker' : 'worker', coordinatorNonce, workerNonce, url);
      this.welcome(challenged.hello, url, { proof, bound });
      return;
    }
    if (msg.type !== 'hello') {
      this.refuse('bad-hello', `first message must be a hello, got a ${msg.type}`);
      return;
    }
    if (msg.version !== PROTOCOL_VERSION) {
      this.refuse(
        'version',
        `protocol version ${msg.version} does not match this worker's version ${PROTOCOL_VERSION}; run coordinator and workers from the same kmoe release`,
      );
      return;
    }
    const urlProblem = msg.url === undefined ? undefined : workerUrlProblem(msg.url);
    if (urlProblem !== undefined) {
      this.refuse('bad-hello', `the hello's URL ${printable(msg.url!, 200)} is no worker URL: ${urlProblem}`);
      return;
    }
    const dialled = msg.url === undefined ? undefined : canonicalWorkerUrl(msg.url);
    if (secret !== undefined && msg.nonce === undefined) {
      this.refuse(
        'auth',
        `this worker requires the cluster token and the coordinator has none: start the coordinator with the cluster's token (${TOKEN_HINT})`,
      );
      return;
    }
    if (secret === undefined && msg.nonce !== undefined) {
      this.refuse(
        'auth',
        `the coordinator authenticates with a cluster token and this worker has none: start the worker with the same token (${TOKEN_HINT})`,
      );
      return;
    }
    if (secret === undefined) {
      this.welcome(msg, dialled, undefined);
      return;
    }
    if (dialled === undefined) {
      this.refuse(
        'bad-hello',
        'the hello names no URL: the proofs of the cluster token cover the URL dialled',
      );
      return;
    }
    // Only where the proofs mean something: without a secret anyone may relay, or pose as a worker.
    const bound = this.server.boundUrl;
    if (bound !== undefined && dialled !== bound) {
      // The peer has proved nothing yet: it is not told the registered URL (it knows the one it
      // dialled). Each URL is quoted once and bounded, as a hello's URL may be 2,048 characters.
      this.refuse(
        'url',
        'this worker accepts only the URL it registered, and the coordinator dialled another: a relay, or another name of this worker',
        `the coordinator dialled ${printable(dialled, URL_QUOTED_CHARS)}, but this worker is registered as ${printable(bound, URL_QUOTED_CHARS)}: it was reached through a relay or by another name (coordinators must dial the registered URL; give this worker --advertise-url if they reach it by another)`,
      );
      return;
    }
    const workerNonce = newNonce();
    this.stage = { kind: 'proof', hello: msg, coordinatorNonce: msg.nonce!, workerNonce, url: dialled };
    this.sendFrame(encodeChallenge({ version: PROTOCOL_VERSION, nonce: workerNonce }));
  }

  /**
   * The last step of a handshake: the model must match; `dialled` is the URL the coordinator says it
   * dialled (canonical), if it says; `auth` the worker's proof and whether it proved as bound to
   * `dialled`, when authenticated.
   */
  private welcome(
    hello: Hello,
    dialled: string | undefined,
    auth: { readonly proof: string; readonly bound: boolean } | undefined,
  ): void {
    const { compute, log } = this.server.options;
    const m = compute.model;
    if (hello.fingerprint !== m.fingerprint) {
      this.refuse(
        'model',
        `model fingerprint ${printable(hello.fingerprint, 16)} differs from this worker's ${m.fingerprint.slice(0, 16)}…; start the worker with the coordinator's --model`,
      );
      return;
    }
    this.stage = { kind: 'greeted' };
    clearTimeout(this.handshakeTimer);
    this.server.metrics.coordinators(1);
    log.info(
      {
        peer: this.peer,
        client: printable(hello.client),
        ...(dialled === undefined ? {} : { dialled }),
        authenticated: auth !== undefined,
      },
      'accepted coordinator',
    );
    this.sendFrame(
      encodeWelcome({
        version: PROTOCOL_VERSION,
        fingerprint: m.fingerprint,
        worker: `pid ${process.pid} on ${os.hostname()}`,
        experts: [...this.server.experts],
        numLayers: m.numLayers,
        numExperts: m.numExperts,
        hidden: m.hidden,
        wire: [...WIRE_DTYPES],
        maxFrameBytes: this.server.options.maxFrameBytes,
        ...(auth === undefined ? {} : { proof: auth.proof }),
        ...(auth?.bound === true ? { bound: true as const } : {}),
      }),
    );
    // Greeted after the drain began (upgraded before it): told at once, as the others were.
    const draining = this.server.draining;
    if (draining !== undefined) this.drain(draining);
  }

  /** Replies leave in arrival order, whatever the order their work finishes in. */
  private enqueue(work: () => Promise<Uint8Array>): void {
    // A failure here is a bug in this worker, not in the frame; the peer still gets an answer.
    const reply = work().catch((err: unknown) => {
      this.server.options.log.error({ err }, `internal error on a frame from ${this.peer}`);
      return this.errorReply(null, 'compute-failed', `internal worker error: ${(err as Error).message}`);
    });
    this.queued++;
    this.flow();
    this.replies = this.replies.then(async () => {
      const bytes = await reply;
      this.queued--;
      this.send(bytes);
    });
  }

  private send(bytes: Uint8Array): void {
    if (this.ws.readyState !== this.ws.OPEN) {
      this.flow();
      return;
    }
    this.sendFrame(bytes, () => {
      if (this.backlogged && this.ws.bufferedAmount <= HIGH_WATER_BYTES) {
        this.backlogged = false;
        this.flow();
      }
    });
    if (this.ws.bufferedAmount > HIGH_WATER_BYTES) this.backlogged = true;
    this.flow();
  }

  private sendFrame(bytes: Uint8Array, sent?: () => void): void {
    this.server.metrics.bytes('out', bytes.byteLength);
    this.ws.send(bytes, { binary: true }, sent);
  }

  private errorReply(id: number | null, code: ErrorReplyCode, message: string): Uint8Array {
    this.server.metrics.failed(code);
    return encodeErrorReply({ id, code, message });
  }

  /** Stops reading the socket while too much work is queued or replies are not being taken. */
  private flow(): void {
    if (this.queued >= MAX_QUEUED || this.backlogged) this.ws.pause();
    else this.ws.resume();
  }

  private async handle(bytes: Uint8Array): Promise<Uint8Array> {
    const received = performance.now();
    const { compute, log, maxFrameBytes } = this.server.options;
    let msg: ReturnType<typeof decodeMessage>;
    try {
      msg = decodeMessage(bytes, this.limits);
    } catch (err) {
      if (!(err instanceof ProtocolError)) throw err;
      const id = requestIdOf(bytes, maxFrameBytes);
      // Messages may quote the peer's own header values: one bounded, escaped line.
      const message = printable(err.message, 500);
      log.warn(`bad frame from ${this.peer}${id === null ? '' : ` (request ${id})`}: ${message}`);
      return this.errorReply(id, err.code, message);
    }
    if (msg.type !== 'dispatch') {
      const id = 'id' in msg ? msg.id : null;
      return this.errorReply(
        id,
        'unexpected-message',
        `a worker accepts dispatch requests only, got a ${msg.type}`,
      );
    }
    const bad = firstNonFinite(msg.hidden, msg.wire);
    if (bad !== -1) {
      const hidden = compute.model.hidden;
      return this.errorReply(
        msg.id,
        'bad-value',
        `hidden state of token ${Math.floor(bad / hidden)} holds a non-finite value (NaN or infinity) at element ${bad % hidden}; experts only take finite inputs`,
      );
    }
    if (!this.server.hasExperts(msg.layer)) {
      return this.errorReply(
        msg.id,
        'bad-value',
        `layer ${msg.layer} is a dense layer of this model: it has no experts (MoE layers: ${formatExpertSet(compute.model.moeLayers)})`,
      );
    }
    const missing = this.notHeld(msg);
    if (missing.length > 0) {
      return this.errorReply(
        msg.id,
        'not-held',
        `experts ${formatExpertSet(missing)} are not held by this worker (it holds ${formatExpertSet(this.server.experts)})`,
      );
    }
    // The frame's memory moves to a compute thread: read what the metrics need first.
    const shape = dispatchShape(msg, compute.model.numExperts);
    try {
      const frame = compute.placement === 'thread' ? owned(bytes) : bytes;
      const reply = await compute.dispatch({ frame, maxFrameBytes });
      if ('skipped' in reply)
        return this.errorReply(msg.id, 'compute-failed', 'not computed: worker shutting down');
      if ('nonFinite' in reply) {
        // Finite inputs can still overflow (a hidden state of 3e38); NaN is never sent back.
        const hidden = compute.model.hidden;
        return this.errorReply(
          msg.id,
          'bad-value',
          `non-finite result: the experts' output of token ${Math.floor(reply.nonFinite / hidden)} overflowed at element ${reply.nonFinite % hidden} (inputs too large for ${msg.wire})`,
        );
      }
      this.server.metrics.served(shape, (performance.now() - received) / 1000);
      return reply.result;
    } catch (err) {
      log.error(`request ${msg.id} layer ${msg.layer} failed: ${(err as Error).message}`);
      return this.errorReply(msg.id, 'compute-failed', (err as Error).message);
    }
  }

  private notHeld(msg: DispatchRequest): number[] {
    const missing = new Set<number>();
    for (const e of msg.experts) if (!this.server.holds(e)) missing.add(e);
    return [...missing];
  }
}

/**
 * The frame in a buffer of its own, which moving it to the compute thread requires. A frame that
 * spanned several socket reads already is (ws joins them into a fresh buffer); a small one that
 * shares its memory with other socket data is copied.
 */
function owned(bytes: Uint8Array): Uint8Array {
  return bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
    ? bytes
    : new Uint8Array(bytes);
}
