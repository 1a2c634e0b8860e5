// Command-line parsing shared by every kmoe subcommand: node's parseArgs plus typed, validated
// conversions whose errors name the flag.

import { parseArgs } from 'node:util';
import { UsageError } from '../../shared/errors/usage-error.js';
import { loadModelConfig } from '../../shared/model/config.js';
import { EXPERT_WEIGHT_FORMATS, type ExpertWeightFormat } from '../../shared/onnx/expert-weight-format.js';
import type { Device, SessionSettings } from '../../shared/onnx/session.js';
import { defaultSessionSettings } from '../../shared/onnx/session.js';
import { DEFAULT_WIRE_DTYPE, isWireDType, WIRE_DTYPES } from '../../shared/protocol/wire-dtype.js';
import { resolveRouting } from '../../shared/routing/profile.js';
import { DEFAULT_DISPATCH_TIMEOUT_MS } from '../cluster/remote-expert-backend.js';
import type { ExpertsOption } from '../engine/engine.js';

export type OptionSpec = Record<string, { type: 'string' | 'boolean'; short?: string; multiple?: boolean }>;

export interface Parsed {
  readonly values: Record<string, string | boolean | string[] | boolean[] | undefined>;
  readonly positionals: string[];
}

export function parse(argv: readonly string[], options: OptionSpec, allowPositionals = false): Parsed {
  try {
    const { values, positionals } = parseArgs({ args: [...argv], options, allowPositionals, strict: true });
    return { values: values as Parsed['values'], positionals };
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
}

export function str(p: Parsed, name: string): string | undefined {
  const v = p.values[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string') throw new UsageError(`--${name} takes a value`);
  return v;
}

export function required(p: Parsed, name: string): string {
  const v = str(p, name);
  if (v === undefined || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

export function flag(p: Parsed, name: string): boolean {
  return p.values[name] === true;
}

export function num(
  p: Parsed,
  name: string,
  fallback: number,
  check: { min?: number; max?: number; integer?: boolean } = {},
): number {
  const raw = str(p, name);
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v))
    throw new UsageError(`--${name} must be a number, got '${raw}'`);
  if (check.integer && !Number.isInteger(v))
    throw new UsageError(`--${name} must be an integer, got '${raw}'`);
  if (check.min !== undefined && v < check.min)
    throw new UsageError(`--${name} must be >= ${check.min}, got ${v}`);
  if (check.max !== undefined && v > check.max)
    throw new UsageError(`--${name} must be <= ${check.max}, got ${v}`);
  return v;
}

export function optionalNum(p: Parsed, name: string, check: { integer?: boolean } = {}): number | undefined {
  return str(p, name) === undefined ? undefined : num(p, name, 0, check);
}

/** Options every model-running command accepts for its compute settings. */
export const COMPUTE_OPTIONS: OptionSpec = {
  threads: { type: 'string' },
  device: { type: 'string' },
  'expert-weights': { type: 'string' },
};

export function sessionSettings(p: Parsed): SessionSettings {
  const d = defaultSessionSettings();
  const device = str(p, 'device') ?? d.device;
  if (device !== 'cpu' && device !== 'cuda')
    throw new UsageError(`--device must be cpu or cuda, got '${device}'`);
  const format = str(p, 'expert-weights') ?? d.expertWeights;
  if (!(EXPERT_WEIGHT_FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(`--expert-weights must be ${EXPERT_WEIGHT_FORMATS.join(' or ')}, got '${format}'`);
  }
  return {
    device: device as Device,
    threads: num(p, 'threads', d.threads, { integer: true, min: 1, max: 256 }),
    expertWeights: format as ExpertWeightFormat,
  };
}

/**
 * Resolves a --routing argument against the model's config before anything heavy is loaded, so a
 * typo fails in milliseconds with the spec grammar in the message.
 */
export async function checkRouting(modelDir: string, routing: string | undefined): Promise<void> {
  if (routing === undefined) return;
  const config = await loadModelConfig(modelDir);
  resolveRouting(routing, {
    numLayers: config.numLayers,
    numExperts: config.numExperts,
    nativeK: config.numExpertsPerTok,
  });
}

/** Options of commands that can run the experts on remote workers. */
export const EXPERT_OPTIONS: OptionSpec = {
  workers: { type: 'string' },
  wire: { type: 'string' },
  'dispatch-timeout': { type: 'string' },
};

export const EXPERT_OPTIONS_USAGE = `  --workers URLS       comma-separated ws:// URLs of kmoe workers holding the experts (default: local)
  --wire DTYPE         hidden states on the wire: ${WIRE_DTYPES.join(' | ')} (default ${DEFAULT_WIRE_DTYPE})
  --dispatch-timeout MS  per worker request (default ${DEFAULT_DISPATCH_TIMEOUT_MS})`;

/** --expert-weights acts where the experts run; remote workers take it on their own command line. */
export function rejectExpertWeightsWithRemoteWorkers(p: Parsed): void {
  if (str(p, 'expert-weights') !== undefined) {
    throw new UsageError(
      '--expert-weights applies where the experts run: with --workers URLS, start each `kmoe worker` with it',
    );
  }
}

export function expertsOption(p: Parsed): ExpertsOption {
  const list = str(p, 'workers');
  if (list === undefined) {
    for (const name of ['wire', 'dispatch-timeout']) {
      if (str(p, name) !== undefined) throw new UsageError(`--${name} needs --workers`);
    }
    return { kind: 'local' };
  }
  const workers = list
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '');
  if (workers.length === 0) throw new UsageError('--workers needs at least one ws:// URL');
  rejectExpertWeightsWithRemoteWorkers(p);
  for (const url of workers) {
    if (!/^wss?:\/\/[^\s/]+/.test(url)) throw new UsageError(`--workers: '${url}' is not a ws:// URL`);
  }
  const wire = str(p, 'wire') ?? DEFAULT_WIRE_DTYPE;
  if (!isWireDType(wire))
    throw new UsageError(`--wire must be one of ${WIRE_DTYPES.join(', ')}, got '${wire}'`);
  const timeoutMs = num(p, 'dispatch-timeout', DEFAULT_DISPATCH_TIMEOUT_MS, { integer: true, min: 1 });
  return { kind: 'remote', workers, wireDtype: wire, timeoutMs };
}
