// The cluster token between real `kmoe worker` processes and the coordinator over real loopback
// sockets: the same token works (logits equal to single-process, fp32 wire: 1e-5 relative); a wrong
// or missing token on either side is refused before any work with a message naming the fix, and the
// worker logs the peer (never the token); a captured handshake replayed against either side fails;
// the proofs cover the URL dialled (registered workers: registry/registered-relay.test.ts), and say
// whether the worker is bound to it, which a coordinator taking URLs from a registry requires;
// a silent peer is cut off; the CLI refuses a reachable address without a token unless --insecure.

import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type WebSocket from 'ws';
import { WebSocketServer } from 'ws';
import { HandshakeError } from '../../../coordinator/cluster/errors.js';
import { RemoteExpertBackend } from '../../../coordinator/cluster/remote-expert-backend.js';
import { EngineClient } from '../../../coordinator/engine/engine-client.js';
import { Checkpoint } from '../../../shared/model/checkpoint.js';
import { ClusterSecret, newNonce, randomClusterToken } from '../../../shared/protocol/auth.js';
import {
  allocDispatchRequest,
  type DecodeLimits,
  decodeMessage,
  encodeChallenge,
  encodeHello,
  encodeProof,
  encodeWelcome,
} from '../../../shared/protocol/codec.js';
import { frameBytes } from '../../../shared/protocol/frame.js';
import type { Message, Welcome } from '../../../shared/protocol/messages.js';
import { PROTOCOL_VERSION } from '../../../shared/protocol/messages.js';
import { runCli } from '../../helpers/cli.js';
import { LoopbackListeners } from '../../helpers/loopback-listeners.js';
import { MODEL_DIR, referenceCases } from '../../helpers/paths.js';
import { scrape } from '../../helpers/prometheus.js';
import { RawPeer } from '../../helpers/raw-peer.js';
import { startWorker, type WorkerProcess } from '../../helpers/worker-process.js';

const TOKEN = randomClusterToken();
const OTHER = randomClusterToken();
const settings = { device: 'cpu' as const, threads: 1, expertWeights: 'fp32' as const };
const limits: DecodeLimits = { maxFrameBytes: 1 << 20, hidden: 256, numExperts: 8, numLayers: 4 };
const MODEL = { numLayers: 4, numExperts: 8, hidden: 256, nativeK: 2 };

/** This process's environment with the cluster token set to `token`, or removed. */
function envWith(token?: string): NodeJS.ProcessEnv {
  const { KMOE_CLUSTER_TOKEN: _unused, ...env } = process.env;
  return token === undefined ? env : { ...env, KMOE_CLUSTER_TOKEN: token };
}

let secured: WorkerProcess;
let open: WorkerProcess;
let fingerprint: string;

beforeAll(async () => {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  fingerprint = ckpt.fingerprint();
  await ckpt.close();
  [secured, open] = await Promise.all([
    startWorker('0-7', [], { env: envWith(TOKEN) }),
    startWorker('0-7', [], { env: envWith() }),
  ]);
});

afterAll(async () => {
  if (secured) expect(await secured.stop()).toBe(0);
  if (open) expect(await open.stop()).toBe(0);
});

/** `fromRegistry`: as kmoe serve --redis connects, which requires a worker bound to the URL. */
function connect(url: string, clusterToken?: string, fromRegistry = false): Promise<RemoteExpertBackend> {
  return RemoteExpertBackend.connect(
    {
      workers: [url],
      wire: 'fp32',
      ...(clusterToken === undefined ? {} : { clusterToken }),
      ...(fromRegistry ? { fromRegistry } : {}),
    },
    { fingerprint, ...MODEL },
  );
}

