// ExpertBackend whose experts live in worker processes: per MoE layer it assigns the batch's
// (token, expert, weight) triples to live workers (balance.ts), sends each worker one frame with the
// distinct tokens it needs, awaits every reply (with a timeout) and adds the partial sums into the
// residual, reporting what each message moved. A worker that fails, disconnects or stalls during a
// layer has its groups re-sent to live replicas; only experts no live worker holds fail the layer.
// The set of workers changes at runtime (reconnects with backoff, joins, leaves, drains): each
// change swaps in a new ClusterView, and each layer plans on the view it read when it started.
// Slots of workers that left and have nothing in progress are pruned, so an index names a slot
// only within one view; what outlives a view (stats, failed workers) goes by the slot's id.
// Runs on the engine thread; knows sockets and bytes, never routing policies or accounting
// (dispatch-accounting.ts observes the transfers it reports).

import { normOverflows } from '../../shared/model/norm-overflow.js';
import type { ExpertAssignment } from '../../shared/moe/expert-assignment.js';
import { ClusterSecret } from '../../shared/protocol/auth.js';
import {
  allocDispatchRequest,
  type DispatchShape,
  type DispatchSizeBound,
  dispatchRequestBytes,
  dispatchResultBytes,
  dispatchSizeBound,
} from '../../shared/protocol/codec.js';
import {
  chunkFrameMib,
  FEW_TOKENS_PER_FRAME,
  type FrameShape,
  tokensPerFrame,
} from '../../shared/protocol/frame-capacity.js';
import {
  type DispatchResult,
  type ExpertIndexDType,
  expertIndexDType,
} from '../../shared/protocol/messages.js';
import { fromWire, toWire, type WireDType } from '../../shared/protocol/wire-dtype.js';
import { addLatest } from '../../shared/runtime/latest.js';
import { LineBudget } from '../../shared/runtime/line-budget.js';
import type { F32Tensor } from '../../shared/tensor.js';
import { counted } from '../../shared/text/counted.js';
import type { ExpertBackend, ExpertTransfer, TransferMessage } from '../moe/expert-backend.js';
import {
  assignPairs,
  type BalanceRule,
  batchCosts,
  DEFAULT_BALANCE_RULE,
  type WorkerCosts,
} from './balance.js';
import { cutRows, mergeShares, planDispatch, sliceShare, type WorkerShare } from './dispatch-plan.js';
import { DEFAULT_DISPATCH_TIMEOUT_MS } from './dispatch-timeout.js';
import { ExpertResultOverflowError, PlacementError, WorkerRequestError } from './errors.js';
import { endpointOf, type HandshakeKind, HandshakePlaces, type HandshakeTicket } from './handshake-places.js';
import { LoopLateness } from './loop-lateness.js';
import { PlacementTable, type WorkerExperts } from './placement.js';
import { quickFailure } from './quick-failure.js';
import { withFailedHandshakes } from './start-failures.js';
import { WorkerConnection } from './worker-connection.js';

const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** Reconnect delays: RECONNECT_BASE_MS x 2^attempt, at most RECONNECT_MAX_MS. */
const RECONNECT_BASE_MS = 100;
const RECONNECT_MAX_MS = 5_000;
/** Weight of the newest round trip in a worker's service-time average. */
const EWMA_ALPHA = 0.2;

export interface RemoteExpertsOptions {
  readonly workers: readonly string[];
  readonly wire: WireDType;
  /** Per dispatch request, from send to result; a worker that takes longer is declared stalled. */
  readonly timeoutMs?: number;
  readonly handshakeTimeoutMs?: number;
  /** The cluster token every worker must prove, and this coordinator proves to them; none: no auth. */
  readonly clusterToken?: string;
  /** Which replica computes each pair (default k-aware). */
  readonly balance?: BalanceRule;
  /** Start with the workers that connect if they cover every expert (the others are left out). */
  readonly skipFailed?: boolean;
  /**
   * The URLs (at the start, joined and reconnected) come from registry records (kmoe serve
   * --redis): with a cluster token, each worker must prove it registered the URL dialled.
   */
  readonly fromRegistry?: boolean;
}

/** What the backend must know about the coordinator's model. */
export interface RemoteModel {
  readonly fingerprint: string;
  readonly numLayers: number;
  readonly numExperts: number;
  readonly hidden: number;
  readonly nativeK: number;
}

/** One request of a layer's round: a worker's share, or a piece of it; `id` is relative to the round's first. */
interface RoundRequest {
  readonly share: WorkerShare;
  readonly id: number;
  /** Not sent: the worker cannot take it (a token larger than its frame limit). */
  readonly refusal?: WorkerRequestError;
}

interface RoundRequests {
  readonly requests: readonly RoundRequest[];
  /** Ids the round takes from its first: every worker's, then the pieces'. */
  readonly span: number;
}

/**
 * Pieces of one cut share on the wire at once: one computing, one queued behind it, so the worker
 * never waits for the next and holds no more than two (a whole share in one frame held one), and
 * a piece's timeout runs from when it was sent, behind at most one other.
 */
const PIECES_IN_FLIGHT = 2;

function noop(): void {}

/** A message of a remote layer: `worker` is its index in the view of the round that sent it. */
export interface RemoteMessage extends TransferMessage {
  /** The worker's slot id (`WorkerSlot.id`): the same worker whichever view the round used. */
  readonly slot: number;
}

/** A layer's transfer, with what is needed to cost the same layer sent another way. */
export interface RemoteTransfer extends ExpertTransfer {
  readonly messages: readonly RemoteMessage[];
  /** Request ids of this layer's first round are firstId + worker index (header sizes depend on them). */
  readonly firstId: number;
  /** Which workers were live (usable) when the layer was planned. */
  readonly live: readonly boolean[];
  /** Per worker, the expected cost of the pairs planned for it (pairs x relative service time). */
  readonly costs: Float64Array;
  /** The cost model the layer was planned with (to cost other variants the same way). */
  readonly model: WorkerCosts;
  /** Pairs re-sent to a replica because their worker failed, disconnected or stalled. */
  readonly retriedPairs: number;
  /** Who held which experts when the layer was planned (variants are costed on it, not on a later one). */
  readonly placement: PlacementTable;
  /** Per worker of that placement, the largest request frame it accepts (variants are cut as sends are). */
  readonly frameLimits: readonly number[];
}

