// Who gets a handshake place (coordinator/cluster/handshake-places.ts): joins and background
// handshakes have separate places, background places go to reconnects (of workers whose last
// connection was up a while) ahead of retries, each kind in arrival order, but a retry first while
// none holds a place; one endpoint has one background handshake open at a time. The places are plain bookkeeping: these tests request, release and
// promote tickets and read which were granted.

import { describe, expect, it } from 'vitest';
import {
  endpointOf,
  type HandshakeKind,
  HandshakePlaces,
  type HandshakeTicket,
  MAX_BACKGROUND_HANDSHAKES,
  MAX_JOIN_HANDSHAKES,
} from '../../../coordinator/cluster/handshake-places.js';

interface Asked {
  readonly name: string;
  readonly ticket: HandshakeTicket;
  outcome: boolean | undefined;
  released: boolean;
  release(): void;
}

function asker(places: HandshakePlaces) {
  const all: Asked[] = [];
  /** `endpoint`: distinct per name unless given (aliases of one host and port share one). */
  const ask = (name: string, kind: HandshakeKind, endpoint = `ws://${name}:1`): Asked => {
    const ticket = places.request(kind, endpoint);
    const a: Asked = {
      name,
      ticket,
      outcome: undefined,
      released: false,
      release() {
        a.released = true;
        ticket.release();
      },
    };
    void a.ticket.granted.then((g) => {
      a.outcome = g;
    });
    all.push(a);
    return a;
  };
  // Grants resolve promises: let them settle before reading who holds a place.
  const held = async () => {
    await new Promise((r) => setImmediate(r));
    return all.filter((a) => a.outcome === true && !a.released).map((a) => a.name);
  };
  return { ask, held, all };
}

