// `kmoe serve`: the OpenAI-compatible HTTP server. Starts local expert workers (or connects to
// remote ones, or runs experts in-process), the engine and the continuous-batching scheduler,
// prints the URL, and shuts down gracefully on SIGTERM/SIGINT.

import os from 'node:os';
import { basename, resolve } from 'node:path';
import type { Registry } from 'prom-client';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { formatExpertSet } from '../../../shared/protocol/expert-set.js';
import { frameMib } from '../../../shared/protocol/frame-capacity.js';
import { addLatest, setLatest } from '../../../shared/runtime/latest.js';
import { LineBudget } from '../../../shared/runtime/line-budget.js';
import { relayLogLine } from '../../../shared/runtime/logger.js';
import { maskUrl } from '../../../shared/runtime/mask-url.js';
import { checkCanListen } from '../../../shared/runtime/port.js';
import { stopWithParent } from '../../../shared/runtime/stop-with-parent.js';
import { ClusterHealth } from '../../cluster/cluster-health.js';
import { type Membership, StaticMembership } from '../../cluster/membership.js';
import { registerClusterMetrics } from '../../cluster/registry/cluster-metrics.js';
import { MemberChanges } from '../../cluster/registry/member-changes.js';
import { RedisMembership } from '../../cluster/registry/redis-membership.js';
import { startFromRegistry } from '../../cluster/registry/registry-start.js';
import type { ExpertsOption } from '../../engine/engine.js';
import { EngineClient } from '../../engine/engine-client.js';
import { describeHostCheck, unusedAllowedHosts } from '../../server/host-check.js';
import type { LogLevel } from '../../server/log-levels.js';
import { createLogger } from '../../server/logger.js';
import { startServing } from '../../server/serving.js';
import { checkPlacement, checkRouting, placeExperts, sessionSettings } from '../experts.js';
import { type ComputeOptions, type ExpertPlacementOptions, singleRouting } from '../options.js';
import { smallFramesMessage } from '../worker-notices.js';

export interface ServeOptions extends ComputeOptions, ExpertPlacementOptions {
  readonly model: string;
  readonly host: string;
  readonly port: number;
  readonly routing?: string[];
  readonly profiles?: string[];
  readonly maxRunning: number;
  readonly maxQueued: number;
  readonly prefillChunk: number;
  readonly servedModelName?: string;
  readonly shutdownTimeout: number;
  /** Open HTTP connections at once; Node closes any beyond. */
  readonly maxConnections: number;
  /** Open HTTP connections from one client address at once; 0: no cap. */
  readonly maxConnectionsPerClient: number;
  readonly logLevel: LogLevel;
  /** --api-key / --api-key-file: required on /v1/* as `Authorization: Bearer KEY`. */
  readonly apiKey?: string;
  /** --max-body-memory: bytes request bodies still arriving may hold at once. */
  readonly maxBodyMemory: number;
  /** --allowed-hosts: Host names a loopback server without a key answers besides loopback ones. */
  readonly allowedHosts?: string[];
  /** Redis registry to take the workers from (and follow while serving), instead of --workers. */
  readonly redis?: string;
  /** --redis-ca: PEM CA certificate(s) the rediss:// server's certificate must chain to. */
  readonly redisCa?: string;
  readonly overlap?: boolean;
}

/** The largest body read: a prompt as long as any supported context fits easily. */
const BODY_LIMIT_BYTES = 8 * 1024 * 1024;

/** Departed worker URLs remembered so that their connection's close is logged as expected. */
const DEPARTURES_KEPT = 1000;

/** Local worker processes when --workers is not given. */
export const DEFAULT_SERVE_WORKERS = 2;

/**
 * The coordinator's default onnxruntime threads: all cores but one, which stays with the event loop
 * (HTTP, scheduling, streaming). On the 2-core machine A (1 thread against 2) that was 1.15-1.25x
 * the tokens/s in process at 1, 4 and 16 streams and 0.99-1.16x with 2 local workers
 * (docs/performance.md section 4).
 */
function servingThreads(): number {
  return Math.max(1, os.availableParallelism() - 1);
}