/** A worker connection dropped: the cluster's liveness source on the engine thread. */
export interface WorkerDown {
  readonly url: string;
  readonly reason: string;
  /** It had sent a drain notice first: it was shutting down (SIGTERM), not lost. */
  readonly drained: boolean;
}

/** A worker connection was (re)established, or a connected worker changed its experts. */
export interface WorkerUp {
  readonly url: string;
  readonly experts: readonly number[];
  /** connected: a (re)established connection; holdings: its holdings notice (`kmoe cluster rebalance`). */
  readonly why: 'connected' | 'holdings';
}

/**
 * A background attempt to connect a worker (a reconnect, or a join's retry) failed for a reason not
 * reported before: once per reason until the worker connects again, so an operator reads why a
 * registered worker stays out (refused for its URL, another model, a timeout) without a line per
 * backoff step. A join's own first failure goes to its caller instead. A peer can word each
 * failure anew (a refuse's message is its own text), which would be a line per attempt: new
 * reasons are reported MAX_FAILURES_REPORTED at once per worker, then one per
 * FAILURE_REPORT_EVERY_MS, each with the count of new reasons not reported before it.
 */
export interface WorkerUnreachable {
  readonly url: string;
  readonly reason: string;
  /** New reasons of this worker's failures held back since its last report (LineBudget). */
  readonly reasonsNotLogged?: number;
}

/** Tokens-per-frame figures remembered per worker (WorkerSmallFrames says each once). */
const SMALL_FRAMES_FIGURES_KEPT = 4;

/** New failure reasons reported (WorkerUnreachable) at once per worker. */
export const MAX_FAILURES_REPORTED = 3;
/** Then one per this: a 4th real reason is said within 5 minutes (before: never, until it connected). */
export const FAILURE_REPORT_EVERY_MS = 5 * 60_000;

/**
 * A connected worker's frame limit fits fewer than FEW_TOKENS_PER_FRAME tokens of a request on this
 * coordinator's wire, each sent to every expert it holds: a prefill or a batch of many streams is
 * cut into that many requests, one round trip each. Said once per worker and figure.
 */
export interface WorkerSmallFrames {
  readonly url: string;
  readonly maxFrameBytes: number;
  /** Tokens per request at the worst (every expert it holds chosen for each). */
  readonly tokens: number;
  readonly held: number;
  readonly wire: WireDType;
  /** The --max-frame-mb that fits FEW_TOKENS_PER_FRAME tokens on this wire. */
  readonly chunkFrameMib: number;
  /** The --max-frame-mb that fits FEW_TOKENS_PER_FRAME tokens on any wire (fp32's rows are the largest). */
  readonly anyWireFrameMib: number;
}

export interface ClusterEvents {
  readonly down?: (e: WorkerDown) => void;
  readonly up?: (e: WorkerUp) => void;
  readonly unreachable?: (e: WorkerUnreachable) => void;
  readonly smallFrames?: (e: WorkerSmallFrames) => void;
}

/** A worker slot as views show it. */
export interface WorkerSlot {
  /** Never reused: an index names another slot in a later view once slots are pruned, an id never does. */
  readonly id: number;
  readonly url: string;
  /** EWMA of round-trip seconds per pair; undefined until measured. */
  readonly secondsPerPair: number | undefined;
}

/**
 * The cluster as one layer sees it: swapped whole whenever a worker comes, goes or drains. Index w
 * is the same worker in `placement`, `connections` and `slots` of this view, not of another one.
 */
export interface ClusterView {
  readonly placement: PlacementTable;
  /** Per worker slot, its connection if any. */
  readonly connections: readonly (WorkerConnection | undefined)[];
  readonly slots: readonly WorkerSlot[];
}

interface Slot extends WorkerSlot {
  conn: WorkerConnection | undefined;
  /** What it held when last connected. */
  experts: readonly number[];
  /** Removed from the membership: no reconnects, no new work. */
  left: boolean;
  /** A connection attempt is under way (waiting for a handshake place, or handshaking). */
  connecting: boolean;
  /** The attempt's handshake place (waiting or held). */
  ticket: HandshakeTicket | undefined;
  /**
   * Its next attempt is a reconnect, ahead of retries (handshake-places.ts): set when a connection
   * that was up for at least a handshake bound drops, kept through quick refusals (a restarting
   * worker: nothing listens), cleared by an attempt that held its place longer before failing, or
   * by a connection that dropped sooner. So a URL that answered once and went silent, or a relay
   * that completes handshakes and drops, is retried with the rest.
   */
  reconnectAhead: boolean;
  /** When its current connection was made (ms, performance.now(): a clock step changes no rank). */
  connectedAt: number;
  /** What its URL connects to (handshake-places.ts: one handshake at a time per endpoint). */
  readonly endpoint: string;
  attempt: number;
  timer: NodeJS.Timeout | undefined;
  secondsPerPair: number | undefined;
  /** join() calls waiting for the next connection attempt's outcome. */
  waiters: { resolve: (w: WorkerExperts) => void; reject: (e: unknown) => void }[];
  /** Removed from `slots` (left, nothing in progress): a late event of its old connection is ignored. */
  pruned: boolean;
  /** The latest distinct errors told since it was last connected (WorkerUnreachable), at most MAX_FAILURES_REPORTED. */
  reasonsTold: Set<string>;
  /** The last failure's error, told or not. */
  lastReason: string;
  /** Kept through reconnects: a peer that connects between failures does not refill it. */
  readonly reasonBudget: LineBudget;
  /**
   * The tokens-per-frame figures said of it (WorkerSmallFrames), the latest few: a worker that
   * flips its holdings between two sizes is told of once per figure, not once per notice (a review
   * had 84,180 warnings in 10 s).
   */
  readonly smallFramesTold: Set<number>;
  /** And a budget for those events, for one that cycles through more figures than are kept. */
  readonly smallFramesBudget: LineBudget;
}

/** A slot for `url`, not connected yet. */
function newSlot(id: number, url: string): Slot {
  return {
    id,
    url,
    conn: undefined,
    experts: [],
    left: false,
    connecting: false,
    ticket: undefined,
    reconnectAhead: false,
    connectedAt: 0,
    endpoint: endpointOf(url),
    attempt: 0,
    timer: undefined,
    secondsPerPair: undefined,
    waiters: [],
    pruned: false,
    reasonsTold: new Set(),
    lastReason: '',
    reasonBudget: new LineBudget(MAX_FAILURES_REPORTED, FAILURE_REPORT_EVERY_MS),
    smallFramesTold: new Set(),
    smallFramesBudget: new LineBudget(MAX_FAILURES_REPORTED, FAILURE_REPORT_EVERY_MS),
  };
}

