// A worker's presence in the Redis registry (`kmoe worker --redis`): registers its record, refreshes
// it every heartbeat with the load it measured (pairs/s per expert, from its own metrics), and
// deregisters first when it drains. A Redis outage only pauses the heartbeat: the first heartbeat
// after Redis is back re-creates the record (and announces the join), so coordinators resync.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Redis } from 'ioredis';
import { RegistryError } from '../shared/cluster-registry/errors.js';
import {
  AUTO_LOCK_MS,
  DEFAULT_PREFIX,
  DEREGISTER_SCRIPT,
  HEARTBEAT_MS,
  REGISTER_SCRIPT,
  type RegistryKeys,
  registryKeys,
  UNLOCK_SCRIPT,
  WORKER_TTL_MS,
} from '../shared/cluster-registry/keys.js';
import {
  NO_LOAD,
  type WorkerLoad,
  type WorkerRecord,
  type WorkerStatus,
} from '../shared/cluster-registry/record.js';
import { chooseAutoExperts, expertView, readWorkers } from '../shared/cluster-registry/registry-reader.js';
import type { WorkerMetrics } from './metrics.js';

/** What the worker says about itself; the registrar adds status, heartbeat time and load. */
export type WorkerIdentity = Omit<WorkerRecord, 'status' | 'heartbeatAt' | 'load'>;

export function newWorkerId(): string {
  return `${hostname()}-${process.pid}-${randomBytes(3).toString('hex')}`;
}

export interface RegistrarOptions {
  readonly redis: Redis;
  readonly identity: WorkerIdentity;
  readonly prefix?: string;
  readonly heartbeatMs?: number;
  readonly ttlMs?: number;
  /** Warnings (a failed heartbeat), already free of secrets. */
  readonly onWarn: (message: string) => void;
}

export class Registrar {
  private readonly keys: RegistryKeys;
  private status: WorkerStatus = 'loading';
  private timer: NodeJS.Timeout | undefined;
  private metrics: WorkerMetrics | undefined;
  private meter: LoadMeter | undefined;
  private load: WorkerLoad = NO_LOAD;
  private failing = false;
  private beating: Promise<void> = Promise.resolve();
  private experts: readonly number[];
  private url: string;

  constructor(private readonly o: RegistrarOptions) {
    this.keys = registryKeys(o.prefix ?? DEFAULT_PREFIX);
    this.experts = o.identity.experts;
    this.url = o.identity.url;
  }

  get id(): string {
    return this.o.identity.id;
  }

  /**
   * `--experts auto`: under the registry's choice lock, reads which experts live workers hold and
   * their load, picks `count` (uncovered first, then the busiest) and registers them as `loading`
   * so that a second auto worker starting at the same time picks others.
   */
  async claimAuto(count: number, numExperts: number): Promise<number[]> {
    return this.underChoiceLock(async () => {
      const others = (await readWorkers(this.o.redis, this.o.prefix)).filter(
        (w) => w.fingerprint === this.o.identity.fingerprint,
      );
      return chooseAutoExperts(expertView(others, numExperts), count);
    });
  }

  /**
   * `--experts SET`: registers the set as `loading` before the weights load, under the same lock,
   * so that an auto worker choosing meanwhile counts it as held (before, an explicit worker was
   * registered only once loaded, and an auto worker started beside it took the same experts).
   */
  async claim(experts: readonly number[]): Promise<void> {
    await this.underChoiceLock(async () => [...experts]);
  }

  /** Chooses under the registry's choice lock and registers the choice as `loading`, kept alive by the heartbeat. */
  private async underChoiceLock(choose: () => Promise<number[]>): Promise<number[]> {
    const { redis } = this.o;
    const token = randomBytes(8).toString('hex');
    const deadline = Date.now() + 3 * AUTO_LOCK_MS;
    while ((await redis.set(this.keys.autoLock, token, 'PX', AUTO_LOCK_MS, 'NX')) !== 'OK') {
      if (Date.now() > deadline)
        throw new RegistryError("another worker held the registry's expert-choice lock for too long", {
          hint: 'retry: a worker starting with --redis holds it only while it registers its experts',
        });
      await new Promise((r) => setTimeout(r, 50));
    }
    try {
      const experts = await choose();
      this.experts = experts;
      await this.beat();
      // The claim must outlive the loading (minutes for a big model), not just one TTL.
      this.heartbeat();
      return experts;
    } finally {
      await redis.eval(UNLOCK_SCRIPT, 1, this.keys.autoLock, token);
    }
  }

