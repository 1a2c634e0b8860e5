// Routing profiles: versioned JSON files holding a policy config (per-layer parameters allowed),
// the model it was calibrated for and how it was made. resolveRouting() is what every `--routing`
// flag calls: a path ending in .json loads a profile, anything else is parsed as a spec string.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { z } from 'zod';
import { writeOutputFile } from '../runtime/output-file.js';
import { RoutingConfigError, RoutingProfileError } from './errors.js';
import { checkModel } from './policies/policy-kind.js';
import type { RoutingModel, RoutingPolicy } from './policy.js';
import { isProfilePath } from './profile-names.js';
import { checkPolicyConfig, createRoutingPolicy, type PolicyConfig, policyConfigSchema } from './registry.js';
import { parseRoutingSpec } from './spec.js';

/**
 * Newest profile version this kmoe knows (calibration writes the oldest version that can carry its
 * policy: profileVersionFor). 2 added the `allocator` policy (learned K in {0, 1, 2}); 3 added
 * linear substitutes of skipped experts to `skip` (`expertSubstitutes`). Every other config is
 * unchanged, so version-1 and -2 profiles still load as they are. A reader refuses versions it
 * does not know rather than guessing.
 */
export const ROUTING_PROFILE_VERSION = 3;
/** Versions this kmoe reads. */
export const READABLE_PROFILE_VERSIONS: readonly number[] = [1, 2, 3];

/**
 * The oldest profile version that can carry `policy`: what calibration writes, so a profile that
 * needs nothing new stays readable by older releases.
 */
export function profileVersionFor(policy: PolicyConfig): RoutingProfile['kmoeRoutingProfile'] {
  return minVersionOf(policy).version;
}

/** The profile version a policy config needs, and what needs it. */
function minVersionOf(policy: PolicyConfig): {
  version: RoutingProfile['kmoeRoutingProfile'];
  what: string;
} {
  if (policy.kind === 'skip' && policy.expertSubstitutes !== undefined)
    return { version: 3, what: 'skip with expertSubstitutes' };
  if (policy.kind === 'allocator') return { version: 2, what: 'policy kind allocator' };
  return { version: 1, what: `policy kind ${policy.kind}` };
}

const profileModelSchema = z
  .object({
    /** Checkpoint fingerprint; when both sides have one they must match. */
    fingerprint: z.string().optional(),
    numLayers: z.number().int().min(1),
    numExperts: z.number().int().min(1),
    nativeK: z.number().int().min(1),
  })
  .strict();

/** Longest provenance.name a profile may carry. */
export const PROFILE_NAME_MAX_CHARS = 200;

/** A profile's provenance.name from the file it is written to: the base name, at most PROFILE_NAME_MAX_CHARS. */
export function profileNameOf(file: string): string {
  const base = file
    .split(/[\\/]/)
    .pop()!
    .replace(/\.json$/, '');
  return base.slice(0, PROFILE_NAME_MAX_CHARS);
}

/** How the profile was made; the named fields are typed, anything else is free-form JSON. */
const provenanceSchema = z
  .object({
    createdAt: z.iso.datetime({ offset: true }).optional(),
    method: z.string().optional(),
    data: z.union([z.string(), z.array(z.string())]).optional(),
    budget: z.number().optional(),
    avgK: z.number().optional(),
    ppl: z.number().optional(),
    // Names the profile in logs and responses (`usage.kmoe.routing`): a line's worth, not a payload.
    name: z.string().max(PROFILE_NAME_MAX_CHARS).optional(),
  })
  .catchall(z.json());

