// A relay registered in the registry under its own URL, forwarding to a real worker (real
// redis-server, a real `kmoe worker` holding the cluster token and registered there, a real
// `kmoe serve --redis` holding it too). Whoever can write to Redis can add such a record without
// the token. Before protocol 4 the proofs covered only the nonces: they crossed the relay unchanged,
// serve joined the relay and sent it hidden states. Now both proofs cover the URL dialled and the
// worker accepts only the URL it registered: the relay is refused, serve names the URL it dialled
// and the worker's log both URLs (the peer, not authenticated yet, is not told the registered one). Also refused: a relay that speaks the protocol and rewrites the hello's URL to the
// worker's (then the coordinator's proof, made for the relay's URL, is wrong); and a relay to a
// token worker outside the registry (a fixed --workers one), which proves on any URL: serve
// requires the worker's proof to say it is registered under the URL dialled.

import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket, { WebSocketServer } from 'ws';
import { HandshakeError } from '../../../../coordinator/cluster/errors.js';
import { RemoteExpertBackend } from '../../../../coordinator/cluster/remote-expert-backend.js';
import { Checkpoint } from '../../../../shared/model/checkpoint.js';
import { newNonce, randomClusterToken } from '../../../../shared/protocol/auth.js';
import { decodeMessage, encodeHello } from '../../../../shared/protocol/codec.js';
import { frameBytes } from '../../../../shared/protocol/frame.js';
import { PROTOCOL_VERSION } from '../../../../shared/protocol/messages.js';
import { greedyCompletion } from '../../../helpers/greedy-completion.js';
import { logLines, until as waitUntil } from '../../../helpers/log-lines.js';
import { LoopbackListeners } from '../../../helpers/loopback-listeners.js';
import { MODEL_DIR } from '../../../helpers/paths.js';
import { restartablePort } from '../../../helpers/ports.js';
import { scrape } from '../../../helpers/prometheus.js';
import { RawPeer } from '../../../helpers/raw-peer.js';
import { type RedisServer, startRedis } from '../../../helpers/redis-server.js';
import { startWorker, type WorkerProcess } from '../../../helpers/worker-process.js';
import { forgeRecordLike } from '../../../helpers/worker-record.js';
import { type ServeProcess, startServe } from '../../server/serve-process.js';

const TOKEN = randomClusterToken();
const limits = { maxFrameBytes: 1 << 20, hidden: 256, numExperts: 8, numLayers: 4 };
const MODEL = { numLayers: 4, numExperts: 8, hidden: 256, nativeK: 2 };

let redis: RedisServer;
let client: Redis;
let worker: WorkerProcess;
let server: ServeProcess;
const listeners = new LoopbackListeners();
const rewriters: WebSocketServer[] = [];

const until = (what: string, check: () => boolean, ms?: number) =>
  waitUntil(what, check, () => server.stderr(), ms);

/**
 * Connects to `url` alone with the token, as a --workers coordinator does: the handshake's error,
 * or undefined once it succeeded (the connection is closed).
 */
async function handshakeError(url: string): Promise<HandshakeError | undefined> {
  const ckpt = await Checkpoint.open(MODEL_DIR);
  const fingerprint = ckpt.fingerprint();
  await ckpt.close();
  return RemoteExpertBackend.connect(
    { workers: [url], wire: 'fp32', clusterToken: TOKEN },
    { fingerprint, ...MODEL },
  ).then(
    async (b) => {
      await b.close();
      return undefined;
    },
    (e: unknown) => e as HandshakeError,
  );
}

/** Registers `url` under `id`, a copy of the real worker's record otherwise. */
const forge = (id: string, url: string) => forgeRecordLike(client, id, url);

/** What serve logged about `url`'s join: the error it failed with, or 'joined'. */
async function joinOutcome(url: string): Promise<string> {
  const outcome = () =>
    logLines(server.stderr()).find(
      (l) =>
        l.worker === url &&
        (l.msg === 'worker joined: routing to it' || l.msg === 'a registered worker could not be connected'),
    );
  await until(`serve to join ${url} or fail to`, () => outcome() !== undefined);
  const l = outcome()!;
  return l.msg === 'worker joined: routing to it' ? 'joined' : l.err!;
}

/**
 * A relay that speaks the protocol: it rewrites the hello's URL to the worker's, so that the
 * worker's URL check passes, and passes everything else on unchanged.
 */