/**
 * Left the membership with nothing in progress: no open connection (it could still answer a
 * re-join), no attempt, handshake place, timer or join waiting. Such a slot is pruned.
 */
function finished(s: Slot): boolean {
  return (
    s.left &&
    s.conn?.alive !== true &&
    !s.connecting &&
    s.ticket === undefined &&
    s.timer === undefined &&
    s.waiters.length === 0
  );
}

export class RemoteExpertBackend implements ExpertBackend<RemoteTransfer> {
  private nextId = 0;
  private scratch = new Float32Array(0);
  private readonly index: ExpertIndexDType;
  /** At least the bytes of a request of this many rows and pairs, whatever its id and layer (checks per request and per row). */
  private readonly boundedBytes: DispatchSizeBound;
  private readonly timeoutMs: number;
  private readonly handshakeTimeoutMs: number;
  /** Proven on every connect, reconnect and join (none: workers without a token only). */
  private readonly secret: ClusterSecret | undefined;
  /** RemoteExpertsOptions.fromRegistry: every handshake requires a worker bound to its URL. */
  private readonly fromRegistry: boolean;
  /** Live slots, and left ones with something in progress (finished ones are pruned on rebuild). */
  private slots: Slot[];
  private nextSlotId = 0;
  private current: ClusterView;
  /** Every handshake after the start-up (joins, reconnects, retries) takes one of these places. */
  private readonly places = new HandshakePlaces();
  /** How late this thread was to see attempts fail (a failure seen late is not the peer's doing). */
  private readonly lateness = new LoopLateness();
  private closed = false;
  private readonly whileWaiting: (() => void)[] = [];

  private constructor(
    connections: readonly WorkerConnection[],
    private readonly model: RemoteModel,
    readonly wire: WireDType,
    options: RemoteExpertsOptions,
    readonly balance: BalanceRule,
    private readonly events: ClusterEvents,
  ) {
    this.index = expertIndexDType(model.numExperts);
    this.boundedBytes = dispatchSizeBound({ wire, hidden: model.hidden, index: this.index });
    this.timeoutMs = options.timeoutMs ?? DEFAULT_DISPATCH_TIMEOUT_MS;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    this.secret = secretOf(options);
    this.fromRegistry = options.fromRegistry === true;
    this.slots = connections.map((c) => ({
      ...newSlot(this.nextSlotId++, c.url),
      conn: c,
      experts: c.experts,
      reconnectAhead: true,
      connectedAt: performance.now(),
    }));
    this.current = this.buildView();
  }

  /**
   * Connects to every worker (in parallel), checks the handshakes and that the workers cover every
   * expert. On any failure the connections made so far are closed and the error names the worker
   * or the missing experts. Afterwards, connections that drop are re-established with backoff.
   */
  static async connect(
    options: RemoteExpertsOptions,
    model: RemoteModel,
    events: ClusterEvents = {},
  ): Promise<RemoteExpertBackend> {
    if (options.workers.length === 0) throw new PlacementError('no workers given', { missing: [] });
    const dupes = options.workers.filter((u, i) => options.workers.indexOf(u) !== i);
    if (dupes.length > 0)
      throw new PlacementError(`worker ${dupes[0]} is listed twice`, {
        missing: [],
        hint: 'list each worker once',
      });
    // Connections report to the backend once it exists; drops before that are kept and reported
    // to it when it is made (a connection that dropped still takes its slot, and is reconnected).
    let backend: RemoteExpertBackend | undefined;
    const early = new Map<WorkerConnection, string>();
    // By URL: with skipFailed, slots are only the workers that connected. Looked up once, as the
    // URL's slot may be pruned and a new one made for it later.
    const slotOf = new Map<string, Slot>();
    const secret = secretOf(options);
    const attempts = await Promise.allSettled(
      options.workers.map((url) =>
        WorkerConnection.connect(url, {
          ...connectOptions(options, model, secret),
          onDown: (reason, from) =>
            backend ? backend.lost(slotOf.get(url)!, reason, from) : early.set(from, reason),
          onDrain: () => backend?.rebuild(),
          // Until the backend exists a notice is kept by its connection (`experts`), read below.
          onHoldings: (experts) => backend?.holdingsChanged(slotOf.get(url)!, experts),
        }),
      ),
    );
    // A welcome claiming an expert the model lacks is a failed handshake too (as on a join): with
    // skipFailed that worker is left out, not the whole start failed.
    const connections: WorkerConnection[] = [];
    const failures: unknown[] = [];
    for (const a of attempts) {
      if (a.status === 'rejected') {
        failures.push(a.reason);
        continue;
      }
      const bad = a.value.experts.find((e) => e >= model.numExperts);
      if (bad === undefined) connections.push(a.value);
      else {
        void a.value.close();
        failures.push(
          new PlacementError(
            `worker ${a.value.url} claims expert ${bad}, but the model has ${model.numExperts}`,
            { missing: [], hint: 'the worker runs another model: check its --model' },
          ),
        );
      }
    }
    try {
      if (failures.length > 0 && options.skipFailed !== true) throw failures[0];
      try {
        PlacementTable.create(
          connections.map((c): WorkerExperts => ({ url: c.url, experts: c.experts })),
          model.numExperts,
        );
      } catch (err) {
        // Skipped workers may be why experts are missing: the error says why each was skipped.
        throw withFailedHandshakes(err, failures);
      }
      backend = new RemoteExpertBackend(
        connections,
        model,
        options.wire,
        options,
        options.balance ?? DEFAULT_BALANCE_RULE,
        events,
      );
      for (const s of backend.slots) slotOf.set(s.url, s);
      for (const c of connections) backend.checkFrames(slotOf.get(c.url)!, c.maxFrameBytes);
      for (const [c, reason] of early)
        if (connections.includes(c)) backend.lost(slotOf.get(c.url)!, reason, c);
      // Closing but not yet closed (the worker's close frame read, its TCP still open: ws waits up
      // to CLOSE_HANDSHAKE_MS): a drop now, reported once, through onDown.
      for (const c of connections) if (!c.alive) c.abandon('closed the connection', 'disconnected');
      return backend;
    } catch (err) {
      await Promise.all(connections.map((c) => c.close()));
      throw err;
    }
  }

  /** The slot of a worker URL in the current view (-1 if unknown). */
  slotOf(url: string): number {
    return this.slots.findIndex((s) => s.url === url);
  }

