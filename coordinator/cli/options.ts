// Every kmoe command-line option, defined once: one flag name has one meaning and one parser in
// every command that takes it. Parsers turn text into typed values and throw UsageError naming the
// flag; commands receive the typed values. Nothing here loads onnxruntime, so `--help` stays fast.

import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import path from 'node:path';
import { Option } from 'commander';
import { checkRedisUrl, REDIS_URL_ENV } from '../../shared/cluster-registry/redis-url.js';
import {
  CorpusError,
  type CorpusWindows,
  checkIdsInVocabulary,
  parseWindowRange,
  readU16Ids,
} from '../../shared/data/token-ids.js';
import {
  CPU_EXPERT_WEIGHT_FORMATS,
  DENSE_WEIGHT_FORMATS,
  type DenseWeightFormat,
  EXPERT_WEIGHT_FORMATS,
  type ExpertWeightFormat,
} from '../../shared/onnx/expert-weight-format.js';
import type { Device } from '../../shared/onnx/session.js';
import { CLUSTER_TOKEN_ENV, clusterTokenProblem } from '../../shared/protocol/auth.js';
import { COMPUTE_PLACEMENTS, type ComputePlacement } from '../../shared/protocol/compute-placement.js';
import {
  DEFAULT_WIRE_DTYPE,
  isWireDType,
  WIRE_DTYPES,
  type WireDType,
} from '../../shared/protocol/wire-dtype.js';
import { workerUrlProblem } from '../../shared/protocol/worker-url.js';
import {
  isNamedProfile,
  isProfilePath,
  NAMED_PROFILES,
  profileNameClash,
} from '../../shared/routing/profile-names.js';
import { projectRoot } from '../../shared/runtime/entry-points.js';
import { isLoopbackHost } from '../../shared/runtime/port.js';
import { counted } from '../../shared/text/counted.js';
import { BALANCE_RULES, type BalanceRule, DEFAULT_BALANCE_RULE } from '../cluster/balance.js';
import { DEFAULT_DISPATCH_TIMEOUT_MS } from '../cluster/dispatch-timeout.js';
import { STANDARD_WINDOW, windowCount } from '../evaluation/windows.js';
import { presetConfig, SYNTH_PRESETS, type SynthPreset } from '../scale/presets.js';
import {
  KV_DTYPES,
  type KvDType,
  PLAN_WEIGHT_FORMATS,
  type PlanWeightFormat,
  parseByteSize,
} from '../scale/units.js';
import { LOG_LEVELS, type LogLevel } from '../server/log-levels.js';
import { flagValue, UsageError } from './usage-error.js';

// ---- parsers -------------------------------------------------------------------------------

interface Range {
  readonly min?: number;
  readonly max?: number;
  /** Exclusive lower bound. */
  readonly above?: number;
}

function checkRange(flag: string, raw: string, v: number, r: Range): number {
  if (r.above !== undefined && v <= r.above) throw new UsageError(`${flag} must be > ${r.above}, got ${raw}`);
  if (r.min !== undefined && v < r.min) throw new UsageError(`${flag} must be >= ${r.min}, got ${raw}`);
  if (r.max !== undefined && v > r.max) throw new UsageError(`${flag} must be <= ${r.max}, got ${raw}`);
  return v;
}

/** Decimal notation only (2, -0.5, 1e6): Number() alone also reads 0x10, 0b11 and 0o17. */
const DECIMAL = /^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i;

function decimal(flag: string, raw: string): number {
  const v = Number(raw);
  if (raw.trim() === '' || !Number.isFinite(v))
    throw new UsageError(`${flag} must be a number, got '${raw}'`);
  if (!DECIMAL.test(raw.trim())) throw new UsageError(`${flag} must be written in decimal, got '${raw}'`);
  return v;
}

export function parseNumber(flag: string, r: Range = {}): (raw: string) => number {
  return (raw) => checkRange(flag, raw, decimal(flag, raw), r);
}

export function parseInteger(flag: string, r: Range = {}): (raw: string) => number {
  return (raw) => {
    const v = decimal(flag, raw);
    if (!Number.isInteger(v)) throw new UsageError(`${flag} must be an integer, got '${raw}'`);
    return checkRange(flag, raw, v, r);
  };
}

export function parseChoice<T extends string>(flag: string, choices: readonly T[]): (raw: string) => T {
  return (raw) => {
    if (!(choices as readonly string[]).includes(raw)) {
      const allowed = choices.length === 2 ? choices.join(' or ') : `one of ${choices.join(', ')}`;
      throw new UsageError(`${flag} must be ${allowed}, got '${raw}'`);
    }
    return raw as T;
  };
}

/** What `kmoe bench model --versus` changes for its second engine. */
export interface VersusSettings {
  readonly denseWeights?: DenseWeightFormat;
  readonly expertWeights?: ExpertWeightFormat;
  /** Experts in this many local worker processes the bench starts (0 = in process). */
  readonly workers?: number;
}

/**
 * `dense-weights=int8,expert-weights=fp32,workers=2`: the flags' names and values, comma-separated
 * (workers: a count of local workers only). A list like any other (commaPieces): an empty entry is
 * refused, and so is a setting given twice, where the last one would silently win.
 */
export function parseVersus(flag: string): (raw: string) => VersusSettings {
  return (raw) => {
    const out: { denseWeights?: DenseWeightFormat; expertWeights?: ExpertWeightFormat; workers?: number } =
      {};
    const given = new Set<string>();
    for (const part of commaPieces(flag, raw, 'at least one setting, e.g. dense-weights=int8')) {
      // At the first '=' only: split('=', 2) dropped what followed a second one (workers=2=3).
      const at = part.includes('=') ? part.indexOf('=') : part.length;
      const key = part.slice(0, at).trim();
      const value = part.slice(at + 1).trim();
      if (key === 'dense-weights') {
        out.denseWeights = parseChoice(`${flag} dense-weights`, DENSE_WEIGHT_FORMATS)(value);
      } else if (key === 'expert-weights') {
        out.expertWeights = parseChoice(`${flag} expert-weights`, EXPERT_WEIGHT_FORMATS)(value);
      } else if (key === 'workers') {
        out.workers = parseInteger(`${flag} workers`, { min: 0, max: 256 })(value);
      } else {
        throw new UsageError(
          `${flag}: unknown setting '${key}' (dense-weights=FORMAT, expert-weights=FORMAT, workers=N)`,
        );
      }
      if (given.has(key)) throw new UsageError(`${flag} sets ${key} twice`);
      given.add(key);
    }
    return out;
  };
}

/** What makes two entries of a comma-separated list one, and whether one may come twice. */
export interface ListRules<T> {
  /**
   * The entries are positions (`--peak M,K,N`), not members of a set, so a value may come twice.
   * Elsewhere an entry given twice is a slip refused as such: a bench would run one point twice
   * under one name, a sum (`bench traffic --trace`) would count a file twice.
   */
  readonly repeats?: 'allowed';
  /** Two entries are one when these agree (default: their parsed values, so 4 and 4.0 are one). */
  readonly identity?: (value: T) => unknown;
  /** What an entry is, in the message about one written two ways (default: value). */
  readonly entry?: string;
}