async function refusal(url: string, clusterToken?: string, fromRegistry = false): Promise<HandshakeError> {
  const err = await connect(url, clusterToken, fromRegistry).then(
    async (b) => {
      await b.close();
      throw new Error('the handshake succeeded');
    },
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(HandshakeError);
  return err as HandshakeError;
}

/** Waits for the worker's stderr to contain a log record matching `pattern` (records arrive async). */
async function logged(w: WorkerProcess, pattern: RegExp): Promise<Record<string, unknown>[]> {
  for (let i = 0; i < 200; i++) {
    const records = w
      .stderr()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((r) => pattern.test(String(r['msg'])));
    if (records.length > 0) return records;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`the worker never logged ${pattern}; stderr:\n${w.stderr()}`);
}

/** Speaks an authenticated handshake by hand; returns the transcript. */
async function handshake(
  secret: ClusterSecret,
  nonce = newNonce(),
): Promise<{ peer: RawPeer; nonce: string; challenge: Message; proof: string; welcome: Message }> {
  const peer = await RawPeer.open(secured.url, limits);
  const url = secured.url;
  peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'test', nonce, url }));
  const challenge = await peer.next();
  expect(challenge.type).toBe('challenge');
  const proof = secret.proof('coordinator', nonce, (challenge as { nonce: string }).nonce, url);
  peer.send(encodeProof({ proof }));
  return { peer, nonce, challenge, proof, welcome: await peer.next() };
}

/**
 * A peer posing as a worker that holds the token: it challenges every hello, then answers the
 * proof with `welcome(nc, nw, url)` (`url`: its own), whatever the proof.
 */
async function fakeTokenWorker(
  welcome: (nc: string, nw: string, url: string) => Uint8Array,
): Promise<{ readonly url: string; close(): Promise<void> }> {
  const fake = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((r) => fake.once('listening', r));
  const url = `ws://127.0.0.1:${(fake.address() as { port: number }).port}`;
  fake.on('connection', (ws: WebSocket) =>
    ws.once('message', (hello) => {
      const { nonce: nc } = decodeMessage(frameBytes(hello as Buffer), limits) as { nonce: string };
      const nw = newNonce();
      ws.send(encodeChallenge({ version: PROTOCOL_VERSION, nonce: nw }));
      ws.once('message', () => ws.send(welcome(nc, nw, url)));
    }),
  );
  return {
    url,
    close: async () => {
      for (const c of fake.clients) c.terminate();
      await new Promise((r) => fake.close(r));
    },
  };
}

/** A welcome of this model's worker holding every expert, as a peer posing as one sends it. */
function fakeWelcome(worker: string, proof?: string, bound?: true): Uint8Array {
  return encodeWelcome({
    version: PROTOCOL_VERSION,
    fingerprint,
    worker,
    experts: [0, 1, 2, 3, 4, 5, 6, 7],
    numLayers: 4,
    numExperts: 8,
    hidden: 256,
    wire: ['fp32'],
    maxFrameBytes: 1 << 20,
    ...(proof === undefined ? {} : { proof }),
    ...(bound === undefined ? {} : { bound }),
  });
}

function expectRefused(m: Message, reason: string, message: RegExp): void {
  expect(m.type).toBe('refuse');
  if (m.type !== 'refuse') return;
  expect(m.reason).toBe(reason);
  expect(m.message).toMatch(message);
}

describe('workers say how they authenticate', () => {
  it('in the ready line and the log', () => {
    expect(secured.auth).toBe('token');
    expect(open.auth).toBe('loopback-only');
    expect(secured.stderr()).toContain('coordinators must prove the cluster token');
    expect(open.stderr()).toMatch(/no cluster token: listening on loopback \(127\.0\.0\.1\) only/);
    expect(secured.stderr()).not.toContain(TOKEN);
  });
});

describe('the same token on both sides', () => {
  it('computes the single-process logits (fp32 wire, 1e-5 relative)', async () => {
    const [local, remote] = await Promise.all([
      EngineClient.start({ modelDir: MODEL_DIR, settings }),
      EngineClient.start({
        modelDir: MODEL_DIR,
        settings,
        experts: { kind: 'remote', workers: [secured.url], wireDtype: 'fp32', clusterToken: TOKEN },
      }),
    ]);
    try {
      const c = referenceCases()[0]!;
      const step = [{ seqId: 's', tokens: c.ids.slice(0, 24) }];
      const [a, b] = [await local.step(step), await remote.step(step)];
      let diff = 0;
      let scale = 0;
      for (let i = 0; i < a.logits.length; i++) {
        diff = Math.max(diff, Math.abs(a.logits[i]! - b.logits[i]!));
        scale = Math.max(scale, Math.abs(a.logits[i]!));
      }
      expect(b.logits.length).toBe(a.logits.length);
      expect(diff / scale).toBeLessThan(1e-5);
    } finally {
      await Promise.all([local.close(), remote.close()]);
    }
    const [accepted] = await logged(secured, /^accepted coordinator$/);
    expect(accepted).toMatchObject({ authenticated: true });
  });
});