  /** The current view: read once per layer. */
  get view(): ClusterView {
    return this.current;
  }

  /** Who holds what (every worker slot of the current view, live or not). */
  get placement(): PlacementTable {
    return this.current.placement;
  }

  get description(): string {
    const n = this.slots.length;
    return `remote experts on ${counted(n, 'worker')} (${this.placement.describe()}), ${this.wire} wire, ${this.balance} balancing`;
  }

  /**
   * A worker joined the membership (or came back): connects to it into its URL's slot (a new one
   * if its old slot was pruned) and routes to it from the next layer on. Resolves with its experts
   * once connected; if it does not answer yet, rejects with the handshake error and keeps trying
   * with backoff.
   */
  join(url: string): Promise<WorkerExperts> {
    if (this.closed) return Promise.reject(new Error('the expert backend is closed'));
    let slot = this.slots.find((s) => s.url === url);
    if (!slot) {
      slot = newSlot(this.nextSlotId++, url);
      this.slots.push(slot);
      this.rebuild();
    }
    const joined = slot;
    if (joined.conn?.usable) {
      // Back before the connection of its leave closed (it had requests to answer): routed to
      // again on that connection, which its leave then no longer closes.
      if (joined.left) {
        joined.left = false;
        // What it announced while it had left (ignored then) holds from now on.
        joined.experts = joined.conn.experts;
        this.rebuild();
      }
      return Promise.resolve({ url, experts: joined.experts });
    }
    if (joined.conn?.alive && joined.conn.draining) {
      // A worker shutting down: no new connection is made while this one is open (one per URL),
      // so the join cannot be connected now; it is reconnected once the drained connection closes.
      if (joined.left) {
        joined.left = false;
        this.rebuild();
      }
      return Promise.reject(
        new Error(`worker ${url} is draining: it is connected again once its connection closes`),
      );
    }
    joined.left = false;
    joined.attempt = 0;
    if (joined.timer) clearTimeout(joined.timer);
    joined.timer = undefined;
    return new Promise<WorkerExperts>((resolve, reject) => {
      joined.waiters.push({ resolve, reject });
      // A background attempt still waiting for its place now has someone waiting for it.
      joined.ticket?.promote('join');
      this.reconnect(joined);
    });
  }

  /**
   * A worker left the membership: it gets no new work and no reconnects; its connection closes once
   * the requests it has are answered. With `gone` (why, for people) it is not answering (its
   * registry record expired): the connection is dropped now, so the requests it has fail over to
   * replicas as on a closed socket instead of waiting out the dispatch timeout. Its slot is pruned
   * once nothing of it is in progress.
   */
  leave(url: string, gone?: string): boolean {
    const slot = this.slots.find((s) => s.url === url);
    if (!slot) return false;
    if (slot.left) return true;
    slot.left = true;
    if (slot.timer) clearTimeout(slot.timer);
    slot.timer = undefined;
    // An attempt still waiting for a handshake place gives it up; one handshaking keeps its place
    // until it ends (its socket is open until then).
    slot.ticket?.withdraw();
    this.rebuild();
    const conn = slot.conn;
    if (conn && gone !== undefined) conn.abandon(gone, 'disconnected');
    else if (conn)
      void conn.idle().then(() => {
        if (!slot.left || slot.conn !== conn) return;
        void conn.close();
        this.pruneIfFinished(slot);
      });
    this.pruneIfFinished(slot);
    return true;
  }

  /**
   * Which worker computes each pair of `pairs` under this backend's rule, with the placement, live
   * workers and cost model a layer was planned with.
   */
  assignFor(
    pairs: ExpertAssignment,
    placement: PlacementTable,
    live: readonly boolean[],
    costs: WorkerCosts,
  ): Int32Array {
    const W = placement.workers.length;
    const padded = Array.from({ length: W }, (_, w) => live[w] === true);
    const perPair = Float64Array.from({ length: W }, (_, w) => costs.perPair[w] ?? 1);
    const inflight = Float64Array.from({ length: W }, (_, w) => costs.inflight[w] ?? 0);
    return assignPairs(this.balance, placement, pairs, padded, { perPair, inflight });
  }

  /**
   * `task` runs each time a layer's requests have been sent, while the workers compute: for
   * bookkeeping that need not delay the layer (dispatch accounting).
   */
  onRequestsSent(task: () => void): void {
    this.whileWaiting.push(task);
  }

  /** Runs the onRequestsSent tasks; an error is kept until the replies are in, so none goes unawaited. */
  private runWhileWaiting(): { readonly failed: false } | { readonly failed: true; readonly error: unknown } {
    try {
      for (const task of this.whileWaiting) task();
      return { failed: false };
    } catch (error) {
      return { failed: true, error };
    }
  }