/**
 * The parsers of comma-separated lists, each with which of its values are lists (--workers: URLs,
 * not a count): a list flag given twice is told to give its values in one.
 */
const LIST_PARSERS = new WeakMap<object, (raw: string) => boolean>();

/** Registers `parse` as a parser of comma-separated lists, lists being the values `isList` says are. */
export function listParser<P extends (raw: string) => unknown>(
  parse: P,
  isList: (raw: string) => boolean = () => true,
): P {
  LIST_PARSERS.set(parse, isList);
  return parse;
}

/** Whether `parse` (an option's parseArg) reads `raw` as a comma-separated list. */
export function takesList(parse: unknown, raw: string): boolean {
  return typeof parse === 'function' && LIST_PARSERS.get(parse)?.(raw) === true;
}

/**
 * Options whose repetitions add up (`--routing a --routing b`); any other flag that takes a value
 * is given once (unknown-flags-first.ts refuses a second one, where commander kept the last).
 */
const REPEATABLE = new WeakSet<Option>();

export function isRepeatable(option: Option): boolean {
  return REPEATABLE.has(option);
}

/** Comma-separated items, each parsed by `item`; an empty entry, or one given twice, is a usage error. */
export function parseList<T>(
  flag: string,
  item: (raw: string) => T,
  rules: ListRules<T> = {},
): (raw: string) => T[] {
  return listParser((raw: string): T[] => {
    const pieces = commaPieces(flag, raw, 'at least one value');
    const values = pieces.map(item);
    if (rules.repeats !== 'allowed')
      refuseRepeats(flag, pieces, values.map(rules.identity ?? ((v) => v)), rules.entry);
    return values;
  });
}

/** Files, comma-separated: one file given twice, however its path is written, is refused. */
export function parseFiles(flag: string): (raw: string) => string[] {
  return inputParser(
    parseList(flag, (file) => file, { identity: (file) => path.resolve(file), entry: 'file' }),
  );
}

/** The first entry whose key an earlier one has is a usage error naming both (as the list parser gave them: a resolved path for a profile). */
function refuseRepeats(
  flag: string,
  written: readonly string[],
  keys: readonly unknown[],
  entry = 'value',
): void {
  const seen = new Map<unknown, string>();
  keys.forEach((key, i) => {
    const again = written[i]!;
    const first = seen.get(key);
    if (first === undefined) {
      seen.set(key, again);
      return;
    }
    throw new UsageError(
      first === again
        ? `${flag} names ${again} twice`
        : `${flag} names one ${entry} twice: ${first} and ${again}`,
    );
  });
}

/**
 * The trimmed comma-separated pieces of a flag's value; none at all (`needs ${what}`) or an empty
 * one is a usage error: "a,,b" or a trailing comma is a slip (a value lost in editing), not a
 * shorter list.
 */
function commaPieces(flag: string, raw: string, what: string, hint?: string): string[] {
  const pieces = raw.split(',').map((s) => s.trim());
  if (pieces.every((s) => s === '')) throw new UsageError(`${flag} needs ${what}`);
  if (pieces.includes(''))
    throw new UsageError(`${flag} has an empty entry in '${raw}'`, hint === undefined ? {} : { hint });
  return pieces;
}

/**
 * `--served-model-name`: the name clients must send exactly, so no empty name, no spaces at either
 * end and no control characters (each would make a name no client can be expected to match).
 */
export function parseServedModelName(raw: string): string {
  const flag = '--served-model-name';
  if (raw.trim() === '') throw new UsageError(`${flag} must not be empty`);
  if (raw !== raw.trim()) throw new UsageError(`${flag} must not begin or end with spaces, got '${raw}'`);
  // Unicode's "other" category: controls (C0, C1), format characters (zero-width, bidi), and the like.
  if (/\p{C}/u.test(raw)) throw new UsageError(`${flag} must not contain control or invisible characters`);
  return raw;
}

/**
 * `--host`: the address to listen on. An empty value is refused: Node would listen on every
 * interface, so an unset variable in `--host "$HOST"` would expose a server meant for loopback.
 */
export function parseListenHost(raw: string): string {
  if (raw.trim() === '')
    throw new UsageError(
      '--host needs an address to listen on, got an empty value (0.0.0.0 or :: listens on every interface)',
    );
  return raw;
}

/**
 * The parsers of paths a command reads (files, a checkpoint directory): an output path that is one
 * of them is refused before any work (program.ts), where it overwrote the input (`eval --ids X
 * --trace X` destroyed the corpus).
 */
const INPUT_PARSERS = new WeakMap<object, (value: unknown) => string[]>();

/** The paths in an option's value: a path, or a list of them. */
function pathsIn(value: unknown): string[] {
  const values = Array.isArray(value) ? value : [value];
  return values.filter((v): v is string => typeof v === 'string');
}

/**
 * The paths a command reads in the value `parse` (an option's parseArg) gave, by that parser's
 * rule; undefined for a parser of anything else.
 */
export function inputPathsOf(parse: unknown): ((value: unknown) => string[]) | undefined {
  return typeof parse === 'function' ? INPUT_PARSERS.get(parse) : undefined;
}

/**
 * Registers `parse` as a parser of input paths: its whole value, or (`paths`) the entries of it
 * that name files (--routing's profiles among its specs).
 */
function inputParser<P extends (...args: never[]) => unknown>(
  parse: P,
  paths: (value: unknown) => string[] = pathsIn,
): P {
  INPUT_PARSERS.set(parse, paths);
  return parse;
}

/**
 * An empty value is refused. It named nothing in the error it led to ("model directory not found:
 * "), or was taken for the flag not given at all; an unset variable in `--model "$DIR"` is the
 * usual cause.
 */
function nonEmptyPath(flag: string, what: string, raw: string): string {
  if (raw.trim() === '') throw new UsageError(`${flag} needs ${what}, got an empty value`);
  return raw;
}

/** A path a flag names to read (a file, a directory): an empty value is refused (nonEmptyPath). */
export function parsePath(flag: string, what: string): (raw: string) => string {
  return inputParser((raw: string) => nonEmptyPath(flag, what, raw));
}

/** A path to write, as its parser says: a file or a directory, and the files written beside a file. */
export interface OutputPathParser {
  readonly kind: 'file' | 'dir';
  /** The files the command writes beside the one named (bench project: the .md beside its JSON). */
  readonly beside: (file: string) => string[];
}

/**
 * The parsers of output paths, by what they name: the command checks that it can write there
 * (program.ts, checkOutputPaths) once the whole line is parsed and before any work.
 */
const OUTPUT_PARSERS = new WeakMap<object, OutputPathParser>();

/** What `parse` (an option's parseArg) names when it reads a file or a directory the command writes. */
export function outputPathOf(parse: unknown): OutputPathParser | undefined {
  return typeof parse === 'function' ? OUTPUT_PARSERS.get(parse) : undefined;
}

