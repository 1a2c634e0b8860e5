// The coordinator's connection to one worker: WebSocket client, handshake (with the cluster
// secret's challenge-response over the URL dialled when the coordinator has one,
// shared/protocol/auth.ts), and request/reply matching by id with a timeout per request,
// backpressure on the send side and a clear error naming the worker when it refuses, fails, times
// out or disconnects. Owns its in-flight requests.
// A drain notice from the worker makes it unusable for new requests while the sent ones complete.

import type { Socket } from 'node:net';
import WebSocket from 'ws';
import { type ClusterSecret, newNonce } from '../../shared/protocol/auth.js';
import { type DecodeLimits, decodeMessage, encodeHello, encodeProof } from '../../shared/protocol/codec.js';
import { ProtocolError } from '../../shared/protocol/errors.js';
import { expertSetOf, formatExpertSet } from '../../shared/protocol/expert-set.js';
import { type FrameAllocator, frameBytes } from '../../shared/protocol/frame.js';
import {
  CLOSE_HANDSHAKE_MS,
  type DispatchResult,
  PROTOCOL_VERSION,
  type RefuseReason,
  type Welcome,
} from '../../shared/protocol/messages.js';
import { firstNonFinite, type WireDType } from '../../shared/protocol/wire-dtype.js';
import { canonicalWorkerUrl, workerUrlProblem } from '../../shared/protocol/worker-url.js';
import { listed } from '../../shared/text/listed.js';
import { oneLine } from '../../shared/text/printable.js';
import { HandshakeError, type WorkerFailure, WorkerRequestError } from './errors.js';
import { InboundLimit } from './inbound-limit.js';

export interface ConnectOptions {
  readonly fingerprint: string;
  readonly wire: WireDType;
  readonly model: Omit<DecodeLimits, 'maxFrameBytes'>;
  readonly handshakeTimeoutMs: number;
  /** Who connects, for the worker's log. */
  readonly client: string;
  /** The cluster secret: the worker must prove it too. None: only workers without one accept. */
  readonly secret?: ClusterSecret;
  /**
   * The URL came from a registry record: with a secret, the worker must prove it is registered
   * under it (welcome.bound), else the handshake fails ('url'). A worker outside the registry
   * proves on any URL it is reached by, so a record of a relay to it would pass the proof alone.
   */
  readonly requireBound?: boolean;
  /**
   * Called once when an established connection drops (not when this side closes it), with the
   * connection, so that an owner that has replaced it can tell a late report from a current one.
   */
  readonly onDown?: (reason: string, from: WorkerConnection) => void;
  /** Called once when the worker announces it drains (shuts down after answering what it has). */
  readonly onDrain?: (reason: string) => void;
  /** Called when the worker announces another set of experts (it loaded or unloaded some). */
  readonly onHoldings?: (experts: readonly number[]) => void;
}

const TOKEN_SOURCES = 'KMOE_CLUSTER_TOKEN or --cluster-token-file';

/** What to do about each refusal of a worker. */
const REFUSE_HINTS: Record<RefuseReason, string> = {
  version: 'run coordinator and workers from the same kmoe release',
  model: 'start coordinator and workers with the same --model',
  'bad-hello': 'run coordinator and workers from the same kmoe release',
  auth: `give coordinator and workers the same cluster token (${TOKEN_SOURCES})`,
  url: 'the worker is registered in a registry under another URL and accepts that one only (its log names both): dial it by that URL, or give the worker the --advertise-url coordinators reach it by; a registry record of this URL that leads to it is a relay or another name: remove it',
};

/** Unsent request bytes above which the next send waits for the socket to drain. */
const HIGH_WATER_BYTES = 16 * 1024 * 1024;
/**
 * The largest frame ws will buffer from a worker; InboundLimit cuts off any frame larger than the
 * largest request sent to it long before, and the decoder then applies the worker's own limit.
 */
const MAX_PAYLOAD_BYTES = 2 ** 31;

interface Pending {
  readonly layer: number;
  readonly pairs: number;
  readonly resolve: (r: DispatchResult) => void;
  readonly reject: (e: WorkerRequestError) => void;
  readonly timer: NodeJS.Timeout;
}