  async compute(
    layer: number,
    x: F32Tensor,
    assignment: ExpertAssignment,
    accumulate: Float32Array,
  ): Promise<RemoteTransfer> {
    const H = this.model.hidden;
    const planView = this.current;
    let view = planView;
    const live = usable(view, new Set());
    const costs = this.costs(view);
    const pairWorker = assignPairs(this.balance, view.placement, assignment, live, costs);
    const planned = batchCosts(pairWorker, view.connections.length, costs);
    let shares = planDispatch(assignment, pairWorker, view.connections.length);
    const done: { share: WorkerShare; result: DispatchResult; url: string }[] = [];
    const messages: RemoteMessage[] = [];
    /** Slot ids (not indices: a re-plan may use a newer view, with other indices). */
    const failedWorkers = new Set<number>();
    let firstId = -1;
    let retriedPairs = 0;
    let replans = 0;
    /** A failure that is not the worker going away (an error reply, a bad reply), if any. */
    let workerError: WorkerRequestError | undefined;
    while (shares.length > 0) {
      const round = view;
      const { requests, span } = this.requestsOf(layer, shares, round);
      // Ids are reserved per worker slot (a share's first request is base + its index), so
      // accounting can cost other variants with the same headers; pieces of cut shares follow.
      if (this.nextId + span > MAX_REQUEST_ID) this.nextId = 0;
      const base = this.nextId;
      this.nextId += span;
      if (firstId < 0) firstId = base;
      const sentBytes = new Float64Array(requests.length);
      const sentAt = performance.now();
      /** Per worker, its requests' indices: a piece waits for the one PIECES_IN_FLIGHT before it. */
      const byWorker = new Map<number, number[]>();
      const replies: Promise<{ r: DispatchResult; seconds: number }>[] = [];
      for (const [i, { share: s, id, refusal }] of requests.entries()) {
        let ahead = byWorker.get(s.worker);
        if (ahead === undefined) {
          ahead = [];
          byWorker.set(s.worker, ahead);
        }
        const waitFor =
          ahead.length >= PIECES_IN_FLIGHT ? replies[ahead[ahead.length - PIECES_IN_FLIGHT]!] : undefined;
        ahead.push(i);
        replies.push(
          (async () => {
            if (refusal) throw refusal;
            // Settled either way: a failed piece fails the next at its send if the worker is gone.
            if (waitFor) await waitFor.then(noop, noop);
            const conn = round.connections[s.worker]!;
            // Encoded when sent: a piece waiting its turn holds no frame (and may reuse the
            // connection's request buffer).
            const frame = this.encode(layer, base + id, s, x.data, round);
            sentBytes[i] = frame.byteLength;
            const r = await conn.request(base + id, layer, frame, this.timeoutMs, s.experts.length);
            const seconds = (performance.now() - sentAt) / 1000;
            if (r.numTokens !== s.tokens.length || r.wire !== this.wire)
              throw new WorkerRequestError(
                conn.url,
                'bad-reply',
                `worker ${conn.label} answered ${r.numTokens} ${r.wire} rows for ${s.tokens.length} ${this.wire} tokens (layer ${layer} dispatch)`,
              );
            return { r, seconds };
          })(),
        );
      }
      // The requests are on their sockets (a send waits only under backpressure): the time until the
      // replies arrive is the workers'. A reply that arrives during this work is read after it, so
      // its round trip includes it; the work is small next to a round trip.
      const waitingWork = this.runWhileWaiting();
      const settled = await Promise.allSettled(replies);
      if (waitingWork.failed) throw waitingWork.error;
      const failed: WorkerShare[] = [];
      /** Per worker of the round: its answered pairs and the last of their round trips (pieces queue on one socket). */
      const answered = new Map<number, { pairs: number; seconds: number }>();
      let replanned = false;
      for (let i = 0; i < requests.length; i++) {
        const { share: s, id } = requests[i]!;
        const o = settled[i]!;
        const slot = round.slots[s.worker] as Slot;
        if (o.status === 'fulfilled') {
          const a = answered.get(s.worker) ?? { pairs: 0, seconds: 0 };
          answered.set(s.worker, {
            pairs: a.pairs + s.experts.length,
            seconds: Math.max(a.seconds, o.value.seconds),
          });
          done.push({ share: s, result: o.value.r, url: slot.url });
          messages.push({
            worker: s.worker,
            slot: slot.id,
            tokens: s.tokens,
            pairs: s.experts.length,
            bytesOut: sentBytes[i]!,
            bytesIn: this.resultBytes(base + id, s.tokens.length),
            seconds: o.value.seconds,
          });
          continue;
        }
        const err: unknown = o.reason;
        if (!(err instanceof WorkerRequestError)) throw err;
        failed.push(s);
        // Sent on a placement older than the worker's holdings notice (read before this reply, on
        // the same socket): the worker is fine; its pairs are planned again on the fresh view.
        // Counted once per round, however many pieces of the worker's share were refused.
        if (err.reason === 'not-held' && (replanned || replans < MAX_REPLANS)) {
          if (!replanned) replans++;
          replanned = true;
          continue;
        }
        // A stalled worker is treated as gone: its socket is dropped and reconnected with backoff,
        // so the next layers do not wait for it too.
        if (err.reason === 'timeout') round.connections[s.worker]?.abandon(`stalled: ${err.message}`);
        if (!GONE.has(err.reason)) workerError ??= err;
        failedWorkers.add(slot.id);
      }
      for (const [w, a] of answered) measured(round.slots[w] as Slot, a.seconds, a.pairs);
      if (failed.length === 0) break;
      // Re-send the failed groups to live replicas, on the freshest view; a worker that failed this
      // layer is not asked again for it. Throws PlacementError if an expert has no live holder left.
      const rest = mergeShares(assignment.numTokens, failed);
      retriedPairs += rest.offsets[rest.numTokens]!;
      view = this.current;
      const liveNow = usable(view, failedWorkers);
      let reassigned: Int32Array;
      try {
        reassigned = assignPairs(this.balance, view.placement, rest, liveNow, this.costs(view));
      } catch (err) {
        // Replicas that exist but answered with errors too: the workers' error says more than
        // "no live worker".
        if (err instanceof PlacementError && workerError) throw workerError;
        throw err;
      }
      shares = planDispatch(rest, reassigned, view.connections.length);
    }
    // Combined in the order the groups were planned, so a run without faults adds in one fixed order.
    for (const d of done) {
      const r = d.result;
      addRows(accumulate, fromWire(r.partial, r.wire, this.widened(r.partial.length)), d.share.tokens, H);
    }
    this.checkCombined(layer, accumulate, done);
    return {
      messages,
      firstId: Math.max(0, firstId),
      live,
      costs: planned,
      model: costs,
      retriedPairs,
      placement: planView.placement,
      frameLimits: planView.connections.map((c) => c?.maxFrameBytes ?? Number.POSITIVE_INFINITY),
    };
  }

  /** Bytes (both ways) of a request of this shape with this id, and its reply. */
  messageBytes(layer: number, id: number, numTokens: number, numPairs: number): number {
    return dispatchRequestBytes(this.shape(id, layer, numTokens, numPairs)) + this.resultBytes(id, numTokens);
  }

  /**
   * Whether a request of this many rows and pairs fits a worker's frame limit, sized with the
   * largest request id (the id only lengthens the header), so a fit holds whatever id it is sent with.
   */
  requestFits(layer: number, rows: number, pairs: number, maxFrameBytes: number): boolean {
    // Decode shares are far below any limit: the bound answers without sizing the header.
    if (this.boundedBytes(rows, pairs) <= maxFrameBytes) return true;
    return dispatchRequestBytes(this.shape(MAX_REQUEST_ID, layer, rows, pairs)) <= maxFrameBytes;
  }

  /**
   * Whether a piece of a cut share fits: more than one row by the bound (checked per row, so
   * arithmetic only; a piece may be a row shorter than the exact size would allow), one row exactly.
   */
  private pieceFits(layer: number, maxFrameBytes: number): (rows: number, pairs: number) => boolean {
    return (rows, pairs) =>
      rows === 1
        ? this.requestFits(layer, rows, pairs, maxFrameBytes)
        : this.boundedBytes(rows, pairs) <= maxFrameBytes;
  }

