// `kmoe bench <what>`: benchmarks that write machine-readable results (JSON) and figures to files.

import { UsageError } from '../../shared/errors/usage-error.js';

interface Benchmark {
  readonly summary: string;
  load(): Promise<{ run(argv: readonly string[]): Promise<number>; usage: string }>;
}

const benchmarks: Record<string, Benchmark> = {
  model: { summary: 'prefill and decode throughput of one process', load: () => import('./bench-model.js') },
  dispatch: {
    summary: 'network bytes per token of expert parallelism, vs native top-K',
    load: () => import('./bench-dispatch.js'),
  },
  serve: { summary: 'load generator against a running kmoe serve', load: () => import('./bench-serve.js') },
  expert: {
    summary: "one real-size expert vs this machine's GEMM peak and bandwidth",
    load: () => import('./bench-expert.js'),
  },
  'adaptive-k': {
    summary: 'calibrate every policy, report on unseen data, draw the frontier',
    load: () => import('./bench-adaptive-k.js'),
  },
};

export const usage = `kmoe bench <benchmark> [options]

${Object.entries(benchmarks)
  .map(([name, b]) => `  ${name.padEnd(10)} ${b.summary}`)
  .join('\n')}

Run 'kmoe bench <benchmark> --help' for its options.`;

export async function run(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  const bench = name === undefined ? undefined : benchmarks[name];
  if (!bench) throw new UsageError(name === undefined ? 'name a benchmark' : `unknown benchmark '${name}'`);
  const mod = await bench.load();
  if (rest.includes('--help')) {
    process.stdout.write(`${mod.usage}\n`);
    return 0;
  }
  return mod.run(rest);
}
