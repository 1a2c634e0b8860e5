// The one rule for worker URLs: ws:// or wss:// with a host, no fragment, and text a person reads as
// it is: white space, controls and invisible characters are refused even where new URL() would
// drop or percent-encode them (a registry record keeps the raw text, and logs quote it).

import { describe, expect, it } from 'vitest';
import {
  canonicalWorkerUrl,
  isLoopbackOrUnspecified,
  MAX_WORKER_URL_CHARS,
  workerUrlProblem,
} from '../../../shared/protocol/worker-url.js';

describe('workerUrlProblem', () => {
  it.each([
    'ws://127.0.0.1:7070',
    'wss://worker-3.example:443/experts',
    'ws://[::1]:7070/',
    'ws://h:1/%E2%80%AE%0A',
  ])('accepts %s', (url) => {
    expect(workerUrlProblem(url)).toBeUndefined();
  });

  it.each([
    ['a newline', 'ws://127.0.0.1:1/\n[fake]', 'U+000A at offset 17'],
    ['a tab', 'ws://127.0.0.1:1/\tx', 'U+0009'],
    ['a space', 'ws://127.0.0.1:1/ x', 'U+0020'],
    ['a no-break space', 'ws://127.0.0.1:1/\u00a0x', 'U+00A0'],
    ['a line separator', 'ws://127.0.0.1:1/\u2028x', 'U+2028'],
    ['an escape', 'ws://127.0.0.1:1/\u001b[2J', 'U+001B'],
    ['a right-to-left override', 'ws://127.0.0.1:1/\u202eexe.txt', 'U+202E'],
    ['a zero width joiner', 'ws://127.0.0.1:1/a\u200db', 'U+200D'],
    ['a tag character', 'ws://127.0.0.1:1/\u{e0041}', 'U+E0041'],
    ['a lone surrogate', 'ws://127.0.0.1:1/\ud800', 'U+D800'],
  ])('refuses a URL holding %s, naming it', (_what, url, named) => {
    // Each of these parses: the URL parser alone would let it through.
    expect(() => new URL(url)).not.toThrow();
    expect(workerUrlProblem(url)).toContain(named);
  });
});

describe('canonicalWorkerUrl', () => {
  it.each([
    ['ws://127.0.0.1:7070', 'ws://127.0.0.1:7070/'],
    ['WS://Worker-3.Example:7070/Experts', 'ws://worker-3.example:7070/Experts'],
    ['wss://h:443/x?a=1', 'wss://h/x?a=1'],
    ['ws://h:80', 'ws://h/'],
    ['ws://[0:0:0:0:0:0:0:1]:7070', 'ws://[::1]:7070/'],
    ['ws://user:secret@h:1/', 'ws://h:1/'],
    ['ws://h:1/\u00e9', 'ws://h:1/%C3%A9'],
  ])('writes %s as %s', (url, canonical) => {
    expect(canonicalWorkerUrl(url)).toBe(canonical);
    expect(canonicalWorkerUrl(canonical)).toBe(canonical);
  });

  it('keeps apart what only the network can tell apart, and refuses what is no worker URL', () => {
    expect(canonicalWorkerUrl('ws://localhost:1')).not.toBe(canonicalWorkerUrl('ws://127.0.0.1:1'));
    expect(canonicalWorkerUrl('ws://h:1/a')).not.toBe(canonicalWorkerUrl('ws://h:1/b'));
    expect(() => canonicalWorkerUrl('http://h:1')).toThrow(/ws:\/\/ or wss:\/\//);
  });

  it('bounds its length, written out in full (it travels in the hello)', () => {
    const path = 'a'.repeat(MAX_WORKER_URL_CHARS);
    expect(workerUrlProblem(`ws://h:1/${path}`)).toMatch(/at most 2048/);
    // Percent-encoding counts: 700 characters that are 6 each written out.
    expect(workerUrlProblem(`ws://h:1/${'\u00e9'.repeat(700)}`)).toMatch(/4209 characters long/);
    expect(workerUrlProblem(`ws://h:1/${'a'.repeat(2000)}`)).toBeUndefined();
    // As written, too: a user name and password the canonical form leaves out still count.
    const credentials = `ws://u:${'p'.repeat(MAX_WORKER_URL_CHARS)}@h:1/`;
    expect(canonicalWorkerUrl(`ws://u:p@h:1/`)).toBe('ws://h:1/');
    expect(workerUrlProblem(credentials)).toMatch(/^it is 2060 characters long; at most 2048$/);
  });
});

describe('isLoopbackOrUnspecified', () => {
  it('names the hosts every host has, however they are written, and nothing else', () => {
    const everywhere = [
      'ws://127.0.0.1:1',
      'ws://127.1:1',
      'ws://2130706433:1',
      'ws://0.0.0.0:1',
      'ws://localhost:1',
      'ws://LOCALHOST.:1',
      'ws://a.localhost:1',
      'ws://[::1]:1',
      'ws://[::]:1',
      'ws://[::ffff:127.0.0.1]:1',
      'ws://[::ffff:0.0.0.0]:1',
    ];
    const elsewhere = [
      'ws://10.0.0.1:1',
      'ws://127.example.com:1',
      'ws://localhost.example.com:1',
      'ws://[::2]:1',
      'ws://[::ffff:10.0.0.1]:1',
      'ws://worker-1:1',
    ];
    expect(everywhere.filter((u) => !isLoopbackOrUnspecified(u))).toEqual([]);
    expect(elsewhere.filter((u) => isLoopbackOrUnspecified(u))).toEqual([]);
  });
});