export const routingProfileSchema = z
  .object({
    kmoeRoutingProfile: z.union([z.literal(1), z.literal(2), z.literal(3)]),
    policy: policyConfigSchema,
    model: profileModelSchema.optional(),
    provenance: provenanceSchema.optional(),
  })
  .strict()
  .superRefine((profile, ctx) => {
    const needs = minVersionOf(profile.policy);
    if (profile.kmoeRoutingProfile < needs.version) {
      ctx.addIssue({
        code: 'custom',
        message: `${needs.what} needs kmoeRoutingProfile >= ${needs.version}`,
        path: ['kmoeRoutingProfile'],
      });
    }
    if (profile.model === undefined) return;
    // With the model recorded, per-layer lengths and K bounds are checkable without loading it.
    // Model-free problems were already reported by the policy schema itself.
    const modelProblems = checkModel(profile.model);
    const known = new Set(checkPolicyConfig(profile.policy));
    const problems =
      modelProblems.length > 0
        ? modelProblems
        : checkPolicyConfig(profile.policy, profile.model).filter((p) => !known.has(p));
    for (const message of problems) ctx.addIssue({ code: 'custom', message, path: ['policy'] });
  });

export type RoutingProfile = z.infer<typeof routingProfileSchema>;
export type RoutingProfileModel = z.infer<typeof profileModelSchema>;

/** Reads and validates a profile; every failure is a RoutingProfileError naming the file. */
export function loadRoutingProfile(path: string): RoutingProfile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new RoutingProfileError(`cannot read routing profile ${path}: ${(cause as Error).message}`, {
      file: path,
      cause,
      hint: 'pass an existing profile path, or a spec such as topk:2 (routing specs do not end in .json)',
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new RoutingProfileError(`routing profile ${path} is not valid JSON: ${(cause as Error).message}`, {
      file: path,
      cause,
    });
  }
  return parseRoutingProfile(json, path);
}

/** Deepest nesting of arrays and objects a profile may have (real ones: about 6, in provenance). */
const MAX_PROFILE_DEPTH = 64;

/** Whether JSON nests arrays/objects deeper than `limit`, walked without recursion. */
function nestedDeeperThan(json: unknown, limit: number): boolean {
  const stack: { value: unknown; depth: number }[] = [{ value: json, depth: 0 }];
  while (stack.length > 0) {
    const { value, depth } = stack.pop()!;
    if (typeof value !== 'object' || value === null) continue;
    if (depth + 1 > limit) return true;
    for (const child of Object.values(value)) stack.push({ value: child, depth: depth + 1 });
  }
  return false;
}

/** Validates already-parsed JSON as a profile; `file` names its origin in errors. */
export function parseRoutingProfile(json: unknown, file: string): RoutingProfile {
  const version =
    typeof json === 'object' && json !== null && !Array.isArray(json)
      ? (json as Record<string, unknown>)['kmoeRoutingProfile']
      : undefined;
  if (version === undefined) {
    throw new RoutingProfileError(`${file} is not a kmoe routing profile: no "kmoeRoutingProfile" field`, {
      file,
      hint: `a profile is a JSON object starting {"kmoeRoutingProfile": ${ROUTING_PROFILE_VERSION}, "policy": {...}}`,
    });
  }
  if (typeof version !== 'number' || !READABLE_PROFILE_VERSIONS.includes(version)) {
    throw new RoutingProfileError(
      `routing profile ${file} has kmoeRoutingProfile ${JSON.stringify(version)}; this kmoe reads versions ${READABLE_PROFILE_VERSIONS.join(', ')}`,
      { file, hint: 'use the kmoe release that wrote the profile, or re-run calibration' },
    );
  }
  if (nestedDeeperThan(json, MAX_PROFILE_DEPTH)) {
    // The schema validator recurses: thousands of levels would overflow the stack.
    throw new RoutingProfileError(
      `routing profile ${file} is nested deeper than ${MAX_PROFILE_DEPTH} levels; a profile needs a handful`,
      { file },
    );
  }
  const result = routingProfileSchema.safeParse(json);
  if (!result.success) {
    throw new RoutingProfileError(`routing profile ${file} is invalid:\n${z.prettifyError(result.error)}`, {
      file,
    });
  }
  return result.data;
}