/**
 * A file to write: not an existing directory, and under a directory (missing ones are made when
 * it is written), so a wrong path fails before any work rather than after it. `beside`: the files
 * the command writes next to it, derived from its path.
 */
export function parseOutputFile(
  flag: string,
  beside: (file: string) => string[] = () => [],
): (raw: string) => string {
  const parse = (raw: string): string => {
    nonEmptyPath(flag, 'a file path', raw);
    if (/[\\/]$/.test(raw) || statOrUndefined(raw)?.isDirectory())
      throw new UsageError(`${flag} ${raw} is a directory; give the path of a file to write`);
    const blocker = fileInTheWay(path.dirname(path.resolve(raw)));
    if (blocker !== undefined) throw new UsageError(`${flag} ${raw}: ${blocker} is a file, not a directory`);
    return raw;
  };
  OUTPUT_PARSERS.set(parse, { kind: 'file', beside });
  return parse;
}

/**
 * A directory to write into: not an existing file, nor under one (missing directories are made).
 * `empty`: the command writes the whole directory and overwrites nothing (synth), so one with
 * entries in it is refused too.
 */
export function parseOutputDir(
  flag: string,
  { empty = false }: { readonly empty?: boolean } = {},
): (raw: string) => string {
  const parse = (raw: string): string => {
    nonEmptyPath(flag, 'a directory path', raw);
    const blocker = fileInTheWay(path.resolve(raw));
    if (blocker !== undefined)
      throw new UsageError(
        blocker === path.resolve(raw)
          ? `${flag} ${raw} is a file; give a directory`
          : `${flag} ${raw}: ${blocker} is a file, not a directory`,
      );
    const entries = empty ? entriesOf(raw) : [];
    if (entries.length > 0)
      throw new UsageError(
        `${flag} ${raw} is not empty (${entries.slice(0, 5).join(', ')}${entries.length > 5 ? ', ...' : ''}); ` +
          'give a new or empty directory',
      );
    return raw;
  };
  OUTPUT_PARSERS.set(parse, { kind: 'dir', beside: () => [] });
  return parse;
}

/** The nearest existing path at or above `dir` when it is not a directory (it would block making `dir`). */
function fileInTheWay(dir: string): string | undefined {
  for (let at = dir; ; at = path.dirname(at)) {
    const stat = statOrUndefined(at);
    if (stat !== undefined) return stat.isDirectory() ? undefined : at;
    if (at === path.dirname(at)) return undefined;
  }
}

/** The names in directory `dir`, none when it is not there yet. */
function entriesOf(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw err;
  }
}

function statOrUndefined(p: string): ReturnType<typeof statSync> | undefined {
  try {
    return statSync(p);
  } catch {
    return undefined;
  }
}

/** A byte size as people write it: 80GiB, 24GB, 512MiB or a byte count. */
export function parseSize(flag: string, r: Range = {}): (raw: string) => number {
  return (raw) => {
    let bytes: number;
    try {
      bytes = parseByteSize(raw);
    } catch (err) {
      throw new UsageError(`${flag}: ${err instanceof Error ? err.message : String(err)}`);
    }
    return checkRange(flag, raw, bytes, r);
  };
}

const parseModelDir = inputParser((raw: string): string => {
  nonEmptyPath('--model', 'a checkpoint directory', raw);
  let isDir: boolean;
  try {
    isDir = statSync(raw).isDirectory();
  } catch {
    throw new UsageError(`model directory not found: ${raw}`);
  }
  if (!isDir) throw new UsageError(`--model ${raw} is not a directory`);
  // A directory that is not a checkpoint at all is the same slip as a wrong path; a config.json
  // that is there but wrong is the checkpoint's problem (ConfigError, exit 1).
  if (statOrUndefined(path.join(raw, 'config.json')) === undefined)
    throw new UsageError(`--model ${raw} has no config.json: not a Hugging Face checkpoint directory`);
  return raw;
});

/** Where `eval --sweep` draws its chart unless --chart says otherwise. */
export const DEFAULT_SWEEP_CHART = 'bench-results/pareto.svg';

const ROUTING_GRAMMAR =
  'topk:K | entropy:K1,K2@T1 | topp:P@KMIN-KMAX | ratio:BETA | skip:TAU | profile.json | recommended';

const ROUTING_LIST_HINT = `policies are separated by single commas, with no comma at either end: ${ROUTING_GRAMMAR}`;

/**
 * Routing policies are spec strings (which contain commas: `entropy:1,2@1.04`) or profile files,
 * so a comma starts a new policy only where a spec prefix (`name:`) or a profile path follows.
 * An empty piece (`topk:2,`, `a,,b`) is refused as parseList refuses one: dropping it would run a
 * spec the user did not finish writing (`entropy:1,2@1.0,` lost its last threshold).
 */
export function splitRoutingList(list: string): string[] {
  const pieces = commaPieces('--routing', list, 'a spec or a profile file', ROUTING_LIST_HINT);
  const out: string[] = [];
  for (const piece of pieces) {
    const starts = /^[a-z]+:/.test(piece) || isProfilePath(piece) || isNamedProfile(piece);
    if (starts || out.length === 0) out.push(piece);
    else out[out.length - 1] += `,${piece}`;
  }
  return out;
}

/** A shipped profile's name (`recommended`) as its file, so everything downstream sees a path; anything else as given. */
export function namedProfileFile(policy: string): string {
  return isNamedProfile(policy) ? path.join(projectRoot(), NAMED_PROFILES[policy.trim()]!) : policy;
}

/**
 * `--routing`, comma-separated and repeatable: every command that takes several policies runs each
 * under its own name (bench serve and network key their results by it), so one given twice, in a
 * list or across flags, is refused; a profile is the file it names, however its path is written.
 */
const collectRouting = inputParser(
  (raw: string, previous: string[] | undefined): string[] => {
    const policies = splitRoutingList(raw).map(namedProfileFile);
    for (const p of policies) if (isProfilePath(p)) existingProfile('--routing', p);
    const all = [...(previous ?? []), ...policies];
    const keys = all.map((p) => (isProfilePath(p) ? path.resolve(p) : p));
    refuseRepeats('--routing', all, keys, 'policy');
    return all;
  },
  // Its profiles are files it reads (an output over one destroyed the profile); its specs are not.
  (value) => pathsIn(value).filter(isProfilePath),
);

/**
 * --routing's specs compared as the policies they parse to: `topp:0.5,topp:0.50` is one policy
 * given twice (bench serve and bench network would run it twice under two names). Checked once the
 * line has passed the flag parsers, since the spec parser loads zod, which --help and usage errors
 * must not (collectRouting compares the entries as written).
 */
export async function checkRoutingRepeats(routing: readonly string[]): Promise<void> {
  if (routing.filter((p) => !isProfilePath(p)).length < 2) return;
  const [{ canonicalRoutingSpec }, { RoutingSpecError }] = await Promise.all([
    import('../../shared/routing/spec.js'),
    import('../../shared/routing/errors.js'),
  ]);
  const keys: string[] = [];
  for (const p of routing)
    keys.push(
      isProfilePath(p)
        ? path.resolve(p)
        : await flagValue('--routing', [RoutingSpecError], () => canonicalRoutingSpec(p)),
    );
  refuseRepeats('--routing', routing, keys, 'policy');
}