describe('HandshakePlaces', () => {
  it('grants 8 joins and, on places of their own, 4 background handshakes at once', async () => {
    expect([MAX_JOIN_HANDSHAKES, MAX_BACKGROUND_HANDSHAKES]).toEqual([8, 4]);
    const { ask, held } = asker(new HandshakePlaces());
    for (let i = 0; i < 30; i++) ask(`retry${i}`, 'retry');
    for (let i = 0; i < 10; i++) ask(`join${i}`, 'join');
    expect(await held()).toEqual([
      ...[0, 1, 2, 3].map((i) => `retry${i}`),
      ...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => `join${i}`),
    ]);
  });

  it('a join arriving behind many waiting retries is granted at once', async () => {
    const { ask, held } = asker(new HandshakePlaces());
    for (let i = 0; i < 40; i++) ask(`retry${i}`, 'retry');
    ask('real', 'join');
    expect(await held()).toContain('real');
  });

  it('a freed background place goes to a waiting reconnect before retries that waited longer, then retries in arrival order', async () => {
    const { ask, held } = asker(new HandshakePlaces(8, 2));
    const first = ask('retry0', 'retry');
    const second = ask('retry1', 'retry');
    ask('retry2', 'retry');
    ask('retry3', 'retry');
    ask('lost-worker', 'reconnect');
    expect(await held()).toEqual(['retry0', 'retry1']);
    first.release();
    expect(await held()).toEqual(['retry1', 'lost-worker']);
    second.release();
    expect(await held()).toEqual(['retry2', 'lost-worker']);
  });

  it('a freed join place goes to the next join, not to a waiting background handshake', async () => {
    const { ask, held } = asker(new HandshakePlaces(1, 1));
    const join = ask('join0', 'join');
    ask('retry0', 'retry');
    ask('retry1', 'retry');
    ask('join1', 'join');
    expect(await held()).toEqual(['join0', 'retry0']);
    join.release();
    expect(await held()).toEqual(['retry0', 'join1']);
  });

  it('a waiting retry promoted to a join takes a join place; a waiting ticket released is told false', async () => {
    const { ask, held } = asker(new HandshakePlaces(2, 1));
    ask('retry0', 'retry');
    const promoted = ask('retry1', 'retry');
    const dropped = ask('retry2', 'retry');
    expect(await held()).toEqual(['retry0']);
    promoted.ticket.promote('join');
    dropped.release();
    expect(await held()).toEqual(['retry0', 'retry1']);
    expect(dropped.outcome).toBe(false);
    // Releasing twice gives back one place: only one more join is granted.
    promoted.release();
    promoted.release();
    ask('join0', 'join');
    ask('join1', 'join');
    ask('join2', 'join');
    expect(await held()).toEqual(['retry0', 'join0', 'join1']);
  });

  it('a withdrawn ticket leaves the queue, but one already handshaking keeps its place until released', async () => {
    const { ask, held } = asker(new HandshakePlaces(1, 1));
    const handshaking = ask('join0', 'join');
    const queued = ask('join1', 'join');
    ask('join2', 'join');
    // What a leave does: the socket of a handshake under way stays open, so its place stays taken.
    handshaking.ticket.withdraw();
    queued.ticket.withdraw();
    expect(await held()).toEqual(['join0']);
    expect(queued.outcome).toBe(false);
    handshaking.release();
    expect(await held()).toEqual(['join2']);
  });

  it('one background handshake per endpoint: aliases of one host and port hold one place, and wait without holding up others; joins do not wait for their endpoint', async () => {
    const { ask, held } = asker(new HandshakePlaces(2, 2));
    const silent = 'ws://10.0.0.9:7000';
    const first = ask('alias0', 'reconnect', silent);
    ask('alias1', 'reconnect', silent);
    ask('real-reconnect', 'reconnect');
    ask('alias-join', 'join', silent);
    ask('real-join', 'join');
    // alias1 waits for alias0's endpoint, and real-reconnect takes the place it would have had.
    expect(await held()).toEqual(['alias0', 'real-reconnect', 'alias-join', 'real-join']);
    first.release();
    // The endpoint still has alias-join's handshake open: alias1 waits on.
    expect(await held()).toEqual(['real-reconnect', 'alias-join', 'real-join']);
  });

  it('while retries wait and none holds a place, the next background place is a retry', async () => {
    const { ask, held } = asker(new HandshakePlaces(8, 2));
    const r0 = ask('reconnect0', 'reconnect');
    ask('reconnect1', 'reconnect');
    ask('retry0', 'retry');
    ask('reconnect2', 'reconnect');
    ask('retry1', 'retry');
    // Asked while places were free: the first two get them in arrival order.
    expect(await held()).toEqual(['reconnect0', 'reconnect1']);
    r0.release();
    // retry0 goes ahead of reconnect2, which waited longer but is one of many reconnects.
    expect(await held()).toEqual(['reconnect1', 'retry0']);
    // With a retry holding a place, reconnects go first again.
    const { ask: ask2, held: held2 } = asker(new HandshakePlaces(8, 3));
    ask2('a', 'reconnect');
    ask2('retry-held', 'retry');
    const c = ask2('c', 'reconnect');
    ask2('retry-waiting', 'retry');
    ask2('d', 'reconnect');
    expect(await held2()).toEqual(['a', 'retry-held', 'c']);
    c.release();
    expect(await held2()).toEqual(['a', 'retry-held', 'd']);
  });

  it('endpointOf: scheme, host and port (the scheme default filled in); path, query and fragment ignored', () => {
    expect(endpointOf('ws://127.0.0.1:9000/h0')).toBe(endpointOf('ws://127.0.0.1:9000/h1?x#y'));
    expect(endpointOf('ws://HOST:80/a')).toBe(endpointOf('ws://host/'));
    expect(endpointOf('ws://127.0.0.1:9000')).not.toBe(endpointOf('ws://127.0.0.1:9001'));
    expect(endpointOf('ws://127.0.0.1:9000')).not.toBe(endpointOf('wss://127.0.0.1:9000'));
    expect(endpointOf('not a url')).toBe('not a url');
  });
});