  /**
   * [rows, pairs] of each request that rows with these CSR `offsets` become for a worker whose
   * frames are at most `maxFrameBytes`, cut as a layer's sends are (for costing: a row too large
   * alone counts as a request of its own, which a send refuses).
   */
  requestSizes(layer: number, offsets: Int32Array, maxFrameBytes: number): [number, number][] {
    const fits = this.pieceFits(layer, maxFrameBytes);
    const cut = cutRows(offsets, (rows, pairs) => rows === 1 || fits(rows, pairs));
    if ('tooLarge' in cut) throw new Error('unreachable: every single row fits');
    const sizes: [number, number][] = [];
    for (let i = 0; i + 1 < cut.cuts.length; i++) {
      const [from, to] = [cut.cuts[i]!, cut.cuts[i + 1]!];
      sizes.push([to - from, offsets[to]! - offsets[from]!]);
    }
    return sizes;
  }

  /**
   * A round's requests: each share whole when its frame fits its worker's limit, else cut by rows
   * into frames that do (a prefill batch can need more than a worker's --max-frame-mb). `id` is
   * an offset from the round's first id: a share's first request has its worker's index, the
   * pieces after it W, W + 1, ... (W workers in the view): `span` ids in all. A share with a token
   * too large alone for its worker is not sent: its `refusal` fails it there, and its pairs go to
   * replicas like those of any worker that failed the layer.
   */
  private requestsOf(layer: number, shares: readonly WorkerShare[], view: ClusterView): RoundRequests {
    const W = view.connections.length;
    const requests: RoundRequest[] = [];
    let next = W;
    for (const s of shares) {
      const conn = view.connections[s.worker]!;
      const limit = conn.maxFrameBytes;
      if (this.requestFits(layer, s.tokens.length, s.experts.length, limit)) {
        requests.push({ share: s, id: s.worker });
        continue;
      }
      const cut = cutRows(s.offsets, this.pieceFits(layer, limit));
      if ('tooLarge' in cut) {
        const pairs = s.offsets[cut.tooLarge + 1]! - s.offsets[cut.tooLarge]!;
        const needs = dispatchRequestBytes(this.shape(MAX_REQUEST_ID, layer, 1, pairs));
        const refusal = new WorkerRequestError(
          conn.url,
          'oversize',
          `worker ${conn.label} accepts frames up to ${limit} bytes, a request of one token (${counted(pairs, 'expert')}) needs ${needs} (layer ${layer} dispatch)`,
          {
            hint: `restart the worker with --max-frame-mb ${chunkFrameMib(this.frameShape(conn.experts.length))} or more (that fits ${FEW_TOKENS_PER_FRAME} tokens on the ${this.wire} wire)`,
          },
        );
        requests.push({ share: s, id: s.worker, refusal });
        continue;
      }
      const { cuts } = cut;
      for (let i = 0; i + 1 < cuts.length; i++)
        requests.push({ share: sliceShare(s, cuts[i]!, cuts[i + 1]!), id: i === 0 ? s.worker : next++ });
    }
    return { requests, span: next };
  }

  get numWorkers(): number {
    return this.slots.length;
  }

  get hidden(): number {
    return this.model.hidden;
  }

  async close(): Promise<void> {
    this.closed = true;
    // No pruning from here on: every slot's connection must be closed below.
    for (const s of this.slots) {
      if (s.timer) clearTimeout(s.timer);
      s.ticket?.withdraw();
    }
    await Promise.all(this.slots.map((s) => s.conn?.close()));
  }

  /** Per worker slot: relative service time per pair (1 = the mean of those measured) and pairs in flight. */
  private costs(view: ClusterView): WorkerCosts {
    const W = view.connections.length;
    const perPair = new Float64Array(W).fill(1);
    const inflight = new Float64Array(W);
    let sum = 0;
    let n = 0;
    for (let w = 0; w < W; w++) {
      const spp = view.slots[w]!.secondsPerPair;
      if (spp !== undefined) {
        sum += spp;
        n++;
      }
    }
    const mean = n === 0 ? 0 : sum / n;
    for (let w = 0; w < W; w++) {
      const spp = view.slots[w]!.secondsPerPair;
      if (spp !== undefined && mean > 0) perPair[w] = spp / mean;
      inflight[w] = view.connections[w]?.inflightPairs ?? 0;
    }
    return { perPair, inflight };
  }

  private buildView(): ClusterView {
    return {
      placement: PlacementTable.of(
        this.slots.map(
          (s): WorkerExperts => ({ url: s.url, experts: s.experts, ...(s.left ? { left: true } : {}) }),
        ),
        this.model.numExperts,
      ),
      connections: this.slots.map((s) => (s.left ? undefined : s.conn)),
      slots: [...this.slots],
    };
  }

  /**
   * Swaps in a new view (a worker came, went or drains); layers in flight keep theirs. Finished
   * slots (left, nothing in progress) are dropped here, so the view's size and the cost of the
   * next change follow the membership, not its history.
   */
  private rebuild(): void {
    if (!this.closed)
      this.slots = this.slots.filter((s) => {
        if (!finished(s)) return true;
        s.pruned = true;
        return false;
      });
    this.current = this.buildView();
  }

  /** Rebuilds if `slot` has finished (so it is pruned); nothing otherwise. */
  private pruneIfFinished(slot: Slot): void {
    if (!slot.pruned && finished(slot)) this.rebuild();
  }

  /**
   * A connected worker loaded or unloaded experts (`kmoe cluster rebalance`): layers planned from
   * now on use its new set; a layer in flight that still sends it an unloaded expert gets `not-held`
   * and re-sends those pairs to a replica.
   */
  private holdingsChanged(slot: Slot, experts: readonly number[]): void {
    // A worker that left answers what it has on its connection and gets nothing new: what it now
    // holds changes no placement, and an `up` for it would tell /ready it is back.
    if (slot.pruned || slot.left) return;
    slot.experts = experts;
    this.rebuild();
    this.events.up?.({ url: slot.url, experts, why: 'holdings' });
    if (slot.conn) this.checkFrames(slot, slot.conn.maxFrameBytes);
  }

  /** A worker holding `held` experts, as its frame limit sees it on this coordinator's wire. */
  private frameShape(held: number): FrameShape {
    return { hidden: this.model.hidden, numExperts: this.model.numExperts, held, wire: this.wire };
  }

