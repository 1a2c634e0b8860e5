// The command line's value parsers: numbers only in decimal notation and within their range, lists
// without empty entries. Each mistake is a UsageError naming the flag.

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  existingProfile,
  linkRateBitsPerSecond,
  namedProfileFile,
  opt,
  parseAdvertiseUrl,
  parseChoice,
  parseFiles,
  parseHttpUrl,
  parseInteger,
  parseLinkRates,
  parseList,
  parseListenHost,
  parseNumber,
  parseOutputDir,
  parseOutputFile,
  parseServedModelName,
  parseVersus,
  parseWorkers,
  splitRoutingList,
} from '../../../coordinator/cli/options.js';
import { flagValue, UsageError } from '../../../coordinator/cli/usage-error.js';
import { parseRoutingSpec } from '../../../shared/routing/spec.js';

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

  it.each(['Infinity', '', ' ', '1_000', '16abc'])('refuse %j as not a number', (raw) => {
    expect(usageMessage(() => integer(raw))).toBe(`--max-tokens must be a number, got '${raw}'`);
  });

  it.each(['0x10', '0b11', '0o17'])('refuse %j as not written in decimal', (raw) => {
    expect(usageMessage(() => integer(raw))).toBe(`--max-tokens must be written in decimal, got '${raw}'`);
  });

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

  it('refuses an entry given twice, naming it: a bench would run the same point twice', () => {
    const formats = parseList('--formats', parseChoice('--formats', ['fp32', 'int8'] as const));
    expect(usageMessage(() => formats('fp32,fp32'))).toBe('--formats names fp32 twice');
    expect(usageMessage(() => formats('fp32, int8 ,fp32'))).toBe('--formats names fp32 twice');
    // Values are compared as parsed: 4 and 4.0 are one concurrency, as written they are both named.
    const levels = parseList('--concurrency', parseInteger('--concurrency', { min: 1 }));
    expect(levels('1,4,16')).toEqual([1, 4, 16]);
    expect(usageMessage(() => levels('1,4,4.0'))).toBe('--concurrency names one value twice: 4 and 4.0');
  });

  it('lets a value repeat where the entries are positions (--peak M,K,N)', () => {
    const peak = parseList('--peak', parseInteger('--peak', { min: 1 }), { repeats: 'allowed' });
    expect(peak('1024,4096,4096')).toEqual([1024, 4096, 4096]);
  });

  it('compares files by the path they resolve to', () => {
    const ids = parseFiles('--ids');
    expect(ids('data/a.u16,data/b.u16')).toEqual(['data/a.u16', 'data/b.u16']);
    expect(usageMessage(() => ids('data/a.u16,./data/../data/a.u16'))).toBe(
      '--ids names one file twice: data/a.u16 and ./data/../data/a.u16',
    );
  });
});

describe('parseVersus', () => {
  const versus = parseVersus('--versus');

  it('reads the settings of the second engine', () => {
    expect(versus('dense-weights=int8, workers=2')).toEqual({ denseWeights: 'int8', workers: 2 });
  });

  it('refuses a setting given twice (the last one won) and an empty entry (it was dropped)', () => {
    expect(usageMessage(() => versus('dense-weights=int8,dense-weights=fp32'))).toBe(
      '--versus sets dense-weights twice',
    );
    expect(usageMessage(() => versus('dense-weights=int8,,workers=2'))).toBe(
      "--versus has an empty entry in 'dense-weights=int8,,workers=2'",
    );
    expect(usageMessage(() => versus(','))).toBe(
      '--versus needs at least one setting, e.g. dense-weights=int8',
    );
  });
});