async function rewritingRelay(to: string): Promise<string> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  rewriters.push(wss);
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  wss.on('connection', (down) => {
    const up = new WebSocket(to, { perMessageDeflate: false });
    const early: Uint8Array[] = [];
    up.on('open', () => {
      for (const m of early.splice(0)) up.send(m);
    });
    down.on('message', (data) => {
      let bytes = frameBytes(data as Buffer);
      const msg = decodeMessage(bytes, limits);
      if (msg.type === 'hello') bytes = encodeHello({ ...msg, url: to });
      if (up.readyState === WebSocket.OPEN) up.send(bytes);
      else early.push(new Uint8Array(bytes));
    });
    up.on('message', (data) => down.send(frameBytes(data as Buffer)));
    for (const ws of [down, up]) ws.on('error', () => {});
    down.on('close', () => up.terminate());
    up.on('close', () => down.terminate());
  });
  return `ws://127.0.0.1:${(wss.address() as { port: number }).port}`;
}

beforeAll(async () => {
  redis = await startRedis();
  client = new Redis(redis.url);
  const env = { ...process.env, KMOE_CLUSTER_TOKEN: TOKEN };
  worker = await startWorker('0-7', ['--redis', redis.url], { env });
  server = await startServe(['--redis', redis.url, '--wire', 'fp32'], undefined, env);
});

afterAll(async () => {
  await server?.stop();
  await worker?.stop();
  await listeners.close();
  for (const wss of rewriters) for (const c of wss.clients) c.terminate();
  await Promise.all(rewriters.map((wss) => new Promise((r) => wss.close(r))));
  client?.disconnect();
  await redis?.stop();
});

describe('a relay registered under its own URL (real redis-server, worker, kmoe serve, cluster token)', () => {
  it('is refused, serve naming the URL dialled and the worker both URLs', async () => {
    const baseline = await greedyCompletion(server.url);
    // A TCP forwarder: every byte both ways unchanged; it needs no token.
    const relay = await listeners.forward(0, Number(new URL(worker.url).port));
    const relayUrl = `ws://127.0.0.1:${(relay.address() as { port: number }).port}`;
    await forge('relay', relayUrl);
    const dialled = `${relayUrl}/`;
    const registered = `${worker.url}/`;
    // Before protocol 4: 'joined', and serve split the experts' work between the worker and the relay.
    const refusal = await joinOutcome(relayUrl);
    expect(refusal).toContain(
      `worker ${relayUrl}: refused this coordinator (url): this worker accepts only the URL it registered`,
    );
    expect(refusal).not.toContain(registered);
    const refused = logLines(worker.stderr()).filter((l) => l.reason === 'url');
    expect(refused.length).toBeGreaterThanOrEqual(1);
    expect(refused[0]!.msg).toContain(
      `the coordinator dialled ${dialled}, but this worker is registered as ${registered}`,
    );
    const metrics = await scrape(`${worker.url.replace('ws://', 'http://')}/metrics`);
    expect(metrics('kmoe_worker_handshakes_refused_total{reason="url"}')).toBeGreaterThanOrEqual(1);
    // The worker itself, dialled at its registered URL, still serves: same text as before.
    expect(await greedyCompletion(server.url)).toBe(baseline);
    const accepted = logLines(worker.stderr()).filter((l) => l.msg === 'accepted coordinator');
    expect(accepted.map((l) => l.dialled)).toEqual(accepted.map(() => registered));
  });

  it("that rewrites the URL in the hello to the worker's is refused on the proof", async () => {
    const relayUrl = await rewritingRelay(worker.url);
    await forge('rewriter', relayUrl);
    // The coordinator proved for the relay's URL; the worker checks the proof for its own.
    expect(await joinOutcome(relayUrl)).toMatch(
      /refused this coordinator \(auth\): wrong proof of the cluster token: .*, or its hello was altered on the way/,
    );
  });
});

describe('a relay registered in Redis to a token worker outside the registry', () => {
  it('is not joined: serve requires a worker registered under the URL it dials', async () => {
    // The same token, no --redis: the worker of a fixed --workers list, which proves on whatever
    // URL it is reached by (the documented choice for those lists), the relay's too.
    const env = { ...process.env, KMOE_CLUSTER_TOKEN: TOKEN };
    const unbound = await startWorker('0-7', [], { env });
    try {
      const relay = await listeners.forward(0, Number(new URL(unbound.url).port));
      const relayUrl = `ws://127.0.0.1:${(relay.address() as { port: number }).port}`;
      await forge('relay-to-unbound', relayUrl);
      // Before: 'joined', and serve routed hidden states through the relay (all of them once the
      // registered worker left).
      expect(await joinOutcome(relayUrl)).toContain(
        `worker ${relayUrl}: proved the cluster token for ${relayUrl}/, but the worker is not registered under that URL`,
      );
      // The worker accepted and proved: the refusal is serve's, from the proof's role.
      await until('the worker behind the relay to log the handshake', () =>
        logLines(unbound.stderr()).some(
          (l) => l.msg === 'accepted coordinator' && l.dialled === `${relayUrl}/`,
        ),
      );
    } finally {
      expect(await unbound.stop()).toBe(0);
    }
  });
});