  /** Says (WorkerSmallFrames) if the worker's frames fit few tokens for what it holds now. */
  private checkFrames(slot: Slot, maxFrameBytes: number): void {
    const held = slot.experts.length;
    if (held === 0) return;
    const shape = this.frameShape(held);
    const tokens = tokensPerFrame({ ...shape, maxFrameBytes });
    if (tokens >= FEW_TOKENS_PER_FRAME || slot.smallFramesTold.has(tokens)) return;
    if (!slot.smallFramesBudget.take().say) return;
    addLatest(slot.smallFramesTold, tokens, SMALL_FRAMES_FIGURES_KEPT);
    this.events.smallFrames?.({
      url: slot.url,
      maxFrameBytes,
      tokens,
      held,
      wire: this.wire,
      chunkFrameMib: chunkFrameMib(shape),
      anyWireFrameMib: chunkFrameMib({ ...shape, wire: 'fp32' }),
    });
  }

  private lost(slot: Slot, reason: string, from: WorkerConnection): void {
    // A connection the slot no longer uses (replaced by a reconnect while its socket was closing)
    // reports its drop late: the slot's current connection is not down.
    if (slot.pruned || slot.conn !== from) return;
    slot.reconnectAhead = performance.now() - slot.connectedAt >= this.handshakeTimeoutMs;
    // The backoff starts over only for a connection that stayed up: one dropped sooner (a worker
    // that completes each handshake and then drops) is redialled ever later, not every 100 ms.
    if (slot.reconnectAhead) slot.attempt = 0;
    this.rebuild();
    this.events.down?.({ url: slot.url, reason, drained: from.draining });
    this.scheduleReconnect(slot);
  }

  private scheduleReconnect(slot: Slot): void {
    if (this.closed || slot.left || slot.timer || slot.connecting) return;
    const delay = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** slot.attempt);
    slot.attempt++;
    slot.timer = setTimeout(() => {
      slot.timer = undefined;
      this.reconnect(slot);
    }, delay);
    slot.timer.unref();
  }

  /**
   * Connects the slot's worker once a handshake place is free (handshake-places.ts: at most 8 joins
   * and, on places of their own, 4 background reconnects and retries at a time). One attempt per
   * slot at a time, so the attempts of one URL stay in order.
   */
  private reconnect(slot: Slot): void {
    if (this.closed || slot.left || slot.connecting || slot.conn?.alive) return;
    slot.connecting = true;
    const kind: HandshakeKind =
      slot.waiters.length > 0 ? 'join' : slot.reconnectAhead ? 'reconnect' : 'retry';
    const ticket = this.places.request(kind, slot.endpoint);
    slot.ticket = ticket;
    void ticket.granted.then((granted) => {
      if (granted && !this.closed && !slot.left) {
        this.handshake(slot, ticket);
        return;
      }
      // Left (or closed) while waiting for a place: this attempt is given up.
      ticket.release();
      slot.ticket = undefined;
      slot.connecting = false;
      // Joined again since it left: a new attempt, for the join waiting on it.
      if (!this.closed && !slot.left) {
        this.reconnect(slot);
        return;
      }
      const why = this.closed ? 'the expert backend is closed' : `worker ${slot.url} left the membership`;
      for (const w of slot.waiters.splice(0)) w.reject(new Error(why));
      this.pruneIfFinished(slot);
    });
  }

  /** The connection attempt of `reconnect`, on a held handshake place (released when it ends). */
  private handshake(slot: Slot, ticket: HandshakeTicket): void {
    const started = performance.now();
    const watch = this.lateness.observe();
    const ended = () => {
      watch.end();
      ticket.release();
      slot.ticket = undefined;
      slot.connecting = false;
    };
    WorkerConnection.connect(slot.url, {
      ...connectOptions(
        { wire: this.wire, handshakeTimeoutMs: this.handshakeTimeoutMs, fromRegistry: this.fromRegistry },
        this.model,
        this.secret,
      ),
      onDown: (reason, from) => this.lost(slot, reason, from),
      onDrain: () => this.rebuild(),
      onHoldings: (experts) => this.holdingsChanged(slot, experts),
    }).then(
      (conn) => {
        ended();
        if (this.closed || slot.left) {
          void conn.close();
          for (const w of slot.waiters.splice(0))
            w.reject(new Error(`worker ${slot.url} left the membership`));
          this.pruneIfFinished(slot);
          return;
        }
        // The welcome's set, or a notice's that came in the welcome's read (before slot.conn was set).
        const experts = conn.experts;
        const bad = experts.find((e) => e >= this.model.numExperts);
        if (bad !== undefined) {
          void conn.close();
          const err = new PlacementError(
            `worker ${slot.url} claims expert ${bad}, but the model has ${this.model.numExperts}`,
            { missing: [], hint: 'the worker runs another model: check its --model' },
          );
          slot.reconnectAhead = false;
          this.attemptFailed(slot, err);
          return;
        }
        slot.conn = conn;
        slot.experts = experts;
        slot.reasonsTold.clear();
        slot.lastReason = '';
        slot.connectedAt = performance.now();
        slot.secondsPerPair = undefined;
        this.rebuild();
        this.events.up?.({ url: slot.url, experts, why: 'connected' });
        this.checkFrames(slot, conn.maxFrameBytes);
        for (const w of slot.waiters.splice(0)) w.resolve({ url: slot.url, experts });
      },
      (err: unknown) => {
        const lateness = watch.lateness();
        ended();
        // A failure that held its place (a silent URL's timeout, or a peer that closes just before
        // any threshold it could learn) costs the others that place; only a quick failure (a
        // worker restarting: nothing listens) costs nothing and keeps the rank.
        if (!quickFailure(performance.now() - started, lateness, this.handshakeTimeoutMs))
          slot.reconnectAhead = false;
        this.attemptFailed(slot, err);
      },
    );
  }

  /**
   * A connection attempt failed: its joins get the error, or if none waits (a background attempt)
   * it is reported once per reason; the next attempt is scheduled.
   */
  private attemptFailed(slot: Slot, err: unknown): void {
    const reason = err instanceof Error ? err.message : String(err);
    const fresh = reason !== slot.lastReason;
    slot.lastReason = reason;
    if (!slot.reasonsTold.has(reason)) {
      // A join's failure goes to its caller, who says it; either way the reason is told once.
      if (slot.waiters.length > 0) addLatest(slot.reasonsTold, reason, MAX_FAILURES_REPORTED);
      else if (!this.closed && !slot.left) {
        const budget = slot.reasonBudget.take(fresh);
        if (budget.say) {
          addLatest(slot.reasonsTold, reason, MAX_FAILURES_REPORTED);
          this.events.unreachable?.({
            url: slot.url,
            reason,
            ...(budget.held > 0 ? { reasonsNotLogged: budget.held } : {}),
          });
        }
      }
    }
    for (const w of slot.waiters.splice(0)) w.reject(err);
    this.scheduleReconnect(slot);
    this.pruneIfFinished(slot);
  }

  /**
   * Workers' results are checked for NaN and infinity as they arrive (worker-connection.ts), but
   * finite values can still be too large: 3e38 added into the residual, or squared by the next
   * layer's RMSNorm, overflows float32, and the next layer's router scores come out NaN, an error
   * that names the router, not the worker. So the rows the results were added to are checked as
   * the next layer will use them (normOverflows), and a row whose workers' results overflow on
   * their own fails the layer naming the worker whose result holds the largest value for that
   * token. Checked only then, on the error path: the common case costs one pass per row.
   */
  private checkCombined(
    layer: number,
    accumulate: Float32Array,
    done: readonly { share: WorkerShare; result: DispatchResult; url: string }[],
  ): void {
    const H = this.model.hidden;
    const checked = new Uint8Array(accumulate.length / H);
    for (const d of done)
      for (const t of d.share.tokens) {
        if (checked[t] === 1) continue;
        checked[t] = 1;
        if (!normOverflows(accumulate.subarray(t * H, (t + 1) * H))) continue;
        // The workers' share of the row: only if it overflows on its own is it theirs. A residual
        // that was already too large (a request's routing prior of 1e20, which an API client may
        // send) is that request's, and the engine's final-state check fails it alone; blaming a
        // worker here failed the whole step, every other client's sequences with it.
        const contribution = new Float32Array(H);
        let worst = { url: 'unknown', value: 0 };
        for (const e of done) {
          const row = e.share.tokens.indexOf(t);
          if (row < 0) continue;
          const partial = fromWire(
            e.result.partial,
            e.result.wire,
            new Float32Array(e.result.partial.length),
          );
          for (let i = row * H; i < (row + 1) * H; i++) {
            contribution[i - row * H]! += partial[i]!;
            if (Math.abs(partial[i]!) >= Math.abs(worst.value)) worst = { url: e.url, value: partial[i]! };
          }
        }
        if (!normOverflows(contribution)) continue;
        const url = worst.url;
        throw new ExpertResultOverflowError(
          layer,
          url,
          `layer ${layer}: the hidden state of token ${t} is beyond what float32 normalisation can hold after adding the workers' expert results (finite, but far too large: the largest, ${worst.value}, came from worker ${url})`,
        );
      }
  }

  /** fp32 scratch for widening 16-bit partial sums (one reply is combined at a time). */
  private widened(n: number): Float32Array | undefined {
    if (this.wire === 'fp32') return undefined;
    if (this.scratch.length < n) this.scratch = new Float32Array(n);
    return this.scratch.subarray(0, n);
  }

  private shape(id: number, layer: number, numTokens: number, numPairs: number): DispatchShape {
    return { id, layer, wire: this.wire, numTokens, numPairs, hidden: this.model.hidden, index: this.index };
  }

  private resultBytes(id: number, numTokens: number): number {
    return dispatchResultBytes({ id, wire: this.wire, numTokens, hidden: this.model.hidden });
  }

  private encode(layer: number, id: number, s: WorkerShare, x: Float32Array, view: ClusterView): Uint8Array {
    const H = this.model.hidden;
    const frame = allocDispatchRequest(
      this.shape(id, layer, s.tokens.length, s.experts.length),
      view.connections[s.worker]!.frameAllocator,
    );
    for (let row = 0; row < s.tokens.length; row++) {
      const t = s.tokens[row]!;
      toWire(x.subarray(t * H, (t + 1) * H), this.wire, frame.hidden.subarray(row * H, (row + 1) * H));
    }
    frame.offsets.set(s.offsets);
    frame.experts.set(s.experts);
    frame.weights.set(s.weights);
    return frame.bytes;
  }
}

