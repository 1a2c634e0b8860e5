// What the commands that run a model share: session settings from the compute options, the early
// routing check, and --workers turned into a place for the experts (in this process, local worker
// processes this command starts and stops, or running workers at ws:// URLs).

import { assertRunnable } from '../../shared/model/checkpoint.js';
import { loadModelConfig } from '../../shared/model/config.js';
import { defaultSessionSettings, type SessionSettings } from '../../shared/onnx/session.js';
import { ProtocolError } from '../../shared/protocol/errors.js';
import { parseExpertSet } from '../../shared/protocol/expert-set.js';
import { DEFAULT_WIRE_DTYPE } from '../../shared/protocol/wire-dtype.js';
import { RoutingConfigError, RoutingSpecError } from '../../shared/routing/errors.js';
import { resolveRouting } from '../../shared/routing/profile.js';
import { logLineText } from '../../shared/runtime/logger.js';
import { DEFAULT_DISPATCH_TIMEOUT_MS } from '../cluster/dispatch-timeout.js';
import { type LocalCluster, type LocalWorker, startLocalCluster } from '../cluster/local-cluster.js';
import type { ExpertsOption } from '../engine/engine.js';
import { routingModelOfConfig } from '../moe/routing-model.js';
import {
  type ComputeOptions,
  checkPlacementFlags,
  type ExpertPlacementOptions,
  type WorkersArg,
} from './options.js';
import { flagValue, UsageError } from './usage-error.js';

export function sessionSettings(o: ComputeOptions): SessionSettings {
  const d = defaultSessionSettings();
  return {
    device: o.device ?? d.device,
    threads: o.threads ?? d.threads,
    expertWeights: o.expertWeights ?? d.expertWeights,
    ...(o.denseWeights === undefined ? {} : { denseWeights: o.denseWeights }),
  };
}

/**
 * Resolves a --routing policy against the model's config before anything heavy is loaded, so a
 * typo fails in milliseconds with the spec grammar in the message.
 */
export async function checkRouting(modelDir: string, routing: string | undefined): Promise<void> {
  if (routing === undefined) return;
  const config = await loadModelConfig(modelDir);
  // A spec string that does not parse or fit the model is a bad --routing value (usage, exit 2);
  // a profile file keeps its own error and hint.
  await flagValue('--routing', [RoutingSpecError, RoutingConfigError], () =>
    resolveRouting(routing, routingModelOfConfig(config)),
  );
}

/** `worker --experts`: a set that does not parse or names experts the model lacks is a usage error. */
export async function checkExpertSet(modelDir: string, experts: string): Promise<void> {
  const { numExperts } = await loadModelConfig(modelDir);
  await flagValue('--experts', [ProtocolError], () => parseExpertSet(experts, numExperts));
}

/**
 * Checks --workers / --wire / --dispatch-timeout / --expert-weights together, before any start (the
 * flags alone, checkPlacementFlags, were checked before the command loaded too).
 */
export async function checkPlacement(
  modelDir: string,
  workers: WorkersArg,
  o: ExpertPlacementOptions & ComputeOptions,
): Promise<void> {
  // A sparse synthetic checkpoint is refused before workers start on it.
  await assertRunnable(modelDir);
  if (workers.kind === 'count') {
    const { numExperts } = await loadModelConfig(modelDir);
    if (workers.n > numExperts) {
      throw new UsageError(`--workers ${workers.n} exceeds the model's ${numExperts} experts`);
    }
  }
  checkPlacementFlags(workers, o);
}

export interface PlacedExperts {
  readonly experts: ExpertsOption;
  /** The local worker processes this command started; the command stops them. */
  readonly cluster?: LocalCluster;
}

/**
 * Writes a local worker's log line to stderr as text, for the commands whose own output is text
 * (`generate`, `eval`); `serve` and `local-cluster` relay the records into their JSON stream.
 */
export function printWorkerLog(worker: number, line: string): void {
  // Warnings and errors only: a worker's startup info is noise next to the command's own output.
  if (logLevelOf(line) < WARN_LEVEL) return;
  process.stderr.write(`[worker ${worker}] kmoe worker: ${logLineText(line)}\n`);
}

/** pino's level number of warn. */
const WARN_LEVEL = 40;

/** The pino level of a worker's stderr line; a line that is not a pino record counts as a warning. */
function logLevelOf(line: string): number {
  try {
    const rec = line.startsWith('{') ? (JSON.parse(line) as { level?: unknown }) : undefined;
    if (typeof rec?.level === 'number') return rec.level;
  } catch {
    // not JSON: shown
  }
  return WARN_LEVEL;
}

/** Starts local workers if --workers asks for them; call checkPlacement first. */
export async function placeExperts(
  modelDir: string,
  workers: WorkersArg,
  o: ExpertPlacementOptions,
  settings: SessionSettings,
  events: {
    readonly onLog: (worker: number, line: string) => void;
    readonly onExit?: (w: LocalWorker, code: number | null, signal: NodeJS.Signals | null) => void;
  },
): Promise<PlacedExperts> {
  if (workers.kind === 'count' && workers.n === 0) return { experts: { kind: 'local' } };
  const remote = (urls: readonly string[], clusterToken: string | undefined): ExpertsOption => ({
    kind: 'remote',
    workers: urls,
    wireDtype: o.wire ?? DEFAULT_WIRE_DTYPE,
    timeoutMs: o.dispatchTimeout ?? DEFAULT_DISPATCH_TIMEOUT_MS,
    ...(clusterToken === undefined ? {} : { clusterToken }),
    ...(o.balance === undefined ? {} : { balance: o.balance }),
  });
  if (workers.kind === 'urls') return { experts: remote(workers.urls, o.clusterToken) };
  // Workers of this command only: authenticated with the cluster's token, or a random one of their
  // own, so no other local process can use them. This coordinator is their only client and waits
  // for every batch they compute, so they compute on their socket thread (one hand-off less each way).
  const cluster = await startLocalCluster({
    modelDir,
    workers: workers.n,
    compute: 'inline',
    device: settings.device,
    expertWeights: settings.expertWeights,
    auth: o.clusterToken === undefined ? { kind: 'generate' } : { kind: 'token', token: o.clusterToken },
    onLog: events.onLog,
    ...(events.onExit === undefined ? {} : { onExit: events.onExit }),
  });
  return { experts: remote(cluster.urls, cluster.clusterToken), cluster };
}
