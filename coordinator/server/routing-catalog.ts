// Which routing a request may ask for: any spec string or inline profile (validated against the
// model before the request is accepted), and profile files only if the server loaded them at
// start, so an HTTP client can never make the server read a path of its choosing.

import { readFileSync, realpathSync } from 'node:fs';
import { basename, isAbsolute, normalize, resolve as resolvePath } from 'node:path';
import { KmoeError } from '../../shared/errors/kmoe-error.js';
import { RoutingProfileError } from '../../shared/routing/errors.js';
import type { RoutingModel } from '../../shared/routing/policy.js';
import { isInlineProfile, profileDigest, resolveRouting } from '../../shared/routing/profile.js';
import { isProfilePath, NAMED_PROFILES, profileNameClash } from '../../shared/routing/profile-names.js';
import { setLatest } from '../../shared/runtime/latest.js';
import { ROUTING_HANDLE_MIN_CHARS, routingHandle } from '../engine/routing-handle.js';
import { ApiError, InvalidRequestError, ProfilesBusyError } from './errors.js';

export interface ResolvedRouting {
  /**
   * What the engine is given: canonical spec, canonical inline JSON, a loaded profile path, or for
   * an inline profile of ROUTING_HANDLE_MIN_CHARS or more its handle (routing-handle.ts).
   */
  readonly key: string;
  /** The canonical inline JSON a handle stands for (sent with a sequence's prefill steps only). */
  readonly text?: string;
  /** The policy's name for reports: its canonical spec, or the profile's name. */
  readonly name: string;
}

const PARAM = 'kmoe.routing';
/**
 * Longest spec string or profile name a request may send. Real specs are a few dozen characters;
 * the spec grammar's parser is not linear, and a megabyte spec would hold the event loop.
 */
const MAX_SPEC_CHARS = 1024;
/** Large inline profiles remembered as validated (each holds its text: 8 x a few MB). */
const VALIDATED_PROFILES = 8;
/**
 * Event-loop time per second that validating new large inline profiles may take. Each costs
 * ~15-40 ms on the event loop; 150 distinct ones at once stalled every stream for ~4 s. Beyond
 * the share, such requests get 429 until the next second (loaded profiles and ones validated
 * before cost nothing and are never refused).
 */
const PROFILE_VALIDATION_MS_PER_SECOND = 250;

export class RoutingCatalog {
  readonly #model: RoutingModel & { readonly fingerprint: string };
  /**
   * Loaded profiles by the absolute, normalised form of each path given at start: a relative
   * spelling that resolves to it (against the server's working directory) names it (#loaded).
   */
  readonly #byPath: ReadonlyMap<string, ResolvedRouting>;
  /**
   * Each loaded profile once, by its file name: the name /v1/models and errors show. Never the path,
   * which says where the server's files are; relative and absolute spellings of one file are one profile.
   */
  readonly #public = new Map<string, { readonly resolved: ResolvedRouting; readonly digest: string }>();
  /** Large inline profiles already validated, by handle, least recently used first. */
  readonly #validated = new Map<string, ResolvedRouting>();
  /** The same, by the handle of the text as a request sent it (string form), least recently used first. */
  readonly #bySentText = new Map<string, ResolvedRouting>();
  /** Start of the current one-second window, and the validation time spent in it (ms). */
  #windowStart = Number.NEGATIVE_INFINITY;
  #windowSpentMs = 0;
  readonly default: ResolvedRouting;