function secretOf(options: RemoteExpertsOptions): ClusterSecret | undefined {
  return options.clusterToken === undefined ? undefined : new ClusterSecret(options.clusterToken);
}

function connectOptions(
  options: {
    readonly wire: WireDType;
    readonly handshakeTimeoutMs?: number;
    readonly fromRegistry?: boolean;
  },
  model: RemoteModel,
  secret: ClusterSecret | undefined,
) {
  return {
    ...(secret === undefined ? {} : { secret }),
    ...(options.fromRegistry === true ? { requireBound: true } : {}),
    fingerprint: model.fingerprint,
    wire: options.wire,
    model: { numLayers: model.numLayers, numExperts: model.numExperts, hidden: model.hidden },
    handshakeTimeoutMs: options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS,
    client: `kmoe coordinator pid ${process.pid}`,
  };
}

/** Request ids wrap below this: the largest a header can carry. */
export const MAX_REQUEST_ID = 0xffffffff;

/** Re-plans of a layer because a worker no longer held an expert it was sent (bounds a livelock). */
const MAX_REPLANS = 4;

/** Failures that mean the worker is gone or going (as opposed to answering with an error). */
const GONE: ReadonlySet<string> = new Set(['timeout', 'disconnected', 'draining', 'cancelled']);

/** Which worker slots may take new work: connected, not draining, not failed (slot ids) in this layer. */
function usable(view: ClusterView, failed: ReadonlySet<number>): boolean[] {
  return view.connections.map((c, w) => c?.usable === true && !failed.has(view.slots[w]!.id));
}

/** Adds a measured round trip to the slot's service time per pair (the slot object: pruned or not, it is that worker's). */
function measured(slot: Slot, seconds: number, pairs: number): void {
  if (pairs === 0) return;
  const spp = seconds / pairs;
  slot.secondsPerPair =
    slot.secondsPerPair === undefined ? spp : slot.secondsPerPair + EWMA_ALPHA * (spp - slot.secondsPerPair);
}

/** acc[tokens[r]] += partial[r] for every row r of width H. */
function addRows(acc: Float32Array, partial: Float32Array, tokens: Int32Array, H: number): void {
  for (let r = 0; r < tokens.length; r++) {
    const o = tokens[r]! * H;
    const p = r * H;
    for (let i = 0; i < H; i++) acc[o + i]! += partial[p + i]!;
  }
}
