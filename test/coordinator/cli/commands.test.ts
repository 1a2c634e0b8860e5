// The kmoe CLI as a user runs it: real processes, the shipped model and data.

import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { decodeRate } from '../../../coordinator/cli/commands/generate.js';
import { KmoeTokenizer } from '../../../shared/model/tokenizer.js';
import { lastJsonLine, runCli } from '../../helpers/cli.js';
import {
  greedyCases,
  KMOE_ARGV,
  MODEL_DIR,
  perplexityReferences,
  ROOT,
  referenceGreedyText,
} from '../../helpers/paths.js';

/** `kmoe eval` of valid.man with extra arguments. */
function evalMan(extra: readonly string[]) {
  return runCli(['eval', '--model', MODEL_DIR, '--ids', 'data/eval/valid.man.u16', ...extra], {
    timeoutMs: 300_000,
  });
}

describe('kmoe eval', () => {
  // The reference ran the same procedure in float32: 0.1% is far above fp32 summation noise
  // (we measure ~1e-7 relative) and far below what any modelling error would cause. Every corpus
  // and policy is checked through the library in evaluation/reference-perplexity.test.ts; here
  // the command itself runs on the smallest corpus.
  it.each(['valid.man.u16'])(
    'native top-2 perplexity of %s is within 0.1 percent of the reference',
    async (file) => {
      const ref = perplexityReferences().find((r) => r.file === file && r.routing === 'topk:2')!;
      const r = await runCli(['eval', '--model', MODEL_DIR, '--ids', `data/eval/${file}`, '--json'], {
        timeoutMs: 300_000,
      });
      expect(r.stderr).toMatch(/eval \[/);
      expect(r.code).toBe(0);
      const json = lastJsonLine(r.stdout);
      expect(json['tokens']).toBe(ref.tokensScored);
      expect(Math.abs((json['perplexity'] as number) / ref.ppl - 1)).toBeLessThan(1e-3);
      expect(json['avgK']).toBe(2);
      expect(json['savingVsNative']).toBe(0);
      // With --json, stdout is exactly one JSON object; the human report goes to stderr.
      expect(JSON.parse(r.stdout)).toEqual(json);
      expect(r.stderr).toMatch(/^perplexity\s+\d+\.\d{4}/m);
      expect(r.stdout).not.toMatch(/^perplexity/m);
    },
  );

  it('with --expert-weights int8 stays within 0.1 percent of the reference perplexity', async () => {
    // Measured: valid.man +0.012%, valid.code +0.010%, valid.docs +0.003% over fp32 experts.
    const ref = perplexityReferences().find((r) => r.file === 'valid.man.u16' && r.routing === 'topk:2')!;
    const r = await evalMan(['--expert-weights', 'int8', '--json']);
    expect(r.code).toBe(0);
    const ppl = lastJsonLine(r.stdout)['perplexity'] as number;
    expect(ppl).not.toBe(ref.ppl);
    expect(Math.abs(ppl / ref.ppl - 1)).toBeLessThan(1e-3);
  });

  it('with --expert-weights int4 stays within 1 percent of the reference perplexity', async () => {
    // Measured: valid.man -0.025%, valid.code +0.154%, valid.docs +0.227% over fp32 experts
    // (docs/scale.md "Weight formats and memory"); 4-bit weights move it ~10x more than int8.
    const ref = perplexityReferences().find((r) => r.file === 'valid.man.u16' && r.routing === 'topk:2')!;
    const r = await evalMan(['--expert-weights', 'int4', '--json']);
    expect(r.code).toBe(0);
    const ppl = lastJsonLine(r.stdout)['perplexity'] as number;
    expect(ppl).not.toBe(ref.ppl);
    expect(Math.abs(ppl / ref.ppl - 1)).toBeLessThan(1e-2);
  });

  it('with --dense-weights int8 stays within 0.1 percent of the reference perplexity', async () => {
    // Measured: valid.man -0.044% (103.615 vs 103.660) with int8 attention projections and LM head.
    const ref = perplexityReferences().find((r) => r.file === 'valid.man.u16' && r.routing === 'topk:2')!;
    const r = await evalMan(['--dense-weights', 'int8', '--json']);
    expect(r.code).toBe(0);
    const ppl = lastJsonLine(r.stdout)['perplexity'] as number;
    expect(ppl).not.toBe(ref.ppl);
    expect(Math.abs(ppl / ref.ppl - 1)).toBeLessThan(1e-3);
  });

  it('rejects an unknown --expert-weights, and --expert-weights with remote workers', async () => {
    const bad = await evalMan(['--expert-weights', 'int3']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--expert-weights must be one of fp32, bf16, int8, int4, got 'int3'/);
    const remote = await evalMan(['--workers', 'ws://127.0.0.1:1', '--expert-weights', 'int8']);
    expect(remote.code).toBe(2);
    expect(remote.stderr).toMatch(/--expert-weights applies where the experts run/);
  });

  it('scores a text file through the tokenizer and a window range', async () => {
    const r = await runCli([
      'eval',
      '--model',
      MODEL_DIR,
      '--text',
      'data/eval/valid.man.txt',
      '--windows',
      '0:10',
      '--routing',
      'topk:1',
      '--json',
    ]);
    expect(r.code).toBe(0);
    const json = lastJsonLine(r.stdout);
    expect(json['windows']).toBe(10);
    expect(json['tokens']).toBe(10 * 255);
    expect(json['avgK']).toBe(1);
    expect(json['savingVsNative']).toBeCloseTo(0.5, 12);
    expect(json['perplexity']).toBeGreaterThan(10);
  });

  it('rejects bad usage with a message and exit code 2', async () => {
    const noSource = await runCli(['eval', '--model', MODEL_DIR]);
    expect(noSource.code).toBe(2);
    expect(noSource.stderr).toMatch(/exactly one of --ids or --text/);
    const badWindow = await runCli([
      'eval',
      '--model',
      MODEL_DIR,
      '--ids',
      'data/eval/valid.man.u16',
      '--window',
      'x',
    ]);
    expect(badWindow.code).toBe(2);
    expect(badWindow.stderr).toMatch(/--window must be a number/);
    // The error and one line pointing at --help, not the whole help.
    expect(badWindow.stderr.trim().split('\n')).toEqual([
      "kmoe eval: error: --window must be a number, got 'x'",
      "Run 'kmoe eval --help' for usage.",
    ]);
    const unknown = await runCli(['eval', '--model', MODEL_DIR, '--bogus']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split('\n')).toEqual([
      "kmoe eval: error: unknown option '--bogus'",
      "Run 'kmoe eval --help' for usage.",
    ]);
    // A word that is no flag's value is named (commander said "Expected 0 arguments but got 1"),
    // escaped like every quoted text; an unknown flag on the same line still comes first.
    const forgotten = await runCli(['eval', MODEL_DIR]);
    expect(forgotten.code).toBe(2);
    expect(forgotten.stderr.trim().split('\n')).toEqual([
      `kmoe eval: error: unexpected argument '${MODEL_DIR}': eval takes flags only`,
      'hint: a value goes right after its flag (e.g. --model DIR); a value with spaces needs quotes',
      "Run 'kmoe eval --help' for usage.",
    ]);
    const words = await runCli(['generate', '--model', MODEL_DIR, '--prompt', 'hello', 'wor\u202eld', 'x']);
    expect(words.code).toBe(2);
    expect(words.stderr).toMatch(
      /^kmoe generate: error: unexpected arguments 'wor\\u202eld', 'x': generate takes flags only$/m,
    );
    const both = await runCli(['eval', 'extra', '--bogus']);
    expect(both.stderr).toMatch(/^kmoe eval: error: unknown option '--bogus'$/m);
  });

  it('names the problem when the model directory is wrong', async () => {
    // A directory that is not a checkpoint, a path that does not exist, or a file: each is named
    // as such before anything is read, as a usage error.
    const r = await runCli(['eval', '--model', 'data/eval', '--ids', 'data/eval/valid.man.u16']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(
      /^kmoe eval: error: --model data\/eval has no config\.json: not a Hugging Face checkpoint directory$/m,
    );
    const missing = await runCli(['eval', '--model', 'no/such/model', '--ids', 'data/eval/valid.man.u16']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/^kmoe eval: error: model directory not found: no\/such\/model$/m);
    const file = await runCli(['generate', '--model', 'package.json', '--prompt', 'x']);
    expect(file.code).toBe(2);
    expect(file.stderr).toMatch(/--model package\.json is not a directory/);
  });

  it('quotes a bad value escaped: a newline or a bidi control in it cannot forge or reorder the error', async () => {
    const url = 'ws://h:1/\u202efdp.exe\nkmoe: ok';
    const r = await runCli(['worker', '--model', MODEL_DIR, '--advertise-url', url]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      "kmoe worker: error: --advertise-url must be a ws:// URL, got 'ws://h:1/\\u202efdp.exe\\u000akmoe: ok': " +
        'it holds white space or an invisible character (U+202E at offset 9); percent-encode it',
      "Run 'kmoe worker --help' for usage.",
    ]);
  });

  it("escapes commander's own errors the same way: an unknown flag or command cannot clear the screen or forge a line", async () => {
    const flag = await runCli(['serve', '--fo\u001b[2Jo']);
    expect(flag.code).toBe(2);
    expect(flag.stderr.trim().split('\n')).toEqual([
      "kmoe serve: error: unknown option '--fo\\u001b[2Jo'",
      "Run 'kmoe serve --help' for usage.",
    ]);
    const command = await runCli(['bogus\u202e\nkmoe: ok']);
    expect(command.code).toBe(2);
    expect(command.stderr.trim().split('\n')).toEqual([
      "kmoe: error: unknown command 'bogus\\u202e\\u000akmoe: ok'",
      "Run 'kmoe --help' for the commands.",
    ]);
    // Nor a line that starts the way commander's suggestion does.
    const forged = await runCli(['serve', '--x\n(Did you mean --y?) kmoe: ok']);
    expect(forged.stderr.trim().split('\n')).toEqual([
      "kmoe serve: error: unknown option '--x\\u000a(Did you mean --y?) kmoe: ok'",
      "Run 'kmoe serve --help' for usage.",
    ]);
    // Commander's own line break before its suggestion stays.
    const typo = await runCli(['serve', '--modle\u001b']);
    expect(typo.stderr).toMatch(
      /^kmoe serve: error: unknown option '--modle\\u001b'\n\(Did you mean --model\?\)$/m,
    );
  });

  it('refuses an empty path (an unset variable in --model "$DIR") as a usage error naming the flag', async () => {
    const model = ['--model', MODEL_DIR];
    for (const [args, message] of [
      [['eval', '--model', '', '--ids', 'data/eval/valid.man.u16'], '--model needs a checkpoint directory'],
      [['eval', ...model, '--text', ''], '--text needs a text file'],
      [
        ['calibrate', ...model, '--method', 'theory', '--policy', 'entropy', '--out', ''],
        '--out needs a file path',
      ],
      [['synth', '--like', 'mixtral-mid', '--layers', '1', '--out', ''], '--out needs a directory path'],
      [
        ['generate', ...model, '--prompt', 'x', '--cluster-token-file', ''],
        '--cluster-token-file needs a file',
      ],
      // Before, an empty --adaptive-k named nothing: "no adaptive-K results at ".
      [['bench', 'project', '--adaptive-k', ''], '--adaptive-k needs a file'],
    ] as const) {
      const r = await runCli(args);
      const command = args.slice(0, args[0] === 'bench' ? 2 : 1).join(' ');
      expect({ args, code: r.code, stderr: r.stderr.trim().split('\n') }).toEqual({
        args,
        code: 2,
        stderr: [
          `kmoe ${command}: error: ${message}, got an empty value`,
          `Run 'kmoe ${command} --help' for usage.`,
        ],
      });
    }
  });

  it('rejects a bad routing spec before loading the model', async () => {
    const r = await runCli([
      'eval',
      '--model',
      MODEL_DIR,
      '--ids',
      'data/eval/valid.man.u16',
      '--routing',
      'topk:0',
    ]);
    // A bad flag value is a usage error: the library's one line, its hint (the grammar) and the
    // --help pointer.
    expect(r.code).toBe(2);
    const lines = r.stderr.trim().split('\n');
    expect(lines[0]).toBe(
      'kmoe eval: error: --routing: invalid routing spec "topk:0": k must be an integer >= 1, got 0',
    );
    expect(lines[1]).toBe('hint: routing spec grammar:');
    expect(lines[2]).toMatch(/^ {2}topk:K +keep the K most probable experts$/);
    expect(lines.at(-1)).toBe("Run 'kmoe eval --help' for usage.");
  });

  it('treats values the libraries reject as usage errors, and names a missing --ids file', async () => {
    const man = ['eval', '--model', MODEL_DIR, '--ids', 'data/eval/valid.man.u16'];
    const windows = await runCli([...man, '--windows', '5:2']);
    expect(windows.code).toBe(2);
    expect(windows.stderr).toMatch(/^kmoe eval: error: --windows: window range 5:2 is empty/m);
    const experts = await runCli(['worker', '--model', MODEL_DIR, '--experts', '9-12']);
    expect(experts.code).toBe(2);
    expect(experts.stderr.trim().split('\n')).toEqual([
      "kmoe worker: error: --experts: expert set '9-12': expert 12 does not exist: the model has 8",
      'hint: write expert indices and ranges like 0-3 or 0,2,5-7',
      "Run 'kmoe worker --help' for usage.",
    ]);
    const ids = await runCli(['eval', '--model', MODEL_DIR, '--ids', 'nope.u16']);
    expect(ids.code).toBe(2);
    expect(ids.stderr).toMatch(/^kmoe eval: error: cannot read --ids nope\.u16: no such file$/m);
    const help = await runCli(['help', 'generate']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: kmoe generate/);
  });

  it('blames a corpus shorter than one window on --ids and its file, not on --windows', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-short-'));
    try {
      const short = path.join(dir, 'short.u16');
      writeFileSync(short, new Uint8Array(200)); // 100 ids of 0
      const ev = await runCli(['eval', '--model', MODEL_DIR, '--ids', short]);
      expect(ev.code).toBe(2);
      expect(ev.stderr.split('\n')[0]).toBe(
        `kmoe eval: error: --ids ${short}: the corpus has 100 ids, fewer than one window of 256`,
      );
      const empty = path.join(dir, 'empty.u16');
      writeFileSync(empty, new Uint8Array(0));
      const bench = await runCli(['bench', 'model', '--model', MODEL_DIR, '--ids', empty]);
      expect(bench.code).toBe(2);
      expect(bench.stderr).toMatch(/^kmoe bench model: error: --ids \S+empty\.u16: /m);
      expect(bench.stderr).not.toMatch(/--windows/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a text file given as --ids before loading the model, naming the first id outside the vocabulary', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-ids-'));
    try {
      // An even number of bytes, so it reads as ids: the first, '..', as 0x2e2e = 11822.
      const text = path.join(dir, 'docs.txt');
      writeFileSync(text, readFileSync(`${ROOT}data/eval/valid.docs.txt`).subarray(0, 20_000));
      const lines = (r: { stderr: string }) => r.stderr.trim().split('\n');
      const ev = await runCli(['eval', '--model', MODEL_DIR, '--ids', text]);
      expect(ev.code).toBe(2);
      expect(lines(ev)[0]).toMatch(
        /^kmoe eval: error: --ids: \S+docs\.txt: \d+ of its 10000 ids are outside the model's vocabulary of 4096 ids, the first 11822 at position 0 \(byte 0\); it looks like a text file, not token ids$/,
      );
      expect(lines(ev)[1]).toMatch(
        /^hint: --ids takes token ids as little-endian uint16, 2 bytes per id .*kmoe eval --text/,
      );
      expect(ev.stderr).not.toMatch(/RangeError|outside the vocabulary \[/);
      // The same check for every command with --ids and --model: a calibration corpus, a bench's.
      const cal = await runCli([
        'calibrate',
        '--model',
        MODEL_DIR,
        '--method',
        'percentile',
        '--policy',
        'entropy',
        '--target-avg-k',
        '1.5',
        '--out',
        path.join(dir, 'p.json'),
        '--ids',
        `data/eval/valid.man.u16,${text}`,
      ]);
      expect(cal.code).toBe(2);
      expect(lines(cal)[0]).toMatch(
        /^kmoe calibrate: error: --ids: \S+docs\.txt: \d+ of its \d+ ids are outside the model.s vocabulary of 4096 ids, the first \d+ at position 0 /,
      );
      const bench = await runCli([
        'bench',
        'model',
        '--model',
        MODEL_DIR,
        '--ids',
        text,
        '--out',
        path.join(dir, 'm.json'),
      ]);
      expect(bench.code).toBe(2);
      expect(lines(bench)[0]).toMatch(
        /^kmoe bench model: error: --ids: \S+docs\.txt: \d+ of its \d+ ids are outside the model.s vocabulary of 4096 ids, the first \d+ at position 0 /,
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a routing list with an empty entry and a worker named twice, before any work', async () => {
    const man = ['eval', '--model', MODEL_DIR, '--ids', 'data/eval/valid.man.u16'];
    const trailing = await runCli([...man, '--routing', 'entropy:1,2@1.0,']);
    expect(trailing.code).toBe(2);
    expect(trailing.stderr.trim().split('\n')[0]).toBe(
      "kmoe eval: error: --routing has an empty entry in 'entropy:1,2@1.0,'",
    );
    expect(trailing.stdout).toBe('');
    const twice = await runCli([...man, '--workers', 'ws://127.0.0.1:7070,WS://127.0.0.1:7070/']);
    expect(twice.code).toBe(2);
    expect(twice.stderr).toMatch(
      /^kmoe eval: error: --workers names one worker twice: ws:\/\/127\.0\.0\.1:7070 and WS:\/\/127\.0\.0\.1:7070\/$/m,
    );
    const policyTwice = await runCli([...man, '--sweep', '--routing', 'topk:1', '--routing', 'topk:1']);
    expect(policyTwice.code).toBe(2);
    expect(policyTwice.stderr.trim().split('\n')[0]).toBe('kmoe eval: error: --routing names topk:1 twice');
  });

  it('refuses one policy or rate written two ways, compared as what it means', async () => {
    // A missing --ids file is found after the policies are compared: it is what a line without
    // a repeated policy fails on.
    const man = ['eval', '--model', MODEL_DIR, '--ids', 'no-such-corpus.u16', '--sweep'];
    for (const [routing, message] of [
      [['--routing', 'topp:0.5,topp:0.50'], 'topp:0.5 and topp:0.50'],
      [['--routing', 'ratio:.3', '--routing', 'ratio:0.30'], 'ratio:.3 and ratio:0.30'],
    ] as const) {
      const r = await runCli([...man, ...routing]);
      expect(r.code).toBe(2);
      expect(r.stderr.trim().split('\n')).toEqual([
        `kmoe eval: error: --routing names one policy twice: ${message}`,
        "Run 'kmoe eval --help' for usage.",
      ]);
    }
    // Different policies of one kind are not one.
    const distinct = await runCli([...man, '--routing', 'topp:0.5,topp:0.55,topp:0.5@1-2']);
    expect(distinct.stderr).toMatch(
      /^kmoe eval: error: cannot read --ids no-such-corpus\.u16: no such file$/m,
    );
    const rates = await runCli([
      'bench',
      'network',
      '--model',
      MODEL_DIR,
      '--rates',
      '10mbit,1gbit,1000mbit',
    ]);
    expect(rates.code).toBe(2);
    expect(rates.stderr.trim().split('\n')).toEqual([
      'kmoe bench network: error: --rates names one rate twice: 1gbit and 1000mbit',
      "Run 'kmoe bench network --help' for usage.",
    ]);
  });

  it('refuses a list entry given twice before any work: bench expert --formats fp32,fp32', async () => {
    const r = await runCli(['bench', 'expert', '--like', 'mixtral-mid', '--formats', 'fp32,int8,fp32']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      'kmoe bench expert: error: --formats names fp32 twice',
      "Run 'kmoe bench expert --help' for usage.",
    ]);
  });
});

describe('kmoe generate', () => {
  it('streams the greedy continuation the reference produces', async () => {
    const c = greedyCases().find((g) => g.name === 'code-fib')!;
    const tokenizer = await KmoeTokenizer.load(MODEL_DIR);
    const expected = referenceGreedyText(tokenizer, c);
    const r = await runCli([
      'generate',
      '--model',
      MODEL_DIR,
      '--prompt',
      c.prompt,
      '--max-tokens',
      '32',
      '--stats',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${expected}\n`);
    expect(r.stderr).toMatch(/32 generated, decode [\d.]+ tokens\/s; 2\.000 experts per token/);
  });

  it('--stats with one token says no decode step was timed instead of a rate of 0', async () => {
    const r = await runCli([
      'generate',
      '--model',
      MODEL_DIR,
      '--prompt',
      'def',
      '--max-tokens',
      '1',
      '--stats',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).not.toBe('');
    expect(r.stderr).toMatch(
      /1 generated, decode n\/a \(no decode step: the one token came from the prompt's pass\); 2\.000 experts per token/,
    );
    expect(r.stderr).not.toMatch(/tokens\/s/);
  });

  it('--stats rates decode over the decode passes, and names the counts with none', () => {
    // 3 passes after the prompt's in 60 ms: 50 tokens/s; an end-of-sequence token sampled by the
    // last pass counts as a pass (it was computed and timed) though it is not printed.
    expect(decodeRate(4, 3, 60)).toBe('decode 50.0 tokens/s');
    expect(decodeRate(3, 3, 60)).toBe('decode 50.0 tokens/s');
    expect(decodeRate(1, 0, 0.5)).toBe(
      "decode n/a (no decode step: the one token came from the prompt's pass)",
    );
    expect(decodeRate(0, 0, 0)).toBe('decode n/a (no decode step: the first token was the end of sequence)');
  });

  it('is reproducible with a seed and differs across seeds', async () => {
    const args = [
      'generate',
      '--model',
      MODEL_DIR,
      '--prompt',
      'The',
      '--max-tokens',
      '24',
      '--temperature',
      '1',
    ];
    const a = await runCli([...args, '--seed', '7']);
    const b = await runCli([...args, '--seed', '7']);
    const c = await runCli([...args, '--seed', '8']);
    expect(a.code).toBe(0);
    expect(a.stdout).toBe(b.stdout);
    expect(a.stdout).not.toBe(c.stdout);
  });

  it('rejects invalid sampling parameters', async () => {
    const r = await runCli(['generate', '--model', MODEL_DIR, '--prompt', 'x', '--top-p', '0']);
    expect(r.code).toBe(2);
    // The flags are named, not the API fields they become.
    expect(r.stderr).toMatch(/^kmoe generate: error: --top-p must be > 0, got 0$/m);
    const t = await runCli(['generate', '--model', MODEL_DIR, '--prompt', 'x', '--temperature', '-1']);
    expect(t.code).toBe(2);
    expect(t.stderr).toMatch(/^kmoe generate: error: --temperature must be >= 0, got -1$/m);
    // --chart belongs to --sweep.
    const chart = await runCli([
      'eval',
      '--model',
      MODEL_DIR,
      '--ids',
      'data/eval/valid.man.u16',
      '--chart',
      'x.svg',
    ]);
    expect(chart.code).toBe(2);
    expect(chart.stderr).toMatch(/--chart draws the --sweep results/);
  });

  it('rejects a negative seed naming --seed', async () => {
    const r = await runCli(['generate', '--model', MODEL_DIR, '--prompt', 'x', '--seed=-1']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--seed/);
  });

  it('refuses bf16 expert formats on the CPU provider as usage errors naming the flag', async () => {
    const weights = await runCli([
      'generate',
      '--model',
      MODEL_DIR,
      '--prompt',
      'x',
      '--expert-weights',
      'bf16',
    ]);
    expect(weights.code).toBe(2);
    expect(weights.stderr).toMatch(
      /^kmoe generate: error: --expert-weights: expert weights 'bf16' cannot run on --device cpu/m,
    );
    // bench expert times one format after another: bf16 in the list is refused before the first.
    const formats = await runCli(['bench', 'expert', '--like', 'mixtral-mid', '--formats', 'fp32,bf16']);
    expect(formats.code).toBe(2);
    expect(formats.stderr).toMatch(
      /^kmoe bench expert: error: --formats: expert weights 'bf16' cannot run on --device cpu/m,
    );
    expect(formats.stderr).toMatch(
      /^hint: use --device cuda for bf16 weights, or one of fp32, int8, int4 on cpu$/m,
    );
    expect(formats.stderr).not.toMatch(/building the graph/);
  });

  it('fails loudly when CUDA is requested on a host without it', async () => {
    const r = await runCli(['generate', '--model', MODEL_DIR, '--prompt', 'x', '--device', 'cuda']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/execution provider 'cuda' is not available/);
    expect(r.stderr).toMatch(/hint: /);
    // kmoe's message comes first: onnxruntime's own native log line is not printed.
    expect(r.stderr).not.toMatch(/onnxruntime_src|\[E:onnxruntime/);
    expect(r.stderr).toMatch(/^kmoe generate: error: /);
  });
});

describe('--device cuda on a host without the CUDA provider', () => {
  // Every command that computes checks the provider before any work: bench expert measured the
  // fp32 GEMM peak on the requested device before it found the provider missing.
  it('fails before bench expert builds or measures anything', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-expert-cuda-'));
    try {
      const out = path.join(dir, 'expert.json');
      const r = await runCli([
        'bench',
        'expert',
        '--like',
        'mixtral-mid',
        '--formats',
        'bf16',
        '--device',
        'cuda',
        '--out',
        out,
        '--chart',
        path.join(dir, 'expert.svg'),
      ]);
      expect(r.code).toBe(1);
      const lines = r.stderr.trim().split('\n');
      expect(lines[0]).toMatch(/^kmoe bench expert: error: execution provider 'cuda' is not available: /);
      expect(lines[1]).toMatch(/^hint: install onnxruntime-node with its CUDA provider/);
      expect(lines).toHaveLength(2);
      expect(r.stdout).toBe('');
      expect(() => readFileSync(out)).toThrow(/ENOENT/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['serve', '--model', MODEL_DIR, '--port', '0'],
    ['local-cluster', '--model', MODEL_DIR, '--workers', '2'],
  ])('fails before %s starts a worker', async (...args) => {
    const r = await runCli([...args, '--device', 'cuda']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      new RegExp(`^kmoe ${args[0]}: error: execution provider 'cuda' is not available`),
    );
    expect(r.stderr).not.toMatch(/starting local expert workers|kmoe worker/);
  });
});

describe('kmoe', () => {
  it('lists its commands and rejects unknown ones', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/generate/);
    expect(help.stdout).toMatch(/eval/);
    expect(help.stdout).toMatch(/^ {2}synth /m);
    expect(help.stdout).toMatch(/^ {2}plan /m);
    const unknown = await runCli(['frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
    expect(unknown.stderr).toMatch(/Run 'kmoe --help' for the commands\./);
  });

  it('help NAME... and --help NAME... are NAME... --help; a name that is no command is refused as kmoe NAME is', async () => {
    const unknown = await runCli(['nonexistent']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr.trim().split('\n')).toEqual([
      "kmoe: error: unknown command 'nonexistent'",
      "Run 'kmoe --help' for the commands.",
    ]);
    const unknownInBench = await runCli(['bench', 'nonexistent']);
    expect(unknownInBench.stderr).toMatch(/^kmoe bench: error: unknown command 'nonexistent'$/m);
    for (const [args, same] of [
      [['help', 'nonexistent'], unknown],
      [['nonexistent', '--help'], unknown],
      [['help', 'bench', 'nonexistent'], unknownInBench],
      [['bench', 'help', 'nonexistent'], unknownInBench],
      [['bench', 'nonexistent', '-h'], unknownInBench],
      // A help flag before the words, as `help` (it printed the top-level help, exit 0).
      [['--help', 'nonexistent'], unknown],
      [['-h', 'nonexistent'], unknown],
      [['bench', '--help', 'nonexistent'], unknownInBench],
    ] as const) {
      const r = await runCli(args);
      expect({ args, ...r }).toEqual({ args, ...same });
    }
    // Every word after help names the command, not only the first.
    const benchServe = await runCli(['bench', 'serve', '--help']);
    expect(benchServe.stdout).toMatch(/^Usage: kmoe bench serve /);
    for (const args of [
      ['help', 'bench', 'serve'],
      ['bench', 'help', 'serve'],
      ['--help', 'bench', 'serve'],
      ['bench', '-h', 'serve'],
    ])
      expect(await runCli(args)).toEqual(benchServe);
    const top = await runCli(['help']);
    expect(top.code).toBe(0);
    expect(top.stdout).toBe((await runCli(['--help'])).stdout);
  });

  it('exits quietly (0) when the reader closes the pipe early (`kmoe ... --help | head -1`)', async () => {
    const { spawn } = await import('node:child_process');
    const child = spawn(process.execPath, [...KMOE_ARGV, 'bench', 'model', '--help'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
    });
    // Our end closed before the help is written, as `head` does once it has its lines.
    child.stdout.destroy();
    const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
    expect(stderr).not.toContain('EPIPE');
    expect(code).toBe(0);
  });

  it('prints its version', async () => {
    const pkg = JSON.parse(readFileSync(`${ROOT}package.json`, 'utf8')) as { version: string };
    const r = await runCli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${pkg.version}\n`);
  });

  it('lists the benchmarks with bench --help', async () => {
    const r = await runCli(['bench', '--help']);
    expect(r.code).toBe(0);
    for (const name of ['model', 'dispatch', 'serve', 'expert', 'adaptive-k'])
      expect(r.stdout).toMatch(new RegExp(`^  ${name} `, 'm'));
  });

  // One layout for every command, bench subcommands included: at the width of COLUMNS (80 for a
  // pipe without it), no line runs over, not even where one word is longer than the room left
  // (help-layout.test.ts has the narrow widths and the long defaults).
  it.each([
    ['', 80],
    // COLUMNS that is no width is passed over, as terminals and other tools pass it over.
    ['wide', 80],
    ['60', 60],
    ['120', 120],
  ])('wraps every help at COLUMNS=%j (width %i) by the same rules', async (columns, width) => {
    const commands = [
      '',
      'serve',
      'eval',
      'worker',
      'synth',
      'bench',
      'bench model',
      'bench serve',
      'bench traffic',
    ];
    for (const command of commands) {
      const r = await runCli([...command.split(' ').filter((w) => w !== ''), '--help'], {
        env: { COLUMNS: columns },
      });
      expect(r.code).toBe(0);
      const over = r.stdout.split('\n').filter((line) => line.length > width);
      expect({ command, over }).toEqual({ command, over: [] });
      // The options fill the width: some line of every help is within 10 columns of it.
      expect(Math.max(...r.stdout.split('\n').map((line) => line.length))).toBeGreaterThan(width - 10);
    }
  });

  it('puts a description under its flag when the column beside it would be narrow', async () => {
    // serve's longest flag leaves 60 - 33 = 27 columns beside it; bench serve's leaves 34.
    const serve = await runCli(['serve', '--help'], { env: { COLUMNS: '60' } });
    expect(serve.stdout).toMatch(
      /^ {2}--port <port>\n {6}listen port; 0 picks a free one \(default: 8000\)$/m,
    );
    const bench = await runCli(['bench', 'serve', '--help'], { env: { COLUMNS: '60' } });
    expect(bench.stdout).toMatch(
      /^ {2}--requests <n> {9}requests per run \(default: 2 x\n {25}concurrency, at least 8\)$/m,
    );
    // At 80 both are beside: bench model's 37-column flag still leaves 39 (commander gave up below 40).
    const model = await runCli(['bench', 'model', '--help'], { env: { COLUMNS: '' } });
    expect(model.stdout).toMatch(/^ {2}--repeats <n> {26}measurements per figure \(default: 5\)$/m);
    expect(model.stdout).toMatch(
      /^ {2}--model <dir> {26}checkpoint directory \(config\.json,\n {41}\*\.safetensors, tokenizer\.json\)$/m,
    );
  });

  // The README's command table names these options; each command's --help must list them.
  it.each([
    [
      'generate',
      [
        '--model',
        '--prompt',
        '--max-tokens',
        '--temperature',
        '--top-p',
        '--seed',
        '--routing',
        '--stats',
        '--workers',
        '--wire',
        '--dispatch-timeout',
        '--threads',
        '--device',
        '--expert-weights',
      ],
    ],
    [
      'eval',
      [
        '--model',
        '--ids',
        '--text',
        '--routing',
        '--windows',
        '--window',
        '--batch',
        '--sweep',
        '--chart',
        '--json',
        '--workers',
        '--wire',
        '--dispatch-timeout',
        '--threads',
        '--device',
        '--expert-weights',
      ],
    ],
    [
      'calibrate',
      [
        '--model',
        '--method',
        '--policy',
        '--out',
        '--ids',
        '--windows',
        '--alpha',
        '--k-values',
        '--target-avg-k',
        '--budget',
        '--search-windows',
        '--step',
        '--expert-means',
        '--threads',
        '--device',
        '--expert-weights',
      ],
    ],
    [
      'bench model',
      [
        '--model',
        '--ids',
        '--windows',
        '--decode-tokens',
        '--repeats',
        '--out',
        '--threads',
        '--device',
        '--expert-weights',
        '--llama-cpp',
        '--llama-cpp-type',
        '--llama-cpp-reference',
      ],
    ],
    [
      'bench dispatch',
      [
        '--model',
        '--ids',
        '--windows',
        '--cluster-sizes',
        '--wire-dtypes',
        '--routing',
        '--out',
        '--chart',
        '--threads',
      ],
    ],
    ['synth', ['--like', '--layers', '--out', '--seed', '--shard-size', '--sparse']],
    [
      'plan',
      [
        '--model',
        '--workers',
        '--placement',
        '--device',
        '--memory',
        '--expert-weights',
        '--context',
        '--batch',
        '--json',
      ],
    ],
    ['bench expert', ['--like', '--formats', '--batches', '--out', '--chart']],
    [
      'serve',
      [
        '--model',
        '--host',
        '--port',
        '--workers',
        '--wire',
        '--dispatch-timeout',
        '--routing',
        '--profiles',
        '--max-running',
        '--max-queued',
        '--prefill-chunk',
        '--served-model-name',
        '--shutdown-timeout',
        '--max-connections',
        '--log-level',
        '--threads',
        '--device',
        '--expert-weights',
        '--redis',
        '--redis-ca',
      ],
    ],
    [
      'worker',
      [
        '--model',
        '--experts',
        '--redis',
        '--redis-ca',
        '--advertise-url',
        '--port',
        '--host',
        '--shutdown-timeout',
      ],
    ],
    ['cluster status', ['--redis', '--redis-ca', '--json']],
  ] as const)('%s --help lists its options', async (command, flags) => {
    const r = await runCli([...command.split(' '), '--help']);
    expect(r.code).toBe(0);
    for (const flag of flags) expect(r.stdout).toMatch(new RegExp(`^  ${flag} `, 'm'));
  });
});

/** The subcommands a help text lists under "Commands:" (help itself and groups left out). */
function commandsIn(help: string): string[] {
  return [...help.slice(help.indexOf('Commands:')).matchAll(/^ {2}([a-z][a-z-]*) \[options\]/gm)].map(
    (m) => m[1]!,
  );
}

/** Every command `kmoe --help` and `kmoe bench --help` list, as words (`bench failover`). */
async function everyCommand(): Promise<string[]> {
  const top = await runCli(['--help']);
  const bench = await runCli(['bench', '--help']);
  const commands = [...commandsIn(top.stdout), ...commandsIn(bench.stdout).map((c) => `bench ${c}`)];
  expect(commands).toContain('train-allocator');
  expect(commands).toContain('bench failover');
  return commands;
}

describe('every command --help', () => {
  it('writes list defaults as the flag takes them (a,b), never as JSON arrays', async () => {
    const commands = await everyCommand();
    const helps = await Promise.all(commands.map((c) => runCli([...c.split(' '), '--help'])));
    helps.forEach((r, i) => {
      expect(r.code, commands[i]).toBe(0);
      expect(r.stdout, commands[i]).not.toMatch(/\(default:\s*\[/);
    });
  });
});

describe('every command with an unknown flag', () => {
  // A mistyped flag is the mistake to report: `--modle m` also leaves --model missing, and a value
  // after it may be wrong only because the flag before it was not the one meant.
  it('reports the unknown flag first, before a missing required option', async () => {
    const commands = await everyCommand();
    const runs = await Promise.all(commands.map((c) => runCli([...c.split(' '), '--bogus'])));
    runs.forEach((r, i) => {
      expect({ command: commands[i], code: r.code, stderr: r.stderr.trim().split('\n') }).toEqual({
        command: commands[i],
        code: 2,
        stderr: [
          `kmoe ${commands[i]}: error: unknown option '--bogus'`,
          `Run 'kmoe ${commands[i]} --help' for usage.`,
        ],
      });
    });
  });

  it('reports it before a bad value of another flag, wherever the two stand', async () => {
    for (const args of [
      ['serve', '--model', 'no-such-dir', '--bogus'],
      ['serve', '--bogus', '--port', 'x'],
      ['bench', 'expert', '--formats', 'fp64', '--bogus'],
    ]) {
      const r = await runCli(args);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/^kmoe (serve|bench expert): error: unknown option '--bogus'$/m);
    }
    // The flag meant is suggested.
    const typo = await runCli(['serve', '--modle', MODEL_DIR]);
    expect(typo.code).toBe(2);
    expect(typo.stderr).toMatch(/^kmoe serve: error: unknown option '--modle'\n\(Did you mean --model\?\)$/m);
  });

  it('reports it before a flag at the end of the line missing its value', async () => {
    // Commander stopped at the missing value before it looked for unknown flags.
    const r = await runCli(['serve', '--bogus', '--model']);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([
      "kmoe serve: error: unknown option '--bogus'",
      "Run 'kmoe serve --help' for usage.",
    ]);
    for (const args of [
      ['serve', '--model'],
      ['serve', '--port', '0', '--model'],
    ]) {
      const alone = await runCli(args);
      expect(alone.code).toBe(2);
      expect(alone.stderr.trim().split('\n')).toEqual([
        "kmoe serve: error: option '--model <dir>' argument missing",
        "Run 'kmoe serve --help' for usage.",
      ]);
    }
  });

  it('still reports a missing required option and a bad value, in that order of the line', async () => {
    const missing = await runCli(['serve', '--port', '0']);
    expect(missing.code).toBe(2);
    expect(missing.stderr.trim().split('\n')).toEqual([
      "kmoe serve: error: required option '--model <dir>' not specified",
      "Run 'kmoe serve --help' for usage.",
    ]);
    const bad = await runCli(['serve', '--port', 'x', '--max-running', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim().split('\n')).toEqual([
      "kmoe serve: error: --port must be a number, got 'x'",
      "Run 'kmoe serve --help' for usage.",
    ]);
  });
});

describe('a flag that takes a value, given twice', () => {
  // Commander kept the last value silently: `--ids a.u16 --ids b.u16` scored b only.
  it('is a usage error naming the flag, after an unknown flag and before its own value', async () => {
    const model = ['--model', MODEL_DIR];
    for (const [args, message] of [
      // eval reads one corpus: its --ids is no list, so the list is not suggested.
      [
        ['eval', ...model, '--ids', 'data/eval/valid.man.u16', '--ids', 'data/eval/valid.code.u16'],
        '--ids is given twice: give it once',
      ],
      // calibrate reads several: the list is the fix.
      [
        ['calibrate', ...model, '--ids', 'data/eval/valid.man.u16', '--ids', 'data/eval/valid.code.u16'],
        '--ids is given twice: it takes a comma-separated list, e.g. --ids data/eval/valid.man.u16,data/eval/valid.code.u16',
      ],
      [
        ['eval', ...model, '--ids', 'data/eval/valid.man.u16,data/eval/valid.code.u16'],
        '--ids takes one file here, got 2',
      ],
      [
        ['serve', ...model, '--profiles', 'recommended', '--profiles', 'profiles/recommended.json'],
        '--profiles is given twice: it takes a comma-separated list, e.g. --profiles recommended,profiles/recommended.json',
      ],
      // --workers takes a list of URLs, but a count is one value: two counts are not one list.
      [
        ['serve', ...model, '--workers', 'ws://10.0.0.5:7070', '--workers', 'ws://10.0.0.6:7070'],
        '--workers is given twice: it takes a comma-separated list, e.g. --workers ws://10.0.0.5:7070,ws://10.0.0.6:7070',
      ],
      [['serve', ...model, '--workers', '2', '--workers', '3'], '--workers is given twice: give it once'],
      [['serve', ...model, '--port', '8000', '--port', 'x'], '--port is given twice: give it once'],
      // A flag without a value parser, and one written --flag=value.
      [['generate', ...model, '--prompt', 'a', '--prompt=b'], '--prompt is given twice: give it once'],
    ] as const) {
      const r = await runCli(args);
      const command = args[0];
      expect({ args, code: r.code, stderr: r.stderr.trim().split('\n') }).toEqual({
        args,
        code: 2,
        stderr: [`kmoe ${command}: error: ${message}`, `Run 'kmoe ${command} --help' for usage.`],
      });
    }
    // Every bench that reads one corpus, too.
    const workers = await runCli([
      'bench',
      'workers',
      ...model,
      '--ids',
      'data/eval/valid.man.u16',
      '--ids',
      'data/eval/valid.code.u16',
    ]);
    expect(workers.code).toBe(2);
    expect(workers.stderr.trim().split('\n')[0]).toBe(
      'kmoe bench workers: error: --ids is given twice: give it once',
    );
    // --policies: a list, or none (no list).
    const policies = ['bench', 'adaptive-k', ...model, '--policies'];
    const twice = await runCli([...policies, 'entropy', '--policies', 'topp']);
    expect(twice.code).toBe(2);
    expect(twice.stderr.trim().split('\n')[0]).toBe(
      'kmoe bench adaptive-k: error: --policies is given twice: it takes a comma-separated list, e.g. --policies entropy,topp',
    );
    const none = await runCli([...policies, 'none', '--policies', 'topp']);
    expect(none.stderr.trim().split('\n')[0]).toBe(
      'kmoe bench adaptive-k: error: --policies is given twice: give it once',
    );
    const unknown = await runCli(['serve', '--port', '1', '--port', '2', '--bogus']);
    expect(unknown.stderr).toMatch(/^kmoe serve: error: unknown option '--bogus'$/m);
  });

  it('--routing adds up, its entries still checked across flags; a boolean flag twice is not refused', async () => {
    const man = ['eval', '--model', MODEL_DIR, '--ids', 'data/eval/valid.man.u16'];
    const two = await runCli([...man, '--routing', 'topk:1', '--routing', 'topk:2']);
    expect(two.code).toBe(2);
    expect(two.stderr.trim().split('\n')[0]).toBe(
      'kmoe eval: error: --routing takes one policy here, got 2: topk:1 ; topk:2',
    );
    const again = await runCli([...man, '--sweep', '--routing', 'topk:1,topk:2', '--routing', 'topk:2']);
    expect(again.stderr.trim().split('\n')[0]).toBe('kmoe eval: error: --routing names topk:2 twice');
    // --json twice loses nothing: the mistake reported is the window range.
    const json = await runCli([...man, '--json', '--json', '--windows', '5:2']);
    expect(json.code).toBe(2);
    expect(json.stderr).toMatch(/^kmoe eval: error: --windows: window range 5:2 is empty/m);
  });
});

describe('kmoe serve on a taken port', () => {
  it('fails before it starts workers or loads the model', async () => {
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    const port = (taken.address() as { port: number }).port;
    try {
      const r = await runCli(['serve', '--model', MODEL_DIR, '--port', String(port)]);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(new RegExp(`cannot listen on 127\\.0\\.0\\.1:${port}: .*EADDRINUSE`));
      expect(r.stderr).toMatch(/hint: .*--port 0/);
      // The default is 2 local workers: the check ran before any was started.
      expect(r.stderr).not.toMatch(/starting local expert workers|kmoe worker: loading/);
    } finally {
      taken.close();
    }
  });
});

describe('kmoe serve with two profile files of one name', () => {
  // Requests name a loaded profile by its file name, so two different files of one name cannot both
  // be loaded: a usage error, before workers start (they took ~3 s before failing with exit 1).
  const shipped = path.join(ROOT, 'profiles', 'recommended.json');
  it.each([
    [(alt: string) => ['--profiles', `profiles/recommended.json,${alt}`], 'profiles/recommended.json'],
    [(alt: string) => ['--routing', 'recommended', '--profiles', alt], `${shipped} (--routing)`],
  ])('is a usage error naming --profiles (case %#)', async (args, first) => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-profiles-'));
    const alt = path.join(dir, 'recommended.json');
    writeFileSync(alt, readFileSync(shipped));
    try {
      const r = await runCli(['serve', '--model', MODEL_DIR, '--port', '0', ...args(alt)]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(
        `--profiles: ${first} and ${alt} are both named recommended.json, the name requests use for a loaded profile`,
      );
      expect(r.stderr).toMatch(/hint: give each profile file a name of its own/);
      expect(r.stderr).toMatch(/Run 'kmoe serve --help' for usage/);
      expect(r.stderr).not.toMatch(/starting local expert workers|kmoe worker: loading/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('kmoe bench model', () => {
  it('measures prefill and decode and writes them as JSON with the time split by graph kind', async () => {
    const out = `${tmpdir()}/kmoe-bench-model-${process.pid}.json`;
    const r = await runCli([
      'bench',
      'model',
      '--model',
      MODEL_DIR,
      '--windows',
      '0:2',
      '--decode-tokens',
      '8',
      '--decode-prompt',
      '40',
      '--repeats',
      '1',
      '--out',
      out,
    ]);
    expect(r.code).toBe(0);
    const json = JSON.parse(readFileSync(out, 'utf8'));
    expect(json.prefill.batch4.tokensPerSecond).toBeGreaterThan(0);
    expect(json.decode.tokens).toBe(8);
    expect(json.decode.promptTokens).toBe(40);
    expect(json.decode.tokensPerSecond).toBeGreaterThan(0);
    expect(Object.keys(json.decode.breakdown.onnxruntime).sort()).toEqual(['dense', 'expert', 'lm-head']);
    // Timed over the decode steps alone (not the prompt's step): one head call per token, one
    // dense call per layer and token, so the time outside onnxruntime is what is left of the wall.
    expect(json.decode.breakdown.onnxruntime['lm-head'].calls).toBe(8);
    expect(json.decode.breakdown.onnxruntime.dense.calls).toBe(8 * 4);
    expect(json.decode.breakdown.otherMs).toBeGreaterThan(0);
    expect(json.machine.cores).toBeGreaterThan(0);
    // The report says what it measured: the decode's context and the prefill's windows per pass.
    expect(r.stdout).toMatch(/\| decode, 1 sequence, 40-token prompt \|/);
    expect(r.stdout).toMatch(/\| prefill, 2 windows per pass \|/);
    // Without --llama-cpp nothing is compared: no figure from another machine.
    expect(json.llamaCpp).toBeNull();
    expect(json.ratios).toBeNull();
    // 3 x 256 x 512 fp32 per expert; 8 experts x 4 layers.
    expect(json.expertCalls.expertMiB).toBeCloseTo(1.5, 6);
    expect(json.expertCalls.allExpertsMiB).toBeCloseTo(48, 6);
    expect(json.expertCalls.sameExpertMicros).toBeGreaterThan(0);
    expect(json.expertCalls.rotatingMicros).toBeGreaterThan(0);
    expect(r.stdout).toMatch(
      /^expert call, 1 token: [\d.]+ us with its 1\.5 MiB .* all 48 MiB of expert weights$/m,
    );
    rmSync(out);
  });

  it('measures a --versus engine in the same rounds, and the decode loop on the engine thread', async () => {
    const out = `${tmpdir()}/kmoe-bench-model-versus-${process.pid}.json`;
    const r = await runCli([
      'bench',
      'model',
      '--model',
      MODEL_DIR,
      '--windows',
      '0:2',
      '--decode-tokens',
      '8',
      '--repeats',
      '2',
      '--versus',
      'dense-weights=int8,expert-weights=int8',
      '--out',
      out,
    ]);
    expect(r.code).toBe(0);
    const json = JSON.parse(readFileSync(out, 'utf8'));
    expect(json.denseWeights).toBe('fp32');
    expect(json.decode.engineLoop.samples).toHaveLength(2);
    expect(json.decode.engineLoop.tokensPerSecond).toBeGreaterThan(0);
    expect(json.decode.cpuMicrosPerToken.median).toBeGreaterThan(0);
    expect(json.versus.settings).toMatchObject({ denseWeights: 'int8', expertWeights: 'int8' });
    expect(json.versus.decode.samples).toHaveLength(2);
    for (const k of ['prefill4', 'decode', 'decodeLoop']) {
      expect(json.versus.ratios[k].median).toBeGreaterThan(0);
      expect(json.versus.ratios[k].best).toBeGreaterThan(0);
    }
    // In process: no round trips; the int8 engine's time is still split by graph kind.
    expect(json.versus.decodeBreakdown.roundTrips).toBeNull();
    expect(Object.keys(json.versus.decodeBreakdown.onnxruntime).sort()).toEqual([
      'dense',
      'expert',
      'lm-head',
    ]);
    expect(r.stdout).toMatch(/^versus \{"denseWeights":"int8","expertWeights":"int8"\}, same rounds: /m);
    rmSync(out);

    const bad = await runCli(['bench', 'model', '--model', MODEL_DIR, '--versus', 'dense-weights=int4']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/--versus dense-weights must be fp32 or int8, got 'int4'/);
    const unknown = await runCli(['bench', 'model', '--model', MODEL_DIR, '--versus', 'threads=2']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--versus: unknown setting 'threads'/);
  });

  it('rejects --llama-cpp-type and --llama-cpp-reference without --llama-cpp, a missing GGUF, a prompt beyond its windows', async () => {
    const base = ['bench', 'model', '--model', MODEL_DIR];
    const noAnchor = await runCli([...base, '--llama-cpp-type', 'bf16']);
    expect(noAnchor.code).toBe(2);
    expect(noAnchor.stderr).toMatch(/--llama-cpp-type and --llama-cpp-reference need --llama-cpp/);
    const typeOnFile = await runCli([...base, '--llama-cpp', 'x.gguf', '--llama-cpp-type', 'bf16']);
    expect(typeOnFile.code).toBe(2);
    expect(typeOnFile.stderr).toMatch(/--llama-cpp-type applies to --llama-cpp auto/);
    const missing = await runCli([...base, '--llama-cpp', 'no-such-file.gguf']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/GGUF file not found: no-such-file\.gguf/);
    const faAlone = await runCli([...base, '--llama-cpp-flash-attention', 'off']);
    expect(faAlone.code).toBe(2);
    expect(faAlone.stderr).toMatch(/--llama-cpp-flash-attention needs --llama-cpp/);
    const faBad = await runCli([...base, '--llama-cpp', 'auto', '--llama-cpp-flash-attention', 'yes']);
    expect(faBad.code).toBe(2);
    expect(faBad.stderr).toMatch(/--llama-cpp-flash-attention must be one of auto, on, off, got 'yes'/);
    // A window range the corpus does not have, or a decode context longer than the windows it is
    // cut from, is a usage error before anything loads.
    const badRange = await runCli([...base, '--windows', '0:9999']);
    expect(badRange.code).toBe(2);
    expect(badRange.stderr).toMatch(
      /--windows: window range 0:9999 is empty or beyond the 805 windows available/,
    );
    expect(badRange.stderr).toMatch(/Run 'kmoe bench model --help' for usage/);
    const longPrompt = await runCli([...base, '--windows', '0:2', '--decode-prompt', '600']);
    expect(longPrompt.code).toBe(2);
    expect(longPrompt.stderr).toMatch(/--decode-prompt 600 is longer than the 512 tokens of --windows 0:2/);
    expect(longPrompt.stderr).toMatch(/hint: give --windows at least 3 windows/);
    const noIds = await runCli([...base, '--ids', 'no-such-corpus.u16']);
    expect(noIds.code).toBe(2);
    expect(noIds.stderr).toMatch(/cannot read --ids no-such-corpus\.u16: no such file/);
    // So is a decode beyond the model's positions (tiny-mixtral: 4,096), before the engine loads.
    const beyond = await runCli([
      ...base,
      '--windows',
      '0:17',
      '--decode-prompt',
      '4090',
      '--decode-tokens',
      '64',
    ]);
    expect(beyond.code).toBe(2);
    expect(beyond.stderr).toMatch(
      /--decode-prompt 4090 \+ --decode-tokens 64 = 4154 positions; the model supports 4096/,
    );
    expect(beyond.stderr).toMatch(/hint: give a shorter --decode-prompt or fewer --decode-tokens/);
    const badType = await runCli([...base, '--llama-cpp', 'auto', '--llama-cpp-type', 'q4_0']);
    expect(badType.code).toBe(2);
    expect(badType.stderr).toMatch(/--llama-cpp-type must be one of f32, bf16, f16, q8_0, got 'q4_0'/);
  });
});

describe('kmoe bench dispatch and balance', () => {
  it('bench dispatch measures its native top-K baseline once when --routing names it too', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-dispatch-'));
    try {
      const out = path.join(dir, 'dispatch.json');
      const r = await runCli([
        'bench',
        'dispatch',
        '--model',
        MODEL_DIR,
        '--windows',
        '0:1',
        '--cluster-sizes',
        '2',
        '--wire-dtypes',
        'fp32',
        '--threads',
        '1',
        '--routing',
        'topk:2,topk:1',
        '--out',
        out,
        '--chart',
        path.join(dir, 'dispatch.svg'),
      ]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(
        /^bench dispatch: --routing topk:2 is native top-K \(topk:2\), which the bench always runs: measured once$/m,
      );
      const rows = (JSON.parse(readFileSync(out, 'utf8')) as { rows: { routing: string }[] }).rows;
      expect(rows.map((row) => row.routing)).toEqual([
        'topk:2',
        'entropy:1,2@1.04',
        'topp:0.7@1-2',
        'ratio:0.3',
        'topk:1',
      ]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each(['dispatch', 'balance'])(
    'bench %s refuses a window range the corpus lacks as a usage error',
    async (name) => {
      const r = await runCli(['bench', name, '--model', MODEL_DIR, '--windows', '5:3']);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/--windows: window range 5:3 is empty or beyond the \d+ windows available/);
      expect(r.stderr).toMatch(new RegExp(`Run 'kmoe bench ${name} --help' for usage`));
    },
  );
});

describe('registry flags', () => {
  it.each([
    [['worker', '--model', MODEL_DIR, '--experts', 'auto'], '--experts auto needs --redis'],
    [
      ['worker', '--model', MODEL_DIR, '--experts', '0-3', '--redis', 'http://h'],
      '--redis: expected redis:// or rediss://',
    ],
    [
      ['serve', '--model', MODEL_DIR, '--workers', '2', '--redis', 'redis://127.0.0.1:1'],
      'give --workers or --redis',
    ],
    [['cluster', 'status'], "required option '--redis <url>'"],
    [
      ['worker', '--model', MODEL_DIR, '--experts', '0-3', '--redis-ca', 'package.json'],
      '--redis-ca package.json holds no PEM certificate',
    ],
    [['serve', '--model', MODEL_DIR, '--redis-ca', 'no-such-ca.crt'], '--redis-ca no-such-ca.crt: ENOENT'],
  ])('%j is a usage error (exit 2)', async (args, message) => {
    const r = await runCli(args);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
  });
});

describe('kmoe eval --trace, stopped before the end', () => {
  it.each(['SIGINT', 'SIGTERM'] as const)(
    'by %s: the file that was there stays, and no temp file is left',
    async (signal) => {
      const { spawn } = await import('node:child_process');
      const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-trace-signal-'));
      try {
        const file = path.join(dir, 'trace.jsonl');
        writeFileSync(file, 'earlier trace\n');
        // --batch 1 over all of valid.man: seconds of windows after the bar first shows.
        const child = spawn(
          process.execPath,
          [
            ...KMOE_ARGV,
            'eval',
            '--model',
            MODEL_DIR,
            '--ids',
            'data/eval/valid.man.u16',
            '--batch',
            '1',
            '--trace',
            file,
          ],
          { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'] },
        );
        const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
          child.once('exit', (code, sig) => resolve({ code, signal: sig })),
        );
        // The bar is drawn once the trace's header is written (into its temp file).
        await new Promise<void>((resolve) => {
          let stderr = '';
          child.stderr.setEncoding('utf8').on('data', (d: string) => {
            stderr += d;
            if (stderr.includes('eval [')) resolve();
          });
        });
        const during = readdirSync(dir);
        child.kill(signal);
        const { code, signal: by } = await exited;
        // The trace was being written beside the file, not over it.
        expect(during).toHaveLength(2);
        expect(during.find((f) => f !== 'trace.jsonl')).toMatch(/^trace\.jsonl\.\d+-[0-9a-f]{8}\.tmp$/);
        expect({ code, by }).toEqual({ code: null, by: signal });
        expect(readdirSync(dir)).toEqual(['trace.jsonl']);
        expect(readFileSync(file, 'utf8')).toBe('earlier trace\n');
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );
});

describe('an output path that is an input or another output', () => {
  // Each was accepted and the output written over the other file: the corpus, the trace read, the JSON.
  const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-output-apart-'));
  const corpus = readFileSync(path.join(ROOT, 'data/eval/valid.man.u16'));
  writeFileSync(path.join(dir, 'X.u16'), corpus);
  symlinkSync(path.join(dir, 'X.u16'), path.join(dir, 'link.u16'));
  writeFileSync(path.join(dir, 't.jsonl'), 'trace\n');
  writeFileSync(path.join(dir, 'p.md'), 'adaptive-k\n');
  // A routing profile named in --routing (not a valid one: it is never read when refused).
  writeFileSync(path.join(dir, 'prof.json'), '{}\n');
  const at = (file: string) => path.join(dir, file);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    [
      ['eval', '--model', MODEL_DIR, '--ids', at('X.u16'), '--trace', at('X.u16')],
      `kmoe eval: error: --trace ${at('X.u16')} would overwrite --ids ${at('X.u16')}, which it reads: write the output elsewhere`,
    ],
    // Through a symlink, and written another way (./ and a doubled slash): still the same file.
    [
      ['eval', '--model', MODEL_DIR, '--ids', `${dir}/./X.u16`, '--trace', at('link.u16')],
      `kmoe eval: error: --trace ${at('link.u16')} would overwrite --ids ${dir}/./X.u16, which it reads: write the output elsewhere`,
    ],
    [
      ['bench', 'traffic', '--trace', at('t.jsonl'), '--out', `${dir}//t.jsonl`],
      `kmoe bench traffic: error: --out ${dir}//t.jsonl would overwrite --trace ${at('t.jsonl')}, which it reads: write the output elsewhere`,
    ],
    [
      ['bench', 'traffic', '--trace', at('t.jsonl'), '--out', at('S.json'), '--chart', at('S.json')],
      `kmoe bench traffic: error: --out ${at('S.json')} and --chart ${at('S.json')} are one file: give each output its own path`,
    ],
    // A file the command writes beside the one named counts too.
    [
      ['bench', 'project', '--out', at('p.json'), '--adaptive-k', at('p.md')],
      `kmoe bench project: error: ${at('p.md')} (written beside --out ${at('p.json')}) would overwrite --adaptive-k ${at('p.md')}, which it reads: write the output elsewhere`,
    ],
    // A profile named in --routing is read: an output over it was not compared and destroyed it.
    [
      [
        'eval',
        '--model',
        MODEL_DIR,
        '--ids',
        at('X.u16'),
        '--routing',
        at('prof.json'),
        '--trace',
        at('prof.json'),
      ],
      `kmoe eval: error: --trace ${at('prof.json')} would overwrite --routing ${at('prof.json')}, which it reads: write the output elsewhere`,
    ],
    // A spec beside it is no path (a command that runs several policies: bench adaptive-k-time, which
    // takes one, refuses such a list before the paths are compared).
    [
      [
        'bench',
        'serve',
        '--url',
        'http://h:1',
        '--routing',
        `topk:1,${at('prof.json')}`,
        '--out',
        at('prof.json'),
      ],
      `kmoe bench serve: error: --out ${at('prof.json')} would overwrite --routing ${at('prof.json')}, which it reads: write the output elsewhere`,
    ],
    // eval --sweep's default chart (bench-results/pareto.svg, from the repository root where runCli
    // runs) is compared as a typed --chart is: it was known only once the sweep had started.
    [
      ['eval', '--model', MODEL_DIR, '--ids', 'bench-results/pareto.svg', '--sweep'],
      'kmoe eval: error: --chart bench-results/pareto.svg would overwrite --ids bench-results/pareto.svg, which it reads: write the output elsewhere',
    ],
  ])('%j is a usage error naming both, and nothing is written', async (args, message) => {
    const r = await runCli(args);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')[0]).toBe(message);
    expect(readFileSync(at('X.u16'))).toEqual(corpus);
    expect(readFileSync(at('t.jsonl'), 'utf8')).toBe('trace\n');
    expect(readFileSync(at('p.md'), 'utf8')).toBe('adaptive-k\n');
    expect(readFileSync(at('prof.json'), 'utf8')).toBe('{}\n');
    expect(readdirSync(dir).sort()).toEqual(['X.u16', 'link.u16', 'p.md', 'prof.json', 't.jsonl']);
  });

  it('two outputs on one device are not one file: --out /dev/null --chart /dev/null runs', async () => {
    const r = await runCli([
      'bench',
      'expert',
      '--out',
      '/dev/null',
      '--chart',
      '/dev/null',
      '--seconds',
      '0',
      '--batches',
      '1',
      '--bandwidth-mib',
      '1',
      '--peak',
      '8,8,8',
      '--hidden',
      '32',
      '--ffn',
      '32',
    ]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('wrote /dev/null and /dev/null');
  });
});

describe('an output path that cannot be written', () => {
  const hint = 'hint: write the output under a directory this user can create files in';

  it('under a file system that takes no new directories: fails at once, naming the directory (exit 1), where mkdir spun under /proc', async () => {
    // bench project runs in about a second; a mkdir that loops would run into the timeout.
    const r = await runCli(['bench', 'project', '--out', '/proc/kmoe-no-such-dir/projection.json'], {
      timeoutMs: 60_000,
    });
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    // root gets procfs' ENOENT; another user is refused the write permission first.
    expect(lines[0]).toMatch(
      /^kmoe bench project: error: --out \/proc\/kmoe-no-such-dir\/projection\.json: cannot make directory \/proc\/kmoe-no-such-dir: (\/proc takes no new directories \(ENOENT\)|permission denied \(EACCES\))$/,
    );
    expect(lines.slice(1)).toEqual([hint]);
    expect(r.stdout).toBe('');
  });

  it('in a directory that takes no new files, even for root (/sys): fails before the work, not after it', async () => {
    // eval draws its progress bar from the first window on and writes the trace as it goes; the
    // trace's directory is refused before the model is loaded, so there is no bar and no report.
    const r = await evalMan(['--windows', '0:2', '--trace', '/sys/kmoe-trace.jsonl']);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toEqual([
      'kmoe eval: error: --trace /sys/kmoe-trace.jsonl: cannot write in /sys: permission denied (EACCES)',
      hint,
    ]);
    expect(r.stdout).toBe('');
  });

  it('is found among several outputs, and none is written: bench expert --out fine --chart refused', async () => {
    // bench expert times a GEMM and a bandwidth probe before it writes either file.
    const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-output-check-'));
    try {
      const out = path.join(dir, 'new', 'expert.json');
      const r = await runCli(['bench', 'expert', '--out', out, '--chart', '/sys/kmoe-expert.svg']);
      expect(r.code).toBe(1);
      expect(r.stderr.trim().split('\n')).toEqual([
        'kmoe bench expert: error: --chart /sys/kmoe-expert.svg: cannot write in /sys: permission denied (EACCES)',
        hint,
      ]);
      expect(r.stdout).toBe('');
      // --out's directory was checked, not made: a refused command leaves no empty directory.
      expect(readdirSync(dir)).toEqual([]);
      // A path under a regular file is a usage error of the command line (exit 2), before it too.
      const file = path.join(dir, 'plain-file');
      writeFileSync(file, 'x');
      const under = await runCli(['bench', 'expert', '--out', path.join(file, 'expert.json')]);
      expect(under.code).toBe(2);
      expect(under.stderr.trim().split('\n')[0]).toBe(
        `kmoe bench expert: error: --out ${path.join(file, 'expert.json')}: ${file} is a file, not a directory`,
      );
      expect(under.stdout).toBe('');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is checked without making its directory: a command refused later leaves no empty directory', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'kmoe-output-nomkdir-'));
    try {
      // --chart passes the output check; eval then refuses it without --sweep (exit 2).
      const r = await evalMan(['--chart', path.join(dir, 'new', 'deeper', 'p.svg')]);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('--chart draws the --sweep results: add --sweep');
      expect(readdirSync(dir)).toEqual([]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('is checked for synth --out, the directory it fills, as for every other command', async () => {
    // Was synth's own message without the flag ("cannot make directory /sys/kmoe-synth: ...").
    const r = await runCli([
      'synth',
      '--like',
      'mixtral-mid',
      '--layers',
      '1',
      '--sparse',
      '--out',
      '/sys/kmoe-synth',
    ]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    // sysfs refuses root with EPERM; another user is refused the write permission (EACCES).
    expect(lines[0]).toMatch(
      /^kmoe synth: error: --out \/sys\/kmoe-synth: cannot make directory \/sys\/kmoe-synth: permission denied \((EPERM|EACCES)\)$/,
    );
    expect(lines.slice(1)).toEqual([hint]);
    expect(r.stdout).toBe('');
  });

  it('is checked for a command that fills a directory too: bench adaptive-k --profiles-dir', async () => {
    // Its first calibration takes minutes; the refused directory is reported before it starts.
    const r = await runCli([
      'bench',
      'adaptive-k',
      '--model',
      MODEL_DIR,
      '--profiles-dir',
      '/sys/kmoe-profiles',
    ]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    // sysfs refuses root with EPERM; another user is refused the write permission (EACCES).
    expect(lines[0]).toMatch(
      /^kmoe bench adaptive-k: error: --profiles-dir \/sys\/kmoe-profiles: cannot make directory \/sys\/kmoe-profiles: permission denied \((EPERM|EACCES)\)$/,
    );
    expect(lines.slice(1)).toEqual([hint]);
    expect(r.stdout).toBe('');
  });
});
