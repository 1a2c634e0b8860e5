// `kmoe worker`: host some experts of a model (all layers) and answer dispatches over WebSockets.
// Prints one ready line on stdout when it accepts connections; logs go to stderr; SIGTERM or
// SIGINT closes the connections and exits 0. The CLI parses the command line; this module takes
// typed options and imports nothing from the coordinator.

import { networkInterfaces } from 'node:os';
import type { Redis } from 'ioredis';
import { HEARTBEAT_MS, POLL_MS } from '../shared/cluster-registry/keys.js';
import { connectRegistry } from '../shared/cluster-registry/redis-connection.js';
import { Checkpoint } from '../shared/model/checkpoint.js';
import { loadModelConfig } from '../shared/model/config.js';
import type { SessionSettings } from '../shared/onnx/session.js';
import { ClusterSecret } from '../shared/protocol/auth.js';
import type { ComputePlacement } from '../shared/protocol/compute-placement.js';
import { ProtocolError } from '../shared/protocol/errors.js';
import { formatExpertSet, parseExpertSet } from '../shared/protocol/expert-set.js';
import { fewTokensWarning } from '../shared/protocol/frame-capacity.js';
import { formatReadyLine, type WorkerAuthMode } from '../shared/protocol/ready-line.js';
import { isLoopbackOrUnspecified } from '../shared/protocol/worker-url.js';
import { SchedulingError, useBatchScheduling } from '../shared/runtime/batch-scheduling.js';
import { createProcessLogger } from '../shared/runtime/logger.js';
import { maskUrl } from '../shared/runtime/mask-url.js';
import { checkCanListen, isLoopbackHost } from '../shared/runtime/port.js';
import { stopWithParent } from '../shared/runtime/stop-with-parent.js';
import { ExpertCommands } from './expert-commands.js';
import { ExpertCompute } from './expert-compute.js';
import { newWorkerId, Registrar } from './registrar.js';
import { DEFAULT_MAX_FRAME_BYTES, WorkerServer } from './server.js';

export const DEFAULT_WORKER_PORT = 7070;
export const DEFAULT_MAX_FRAME_MB = DEFAULT_MAX_FRAME_BYTES / 2 ** 20;

/** `--experts auto[:N]`: N experts chosen by the registry (default: half the model's, at least 1). */
export type ExpertChoice =
  | { readonly kind: 'set'; readonly set: string }
  | { readonly kind: 'auto'; readonly count?: number };

/** After deregistering, how long coordinators get to stop routing here before connections close. */
const DRAIN_NOTICE_MS = POLL_MS + HEARTBEAT_MS;

export interface WorkerCommandOptions {
  readonly model: string;
  readonly experts: ExpertChoice;
  /** Registry to register in (`--redis`); required by `--experts auto`. */
  readonly redis?: string;
  /** PEM CA certificate(s) for a rediss:// registry (`--redis-ca`). */
  readonly redisCa?: string;
  /** The ws:// URL coordinators should use (behind NAT); default: the listen address. */
  readonly advertiseUrl?: string;
  readonly host: string;
  readonly port: number;
  readonly maxFrameMb: number;
  /** WebSocket connections at once (handshaking or greeted); beyond, HTTP 503. */
  readonly maxConnections: number;
  readonly maxConnectionsPerClient: number;
  /** Seconds the requests already sent get to finish on SIGTERM/SIGINT (`--shutdown-timeout`). */
  readonly shutdownTimeout: number;
  readonly settings: SessionSettings;
  /** Where the experts compute (`--compute`); `inline` only for a worker without --redis. */
  readonly compute: ComputePlacement;
  /**
   * Scheduling policy of this process (`--sched`): batch = SCHED_BATCH or fail (see
   * shared/runtime/batch-scheduling.ts); auto = SCHED_BATCH where it can be set, else normal with a
   * warning saying why.
   */
  readonly sched: 'normal' | 'batch' | 'auto';
  /**
   * Every coordinator must prove it holds this token. Without one the CLI allows a loopback --host
   * only, unless --insecure (then this warns).
   */
  readonly clusterToken?: string;
}

