// docs/cli.md is what the program prints now: every command's --help at the reference's width, the
// same text as the compiled kmoe prints, on any terminal and machine.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  CLI_REFERENCE_FILE,
  CLI_REFERENCE_WIDTH,
  cliReference,
} from '../../../coordinator/cli/cli-reference.js';
import { runCli } from '../../helpers/cli.js';
import { ROOT } from '../../helpers/paths.js';

const committed = () => readFileSync(`${ROOT}${CLI_REFERENCE_FILE}`, 'utf8');

/** The text block under the heading `## NAME` of the reference. */
function section(reference: string, name: string): string | undefined {
  const escaped = name.replace(/[.*+?^${}()|[\]\\-]/g, '\\$&');
  return new RegExp(`^## ${escaped}\\n\\n\`\`\`text\\n([\\s\\S]*?)\\n\`\`\`$`, 'm').exec(reference)?.[1];
}

describe(CLI_REFERENCE_FILE, () => {
  const reference = cliReference();

  it('is what the program prints now', () => {
    expect(committed(), `${CLI_REFERENCE_FILE} is stale: run \`npm run docs:cli\` and commit it`).toBe(
      reference,
    );
  });

  it('has every command and subcommand, and no hidden one', () => {
    for (const name of [
      'kmoe',
      'kmoe serve',
      'kmoe cluster status',
      'kmoe cluster rebalance',
      'kmoe bench serve',
    ])
      expect(section(reference, name), name).toMatch(/^Usage: /);
    expect(section(reference, 'kmoe bench serve')).toMatch(/^ {2}--concurrency <n,\.\.\.> +.*\(default: /m);
    // bench network's per-namespace helper is hidden from --help, so from the reference too.
    expect(reference).not.toContain('network-cell');
  });

  it.each(['kmoe', 'kmoe bench serve', 'kmoe cluster status', 'kmoe serve'])(
    'holds what `%s --help` prints at the same width',
    async (name) => {
      const r = await runCli([...name.split(' ').slice(1), '--help'], {
        env: { COLUMNS: String(CLI_REFERENCE_WIDTH) },
      });
      expect(r.code).toBe(0);
      expect(section(reference, name)).toBe(r.stdout.trimEnd());
    },
  );

  it('does not depend on the terminal, the machine or where the project is', () => {
    const columns = process.env['COLUMNS'];
    process.env['COLUMNS'] = '50';
    try {
      expect(cliReference()).toBe(reference);
    } finally {
      if (columns === undefined) delete process.env['COLUMNS'];
      else process.env['COLUMNS'] = columns;
    }
    expect(reference).not.toContain(ROOT);
    // --threads defaults to the cores, so its help states the rule, not this machine's count.
    expect(section(reference, 'kmoe serve')).toMatch(
      /--threads <n> +onnxruntime threads .*\(default: cores - 1/,
    );
    for (const line of reference.split('\n').filter((l) => !l.startsWith('- ') && !l.startsWith('  - ')))
      expect(line.length, line).toBeLessThanOrEqual(CLI_REFERENCE_WIDTH);
  });
});