/**
 * A tc link rate (`100mbit`, `1gbit`, `8mbps`: bytes per second in tc's units) in bits per second, so
 * that one rate written two ways is one; `unlimited` is Infinity. Undefined for anything else.
 */
export function linkRateBitsPerSecond(rate: string): number | undefined {
  if (rate === 'unlimited') return Number.POSITIVE_INFINITY;
  const m = /^(\d+(?:\.\d+)?)([kmg]?)(bit|bps)$/.exec(rate);
  if (m === null) return undefined;
  const scale = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[m[2] as '' | 'k' | 'm' | 'g'];
  // tc keeps integer rates; rounding makes 0.1gbit and 100mbit one rate despite binary fractions.
  return Math.round(Number(m[1]) * scale * (m[3] === 'bps' ? 8 : 1));
}

/** `bench network --rates`: tc rates or unlimited, none given twice however it is written (1gbit, 1000mbit). */
export function parseLinkRates(flag: string): (raw: string) => string[] {
  return parseList(
    flag,
    (rate) => {
      if (linkRateBitsPerSecond(rate) === undefined)
        throw new UsageError(`${flag}: '${rate}' is neither a tc rate like 100mbit nor unlimited`);
      return rate;
    },
    { identity: linkRateBitsPerSecond, entry: 'rate' },
  );
}

/** A profile file a flag names must be there: a wrong path is a usage error, like --ids'. */
export function existingProfile(flag: string, file: string): string {
  if (!statOrUndefined(file)?.isFile())
    throw new UsageError(`${flag}: no routing profile file ${file}`, {
      hint:
        flag === '--routing'
          ? `pass an existing profile path, a shipped profile name (${Object.keys(NAMED_PROFILES).join(', ')}), or a spec such as topk:2 (routing specs do not end in .json)`
          : `pass existing profile files (.json) or shipped profile names (${Object.keys(NAMED_PROFILES).join(', ')})`,
    });
  return file;
}

/**
 * `kmoe serve` lists and takes a loaded profile by its file name, so its profile files (the
 * --routing one and --profiles) must not share one: refused here, before any worker starts, by the
 * rule the server's RoutingCatalog keeps. The files exist (existingProfile checked each).
 */
export function checkProfileNames(o: {
  readonly routing?: readonly string[];
  readonly profiles?: readonly string[];
}): void {
  const fromRouting = (o.routing ?? []).filter(isProfilePath);
  const clash = profileNameClash([...fromRouting, ...(o.profiles ?? [])], realpathSync);
  if (clash === undefined) return;
  const first = fromRouting.includes(clash.first) ? `${clash.first} (--routing)` : clash.first;
  throw new UsageError(
    `--profiles: ${first} and ${clash.second} are both named ${clash.name}, the name requests use for a loaded profile`,
    { hint: 'give each profile file a name of its own (rename or copy one), or load only one of them' },
  );
}

/** `--workers`: N local worker processes started by the command, or ws:// URLs of running ones. */
export type WorkersArg =
  | { readonly kind: 'count'; readonly n: number }
  | { readonly kind: 'urls'; readonly urls: readonly string[] };

/** A count of local workers, not a list. */
const isWorkerCount = (raw: string) => /^\d+$/.test(raw.trim());

export function parseWorkers(raw: string): WorkersArg {
  const value = raw.trim();
  if (isWorkerCount(value)) return { kind: 'count', n: Number(value) };
  if (value === '') throw new UsageError('--workers takes a count or ws:// URLs');
  const urls = parseList(
    '--workers',
    (url) => {
      if (!/^wss?:\/\/[^\s/]+/i.test(url) || workerUrlProblem(url) !== undefined)
        throw new UsageError(`--workers: '${url}' is neither a worker count nor a ws:// or wss:// URL`, {
          hint: 'give a count of local workers (e.g. 2) or worker URLs such as ws://10.0.0.5:7070,ws://10.0.0.6:7070 (host and port, a port at most 65535)',
        });
      return url;
    },
    // The same worker written two ways (WS://LOCALHOST:7070, ws://localhost:7070/, ws://h:80) is
    // still one worker: compare WHATWG-normalised URLs, which lower-case scheme and host, drop a
    // default port and write an empty path as '/'. Names are not resolved: localhost is not 127.0.0.1.
    { identity: (url) => new URL(url).href, entry: 'worker' },
  )(value);
  return { kind: 'urls', urls };
}
listParser(parseWorkers, (raw) => !isWorkerCount(raw));