describe('a token that does not match is refused before any work', () => {
  it('a wrong token: refused, and the worker logs the peer and the reason, never a token', async () => {
    const err = await refusal(secured.url, OTHER);
    expect(err.message).toMatch(
      /refused this coordinator \(auth\): wrong proof of the cluster token: the coordinator and this worker have different tokens/,
    );
    expect(err.details).toMatchObject({ reason: 'auth', worker: secured.url });
    expect(err.hint).toMatch(/same cluster token \(KMOE_CLUSTER_TOKEN or --cluster-token-file\)/);
    const [record] = await logged(secured, /wrong proof of the cluster token/);
    expect(record).toMatchObject({ level: 40, reason: 'auth' });
    expect(String(record!['peer'])).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(secured.stderr()).not.toContain(OTHER);
    expect(secured.stderr()).not.toContain(TOKEN);
    const metrics = await scrape(`${secured.url.replace('ws://', 'http://')}/metrics`);
    expect(metrics('kmoe_worker_handshakes_refused_total{reason="auth"}')).toBeGreaterThanOrEqual(1);
    expect(metrics('kmoe_worker_handshakes_refused_total{reason="model"}')).toBe(0);
  });

  it('no token against a worker that requires one', async () => {
    const err = await refusal(secured.url);
    expect(err.message).toMatch(
      /refused this coordinator \(auth\): this worker requires the cluster token and the coordinator has none/,
    );
    await logged(secured, /requires the cluster token and the coordinator has none/);
  });

  it('a token against a worker without one', async () => {
    const err = await refusal(open.url, TOKEN);
    expect(err.message).toMatch(
      /refused this coordinator \(auth\): the coordinator authenticates with a cluster token and this worker has none: start the worker with the same token/,
    );
  });

  it('a dispatch instead of the proof is refused, not computed', async () => {
    const peer = await RawPeer.open(secured.url, limits);
    peer.send(
      encodeHello({
        version: PROTOCOL_VERSION,
        fingerprint,
        client: 'test',
        nonce: newNonce(),
        url: secured.url,
      }),
    );
    expect((await peer.next()).type).toBe('challenge');
    const f = allocDispatchRequest({
      id: 1,
      layer: 0,
      wire: 'fp32',
      numTokens: 1,
      numPairs: 1,
      // A wrong hidden size: validating it would tell the peer the model's (256).
      hidden: 64,
      index: 'uint8',
    });
    f.offsets.set([0, 1]);
    f.weights.set([1]);
    peer.send(f.bytes);
    const refused = await peer.next();
    expectRefused(refused, 'auth', /^expected the proof of the cluster token$/);
    expect((await peer.closed).code).toBe(1008);
  });
});

