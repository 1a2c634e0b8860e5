// docker-compose.yml, deploy/Dockerfile and .dockerignore checked without a Docker daemon: the
// compose file's shape (CPU limit and matching --threads per container, the API on loopback only
// without a key, the checkpoint mounted
// where --model points, experts covered, workers named by the coordinator) and what the image gets.

import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const root = path.resolve(import.meta.dirname, '../..');
const read = (f: string) => fs.readFileSync(path.join(root, f), 'utf8');

interface Service {
  command: string[];
  cpus?: number;
  ports?: string[];
  volumes?: { type: string; source: string; target: string; read_only?: boolean }[];
  depends_on?: Record<string, { condition: string }>;
  environment?: Record<string, string>;
}

const compose = parse(read('docker-compose.yml'), { merge: true }) as { services: Record<string, Service> };
const services = Object.entries(compose.services);

function flag(s: Service, name: string): string | undefined {
  const i = s.command.indexOf(name);
  return i < 0 ? undefined : s.command[i + 1];
}

describe('docker-compose.yml', () => {
  it('gives every service the cluster token from the environment, required', () => {
    for (const [name, s] of services) {
      // Workers on 0.0.0.0 without a token would exit with a usage error; compose's `:?` stops first.
      expect(s.environment?.['KMOE_CLUSTER_TOKEN'], name).toMatch(/^\$\{KMOE_CLUSTER_TOKEN:\?.+\}$/);
    }
  });

  it('has two workers and a coordinator that waits for them and names them', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['coordinator', 'worker-a', 'worker-b']);
    const coord = compose.services['coordinator']!;
    expect(coord.command[0]).toBe('serve');
    expect(flag(coord, '--workers')).toBe('ws://worker-a:7070,ws://worker-b:7070');
    expect(coord.depends_on).toEqual({
      'worker-a': { condition: 'service_healthy' },
      'worker-b': { condition: 'service_healthy' },
    });
  });

  it('publishes the API on the host only at loopback, Host-checked, unless it requires an API key', () => {
    for (const [name, s] of services) {
      const ports = s.ports ?? [];
      if (flag(s, '--api-key-file') !== undefined) continue;
      for (const p of ports) expect(p, name).toMatch(/^127\.0\.0\.1:/);
    }
    expect(compose.services['coordinator']?.ports).toEqual(['127.0.0.1:8000:8000']);
    // And answers only loopback names and its own: a keyless API needs the DNS rebinding guard.
    const coord = compose.services['coordinator']!;
    if (flag(coord, '--api-key-file') === undefined)
      expect(flag(coord, '--allowed-hosts')).toBe('coordinator');
  });

  it('limits every container to a number of CPUs: workers run as many onnxruntime threads, the coordinator one fewer', () => {
    for (const [name, s] of services) {
      expect(s.cpus, name).toBeGreaterThan(0);
      // The serving coordinator leaves a core to its event loop (kmoe serve's own default).
      const threads = s.command[0] === 'serve' ? Math.max(1, s.cpus! - 1) : s.cpus;
      expect(Number(flag(s, '--threads')), name).toBe(threads);
    }
  });

  it('mounts the checkpoint read-only where --model points, from a directory that holds one', () => {
    for (const [name, s] of services) {
      expect(s.volumes, name).toHaveLength(1);
      const v = s.volumes![0]!;
      expect(v).toMatchObject({ type: 'bind', read_only: true });
      expect(flag(s, '--model'), name).toBe(v.target);
      for (const f of ['config.json', 'tokenizer.json'])
        expect(fs.existsSync(path.join(root, v.source, f)), `${name}: ${v.source}/${f}`).toBe(true);
    }
  });

  it("covers every expert of the mounted model with the workers' --experts ranges", () => {
    const source = compose.services['worker-a']!.volumes![0]!.source;
    const config = JSON.parse(read(path.join(source, 'config.json'))) as { num_local_experts: number };
    const covered: number[] = [];
    for (const [, s] of services) {
      const r = flag(s, '--experts');
      if (r === undefined) continue;
      const [lo, hi] = r.split('-').map(Number);
      for (let e = lo!; e <= hi!; e++) covered.push(e);
    }
    expect(covered.sort((a, b) => a - b)).toEqual([...Array(config.num_local_experts).keys()]);
  });
});

describe('deploy/Dockerfile and .dockerignore', () => {
  const dockerfile = read('deploy/Dockerfile');
  const copies = [...dockerfile.matchAll(/^COPY (\S+) \1$/gm)].map((m) => m[1]);

  it('puts sources, profiles, evaluation data and the demo model in the image', () => {
    expect(copies).toEqual(['coordinator', 'worker', 'shared', 'profiles', 'data', 'models']);
  });

  it('keeps dependencies, builds, git history and benchmark outputs out of the build context', () => {
    const ignored = read('.dockerignore')
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('#'));
    expect(ignored).toEqual(expect.arrayContaining(['node_modules', 'dist', '.git', 'bench-results']));
    for (const c of copies) expect(ignored, c).not.toContain(c);
  });
});
