// llama.cpp as the side-by-side anchor of `kmoe bench model`, through node-llama-cpp (a
// devDependency: its prebuilt CPU binary comes from the npm registry; loaded only here, on demand).
// Forced onto the CPU backend with exactly the requested threads; fed token ids, never text.
//
// Two clocks per measurement: `wallMs` around the node-llama-cpp call (what a JavaScript caller of
// llama.cpp gets, binding and scheduling included) and `nativeMs`, llama.cpp's own eval time
// (llama_perf_context, what llama-bench reports), read from the context's timings print.

import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Token } from 'node-llama-cpp';
import { BenchConfigError } from './errors.js';
import type { FlashAttentionSetting } from './llama-cpp-settings.js';

/** The exact install command named by the error when node-llama-cpp is missing. */
export const NODE_LLAMA_CPP_INSTALL = 'npm install --no-save node-llama-cpp@3.21.1';

export interface LlamaCppInfo {
  readonly binding: 'node-llama-cpp';
  readonly bindingVersion: string;
  /** The llama.cpp release the binding's binary was built from, as the binding reports it. */
  readonly llamaCpp: { readonly repo: string; readonly release: string };
  readonly buildType: string;
  readonly backend: 'cpu';
  /** llama.cpp's CPU feature line (which SIMD paths the build uses on this machine). */
  readonly systemInfo: string;
  readonly threads: number;
  readonly contextSize: number;
  readonly batchSize: number;
  /** Flash attention as the context was created with it ('auto' is llama.cpp's default: on for CPU). */
  readonly flashAttention: 'auto' | boolean;
  readonly gguf: string;
}

export interface LlamaCppTiming {
  readonly wallMs: number;
  /** llama.cpp's own eval time for the same tokens; null if its timings could not be read. */
  readonly nativeMs: number | null;
}

export interface LlamaCppAnchor {
  readonly info: LlamaCppInfo;
  /** Evaluates each window as one fresh sequence (one batch of window.length tokens), like pp256. */
  prefill(windows: readonly (readonly number[])[]): Promise<LlamaCppTiming & { tokens: number }>;
  /**
   * Greedy decode: the prompt (untimed) gives the first token, then `n` timed single-token steps;
   * returns the n + 1 chosen tokens, as kmoe's bench feeds them.
   */
  decode(prompt: readonly number[], n: number): Promise<LlamaCppTiming & { tokens: number[] }>;
  close(): Promise<void>;
}

type NodeLlamaCpp = typeof import('node-llama-cpp');

// node-llama-cpp brands token ids; ours are plain vocabulary ids.
const asTokens = (ids: readonly number[]): Token[] => ids as Token[];
const asToken = (id: number): Token => id as Token;

async function loadBinding(): Promise<NodeLlamaCpp> {
  try {
    return await import('node-llama-cpp');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND') {
      throw new BenchConfigError('--llama-cpp needs node-llama-cpp, which is not installed', {
        hint: `install it with: ${NODE_LLAMA_CPP_INSTALL} (it is a devDependency: \`npm ci\` without --omit=dev installs it)`,
        cause: e,
      });
    }
    throw e;
  }
}