export class WorkerConnection {
  private readonly pending = new Map<number, Pending>();
  private down: string | undefined;
  private drained: Promise<void> = Promise.resolve();
  /**
   * One request buffer reused from layer to layer: a fresh megabyte per worker per layer made the
   * coordinator spend more time in GC than in dispatch. It is lent to one request at a time and
   * given up to ws (never reused) if that request does not complete normally.
   */
  private spare: ArrayBuffer | undefined;
  private spareLent = false;
  private closing = false;
  private reportedDown = false;
  /** Set by the worker's drain notice: answer what was sent, take nothing new. */
  private drainReason: string | undefined;
  private pendingPairs = 0;
  private idleWaiters: (() => void)[] = [];
  private held: readonly number[];
  /**
   * Taken by the caller of `connect`: from then on drops, drain and holdings notices are reported.
   * Before, they are only kept (the welcome's read), and the caller reads the state they left.
   */
  private handedOver = false;

  private constructor(
    readonly url: string,
    private readonly ws: WebSocket,
    readonly welcome: Welcome,
    private readonly limits: DecodeLimits,
    private readonly inbound: InboundLimit,
    private readonly onDown: ((reason: string, from: WorkerConnection) => void) | undefined,
    private readonly onDrain: ((reason: string) => void) | undefined,
    private readonly onHoldings: ((experts: readonly number[]) => void) | undefined,
  ) {
    this.held = welcome.experts;
    inbound.onExceed((bytes, limit) =>
      this.cutOff(
        `sent a frame of over ${bytes} bytes, larger than any reply to what this coordinator sent it (at most ${limit} bytes)`,
      ),
    );
    ws.on('message', (data) => {
      const bytes = frameBytes(data);
      inbound.message(bytes.byteLength);
      this.onMessage(bytes);
    });
    ws.on('ping', (data) => inbound.message(data.byteLength));
    ws.on('pong', (data) => inbound.message(data.byteLength));
    ws.on('close', (code, reason) => {
      // The worker chose the reason (up to 123 bytes): quoted like any text it sends.
      const why = reason.length > 0 ? `: ${oneLine(reason.toString(), 123)}` : '';
      this.failAll('disconnected', `closed the connection (code ${code}${why})`);
    });
    // ws closes the socket after an error, but only once the peer's TCP ends or the close handshake
    // bound runs out: until then pending requests would wait. So an error is a drop now.
    ws.on('error', (err) => this.drop('disconnected', `connection error: ${oneLine(err.message, 200)}`));
  }