  /**
   * @param defaultRouting the server's --routing (spec or profile path)
   * @param profiles extra profile files (--profiles) requests may name by path or file name
   * @throws the routing errors of resolveRouting for a bad default or profile, RoutingProfileError
   *   for two different files of one name (profileNameClash; the CLI refuses them before this): a
   *   startup failure
   */
  constructor(
    model: RoutingModel & { readonly fingerprint: string },
    defaultRouting: string,
    profiles: readonly string[],
  ) {
    this.#model = model;
    const paths = [defaultRouting, ...profiles].filter(isProfilePath).map((p) => p.trim());
    const clash = profileNameClash(paths, realPath);
    if (clash !== undefined) {
      throw new RoutingProfileError(
        `routing profiles ${clash.first} and ${clash.second} are both named ${clash.name}, the name requests use`,
        { file: clash.second, hint: 'rename one of the files' },
      );
    }
    const byPath = new Map<string, ResolvedRouting>();
    /** By real path: the first spelling of a file is its key (the default's, which the engine has). */
    const files = new Map<string, ResolvedRouting>();
    for (const path of paths) {
      const real = realPath(path);
      let resolved = files.get(real);
      if (resolved === undefined) {
        resolved = { key: path, name: resolveRouting(path, model).spec };
        files.set(real, resolved);
        this.#public.set(basename(path), { resolved, digest: profileDigest(readFileSync(path, 'utf8')) });
      }
      byPath.set(resolvePath(path), resolved);
    }
    this.#byPath = byPath;
    this.default = isProfilePath(defaultRouting)
      ? byPath.get(resolvePath(defaultRouting.trim()))!
      : this.#inline(defaultRouting);
  }

