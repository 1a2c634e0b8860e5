// Routing spec strings: parsing, canonical formatting, round-trips and the errors users see.

import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RoutingSpecError } from '../../../shared/routing/errors.js';
import {
  canonicalRoutingSpec,
  formatRoutingSpec,
  parseRoutingSpec,
  ROUTING_SPEC_GRAMMAR,
} from '../../../shared/routing/spec.js';
import { configArb, modelArb } from './helpers.js';

const errorOf = (spec: string): RoutingSpecError => {
  try {
    parseRoutingSpec(spec);
  } catch (error) {
    expect(error).toBeInstanceOf(RoutingSpecError);
    return error as RoutingSpecError;
  }
  throw new Error(`expected "${spec}" to be rejected`);
};

describe('routing spec', () => {
  it('parses every grammar form into a typed config', () => {
    expect(parseRoutingSpec('topk:2')).toEqual({ kind: 'topk', k: 2 });
    expect(parseRoutingSpec('entropy:1,2,4@0.6,1.2')).toEqual({
      kind: 'entropy',
      kValues: [1, 2, 4],
      thresholds: [0.6, 1.2],
    });
    expect(parseRoutingSpec('topp:0.7')).toEqual({ kind: 'topp', p: 0.7 });
    expect(parseRoutingSpec('topp:0.7@1-2')).toEqual({ kind: 'topp', p: 0.7, kMin: 1, kMax: 2 });
    expect(parseRoutingSpec('ratio:0.3')).toEqual({ kind: 'ratio', beta: 0.3 });
    expect(parseRoutingSpec('ratio:0.3@4')).toEqual({ kind: 'ratio', beta: 0.3, kMax: 4 });
  });

  it('formats canonically', () => {
    const canonical = (spec: string) => formatRoutingSpec(parseRoutingSpec(spec));
    expect(canonical('topk:02')).toBe('topk:2');
    expect(canonical('entropy:1,2@1.040')).toBe('entropy:1,2@1.04');
    expect(canonical(' topp:.70@1-2 ')).toBe('topp:0.7@1-2');
    expect(canonical('ratio:3e-1')).toBe('ratio:0.3');
    // What --routing compares: two spellings of one policy are one string, two policies are not.
    expect(canonicalRoutingSpec('topp:0.50')).toBe(canonicalRoutingSpec('topp:0.5'));
    expect(canonicalRoutingSpec('topp:0.5@1-2')).not.toBe(canonicalRoutingSpec('topp:0.5'));
  });

  it('round-trips the routing names used by the reference perplexity results unchanged', () => {
    const reference = JSON.parse(
      readFileSync(new URL('../../fixtures/reference/tiny-mixtral/perplexity.json', import.meta.url), 'utf8'),
    ) as { results: { routing: string }[] };
    const names = [...new Set(reference.results.map((r) => r.routing))];
    expect(names.length).toBeGreaterThanOrEqual(6);
    for (const name of names) expect(formatRoutingSpec(parseRoutingSpec(name))).toBe(name);
  });

  it('round-trips any valid global config: parse(format(c)) = c', () => {
    fc.assert(
      fc.property(
        modelArb.chain((model) => configArb(model)),
        (config) => {
          const spec = formatRoutingSpec(config);
          const perLayer =
            (config.kind === 'entropy' && Array.isArray(config.thresholds[0])) ||
            (config.kind === 'topp' && typeof config.p !== 'number') ||
            (config.kind === 'ratio' && typeof config.beta !== 'number') ||
            (config.kind === 'skip' && typeof config.tau !== 'number');
          if (perLayer) {
            expect(spec).toBeUndefined();
            return;
          }
          expect(spec).toBeDefined();
          expect(parseRoutingSpec(spec!)).toEqual(config);
          expect(formatRoutingSpec(parseRoutingSpec(spec!))).toBe(spec);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('shows the full grammar in every error hint', () => {
    const error = errorOf('nope');
    expect(error.spec).toBe('nope');
    expect(error.hint).toBe(ROUTING_SPEC_GRAMMAR);
    for (const form of [
      'topk:K',
      'entropy:K1,K2[,...]@T1[,...]',
      'topp:P[@KMIN-KMAX]',
      'ratio:BETA[@KMAX]',
    ]) {
      expect(ROUTING_SPEC_GRAMMAR).toContain(form);
    }
  });

  it.each([
    ['', /expected KIND:PARAMETERS/],
    ['topk', /expected KIND:PARAMETERS/],
    ['mixture:2', /unknown policy kind "mixture" \(known: topk, entropy, topp, ratio, skip, allocator\)/],
    ['topk:', /no parameters after "topk:"/],
    ['topk:2.5', /K "2.5" is not an integer/],
    ['topk:0', /k must be an integer >= 1, got 0/],
    ['topk:-1', /K "-1" is not an integer/],
    ['entropy:1,2', /needs "@" followed by the entropy thresholds/],
    ['entropy:1,2@0.6,1.2', /thresholds has 2 values but 2 k values need exactly 1/],
    ['entropy:1,2,4@1.2,0.6', /thresholds must be strictly ascending: \[1\] = 0.6 after 1.2/],
    ['entropy:1,,2@0.5', /K\[1\] "" is not an integer/],
    ['entropy:2,1@0.5', /kValues must be strictly ascending/],
    ['topp:abc', /P "abc" is not a non-negative decimal number/],
    ['topp:1.5', /p = 1.5 must be in \(0, 1\]/],
    ['topp:0.7@2', /range "2" is not KMIN-KMAX/],
    ['topp:0.7@3-2', /kMin 3 exceeds kMax 2/],
    ['ratio:0.3@1@2', /more than one "@"/],
    ['ratio:1.1', /beta = 1.1 must be in \[0, 1\]/],
    ['ratio:NaN', /BETA "NaN" is not a non-negative decimal number/],
  ])('rejects %j', (spec, message) => {
    const error = errorOf(spec);
    expect(error.message).toMatch(message);
    expect(error.message).toContain(`invalid routing spec "${spec}"`);
  });
});