  /** Connects and completes the handshake, or fails with a HandshakeError naming the worker. */
  static connect(url: string, opts: ConnectOptions): Promise<WorkerConnection> {
    // ws throws at once on a URL it refuses; a caller waiting for the outcome (a reconnect, a join
    // from the registry) must get a rejection like any other failed connection, never a throw.
    const problem = workerUrlProblem(url);
    if (problem !== undefined)
      return Promise.reject(
        new HandshakeError(url, `cannot connect: not a worker URL (${problem})`, {
          hint: "a worker URL is ws://HOST:PORT or wss://HOST:PORT (check --workers, or the worker's --advertise-url)",
        }),
      );
    // ws 8.23 reads closeTimeout (package.json asks for it); @types/ws 8.18 does not list it.
    const wsOptions: WebSocket.ClientOptions & { closeTimeout: number } = {
      closeTimeout: CLOSE_HANDSHAKE_MS,
      perMessageDeflate: false,
      maxPayload: MAX_PAYLOAD_BYTES,
      // Client masking exists so that script in a browser cannot craft bytes a proxy would misread
      // (RFC 6455 section 10.3). The coordinator is not a browser and writes every byte itself; a
      // zero key lets ws skip XOR-ing every request byte on both ends (measured: 6% of coordinator
      // CPU time in a 2-worker eval).
      generateMask: (mask: Buffer) => mask.fill(0),
    };
    const ws = new WebSocket(url, wsOptions);
    return new Promise<WorkerConnection>((resolve, reject) => {
      let settled = false;
      const inbound = new InboundLimit((bytes, limit) =>
        fail(
          `sent a frame of over ${bytes} bytes during the handshake, where no message exceeds ${limit} bytes`,
          'is a kmoe worker listening there?',
        ),
      );
      const sock = { current: undefined as Socket | undefined };
      ws.once('upgrade', (res) => {
        sock.current = res.socket;
      });
      const fail = (message: string, hint?: string, cause?: unknown, reason?: RefuseReason) => {
        if (settled) return;
        settled = true;
        inbound.stop();
        clearTimeout(timer);
        ws.removeAllListeners();
        ws.on('error', () => {});
        ws.terminate();
        reject(
          new HandshakeError(url, message, {
            ...(hint ? { hint } : {}),
            ...(reason ? { reason } : {}),
            cause,
          }),
        );
      };
      const timer = setTimeout(
        () => fail(`no handshake within ${opts.handshakeTimeoutMs} ms`, 'is a kmoe worker listening there?'),
        opts.handshakeTimeoutMs,
      );
      ws.once('error', (err) =>
        fail(`cannot connect: ${connectErrorText(err)}`, 'start it with kmoe worker, or check the URL', err),
      );
      ws.once('close', (code) => fail(`closed the connection during the handshake (code ${code})`));
      const coordinatorNonce = opts.secret === undefined ? undefined : newNonce();
      // What both proofs cover: a relay at this URL cannot pass on a worker's proof for its own.
      const dialled = canonicalWorkerUrl(url);
      let workerNonce: string | undefined;
      ws.once('open', () => {
        // ws has added its reader: from here every byte the peer sends is counted.
        if (sock.current) inbound.watch(sock.current);
        ws.send(
          encodeHello({
            version: PROTOCOL_VERSION,
            fingerprint: opts.fingerprint,
            client: opts.client,
            url: dialled,
            ...(coordinatorNonce === undefined ? {} : { nonce: coordinatorNonce }),
          }),
        );
      });
      ws.on('ping', (data) => inbound.message(data.byteLength));
      ws.on('pong', (data) => inbound.message(data.byteLength));
      ws.on('message', (data) => {
        const bytes = frameBytes(data);
        inbound.message(bytes.byteLength);
        let msg: ReturnType<typeof decodeMessage>;
        try {
          msg = decodeMessage(bytes, { ...opts.model, maxFrameBytes: 1024 * 1024 });
        } catch (err) {
          fail(`answered the hello with an invalid message: ${(err as Error).message}`, undefined, err);
          return;
        }
        if (msg.type === 'refuse') {
          fail(
            `refused this coordinator (${msg.reason}): ${oneLine(msg.message)}`,
            REFUSE_HINTS[msg.reason],
            undefined,
            msg.reason,
          );
          return;
        }
        if (msg.type === 'challenge') {
          if (opts.secret === undefined || coordinatorNonce === undefined || workerNonce !== undefined) {
            fail(
              `sent an unexpected cluster-token challenge`,
              'the worker does not follow the kmoe handshake',
            );
            return;
          }
          workerNonce = msg.nonce;
          ws.send(
            encodeProof({ proof: opts.secret.proof('coordinator', coordinatorNonce, workerNonce, dialled) }),
          );
          return;
        }
        if (msg.type !== 'welcome') {
          fail(`answered the hello with a ${msg.type} message`);
          return;
        }
        if (opts.secret !== undefined) {
          // Checked before anything the welcome says is believed: the worker may be an impostor.
          if (workerNonce === undefined || msg.proof === undefined) {
            fail(
              'welcomed this coordinator without proving the cluster token',
              `start the worker with the cluster's token (${TOKEN_SOURCES})`,
              undefined,
              'auth',
            );
            return;
          }
          const role = msg.bound === true ? 'bound worker' : 'worker';
          if (!opts.secret.verify(role, coordinatorNonce!, workerNonce, dialled, msg.proof)) {
            fail(
              `sent a wrong proof of the cluster token: the worker's token differs from this coordinator's, or it proved for another URL than ${dialled}`,
              `give coordinator and workers the same token (${TOKEN_SOURCES})`,
              undefined,
              'auth',
            );
            return;
          }
          if (opts.requireBound === true && msg.bound !== true) {
            fail(
              `proved the cluster token for ${dialled}, but the worker is not registered under that URL: a worker outside the registry (a fixed --workers list, a local cluster) proves on any URL it is reached by, so this registry record may be a relay to it`,
              'a coordinator that takes its workers from the registry uses only workers registered under the URL it dials: remove the record of this URL, or start that worker with --redis (and --advertise-url set to this URL if that is how coordinators reach it)',
              undefined,
              'url',
            );
            return;
          }
        }
        const problem = welcomeProblem(msg, opts);
        if (problem) {
          fail(problem, 'start coordinator and workers with the same --model and kmoe release');
          return;
        }
        settled = true;
        clearTimeout(timer);
        ws.removeAllListeners();
        const conn = new WorkerConnection(
          url,
          ws,
          // The experts as a set, like a holdings notice's: a welcome listing [4, 4] would make
          // the worker two of expert 4's holders in the placement.
          { ...msg, experts: expertSetOf(msg.experts) },
          { ...opts.model, maxFrameBytes: msg.maxFrameBytes },
          inbound,
          opts.onDown,
          opts.onDrain,
          opts.onHoldings,
        );
        // Frames that came in the welcome's socket read are read before this runs. The caller
        // takes the connection with what they changed (`experts`: a holdings notice); one they
        // ended (a bad notice, a frame over the limit) fails the connect, so no caller takes a
        // dead connection while its drop went to nobody (a reconnect was then never scheduled).
        queueMicrotask(() => {
          if (conn.alive) {
            conn.handedOver = true;
            resolve(conn);
            return;
          }
          const why = conn.down ?? 'it closed the connection';
          conn.drop('disconnected', why);
          reject(new HandshakeError(url, `dropped as the handshake ended: ${why}`));
        });
      });
    });
  }