/** A server's base URL (`kmoe bench serve --url`): http:// or https:// and a host. */
export function parseHttpUrl(flag: string): (raw: string) => string {
  return (raw) => {
    let url: URL;
    try {
      url = new URL(raw.trim());
    } catch {
      throw new UsageError(`${flag} must be a URL such as http://127.0.0.1:8000, got '${raw}'`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:')
      throw new UsageError(`${flag} must be an http:// or https:// URL, got '${raw}'`);
    return raw.trim();
  };
}

/** `--redis`: redis:// or rediss:// (TLS), credentials allowed (never printed). */
export function parseRedisUrl(raw: string): string {
  const problem = checkRedisUrl(raw.trim());
  if (problem) throw new UsageError(`--redis: ${problem}`);
  return raw.trim();
}

/**
 * `--redis-ca FILE`: the PEM CA certificate(s) a rediss:// server's certificate must chain to (a
 * self-signed or private CA); read here, so a missing or wrong file is a usage error before any
 * connection. The value is the PEM text.
 */
export function parseRedisCa(file: string): string {
  nonEmptyPath('--redis-ca', 'a PEM certificate file', file);
  let pem: string;
  try {
    pem = readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(
      `--redis-ca ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----'))
    throw new UsageError(`--redis-ca ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return pem;
}

/** --redis-ca only with a rediss:// --redis: a CA for a plaintext URL would be a silent no-op or upgrade. */
export function checkRedisCa(o: { readonly redis?: string; readonly redisCa?: string }): void {
  if (o.redisCa === undefined) return;
  if (o.redis === undefined) throw new UsageError('--redis-ca needs --redis rediss://...');
  if (new URL(o.redis).protocol !== 'rediss:')
    throw new UsageError('--redis-ca is for Redis over TLS: --redis must be a rediss:// URL');
}

/** `--experts` of a worker: a set (`0-3`, `0,2,5-7`), or `auto[:N]` (the registry chooses N). */
export function parseExpertChoice(
  raw: string,
): { readonly kind: 'set'; readonly set: string } | { readonly kind: 'auto'; readonly count?: number } {
  const m = /^auto(?::(\d+))?$/.exec(raw.trim());
  if (!m) return { kind: 'set', set: raw };
  if (m[1] === undefined) return { kind: 'auto' };
  const count = Number(m[1]);
  if (count < 1) throw new UsageError(`--experts auto:N needs N >= 1, got ${raw}`);
  return { kind: 'auto', count };
}

/** `--advertise-url`: the ws:// URL coordinators should dial (a worker behind NAT). */
export function parseAdvertiseUrl(raw: string): string {
  const problem = workerUrlProblem(raw.trim());
  if (problem !== undefined)
    throw new UsageError(`--advertise-url must be a ws:// URL, got '${raw}': ${problem}`);
  return raw.trim();
}

function parseWire(raw: string): WireDType {
  if (!isWireDType(raw))
    throw new UsageError(`--wire must be one of ${WIRE_DTYPES.join(', ')}, got '${raw}'`);
  return raw;
}

// ---- typed values ------------------------------------------------------------------------

/** Compute options of every command that runs model graphs; undefined = the session default. */
export interface ComputeOptions {
  readonly threads?: number;
  readonly device?: Device;
  readonly expertWeights?: ExpertWeightFormat;
  readonly denseWeights?: DenseWeightFormat;
}

/** Where the experts run: --workers, --wire, --dispatch-timeout, --balance. */
export interface ExpertPlacementOptions {
  readonly workers?: WorkersArg;
  readonly wire?: WireDType;
  readonly dispatchTimeout?: number;
  /** From KMOE_CLUSTER_TOKEN or --cluster-token-file (see clusterToken()). */
  readonly clusterToken?: string;
  readonly balance?: BalanceRule;
}

/** The options of the batched-decode benchmarks (bench adaptive-k-time, bench workers). */
export interface BatchedDecodeBenchCli extends ComputeOptions, ExpertPlacementOptions {
  readonly model: string;
  readonly routing?: string[];
  readonly streams: number[];
  readonly tokens: number;
  readonly repeats: number;
  readonly ids: string[];
  readonly out: string;
}

/** The secret files' text without the line end editors and `echo` add. */
function readSecretFile(flag: string, file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const what =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EACCES'
          ? 'permission denied'
          : code === 'EISDIR'
            ? 'is a directory'
            : (code ?? (err as Error).message);
    throw new UsageError(`${flag} ${file}: ${what}`);
  }
  const secret = text.trim();
  if (secret === '') throw new UsageError(`${flag} ${file} is empty`);
  return secret;
}

/**
 * The cluster token: the KMOE_CLUSTER_TOKEN environment variable or the --cluster-token-file, not
 * both (which one would win would be a guess). Never a command-line value: `ps` shows those to
 * every user of the host.
 */
export function clusterToken(o: { readonly clusterTokenFile?: string }): string | undefined {
  const fromEnv = process.env[CLUSTER_TOKEN_ENV];
  if (o.clusterTokenFile !== undefined && fromEnv !== undefined && fromEnv !== '')
    throw new UsageError(
      `both ${CLUSTER_TOKEN_ENV} and --cluster-token-file are set; give the cluster token one way`,
    );
  const token =
    o.clusterTokenFile !== undefined
      ? readSecretFile('--cluster-token-file', o.clusterTokenFile)
      : fromEnv === undefined || fromEnv === ''
        ? undefined
        : fromEnv;
  if (token === undefined) return undefined;
  const problem = clusterTokenProblem(token);
  if (problem !== undefined)
    throw new UsageError(
      `${o.clusterTokenFile === undefined ? CLUSTER_TOKEN_ENV : `--cluster-token-file ${o.clusterTokenFile}`}: ${problem}`,
    );
  return token;
}

/**
 * Whether workers listening on `host` may do so with this token: without one, loopback only unless
 * --insecure says otherwise on purpose.
 */
export function checkWorkerAuth(
  host: string,
  token: string | undefined,
  insecure: boolean | undefined,
): void {
  if (token !== undefined && insecure)
    throw new UsageError(
      `--insecure turns authentication off, but a cluster token is set (${CLUSTER_TOKEN_ENV} or --cluster-token-file); drop one`,
    );
  if (token === undefined && !insecure && !isLoopbackHost(host))
    throw new UsageError(
      `--host ${host} accepts other hosts, and without a cluster token anyone who can reach the port could submit work: ` +
        `set ${CLUSTER_TOKEN_ENV} or --cluster-token-file (the same token for coordinators and workers), or add --insecure`,
    );
}

/** The HTTP API key: --api-key or --api-key-file, not both. */
export function apiKey(o: { readonly apiKey?: string; readonly apiKeyFile?: string }): string | undefined {
  if (o.apiKey !== undefined && o.apiKeyFile !== undefined)
    throw new UsageError('--api-key and --api-key-file both given; use one');
  const key = o.apiKeyFile !== undefined ? readSecretFile('--api-key-file', o.apiKeyFile) : o.apiKey;
  if (key === undefined) return undefined;
  if (key.trim() === '' || /\s/.test(key))
    throw new UsageError('the API key must be non-empty, without white space');
  return key;
}

// ---- option definitions -------------------------------------------------------------------
// Factories, because commander binds an Option object to one command.

export const opt = {
  model: () =>
    new Option('--model <dir>', 'checkpoint directory (config.json, *.safetensors, tokenizer.json)')
      .argParser(parseModelDir)
      .makeOptionMandatory(),
  compute: (
    description = 'where the experts compute: thread = a compute thread, so handshakes, /health, /metrics and the registry heartbeat are answered while a batch computes; inline = on the socket thread: two thread hand-offs fewer per request (lower latency), nothing else answered while a batch computes; for a worker whose only client is one coordinator (the workers a command starts with --workers N use it)',
  ) =>
    new Option('--compute <where>', description).argParser(
      parseChoice<ComputePlacement>('--compute', COMPUTE_PLACEMENTS),
    ),
  /** Batched-decode benchmarks: stream counts, steps per round, interleaved rounds. */
  batchStreams: () =>
    new Option('--streams <n,...>', 'concurrent sequences decoded as one batch, comma-separated')
      .argParser(parseList('--streams', parseInteger('--streams', { min: 1 })))
      .default([1, 4, 16], '1,4,16'),
  decodeSteps: (defaultSteps: number) =>
    new Option('--tokens <n>', 'decode steps timed per stream count and round')
      .argParser(parseInteger('--tokens', { min: 1 }))
      .default(defaultSteps),
  rounds: (defaultRounds: number) =>
    new Option('--repeats <n>', 'interleaved rounds (median reported)')
      .argParser(parseInteger('--repeats', { min: 1 }))
      .default(defaultRounds),
  threads: (description = 'onnxruntime threads (default: all cores)') =>
    new Option('--threads <n>', description).argParser(parseInteger('--threads', { min: 1, max: 256 })),
  device: (description = 'execution provider: cpu | cuda (default: cpu; cuda fails loudly if unavailable)') =>
    new Option('--device <device>', description).argParser(parseChoice<Device>('--device', ['cpu', 'cuda'])),
  expertWeights: () =>
    new Option(
      '--expert-weights <format>',
      `how the experts compute where they run: ${EXPERT_WEIGHT_FORMATS.join(' | ')} (default: fp32; bf16 = ` +
        "the checkpoint's 16-bit weights kept in memory, --device cuda only; int8 / int4 = blockwise " +
        '8-bit / 4-bit weights (MatMulNBits), less memory, approximate; see docs/scale.md)',
    ).argParser(parseChoice('--expert-weights', EXPERT_WEIGHT_FORMATS)),
  /**
   * Benchmarks that run one expert format after another (bench expert, bench memory); the
   * attribute `formats` is checked against --device with --expert-weights (program.ts).
   */
  expertWeightFormats: (description: string) =>
    new Option('--formats <list>', `${description}, comma-separated (bf16: --device cuda)`)
      .argParser(parseList('--formats', parseChoice('--formats', EXPERT_WEIGHT_FORMATS)))
      .default([...CPU_EXPERT_WEIGHT_FORMATS], CPU_EXPERT_WEIGHT_FORMATS.join(',')),
  /** The runtime's format; `kmoe plan --dense-weights` prices formats through plannedWeights. */
  denseWeights: () =>
    new Option(
      '--dense-weights <format>',
      `how the dense layers and the LM head compute: ${DENSE_WEIGHT_FORMATS.join(' | ')} (default: fp32; ` +
        'int8 = blockwise 8-bit projections, router kept fp32, faster decode, approximate)',
    ).argParser(parseChoice('--dense-weights', DENSE_WEIGHT_FORMATS)),
  overlap: () =>
    new Option(
      '--overlap',
      'two-batch overlap with workers: a step of 2+ sequences runs as two micro-batches, one computing ' +
        'its dense layers while the other waits for its experts (off by default; no effect in process)',
    ),
  /** `only`: a command that accepts one form only says so in its help (it still parses both and refuses the other). */
  workers: (defaultText: string, only?: 'count') =>
    new Option(
      '--workers <n|urls>',
      only === 'count'
        ? `N worker processes started by this command (experts split evenly; ws:// URLs are not accepted here) (default: ${defaultText})`
        : `where the experts run: N local worker processes started by this command (experts split evenly; ` +
            `0 = in this process), or comma-separated ws:// URLs of running kmoe workers (default: ${defaultText})`,
    ).argParser(parseWorkers),
  wire: () =>
    new Option(
      '--wire <dtype>',
      `hidden states on the wire to workers: ${WIRE_DTYPES.join(' | ')} (default: ${DEFAULT_WIRE_DTYPE})`,
    ).argParser(parseWire),
  dispatchTimeout: () =>
    new Option(
      '--dispatch-timeout <ms>',
      `per worker request, milliseconds; a worker that takes longer is declared stalled and its work ` +
        `goes to replicas (default: ${DEFAULT_DISPATCH_TIMEOUT_MS})`,
    ).argParser(parseInteger('--dispatch-timeout', { min: 1 })),
  balance: () =>
    new Option(
      '--balance <rule>',
      `which replica computes each (token, expert) pair: ${BALANCE_RULES.join(' | ')} (default: ` +
        `${DEFAULT_BALANCE_RULE}; baseline = each expert whole to its least-loaded holder)`,
    ).argParser(parseChoice<BalanceRule>('--balance', BALANCE_RULES)),
  routing: (description = "routing policy (default: the model's native top-K)") => {
    const option = new Option('--routing <policy>', `${description}: ${ROUTING_GRAMMAR}`).argParser(
      collectRouting,
    );
    REPEATABLE.add(option);
    return option;
  },
  /** `file`: a command that reads one corpus, whose --ids is no list (nor hinted to be one when given twice). */
  ids: (description: string, takes: 'files' | 'file' = 'files') =>
    new Option(`--ids <${takes}>`, description).argParser(
      takes === 'files' ? parseFiles('--ids') : parseOneIdsFile,
    ),
  windows: (description: string) => new Option('--windows <range>', description),
  /** `dir`: a new or empty directory the command fills (synth), which never overwrites a file in it. */
  out: (description: string, value: 'file' | 'dir' = 'file') =>
    new Option(`--out <${value}>`, description).argParser(
      value === 'file' ? parseOutputFile('--out') : parseOutputDir('--out', { empty: true }),
    ),
  chart: (description: string) =>
    new Option('--chart <file>', description).argParser(parseOutputFile('--chart')),
  /** A routing trace file: written by `eval`, read by `bench traffic` (comma-separated there). */
  trace: (description: string, value = 'file') => new Option(`--trace <${value}>`, description),
  /** Seconds the requests in flight get to finish on SIGTERM (`kmoe serve`, `kmoe worker`). */
  shutdownTimeout: (description: string, defaultSeconds: number) =>
    new Option('--shutdown-timeout <s>', description)
      .argParser(parseNumber('--shutdown-timeout', { min: 0 }))
      .default(defaultSeconds),
  host: (description = 'address to listen on') =>
    new Option('--host <addr>', description).argParser(parseListenHost),
  port: (description: string) =>
    new Option('--port <port>', description).argParser(parseInteger('--port', { min: 0, max: 65535 })),
  maxConnections: (description: string, defaultValue: number) =>
    new Option('--max-connections <n>', description)
      .argParser(parseInteger('--max-connections', { min: 1, max: 1_000_000 }))
      .default(defaultValue),
  maxConnectionsPerClient: (description: string, defaultValue: number) =>
    new Option('--max-connections-per-client <n>', description)
      .argParser(parseInteger('--max-connections-per-client', { min: 0, max: 1_000_000 }))
      .default(defaultValue),
  maxTokens: (description = 'tokens to generate') =>
    new Option('--max-tokens <n>', description).argParser(parseInteger('--max-tokens', { min: 1 })),
  budget: () =>
    new Option('--budget <pct>', 'allowed perplexity increase over native top-K, percent').argParser(
      parseNumber('--budget', { min: 0, max: 100 }),
    ),
  searchWindows: () =>
    new Option('--search-windows <n>', 'windows (spread over the data) each search step measures').argParser(
      parseInteger('--search-windows', { min: 1 }),
    ),
  trainWindows: () =>
    new Option('--train-windows <n>', 'calibration windows the allocator heads are fitted on').argParser(
      parseInteger('--train-windows', { min: 1 }),
    ),
  holdoutWindows: () =>
    new Option(
      '--holdout-windows <n>',
      'held-out calibration windows (the other fold) that choose the point of the search path',
    ).argParser(parseInteger('--holdout-windows', { min: 1 })),
  searchBudget: () =>
    new Option(
      '--search-budget <pct>',
      'perplexity budget of the search on the search fold, percent',
    ).argParser(parseNumber('--search-budget', { min: 0, max: 100 })),
  kZero: () =>
    new Option(
      '--k-zero <on|off>',
      'allow K = 0 (no expert call; the layer adds the expert-mean prior)',
    ).argParser(parseChoice('--k-zero', ['on', 'off'] as const)),
  step: () =>
    new Option('--step <s>', 'skip-rate step per layer of the quality search').argParser(
      parseNumber('--step', { min: 0.01, max: 1 }),
    ),
  like: (description: string) =>
    new Option('--like <model>', `${description}: ${SYNTH_PRESETS.join(' | ')}`).argParser(
      parseChoice<SynthPreset>('--like', SYNTH_PRESETS),
    ),
  weightSeed: () =>
    new Option('--seed <n>', 'seed of the synthetic weights; the same seed gives the same bytes').argParser(
      parseInteger('--seed', { min: 0, max: 2 ** 32 - 1 }),
    ),
  /** kmoe plan: formats to price, beyond those kmoe computes in (`--expert-weights` of the runtime). */
  plannedWeights: (flag: '--expert-weights' | '--dense-weights', description: string) =>
    new Option(`${flag} <format>`, `${description}: ${PLAN_WEIGHT_FORMATS.join(' | ')}`).argParser(
      parseChoice<PlanWeightFormat>(flag, PLAN_WEIGHT_FORMATS),
    ),
  /** kmoe plan and bench memory: the per-process allowance a plan adds to the weights. */
  reserve: () =>
    new Option(
      '--reserve <size>',
      'per process on top of weights and KV: runtime, arenas, activations (an allowance, not a measurement)',
    )
      .argParser(parseSize('--reserve', { min: 0 }))
      .default(2 ** 30, '1GiB'),
  kvDtype: () =>
    new Option('--kv-dtype <dtype>', `KV cache dtype: ${KV_DTYPES.join(' | ')}`).argParser(
      parseChoice<KvDType>('--kv-dtype', KV_DTYPES),
    ),
  clusterTokenFile: () =>
    new Option(
      '--cluster-token-file <file>',
      `file holding the cluster token (default: the ${CLUSTER_TOKEN_ENV} environment variable), at least 16 characters; ` +
        'coordinators and workers prove to each other that they hold it before any work',
    ).argParser(parsePath('--cluster-token-file', 'a file')),
  insecure: () =>
    new Option(
      '--insecure',
      'allow a non-loopback --host without a cluster token: anyone who can reach the port can submit work',
    ),
  apiKey: () =>
    new Option(
      '--api-key <key>',
      'require "Authorization: Bearer KEY" on /v1/* (visible in ps: prefer --api-key-file)',
    ),
  apiKeyFile: () =>
    new Option('--api-key-file <file>', 'like --api-key, the key read from a file').argParser(
      parsePath('--api-key-file', 'a file'),
    ),
  // KMOE_REDIS_URL keeps a password out of the process list (`ps` shows command lines).
  redis: (description: string) =>
    new Option('--redis <url>', description).env(REDIS_URL_ENV).argParser(parseRedisUrl),
  redisCa: () =>
    new Option(
      '--redis-ca <file>',
      "PEM CA certificate that a rediss:// Redis server's certificate must chain to, instead of the " +
        'system CAs (a self-signed or private CA); the certificate is always verified',
    ).argParser(parseRedisCa),
  logLevel: () =>
    new Option('--log-level <level>', `${LOG_LEVELS.join(' | ')}; JSON lines on stderr`).argParser(
      parseChoice<LogLevel>('--log-level', LOG_LEVELS),
    ),
};

/** The --routing values of a command that runs one policy. */
export function singleRouting(routing: readonly string[] | undefined): string | undefined {
  if (routing === undefined) return undefined;
  if (routing.length > 1) {
    throw new UsageError(`--routing takes one policy here, got ${routing.length}: ${routing.join(' ; ')}`);
  }
  return routing[0];
}

/**
 * The placement flags that need the experts elsewhere, given where a command puts them (`workers`,
 * its default included): --wire, --dispatch-timeout and --balance talk to workers, and
 * --expert-weights is for workers the command starts (a `kmoe worker` at a URL takes its own).
 */
export function checkPlacementFlags(workers: WorkersArg, o: ExpertPlacementOptions & ComputeOptions): void {
  if (workers.kind === 'count') {
    if (workers.n === 0) {
      for (const [flag, value] of [
        ['--wire', o.wire],
        ['--dispatch-timeout', o.dispatchTimeout],
        ['--balance', o.balance],
      ] as const) {
        if (value !== undefined) {
          throw new UsageError(`${flag} needs --workers (N local worker processes or ws:// URLs)`);
        }
      }
    }
  } else if (o.expertWeights !== undefined) {
    throw new UsageError(
      '--expert-weights applies where the experts run: with --workers URLS, start each `kmoe worker` with it',
    );
  }
}

/** Where generate, eval and bench adaptive-k-time put the experts without --workers: in this process. */
export const IN_PROCESS: WorkersArg = { kind: 'count', n: 0 };

/**
 * `kmoe eval`'s flags that cannot go together, checked before the command loads its engine: one
 * corpus, and --chart and --trace only with and without --sweep (which runs the experts in process);
 * without it, one --routing policy and the placement flags.
 */
export function checkEvalFlags(
  o: ExpertPlacementOptions &
    ComputeOptions & {
      readonly ids?: readonly string[];
      readonly text?: string;
      readonly chart?: string;
      readonly sweep?: boolean;
      readonly trace?: string;
      readonly routing?: readonly string[];
    },
): void {
  if ((singleIds(o.ids) === undefined) === (o.text === undefined))
    throw new UsageError('give exactly one of --ids or --text');
  if (o.chart !== undefined && !o.sweep)
    throw new UsageError('--chart draws the --sweep results: add --sweep');
  if (o.trace !== undefined && o.sweep)
    throw new UsageError('--trace records one routing: drop --sweep (or --trace)');
  if (o.sweep && [o.workers, o.wire, o.dispatchTimeout, o.balance].some((v) => v !== undefined))
    throw new UsageError('--sweep runs the experts in this process: drop --workers');
  if (!o.sweep) {
    singleRouting(o.routing);
    checkPlacementFlags(o.workers ?? IN_PROCESS, o);
  }
}

/** `kmoe synth --layers`: at most the layers of the model --like imitates, which it returns. */
export function synthLayers(o: { readonly like: SynthPreset; readonly layers: number }): number {
  const maxLayers = presetConfig(o.like)['num_hidden_layers'] as number;
  if (o.layers > maxLayers)
    throw new UsageError(`--layers must be <= ${maxLayers} for ${o.like}, got ${o.layers}`);
  return maxLayers;
}

/** `kmoe plan`: one of --workers and --placement. */
export function checkPlanFlags(o: { readonly workers?: number; readonly placement?: string }): void {
  if (o.placement !== undefined && o.workers !== undefined)
    throw new UsageError('give --workers N or --placement SETS, not both');
  if (o.placement === undefined && o.workers === undefined)
    throw new UsageError('--workers or --placement is required');
}

/** `kmoe bench adaptive-k-time`'s --routing: the one candidate policy, required. */
export function candidateRouting(routing: readonly string[] | undefined): string {
  const policy = singleRouting(routing);
  if (policy === undefined)
    throw new UsageError('--routing is required (the candidate to compare with native)');
  return policy;
}

/** --workers of a command that starts the workers itself: a count of at least 1. */
export function startedWorkers(workers: WorkersArg, message: string): number {
  if (workers.kind !== 'count' || workers.n < 1) throw new UsageError(message);
  return workers.n;
}

/** `kmoe bench workers`' --workers (default 2). */
export function benchWorkersCount(workers: WorkersArg | undefined): number {
  return startedWorkers(
    workers ?? { kind: 'count', n: 2 },
    '--workers takes a count of at least 1 here: the workers are started by this command',
  );
}

/** `kmoe bench network`'s --workers (default 2): one worker namespace each. */
export function benchNetworkWorkers(workers: WorkersArg | undefined): number {
  return startedWorkers(
    workers ?? { kind: 'count', n: 2 },
    '--workers takes a count >= 1 here: the bench starts a worker in each namespace',
  );
}

/** `kmoe local-cluster`'s worker count, with room for that many ports from --port-base. */
export function localClusterWorkers(o: { readonly workers: WorkersArg; readonly portBase?: number }): number {
  const n = startedWorkers(
    o.workers,
    'local-cluster starts the workers: --workers takes a count of at least 1',
  );
  const { portBase } = o;
  if (portBase !== undefined && (portBase < 1 || portBase + n - 1 > 65535))
    throw new UsageError(`--port-base ${portBase} leaves no room for ${n} ports below 65536`);
  return n;
}

/**
 * `kmoe calibrate`'s flags that cannot go together, checked before it reads a corpus or loads its
 * engine: substitute options only for a skip calibration with a rank (and never with the means
 * off), --method theory for entropy thresholds with one --alpha fewer than --k-values, and
 * --method percentile with its target.
 */
export function checkCalibrateFlags(o: {
  readonly method: 'theory' | 'percentile' | 'quality';
  readonly policy: string;
  readonly alpha: readonly number[];
  readonly kValues: readonly number[];
  readonly targetAvgK?: number;
  readonly expertMeans: 'on' | 'off';
  readonly substituteRank: number;
  readonly substituteWindows?: number;
  readonly substituteRidge?: number;
}): void {
  if (o.substituteRank === 0) {
    for (const [flag, value] of [
      ['--substitute-windows', o.substituteWindows],
      ['--substitute-ridge', o.substituteRidge],
    ] as const) {
      if (value !== undefined)
        throw new UsageError(`${flag} configures the substitute fit: it needs --substitute-rank`);
    }
  } else {
    if (o.method === 'theory')
      throw new UsageError('--substitute-rank is fitted on calibration data: --method theory uses none');
    if (o.policy !== 'skip')
      throw new UsageError(
        `--substitute-rank stands in for skipped experts: it needs --policy skip, not ${o.policy}`,
      );
    if (o.expertMeans === 'off')
      throw new UsageError('--substitute-rank replaces the expert means: drop --expert-means off');
  }
  if (o.method === 'theory') {
    if (o.policy !== 'entropy')
      throw new UsageError('--method theory defines entropy thresholds: use --policy entropy');
    if (o.alpha.length !== o.kValues.length - 1)
      throw new UsageError(`--alpha takes one value fewer than --k-values (${o.kValues.length} K values)`);
  }
  if (o.method === 'percentile' && o.targetAvgK === undefined)
    throw new UsageError('--target-avg-k is required');
}

/** What --ids takes and where such files come from (no kmoe command writes them). */
const IDS_HINT =
  '--ids takes token ids as little-endian uint16, 2 bytes per id (.u16 files like data/eval/*.u16; ' +
  'data/eval/README.md says how they were made); to score a text file, give it to kmoe eval --text, ' +
  "which encodes it with the model's tokenizer";

/**
 * Reads a corpus named by a flag; a file that does not exist, or is not a corpus of that kind (an
 * odd number of bytes for .u16 ids, ids outside the vocabulary), is a usage error (exit 2).
 */
export async function corpusFlag<T>(
  flag: '--ids' | '--text',
  file: string,
  read: () => Promise<T>,
): Promise<T> {
  try {
    return await read();
  } catch (err) {
    if (!(err instanceof CorpusError)) throw err;
    const code = (err.cause as NodeJS.ErrnoException | undefined)?.code;
    if (code === 'ENOENT') throw new UsageError(`cannot read ${flag} ${file}: no such file`, { cause: err });
    // The corpus readers' messages name the file; the flag goes in front, the file once.
    const where = err.message.includes(file) ? flag : `${flag} ${file}`;
    throw new UsageError(`${where}: ${err.message}`, {
      cause: err,
      ...(flag === '--ids' ? { hint: IDS_HINT } : {}),
    });
  }
}

/**
 * Every --ids corpus of a command that has a --model, read and checked against the model's
 * vocabulary before the command starts: a missing file, an odd byte count or an id the model does
 * not have is a usage error naming the file, where the engine would fail after loading the model.
 * The command reads the files again (a few MB at most) so that this check is one place, not one
 * per command and benchmark.
 */
export async function checkIdsForModel(model: string, files: readonly string[]): Promise<void> {
  const { loadModelConfig } = await import('../../shared/model/config.js');
  const { vocabSize } = await loadModelConfig(model);
  for (const file of files)
    await corpusFlag('--ids', file, async () =>
      checkIdsInVocabulary(file, await readU16Ids(file), vocabSize),
    );
}

/**
 * A bench's --ids read and its --windows checked against it before the bench starts: a missing
 * file or a range the corpus does not have is a usage error (exit 2), as in `kmoe eval`.
 */
export async function windowsFlag(idsPath: string, spec: string | undefined): Promise<CorpusWindows> {
  const ids = await corpusFlag('--ids', idsPath, () => readU16Ids(idsPath));
  requireOneWindow(`--ids ${idsPath}`, ids, STANDARD_WINDOW);
  const range = await flagValue('--windows', [CorpusError], () => parseWindowRange(spec, windowCount(ids)));
  return { ids, range };
}

/**
 * A corpus too short for one window is the corpus's fault, named by the flag and file that gave it
 * (`source`), not the --windows range's (which would only say no window is available).
 */
export function requireOneWindow(source: string, ids: Uint16Array, windowLen: number): void {
  if (windowCount(ids, windowLen) > 0) return;
  throw new UsageError(
    `${source}: the corpus has ${counted(ids.length, 'id')}, fewer than one window of ${windowLen}`,
    { hint: `give a corpus of at least ${windowLen} token ids` },
  );
}

/**
 * `--ids` of a command that reads one corpus: one file, in a list of one (the type of --ids
 * everywhere). Not a list parser, so `--ids a --ids b` is told to give it once, not to list both.
 */
const parseOneIdsFile = inputParser((raw: string): string[] => {
  const files = parseFiles('--ids')(raw);
  if (files.length > 1) throw new UsageError(`--ids takes one file here, got ${files.length}`);
  return files;
});

/** The --ids value of a command that reads one corpus (parseOneIdsFile allows no more). */
export function singleIds(ids: readonly string[] | undefined): string | undefined {
  return ids?.[0];
}
