// `kmoe bench serve` against a real server: it measures every (concurrency, policy) pair, sends
// profile files inline (by name to a server that loaded one of that name), and writes the JSON,
// the chart and the table.

import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { splitRoutingList } from '../../../coordinator/cli/options.js';
import { runCli } from '../../helpers/cli.js';
import { type ServeProcess, startServe } from './serve-process.js';

let server: ServeProcess;
let dir: string;

beforeAll(async () => {
  server = await startServe(['--workers', '0']);
  dir = mkdtempSync(join(tmpdir(), 'kmoe-bench-serve-'));
});

afterAll(async () => {
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe('kmoe bench serve', () => {
  it('splits policy lists at the commas that start a new policy', () => {
    expect(splitRoutingList('topk:2,entropy:1,2@1.04, p/best.json,topp:0.7@1-2')).toEqual([
      'topk:2',
      'entropy:1,2@1.04',
      'p/best.json',
      'topp:0.7@1-2',
    ]);
  });

  it('measures each concurrency and policy and writes JSON, chart and table', async () => {
    const profile = join(dir, 'k1.json');
    writeFileSync(profile, JSON.stringify({ kmoeRoutingProfile: 1, policy: { kind: 'topk', k: 1 } }));
    const out = join(dir, 'serve.json');
    const chart = join(dir, 'serve.svg');
    const r = await runCli([
      'bench',
      'serve',
      '--url',
      server.url,
      '--concurrency',
      '1,2',
      '--requests',
      '3',
      '--max-tokens',
      '6',
      '--repeats',
      '2',
      '--routing',
      `topk:2,${profile}`,
      '--out',
      out,
      '--chart',
      chart,
    ]);
    expect(r.stderr).not.toMatch(/failed/);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^\| concurrency \| routing \| avg K \| output tok\/s \| vs baseline \|/m);
    const json = JSON.parse(readFileSync(out, 'utf8')) as {
      baseline: string;
      results: {
        routing: string;
        concurrency: number;
        runs: number;
        requests: number;
        completionTokens: number;
        outputTokensPerSecondRuns: number[];
        avgK: number;
        errors: string[];
      }[];
      ratios: { routing: string; concurrency: number; throughputVsBaseline: number }[];
    };
    expect(json.baseline).toBe('topk:2');
    expect(json.results.map((x) => [x.concurrency, x.routing])).toEqual([
      [1, 'topk:2'],
      [1, 'k1.json'],
      [2, 'topk:2'],
      [2, 'k1.json'],
    ]);
    for (const x of json.results) {
      // Two runs of 3 requests; ignore_eos keeps every request at max_tokens, so policies decode
      // the same amount.
      expect(x).toMatchObject({ runs: 2, requests: 6, completionTokens: 6 * 6 });
      expect(x.outputTokensPerSecondRuns).toHaveLength(2);
      expect(x.errors).toEqual([]);
      expect(x.avgK).toBe(x.routing === 'topk:2' ? 2 : 1);
    }
    expect(json.ratios.map((x) => x.routing)).toEqual(['k1.json', 'k1.json']);
    for (const x of json.ratios) expect(x.throughputVsBaseline).toBeGreaterThan(0);
    const svg = readFileSync(chart, 'utf8');
    expect(svg).toMatch(/<svg[\s>]/);
    expect(svg.trimEnd()).toMatch(/<\/svg>$/);
    expect(svg).toMatch(/k1\.json p99/);
    // One document, three panels.
    expect(svg.match(/<svg /g)).toHaveLength(1);
    for (const panel of ['output tokens/s', 'time to first token', 'inter-token latency'])
      expect(svg).toContain(panel);
  });

  it('with --versus-url runs every policy on both servers, interleaved, and compares them', async () => {
    // The remote server loaded the profile: it gets the name; the --url server gets the profile inline.
    const profile = join(dir, 'k1-loaded.json');
    writeFileSync(profile, JSON.stringify({ kmoeRoutingProfile: 1, policy: { kind: 'topk', k: 1 } }));
    const remote = await startServe(['--workers', '1', '--profiles', profile]);
    try {
      const out = join(dir, 'versus.json');
      const r = await runCli([
        'bench',
        'serve',
        '--url',
        server.url,
        '--versus-url',
        remote.url,
        '--concurrency',
        '2',
        '--requests',
        '3',
        '--max-tokens',
        '5',
        '--repeats',
        '2',
        '--routing',
        `topk:2,${profile}`,
        '--out',
        out,
        '--chart',
        join(dir, 'versus.svg'),
      ]);
      expect(r.stderr).not.toMatch(/failed/);
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^\| concurrency \| routing \| @versus \/ --url tok\/s/m);
      const json = JSON.parse(readFileSync(out, 'utf8')) as {
        server: { experts: string };
        versus: { experts: string };
        results: { routing: string; completionTokens: number; outputTokensPerSecond: number; avgK: number }[];
        profilesSent: Record<string, string>;
        versusRatios: {
          routing: string;
          concurrency: number;
          throughputVersusOverUrl: number;
          throughputRatioRuns: number[];
        }[];
      };
      expect(json.server.experts).toMatch(/local experts/);
      expect(json.versus.experts).toMatch(/remote experts on 1 worker/);
      expect(json.results.map((x) => x.routing)).toEqual([
        'topk:2',
        'topk:2 @versus',
        'k1-loaded.json',
        'k1-loaded.json @versus',
      ]);
      // The same requests on both: 2 runs of 3 requests of 5 tokens each.
      for (const x of json.results) expect(x.completionTokens).toBe(2 * 3 * 5);
      expect(json.results.map((x) => x.avgK)).toEqual([2, 2, 1, 1]);
      // Loaded by one server only: inline to both, so both sides pay the same for it.
      expect(json.profilesSent).toEqual({ 'k1-loaded.json': 'inline', 'k1-loaded.json @versus': 'inline' });
      expect(r.stderr).toMatch(
        /k1-loaded.json @versus: sent inline with every request \(not loaded by every server it runs on\)/,
      );
      expect(json.versusRatios).toHaveLength(2);
      const v = json.versusRatios[0]!;
      expect(v).toMatchObject({ routing: 'topk:2', concurrency: 2 });
      expect(v.throughputRatioRuns).toHaveLength(2);
      // The median of the per-run ratios, each run paired with its neighbour in time (nearest rank:
      // of two, the lower).
      expect(v.throughputVersusOverUrl).toBe(Math.min(...v.throughputRatioRuns));
    } finally {
      await remote.stop();
    }
  });

  it('sends a profile inline when the server loaded a different one of the same name', async () => {
    const mine = join(dir, 'same-name.json');
    const theirs = join(mkdtempSync(join(tmpdir(), 'kmoe-theirs-')), 'same-name.json');
    writeFileSync(mine, JSON.stringify({ kmoeRoutingProfile: 1, policy: { kind: 'topk', k: 1 } }));
    writeFileSync(theirs, JSON.stringify({ kmoeRoutingProfile: 1, policy: { kind: 'skip', tau: 0.3 } }));
    const other = await startServe(['--workers', '0', '--profiles', theirs]);
    try {
      const models = (await (await fetch(`${other.url}/v1/models`)).json()) as {
        data: { kmoe: { profile_digests: Record<string, string> } }[];
      };
      expect(Object.values(models.data[0]!.kmoe.profile_digests)).toEqual([
        expect.stringMatching(/^sha256:[0-9a-f]{64}$/),
      ]);
      const out = join(dir, 'same-name-out.json');
      // One tiny run of topk:2 and a profile; the profiles' ways to the server, as recorded.
      const sent = async (profile: string) => {
        const r = await runCli([
          'bench',
          'serve',
          '--url',
          other.url,
          '--concurrency',
          '1',
          '--requests',
          '2',
          '--max-tokens',
          '3',
          '--repeats',
          '1',
          '--routing',
          `topk:2,${profile}`,
          '--out',
          out,
          '--chart',
          join(dir, 'same.svg'),
        ]);
        expect(r.code).toBe(0);
        return JSON.parse(readFileSync(out, 'utf8')) as {
          profilesSent: Record<string, string>;
          results: { routing: string; avgK: number }[];
        };
      };
      const json = await sent(mine);
      expect(json.profilesSent).toEqual({ 'same-name.json': 'inline' });
      // Its own profile (top-1), not the server's skip profile of the same name.
      expect(json.results.find((x) => x.routing === 'same-name.json')!.avgK).toBe(1);
      // Named when the server's copy is the same profile, formatted differently or not.
      const same = join(dir, 'same-as-theirs.json');
      writeFileSync(same, `${JSON.stringify(JSON.parse(readFileSync(theirs, 'utf8')), null, 2)}\n`);
      expect((await sent(same)).profilesSent).toEqual({ 'same-as-theirs.json': 'name' });
      const twice = await runCli([
        'bench',
        'serve',
        '--url',
        other.url,
        '--routing',
        `topk:2,${mine},${theirs}`,
      ]);
      expect(twice.code).toBe(1);
      expect(twice.stderr).toMatch(/two policies are both labelled same-name.json/);
    } finally {
      await other.stop();
    }
  });

  it('refuses --versus-url equal to --url', async () => {
    const r = await runCli(['bench', 'serve', '--url', server.url, '--versus-url', `${server.url}/`]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--versus-url is the --url server/);
  });

  it('needs two policies, or one and --versus-url', async () => {
    const r = await runCli(['bench', 'serve', '--url', server.url, '--routing', 'topk:2']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /--routing needs a baseline and at least one policy to compare \(or one policy and --versus-url\)/,
    );
  });

  it('fails with a message when no kmoe server answers', async () => {
    const r = await runCli(['bench', 'serve', '--url', 'http://127.0.0.1:9', '--out', join(dir, 'x.json')]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:9\/v1\/models/);
  });
});