describe('a captured handshake replayed', () => {
  it('fails against the worker: its nonce is new, so the old proof is wrong', async () => {
    const secret = new ClusterSecret(TOKEN);
    const first = await handshake(secret);
    expect(first.welcome.type).toBe('welcome');
    first.peer.close();
    // The attacker has the whole transcript but not the token: same hello, old proof.
    const peer = await RawPeer.open(secured.url, limits);
    peer.send(
      encodeHello({
        version: PROTOCOL_VERSION,
        fingerprint,
        client: 'test',
        nonce: first.nonce,
        url: secured.url,
      }),
    );
    const challenge = await peer.next();
    expect(challenge.type).toBe('challenge');
    expect((challenge as { nonce: string }).nonce).not.toBe((first.challenge as { nonce: string }).nonce);
    peer.send(encodeProof({ proof: first.proof }));
    expectRefused(await peer.next(), 'auth', /wrong proof of the cluster token/);
    expect((await peer.closed).code).toBe(1008);
  });

  it("fails against the coordinator: an impostor replaying a real worker's challenge and welcome", async () => {
    const first = await handshake(new ClusterSecret(TOKEN));
    first.peer.close();
    const { type: _t, ...welcome } = first.welcome as Welcome;
    expect(welcome.proof).toMatch(/^[0-9a-f]{64}$/);
    const impostor = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => impostor.once('listening', r));
    impostor.on('connection', (ws: WebSocket) => {
      ws.once('message', () => {
        ws.send(
          encodeChallenge({ version: PROTOCOL_VERSION, nonce: (first.challenge as { nonce: string }).nonce }),
        );
        ws.once('message', () => ws.send(encodeWelcome(welcome)));
      });
    });
    try {
      const url = `ws://127.0.0.1:${(impostor.address() as { port: number }).port}`;
      const err = await refusal(url, TOKEN);
      expect(err.message).toMatch(/sent a wrong proof of the cluster token/);
      expect(err.details).toMatchObject({ reason: 'auth' });
    } finally {
      for (const c of impostor.clients) c.terminate();
      await new Promise((r) => impostor.close(r));
    }
  });

  it('a worker that welcomes without proving the token is not believed', async () => {
    const fake = new WebSocketServer({ host: '127.0.0.1', port: 0 });
    await new Promise((r) => fake.once('listening', r));
    fake.on('connection', (ws: WebSocket) => ws.once('message', () => ws.send(fakeWelcome('impostor'))));
    try {
      const err = await refusal(`ws://127.0.0.1:${(fake.address() as { port: number }).port}`, TOKEN);
      expect(err.message).toMatch(/welcomed this coordinator without proving the cluster token/);
    } finally {
      for (const c of fake.clients) c.terminate();
      await new Promise((r) => fake.close(r));
    }
  });
});

describe('the URL dialled', () => {
  it("a worker with no registered URL proves on the one the coordinator dialled, a relay's too", async () => {
    // A fixed --workers list may reach a worker by names it cannot know (NAT, DNS, a proxy), so
    // only a registered worker binds; a relay here was typed in by the operator.
    const listeners = new LoopbackListeners();
    try {
      const relay = await listeners.forward(0, Number(new URL(secured.url).port));
      const relayUrl = `ws://127.0.0.1:${(relay.address() as { port: number }).port}`;
      const backend = await connect(relayUrl, TOKEN);
      await backend.close();
      const accepted = await logged(secured, /^accepted coordinator$/);
      expect(accepted.map((r) => r['dialled'])).toContain(`${relayUrl}/`);
    } finally {
      await listeners.close();
    }
  });

  it("the coordinator checks the worker's proof for the URL it dialled", async () => {
    // A peer holding the token that proves for another URL (as the worker behind a relay would).
    const secret = new ClusterSecret(TOKEN);
    const fake = await fakeTokenWorker((nc, nw) =>
      fakeWelcome('elsewhere', secret.proof('worker', nc, nw, secured.url)),
    );
    try {
      const err = await refusal(fake.url, TOKEN);
      expect(err.message).toMatch(
        /sent a wrong proof of the cluster token: .*or it proved for another URL than ws:\/\/127\.0\.0\.1:\d+\//,
      );
      expect(err.details).toMatchObject({ reason: 'auth' });
    } finally {
      await fake.close();
    }
  });

  it('a coordinator taking the URL from a registry refuses a token worker not registered under it', async () => {
    // What kmoe serve --redis dials: a record's URL. This worker has no registry record, so it
    // proves on any URL it is reached by; a record of a relay to it would look just like this.
    const err = await refusal(secured.url, TOKEN, true);
    expect(err.message).toContain(
      `worker ${secured.url}: proved the cluster token for ${secured.url}/, but the worker is not registered under that URL`,
    );
    expect(err.details).toMatchObject({ reason: 'url' });
  });

  it("a welcome saying `bound` over an unbound worker's proof is not believed", async () => {
    // A relay adding the flag on the way: the worker proved as the unbound role.
    const secret = new ClusterSecret(TOKEN);
    const fake = await fakeTokenWorker((nc, nw, url) =>
      fakeWelcome('unbound', secret.proof('worker', nc, nw, url), true),
    );
    try {
      const err = await refusal(fake.url, TOKEN);
      expect(err.message).toMatch(/sent a wrong proof of the cluster token/);
      expect(err.details).toMatchObject({ reason: 'auth' });
    } finally {
      await fake.close();
    }
  });

  it('an authenticating hello that names no URL is refused', async () => {
    const peer = await RawPeer.open(secured.url, limits);
    peer.send(encodeHello({ version: PROTOCOL_VERSION, fingerprint, client: 'test', nonce: newNonce() }));
    expectRefused(await peer.next(), 'bad-hello', /the hello names no URL/);
    expect((await peer.closed).code).toBe(1008);
  });
});

