// Every relative link in the repository's markdown resolves on a fresh clone: the file exists
// inside the repository, and a `#fragment` names a heading of the target (GitHub's slug rules).
// Paths written as code (`../../models/tiny-mixtral`) are held to the same rule.

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const root = path.resolve(import.meta.dirname, '../..');

/** Tracked and untracked-but-not-ignored markdown files: what a clone (or the next commit) has. */
function markdownFiles(): string[] {
  const out = execFileSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '*.md'], {
    cwd: root,
    encoding: 'utf8',
  });
  return out
    .split('\n')
    .filter((f) => f !== '' && fs.existsSync(path.join(root, f)))
    .filter((f) => !f.startsWith('node_modules/') && !f.startsWith('dist/'));
}

/** GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens, -1 -2 for repeats. */
function headingSlugs(markdown: string): Set<string> {
  const slugs = new Set<string>();
  const seen = new Map<string, number>();
  for (const line of stripFences(markdown).split('\n')) {
    const m = /^#{1,6}\s+(.+?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = m[1]!
      .replace(/`/g, '')
      .replace(/\[([^\]]*)\]\([^)]*\)/g, '$1')
      .toLowerCase()
      .replace(/[^\p{L}\p{N}\s_-]/gu, '')
      .replace(/\s/g, '-');
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    slugs.add(n === 0 ? base : `${base}-${n}`);
  }
  return slugs;
}

function stripFences(markdown: string): string {
  return markdown.replace(/^(```|~~~)[^\n]*\n[\s\S]*?^\1[^\n]*$/gm, '');
}

/** Fenced code blocks and inline code spans hold examples, not links. */
function stripCode(markdown: string): string {
  return stripFences(markdown).replace(/`[^`\n]*`/g, '');
}

interface Link {
  readonly file: string;
  readonly target: string;
}

function relativeLinks(file: string): Link[] {
  const text = stripCode(fs.readFileSync(path.join(root, file), 'utf8'));
  const targets = [
    ...[...text.matchAll(/!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)/g)].map((m) => m[1]!),
    ...[...text.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/gm)].map((m) => m[1]!),
  ];
  return targets.filter((t) => !/^[a-z][a-z0-9+.-]*:/i.test(t)).map((target) => ({ file, target }));
}

// test/fixtures holds the reference implementation's README verbatim, with paths relative to the
// workspace it was made in; the fixtures are not edited.
const VERBATIM = 'test/fixtures/';

/** Code spans that are relative paths: `./x`, `../x` (a `*` checks the folder holding the glob). */
function codePaths(file: string): Link[] {
  if (file.startsWith(VERBATIM)) return [];
  const text = stripFences(fs.readFileSync(path.join(root, file), 'utf8'));
  return [...text.matchAll(/`(\.\.?\/[^`\s]*)`/g)].map((m) => {
    const target = m[1]!;
    return { file, target: target.includes('*') ? target.slice(0, target.lastIndexOf('/') + 1) : target };
  });
}

function problem({ file, target }: Link): string | undefined {
  const [rawPath, fragment] = target.split('#', 2) as [string, string | undefined];
  const resolved =
    rawPath === ''
      ? path.join(root, file)
      : path.resolve(path.dirname(path.join(root, file)), decodeURI(rawPath));
  if (!resolved.startsWith(root + path.sep)) return 'points outside the repository';
  if (!fs.existsSync(resolved)) return 'no such file';
  if (fragment === undefined || fragment === '' || !resolved.endsWith('.md')) return undefined;
  const slugs = headingSlugs(fs.readFileSync(resolved, 'utf8'));
  return slugs.has(decodeURIComponent(fragment).toLowerCase()) ? undefined : `no heading #${fragment}`;
}

describe('markdown links', () => {
  const files = markdownFiles();

  it('finds the markdown of the repository', () => {
    expect(files).toEqual(expect.arrayContaining(['README.md', 'docs/serving.md', 'data/eval/README.md']));
  });

  it('resolves every relative link to a file in the repository, and every #fragment to a heading', () => {
    const links = files.flatMap(relativeLinks);
    expect(links.length).toBeGreaterThan(5);
    const broken = links.flatMap((l) => {
      const p = problem(l);
      return p === undefined ? [] : [`${l.file}: ${l.target}: ${p}`];
    });
    expect(broken).toEqual([]);
  });

  it('resolves every relative path written as code', () => {
    const paths = files.flatMap(codePaths);
    expect(paths.length).toBeGreaterThan(2);
    const broken = paths.flatMap((l) => {
      const p = problem(l);
      return p === undefined ? [] : [`${l.file}: ${l.target}: ${p}`];
    });
    expect(broken).toEqual([]);
  });

  it('slugs headings the way GitHub does', () => {
    const slugs = headingSlugs(
      '# GPU hosts\n## `kmoe serve` (HTTP)\n```\n# not a heading\n```\n## GPU hosts\n',
    );
    expect([...slugs]).toEqual(['gpu-hosts', 'kmoe-serve-http', 'gpu-hosts-1']);
  });
});
