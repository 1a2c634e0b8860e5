// How a --routing argument names a profile rather than a policy spec, apart from the profile
// schema so the CLI tells them apart without loading zod; and the rule that two loaded profile
// files may not share the file name requests use for them.

import { basename } from 'node:path';

/**
 * Profiles shipped under a stable name (`--routing recommended`), as paths relative to the project
 * root. `recommended` is the best calibrated profile measured on unseen text (README "Adaptive K").
 */
export const NAMED_PROFILES: Readonly<Record<string, string>> = { recommended: 'profiles/recommended.json' };

export function isNamedProfile(arg: string): boolean {
  return Object.hasOwn(NAMED_PROFILES, arg.trim());
}

export function isProfilePath(arg: string): boolean {
  return arg.trim().toLowerCase().endsWith('.json');
}

/** Two different profile files with one file name: a server loading both could not tell which a request names. */
export interface ProfileNameClash {
  /** The file name both have. */
  readonly name: string;
  readonly first: string;
  readonly second: string;
}

/**
 * The first clash among profile paths a server would load (its --routing profile, then --profiles):
 * a loaded profile is listed, and may be named, by its file name. `fileOf` says which file a path is
 * (its real path), so one file spelt twice is no clash; a file keeps the name of its first spelling,
 * as RoutingCatalog lists it.
 */
export function profileNameClash(
  paths: readonly string[],
  fileOf: (path: string) => string,
): ProfileNameClash | undefined {
  const files = new Set<string>();
  const byName = new Map<string, string>();
  for (const given of paths) {
    const path = given.trim();
    const file = fileOf(path);
    if (files.has(file)) continue;
    files.add(file);
    const name = basename(path);
    const first = byName.get(name);
    if (first !== undefined) return { name, first, second: path };
    byName.set(name, path);
  }
  return undefined;
}
