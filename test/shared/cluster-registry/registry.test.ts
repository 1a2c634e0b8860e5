// Pure parts of the registry: URL masking, the --experts auto choice and record validation (its
// URL bound is the worker URL rule's).

import { describe, expect, it } from 'vitest';
import { checkWorkerRecord, parseWorkerRecord } from '../../../shared/cluster-registry/record.js';
import { checkRedisUrl } from '../../../shared/cluster-registry/redis-url.js';
import { chooseAutoExperts, expertView } from '../../../shared/cluster-registry/registry-reader.js';
import { MAX_WORKER_URL_CHARS, workerUrlProblem } from '../../../shared/protocol/worker-url.js';
import { maskUrl } from '../../../shared/runtime/mask-url.js';

const record = (id: string, experts: number[], load: [number, number][] = [], status = 'ready') => ({
  id,
  url: `ws://127.0.0.1:${7000 + experts.length}`,
  status,
  experts,
  numExperts: 8,
  device: 'cpu',
  expertWeights: 'fp32',
  threads: 1,
  fingerprint: 'f',
  startedAt: 0,
  heartbeatAt: 0,
  load: { pairsPerSec: 0, tokensPerSec: 0, experts: load, layers: [] },
});

describe('maskUrl', () => {
  it('masks passwords, a lone user part (ioredis reads it as the password), and malformed URLs', () => {
    expect(maskUrl('redis://user:pw@h:6379/0')).toBe('redis://user:***@h:6379/0');
    expect(maskUrl('rediss://:pw@h:6380')).toBe('rediss://:***@h:6380');
    expect(maskUrl('redis://secret@h')).toBe('redis://***@h');
    expect(maskUrl('redis://h:6379')).toBe('redis://h:6379');
    expect(maskUrl('redis://:pw@[bad')).toBe('redis://:***@[bad');
  });

  it('accepts redis:// and rediss:// only', () => {
    expect(checkRedisUrl('redis://h')).toBeUndefined();
    expect(checkRedisUrl('rediss://h')).toBeUndefined();
    expect(checkRedisUrl('http://h')).toContain('expected redis:// or rediss://');
  });
});

describe('chooseAutoExperts', () => {
  it('takes uncovered experts first, ascending', () => {
    const view = expertView(
      [record('a', [0, 1, 2, 3]), record('b', [6])].map((r) => parseWorkerRecord(JSON.stringify(r))!),
      8,
    );
    expect(chooseAutoExperts(view, 3)).toEqual([4, 5, 7]);
  });

  it('then replicas of the busiest experts (pairs/s summed over holders), then the fewest replicas', () => {
    const rs = [
      record(
        'a',
        [0, 1, 2, 3],
        [
          [1, 5],
          [2, 40],
        ],
      ),
      record('b', [4, 5, 6, 7], [[6, 30]]),
      record('c', [2], [[2, 1]]),
    ].map((r) => parseWorkerRecord(JSON.stringify(r))!);
    const view = expertView(rs, 8);
    expect(view[2]).toEqual({ expert: 2, holders: ['a', 'c'], pairsPerSec: 41 });
    expect(chooseAutoExperts(view, 3)).toEqual([1, 2, 6]);
  });

  it('ignores draining workers', () => {
    const rs = [record('a', [0, 1, 2, 3, 4, 5, 6, 7], [], 'draining')].map(
      (r) => parseWorkerRecord(JSON.stringify(r))!,
    );
    expect(chooseAutoExperts(expertView(rs, 8), 2)).toEqual([0, 1]);
  });
});

describe('parseWorkerRecord', () => {
  it('rejects what does not match the schema', () => {
    expect(parseWorkerRecord('{')).toBeUndefined();
    expect(parseWorkerRecord(JSON.stringify({ ...record('a', [0]), experts: [-1] }))).toBeUndefined();
    expect(parseWorkerRecord(JSON.stringify(record('a', [0])))?.id).toBe('a');
  });
});

describe('a record whose URL no coordinator can dial (a hostile or mistyped registry entry)', () => {
  it.each([
    'not a url',
    'ws://127.0.0.1:1/#x',
    'ws://10.0.0.2:70700',
    'ws+unix:///tmp/kmoe.sock',
    'http://127.0.0.1:7070',
    'file:///etc/passwd',
  ])('%s is not a record', (url) => {
    expect(parseWorkerRecord(JSON.stringify({ ...record('a', [0]), url }))).toBeUndefined();
  });

  it('one length bound for a worker URL and a record: the longest URL a worker may register is read', () => {
    // Before, a worker started with a 2,001-2,048-character URL and every coordinator ignored its
    // record (the schema capped url at 2,000).
    const prefix = 'ws://127.0.0.1:7070/';
    const longest = prefix + 'b'.repeat(MAX_WORKER_URL_CHARS - prefix.length);
    expect(workerUrlProblem(longest)).toBeUndefined();
    expect(parseWorkerRecord(JSON.stringify({ ...record('a', [0]), url: longest }))?.url).toBe(longest);
    const over = `${longest}b`;
    expect(workerUrlProblem(over)).toMatch(/at most 2048/);
    expect(checkWorkerRecord(JSON.stringify({ ...record('a', [0]), url: over }))).toMatch(/^url: /);
  });

  it.each(['', 'ws://10.0.0.2:7070', 'wss://worker-3.example:443/', 'ws://[::1]:7070'])(
    '%s is (empty while loading)',
    (url) => {
      expect(parseWorkerRecord(JSON.stringify({ ...record('a', [0]), url }))?.url).toBe(url);
    },
  );
});
