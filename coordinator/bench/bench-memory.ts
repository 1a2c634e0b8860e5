// `kmoe bench memory`: the memory of a real `kmoe worker` process per expert weight format. For each
// format it starts one worker (the same process `kmoe serve --workers` starts), waits for its ready
// line, reads peak and current resident memory (VmHWM, VmRSS) from /proc/<pid>/status, stops it and
// checks it is gone; beside each measurement, `kmoe plan`'s prediction for the same worker.

import fs from 'node:fs/promises';
import { loadModelConfig } from '../../shared/model/config.js';
import {
  type ExpertWeightFormat,
  requireWeightFormatOnDevice,
} from '../../shared/onnx/expert-weight-format.js';
import type { Device } from '../../shared/onnx/session.js';
import { formatExpertSet, parseExpertSet } from '../../shared/protocol/expert-set.js';
import { machineInfo } from '../../shared/runtime/machine.js';
import { writeOutputFile } from '../../shared/runtime/output-file.js';
import { startLocalCluster } from '../cluster/local-cluster.js';
import { fmtBytes, planMemory } from '../scale/memory-plan.js';
import { readPlanModel } from '../scale/plan-input.js';
import { BenchConfigError } from './errors.js';

export interface BenchMemoryOptions {
  readonly model: string;
  readonly formats: readonly ExpertWeightFormat[];
  /** Experts the worker holds (every MoE layer), e.g. `0-7`; default: all. */
  readonly experts?: string;
  readonly threads?: number;
  readonly device?: Device;
  /** The plan's per-process allowance (runtime, arenas, activations), as `kmoe plan --reserve`. */
  readonly reserve: number;
  /** How long one worker may take to load before the run fails. */
  readonly readyTimeoutMs: number;
  readonly out: string;
  readonly onProgress?: (line: string) => void;
}

export interface MemoryPoint {
  readonly format: ExpertWeightFormat;
  readonly pid: number;
  /** From start to the ready line. */
  readonly loadSeconds: number;
  /** Peak resident set size over the worker's life up to ready (VmHWM). */
  readonly peakRssBytes: number;
  /** Resident set size once ready (VmRSS). */
  readonly readyRssBytes: number;
  /** `kmoe plan`'s expert weights of this worker, in this format. */
  readonly plannedExpertBytes: number;
  /** Planned expert weights + reserve: what `kmoe plan` says the worker needs. */
  readonly plannedTotalBytes: number;
  readonly peakOverPlanned: number;
  readonly readyOverPlanned: number;
  /** Measured ready RSS over plain expert weights: the in-memory overhead of the format. */
  readonly readyOverExpertBytes: number;
  readonly exitCode: number | null;
}

export interface BenchMemoryResult {
  readonly model: string;
  readonly experts: readonly number[];
  readonly moeLayers: number;
  readonly device: Device;
  readonly threads: number;
  readonly reserveBytes: number;
  readonly points: readonly MemoryPoint[];
}

/** Resident memory of a live process from /proc (Linux); bytes. */
export async function procMemory(pid: number): Promise<{ peakRssBytes: number; rssBytes: number }> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string): number => {
    const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
    if (!m) throw new BenchConfigError(`bench memory: /proc/${pid}/status has no ${field} line`);
    return Number(m[1]) * 1024;
  };
  return { peakRssBytes: kib('VmHWM'), rssBytes: kib('VmRSS') };
}