  get alive(): boolean {
    return this.down === undefined && this.ws.readyState === WebSocket.OPEN;
  }

  /** Connected and not draining: may be given new requests. */
  get usable(): boolean {
    return this.alive && this.drainReason === undefined;
  }

  get draining(): boolean {
    return this.drainReason !== undefined;
  }

  /** Token-expert pairs sent and not answered yet. */
  get inflightPairs(): number {
    return this.pendingPairs;
  }

  /** Resolves when no request is pending (at once if none is). */
  idle(): Promise<void> {
    if (this.pending.size === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * Declares the worker failed without waiting for the socket: it stalled (`timeout`), or the
   * registry says it is gone (`disconnected`). Pending requests fail as `reason` (and go to
   * replicas), `onDown` is called, and the socket is torn down.
   */
  abandon(why: string, reason: 'timeout' | 'disconnected' = 'timeout'): void {
    this.drop(reason, why);
  }

  /** Fails the pending requests as `reason` and tears the socket down at once (no close handshake). */
  private drop(reason: WorkerFailure, why: string): void {
    if (this.down !== undefined) return;
    this.down = why;
    this.inbound.stop();
    this.failAll(reason, why);
    this.ws.terminate();
  }

  /** The worker sent what no reply can be (a frame beyond the limit): nothing more of it is read. */
  private cutOff(why: string): void {
    this.drop('bad-reply', why);
  }

  /** The experts the worker holds: the welcome's, then its latest holdings notice. */
  get experts(): readonly number[] {
    return this.held;
  }

  /** The largest request frame the worker accepts (its welcome's). */
  get maxFrameBytes(): number {
    return this.welcome.maxFrameBytes;
  }

  /** "ws://host:port (experts 0-3)" for messages. */
  get label(): string {
    return `${this.url} (experts ${formatExpertSet(this.held)})`;
  }

  /** Allocator for the next request frame: the reusable buffer when it is free, else fresh memory. */
  readonly frameAllocator: FrameAllocator = (n) => {
    if (this.spareLent) return new Uint8Array(n);
    if (this.spare === undefined || this.spare.byteLength < n)
      this.spare = new ArrayBuffer(Math.ceil(n * 1.25));
    this.spareLent = true;
    return new Uint8Array(this.spare, 0, n).fill(0);
  };

  /** Sends a dispatch frame and resolves with the worker's result, or rejects naming the worker. */
  async request(
    id: number,
    layer: number,
    frame: Uint8Array,
    timeoutMs: number,
    pairs = 0,
  ): Promise<DispatchResult> {
    const lent = frame.buffer === this.spare;
    try {
      const result = await this.send(id, layer, frame, timeoutMs, pairs);
      if (lent) this.spareLent = false;
      return result;
    } catch (err) {
      if (lent) {
        // ws may still hold the frame in its send queue.
        this.spare = undefined;
        this.spareLent = false;
      }
      throw err;
    }
  }

  private async send(
    id: number,
    layer: number,
    frame: Uint8Array,
    timeoutMs: number,
    pairs: number,
  ): Promise<DispatchResult> {
    if (!this.alive) throw this.error('disconnected', layer, `is not connected (${this.down ?? 'closed'})`);
    if (this.drainReason !== undefined)
      throw this.error('draining', layer, `is draining (${this.drainReason}) and takes no new requests`);
    if (frame.byteLength > this.welcome.maxFrameBytes) {
      throw this.error(
        'oversize',
        layer,
        `accepts frames up to ${this.welcome.maxFrameBytes} bytes, this dispatch needs ${frame.byteLength}`,
        'use smaller batches, or start the worker with a larger --max-frame-mb',
      );
    }
    // Its reply is no larger than this frame: from now on the worker may send frames that large.
    this.inbound.expect(frame.byteLength);
    const deadline = performance.now() + timeoutMs;
    if (this.ws.bufferedAmount > HIGH_WATER_BYTES) {
      await withTimeout(this.drained, timeoutMs, () =>
        this.error('timeout', layer, `did not take the previous requests within ${timeoutMs} ms`),
      );
      if (!this.alive) throw this.error('disconnected', layer, `disconnected (${this.down ?? 'closed'})`);
    }
    return new Promise<DispatchResult>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          this.settle(
            id,
            undefined,
            this.error('timeout', layer, `sent no result within ${timeoutMs} ms (request ${id})`),
          ),
        Math.max(0, deadline - performance.now()),
      );
      this.pending.set(id, { layer, pairs, resolve, reject, timer });
      this.pendingPairs += pairs;
      this.drained = new Promise<void>((done) => {
        this.ws.send(frame, { binary: true }, (err) => {
          done();
          if (err)
            this.settle(id, undefined, this.error('disconnected', layer, `send failed: ${err.message}`));
        });
      });
    });
  }

  /** Gives up on a request (a sibling failed); a late result for it is dropped. */
  cancel(id: number): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.settle(id, undefined, this.error('cancelled', p.layer, `request ${id} cancelled`));
  }

  async close(): Promise<void> {
    this.closing = true;
    this.failAll('cancelled', 'connection closed by the coordinator');
    if (this.ws.readyState === WebSocket.CLOSED) return;
    await new Promise<void>((resolve) => {
      this.ws.once('close', () => resolve());
      this.ws.close(1000, 'coordinator closing');
      // A peer that never answers the close handshake must not hold the coordinator up.
      setTimeout(() => {
        this.ws.terminate();
        resolve();
      }, CLOSE_HANDSHAKE_MS).unref();
    });
  }

  private onMessage(bytes: Uint8Array): void {
    let msg: ReturnType<typeof decodeMessage>;
    try {
      msg = decodeMessage(bytes, this.limits);
    } catch (err) {
      // A reply that cannot be read cannot be matched to its request: fail them all.
      const what = err instanceof ProtocolError ? err.message : String(err);
      this.failAllPending('bad-reply', `sent an invalid frame: ${what}`);
      return;
    }
    if (msg.type === 'result') {
      // A worker never sends NaN or infinity (it answers bad-value instead): one that does is broken
      // or hostile, and its values would poison the residual stream (a NaN router score, a NaN
      // perplexity). Refused here so the pairs go to a replica, with the worker named.
      const bad = firstNonFinite(msg.partial, msg.wire);
      if (bad === -1) this.settle(msg.id, msg);
      else
        this.failRequest(
          msg.id,
          'bad-reply',
          `sent a result holding a non-finite value (NaN or infinity) for token ${Math.floor(bad / this.limits.hidden)} at element ${bad % this.limits.hidden} (request ${msg.id})`,
        );
    } else if (msg.type === 'drain') {
      if (this.drainReason === undefined) {
        this.drainReason = oneLine(msg.reason, 200);
        if (this.handedOver) this.onDrain?.(this.drainReason);
      }
    } else if (msg.type === 'holdings') {
      // A notice of the set the worker already holds changes nothing; passing it on would rebuild
      // the placement once per message for a worker that repeats it in a loop. A set, so compared
      // as one: the same experts in another order (or repeated) are the same holdings, and the
      // set is passed on sorted and without repeats.
      const experts = expertSetOf(msg.experts);
      // Checked here, not by whoever hears of it: the set is kept (`experts`) before anyone is
      // told, and a notice can arrive before anyone listens (in the welcome's read).
      const bad = experts.find((e) => e >= this.limits.numExperts);
      if (bad !== undefined) {
        this.cutOff(`announced expert ${bad}, but the model has ${this.limits.numExperts}`);
        return;
      }
      const held = this.held;
      if (experts.length === held.length && experts.every((e, i) => e === held[i])) return;
      this.held = experts;
      if (this.handedOver) this.onHoldings?.(experts);
    } else if (msg.type === 'error') {
      const text = `replied with an error (${msg.code}): ${oneLine(msg.message)}`;
      if (msg.id === null) this.failAllPending('error-reply', text);
      else this.failRequest(msg.id, msg.code === 'not-held' ? 'not-held' : 'error-reply', text);
    } else {
      this.failAllPending('bad-reply', `sent an unexpected ${msg.type} message`);
    }
  }

  /** Fails request `id` as `reason`, naming its layer, if it is still in flight. */
  private failRequest(id: number, reason: WorkerFailure, why: string): void {
    const p = this.pending.get(id);
    if (p) this.settle(id, undefined, this.error(reason, p.layer, why));
  }

  private settle(id: number, result: DispatchResult | undefined, error?: WorkerRequestError): void {
    const p = this.pending.get(id);
    if (!p) return; // late reply to a request that timed out or was cancelled
    this.pending.delete(id);
    this.pendingPairs -= p.pairs;
    clearTimeout(p.timer);
    if (error) p.reject(error);
    else p.resolve(result!);
    if (this.pending.size === 0) for (const wake of this.idleWaiters.splice(0)) wake();
  }

  private failAll(reason: WorkerFailure, why: string): void {
    this.down ??= why;
    this.failAllPending(reason, why);
    if (!this.closing && this.handedOver && !this.reportedDown) {
      this.reportedDown = true;
      this.onDown?.(this.down === why ? why : `${why}: ${this.down}`, this);
    }
  }

  private failAllPending(reason: WorkerFailure, why: string): void {
    for (const [id, p] of [...this.pending]) this.settle(id, undefined, this.error(reason, p.layer, why));
  }

  private error(reason: WorkerFailure, layer: number, what: string, hint?: string): WorkerRequestError {
    return new WorkerRequestError(
      this.url,
      reason,
      `worker ${this.label} ${what} (layer ${layer} dispatch)`,
      {
        hint:
          hint ??
          (reason === 'timeout' || reason === 'disconnected'
            ? 'check the worker process and its log; the coordinator reconnects to it by itself'
            : 'see the worker log for details'),
      },
    );
  }
}