export async function run(o: ServeOptions): Promise<number> {
  const modelDir = o.model;
  // Listen for signals from the start: a SIGTERM during startup shuts down right after it
  // instead of killing the process with its worker processes orphaned.
  const stop = new Promise<NodeJS.Signals>((resolveSignal) => {
    for (const signal of ['SIGTERM', 'SIGINT'] as const) process.on(signal, () => resolveSignal(signal));
  });
  stopWithParent();
  const { host, port, maxRunning, maxQueued, prefillChunk } = o;
  const graceMs = o.shutdownTimeout * 1000;
  const servedModelName = o.servedModelName ?? basename(resolve(modelDir));
  const settings = sessionSettings({ ...o, threads: o.threads ?? servingThreads() });
  const log = createLogger(o.logLevel);
  const routingArg = singleRouting(o.routing);
  const profiles = o.profiles ?? [];
  // Bad routing, placement or a taken port fail here, in milliseconds, before workers or the
  // engine start.
  await checkRouting(modelDir, routingArg);
  for (const profile of profiles) await checkRouting(modelDir, profile);
  let workers = o.workers ?? { kind: 'count', n: o.redis === undefined ? DEFAULT_SERVE_WORKERS : 0 };
  if (o.redis !== undefined) workers = { kind: 'urls', urls: [] };
  await checkPlacement(modelDir, workers, o);
  await checkCanListen(host, port);

  let registry: RedisMembership | undefined;
  let numExperts = 0;
  if (o.redis !== undefined) {
    const ckpt = await Checkpoint.open(modelDir);
    const fingerprint = ckpt.fingerprint();
    numExperts = ckpt.config.numExperts;
    await ckpt.close();
    registry = await RedisMembership.start({
      url: o.redis,
      ...(o.redisCa === undefined ? {} : { ca: o.redisCa }),
      fingerprint,
      numExperts,
      log: { info: (m) => log.info(m), warn: (m) => log.warn(m) },
    });
    log.info({ registry: maskUrl(o.redis) }, 'waiting until registered workers cover every expert');
  }

  if (workers.kind === 'count' && workers.n > 0)
    log.info({ workers: workers.n }, 'starting local expert workers');
  const placed = await placeExperts(modelDir, workers, o, settings, {
    onLog: (worker, line) => relayLogLine(log, line, { worker }),
    onExit: (w, code, signal) => {
      log.error(
        { worker: w.index, code, signal },
        'a local expert worker exited; experts are no longer covered',
      );
    },
  });
  const { cluster } = placed;
  // From a registry a URL that answers TCP may still not be a kmoe worker of this model (a stale or
  // foreign record): start with the workers that complete the handshake; the membership retries the
  // rest. Each must be registered under the URL dialled, not reached there through a relay.
  const experts: ExpertsOption =
    registry && placed.experts.kind === 'remote'
      ? { ...placed.experts, skipFailed: true, fromRegistry: true }
      : placed.experts;
  const membership: Membership =
    registry ?? cluster?.membership ?? new StaticMembership(workers.kind === 'urls' ? workers.urls : []);
  const startEngine = (urls?: readonly string[]) =>
    EngineClient.start({
      modelDir,
      settings,
      experts: urls === undefined || experts.kind !== 'remote' ? experts : { ...experts, workers: urls },
      ...(routingArg === undefined ? {} : { defaultRouting: routingArg }),
      ...(o.overlap === true ? { overlap: true } : {}),
    });

  let engine: EngineClient | undefined;
  let shuttingDown = false;
  let health: ClusterHealth | undefined;
  try {
    if (registry) {
      const r = await startFromRegistry({
        members: registry,
        numExperts,
        start: startEngine,
        dispose: (e) => e.close(),
        stop,
        log: { info: (f, m) => log.info(f, m), warn: (f, m) => log.warn(f, m) },
      });
      if ('signal' in r) {
        log.info({ signal: r.signal }, 'stopped before the workers covered the experts');
        return 0;
      }
      engine = r.started;
    } else engine = await startEngine();
    const description = engine.info.experts;
    const client = engine;
    // A worker that left the registry (drained) closes its connection as expected: not an error.
    // The latest departures only: a registry can churn through thousands of URLs.
    const departed = new Set<string>();
    registry?.onLeave((e) => addLatest(departed, e.url, DEPARTURES_KEPT));
    registry?.onJoin((e) => departed.delete(e.url));
    client.onWorkerDown((e) => {
      if (departed.has(e.url))
        log.info(
          { worker: e.url, reason: e.reason },
          'a worker that left the registry closed its connection',
        );
      // Connections that close once shutdown has begun are expected, not errors.
      else if (shuttingDown) log.info({ worker: e.url, reason: e.reason }, 'worker connection closed');
      // A worker that drained was stopped on purpose; its experts may still be missing until it is back.
      else if (e.drained)
        log.warn(
          { worker: e.url, reason: e.reason },
          'a worker that drained (it was stopped) closed its connection; reconnecting with backoff',
        );
      else
        log.error(
          { worker: e.url, reason: e.reason },
          'lost the connection to a worker; reconnecting with backoff',
        );
    });
    // Why a worker stays out (refused, another model, silent): once per reason (at most 3) until it
    // connects. The last one said per URL, so that a join failing the same way is not said again.
    const unreachable = new Map<string, string>();
    client.onWorkerUnreachable((e) => {
      log.warn(
        {
          worker: e.url,
          err: e.reason,
          ...(e.reasonsNotLogged === undefined ? {} : { reasonsNotLogged: e.reasonsNotLogged }),
        },
        'a worker could not be connected; retrying with backoff',
      );
      setLatest(unreachable, e.url, e.reason, DEPARTURES_KEPT);
    });
    // A worker that left is forgotten: a new one at its URL failing the same way is news.
    registry?.onLeave((e) => unreachable.delete(e.url));
    // A worker's holdings notices are its own to send: said 3 at once, then one a minute per worker
    // (a review's worker sent 8,400 a second, each a log line).
    const holdingsBudgets = new Map<string, LineBudget>();
    client.onWorkerUp((e) => {
      unreachable.delete(e.url);
      if (e.why === 'holdings') {
        const budget = holdingsBudgets.get(e.url) ?? new LineBudget(3, 60_000);
        setLatest(holdingsBudgets, e.url, budget, DEPARTURES_KEPT);
        const said = budget.take();
        if (said.say)
          log.info(
            {
              worker: e.url,
              experts: formatExpertSet(e.experts),
              ...(said.held > 0 ? { changesNotLogged: said.held } : {}),
            },
            'a worker changed its experts: routing by its new set',
          );
      } else log.info({ worker: e.url, experts: formatExpertSet(e.experts) }, 'connected to a worker');
    });
    // Said here too (the worker says it when it starts): its operator may not be this one.
    client.onWorkerSmallFrames((e) =>
      log.warn(
        {
          worker: e.url,
          tokens: e.tokens,
          maxFrameMb: frameMib(e.maxFrameBytes),
          experts: e.held,
          wire: e.wire,
        },
        `a worker's frame limit ${smallFramesMessage(e)}`,
      ),
    );
    health = ClusterHealth.watch({
      description,
      numExperts: engine.info.numExperts,
      placement: engine.info.placement,
      membership,
      connections: (listener) => client.onWorkerDown(listener),
      connectionsUp: (listener) => client.onWorkerUp(listener),
      reportsExits: cluster !== undefined,
    });
    // Every listener of the engine's worker events is in: it keeps no more of them.
    client.forgetPastWorkerEvents();
    const cover = health;
    // Membership drives the engine's connection set while requests run; the engine's own
    // reconnects (and these joins) reach /ready through onWorkerUp.
    if (registry)
      followMembership(
        registry,
        client,
        cover,
        engine.info.placement.map((w) => w.url),
        log,
        (url, message) => unreachable.get(url) === message,
      );
    else {
      membership.onJoin((e) => {
        client
          .joinWorker(e.url)
          .catch((err: unknown) =>
            log.warn(
              { worker: e.url, err: (err as Error).message },
              'a joining worker is not reachable yet; retrying',
            ),
          );
      });
      membership.onLeave((e) => {
        client.leaveWorker(e.url).catch(() => {});
      });
    }
    const serving = await startServing(
      engine,
      {
        modelDir,
        host,
        port,
        servedModelName,
        profiles,
        maxRunning,
        maxQueued,
        prefillChunk,
        bodyLimitBytes: BODY_LIMIT_BYTES,
        bodyBudgetBytes: o.maxBodyMemory,
        maxConnections: o.maxConnections,
        maxConnectionsPerClient: o.maxConnectionsPerClient,
        experts: () => cover.coverage(),
        ...(o.apiKey === undefined ? {} : { apiKey: o.apiKey }),
        ...(o.allowedHosts === undefined ? {} : { allowedHosts: o.allowedHosts }),
        ...(registry
          ? { registerMetrics: (r: Registry) => registerClusterMetrics(r, registry, client.info.fingerprint) }
          : {}),
      },
      log,
    );
    const unusedHosts = unusedAllowedHosts(o.apiKey !== undefined, o.allowedHosts ?? []);
    if (unusedHosts !== undefined) log.warn(unusedHosts);
    log.info(
      {
        url: serving.url,
        model: servedModelName,
        experts: description,
        routing: engine.info.defaultRouting,
        apiKey: o.apiKey === undefined ? 'none: /v1 is open to anyone who can reach it' : 'required on /v1',
        hosts: describeHostCheck(serving.hostCheck),
        threads: settings.threads,
        workerAuth:
          experts.kind === 'local'
            ? 'no workers'
            : experts.clusterToken === undefined
              ? 'none (loopback workers only)'
              : 'cluster token',
      },
      'serving',
    );
    process.stdout.write(`kmoe serve listening on ${serving.url}\n`);
    const signal = await stop;
    shuttingDown = true;
    log.info({ signal, graceMs }, 'shutting down: no new requests, draining in-flight ones');
    const report = await serving.shutdown(graceMs);
    log.info({ cancelled: report.cancelled }, 'drained');
  } finally {
    shuttingDown = true;
    health?.close();
    await registry?.close();
    await engine?.close();
    await cluster?.stop();
  }
  log.info('stopped');
  return 0;
}

