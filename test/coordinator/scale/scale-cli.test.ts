// `kmoe synth` and `kmoe plan` as a user runs them: real CLI processes, usage errors, exit codes.

import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lastJsonLine, runCli } from '../../helpers/cli.js';
import { MODEL_DIR } from '../../helpers/paths.js';

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'kmoe-scale-cli-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('kmoe synth and kmoe plan', () => {
  it('writes the mid-size shape (8x7B at a quarter width) with the sizes computed by hand', async () => {
    const out = path.join(dir, 'mid');
    const s = await runCli(['synth', '--like', 'mixtral-mid', '--layers', '4', '--out', out, '--sparse']);
    expect(s.code).toBe(0);
    // Per layer: attention 2 x 1024^2 + 2 x 1024 x 256, experts 8 x 3 x 1024 x 3584, router 8 x 1024,
    // 2 norms of 1024 = 90,712,064; 4 layers + embeddings and head 2 x 32000 x 1024 + final norm 1024
    // = 428,385,280 parameters x 2 B = 856,770,560 B = 817.1 MiB, one shard.
    expect(s.stdout).toMatch(/mixtral-mid with 4 of 32 layers, 1 shard, 817\.1 MiB of bf16 tensors \(sparse/);
    const config = JSON.parse(await readFile(path.join(out, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      model_type: 'mixtral',
      hidden_size: 1024,
      intermediate_size: 3584,
      num_attention_heads: 8,
      num_key_value_heads: 2,
      num_local_experts: 8,
      num_experts_per_tok: 2,
      num_hidden_layers: 4,
      vocab_size: 32000,
    });
  });

  it('writes a sparse 8x7B layout and plans it from the index', async () => {
    const out = path.join(dir, 'x7');
    const s = await runCli(['synth', '--like', 'mixtral-8x7b', '--layers', '2', '--out', out, '--sparse']);
    expect(s.stderr).not.toMatch(/error/);
    expect(s.code).toBe(0);
    // 2 layers of 8x7B: (262,148,096 + 2 x (41,984,000 + 8 x 176,160,768)) x 2 B = 6,329,376,768 B
    // = 5.89 GiB, greedy 5 GB shards -> 2 shards
    expect(s.stdout).toMatch(
      /mixtral-8x7b with 2 of 32 layers, 2 shards, 5\.89 GiB of bf16 tensors \(sparse/,
    );

    const p = await runCli([
      'plan',
      '--model',
      out,
      '--workers',
      '2',
      '--memory',
      '3GiB',
      '--expert-weights',
      'int8',
      '--device',
      'cpu',
      '--context',
      '4096',
      '--reserve',
      '0',
      '--json',
    ]);
    // one expert int8, 2 layers: 176,160,768 x 2 x 1.125 = 396,361,728 B; 4 per worker = 1,585,446,912
    const json = lastJsonLine(p.stdout);
    expect(json['storedBytes']).toBe(6_329_376_768);
    expect(json['bytesPerExpert']).toBe(396_361_728);
    expect((json['workers'] as { totalBytes: number }[]).map((w) => w.totalBytes)).toEqual([
      1_585_446_912, 1_585_446_912,
    ]);
    expect(json['fits']).toBe(true);
    expect(p.code).toBe(0);

    const tight = await runCli([
      'plan',
      '--model',
      out,
      '--workers',
      '2',
      '--memory',
      '1GiB',
      '--expert-weights',
      'int8',
    ]);
    expect(tight.code).toBe(3);
    expect(tight.stdout).toMatch(/does not fit: worker 0/);

    // Its matrices are holes: what runs a model refuses it at once instead of computing on zeros.
    // (with --workers 2: before the workers start)
    const g = await runCli(['generate', '--model', out, '--prompt', 'x', '--workers', '2']);
    expect(g.code).toBe(1);
    expect(g.stderr).toMatch(
      /error: .*x7: sparse synthetic checkpoint \(matrices are holes\): only for kmoe plan and loader checks/,
    );
    expect(g.stderr).toMatch(/^hint: write one without --sparse/m);
    const w = await runCli(['worker', '--model', out, '--experts', '0-1', '--port', '0']);
    expect(w.code).toBe(1);
    expect(w.stderr).toMatch(/sparse synthetic checkpoint/);
  });

  it('explains bad command lines', async () => {
    const a = await runCli([
      'synth',
      '--like',
      'mixtral-8x7b',
      '--layers',
      '40',
      '--out',
      path.join(dir, 'y'),
    ]);
    expect(a.code).toBe(2);
    expect(a.stderr).toMatch(/--layers must be <= 32/);
    // --out naming a file, a path under a file or a directory with files in it: a usage error
    // naming the flag (as every command's output paths), before anything is written.
    const file = path.join(dir, 'README.md');
    await writeFile(file, 'x');
    const synthOut = (out: string) =>
      runCli(['synth', '--like', 'mixtral-8x7b', '--layers', '1', '--sparse', '--out', out]);
    const f = await synthOut(file);
    expect(f.code).toBe(2);
    expect(f.stderr.trim().split('\n')).toEqual([
      `kmoe synth: error: --out ${file} is a file; give a directory`,
      "Run 'kmoe synth --help' for usage.",
    ]);
    const under = await synthOut(path.join(file, 'ckpt'));
    expect(under.code).toBe(2);
    expect(under.stderr.trim().split('\n')[0]).toBe(
      `kmoe synth: error: --out ${path.join(file, 'ckpt')}: ${file} is a file, not a directory`,
    );
    const full = path.join(dir, 'full');
    await mkdir(full);
    await writeFile(path.join(full, 'keep.txt'), 'kept');
    const n = await synthOut(full);
    expect(n.code).toBe(2);
    expect(n.stderr.trim().split('\n')[0]).toBe(
      `kmoe synth: error: --out ${full} is not empty (keep.txt); give a new or empty directory`,
    );
    expect(await readFile(path.join(full, 'keep.txt'), 'utf8')).toBe('kept');
    const b = await runCli(['plan', '--model', dir, '--workers', '2', '--expert-weights', 'int3']);
    // (--model is read first: the directory's missing config.json is what is reported.)
    expect(b.code).toBe(2);
    expect(b.stderr).toMatch(/--model .* has no config\.json: not a Hugging Face checkpoint directory/);
    // A plan is not a run: bf16 experts on cpu are planned as their fp32 widening, not refused as
    // the commands that compute them refuse them.
    const bf16 = await runCli(['plan', '--model', MODEL_DIR, '--workers', '2', '--expert-weights', 'bf16']);
    expect(bf16.code).toBe(0);
    expect(bf16.stdout).toMatch(/bf16 weights are widened to fp32 in memory/);
    expect(bf16.stdout).toMatch(/experts: fp32 weights/);
    const w = await runCli(['plan', '--model', MODEL_DIR, '--workers', '2', '--expert-weights', 'int3']);
    expect(w.code).toBe(2);
    expect(w.stderr).toMatch(/--expert-weights must be one of fp32, bf16, fp16, int8, int4/);
    // --model is checked as in every command: a missing directory is a usage error ...
    const missing = await runCli(['plan', '--model', path.join(dir, 'none'), '--workers', '2']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/model directory not found/);
    // ... a config.json that is there but unreadable is the model's error.
    const broken = path.join(dir, 'broken');
    await mkdir(broken);
    await writeFile(path.join(broken, 'config.json'), '{ not json');
    const c = await runCli(['plan', '--model', broken, '--workers', '2']);
    expect(c.code).toBe(1);
    expect(c.stderr).toMatch(/broken\/config\.json: not valid JSON/);
  });
});