describe('parseListenHost', () => {
  it('takes an address and refuses an empty one (Node would listen on every interface)', () => {
    expect(parseListenHost('127.0.0.1')).toBe('127.0.0.1');
    expect(parseListenHost('0.0.0.0')).toBe('0.0.0.0');
    for (const empty of ['', ' ']) {
      expect(() => parseListenHost(empty)).toThrow(UsageError);
      expect(() => parseListenHost(empty)).toThrow(
        /--host needs an address to listen on, got an empty value/,
      );
    }
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
    for (const name of ['a\nb', 'a\u0085b', 'a\u200bb', 'a\u202eb'])
      expect(usageMessage(() => parseServedModelName(name))).toBe(
        '--served-model-name must not contain control or invisible characters',
      );
  });
});

describe('parseOutputFile', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-out-'));
  const file = path.join(dir, 'taken.json');
  writeFileSync(file, '{}');
  const out = parseOutputFile('--out');

  it('takes a new or existing file, under directories that may not exist yet', () => {
    expect(out(file)).toBe(file);
    expect(out(path.join(dir, 'new', 'deeper', 'p.json'))).toBe(path.join(dir, 'new', 'deeper', 'p.json'));
  });

  it('refuses a directory, and a path under a file, naming the flag and the path', () => {
    expect(usageMessage(() => out(dir))).toBe(
      `--out ${dir} is a directory; give the path of a file to write`,
    );
    expect(usageMessage(() => out(path.join(file, 'p.json')))).toBe(
      `--out ${path.join(file, 'p.json')}: ${file} is a file, not a directory`,
    );
    expect(usageMessage(() => out(''))).toBe('--out needs a file path, got an empty value');
    // A trailing slash names a directory, even one that does not exist yet.
    expect(usageMessage(() => out(`${dir}/new/`))).toBe(
      `--out ${dir}/new/ is a directory; give the path of a file to write`,
    );
  });

  it('an output directory may be new, or an existing directory, but not a file or under one', () => {
    const outDir = parseOutputDir('--out-dir');
    expect(outDir(dir)).toBe(dir);
    expect(outDir(path.join(dir, 'a', 'b'))).toBe(path.join(dir, 'a', 'b'));
    expect(usageMessage(() => outDir(file))).toBe(`--out-dir ${file} is a file; give a directory`);
    expect(usageMessage(() => outDir(path.join(file, 'x')))).toBe(
      `--out-dir ${path.join(file, 'x')}: ${file} is a file, not a directory`,
    );
  });
});

describe('routing flags', () => {
  it('a profile file that is not there is a usage error with the ways to name a policy', () => {
    let error: unknown;
    try {
      existingProfile('--profiles', 'nofile.json');
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).message).toBe('--profiles: no routing profile file nofile.json');
    expect((error as UsageError).hint).toBe(
      'pass existing profile files (.json) or shipped profile names (recommended)',
    );
    // A shipped profile's name stands for its file, for --profiles as for --routing.
    expect(existingProfile('--profiles', namedProfileFile('recommended'))).toMatch(
      /profiles[\\/]recommended\.json$/,
    );
  });

  it('a spec that does not parse becomes a usage error that keeps the grammar as its hint', async () => {
    const error = await flagValue(undefined, [Error], () => parseRoutingSpec('Recommended')).catch(
      (err: unknown) => err,
    );
    expect(error).toBeInstanceOf(UsageError);
    expect((error as UsageError).message).toMatch(
      /invalid routing spec "Recommended": expected KIND:PARAMETERS with KIND one of topk, entropy/,
    );
    expect((error as UsageError).hint).toMatch(/^routing spec grammar:\n {2}topk:K/);
  });
});