  /** Registers as ready at `url` and starts the heartbeat; the load comes from `metrics`. */
  async start(status: WorkerStatus, metrics: WorkerMetrics | undefined, url: string): Promise<void> {
    this.status = status;
    this.url = url;
    if (metrics) {
      this.metrics = metrics;
      this.meter = new LoadMeter();
    }
    await this.beat();
    this.heartbeat();
  }

  private heartbeat(): void {
    this.timer ??= setInterval(() => {
      this.beating = this.beat().catch(() => {});
    }, this.o.heartbeatMs ?? HEARTBEAT_MS);
    this.timer.unref();
  }

  /** The worker loaded or unloaded experts: its record says so from now on (written at once). */
  async setExperts(experts: readonly number[]): Promise<void> {
    this.experts = [...experts];
    await this.beating;
    this.beating = this.beat().catch(() => {});
    await this.beating;
  }

  /** Drain, step one: the record goes and coordinators are told; the heartbeat stops. */
  async deregister(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.status = 'draining';
    await this.beating;
    await this.o.redis.eval(DEREGISTER_SCRIPT, 2, this.keys.worker(this.id), this.keys.events, this.id);
  }

  record(): WorkerRecord {
    return {
      ...this.o.identity,
      url: this.url,
      experts: [...this.experts],
      status: this.status,
      heartbeatAt: Date.now(),
      load: this.load,
    };
  }

  private async beat(): Promise<void> {
    if (this.metrics && this.meter) this.load = await this.meter.sample(this.metrics);
    try {
      await this.o.redis.eval(
        REGISTER_SCRIPT,
        2,
        this.keys.worker(this.id),
        this.keys.events,
        JSON.stringify(this.record()),
        String(this.o.ttlMs ?? WORKER_TTL_MS),
        this.id,
      );
      if (this.failing) this.o.onWarn('registry reachable again: registered');
      this.failing = false;
    } catch (err) {
      if (!this.failing)
        this.o.onWarn(`heartbeat failed (serving continues; retrying): ${(err as Error).message}`);
      this.failing = true;
      throw err;
    }
  }
}

/** Pairs/s and tokens/s since the previous sample, from the worker's Prometheus counters. */
class LoadMeter {
  private last = {
    at: performance.now(),
    tokens: 0,
    experts: new Map<number, number>(),
    layers: new Map<string, number>(),
  };

  async sample(metrics: WorkerMetrics): Promise<WorkerLoad> {
    const at = performance.now();
    const experts = new Map<number, number>();
    const layers = new Map<string, number>();
    const activations = await metrics.registry
      .getSingleMetric('kmoe_worker_expert_token_activations_total')
      ?.get();
    for (const v of activations?.values ?? []) {
      const e = Number(v.labels.expert);
      experts.set(e, (experts.get(e) ?? 0) + v.value);
      layers.set(`${v.labels.layer} ${e}`, v.value);
    }
    const tokensMetric = await metrics.registry.getSingleMetric('kmoe_worker_tokens_total')?.get();
    const tokens = (tokensMetric?.values ?? []).reduce((a, v) => a + v.value, 0);
    const seconds = Math.max((at - this.last.at) / 1000, 1e-3);
    const perExpert: [number, number][] = [];
    let pairs = 0;
    for (const [e, n] of [...experts].sort((a, b) => a[0] - b[0])) {
      const d = n - (this.last.experts.get(e) ?? 0);
      if (d > 0) perExpert.push([e, round(d / seconds)]);
      pairs += d;
    }
    const perLayer: [number, number, number][] = [];
    for (const [key, n] of layers) {
      const d = n - (this.last.layers.get(key) ?? 0);
      const [l, e] = key.split(' ').map(Number) as [number, number];
      if (d > 0) perLayer.push([l, e, round(d / seconds)]);
    }
    perLayer.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const load = {
      pairsPerSec: round(pairs / seconds),
      tokensPerSec: round((tokens - this.last.tokens) / seconds),
      experts: perExpert,
      layers: perLayer,
    };
    this.last = { at, tokens, experts, layers };
    return load;
  }
}

function round(x: number): number {
  return Math.round(x * 100) / 100;
}
