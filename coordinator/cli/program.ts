// The kmoe command tree: every command and benchmark with its options (from options.ts) and help
// text. Implementations are imported only when their command runs, so `kmoe --help` and usage
// errors never load onnxruntime or a model.

import { existsSync, readFileSync, type Stats, statSync } from 'node:fs';
import path from 'node:path';
import { Command, Option } from 'commander';
import { WeightFormatDeviceError } from '../../shared/onnx/errors.js';
import {
  EXPERT_WEIGHT_FORMATS,
  type ExpertWeightFormat,
  requireWeightFormatOnDevice,
} from '../../shared/onnx/expert-weight-format.js';
import type { Device } from '../../shared/onnx/session.js';
import { DEFAULT_WIRE_DTYPE, WIRE_DTYPES, type WireDType } from '../../shared/protocol/wire-dtype.js';
import { jsonBeside, markdownBeside } from '../../shared/runtime/companion-files.js';
import { projectRoot } from '../../shared/runtime/entry-points.js';
import { DirectoryError, OutputFileError, OutputPathError } from '../../shared/runtime/errors.js';
import { checkOutputDirectory } from '../../shared/runtime/output-file.js';
import type { WorkerCommandOptions } from '../../worker/command.js';
import type { BenchServeOptions } from '../bench/bench-serve.js';
import { GGUF_OUT_TYPES } from '../bench/gguf/out-types.js';
import { FLASH_ATTENTION_SETTINGS } from '../bench/llama-cpp-settings.js';
import { CALIBRATED_POLICIES, type CalibratedPolicy } from '../calibration/skip-rates.js';
import { STANDARD_WINDOW } from '../evaluation/windows.js';
import { GREEDY, MAX_TEMPERATURE } from '../sampling.js';
import { presetConfig, type SynthPreset } from '../scale/presets.js';
import { canonicalHost, checkAllowedHost } from '../server/host-check.js';
import type { ClusterRebalanceOptions, ClusterStatusOptions } from './commands/cluster.js';
import type { LocalClusterOptions } from './commands/local-cluster.js';
import type { ServeOptions } from './commands/serve.js';
import { helpNote, layOutHelp } from './help-layout.js';
import {
  apiKey,
  benchNetworkWorkers,
  benchWorkersCount,
  type ComputeOptions,
  candidateRouting,
  checkCalibrateFlags,
  checkEvalFlags,
  checkIdsForModel,
  checkPlacementFlags,
  checkPlanFlags,
  checkProfileNames,
  checkRedisCa,
  checkRoutingRepeats,
  checkWorkerAuth,
  clusterToken,
  DEFAULT_SWEEP_CHART,
  existingProfile,
  IN_PROCESS,
  inputPathsOf,
  listParser,
  localClusterWorkers,
  namedProfileFile,
  opt,
  outputPathOf,
  parseAdvertiseUrl,
  parseChoice,
  parseExpertChoice,
  parseFiles,
  parseHttpUrl,
  parseInteger,
  parseLinkRates,
  parseList,
  parseNumber,
  parseOutputDir,
  parseOutputFile,
  parsePath,
  parseServedModelName,
  parseSize,
  parseVersus,
  parseWorkers,
  singleIds,
  singleRouting,
  synthLayers,
  type WorkersArg,
  windowsFlag,
} from './options.js';
import { unknownFlagsFirst } from './unknown-flags-first.js';
import { escapeCommanderError, flagValue, UsageError } from './usage-error.js';

/** The exit code the command that ran returned (commander discards action results). */
export interface Outcome {
  code: number;
}

