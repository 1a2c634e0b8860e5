// The folder map as a test: data flows one way (model loading -> graphs/sessions -> routing ->
// MoE seam -> cluster -> serving/CLI), so imports between folders must form no cycle, shared/ may
// not reach into the processes built on it, and the worker never imports the coordinator.

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ROOT as repoRoot } from '../helpers/paths.js';

const TOP = ['coordinator', 'worker', 'shared'] as const;

interface ImportEdge {
  readonly from: string; // file, repository-relative
  readonly to: string; // file, repository-relative
}

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) out.push(...sourceFiles(path));
    else if (name.endsWith('.ts')) out.push(path);
  }
  return out;
}

const IMPORT = /(?:import|export)\s[^'"]*?from\s*['"](\.[^'"]+)['"]|import\(\s*['"](\.[^'"]+)['"]\s*\)/g;

function importEdges(): ImportEdge[] {
  const edges: ImportEdge[] = [];
  for (const top of TOP) {
    for (const file of sourceFiles(join(repoRoot, top))) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(IMPORT)) {
        const spec = (m[1] ?? m[2])!;
        const target = resolve(dirname(file), spec).replace(/\.js$/, '.ts');
        edges.push({ from: relative(repoRoot, file), to: relative(repoRoot, target) });
      }
    }
  }
  return edges;
}

/** `coordinator/engine/engine.ts` -> `coordinator/engine`; `coordinator/sampling.ts` -> `coordinator`. */
function folderOf(file: string): string {
  const parts = file.split('/');
  return parts.length > 2 ? `${parts[0]}/${parts[1]}` : parts[0]!;
}

/** Strongly connected components with more than one folder (Tarjan). */
function folderCycles(edges: readonly ImportEdge[]): string[][] {
  const graph = new Map<string, Set<string>>();
  for (const e of edges) {
    const a = folderOf(e.from);
    const b = folderOf(e.to);
    if (a === b) continue;
    if (!graph.has(a)) graph.set(a, new Set());
    if (!graph.has(b)) graph.set(b, new Set());
    graph.get(a)!.add(b);
  }
  let counter = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const components: string[][] = [];
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) === index.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1) components.push(component.sort());
    }
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return components;
}

function crossing(edges: readonly ImportEdge[], fromTop: string, toTop: string): string[] {
  return edges
    .filter((e) => e.from.startsWith(`${fromTop}/`) && e.to.startsWith(`${toTop}/`))
    .map((e) => `${e.from} -> ${e.to}`);
}

describe('folder imports', () => {
  const edges = importEdges();

  it('finds the imports it checks', () => {
    expect(edges.length).toBeGreaterThan(200);
  });

  it('has no import cycle between folders', () => {
    expect(folderCycles(edges)).toEqual([]);
  });

  it('keeps shared/ free of the processes built on it', () => {
    expect(crossing(edges, 'shared', 'coordinator')).toEqual([]);
    expect(crossing(edges, 'shared', 'worker')).toEqual([]);
  });

  it('keeps the worker free of the coordinator', () => {
    expect(crossing(edges, 'worker', 'coordinator')).toEqual([]);
  });

  it('lets the coordinator reach the worker only to register `kmoe worker` in the CLI', () => {
    expect(crossing(edges, 'coordinator', 'worker').filter((e) => !e.startsWith('coordinator/cli/'))).toEqual(
      [],
    );
  });
});