describe('the handshake is bounded', () => {
  it('a peer that never proves the token is refused after 10 s', async () => {
    const peer = await RawPeer.open(secured.url, limits);
    peer.send(
      encodeHello({
        version: PROTOCOL_VERSION,
        fingerprint,
        client: 'slow',
        nonce: newNonce(),
        url: secured.url,
      }),
    );
    expect((await peer.next()).type).toBe('challenge');
    expectRefused(await peer.next(20_000), 'auth', /no proof of the cluster token within 10000 ms/);
    expect((await peer.closed).code).toBe(1008);
  }, 30_000);
});

describe('the CLI', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'kmoe-auth-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a reachable address without a token, a short token, and two token sources (exit 2)', async () => {
    const tokenFile = path.join(dir, 'token');
    await writeFile(tokenFile, `${TOKEN}\n`);
    const worker = ['worker', '--model', MODEL_DIR, '--experts', '0-1', '--port', '0'];
    const [open, cluster, short, both, insecureWithToken] = await Promise.all([
      runCli([...worker, '--host', '0.0.0.0'], { env: envWith() }),
      runCli(['local-cluster', '--model', MODEL_DIR, '--workers', '2', '--host', '0.0.0.0'], {
        env: envWith(),
      }),
      runCli(worker, { env: envWith('too-short') }),
      runCli([...worker, '--cluster-token-file', tokenFile], { env: envWith(TOKEN) }),
      runCli([...worker, '--insecure'], { env: envWith(TOKEN) }),
    ]);
    for (const r of [open, cluster, short, both, insecureWithToken]) {
      expect(r.code, r.stderr).toBe(2);
      expect(r.stderr).not.toContain(TOKEN);
    }
    expect(open.stderr).toMatch(
      /kmoe worker: error: --host 0\.0\.0\.0 accepts other hosts, and without a cluster token anyone who can reach the port could submit work: set KMOE_CLUSTER_TOKEN or --cluster-token-file .*or add --insecure/,
    );
    expect(cluster.stderr).toMatch(/kmoe local-cluster: error: --host 0\.0\.0\.0 accepts other hosts/);
    expect(short.stderr).toMatch(
      /KMOE_CLUSTER_TOKEN: the cluster token has 9 characters; it needs at least 16/,
    );
    expect(both.stderr).toMatch(/both KMOE_CLUSTER_TOKEN and --cluster-token-file are set/);
    expect(insecureWithToken.stderr).toMatch(
      /--insecure turns authentication off, but a cluster token is set/,
    );
  });

  it('--insecure starts on a reachable address, loudly', async () => {
    const w = await startWorker('0-1', ['--host', '0.0.0.0', '--insecure'], { env: envWith() });
    try {
      expect(w.auth).toBe('insecure');
      const warning = w
        .stderr()
        .split('\n')
        .find((l) => l.includes('INSECURE'));
      expect(JSON.parse(warning!)).toMatchObject({ level: 40 });
      expect(warning).toMatch(
        /no cluster token and listening on 0\.0\.0\.0 \(--insecure\): anyone who can reach this port can submit work/,
      );
    } finally {
      expect(await w.stop()).toBe(0);
    }
  });

  it('a worker started with --cluster-token-file accepts the coordinator holding the token', async () => {
    const tokenFile = path.join(dir, 'token-file');
    await writeFile(tokenFile, `${TOKEN}\n`);
    const w = await startWorker('0-7', ['--cluster-token-file', tokenFile], { env: envWith() });
    try {
      expect(w.auth).toBe('token');
      const backend = await connect(w.url, TOKEN);
      expect(backend.placement.workers.map((p) => p.url)).toEqual([w.url]);
      await backend.close();
    } finally {
      expect(await w.stop()).toBe(0);
    }
  });
});