  /** The names of loaded profiles, one each (for /v1/models and error messages): file names. */
  get profileNames(): string[] {
    return [...this.#public.keys()];
  }

  /** `profileDigest` of every loaded profile, by the name in profileNames. */
  get profileDigests(): Record<string, string> {
    return Object.fromEntries([...this.#public].map(([name, { digest }]) => [name, digest]));
  }

  /** @throws InvalidRequestError naming what is wrong with the request's routing. */
  resolve(requested: string | Record<string, unknown> | undefined): ResolvedRouting {
    if (requested === undefined) return this.default;
    if (typeof requested !== 'string')
      return this.#inline(
        this.#timed(() => JSON.stringify(requested), false),
        true,
      );
    const text = requested.trim();
    if (!isInlineProfile(text) && text.length > MAX_SPEC_CHARS) {
      throw new InvalidRequestError(
        `kmoe.routing is ${text.length} characters; a routing spec or profile name is at most ${MAX_SPEC_CHARS} (send a profile as a JSON object)`,
        { param: PARAM, code: 'invalid_routing' },
      );
    }
    // A shipped profile's name (`recommended`) means that profile if this server loaded it.
    const named = Object.hasOwn(NAMED_PROFILES, text) ? NAMED_PROFILES[text] : undefined;
    if (named !== undefined) {
      const loaded = this.#public.get(basename(named))?.resolved;
      if (loaded) return loaded;
    }
    if (named === undefined && (isInlineProfile(text) || !isProfilePath(text))) return this.#inline(text);
    const loaded = named === undefined ? this.#loaded(text) : undefined;
    if (loaded) return loaded;
    const known = this.profileNames;
    throw new InvalidRequestError(
      `routing profile '${text}'${named === undefined ? '' : ` (${named})`} is not loaded by this server; ${
        known.length > 0
          ? `a request may name a loaded profile by its listed name (${known.join(', ')}) or its path relative to the server's working directory`
          : 'it loaded no profile files (kmoe serve loads them at start: --profiles FILE)'
      }, or send a profile inline as a JSON object`,
      { param: PARAM, code: 'unknown_routing_profile' },
    );
  }

  /**
   * A loaded profile by its listed name (a bare file name) or by a spelling of its path relative to
   * the server's working directory (`profiles/recommended.json`, `./profiles/...`). Paths are
   * compared lexically, never looked up on disk: a client must not learn which files exist. Nor
   * where the server keeps its files: an absolute path, or one that climbs out of the working
   * directory (`../`), would confirm a guessed location of a loaded profile, so neither names one.
   */
  #loaded(text: string): ResolvedRouting | undefined {
    if (basename(text) === text) return this.#public.get(text)?.resolved;
    if (isAbsolute(text) || normalize(text).startsWith('..')) return undefined;
    return this.#byPath.get(resolvePath(text));
  }

  /**
   * A spec or inline profile: validated now; the engine gets a canonical key so equal policies
   * share a cache entry. `stringified`: the text is already JSON.stringify of a parsed profile.
   */
  #inline(text: string, stringified = false): ResolvedRouting {
    try {
      if (stringified && text.length >= ROUTING_HANDLE_MIN_CHARS) return this.#large(text);
      if (text.length >= ROUTING_HANDLE_MIN_CHARS && isInlineProfile(text)) {
        // Found by the hash of the text as sent when it came before (hashing is ~100x cheaper than
        // parsing); otherwise read and validated within the share, malformed text included.
        const sent = routingHandle(text);
        const known = this.#bySentText.get(sent);
        if (known) {
          setLatest(this.#bySentText, sent, known, VALIDATED_PROFILES);
          return known;
        }
        const resolved = this.#timed(() => {
          const canonical = canonicalJson(text);
          if (canonical !== undefined) return this.#large(canonical, undefined, false);
          resolveRouting(text, this.#model); // names what is wrong with text that is not JSON
          throw new InvalidRequestError('kmoe.routing is not valid JSON', {
            param: PARAM,
            code: 'invalid_routing',
          });
        });
        setLatest(this.#bySentText, sent, resolved, VALIDATED_PROFILES);
        return resolved;
      }
      const policy = resolveRouting(text, this.#model);
      if (!isInlineProfile(text)) return { key: policy.spec, name: policy.spec };
      // resolveRouting read it as JSON: it is JSON.
      const canonical = canonicalJson(text)!;
      return canonical.length < ROUTING_HANDLE_MIN_CHARS
        ? { key: canonical, name: policy.spec }
        : this.#large(canonical, policy.spec);
    } catch (err) {
      if (!(err instanceof KmoeError) || err instanceof ApiError) throw err;
      const hint = err.hint === undefined ? '' : `\n${err.hint}`;
      throw new InvalidRequestError(`${err.message}${hint}`, { param: PARAM, code: 'invalid_routing' });
    }
  }

  /**
   * Runs work on a large inline profile, counted in this second's share: a validation is refused
   * once the share is spent (`refusable`); reading the text into its canonical form, which finds a
   * profile validated before, is only counted. @throws ProfilesBusyError
   */
  #timed<T>(work: () => T, refusable = true): T {
    const now = performance.now();
    if (now - this.#windowStart >= 1000) {
      this.#windowStart = now;
      this.#windowSpentMs = 0;
    }
    if (refusable && this.#windowSpentMs >= PROFILE_VALIDATION_MS_PER_SECOND) throw new ProfilesBusyError();
    try {
      return work();
    } finally {
      this.#windowSpentMs += performance.now() - now;
    }
  }

  /**
   * A large canonical inline profile, validated once per distinct text: validating a 2.8 MB
   * substitute profile holds the server's event loop ~15 ms, which clients sending the same
   * profile with every request would otherwise pay each time (and other streams with them).
   * `name`: the policy's name when the caller has validated the text already.
   */
  #large(canonical: string, name?: string, metered = true): ResolvedRouting {
    const key = routingHandle(canonical);
    const known = this.#validated.get(key);
    if (known) {
      setLatest(this.#validated, key, known, VALIDATED_PROFILES);
      return known;
    }
    const validate = () => resolveRouting(canonical, this.#model).spec;
    const resolved = { key, text: canonical, name: name ?? (metered ? this.#timed(validate) : validate()) };
    setLatest(this.#validated, key, resolved, VALIDATED_PROFILES);
    return resolved;
  }
}

/** The file's path with links and `..` resolved, which names one file however it was spelt. */
function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch (cause) {
    throw new RoutingProfileError(`cannot read routing profile ${path}: ${(cause as Error).message}`, {
      file: path,
      cause,
    });
  }
}

/** JSON.stringify(JSON.parse(text)), or undefined when the text is not JSON. */
function canonicalJson(text: string): string | undefined {
  try {
    return JSON.stringify(JSON.parse(text));
  } catch {
    return undefined;
  }
}
