#!/usr/bin/env node
// The `kmoe` command: one binary, subcommands loaded on demand.

import { KmoeError } from '../shared/errors/kmoe-error.js';
import { UsageError } from '../shared/errors/usage-error.js';

interface Command {
  readonly summary: string;
  load(): Promise<{ run(argv: readonly string[]): Promise<number>; usage: string }>;
}

const commands: Record<string, Command> = {
  generate: { summary: 'stream a completion for one prompt', load: () => import('./commands/generate.js') },
  eval: { summary: 'perplexity and expert usage on a corpus', load: () => import('./commands/eval.js') },
  worker: { summary: 'host experts for remote coordinators', load: () => import('./commands/worker.js') },
  'local-cluster': {
    summary: 'start N expert workers on this host',
    load: () => import('./commands/local-cluster.js'),
  },
  calibrate: {
    summary: 'write a routing profile (theory, percentile or quality-constrained)',
    load: () => import('./commands/calibrate.js'),
  },
  serve: {
    summary: 'OpenAI-compatible HTTP server with continuous batching',
    load: () => import('./commands/serve.js'),
  },
  synth: {
    summary: 'write a checkpoint shaped like Mixtral 8x22B/8x7B with random weights',
    load: () => import('./commands/synth.js'),
  },
  plan: {
    summary: 'memory per worker and a placement that fits, from config and index',
    load: () => import('./commands/plan.js'),
  },
  bench: { summary: 'benchmarks that write JSON and figures', load: () => import('./commands/bench.js') },
};

function topUsage(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `kmoe — expert-parallel MoE inference with adaptive K\n\nusage: kmoe <command> [options]\n\n${lines.join('\n')}\n\nRun 'kmoe <command> --help' for a command's options.`;
}

async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${topUsage()}\n`);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`kmoe: unknown command '${name}'\n\n${topUsage()}\n`);
    return 2;
  }
  const mod = await command.load();
  // `bench` forwards --help to the benchmark it names.
  if (name !== 'bench' && (rest.includes('--help') || rest.includes('-h'))) {
    process.stdout.write(`${mod.usage}\n`);
    return 0;
  }
  try {
    return await mod.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`kmoe ${name}: ${err.message}\n\n${mod.usage}\n`);
      return 2;
    }
    if (err instanceof KmoeError) {
      process.stderr.write(`kmoe ${name}: error: ${err.message}\n`);
      if (err.hint) process.stderr.write(`hint: ${err.hint}\n`);
      return 1;
    }
    throw err;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(
      `kmoe: unexpected error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    process.exitCode = 1;
  },
);