/** Validates, then writes whole (writeOutputFile: temp file + rename) so readers never see half a profile. */
export function saveRoutingProfile(path: string, profile: RoutingProfile): void {
  const result = routingProfileSchema.safeParse(profile);
  if (!result.success) {
    throw new RoutingProfileError(
      `refusing to save invalid routing profile ${path}:\n${z.prettifyError(result.error)}`,
      {
        file: path,
      },
    );
  }
  writeOutputFile(path, `${JSON.stringify(result.data, null, 2)}\n`);
}

/** Problems that make a profile unusable for the loaded model. */
function profileModelMismatches(
  recorded: RoutingProfileModel,
  model: RoutingModel & { readonly fingerprint?: string },
): string[] {
  const problems: string[] = [];
  for (const field of ['numLayers', 'numExperts', 'nativeK'] as const) {
    if (recorded[field] !== model[field])
      problems.push(`${field} is ${recorded[field]} in the profile but ${model[field]} in the model`);
  }
  if (
    recorded.fingerprint !== undefined &&
    model.fingerprint !== undefined &&
    recorded.fingerprint !== model.fingerprint
  ) {
    problems.push(`fingerprint ${recorded.fingerprint} differs from the model's ${model.fingerprint}`);
  }
  return problems;
}

/**
 * The routing policy for a `--routing` argument: a profile path (ends in .json) or a spec string.
 * A profile's policy is named by its canonical spec when it has one, else by the file name.
 */
export function resolveRouting(
  arg: string,
  model: RoutingModel & { readonly fingerprint?: string },
): RoutingPolicy {
  const text = arg.trim();
  if (!isProfilePath(text) && !isInlineProfile(text))
    return createRoutingPolicy(parseRoutingSpec(text), model);
  const origin = isInlineProfile(text) ? 'inline routing profile' : text;
  const profile = isInlineProfile(text) ? parseInlineProfile(text) : loadRoutingProfile(text);
  const name = isInlineProfile(text) ? inlineName(profile) : basename(text);
  if (profile.model !== undefined) {
    const problems = profileModelMismatches(profile.model, model);
    if (problems.length > 0) {
      throw new RoutingProfileError(
        `routing profile ${origin} was made for another model: ${problems.join('; ')}`,
        { file: origin, hint: 'calibrate a profile for this model, or use a spec string' },
      );
    }
  }
  try {
    return createRoutingPolicy(profile.policy, model, name);
  } catch (cause) {
    if (!(cause instanceof RoutingConfigError)) throw cause;
    throw new RoutingProfileError(`routing profile ${origin} does not fit the model: ${cause.message}`, {
      file: origin,
      cause,
      hint: 'calibrate a profile for this model, or use a spec string',
    });
  }
}

/**
 * A profile passed as JSON text instead of a path (calibration candidates, per-request routing in
 * an HTTP body): anything starting with `{`.
 */
export function isInlineProfile(arg: string): boolean {
  return arg.trimStart().startsWith('{');
}

function parseInlineProfile(text: string): RoutingProfile {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new RoutingProfileError(`inline routing profile is not valid JSON: ${(cause as Error).message}`, {
      file: 'inline routing profile',
      cause,
    });
  }
  return parseRoutingProfile(json, 'inline routing profile');
}

/** An inline profile is named by provenance.name when it has one. */
function inlineName(profile: RoutingProfile): string {
  const name = profile.provenance?.name;
  return name !== undefined && name !== '' ? name : 'inline-profile';
}

/**
 * `sha256:<hex>` of a profile file's canonical JSON (parsed and stringified again), so that two
 * copies formatted differently compare equal: what /v1/models reports for loaded profiles and
 * `kmoe bench serve` checks before naming one instead of sending its own.
 */
export function profileDigest(fileText: string): string {
  return `sha256:${createHash('sha256')
    .update(JSON.stringify(JSON.parse(fileText)))
    .digest('hex')}`;
}
