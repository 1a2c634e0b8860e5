// How a --routing argument names a profile rather than a policy spec, apart from the profile
// schema so the CLI tells them apart without loading zod.

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