function version(): string {
  const pkg = JSON.parse(readFileSync(path.join(projectRoot(), 'package.json'), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

/** `kmoe eval --help` etc.: the one line a usage error ends with. */
export function helpPointer(cmd: Command): string {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return cmd.parent === null
    ? `Run '${names.join(' ')} --help' for the commands.`
    : `Run '${names.join(' ')} --help' for usage.`;
}

/** A subcommand that points at its own --help after a usage error instead of printing it. */
function sub(parent: Command, name: string, summary: string): Command {
  const cmd = parent.command(name).summary(summary).description(summary);
  return pointToHelp(cmd);
}

/** Commander's own usage errors, like kmoe's: `kmoe eval: error: ...` and the --help pointer. */
function pointToHelp(cmd: Command): Command {
  const names: string[] = [];
  for (let c: Command | null = cmd; c; c = c.parent) names.unshift(c.name());
  return cmd.showHelpAfterError(helpPointer(cmd)).configureOutput({
    outputError: (message, write) => write(`${names.join(' ')}: ${escapeCommanderError(message)}`),
  });
}

/** The command line after the command's own name(s), recorded in outputs' provenance. */
function argsAfter(argv: readonly string[], cmd: Command): string[] {
  const names: string[] = [];
  for (let c: Command | null = cmd; c?.parent; c = c.parent) names.unshift(c.name());
  let i = 0;
  for (const name of names) i = argv.indexOf(name, i) + 1;
  return argv.slice(i);
}

/** A benchmark's options as parsed: compute options in place of the session settings they make. */
type BenchCli<O> = Omit<O, 'settings'> & ComputeOptions;

/**
 * A benchmark over windows of a corpus, as parsed: `--windows` as typed (each such bench gives it a
 * default) in place of the corpus it selects, which is read and checked before the bench runs.
 */
type CorpusBenchCli<O> = BenchCli<Omit<O, 'corpus'>> & { readonly windows: string };

type Run<O> = (options: O, argv: readonly string[]) => Promise<number>;

/**
 * Every command's action, set once its options are all added: the checks of the whole command line
 * in the order a user should hear of them (unknown flags, then values and required options, flags
 * that cannot go together, one policy in --routing spelled twice, then --ids against the model),
 * then whether the device is there and the outputs can be written, then the implementation,
 * loaded only now. A `load` whose run checks more flags does so before it imports the command's
 * module, so that a usage error costs what --help does.
 */
function action<O>(
  cmd: Command,
  argv: readonly string[],
  outcome: Outcome,
  load: () => Promise<Run<O>>,
  /**
   * false for a command that only plans (kmoe plan prices bf16 on cpu as its fp32 widening, and
   * cuda on a host without one).
   */
  {
    computesFormats = true,
    implied,
    check,
  }: {
    readonly computesFormats?: boolean;
    /**
     * Values a command gives options only when others are set (eval --sweep's chart), filled in
     * before the checks so that they are checked as the typed ones are.
     */
    readonly implied?: (options: O) => Partial<O>;
    /**
     * Checks of the flags alone (flags that cannot go together, values this command refuses), done
     * first: no file, model or package is read for them.
     */
    readonly check?: (options: O) => void;
  } = {},
): void {
  // Before unknownFlagsFirst wraps the parsers that tell them apart.
  const outputs = outputOptions(cmd);
  const inputs = inputOptions(cmd);
  const checkFlags = unknownFlagsFirst(cmd);
  cmd.action(async (given: O) => {
    checkFlags();
    const options: O = { ...given, ...implied?.(given) };
    check?.(options);
    const { ids, model, routing } = options as {
      ids?: readonly string[];
      model?: string;
      routing?: readonly string[];
    };
    if (routing !== undefined) await checkRoutingRepeats(routing);
    checkOutputsApart(options, outputs, inputs);
    if (computesFormats) await checkFormatsOnDevice(options);
    if (ids !== undefined && model !== undefined) await checkIdsForModel(model, ids);
    if (computesFormats) await checkDeviceAvailable(options);
    checkOutputPaths(options, outputs);
    const run = await load();
    outcome.code = await run(options, argsAfter(argv, cmd));
  });
}

/**
 * Flags that are fine alone but cannot go together: bf16 experts need --device cuda. The expert
 * formats a command computes in are `--expert-weights`, or the `--formats` list of the benchmarks
 * that time or measure one format after another (bench expert, bench memory); either is refused
 * here, before any work, rather than when the bench reaches that format.
 */
async function checkFormatsOnDevice(options: unknown): Promise<void> {
  const {
    expertWeights,
    formats = [],
    device = 'cpu',
  } = options as {
    expertWeights?: ExpertWeightFormat;
    formats?: readonly ExpertWeightFormat[];
    device?: Device;
  };
  const asked = [
    ...(expertWeights === undefined ? [] : [{ flag: '--expert-weights', format: expertWeights }]),
    ...formats.map((format) => ({ flag: '--formats', format })),
  ];
  for (const { flag, format } of asked)
    await flagValue(flag, [WeightFormatDeviceError], () => requireWeightFormatOnDevice(format, device));
}

/**
 * A device other than the CPU must be there before any work: its provider missing is this host's
 * fault, not the command line's (exit 1), and was found only at the first real session, after
 * bench expert had timed its GEMM peak or serve and local-cluster had started workers that each
 * failed alone. onnxruntime is loaded here only for such a device.
 */
async function checkDeviceAvailable(options: unknown): Promise<void> {
  const { device = 'cpu' } = options as { device?: Device };
  if (device !== 'cpu') (await import('../../shared/onnx/device-check.js')).requireDevice(device);
}

/** A command's options that name a file or a directory it writes. */
interface OutputOption {
  readonly flag: string;
  readonly key: string;
  readonly kind: 'file' | 'dir';
  /** The files the command writes beside the one named. */
  readonly beside: (file: string) => string[];
}

function outputOptions(cmd: Command): OutputOption[] {
  return cmd.options.flatMap((option) => {
    const output = outputPathOf(option.parseArg);
    return output === undefined
      ? []
      : [{ flag: option.long ?? option.flags, key: option.attributeName(), ...output }];
  });
}

/** A command's options that name files or directories it reads. */
interface InputOption {
  readonly flag: string;
  readonly key: string;
  /** The paths read in the option's value. */
  readonly paths: (value: unknown) => string[];
}

function inputOptions(cmd: Command): InputOption[] {
  return cmd.options.flatMap((option) => {
    const paths = inputPathsOf(option.parseArg);
    return paths === undefined
      ? []
      : [{ flag: option.long ?? option.flags, key: option.attributeName(), paths }];
  });
}

/** A path of the command line, as it was written and what it is on disk. */
interface NamedPath {
  /** How the message names it: `--out x.json`, or `x.md (written beside --out x.json)`. */
  readonly label: string;
  readonly resolved: string;
  readonly stat: Stats | undefined;
}

function namedPath(label: string, file: string): NamedPath {
  let stat: Stats | undefined;
  try {
    stat = statSync(file);
  } catch {
    // Not there (or under a file): compared by its resolved path alone.
  }
  return { label, resolved: path.resolve(file), stat };
}

/** One file by name (`./x` and `x`) or, both being there, by device and inode (a symlink, a hard link). */
function sameFile(a: NamedPath, b: NamedPath): boolean {
  if (a.resolved === b.resolved) return true;
  return (
    a.stat !== undefined && b.stat !== undefined && a.stat.dev === b.stat.dev && a.stat.ino === b.stat.ino
  );
}

/**
 * Every file the command line writes (given or default, and the files written beside them) is
 * apart from every other it writes and from every path it reads: `eval --ids X --trace X`
 * truncated the corpus it was about to read, `bench traffic --out S --chart S` wrote the chart
 * over the JSON. A usage error naming both flags. Devices and FIFOs (--out /dev/null twice) are
 * written in place, not replaced, and are left out.
 */
function checkOutputsApart(
  options: unknown,
  outputs: readonly OutputOption[],
  inputs: readonly InputOption[],
): void {
  const values = options as Record<string, unknown>;
  const written: NamedPath[] = [];
  for (const { flag, key, kind, beside } of outputs) {
    const value = values[key];
    if (kind !== 'file' || typeof value !== 'string') continue;
    const named = [
      namedPath(`${flag} ${value}`, value),
      ...beside(value).map((file) => namedPath(`${file} (written beside ${flag} ${value})`, file)),
    ];
    for (const file of named) {
      if (file.stat !== undefined && !file.stat.isFile()) continue;
      const other = written.find((w) => sameFile(w, file));
      if (other !== undefined)
        throw new UsageError(`${other.label} and ${file.label} are one file: give each output its own path`);
      written.push(file);
    }
  }
  for (const { flag, key, paths } of inputs) {
    for (const file of paths(values[key])) {
      const read = namedPath(`${flag} ${file}`, file);
      const other = written.find((w) => sameFile(w, read));
      if (other !== undefined)
        throw new UsageError(
          `${other.label} would overwrite ${read.label}, which it reads: write the output elsewhere`,
        );
    }
  }
}

/**
 * Every output path of the command line, given or default, in a directory in which this process
 * can create a file (or could make it, and then create one; nothing is made here): a bench found an
 * --out it could not write only when it wrote its results, after its work (exit 1, naming the flag,
 * the path and the directory).
 */
function checkOutputPaths(options: unknown, outputs: readonly OutputOption[]): void {
  const checked = new Set<string>();
  for (const { flag, key, kind } of outputs) {
    const value = (options as Record<string, unknown>)[key];
    if (typeof value !== 'string') continue;
    // A device or FIFO (--out /dev/null) is written in place (writeOutputFile): its directory,
    // which may take no new files (/dev for anyone but root), is not where the output goes.
    const existing = kind === 'file' ? statSync(value, { throwIfNoEntry: false }) : undefined;
    if (existing !== undefined && !existing.isFile() && !existing.isDirectory()) continue;
    const dir = kind === 'file' ? path.dirname(path.resolve(value)) : path.resolve(value);
    if (checked.has(dir)) continue;
    checked.add(dir);
    try {
      checkOutputDirectory(dir);
    } catch (err) {
      if (err instanceof DirectoryError || err instanceof OutputFileError)
        throw new OutputPathError(flag, value, err);
      throw err;
    }
  }
}

/** The options of a command that connects to workers, with the cluster token resolved. */
type WithToken<O> = O & { readonly clusterTokenFile?: string };

/** Loads a command whose options carry `clusterToken`, once it is resolved from env or file. */
function withClusterToken<O>(load: () => Promise<Run<O>>): () => Promise<Run<WithToken<O>>> {
  return async () => async (o, args) => {
    const token = clusterToken(o);
    return (await load())({ ...o, clusterToken: token }, args);
  };
}

export function buildProgram(argv: readonly string[], outcome: Outcome): Command {
  const program = new Command('kmoe')
    .description('kmoe — expert-parallel MoE inference with adaptive K')
    .version(version(), '-V, --version', 'print the kmoe version')
    // Subcommands copy it: `kmoe help bench serve` and `kmoe bench help serve` (help-request.ts).
    .helpCommand('help [command...]', 'display help for a command')
    .exitOverride();
  layOutHelp(program);
  pointToHelp(program);

  // ---- generate ----
  const generate = sub(program, 'generate', 'stream a completion for one prompt')
    .addOption(opt.model())
    .addOption(
      new Option(
        '--prompt <text>',
        'prompt text (the tokenizer adds BOS if its config says so)',
      ).makeOptionMandatory(),
    )
    .addOption(opt.maxTokens().default(64))
    .addOption(
      new Option('--temperature <t>', '0 = greedy')
        .argParser(parseNumber('--temperature', { min: 0, max: MAX_TEMPERATURE }))
        .default(GREEDY.temperature),
    )
    .addOption(
      new Option('--top-p <p>', 'nucleus sampling mass')
        .argParser(parseNumber('--top-p', { above: 0, max: 1 }))
        .default(GREEDY.topP),
    )
    .addOption(
      new Option('--seed <n>', 'sampling seed, an integer in [0, 2^53)')
        .argParser(parseInteger('--seed', { min: 0, max: Number.MAX_SAFE_INTEGER }))
        .default(0),
    )
    .addOption(opt.routing())
    .addOption(
      new Option('--stats', 'print tokens/s and experts per token (and network bytes) to stderr at the end'),
    )
    .addOption(opt.workers('0'))
    .addOption(opt.wire())
    .addOption(opt.dispatchTimeout())
    .addOption(opt.clusterTokenFile())
    .addOption(opt.balance())
    .addOption(opt.threads())
    .addOption(opt.device())
    .addOption(opt.expertWeights())
    .addOption(opt.denseWeights());
  action(
    generate,
    argv,
    outcome,
    withClusterToken(async () => (await import('./commands/generate.js')).run),
    {
      check: (o) => {
        singleRouting(o.routing);
        checkPlacementFlags(o.workers ?? IN_PROCESS, o);
      },
    },
  );

  // ---- eval ----
  const evalCmd = sub(program, 'eval', 'perplexity and expert usage on a corpus')
    .addOption(opt.model())
    .addOption(opt.ids('token ids, little-endian uint16 (e.g. data/eval/valid.code.u16)', 'file'))
    .addOption(
      new Option(
        '--text <file>',
        "UTF-8 text, encoded with the model's tokenizer in pieces cut at line ends",
      ).argParser(parsePath('--text', 'a text file')),
    )
    .addOption(
      opt.routing(
        "routing policy (default: the model's native top-K; with --sweep: extra policies, repeatable)",
      ),
    )
    .addOption(opt.windows('START:END window indices, or first-half / second-half (default: all)'))
    .addOption(
      new Option('--window <n>', 'window length')
        .argParser(parseInteger('--window', { min: 2 }))
        .default(STANDARD_WINDOW),
    )
    .addOption(
      new Option('--batch <n>', 'windows per forward pass')
        .argParser(parseInteger('--batch', { min: 1, max: 64 }))
        .default(4),
    )
    .addOption(
      new Option(
        '--sweep',
        'evaluate fixed K=1 and K=native plus sweeps of entropy, top-p, ratio and skip (and any --routing ' +
          'profiles) and draw the Pareto chart; experts in this process',
      ),
    )
    .addOption(
      opt
        .chart(
          `with --sweep: SVG chart path (default: ${DEFAULT_SWEEP_CHART}); its JSON is written beside it`,
        )
        .argParser(parseOutputFile('--chart', (file) => [jsonBeside(file)])),
    )
    .addOption(
      new Option(
        '--json',
        'print only one JSON object on stdout (the report goes to stderr); with --workers it has "dispatch": ' +
          'bytes per token per MoE layer, vs native top-K, per worker',
      ),
    )
    .addOption(
      opt
        .trace(
          'write the routing decisions of the run (per window and MoE layer: chosen experts and weights, and the ' +
            'native top-K) to this file, JSON Lines, gzip if it ends in .gz; read by kmoe bench traffic',
        )
        .argParser(parseOutputFile('--trace')),
    )
    .addOption(opt.workers('0'))
    .addOption(opt.wire())
    .addOption(opt.dispatchTimeout())
    .addOption(opt.clusterTokenFile())
    .addOption(opt.balance())
    .addOption(opt.threads())
    .addOption(opt.device())
    .addOption(opt.expertWeights())
    .addOption(opt.denseWeights())
    .addHelpText(
      'after',
      helpNote(
        `\nPerplexity by the standard procedure: non-overlapping windows of ${STANDARD_WINDOW} ids (trailing partial\n` +
          'window dropped), no BOS, positions 1..255 of each window scored given the earlier tokens of the window.',
      ),
    );
  action(
    evalCmd,
    argv,
    outcome,
    withClusterToken(async () => (await import('./commands/eval.js')).run),
    {
      // Its default chart and the JSON beside it are compared with the inputs and checked for
      // writing like a typed --chart (a default set on --chart would be refused without --sweep).
      implied: (o) => (o.sweep === true && o.chart === undefined ? { chart: DEFAULT_SWEEP_CHART } : {}),
      check: checkEvalFlags,
    },
  );

  // ---- worker ----
  const worker = sub(program, 'worker', 'host experts for remote coordinators')
    .addOption(opt.model())
    .addOption(
      new Option(
        '--experts <set>',
        'expert indices and ranges, e.g. 0-3 or 0,2,5-7; or auto[:N] (needs --redis): N experts the ' +
          'registry chooses, uncovered ones first, then replicas of the busiest (default N: half the experts)',
      )
        .argParser(parseExpertChoice)
        .makeOptionMandatory(),
    )
    .addOption(
      opt.redis('register in this Redis registry (redis:// or rediss://; heartbeat, deregisters on SIGTERM)'),
    )
    .addOption(opt.redisCa())
    .addOption(
      new Option(
        '--advertise-url <url>',
        'the ws:// URL registered for coordinators to dial (behind NAT; default: the listen address); with a cluster token, the only URL coordinators may reach this worker by',
      ).argParser(parseAdvertiseUrl),
    )
    .addOption(opt.port('port to listen on; 0 = any free port, shown in the ready line').default(7070))
    .addOption(
      opt
        .host('address to listen on; other than loopback it needs a cluster token (or --insecure)')
        .default('127.0.0.1', '127.0.0.1'),
    )
    .addOption(opt.clusterTokenFile())
    .addOption(opt.insecure())
    .addOption(
      new Option(
        '--max-frame-mb <n>',
        'largest request accepted, in MiB (0.001-2048); a limit that fits fewer than 64 tokens works, slowly, and is warned of',
      )
        .argParser(parseNumber('--max-frame-mb', { min: 0.001, max: 2048 }))
        .default(64),
    )
    .addOption(
      opt.maxConnections(
        'WebSocket connections at once, handshaking or not; beyond, HTTP 503 (sockets of any kind: this + 16)',
        64,
      ),
    )
    .addOption(
      opt.maxConnectionsPerClient(
        'sockets from one client (an IPv4 address or an IPv6 /64) at once, WebSocket or plain HTTP, handshaking or not (0: no cap); beyond, new ones are closed at once. A coordinator holds one connection to each worker',
        16,
      ),
    )
    .addOption(opt.threads())
    .addOption(opt.device())
    .addOption(opt.expertWeights())
    .addOption(opt.compute().default('thread'))
    .addOption(
      opt.shutdownTimeout(
        'seconds the requests coordinators already sent get to finish on SIGTERM (a drain notice tells them to send no more); then the worker closes anyway',
        10,
      ),
    )
    .addOption(
      new Option(
        '--sched <policy>',
        "scheduling policy of the worker process: normal; batch (Linux SCHED_BATCH through util-linux chrt, or fail): woken by a request, the worker does not preempt the coordinator that sent it, which can send its other requests first; auto: batch where it can be set, else normal with a warning. For workers on the coordinator's host (local clusters and the workers a command starts with --workers N use auto)",
      )
        .argParser(parseChoice('--sched', ['normal', 'batch', 'auto'] as const))
        .default('normal'),
    )
    .addHelpText(
      'after',
      helpNote(
        '\nPrints "kmoe worker ready ws://HOST:PORT experts SET auth MODE" on stdout once it accepts connections\n' +
          '(MODE: token, none loopback-only, or none INSECURE). Coordinators connect with --workers ws://HOST:PORT,...\n' +
          'With a cluster token (KMOE_CLUSTER_TOKEN or --cluster-token-file) every coordinator must prove it holds\n' +
          'the same token before any work; without one the worker listens on loopback only.',
      ),
    );
  action(worker, argv, outcome, async () => {
    return async (
      o: Omit<WorkerCommandOptions, 'settings' | 'clusterToken'> &
        ComputeOptions & { clusterTokenFile?: string; insecure?: boolean },
    ) => {
      if (o.experts.kind === 'auto' && o.redis === undefined)
        throw new UsageError('--experts auto needs --redis: the registry chooses the experts');
      if (o.advertiseUrl !== undefined && o.redis === undefined)
        throw new UsageError('--advertise-url needs --redis: it is the URL registered there');
      if (o.compute === 'inline' && o.redis !== undefined)
        throw new UsageError(
          '--compute inline cannot be used with --redis (or KMOE_REDIS_URL): a registered worker serves any coordinator and must keep its heartbeat and handshakes going while it computes (use --compute thread)',
        );
      checkRedisCa(o);
      const token = clusterToken(o);
      checkWorkerAuth(o.host, token, o.insecure);
      const { checkExpertSet, sessionSettings } = await import('./experts.js');
      if (o.experts.kind === 'set') await checkExpertSet(o.model, o.experts.set);
      const { run } = await import('../../worker/command.js');
      const { clusterTokenFile: _file, ...rest } = o;
      return run({
        ...rest,
        settings: sessionSettings(o),
        ...(token === undefined ? {} : { clusterToken: token }),
      });
    };
  });

  // ---- local-cluster ----
  const localCluster = sub(
    program,
    'local-cluster',
    'start N expert workers on this host (under Linux SCHED_BATCH where chrt can set it: kmoe worker --sched auto)',
  )
    .addOption(opt.model())
    .addOption(
      new Option('--workers <n>', 'number of worker processes (1 .. number of experts)')
        .argParser(parseWorkers)
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--port-base <port>', 'worker i listens on PORT + i (default: free ports)').argParser(
        parseInteger('--port-base', { min: 1, max: 65535 }),
      ),
    )
    .addOption(
      opt.host(
        'address the workers listen on (default: 127.0.0.1); other than loopback it needs a cluster token (or --insecure)',
      ),
    )
    .addOption(opt.clusterTokenFile())
    .addOption(opt.insecure())
    .addOption(opt.threads('onnxruntime threads per worker (default: cores / N, at least 1)'))
    .addOption(opt.device())
    .addOption(opt.expertWeights())
    .addOption(opt.compute().default('thread'))
    .addHelpText(
      'after',
      helpNote(
        '\nPrints "kmoe local-cluster ready URL,URL,..." once all workers accept connections; pass that list\n' +
          'to --workers of generate, eval or serve. Workers accept every wire dtype.',
      ),
    );
  action(
    localCluster,
    argv,
    outcome,
    async () => {
      return async (o: WithToken<LocalClusterOptions> & { insecure?: boolean }) => {
        const token = clusterToken(o);
        checkWorkerAuth(o.host ?? '127.0.0.1', token, o.insecure);
        const { run } = await import('./commands/local-cluster.js');
        return run({ ...o, ...(token === undefined ? {} : { clusterToken: token }) });
      };
    },
    { check: localClusterWorkers },
  );

  // ---- calibrate ----
  const calibrate = sub(
    program,
    'calibrate',
    'write a routing profile (theory, percentile or quality-constrained)',
  )
    .addOption(opt.model())
    .addOption(
      new Option(
        '--method <m>',
        'theory: entropy thresholds alpha_i * ln(N), no data; percentile: per-layer thresholds giving every ' +
          'layer the target average K; quality: fewest experts per token within a perplexity budget',
      )
        .argParser(parseChoice('--method', ['theory', 'percentile', 'quality'] as const))
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--policy <p>', `${CALIBRATED_POLICIES.join(' | ')} (theory: entropy only)`)
        .argParser(parseChoice<CalibratedPolicy>('--policy', CALIBRATED_POLICIES))
        .makeOptionMandatory(),
    )
    .addOption(opt.out('profile to write').makeOptionMandatory())
    .addOption(
      opt
        .ids('comma-separated .u16 corpora')
        .default(
          ['data/eval/valid.docs.u16', 'data/eval/valid.code.u16'],
          'data/eval/valid.docs.u16,data/eval/valid.code.u16',
        ),
    )
    .addOption(opt.windows('window range within each file').default('first-half'))
    .addOption(
      new Option('--alpha <a,...>', 'theory: threshold multipliers, one fewer than --k-values')
        .argParser(parseList('--alpha', parseNumber('--alpha', { min: Number.MIN_VALUE })))
        .default([0.5], '0.5'),
    )
    .addOption(
      new Option('--k-values <k,...>', 'theory: K values')
        .argParser(parseList('--k-values', parseInteger('--k-values', { min: 1 })))
        .default([1, 2], '1,2'),
    )
    .addOption(
      new Option(
        '--target-avg-k <k>',
        "percentile: average experts per token to hit (1..the model's native K)",
      ).argParser(parseNumber('--target-avg-k', { min: 1 })),
    )
    .addOption(opt.budget().default(1))
    .addOption(opt.searchWindows().default(256))
    .addOption(opt.step().default(0.1))
    .addOption(
      new Option(
        '--expert-means <on|off>',
        'skip: replace each skipped expert by its calibrated mean output times its native weight',
      )
        .argParser(parseChoice('--expert-means', ['on', 'off'] as const))
        .default('on'),
    )
    .addOption(
      new Option(
        '--substitute-rank <r>',
        'skip: replace each skipped expert by a rank-r linear substitute of its input (fitted on the ' +
          'calibration text; 2 r hidden multiply-adds per skipped pair) instead of its mean; 0: the mean',
      )
        .argParser(parseInteger('--substitute-rank', { min: 0 }))
        .default(0),
    )
    .addOption(
      new Option(
        '--substitute-windows <n>',
        'with --substitute-rank: calibration windows the substitutes are fitted on, outside the searched ' +
          'ones and never verified on (default: 256)',
      ).argParser(parseInteger('--substitute-windows', { min: 1 })),
    )
    .addOption(
      new Option(
        '--substitute-ridge <x>',
        'with --substitute-rank: ridge penalty per token of the substitute fit, > 0 (default: 0.01)',
      ).argParser(parseNumber('--substitute-ridge', { min: Number.MIN_VALUE })),
    )
    .addOption(opt.threads())
    .addOption(opt.device())
    .addOption(opt.expertWeights())
    .addOption(opt.denseWeights())
    .addHelpText(
      'after',
      helpNote(
        '\nWrites a versioned routing profile (JSON) that records how it was made. By default calibration uses\n' +
          'the FIRST half of each file, so the second half stays unseen for kmoe eval --windows second-half.',
      ),
    );
  action(calibrate, argv, outcome, async () => (await import('./commands/calibrate.js')).run, {
    check: checkCalibrateFlags,
  });

  // ---- train-allocator ----
  const trainAllocator = sub(
    program,
    'train-allocator',
    'train a learned K allocator (K in {0,1,2} per token and layer) into a routing profile',
  )
    .addOption(opt.model())
    .addOption(opt.out('profile to write').makeOptionMandatory())
    .addOption(
      opt
        .ids('comma-separated .u16 corpora')
        .default(
          ['data/eval/valid.docs.u16', 'data/eval/valid.code.u16'],
          'data/eval/valid.docs.u16,data/eval/valid.code.u16',
        ),
    )
    .addOption(opt.windows('window range within each file').default('first-half'))
    .addOption(opt.trainWindows().default(64))
    .addOption(opt.searchWindows().default(64))
    .addOption(opt.holdoutWindows().default(256))
    .addOption(opt.searchBudget().default(1.5))
    .addOption(opt.budget().default(0.8))
    .addOption(opt.step().default(0.1))
    .addOption(opt.kZero().default('on'))
    .addOption(
      new Option(
        '--replay-search <profile>',
        'reuse the recorded threshold search of an earlier allocator profile (same data and options): only the held-out choice runs, e.g. for another --budget',
      ).argParser(parsePath('--replay-search', 'a routing profile file')),
    )
    .addOption(opt.threads())
    .addOption(opt.device())
    .addOption(opt.expertWeights())
    .addHelpText(
      'after',
      helpNote(
        '\nThe selected windows are split into two interleaved folds: heads and threshold search on the even\n' +
          'windows, the choice of the search point (the budget, --budget) on the odd ones. By default only\n' +
          'the FIRST half of each file is used, so second halves stay unseen.',
      ),
    );
  action(trainAllocator, argv, outcome, async () => (await import('./commands/train-allocator.js')).run);

  // ---- serve ----
  const serve = sub(program, 'serve', 'OpenAI-compatible HTTP server with continuous batching')
    .addOption(opt.model())
    .addOption(opt.host('listen address').default('127.0.0.1'))
    .addOption(opt.port('listen port; 0 picks a free one').default(8000))
    .addOption(opt.workers('2'))
    .addOption(
      opt.redis(
        'take the workers from this Redis registry and follow joins and leaves while serving; ' +
          'starts once registered workers that complete the handshake cover every expert, and waits ' +
          'until then (redis:// or rediss://; instead of --workers)',
      ),
    )
    .addOption(opt.redisCa())
    .addOption(opt.wire())
    .addOption(opt.dispatchTimeout())
    .addOption(opt.clusterTokenFile())
    .addOption(opt.apiKey())
    .addOption(opt.apiKeyFile())
    .addOption(
      new Option(
        '--allowed-hosts <names>',
        'without --api-key on a loopback --host, only requests addressed to localhost, 127.x or [::1] are answered ' +
          "(a DNS rebinding guard): comma-separated Host names to answer too (a local proxy's; given, they turn " +
          "the check on for any --host), or '*' for any",
      ).argParser(
        parseList(
          '--allowed-hosts',
          (s) => {
            const problem = checkAllowedHost(s);
            if (problem)
              throw new UsageError(problem, {
                hint: "give DNS names (proxy.example) or IP addresses (10.0.0.5, ::1 or [::1]), comma-separated, or '*'",
              });
            return s;
          },
          { identity: (s) => canonicalHost(s) ?? s, entry: 'host' },
        ),
      ),
    )
    .addOption(opt.balance())
    .addOption(opt.routing("default routing policy (default: the model's native top-K)"))
    .addOption(
      new Option(
        '--profiles <files>',
        'comma-separated routing profiles requests may name in kmoe.routing',
      ).argParser(
        parseList('--profiles', (s) => existingProfile('--profiles', namedProfileFile(s)), {
          identity: (file) => path.resolve(file),
          entry: 'file',
        }),
      ),
    )
    .addOption(opt.overlap())
    .addOption(
      new Option('--max-running <n>', 'sequences decoding or prefilling at once')
        .argParser(parseInteger('--max-running', { min: 1, max: 65_536 }))
        .default(16),
    )
    .addOption(
      new Option('--max-queued <n>', 'accepted sequences waiting beyond those; then 429')
        .argParser(parseInteger('--max-queued', { min: 0, max: 1_000_000 }))
        .default(64),
    )
    .addOption(
      new Option('--prefill-chunk <n>', 'prompt tokens per prefill chunk')
        .argParser(parseInteger('--prefill-chunk', { min: 1 }))
        .default(64),
    )
    .addOption(
      new Option(
        '--served-model-name <name>',
        "the model name clients send, exactly (default: the model directory's name; not empty, no spaces at either end)",
      ).argParser(parseServedModelName),
    )
    .addOption(
      opt.maxConnections(
        'open HTTP connections at once, idle keep-alive ones included; beyond, new ones are closed at once',
        1024,
      ),
    )
    .addOption(
      opt.maxConnectionsPerClient(
        "open HTTP connections from one client (an IPv4 address or an IPv6 /64) at once (0: no cap); beyond, new ones are closed at once. Behind a reverse proxy every client has the proxy's address: raise it above the proxy's connections, or 0",
        128,
      ),
    )
    .addOption(
      new Option(
        '--max-body-memory <size>',
        'memory request bodies still arriving may hold at once, counted by the bytes received; beyond, uploads wait (their connections are not read) until others are done',
      )
        .argParser(parseSize('--max-body-memory', { min: 1, max: 2 ** 50 }))
        .default(256 * 2 ** 20, '256MiB'),
    )
    .addOption(opt.shutdownTimeout('seconds in-flight requests get to finish on SIGTERM', 10))
    .addOption(opt.logLevel().default('info'))
    .addOption(
      opt.threads(
        'onnxruntime threads of the coordinator (default: cores - 1, at least 1; one core stays with the HTTP server)',
      ),
    )
    .addOption(opt.device())
    .addOption(opt.expertWeights())
    .addOption(opt.denseWeights())
    .addHelpText(
      'after',
      helpNote(
        '\nPOST /v1/completions, /v1/chat/completions; GET /v1/models[/NAME], /health, /ready, /metrics.\n' +
          'Prints "kmoe serve listening on http://HOST:PORT" on stdout when ready. With --api-key every /v1/*\n' +
          'request needs "Authorization: Bearer KEY" (401 otherwise); /health, /ready and /metrics stay open.\n' +
          'Local workers (--workers N) get a random cluster token of their own; remote ones need the cluster\n' +
          'token (KMOE_CLUSTER_TOKEN or --cluster-token-file) when they have one.',
      ),
    );
  action(
    serve,
    argv,
    outcome,
    async () => {
      return async (o: WithToken<ServeOptions> & { apiKeyFile?: string }) => {
        checkRedisCa(o);
        checkProfileNames(o);
        const token = clusterToken(o);
        const key = apiKey(o);
        if (o.redis !== undefined && o.workers !== undefined)
          throw new UsageError(
            'give --workers or --redis, not both: with --redis the registry lists the workers',
          );
        const { run } = await import('./commands/serve.js');
        const { apiKeyFile: _file, clusterTokenFile: _tokenFile, ...rest } = o;
        return run({
          ...rest,
          ...(token === undefined ? {} : { clusterToken: token }),
          ...(key === undefined ? {} : { apiKey: key }),
        });
      };
    },
    {
      check: (o) => {
        singleRouting(o.routing);
        // Without --workers or --redis serve starts local workers: no flag needs more.
        if (o.redis !== undefined) checkPlacementFlags({ kind: 'urls', urls: [] }, o);
        else if (o.workers !== undefined) checkPlacementFlags(o.workers, o);
      },
    },
  );

  // ---- cluster ----
  const cluster = sub(program, 'cluster', 'inspect a cluster that shares a Redis registry');
  const clusterStatus = sub(cluster, 'status', 'workers, experts held, load, heartbeats, coverage per expert')
    .addOption(opt.redis('the registry (redis:// or rediss://)').makeOptionMandatory())
    .addOption(opt.redisCa())
    .addOption(new Option('--json', 'one JSON object on stdout'))
    .addHelpText(
      'after',
      helpNote(
        '\nLoad (pairs/s, tokens/s) is what each worker measured over its last heartbeat (1 s); a coordinator\n' +
          'started with --redis exports the same figures on /metrics (kmoe_cluster_*).',
      ),
    );
  action(clusterStatus, argv, outcome, async () => {
    return async (o: ClusterStatusOptions) => {
      checkRedisCa(o);
      return (await import('./commands/cluster.js')).status(o);
    };
  });
  const clusterRebalance = sub(
    cluster,
    'rebalance',
    'move and replicate hot experts across the registered workers while they serve (EPLB-style)',
  )
    .addOption(opt.redis('the registry (redis:// or rediss://)').makeOptionMandatory())
    .addOption(opt.redisCa())
    .addOption(
      new Option(
        '--slots <n>',
        'experts each worker may hold afterwards (default: as many as it holds now)',
      ).argParser(parseInteger('--slots', { min: 1 })),
    )
    .addOption(
      new Option('--window <seconds>', 'how long to average the load the workers report')
        .argParser(parseNumber('--window', { min: 1, max: 3600 }))
        .default(10),
    )
    .addOption(
      new Option(
        '--min-gain <fraction>',
        'apply only if the busiest worker expects at least this much less load (always applied when --slots is below what a worker holds)',
      )
        .argParser(parseNumber('--min-gain', { min: 0, max: 1 }))
        .default(0.05),
    )
    .addOption(
      new Option('--command-timeout <seconds>', 'how long a worker may take to load or unload its experts')
        .argParser(parseNumber('--command-timeout', { min: 1 }))
        .default(600),
    )
    .addOption(new Option('--dry-run', 'measure and plan, change nothing'))
    .addOption(
      new Option(
        '--watch <seconds>',
        'automatic mode: rebalance again every N seconds (at least 5) until SIGINT/SIGTERM',
      ).argParser(parseNumber('--watch', { min: 5 })),
    )
    .addOption(new Option('--json', 'the report as one JSON object per round on stdout'))
    .addHelpText(
      'after',
      helpNote(
        '\nReads the (layer, expert) load every worker reports in its heartbeat, averages it over --window,\n' +
          "gives the hottest experts more replicas within the workers' slots and packs them so the busiest\n" +
          'worker gets as little as possible (a worker holds an expert in every layer, so experts are placed\n' +
          'by their load summed over layers). Workers load new experts first (each needs memory for them),\n' +
          'then unload the ones they give up; coordinators route by each change at once, and a request in\n' +
          'flight to an unloaded expert is re-sent to a replica. Workers take commands through a BullMQ queue\n' +
          'in the same Redis. One rebalance at a time per registry.',
      ),
    );
  action(clusterRebalance, argv, outcome, async () => {
    return async (o: ClusterRebalanceOptions) => {
      checkRedisCa(o);
      return (await import('./commands/cluster.js')).rebalance(o);
    };
  });

  addScaleTools(program, argv, outcome);
  addBenchmarks(program, argv, outcome);
  return program;
}

/** `kmoe synth` and `kmoe plan`: real model sizes without the real weights (docs/scale.md). */
function addScaleTools(program: Command, argv: readonly string[], outcome: Outcome): void {
  const synth = sub(
    program,
    'synth',
    'write a checkpoint shaped like Mixtral 8x22B/8x7B (or a mid-size Mixtral) with random weights',
  )
    .addOption(
      opt
        .like(
          'the model whose layout and shapes to write (mixtral-mid: a mid-size shape, no published model)',
        )
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--layers <n>', "decoder layers to write (1 .. the model's count; mixtral-mid: 8x7B's 32)")
        .argParser(parseInteger('--layers', { min: 1 }))
        .makeOptionMandatory(),
    )
    .addOption(opt.out('new or empty directory', 'dir').makeOptionMandatory())
    .addOption(opt.weightSeed().default(0))
    .addOption(
      new Option(
        '--shard-size <size>',
        "shard budget, e.g. 5GB, 512MiB (default: 5GB, transformers' max_shard_size)",
      ).argParser(parseSize('--shard-size', { min: 1 })),
    )
    .addOption(
      new Option(
        '--sparse',
        'layout only: headers, index and norms; matrices are holes of sparse files (zeros, no disk space): ' +
          'for loader and plan checks, not for running',
      ),
    )
    .addHelpText(
      'after',
      helpNote(
        '\nWrites the exact Hugging Face layout of the model: its config.json (with num_hidden_layers = --layers),\n' +
          'bf16 tensors with the real names and shapes, sharded with a model.safetensors.index.json, seeded random\n' +
          'weights (uniform, std 0.02; norms 1) and a minimal byte-fallback tokenizer.json with exactly vocab_size\n' +
          'ids. Sizes in bf16: 8x22B 5.0 GB per layer + 0.8 GB embeddings and LM head (1 layer: 5.8 GB);\n' +
          '8x7B 2.9 GB per layer + 0.5 GB (1 layer: 3.4 GB). mixtral-mid is no published model: 8x7B at a quarter\n' +
          'of its width (hidden 1024, FFN 3584, 8 heads, 2 KV heads), 0.18 GB per layer + 0.13 GB (4 layers: 0.86 GB),\n' +
          'for speed comparisons where an expert call is large but a few layers fit in memory twice.',
      ),
    );
  action(synth, argv, outcome, async () => (await import('./commands/synth.js')).run, {
    check: synthLayers,
  });

  const plan = sub(program, 'plan', 'memory per worker and a placement that fits, from config and index')
    .addOption(opt.model())
    .addOption(
      new Option('--workers <n>', 'expert workers, experts split evenly in contiguous ranges').argParser(
        parseInteger('--workers', { min: 1 }),
      ),
    )
    .addOption(
      new Option(
        '--placement <sets>',
        "explicit expert sets per worker, e.g. '0-3;4-7' or '0-4;3-7' (replicas allowed)",
      ),
    )
    .addOption(
      opt
        .device('where the experts run: cpu | cuda; on cpu, bf16/fp16 weights are widened to fp32')
        .default('cpu'),
    )
    .addOption(
      new Option(
        '--memory <size>',
        'memory of each device, e.g. 80GiB, 24GB (default: report sizes only)',
      ).argParser(parseSize('--memory', { min: 2 ** 20 })),
    )
    .addOption(
      opt
        .plannedWeights(
          '--expert-weights',
          'format of the expert weights (kmoe computes in fp32, int8, int4, and bf16 on cuda)',
        )
        .default('fp32'),
    )
    .addOption(
      opt
        .plannedWeights(
          '--dense-weights',
          "format of the coordinator's weights (kmoe computes dense layers in fp32 or int8: generate, eval and serve take --dense-weights int8)",
        )
        .default('fp32'),
    )
    .addOption(opt.kvDtype().default('fp32'))
    .addOption(
      new Option('--context <n,...>', 'context lengths (default: max_position_embeddings)').argParser(
        parseList('--context', parseInteger('--context', { min: 1 })),
      ),
    )
    .addOption(
      new Option('--batch <n,...>', 'batch sizes (sequences decoded at once)')
        .argParser(parseList('--batch', parseInteger('--batch', { min: 1 })))
        .default([1], '1'),
    )
    .addOption(opt.reserve())
    .addOption(new Option('--json', 'print the plan as one JSON object'))
    .addHelpText(
      'after',
      helpNote(
        '\nReads config.json and the tensor index (no weights). Give --workers or --placement. Exit status 0 when\n' +
          'everything fits (or no --memory is given), 3 when something does not fit.',
      ),
    );
  action(plan, argv, outcome, async () => (await import('./commands/plan.js')).run, {
    computesFormats: false,
    check: checkPlanFlags,
  });
}

function addBenchmarks(program: Command, argv: readonly string[], outcome: Outcome): void {
  const bench = sub(program, 'bench', 'benchmarks that write JSON and figures');

  const model = sub(bench, 'model', 'prefill and decode throughput of one process')
    .addOption(opt.model())
    .addOption(opt.ids('corpus', 'file').default(['data/eval/valid.docs.u16'], 'data/eval/valid.docs.u16'))
    .addOption(opt.windows('START:END windows of the corpus each prefill measurement runs').default('0:64'))
    .addOption(
      new Option('--decode-tokens <n>', 'tokens per decode measurement')
        .argParser(parseInteger('--decode-tokens', { min: 2 }))
        .default(256),
    )
    .addOption(
      new Option(
        '--decode-prompt <n>',
        'prompt tokens before each decode measurement (the first n of the windows): the context decode runs at',
      )
        .argParser(parseInteger('--decode-prompt', { min: 1 }))
        .default(16),
    )
    .addOption(
      new Option('--repeats <n>', 'measurements per figure')
        .argParser(parseInteger('--repeats', { min: 1 }))
        .default(5),
    )
    .addOption(opt.out('JSON output').default('bench-results/model.json'))
    .addOption(opt.threads())
    .addOption(opt.device())
    .addOption(opt.expertWeights())
    .addOption(opt.denseWeights())
    .addOption(
      new Option(
        '--llama-cpp <gguf|auto>',
        'also run llama.cpp (node-llama-cpp, CPU, same threads) on the same weights, interleaved round by ' +
          'round: a GGUF file, or auto = write one from --model (cached next to --out, in gguf/)',
      ).argParser(parsePath('--llama-cpp', 'a GGUF file or auto')),
    )
    .addOption(
      new Option(
        '--llama-cpp-type <type>',
        'tensor type of the GGUF that --llama-cpp auto writes (default: f32, q8_0 with --expert-weights or --dense-weights int8)',
      ).argParser(parseChoice('--llama-cpp-type', GGUF_OUT_TYPES)),
    )
    .addOption(
      new Option(
        '--llama-cpp-flash-attention <setting>',
        "llama.cpp's flash attention: auto (its default, on for CPU) | on | off (default: auto)",
      ).argParser(parseChoice('--llama-cpp-flash-attention', FLASH_ATTENTION_SETTINGS)),
    )
    .addOption(
      new Option(
        '--versus <settings>',
        'also run a second engine with other settings (dense-weights=FORMAT,expert-weights=FORMAT,workers=N: ' +
          'experts in N local worker processes), interleaved round by round, and report its ratios to the first',
      ).argParser(parseVersus('--versus')),
    )
    .addOption(
      new Option(
        '--llama-cpp-reference <gguf>',
        "another GGUF of the same weights (e.g. from llama.cpp's converter): its greedy tokens are compared with the --llama-cpp one's",
      ).argParser(parsePath('--llama-cpp-reference', 'a GGUF file')),
    )
    .addHelpText(
      'after',
      helpNote(
        '\nPrefill: perplexity windows (batch 1 and 4 windows per pass). Decode: one sequence, greedy, after a\n' +
          'prompt of --decode-prompt tokens. Medians of --repeats measurements after a warm-up, then single-token expert calls.\n' +
          'With --llama-cpp, llama.cpp runs the same windows (one per pass) and the same greedy decode (token ids)\n' +
          'in each round; the JSON holds both sides, their versions and settings, the ratios and the greedy-token\n' +
          'agreement. node-llama-cpp is a devDependency: npm install --no-save node-llama-cpp@3.21.1 if missing.',
      ),
    );
  action(
    model,
    argv,
    outcome,
    async () => {
      const [{ run, checkDecodeSpan }, { sessionSettings }, { BenchConfigError }, { loadModelConfig }] =
        await Promise.all([
          import('../bench/bench-model.js'),
          import('./experts.js'),
          import('../bench/errors.js'),
          import('../../shared/model/config.js'),
        ]);
      return async (o: CorpusBenchCli<Parameters<typeof run>[0]> & { ids: string[] }, args) => {
        for (const f of [o.llamaCpp, o.llamaCppReference]) {
          if (f !== undefined && f !== 'auto' && !existsSync(f))
            throw new UsageError(`GGUF file not found: ${f}`);
        }
        const ids = singleIds(o.ids)!;
        const corpus = await windowsFlag(ids, o.windows);
        const { maxPositionEmbeddings } = await loadModelConfig(o.model);
        const { start, end } = corpus.range;
        try {
          checkDecodeSpan(o, (end - start) * STANDARD_WINDOW, maxPositionEmbeddings);
        } catch (err) {
          if (!(err instanceof BenchConfigError)) throw err;
          // A usage error that keeps its hint: what to give instead is short and specific here.
          throw new UsageError(err.message, { cause: err, hint: err.hint });
        }
        return run({ ...o, ids, corpus, settings: sessionSettings(o) }, args);
      };
    },
    {
      // The flags that cannot go together come before the imports; a GGUF file is looked for after.
      check: (o) => {
        if ((o.llamaCppType !== undefined || o.llamaCppReference !== undefined) && o.llamaCpp === undefined) {
          throw new UsageError('--llama-cpp-type and --llama-cpp-reference need --llama-cpp');
        }
        if (o.llamaCppFlashAttention !== undefined && o.llamaCpp === undefined) {
          throw new UsageError('--llama-cpp-flash-attention needs --llama-cpp');
        }
        if (o.llamaCppType !== undefined && o.llamaCpp !== 'auto') {
          throw new UsageError(
            '--llama-cpp-type applies to --llama-cpp auto (a given GGUF has its own types)',
          );
        }
      },
    },
  );

  const adaptiveKTime = sub(
    bench,
    'adaptive-k-time',
    'time per token of native top-K vs an adaptive-K routing, batched decode, in one run',
  )
    .addOption(opt.model())
    .addOption(opt.routing('the candidate routing (required)'))
    .addOption(opt.batchStreams())
    .addOption(opt.decodeSteps(32))
    .addOption(opt.rounds(3))
    .addOption(
      opt
        .ids('corpus the prompts are cut from', 'file')
        .default(['data/eval/valid.man.u16'], 'data/eval/valid.man.u16'),
    )
    .addOption(opt.workers('0'))
    .addOption(opt.wire())
    .addOption(opt.dispatchTimeout())
    .addOption(opt.out('JSON result').default('bench-results/adaptive-k-time/time.json'))
    .addOption(opt.threads())
    .addOption(opt.device())
    .addOption(opt.expertWeights());
  action(
    adaptiveKTime,
    argv,
    outcome,
    async () => (await import('./commands/bench-adaptive-k-time.js')).run,
    {
      check: (o) => {
        candidateRouting(o.routing);
        checkPlacementFlags(o.workers ?? IN_PROCESS, o);
      },
    },
  );

  const workersTax = sub(
    bench,
    'workers',
    'the distribution tax: batched decode with experts in process vs in N local workers, in one run',
  )
    .addOption(opt.model())
    .addOption(opt.routing('routing of both engines (default: the native top-K)'))
    .addOption(opt.batchStreams())
    .addOption(opt.decodeSteps(64))
    .addOption(opt.rounds(5))
    .addOption(
      opt
        .ids('corpus the prompts are cut from', 'file')
        .default(['data/eval/valid.man.u16'], 'data/eval/valid.man.u16'),
    )
    .addOption(opt.workers('2', 'count'))
    .addOption(opt.wire())
    .addOption(opt.dispatchTimeout())
    .addOption(opt.out('JSON result').default('bench-results/workers/tax.json'))
    .addOption(
      opt.threads('onnxruntime threads of the coordinator; workers get cores / N each (default: all cores)'),
    )
    .addOption(opt.device())
    .addOption(opt.expertWeights())
    .addHelpText(
      'after',
      helpNote(
        '\nThe workers are started as kmoe serve --workers N starts its own (experts split evenly, computed on\n' +
          'their socket thread). Prints tokens/s of both and their ratio per stream count, and a step through the\n' +
          "workers broken down: coordinator onnxruntime time, expert round trips, the workers' own service time\n" +
          'and the rest of each round trip (transport: framing, sockets, hand-offs, wake-ups).',
      ),
    );
  action(workersTax, argv, outcome, async () => (await import('./commands/bench-workers.js')).run, {
    check: (o) => {
      benchWorkersCount(o.workers);
      singleRouting(o.routing);
    },
  });

  const dispatch = sub(bench, 'dispatch', 'network bytes per token of expert parallelism, vs native top-K')
    .addOption(opt.model())
    .addOption(opt.ids('corpus', 'file').default(['data/eval/valid.code.u16'], 'data/eval/valid.code.u16'))
    .addOption(opt.windows('START:END windows').default('0:100'))
    .addOption(
      new Option('--cluster-sizes <n,...>', 'local clusters to run: worker counts, comma-separated')
        .argParser(parseList('--cluster-sizes', parseInteger('--cluster-sizes', { min: 1 })))
        .default([2, 4], '2,4'),
    )
    .addOption(
      new Option('--wire-dtypes <dtypes>', 'wire dtypes to compare, comma-separated')
        .argParser(parseList('--wire-dtypes', parseChoice('--wire-dtypes', WIRE_DTYPES)))
        .default(['fp32', 'bf16'], 'fp32,bf16'),
    )
    .addOption(
      opt.routing(
        'an extra policy to compare, repeatable (native top-K and three adaptive specs always run, once each, also when named here)',
      ),
    )
    .addOption(opt.out('JSON results').default('bench-results/dispatch.json'))
    .addOption(opt.chart('SVG bar chart for the default wire dtype').default('bench-results/dispatch.svg'))
    .addOption(opt.threads('onnxruntime threads of the coordinator (default: all cores)'));
  action(dispatch, argv, outcome, async () => {
    const [{ run }, { checkRouting, sessionSettings }] = await Promise.all([
      import('../bench/bench-dispatch.js'),
      import('./experts.js'),
    ]);
    return async (o: CorpusBenchCli<Parameters<typeof run>[0]> & { ids: string[] }, args) => {
      for (const r of o.routing ?? []) await checkRouting(o.model, r);
      const ids = singleIds(o.ids)!;
      const corpus = await windowsFlag(ids, o.windows);
      return run({ ...o, ids, corpus, settings: sessionSettings(o) }, args);
    };
  });

  const traffic = sub(
    bench,
    'traffic',
    'bytes per token per MoE layer and per request at a large hidden size, from recorded routing traces',
  )
    .addOption(
      opt
        .trace(
          'routing trace files written by kmoe eval --trace, comma-separated (traces of one routing on several texts are summed)',
          'files',
        )
        .argParser(parseFiles('--trace'))
        .makeOptionMandatory(),
    )
    .addOption(
      new Option('--hidden <n>', 'hidden size the hidden states are costed at (Mixtral 8x22B: 6144)')
        .argParser(parseInteger('--hidden', { min: 1 }))
        .default(6144),
    )
    .addOption(
      new Option('--cluster-sizes <n,...>', 'worker counts to cost, comma-separated (experts split evenly)')
        .argParser(parseList('--cluster-sizes', parseInteger('--cluster-sizes', { min: 1 })))
        .default([2, 4, 8], '2,4,8'),
    )
    .addOption(
      new Option('--wire-dtypes <dtypes>', 'wire dtypes to cost, comma-separated')
        .argParser(parseList('--wire-dtypes', parseChoice('--wire-dtypes', WIRE_DTYPES)))
        .default([...WIRE_DTYPES], WIRE_DTYPES.join(',')),
    )
    .addOption(opt.out('JSON results').default('bench-results/traffic.json'))
    .addOption(opt.chart('SVG bar chart for the default wire dtype').default('bench-results/traffic.svg'))
    .addHelpText(
      'after',
      helpNote(
        "\nArithmetic, not timing: every MoE layer of every traced window is costed with the runtime's placement,\n" +
          'dispatch plan and wire frame sizes, with and without same-worker dedup, beside native top-K on the same\n' +
          'router scores. A request = one traced window sent as one batch; decode framing (a message per token) is in\n' +
          'the JSON. Record traces with: kmoe eval --model DIR --ids FILE --windows second-half [--routing P] --trace T.jsonl.gz',
      ),
    );
  action(traffic, argv, outcome, async () => {
    const { run } = await import('../bench/bench-traffic.js');
    return (o: Omit<Parameters<typeof run>[0], 'traces'> & { trace: string[] }, args) =>
      run({ ...o, traces: o.trace }, args);
  });

  const balance = sub(bench, 'balance', 'replica balancing: baseline vs k-aware on skewed local clusters')
    .addOption(opt.model())
    .addOption(opt.ids('corpus', 'file').default(['data/eval/valid.code.u16'], 'data/eval/valid.code.u16'))
    .addOption(opt.windows('START:END windows').default('0:40'))
    .addOption(
      new Option('--cluster-sizes <n,...>', 'local clusters to run: worker counts, comma-separated')
        .argParser(parseList('--cluster-sizes', parseInteger('--cluster-sizes', { min: 2 })))
        .default([3, 4], '3,4'),
    )
    .addOption(
      new Option(
        '--hot <n>',
        'the n most used experts (measured on the windows) get a replica on every worker',
      )
        .argParser(parseInteger('--hot', { min: 1 }))
        .default(2),
    )
    .addOption(opt.wire())
    .addOption(opt.out('JSON results').default('bench-results/balance.json'))
    .addOption(opt.chart('SVG bar chart').default('bench-results/balance.svg'))
    .addOption(opt.threads('onnxruntime threads of the coordinator (default: all cores)'));
  action(balance, argv, outcome, async () => {
    const [{ run }, { sessionSettings }] = await Promise.all([
      import('../bench/bench-balance.js'),
      import('./experts.js'),
    ]);
    return async (
      o: CorpusBenchCli<Parameters<typeof run>[0]> & { ids: string[]; wire?: WireDType },
      args,
    ) => {
      const ids = singleIds(o.ids)!;
      const corpus = await windowsFlag(ids, o.windows);
      return run(
        { ...o, ids, corpus, wire: o.wire ?? DEFAULT_WIRE_DTYPE, settings: sessionSettings(o) },
        args,
      );
    };
  });

  const failover = sub(bench, 'failover', 'timeline of requests/s and errors while workers die and one joins')
    .addOption(opt.model())
    .addOption(
      opt
        .ids('corpus (the prompt is its first tokens)', 'file')
        .default(['data/eval/valid.code.u16'], 'data/eval/valid.code.u16'),
    )
    .addOption(
      new Option('--seconds <s>', 'length of the run')
        .argParser(parseInteger('--seconds', { min: 4 }))
        .default(12),
    )
    .addOption(
      new Option('--tokens <n>', 'tokens per request (a prefill)')
        .argParser(parseInteger('--tokens', { min: 1 }))
        .default(32),
    )
    .addOption(opt.wire())
    .addOption(opt.out('JSON results').default('bench-results/failover.json'))
    .addOption(opt.chart('SVG timeline').default('bench-results/failover.svg'))
    .addOption(opt.threads('onnxruntime threads of the coordinator (default: all cores)'));
  action(failover, argv, outcome, async () => {
    const [{ run }, { sessionSettings }] = await Promise.all([
      import('../bench/bench-failover.js'),
      import('./experts.js'),
    ]);
    return async (o: BenchCli<Parameters<typeof run>[0]> & { ids: string[]; wire?: WireDType }, args) =>
      run(
        { ...o, ids: singleIds(o.ids)!, wire: o.wire ?? DEFAULT_WIRE_DTYPE, settings: sessionSettings(o) },
        args,
      );
  });

  const memory = sub(bench, 'memory', 'peak RSS of a real worker per expert weight format, beside kmoe plan')
    .addOption(opt.model())
    .addOption(opt.expertWeightFormats('expert weight formats, one worker each'))
    .addOption(new Option('--experts <set>', "the worker's experts, e.g. 0-3 (default: all)"))
    .addOption(opt.threads('onnxruntime threads of the worker (default: 1)'))
    .addOption(opt.device())
    .addOption(opt.reserve())
    .addOption(
      new Option('--ready-timeout <s>', 'seconds one worker may take to load')
        .argParser(parseInteger('--ready-timeout', { min: 1 }))
        .default(3600),
    )
    .addOption(opt.out('JSON results').default('bench-results/memory.json'))
    .addHelpText(
      'after',
      helpNote(
        '\nStarts one `kmoe worker` per format (one at a time), waits for its ready line, reads VmHWM (peak RSS)\n' +
          'and VmRSS from /proc/<pid>/status, stops it and checks it is gone. Beside each: the worker kmoe plan\n' +
          'predicts (expert weights in that format + --reserve) and the ratio. Linux only; run on an idle machine.',
      ),
    );
  action(memory, argv, outcome, async () => {
    const { run } = await import('../bench/bench-memory.js');
    type Cli = Omit<Parameters<typeof run>[0], 'readyTimeoutMs'> & { readyTimeout: number };
    return ({ readyTimeout, ...o }: Cli, args) => run({ ...o, readyTimeoutMs: readyTimeout * 1000 }, args);
  });

  const serve = sub(bench, 'serve', 'load generator against a running kmoe serve')
    .addOption(
      new Option('--url <url>', 'server base URL, e.g. http://127.0.0.1:8000')
        .argParser(parseHttpUrl('--url'))
        .makeOptionMandatory(),
    )
    .addOption(
      new Option(
        '--versus-url <url>',
        'a second server of the same model (e.g. its experts elsewhere): every run goes to both, interleaved, ' +
          'and each policy is compared across the two (versus / --url)',
      ).argParser(parseHttpUrl('--versus-url')),
    )
    .addOption(
      new Option('--concurrency <n,...>', 'concurrency levels, comma-separated')
        .argParser(parseList('--concurrency', parseInteger('--concurrency', { min: 1 })))
        .default([1, 4, 16], '1,4,16'),
    )
    .addOption(
      new Option('--requests <n>', 'requests per run (default: 2 x concurrency, at least 8)').argParser(
        parseInteger('--requests', { min: 1 }),
      ),
    )
    .addOption(opt.maxTokens('tokens generated per request').default(64))
    .addOption(
      new Option('--prompt-chars <n>', 'prompt length in characters; slices of data/eval docs and code')
        .argParser(parseInteger('--prompt-chars', { min: 1 }))
        .default(400),
    )
    .addOption(
      opt.routing(
        'policies to compare, comma-separated or repeated, the first being the baseline (a profile file is named ' +
          'when the server loaded the same profile, by digest, else sent inline; default: topk:<native K>,entropy:1,2@1.04)',
      ),
    )
    .addOption(opt.out('JSON results').default('bench-results/serve.json'))
    .addOption(opt.chart('SVG chart').default('bench-results/serve.svg'))
    .addOption(
      new Option('--repeats <n>', 'runs of each (level, policy) pair')
        .argParser(parseInteger('--repeats', { min: 1 }))
        .default(3),
    )
    .addOption(
      new Option('--timeout <s>', 'per request, seconds')
        .argParser(parseNumber('--timeout', { min: 1 }))
        .default(300),
    );
  action(serve, argv, outcome, async () => {
    return async (o: BenchServeOptions, args) => {
      if (o.versusUrl !== undefined && o.versusUrl.replace(/\/+$/, '') === o.url.replace(/\/+$/, ''))
        throw new UsageError('--versus-url is the --url server: give a second server to compare with');
      if (o.routing !== undefined && o.routing.length < 2 && o.versusUrl === undefined) {
        throw new UsageError(
          '--routing needs a baseline and at least one policy to compare (or one policy and --versus-url)',
        );
      }
      return (await import('../bench/bench-serve.js')).run(o, args);
    };
  });

  const expert = sub(bench, 'expert', "one real-size expert vs this machine's GEMM peak and bandwidth")
    .addOption(opt.like('the model whose expert shape to time').default('mixtral-8x22b'))
    .addOption(
      new Option('--hidden <n>', "override the model's hidden size (a multiple of 32)").argParser(
        parseInteger('--hidden', { min: 32 }),
      ),
    )
    .addOption(
      new Option('--ffn <n>', "override the expert's FFN size (a multiple of 32)").argParser(
        parseInteger('--ffn', { min: 32 }),
      ),
    )
    .addOption(opt.expertWeightFormats('expert weight formats to time'))
    .addOption(
      new Option('--batches <n,...>', 'token batches, comma-separated')
        .argParser(parseList('--batches', parseInteger('--batches', { min: 1 })))
        .default([1, 2, 4, 8, 16, 32, 64, 128, 256, 512], '1,2,4,...,512'),
    )
    .addOption(
      new Option('--seconds <s>', 'time budget per point, at least 3 timed calls')
        .argParser(parseNumber('--seconds', { min: 0 }))
        .default(2),
    )
    .addOption(
      new Option('--peak <m,k,n>', 'the GEMM of the peak measurement, [M,K] x [K,N] fp32')
        // M, K, N: dimensions, which may be equal.
        .argParser(parseList('--peak', parseInteger('--peak', { min: 1 }), { repeats: 'allowed' }))
        .default([1024, 4096, 4096], '1024,4096,4096'),
    )
    .addOption(
      new Option('--bandwidth-mib <n>', 'MiB streamed by the bandwidth probe')
        .argParser(parseInteger('--bandwidth-mib', { min: 1 }))
        .default(1024),
    )
    .addOption(opt.threads())
    .addOption(opt.device())
    .addOption(opt.weightSeed().default(0))
    .addOption(opt.out('JSON results').default('bench-results/expert.json'))
    .addOption(opt.chart('SVG chart: GFLOP/s vs batch with the peak').default('bench-results/expert.svg'))
    .addHelpText(
      'after',
      helpNote(
        "\nTimes one SwiGLU expert of the model's shape (seeded synthetic weights, kmoe's own expert graph) for each\n" +
          'token batch and format: tokens/s, GFLOP/s (6 x batch x hidden x ffn per call) and weight bytes read per\n' +
          "second, each as a fraction of this machine's fp32 GEMM peak and memory bandwidth measured in the same\n" +
          'run. Memory: an 8x22B expert is 1.2 GB in fp32, plus about 4 GB while its graph is built.',
      ),
    );
  action(
    expert,
    argv,
    outcome,
    async () => {
      const { run } = await import('../bench/bench-expert.js');
      return (o: Omit<Parameters<typeof run>[0], 'shape' | 'peak'> & BenchExpertShape, args) => {
        const [m, k, n] = o.peak;
        const like = o.hidden === undefined && o.ffn === undefined ? o.like : 'custom shape';
        return run({ ...o, like, shape: benchExpertShape(o), peak: [m!, k!, n!] }, args);
      };
    },
    {
      check: (o) => {
        benchExpertShape(o);
        if (o.peak.length !== 3) throw new UsageError('--peak takes three integers M,K,N');
      },
    },
  );

  addNetworkBenchmarks(bench, argv, outcome);

  const adaptiveK = sub(
    bench,
    'adaptive-k',
    'calibrate every policy, report on unseen data, draw the frontier',
  )
    .addOption(opt.model())
    .addOption(
      new Option('--policies <list>', 'policies to calibrate, comma-separated; none: only --profiles')
        .argParser(
          listParser(
            (raw: string) =>
              raw.trim() === 'none'
                ? []
                : parseList(
                    '--policies',
                    parseChoice<CalibratedPolicy>('--policies', CALIBRATED_POLICIES),
                  )(raw),
            (raw) => raw.trim() !== 'none',
          ),
        )
        .default([...CALIBRATED_POLICIES], CALIBRATED_POLICIES.join(',')),
    )
    .addOption(opt.budget().default(1))
    .addOption(opt.searchWindows().default(256))
    .addOption(opt.step().default(0.1))
    .addOption(
      new Option('--profiles-dir <dir>', 'where calibrated profiles are written')
        .argParser(parseOutputDir('--profiles-dir'))
        .default('profiles'),
    )
    .addOption(
      new Option('--out-dir <dir>', 'JSON, markdown table and chart')
        .argParser(parseOutputDir('--out-dir'))
        .default('bench-results/adaptive-k'),
    )
    .addOption(
      new Option('--profiles <files>', 'existing profiles (e.g. from train-allocator) to report too')
        .argParser(parseFiles('--profiles'))
        .default([], 'none'),
    )
    .addOption(
      new Option(
        '--frontier-from <json>',
        "reuse the global-rule frontier of an earlier run's adaptive-k.json (same model and data)",
      ).argParser(parsePath('--frontier-from', 'an adaptive-k.json file')),
    )
    .addOption(opt.threads())
    .addOption(opt.device())
    .addOption(opt.expertWeights());
  action(adaptiveK, argv, outcome, async () => {
    const [{ run }, { sessionSettings }] = await Promise.all([
      import('../bench/bench-adaptive-k.js'),
      import('./experts.js'),
    ]);
    return (o: BenchCli<Parameters<typeof run>[0]>, args) =>
      run({ ...o, settings: sessionSettings(o) }, args);
  });
}

/** `kmoe bench expert`'s shape flags as given. */
interface BenchExpertShape {
  readonly like: SynthPreset;
  readonly hidden?: number;
  readonly ffn?: number;
  readonly peak: number[];
}

/** The expert shape `kmoe bench expert` times: --like's, or --hidden and --ffn. */
function benchExpertShape(o: BenchExpertShape): { hidden: number; ffn: number } {
  const preset = presetConfig(o.like);
  const shape = {
    hidden: o.hidden ?? (preset['hidden_size'] as number),
    ffn: o.ffn ?? (preset['intermediate_size'] as number),
  };
  // The int8 format quantizes rows in blocks of 32 columns.
  if (shape.hidden % 32 !== 0 || shape.ffn % 32 !== 0)
    throw new UsageError(`--hidden and --ffn must be multiples of 32, got ${shape.hidden} and ${shape.ffn}`);
  return shape;
}

/** `kmoe bench network` (with its in-namespace half `network-cell`) and `kmoe bench project` (docs/scale.md). */
function addNetworkBenchmarks(bench: Command, argv: readonly string[], outcome: Outcome): void {
  const network = sub(bench, 'network', 'kmoe serve across a bandwidth-limited network of namespaces (root)')
    .addOption(opt.model())
    .addOption(
      new Option('--rates <list>', "link rates, comma-separated: tc units (100mbit, 1gbit) or 'unlimited'")
        .argParser(parseLinkRates('--rates'))
        .default(['10mbit', '100mbit', '1gbit', 'unlimited'], '10mbit,100mbit,1gbit,unlimited'),
    )
    .addOption(
      opt.routing(
        'policies to compare, the first being the baseline (default: topk:<native K>,topk:1; a profile file is named when the server loaded the same profile, by digest; else sent inline)',
      ),
    )
    .addOption(
      new Option('--streams <n,...>', 'concurrent streamed requests, comma-separated')
        .argParser(parseList('--streams', parseInteger('--streams', { min: 1 })))
        .default([1, 8], '1,8'),
    )
    .addOption(opt.workers('2', 'count'))
    .addOption(
      new Option('--requests <n>', 'requests per run (default: 2 x streams, at least 8)').argParser(
        parseInteger('--requests', { min: 1 }),
      ),
    )
    .addOption(opt.maxTokens('tokens generated per request').default(32))
    .addOption(
      new Option('--prompt-chars <n>', 'prompt length in characters; slices of data/eval docs and code')
        .argParser(parseInteger('--prompt-chars', { min: 1 }))
        .default(200),
    )
    .addOption(
      new Option('--repeats <n>', 'runs of each (rate, streams, routing) cell, interleaved')
        .argParser(parseInteger('--repeats', { min: 1 }))
        .default(2),
    )
    .addOption(opt.wire())
    .addOption(opt.overlap())
    .addOption(opt.clusterTokenFile())
    .addOption(
      opt.threads(
        'onnxruntime threads of each worker and of kmoe serve (default: theirs, all cores per worker and cores - 1 for serve)',
      ),
    )
    .addOption(
      new Option('--timeout <s>', 'per request, seconds')
        .argParser(parseNumber('--timeout', { min: 1 }))
        .default(600),
    )
    .addOption(opt.out('JSON results').default('bench-results/network.json'))
    .addOption(opt.chart('SVG chart').default('bench-results/network.svg'))
    .addHelpText(
      'after',
      helpNote(
        '\nNeeds root: each rate builds its own network with deploy/netns/kmoe-netns.sh (a namespace per worker and\n' +
          'one for the coordinator, tc htb on every link, RTT measured) and removes it afterwards. --workers N: one\n' +
          'worker namespace each (URLs are refused). Without a cluster token a random one is generated for the run.',
      ),
    );
  action(
    network,
    argv,
    outcome,
    async () => {
      const [{ run }, { checkRouting }] = await Promise.all([
        import('../bench/network.js'),
        import('./experts.js'),
      ]);
      type Cli = Omit<Parameters<typeof run>[0], 'workers' | 'wire' | 'clusterToken'> & {
        workers?: WorkersArg;
        wire?: WireDType;
        clusterTokenFile?: string;
      };
      return async (o: Cli, args) => {
        for (const r of o.routing ?? []) await checkRouting(o.model, r);
        const token = clusterToken(o);
        const { clusterTokenFile: _f, ...rest } = o;
        return run(
          {
            ...rest,
            workers: benchNetworkWorkers(o.workers),
            wire: o.wire ?? DEFAULT_WIRE_DTYPE,
            ...(token === undefined ? {} : { clusterToken: token }),
          },
          args,
        );
      };
    },
    {
      check: (o) => {
        benchNetworkWorkers(o.workers);
        if (o.routing !== undefined && o.routing.length < 2)
          throw new UsageError('--routing needs a baseline and at least one policy to compare');
      },
    },
  );

  // The half of `bench network` that runs inside the coordinator's namespace; not for users.
  const cell = bench
    .command('network-cell', { hidden: true })
    .description('internal: one rate of kmoe bench network, inside the coordinator namespace')
    .addOption(
      new Option('--spec <file>', 'the spec the driver wrote')
        .argParser(parsePath('--spec', 'a file'))
        .makeOptionMandatory(),
    );
  action(cell, argv, outcome, async () => (await import('../bench/network-cell.js')).run);

  const projectCmd = sub(
    bench,
    'project',
    'project step time of Mixtral 8x22B on N GPU hosts, native vs adaptive K, from measured inputs',
  )
    .addOption(
      new Option('--hosts <n,...>', 'expert hosts, comma-separated (each must divide the 8 experts)')
        .argParser(parseList('--hosts', parseChoice('--hosts', ['1', '2', '4', '8'] as const)))
        .default(['2', '4', '8'], '2,4,8'),
    )
    .addOption(
      new Option('--links <gbit,...>', 'link bandwidths in Gbit/s, comma-separated')
        .argParser(parseList('--links', parseNumber('--links', { above: 0 })))
        .default([100, 25, 10], '100,25,10'),
    )
    .addOption(
      new Option('--batches <n,...>', 'tokens per step (decode streams or prefill tokens), comma-separated')
        .argParser(parseList('--batches', parseInteger('--batches', { min: 1 })))
        .default([1, 16, 128], '1,16,128'),
    )
    .addOption(
      new Option(
        '--expert-results <file|assumed>',
        'kmoe bench expert JSON at 8x22B shape, or assumed: an H100 roofline (default: bench-results/expert.json if it was timed with --device cuda, else assumed)',
      ).argParser(parsePath('--expert-results', 'a file or assumed')),
    )
    .addOption(
      new Option(
        '--expert-format <format>',
        "which format's timings of --expert-results (default: its first)",
      ).argParser(parseChoice('--expert-format', EXPERT_WEIGHT_FORMATS)),
    )
    .addOption(
      new Option(
        '--network-results <file|assumed>',
        'kmoe bench network JSON: its wire efficiency, or assumed: TCP on Ethernet (default: bench-results/network.json if present, else assumed)',
      ).argParser(parsePath('--network-results', 'a file or assumed')),
    )
    .addOption(
      new Option('--adaptive-k <file>', "kmoe bench adaptive-k JSON: each profile's average K")
        .argParser(parsePath('--adaptive-k', 'a file'))
        .default('bench-results/adaptive-k/adaptive-k.json'),
    )
    .addOption(
      new Option('--rtt-ms <ms>', 'round trip per MoE layer between hosts, milliseconds (assumed)')
        .argParser(parseNumber('--rtt-ms', { min: 0 }))
        .default(0.05),
    )
    .addOption(
      new Option('--out <file>', 'JSON results (a .md table beside it)')
        .argParser(parseOutputFile('--out', (file) => [markdownBeside(file)]))
        .default('bench-results/projection.json'),
    );
  action(projectCmd, argv, outcome, async () => {
    const { run } = await import('../scale/projection-report.js');
    return (o: Omit<Parameters<typeof run>[0], 'hosts'> & { hosts: string[] }, args) =>
      run({ ...o, hosts: o.hosts.map(Number) }, args);
  });
}
