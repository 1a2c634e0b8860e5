// Routing spec strings, the compact form every `--routing` flag accepts: `topk:2`,
// `entropy:1,2@1.04`, `topp:0.7@1-2`, `ratio:0.3`. Parsing validates the parameters; formatting
// gives the canonical string, so parse(format(c)) equals c and format(parse(s)) is stable.

import { RoutingSpecError } from './errors.js';
import {
  checkPolicyConfig,
  formatPolicySpec,
  getPolicyKind,
  isPolicyKindName,
  type PolicyConfig,
  policyKindNames,
} from './registry.js';

/** The grammar, one kind per line, as shown in error hints and CLI help. */
export const ROUTING_SPEC_GRAMMAR: string = [
  'routing spec grammar:',
  ...policyKindNames.map((name) => {
    const kind = getPolicyKind(name);
    return `  ${kind.grammar.padEnd(30)} ${kind.summary}`;
  }),
  '  (or a path to a routing profile ending in .json)',
].join('\n');

export function parseRoutingSpec(spec: string): PolicyConfig {
  const fail = (problem: string): never => {
    throw new RoutingSpecError(`invalid routing spec "${spec}": ${problem}`, {
      spec,
      hint: ROUTING_SPEC_GRAMMAR,
    });
  };
  const text = spec.trim();
  const colon = text.indexOf(':');
  if (colon < 0) return fail(`expected KIND:PARAMETERS with KIND one of ${policyKindNames.join(', ')}`);
  const name = text.slice(0, colon);
  const body = text.slice(colon + 1);
  if (!isPolicyKindName(name)) {
    return fail(`unknown policy kind "${name}" (known: ${policyKindNames.join(', ')})`);
  }
  if (body === '') return fail(`no parameters after "${name}:"`);
  const config = getPolicyKind(name).parseSpec(body, fail);
  const problems = checkPolicyConfig(config);
  if (problems.length > 0) fail(problems.join('; '));
  return config;
}

/** Canonical spec of a config, or undefined when it has per-layer parameters (profiles only). */
export function formatRoutingSpec(config: PolicyConfig): string | undefined {
  return formatPolicySpec(config);
}

/**
 * The canonical form of a spec string, so that two spellings of one policy are one string
 * (`topp:0.5` and `topp:0.50`, `ratio:.3` and `ratio:0.3`). Throws RoutingSpecError as parseRoutingSpec.
 */
export function canonicalRoutingSpec(spec: string): string {
  const config = parseRoutingSpec(spec);
  // A spec never has per-layer parameters, so the format is always there.
  return formatRoutingSpec(config) ?? JSON.stringify(config);
}
