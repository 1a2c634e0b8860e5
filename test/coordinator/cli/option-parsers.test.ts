// The command line's value parsers: numbers only in decimal notation and within their range, lists
// without empty entries. Each mistake is a UsageError naming the flag.

import { describe, expect, it } from 'vitest';
import {
  parseInteger,
  parseList,
  parseNumber,
  parseServedModelName,
} from '../../../coordinator/cli/options.js';
import { UsageError } from '../../../coordinator/cli/usage-error.js';

function usageMessage(parse: () => unknown): string {
  try {
    parse();
  } catch (err) {
    expect(err).toBeInstanceOf(UsageError);
    return (err as Error).message;
  }
  throw new Error('expected a UsageError');
}

describe('parseInteger and parseNumber', () => {
  const integer = parseInteger('--max-tokens', { min: 1 });
  const number = parseNumber('--temperature', { min: 0, max: 2 });

  it('read decimal notation, exponents and signs included', () => {
    expect(integer('16')).toBe(16);
    expect(integer(' +16 ')).toBe(16);
    expect(integer('1e3')).toBe(1000);
    expect(number('0.7')).toBe(0.7);
    expect(number('.5')).toBe(0.5);
    expect(number('2.')).toBe(2);
  });

  it.each(['0x10', '0b11', '0o17', 'Infinity', '', ' ', '1_000', '16abc'])(
    'refuse %j as not a number',
    (raw) => {
      expect(usageMessage(() => integer(raw))).toBe(`--max-tokens must be a number, got '${raw}'`);
    },
  );

  it('refuse fractions where an integer is asked, and values outside the range', () => {
    expect(usageMessage(() => integer('1.5'))).toBe("--max-tokens must be an integer, got '1.5'");
    expect(usageMessage(() => integer('0'))).toBe('--max-tokens must be >= 1, got 0');
    expect(usageMessage(() => number('2.5'))).toBe('--temperature must be <= 2, got 2.5');
  });
});

describe('parseList', () => {
  const list = parseList('--workers', (s) => s);

  it('splits on commas and trims', () => {
    expect(list('ws://a:1, ws://b:2')).toEqual(['ws://a:1', 'ws://b:2']);
  });

  it('refuses an empty list and an empty entry (a trailing comma, two commas)', () => {
    expect(usageMessage(() => list(' , '))).toBe('--workers needs at least one value');
    expect(usageMessage(() => list('ws://a:1,'))).toBe("--workers has an empty entry in 'ws://a:1,'");
    expect(usageMessage(() => list('a,,b'))).toBe("--workers has an empty entry in 'a,,b'");
  });
});

describe('parseServedModelName', () => {
  it('keeps a name as given, slashes included', () => {
    expect(parseServedModelName('mistralai/Mixtral-8x22B')).toBe('mistralai/Mixtral-8x22B');
  });

  it('refuses a name no client could be expected to send exactly', () => {
    expect(usageMessage(() => parseServedModelName(''))).toBe('--served-model-name must not be empty');
    expect(usageMessage(() => parseServedModelName(' m '))).toBe(
      "--served-model-name must not begin or end with spaces, got ' m '",
    );
    expect(usageMessage(() => parseServedModelName('a\nb'))).toBe(
      '--served-model-name must not contain control characters',
    );
  });
});