describe('routing lists', () => {
  it('split at the commas that start a policy, specs with commas kept whole', () => {
    expect(splitRoutingList('topk:2, entropy:1,2@1.04,recommended,ratio:0.3')).toEqual([
      'topk:2',
      'entropy:1,2@1.04',
      'recommended',
      'ratio:0.3',
    ]);
  });

  it.each(['topk:2,', 'entropy:1,2@1.0,', ',topk:2', 'topk:2,,topk:1', 'entropy:1,,2@1.0'])(
    'refuse %j, an empty entry, with the grammar as the hint',
    (raw) => {
      let error: unknown;
      try {
        splitRoutingList(raw);
      } catch (err) {
        error = err;
      }
      expect(error).toBeInstanceOf(UsageError);
      expect((error as UsageError).message).toBe(`--routing has an empty entry in '${raw}'`);
      expect((error as UsageError).hint).toMatch(/no comma at either end: topk:K \| entropy:K1,K2@T1/);
    },
  );

  it('refuse a list of nothing', () => {
    expect(usageMessage(() => splitRoutingList(' , '))).toBe('--routing needs a spec or a profile file');
  });

  it('refuse a policy given twice, in one list or across repeated --routing flags', () => {
    const collect = opt.routing().parseArg! as (raw: string, previous: string[] | undefined) => string[];
    expect(collect('topk:1', collect('topk:2,entropy:1,2@1.04', undefined))).toEqual([
      'topk:2',
      'entropy:1,2@1.04',
      'topk:1',
    ]);
    expect(usageMessage(() => collect('topk:2,topk:2', undefined))).toBe('--routing names topk:2 twice');
    expect(usageMessage(() => collect('topk:2', collect('topk:1,topk:2', undefined)))).toBe(
      '--routing names topk:2 twice',
    );
    // A shipped profile's name and its file are one policy.
    expect(usageMessage(() => collect('recommended,profiles/recommended.json', undefined))).toMatch(
      /^--routing names one policy twice: \S+recommended\.json and profiles\/recommended\.json$/,
    );
  });
});

describe('--workers and --url', () => {
  it('a count or distinct ws:// URLs; a trailing comma or a URL named twice is a usage error', () => {
    expect(parseWorkers('2')).toEqual({ kind: 'count', n: 2 });
    expect(parseWorkers('ws://a:1,wss://b:2')).toEqual({ kind: 'urls', urls: ['ws://a:1', 'wss://b:2'] });
    expect(usageMessage(() => parseWorkers('ws://a:1,'))).toBe("--workers has an empty entry in 'ws://a:1,'");
    expect(usageMessage(() => parseWorkers('ws://a:1,ws://a:1'))).toBe('--workers names ws://a:1 twice');
    expect(usageMessage(() => parseWorkers('http://a:1'))).toBe(
      "--workers: 'http://a:1' is neither a worker count nor a ws:// or wss:// URL",
    );
    // A port beyond 65535 does not parse; the hint gives the form.
    expect(usageMessage(() => parseWorkers('ws://a:99999'))).toMatch(/'ws:\/\/a:99999' is neither/);
    try {
      parseWorkers('ws://');
      expect.unreachable();
    } catch (err) {
      expect((err as UsageError).hint).toMatch(/worker URLs such as ws:\/\/10\.0\.0\.5:7070/);
    }
  });

  it.each([
    ['ws://127.0.0.1:7070', 'ws://127.0.0.1:7070/'],
    ['ws://localhost:7070', 'WS://LOCALHOST:7070'],
    ['ws://h:80', 'ws://h'],
    ['wss://h', 'wss://h:443/'],
  ])('refuses %s and %s as the same worker written two ways', (a, b) => {
    expect(usageMessage(() => parseWorkers(`${a},${b}`))).toBe(
      `--workers names one worker twice: ${a} and ${b}`,
    );
  });

  it('keeps URLs that differ after normalising, as given', () => {
    // Names are not resolved (localhost is not 127.0.0.1 here), and ws and wss are different servers.
    const urls = ['ws://localhost:7070', 'ws://127.0.0.1:7070', 'wss://127.0.0.1:7070', 'WS://h:7071'];
    expect(parseWorkers(urls.join(','))).toEqual({ kind: 'urls', urls });
  });

  it('bench serve --url takes http(s) URLs only', () => {
    const url = parseHttpUrl('--url');
    expect(url('http://127.0.0.1:8000')).toBe('http://127.0.0.1:8000');
    expect(usageMessage(() => url('notaurl'))).toBe(
      "--url must be a URL such as http://127.0.0.1:8000, got 'notaurl'",
    );
    expect(usageMessage(() => url('ws://127.0.0.1:8000'))).toBe(
      "--url must be an http:// or https:// URL, got 'ws://127.0.0.1:8000'",
    );
  });
});