export async function run(o: WorkerCommandOptions): Promise<number> {
  const { model: modelDir, host, port, settings } = o;
  const maxFrameBytes = Math.round(o.maxFrameMb * 2 ** 20);
  const config = await loadModelConfig(modelDir);
  // A taken port fails now, not after the experts are loaded.
  await checkCanListen(host, port);

  const log = createProcessLogger('kmoe-worker');
  if (o.sched !== 'normal') {
    // Before any compute thread exists: threads created later inherit the policy.
    try {
      useBatchScheduling();
      log.info('scheduling policy SCHED_BATCH: a request does not preempt the coordinator that sent it');
    } catch (err) {
      if (o.sched === 'batch' || !(err instanceof SchedulingError)) throw err;
      log.warn(`scheduling policy left at normal (--sched auto): ${err.message}`);
    }
  }
  const secret = o.clusterToken === undefined ? undefined : new ClusterSecret(o.clusterToken);
  const auth: WorkerAuthMode = secret ? 'token' : isLoopbackHost(host) ? 'loopback-only' : 'insecure';
  if (auth === 'token') log.info('coordinators must prove the cluster token');
  else if (auth === 'loopback-only')
    log.info(
      `no cluster token: listening on loopback (${host}) only, for coordinators on this machine; set KMOE_CLUSTER_TOKEN or --cluster-token-file to accept other hosts`,
    );
  else
    log.warn(
      `INSECURE: no cluster token and listening on ${host} (--insecure): anyone who can reach this port can submit work; set KMOE_CLUSTER_TOKEN or --cluster-token-file`,
    );
  let redis: Redis | undefined;
  let registrar: Registrar | undefined;
  let experts: readonly number[];
  try {
    if (o.redis !== undefined) {
      const url = o.redis;
      redis = await connectRegistry(url, {
        ...(o.redisCa === undefined ? {} : { ca: o.redisCa }),
        onError: (m) => log.warn(`registry unreachable (serving continues): ${m}`),
        onReady: () => log.info(`registry ${maskUrl(url)} reachable again`),
      });
      const ckpt = await Checkpoint.open(modelDir);
      const fingerprint = ckpt.fingerprint();
      await ckpt.close();
      registrar = new Registrar({
        redis,
        identity: {
          id: newWorkerId(),
          url: o.advertiseUrl ?? '',
          experts: o.experts.kind === 'set' ? parseExpertSet(o.experts.set, config.numExperts) : [],
          numExperts: config.numExperts,
          device: settings.device,
          expertWeights: settings.expertWeights,
          threads: settings.threads,
          fingerprint,
          startedAt: Date.now(),
        },
        onWarn: (m) => log.warn(m),
      });
      log.info(`registry ${maskUrl(url)}: registering as ${registrar.id}`);
    }
    if (o.experts.kind === 'auto') {
      if (!registrar) throw new Error('--experts auto needs --redis (the CLI checks this)');
      const count = o.experts.count ?? Math.max(1, Math.ceil(config.numExperts / 2));
      if (count > config.numExperts)
        throw new ProtocolError(
          'bad-value',
          `--experts auto:${count} asks for more experts than the model has (${config.numExperts})`,
          { hint: `give auto:N with N at most ${config.numExperts}` },
        );
      experts = await registrar.claimAuto(count, config.numExperts);
      log.info(`--experts auto: the registry chose ${formatExpertSet(experts)}`);
    } else {
      experts = parseExpertSet(o.experts.set, config.numExperts);
      // Registered as loading now, not once loaded: auto workers starting meanwhile take others.
      await registrar?.claim(experts);
    }
  } catch (err) {
    redis?.disconnect();
    throw err;
  }
  const started = performance.now();
  log.info(
    `loading experts ${formatExpertSet(experts)} of ${config.numExperts} (${config.numLayers} layers, ${settings.expertWeights} weights) from ${modelDir}`,
  );
  let compute: ExpertCompute | undefined;
  let server: WorkerServer;
  let commands: ExpertCommands | undefined;
  try {
    compute = await ExpertCompute.start({ modelDir, experts, settings }, o.compute);
    server = await WorkerServer.start({
      host,
      port,
      maxFrameBytes,
      maxConnections: o.maxConnections,
      maxConnectionsPerClient: o.maxConnectionsPerClient,
      compute,
      log,
      ...(secret === undefined ? {} : { secret }),
      // The URL registered is the one coordinators dial: with a token, the only one accepted.
      ...(registrar === undefined
        ? {}
        : { advertise: (listenUrl: string) => o.advertiseUrl ?? advertisedUrl(host, listenUrl, log) }),
    });
    if (registrar && secret) {
      log.info(`coordinators must dial ${server.advertisedUrl}: the URL this worker registers`);
      if (isLoopbackOrUnspecified(server.advertisedUrl!))
        log.warn(
          `${server.advertisedUrl} is a loopback or unspecified address: a coordinator on another host dials its own, so binding the handshake to this URL stops no relay there; give --advertise-url the address other hosts reach this worker by, unless every coordinator runs on this host`,
        );
    }
    await registrar?.start('ready', server.metrics, server.advertisedUrl!);
    if (registrar && redis && o.redis !== undefined)
      commands = ExpertCommands.start({
        redisUrl: o.redis,
        ...(o.redisCa === undefined ? {} : { redisCa: o.redisCa }),
        registrar,
        redis,
        compute,
        server,
        log,
      });
  } catch (err) {
    await commands?.close();
    await registrar?.deregister().catch(() => {});
    redis?.disconnect();
    await compute?.close();
    throw err;
  }
  const mb = (compute.model.bytesRead / 2 ** 20).toFixed(1);
  log.info(
    `loaded in ${((performance.now() - started) / 1000).toFixed(1)} s (${mb} MiB of the checkpoint read)`,
  );
  const few = fewTokensWarning({
    maxFrameBytes,
    hidden: compute.model.hidden,
    numExperts: config.numExperts,
    held: compute.model.experts.length,
  });
  if (few !== undefined) log.warn(few);

  const unwatch = stopWithParent();
  // Handlers first, then the ready line: whoever reads the line may send SIGTERM at once, and
  // before a handler exists that would kill the process instead of closing it.
  const stop = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
    // Started by local-cluster or serve: the IPC channel closes when that parent dies, however it
    // died (even SIGKILL), so an orphaned worker does not keep its port and memory.
    process.once('disconnect', () => resolve('parent process exited'));
  });
  process.stdout.write(`${formatReadyLine({ url: server.url, experts: compute.model.experts, auth })}\n`);
  const reason = await stop;
  unwatch();
  // Leave the registry first (coordinators see the leave event at once, or at their next poll),
  // then drain: connected coordinators are told to send no new work; what they sent is answered.
  // No expert loads or unloads while leaving: a command being applied finishes first.
  await commands?.close();
  if (registrar) {
    log.info(`${reason}: deregistering`);
    await registrar.deregister().catch((err: Error) => log.warn(`deregistering failed: ${err.message}`));
  }
  await commands?.deleteQueue();
  const drains = reason === 'SIGTERM' || reason === 'SIGINT';
  const drainMs = drains ? o.shutdownTimeout * 1000 : 0;
  // The answers to what coordinators sent must also get out before the close frames: same deadline.
  const shutdownDeadline = performance.now() + drainMs;
  if (drains) {
    log.info(`${reason}: draining (coordinators told to send no new work)`);
    const drained = await server.drain(reason, drainMs);
    if (!drained) log.warn(`requests still running after ${drainMs} ms (--shutdown-timeout): closing anyway`);
  } else if (registrar) {
    // No drain notice (the parent is gone): give registry-polling coordinators time to stop routing here.
    await new Promise((r) => setTimeout(r, DRAIN_NOTICE_MS));
  }
  redis?.disconnect();
  log.info(`${reason}: closing`);
  await server.close(Math.max(0, shutdownDeadline - performance.now()));
  await compute.close();
  if (process.connected) process.disconnect();
  if (commands?.redisUnanswered) {
    // Everything is closed but BullMQ's reconnecting Redis clients, which cannot be stopped while
    // Redis does not answer: exit once this command has returned, instead of waiting for Redis.
    log.warn('Redis did not answer: exiting without closing the command queue connections');
    setTimeout(() => process.exit(process.exitCode ?? 0), 1000).unref();
  }
  return 0;
}

/**
 * The URL to register when --advertise-url is not given: the listen URL, except that a wildcard
 * bind (0.0.0.0, ::) is replaced by this host's first external IPv4 address, which other hosts
 * can dial (say so: behind NAT it is the wrong one, and --advertise-url is the fix).
 */
function advertisedUrl(host: string, listenUrl: string, log: { warn(m: string): void }): string {
  if (host !== '0.0.0.0' && host !== '::') return listenUrl;
  const external = Object.values(networkInterfaces())
    .flat()
    .find((a) => a !== undefined && a.family === 'IPv4' && !a.internal);
  if (!external) return listenUrl;
  const url = listenUrl.replace(/^ws:\/\/[^/]*:(\d+)$/, `ws://${external.address}:$1`);
  log.warn(
    `listening on ${host}: registering ${url} (give --advertise-url if coordinators must dial another address)`,
  );
  return url;
}