/**
 * Applies the registry's joins and leaves to the engine (connect, route; stop routing) and to the
 * cluster health: the changes of one URL in arrival order, those of different URLs side by side
 * (member-changes.ts, at most 8 joins at a time), so a few records whose URLs never answer
 * delay no other worker's join (more than 8 do, by a handshake bound per 8; their background
 * retries afterwards do not: handshake-places.ts). Changes
 * that happened while the engine was starting are applied first: the past leaves, then the members
 * the engine does not know yet.
 */
function followMembership(
  registry: RedisMembership,
  engine: EngineClient,
  health: ClusterHealth,
  connected: readonly string[],
  log: ReturnType<typeof createLogger>,
  saidUnreachable: (url: string, message: string) => boolean,
): void {
  const changes = new MemberChanges((url, err) =>
    log.error({ worker: url, err: (err as Error).message }, 'a registry change could not be applied'),
  );
  // Read once, below: the workers connected at start-up, so that their records are not joined again.
  const known = new Set(connected);
  const join = (url: string, reason: string) => {
    changes.join(url, async () => {
      try {
        const w = await engine.joinWorker(url);
        health.joined(url, w.experts);
        log.info({ worker: url, experts: w.experts, reason }, 'worker joined: routing to it');
      } catch (err) {
        const message = (err as Error).message;
        // Its background retry just said the same (a worker back at a member's URL, refused again).
        if (saidUnreachable(url, message))
          log.debug({ worker: url, err: message }, 'a registered worker could not be connected');
        else log.error({ worker: url, err: message }, 'a registered worker could not be connected');
      }
    });
  };
  registry.onLeave((e) => {
    changes.leave(e.url, async () => {
      const had = await engine.leaveWorker(
        e.url,
        e.expired === true ? `is gone from the registry (${e.reason})` : undefined,
      );
      if (had) log.info({ worker: e.url, reason: e.reason }, 'worker left: routing nothing more to it');
    });
  });
  for (const url of registry.members()) if (!known.has(url)) join(url, 'registered while the engine started');
  registry.onJoin((e) => join(e.url, e.reason));
}