describe('bench network --rates', () => {
  const rates = parseLinkRates('--rates');

  it('reads tc rates in bits per second: bit and bps (bytes) with k, m, g of 1000', () => {
    expect(linkRateBitsPerSecond('1gbit')).toBe(1e9);
    expect(linkRateBitsPerSecond('1000mbit')).toBe(1e9);
    expect(linkRateBitsPerSecond('1.5kbit')).toBe(1500);
    expect(linkRateBitsPerSecond('8mbps')).toBe(64e6);
    expect(linkRateBitsPerSecond('0.1gbit')).toBe(1e8);
    expect(linkRateBitsPerSecond('unlimited')).toBe(Number.POSITIVE_INFINITY);
    expect(linkRateBitsPerSecond('100')).toBeUndefined();
    expect(rates('10mbit,1gbit,unlimited')).toEqual(['10mbit', '1gbit', 'unlimited']);
  });

  it('refuses one rate written two ways, naming both spellings', () => {
    expect(usageMessage(() => rates('1gbit,1000mbit'))).toBe(
      '--rates names one rate twice: 1gbit and 1000mbit',
    );
    expect(usageMessage(() => rates('100mbit,0.1gbit'))).toBe(
      '--rates names one rate twice: 100mbit and 0.1gbit',
    );
    expect(usageMessage(() => rates('1mbps,8mbit'))).toBe('--rates names one rate twice: 1mbps and 8mbit');
    expect(usageMessage(() => rates('10mb'))).toBe(
      "--rates: '10mb' is neither a tc rate like 100mbit nor unlimited",
    );
  });
});

describe('usage errors quoting the command line', () => {
  // A right-to-left override, a newline and an escape sequence in a value as typed (or pasted, or
  // expanded from a variable): the error quotes them escaped (oneLine's rule), on one line.
  const hostile = 'ws://h:1/\u202eexe.tpircs\n\u001b[2Jforged';
  const escaped = 'ws://h:1/\\u202eexe.tpircs\\u000a\\u001b[2Jforged';

  it('--advertise-url escapes the value it echoes', () => {
    const message = usageMessage(() => parseAdvertiseUrl(hostile));
    expect(message).toBe(
      `--advertise-url must be a ws:// URL, got '${escaped}': it holds white space or an invisible character (U+202E at offset 9); percent-encode it`,
    );
  });

  it.each([
    ['--wire', () => opt.wire().parseArg!(hostile, undefined)],
    ['--workers', () => parseWorkers(hostile)],
    ['--url', () => parseHttpUrl('--url')(hostile)],
    ['--port', () => parseInteger('--port')(hostile)],
    ['--choice', () => parseChoice('--choice', ['a', 'b'])(hostile)],
    ['--files', () => parseFiles('--files')(`${hostile},${hostile}`)],
    ['--served-model-name', () => parseServedModelName(` ${hostile}`)],
    ['--out', () => parseOutputFile('--out')(`${hostile}/`)],
  ])('%s escapes the value it echoes', (_flag, parse) => {
    const message = usageMessage(parse);
    expect(message).toContain(escaped);
    expect(message).not.toMatch(/[\p{Cc}\p{Cf}\p{Cs}\u2028\u2029]/u);
  });

  it('a plain message is left as it is', () => {
    expect(usageMessage(() => parseChoice('--wire', ['fp32', 'bf16'])("a'b\\c"))).toBe(
      "--wire must be fp32 or bf16, got 'a'b\\c'",
    );
  });
});