function welcomeProblem(w: Welcome, opts: ConnectOptions): string | undefined {
  if (w.version !== PROTOCOL_VERSION)
    return `speaks protocol version ${w.version}, this coordinator ${PROTOCOL_VERSION}`;
  if (w.fingerprint !== opts.fingerprint)
    return `serves model ${w.fingerprint.slice(0, 16)}…, this coordinator runs ${opts.fingerprint.slice(0, 16)}…`;
  const m = opts.model;
  if (w.numLayers !== m.numLayers || w.numExperts !== m.numExperts || w.hidden !== m.hidden)
    return `reports ${w.numLayers} layers, ${w.numExperts} experts, hidden ${w.hidden}; the model has ${m.numLayers}, ${m.numExperts}, ${m.hidden}`;
  if (!w.wire.includes(opts.wire))
    return `does not accept ${opts.wire} on the wire (accepts ${w.wire.join(', ')})`;
  return undefined;
}

function withTimeout<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(onTimeout()), ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e);
      },
    );
  });
}

/**
 * A socket error's words. A name with several addresses, each tried in turn, fails with an
 * AggregateError whose own message is empty: its addresses' errors say what happened.
 */
export function connectErrorText(err: Error): string {
  if (err.message !== '' || !(err instanceof AggregateError)) return err.message;
  const each = (err.errors as unknown[]).map((e) => (e instanceof Error ? e.message : String(e)));
  return listed([...new Set(each)], 4, (m) => m) || 'no address answered';
}