async function bindingVersion(): Promise<string> {
  try {
    const entry = fileURLToPath(import.meta.resolve('node-llama-cpp'));
    let dir = path.dirname(entry);
    while (path.basename(dir) !== 'node-llama-cpp' && dir !== path.dirname(dir)) dir = path.dirname(dir);
    const pkg = JSON.parse(await readFile(path.join(dir, 'package.json'), 'utf8')) as { version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

// "llama_perf_context_print: prompt eval time =  6.14 ms /  16 tokens (...)"
// "llama_perf_context_print:        eval time = 22.00 ms /  32 runs   (...)"
const PERF_LINE = /llama_perf_context_print:\s+(prompt eval|eval) time =\s+([\d.]+) ms/;

export interface LlamaCppRuntime {
  /** Loads a GGUF and prepares one sequence for the measurements. */
  load(options: {
    readonly gguf: string;
    /** Longest sequence a measurement evaluates (a prefill window, or prompt + decode tokens). */
    readonly maxTokens: number;
    /** Largest number of tokens evaluated in one call (a prefill window). */
    readonly batchTokens: number;
    /** 'auto' is llama.cpp's own default. */
    readonly flashAttention: FlashAttentionSetting;
  }): Promise<LlamaCppAnchor>;
  dispose(): Promise<void>;
}

/**
 * One llama.cpp instance (one per process: node-llama-cpp's logger is process-wide), CPU backend,
 * `threads` threads for every model it loads.
 */
export async function openLlamaCpp(threads: number): Promise<LlamaCppRuntime> {
  const { getLlama, LlamaLogLevel } = await loadBinding();
  const perf: string[] = [];
  const llama = await getLlama({
    gpu: false,
    build: 'never',
    skipDownload: true,
    progressLogs: false,
    maxThreads: threads,
    logLevel: LlamaLogLevel.info,
    logger: (level, message) => {
      if (PERF_LINE.test(message)) perf.push(message);
      else if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) {
        process.stderr.write(`llama.cpp: ${message.trimEnd()}\n`);
      }
    },
  });
  if (llama.gpu !== false) {
    await llama.dispose();
    throw new BenchConfigError(
      `node-llama-cpp chose the ${llama.gpu} backend; the anchor must run on the CPU`,
    );
  }
  const version = await bindingVersion();
  return {
    load: (options) => loadAnchor(llama, perf, threads, version, options),
    dispose: () => llama.dispose(),
  };
}

async function loadAnchor(
  llama: Awaited<ReturnType<NodeLlamaCpp['getLlama']>>,
  perf: string[],
  threads: number,
  version: string,
  options: {
    readonly gguf: string;
    readonly maxTokens: number;
    readonly batchTokens: number;
    readonly flashAttention: FlashAttentionSetting;
  },
): Promise<LlamaCppAnchor> {
  const model = await llama.loadModel({ modelPath: options.gguf, gpuLayers: 0 });
  const fa = options.flashAttention;
  const context = await model.createContext({
    contextSize: options.maxTokens,
    batchSize: options.batchTokens,
    flashAttention: fa === 'auto' ? 'auto' : fa === 'on',
    sequences: 1,
    threads: { ideal: threads, min: threads },
    performanceTracking: true,
  });
  const sequence = context.getSequence();

  // llama.cpp's eval time (prompt eval + eval) since the last print.
  const nativeSinceLastPrint = async (): Promise<number | null> => {
    perf.length = 0;
    await context.printTimings();
    let ms = 0;
    let seen = 0;
    for (const line of perf) {
      const m = PERF_LINE.exec(line);
      if (m !== null) {
        ms += Number(m[2]);
        seen++;
      }
    }
    return seen === 2 ? ms : null;
  };

  const info: LlamaCppInfo = {
    binding: 'node-llama-cpp',
    bindingVersion: version,
    llamaCpp: { ...llama.llamaCppRelease },
    buildType: llama.buildType,
    backend: 'cpu',
    systemInfo: llama.systemInfo.trim(),
    threads: context.idealThreads,
    contextSize: context.contextSize,
    batchSize: context.batchSize,
    flashAttention: context.flashAttention,
    gguf: options.gguf,
  };
  if (llama.gpu !== false) {
    throw new BenchConfigError(
      `node-llama-cpp chose the ${llama.gpu} backend; the anchor must run on the CPU`,
    );
  }

  return {
    info,
    async prefill(windows) {
      await sequence.clearHistory();
      await nativeSinceLastPrint();
      let tokens = 0;
      const started = performance.now();
      for (const w of windows) {
        await sequence.evaluateWithoutGeneratingNewTokens(asTokens(w));
        await sequence.clearHistory();
        tokens += w.length;
      }
      const wallMs = performance.now() - started;
      return { wallMs, nativeMs: await nativeSinceLastPrint(), tokens };
    },
    async decode(prompt, n) {
      await sequence.clearHistory();
      const greedy = { generateNext: { token: true, options: { temperature: 0 } } } as const;
      const first = await sequence.controlledEvaluate([
        ...asTokens(prompt.slice(0, -1)),
        [asToken(prompt[prompt.length - 1]!), greedy],
      ]);
      let token = first[prompt.length - 1]?.next?.token;
      if (token == null) throw new Error('llama.cpp returned no token for the prompt');
      const tokens: number[] = [token];
      await nativeSinceLastPrint();
      const started = performance.now();
      for (let i = 0; i < n; i++) {
        const out = await sequence.controlledEvaluate([[token, greedy]]);
        const next = out[0]?.next?.token;
        if (next == null) throw new Error('llama.cpp returned no token');
        token = next;
        tokens.push(token);
      }
      const wallMs = performance.now() - started;
      const nativeMs = await nativeSinceLastPrint();
      await sequence.clearHistory();
      return { wallMs, nativeMs, tokens };
    },
    async close() {
      await context.dispose();
      await model.dispose();
    },
  };
}