describe('a worker registered with --advertise-url (cluster token)', () => {
  it('accepts that URL in any spelling and refuses another name of itself', async () => {
    const port = await restartablePort();
    const advertised = `ws://127.0.0.1:${port}/kmoe`;
    const env = { ...process.env, KMOE_CLUSTER_TOKEN: TOKEN };
    const w = await startWorker(
      '0-7',
      ['--redis', redis.url, '--port', String(port), '--advertise-url', advertised],
      {
        env,
      },
    );
    try {
      expect(w.stderr()).toContain(`coordinators must dial ${advertised}: the URL this worker registers`);
      // Loopback: another host's coordinator would dial its own 127.0.0.1, where a relay may listen.
      expect(w.stderr()).toContain(`${advertised} is a loopback or unspecified address`);
      // One URL written two ways (scheme in capitals): both sides agree it is the registered one.
      expect(await handshakeError(`WS://127.0.0.1:${port}/kmoe`)).toBeUndefined();
      // The worker's listen URL is another name for it, as a path alias is: neither is registered.
      for (const other of [w.url, `${advertised}/x`]) {
        const err = await handshakeError(other);
        expect(err).toBeInstanceOf(HandshakeError);
        expect(err!.message).toContain(
          `worker ${other}: refused this coordinator (url): this worker accepts only the URL it registered`,
        );
        const logged = `the coordinator dialled ${new URL(other).href}, but this worker is registered as ${advertised}`;
        // The refusal reaches the coordinator before the worker's log line reaches this process.
        await until('the worker to log the refusal', () => w.stderr().includes(logged));
      }
    } finally {
      expect(await w.stop()).toBe(0);
    }
  });

  it('tells a peer only that it accepts its registered URL, however long the URLs', async () => {
    // URLs of 1,400+ characters: the refusal quoted them in full, beyond the refuse message's
    // 4,096 characters, and the coordinator read only "answered the hello with an invalid message".
    const port = await restartablePort();
    const path = `/${'a'.repeat(1400)}`;
    const advertised = `ws://127.0.0.1:${port}${path}`;
    const env = { ...process.env, KMOE_CLUSTER_TOKEN: TOKEN };
    const w = await startWorker(
      '0-7',
      ['--redis', redis.url, '--port', String(port), '--advertise-url', advertised],
      { env },
    );
    try {
      // A peer with no token at all, one hello: it learns nothing of the URL registered.
      const peer = await RawPeer.open(w.url, limits);
      peer.send(
        encodeHello({
          version: PROTOCOL_VERSION,
          fingerprint: 'x',
          client: 'scanner',
          nonce: newNonce(),
          url: 'ws://probe.invalid:1',
        }),
      );
      const answer = await peer.next();
      expect(answer).toEqual({
        type: 'refuse',
        version: PROTOCOL_VERSION,
        reason: 'url',
        message:
          'this worker accepts only the URL it registered, and the coordinator dialled another: a relay, or another name of this worker',
      });
      // The token holder dialling another name of it reads the reason; the worker's log names
      // both URLs, each cut at 300 characters.
      const other = `ws://localhost:${port}${path}`;
      const err = await handshakeError(other);
      expect(err).toBeInstanceOf(HandshakeError);
      expect(err!.message).toContain(
        'refused this coordinator (url): this worker accepts only the URL it registered',
      );
      const quoted = (url: string) => `${url.slice(0, 300)}…`;
      const lineOf = () =>
        logLines(w.stderr()).find((l) => l.reason === 'url' && l.msg.includes('localhost'));
      await until('the worker to log the refusal', () => lineOf() !== undefined);
      const line = lineOf();
      expect(line?.msg).toContain(
        `the coordinator dialled ${quoted(other)}, but this worker is registered as ${quoted(advertised)}:`,
      );
      expect(line!.msg.length).toBeLessThan(1000);
    } finally {
      expect(await w.stop()).toBe(0);
    }
  });
});