/** Whether a process with this pid still exists (a zombie counts as gone once reaped by us). */
export function processExists(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

export async function measureWorkerMemory(o: BenchMemoryOptions): Promise<BenchMemoryResult> {
  const device = o.device ?? 'cpu';
  const threads = o.threads ?? 1;
  // Refused before any worker starts: a format the device cannot compute in is a KmoeError.
  for (const format of o.formats) requireWeightFormatOnDevice(format, device);
  const config = await loadModelConfig(o.model);
  const experts = parseExpertSet(o.experts ?? `0-${config.numExperts - 1}`, config.numExperts);
  const planModel = await readPlanModel(o.model);
  const say = o.onProgress ?? (() => {});
  const points: MemoryPoint[] = [];
  // The plan wants every expert placed: the rest go to a second worker that is not measured.
  const rest = Array.from({ length: config.numExperts }, (_, e) => e).filter((e) => !experts.includes(e));
  for (const format of o.formats) {
    const plan = planMemory({
      shape: planModel.shape,
      workers: 1,
      placement: rest.length === 0 ? [experts] : [experts, rest],
      device,
      expertWeights: format,
      denseWeights: 'fp32',
      kvDType: 'fp32',
      contexts: [1],
      batches: [1],
      reserveBytes: o.reserve,
    });
    const planned = plan.workers[0]!;
    say(
      `${format}: starting a worker with experts ${formatExpertSet(experts)} (plan: ${fmtBytes(planned.expertBytes)} of weights)`,
    );
    const started = performance.now();
    const cluster = await startLocalCluster({
      modelDir: o.model,
      expertSets: [experts],
      threads,
      device,
      expertWeights: format,
      readyTimeoutMs: o.readyTimeoutMs,
    });
    const loadSeconds = (performance.now() - started) / 1000;
    const child = cluster.workers[0]!.process;
    const pid = child.pid!;
    let mem: { peakRssBytes: number; rssBytes: number };
    try {
      mem = await procMemory(pid);
    } finally {
      await cluster.stop();
    }
    if (processExists(pid))
      throw new BenchConfigError(`bench memory: worker ${pid} is still running after stop`);
    points.push({
      format,
      pid,
      loadSeconds,
      peakRssBytes: mem.peakRssBytes,
      readyRssBytes: mem.rssBytes,
      plannedExpertBytes: planned.expertBytes,
      plannedTotalBytes: planned.totalBytes,
      peakOverPlanned: mem.peakRssBytes / planned.totalBytes,
      readyOverPlanned: mem.rssBytes / planned.totalBytes,
      readyOverExpertBytes: mem.rssBytes / planned.expertBytes,
      exitCode: child.exitCode,
    });
    say(
      `${format}: peak ${fmtBytes(mem.peakRssBytes)}, ready ${fmtBytes(mem.rssBytes)}, ` +
        `plan ${fmtBytes(planned.totalBytes)} (peak/plan ${(mem.peakRssBytes / planned.totalBytes).toFixed(2)}), loaded in ${loadSeconds.toFixed(1)} s`,
    );
  }
  return {
    model: o.model,
    experts,
    moeLayers: planModel.shape.numMoeLayers,
    device,
    threads,
    reserveBytes: o.reserve,
    points,
  };
}

export async function run(o: BenchMemoryOptions, argv: readonly string[]): Promise<number> {
  const result = await measureWorkerMemory({
    ...o,
    onProgress: o.onProgress ?? ((line) => process.stderr.write(`bench memory: ${line}\n`)),
  });
  const json = {
    benchmark: 'memory',
    command: `kmoe bench memory ${argv.join(' ')}`.trim(),
    machine: machineInfo(),
    ...result,
  };
  writeOutputFile(o.out, `${JSON.stringify(json, null, 2)}\n`);
  const rows = result.points.map(
    (p) =>
      `| ${p.format} | ${fmtBytes(p.peakRssBytes)} | ${fmtBytes(p.readyRssBytes)} | ${fmtBytes(p.plannedExpertBytes)} | ` +
      `${fmtBytes(p.plannedTotalBytes)} | ${p.peakOverPlanned.toFixed(2)} | ${p.loadSeconds.toFixed(1)} s |`,
  );
  process.stdout.write(
    [
      '| format | peak RSS (VmHWM) | RSS when ready | plan: expert weights | plan: + reserve | peak / plan | load |',
      '|---|---|---|---|---|---|---|',
      ...rows,
      '',
      `wrote ${o.out}`,
      '',
    ].join('\n'),
  );
  return 0;
}
