/**
 * The TCP transport (src/transport/tcp.ts): frames between switchboards, then whole nodes
 * wired over loopback TCP (each with its own listener, all in this process), attacked with raw
 * sockets, stopped and restarted, and behind mutual TLS.
 */
import { expect } from 'chai';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import {
  nemesis,
  op,
  read,
  setConfig,
  startNode,
  status,
  stopNode,
  transportAddress,
  transportStats,
  type NetworkOptions,
  type NodeOptions,
} from '../src/api/index.js';
import { ConfigError } from '../src/errors.js';
import { codec } from '../src/codec.js';
import { type PeerMessage } from '../src/messages.js';
import { TcpSwitchboard, type TcpStats } from '../src/transport/tcp.js';
import { realCluster, TEST_TIMING, waitFor, waitForApplied, waitForLeader } from './helpers/cluster.js';
import { closed, fakeActor, freePorts, fuzzPeerPorts, haveOpenssl, makePki, rawConnect, rawFrame, rawHandshake, vote } from './helpers/net.js';

const never = new Promise<void>(() => undefined);

describe('TCP transport: switchboards', function () {
  this.timeout(30_000);
  const boards: TcpSwitchboard[] = [];
  const actors: ReturnType<typeof fakeActor>[] = [];

  afterEach(async () => {
    await Promise.all(boards.splice(0).map((b) => b.close()));
    for (const a of actors.splice(0)) a.close();
  });

  async function pair(extra: { maxQueuedBytes?: number; maxFrameBytes?: number } = {}) {
    const [pa, pb] = await freePorts(2);
    const a = await TcpSwitchboard.start({ id: 'a', listen: `127.0.0.1:${pa}`, peers: { b: `127.0.0.1:${pb}` }, clusterId: 'c1', ...extra });
    const b = await TcpSwitchboard.start({ id: 'b', listen: `127.0.0.1:${pb}`, peers: { a: `127.0.0.1:${pa}` }, clusterId: 'c1', ...extra });
    boards.push(a, b);
    const actorA = fakeActor();
    const actorB = fakeActor();
    actors.push(actorA, actorB);
    await a.join('a', actorA.connect, never);
    await b.join('b', actorB.connect, never);
    return { a, b, actorA, actorB };
  }

  it('validates its options', async () => {
    const base = { id: 'a', listen: '127.0.0.1:0', peers: { b: '127.0.0.1:1' }, clusterId: 'c' };
    for (const [bad, error] of [
      [{ listen: 'nope' }, TypeError],
      [{ listen: '127.0.0.1:70000' }, RangeError],
      [{ peers: { b: '127.0.0.1:0' } }, RangeError],
      [{ peers: { a: '127.0.0.1:5' } }, RangeError],
      [{ clusterId: '' }, TypeError],
      [{ maxFrameBytes: 0 }, RangeError],
      [{ tls: { ca: 'x', cert: '' } }, TypeError],
    ] as const) {
      let thrown: unknown;
      try {
        await TcpSwitchboard.start({ ...base, ...(bad as object) } as never);
      } catch (err) {
        thrown = err;
      }
      expect(thrown, JSON.stringify(bad)).to.be.instanceOf(error);
    }
    const ok = await TcpSwitchboard.start({ ...base, listen: '[::1]:0' }).catch(() => null);
    if (ok) {
      expect(ok.address()).to.match(/^\[::1\]:\d+$/);
      await ok.close();
    }
  });

  it('carries frames both ways over one connection, lazily connected', async () => {
    const { a, b, actorA, actorB } = await pair();
    expect(a.stats().connects).to.equal(0); // nothing sent yet: nothing dialed
    actorA.send('b', vote('a', 'b'));
    actorB.send('a', vote('b', 'a', 2));
    actorA.send('b', { type: 'bundle', messages: [vote('a', 'b', 3), vote('a', 'b', 4)] });
    await waitFor('frames to arrive', async () => (actorB.received.length >= 2 && actorA.received.length >= 1 ? true : undefined));
    expect(actorB.received.map((r) => r.peer)).to.deep.equal(['a', 'a']);
    expect(actorB.received[0]!.message).to.deep.equal(vote('a', 'b'));
    expect(actorB.received[1]!.message).to.deep.equal({ type: 'bundle', messages: [vote('a', 'b', 3), vote('a', 'b', 4)] });
    expect(actorA.received[0]!.message).to.deep.equal(vote('b', 'a', 2));
    const sa = a.stats();
    const sb = b.stats();
    expect(sa.framesOut).to.equal(2);
    expect(sb.framesIn).to.equal(2);
    expect(sb.framesOut).to.equal(1);
    expect(sa.framesIn).to.equal(1);
    expect(sa.bytesOut).to.be.greaterThan(0);
    expect(sa.badFrames + sb.badFrames + sa.refused + sb.refused).to.equal(0);
    // Both may have dialed at once; they settle on one connection.
    await waitFor('one connection', async () =>
      a.stats().connectedPeers.length === 1 && b.stats().connectedPeers.length === 1 ? true : undefined,
    );
    // Messages keep flowing after the settlement.
    for (let i = 0; i < 20; i++) actorA.send('b', vote('a', 'b', 10 + i));
    await waitFor('more frames', async () => (actorB.received.length >= 22 ? true : undefined));
  });

  it('splits a bundle larger than maxFrameBytes into one frame per message; drops a single oversized message', async () => {
    const { a, actorA, actorB } = await pair({ maxFrameBytes: 2000 });
    const padded = (term: number) => ({ ...vote('a', 'b', term), pad: 'p'.repeat(900) });
    actorA.send('b', { type: 'bundle', messages: [padded(1), padded(2), padded(3)] });
    actorA.send('b', { ...vote('a', 'b', 4), pad: 'p'.repeat(5000) });
    actorA.send('b', vote('a', 'b', 5));
    await waitFor('split frames', async () => (actorB.received.length >= 4 ? true : undefined));
    expect(actorB.received.map((r) => (r.message as PeerMessage).term)).to.deep.equal([1, 2, 3, 5]);
    expect(a.stats().dropped).to.equal(1);
    expect(a.stats().framesOut).to.equal(4);
  });

  it('drops frames beyond maxQueuedBytes while the peer is unreachable, and counts them', async () => {
    const [pa, dead] = await freePorts(2);
    const a = await TcpSwitchboard.start({
      id: 'a',
      listen: `127.0.0.1:${pa}`,
      peers: { b: `127.0.0.1:${dead}` },
      clusterId: 'c1',
      maxQueuedBytes: 1000,
    });
    boards.push(a);
    const actor = fakeActor();
    actors.push(actor);
    await a.join('a', actor.connect, never);
    const big = { ...vote('a', 'b'), pad: 'x'.repeat(300) };
    for (let i = 0; i < 10; i++) actor.send('b', big);
    await waitFor('drops', async () => (a.stats().dropped >= 7 ? true : undefined));
    expect(a.stats().framesOut).to.be.at.most(3);
  });
});

describe('TCP transport: a cluster over loopback', function () {
  this.timeout(120_000);
  const ids = ['n1', 'n2', 'n3'];
  const fixture = realCluster('suite');
  let addresses: Record<string, string>;
  let ghostAddress: string;
  const MAX_FRAME = 1_200_000;

  function networkOf(id: string, clusterId = 'test-cluster'): NetworkOptions {
    const peers: Record<string, string> = {};
    for (const other of ids) if (other !== id) peers[other] = addresses[other]!;
    // n1 also knows a 'ghost' peer that never runs: raw sockets below pose as it.
    if (id === 'n1') peers.ghost = ghostAddress;
    return { listen: addresses[id]!, peers, clusterId, maxFrameBytes: MAX_FRAME };
  }

  function optionsOf(id: string): NodeOptions {
    return { stateMachine: 'kv', dataDir: path.join(fixture.root, id), ...TEST_TIMING, network: networkOf(id) };
  }

  before(async () => {
    const ports = await freePorts(4);
    addresses = Object.fromEntries(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
    ghostAddress = `127.0.0.1:${ports[3]}`;
    await Promise.all(ids.map((id) => startNode(id, optionsOf(id))));
    await setConfig('n1', ids);
    await waitForLeader(ids);
  });

  async function commits(tag: string): Promise<void> {
    for (const via of ids) {
      await op(via, { type: 'set', key: `${tag}-${via}`, value: via });
      expect(await read(via, { type: 'get', key: `${tag}-${via}` })).to.equal(via);
    }
  }

  function stats(id: string): TcpStats {
    const s = transportStats(id);
    if (!s) throw new Error(`no transport stats for ${id}`);
    return s;
  }

  /** A raw socket that completed the handshake with n1 as the configured peer 'ghost'. */
  async function ghostHandshake(): Promise<{ socket: import('node:net').Socket; gone: Promise<void> }> {
    const port = Number(addresses.n1!.split(':')[1]);
    const { socket, gone, welcomed } = await rawHandshake(port, { clusterId: 'test-cluster', from: 'ghost', to: 'n1' });
    expect(welcomed, 'the ghost handshake').to.equal(true);
    return { socket, gone };
  }

  it('elects a leader and commits through op() and read() over TCP', async () => {
    await commits('basic');
    for (const id of ids) {
      const s = stats(id);
      expect(s.framesOut, id).to.be.greaterThan(0);
      expect(s.bytesOut, id).to.be.greaterThan(0);
      expect(transportAddress(id)).to.equal(addresses[id]);
    }
    // Connections are made lazily: the leader talks to every follower (followers need not
    // talk to each other).
    const { leader } = await waitForLeader(ids);
    expect(stats(leader).connectedPeers.sort()).to.deep.equal(ids.filter((p) => p !== leader));
    expect(transportStats('nobody')).to.equal(null);
  });

  it('refuses a node of another cluster, counting it, and keeps committing', async () => {
    const before = stats('n2').refused;
    const [port] = await freePorts(1);
    const intruder = await TcpSwitchboard.start({
      id: 'n1',
      listen: `127.0.0.1:${port}`,
      peers: { n2: addresses.n2! },
      clusterId: 'another-cluster',
    });
    const actor = fakeActor();
    try {
      await intruder.join('n1', actor.connect, never);
      actor.send('n2', vote('n1', 'n2', 1_000_000));
      await waitFor('a refusal', async () => (stats('n2').refused > before ? true : undefined));
      expect(intruder.stats().connects).to.equal(0);
      expect(actor.received).to.have.length(0);
    } finally {
      await intruder.close();
      actor.close();
    }
    // An unknown peer id is refused as well.
    const socket = await rawConnect(Number(addresses.n2!.split(':')[1]));
    const gone = closed(socket);
    socket.write(rawFrame(codec.encode({ hs: 'hello', clusterId: 'test-cluster', from: 'stranger', to: 'n2', nonce: crypto.randomBytes(32) })));
    expect((await gone).length).to.equal(0); // no challenge back
    expect(stats('n2').refused).to.be.at.least(before + 2);
    await commits('after-intruder');
    const s = await status('n2');
    expect(s.term).to.be.lessThan(1_000_000);
  });

  it('closes only the connection that sends garbage, a truncated or an oversized frame', async () => {
    const n1Port = Number(addresses.n1!.split(':')[1]);
    let bad = stats('n1').badFrames;

    // Garbage before any hello: not msgpack at all (0xc1 is never used).
    {
      const socket = await rawConnect(n1Port);
      const gone = closed(socket);
      socket.write(rawFrame(Buffer.from([0xc1, 0xc1, 0xc1])));
      await gone;
      await waitFor('bad frame counted', async () => (stats('n1').badFrames === bad + 1 ? true : undefined));
      bad++;
    }
    // Garbage after a valid hello (posing as the configured 'ghost' peer).
    {
      const { socket, gone } = await ghostHandshake();
      socket.write(rawFrame(Buffer.from([0xc1, 0x00, 0xff, 0x13])));
      await gone;
      await waitFor('bad frame counted', async () => (stats('n1').badFrames === bad + 1 ? true : undefined));
      bad++;
    }
    // Decodable, but not a peer message from that peer.
    {
      const { socket, gone } = await ghostHandshake();
      socket.write(rawFrame(codec.encode(vote('n2', 'n1'))));
      await gone;
      await waitFor('bad frame counted', async () => (stats('n1').badFrames === bad + 1 ? true : undefined));
      bad++;
    }
    // Truncated: the header promises 100 bytes, 10 come, then the connection ends.
    {
      const { socket, gone } = await ghostHandshake();
      socket.end(rawFrame(Buffer.alloc(10, 7), 100));
      await gone;
      await waitFor('bad frame counted', async () => (stats('n1').badFrames === bad + 1 ? true : undefined));
      bad++;
    }
    // Oversized: judged from the header alone.
    {
      const { socket, gone } = await ghostHandshake();
      socket.write(rawFrame(Buffer.alloc(16), MAX_FRAME + 1));
      await gone;
      await waitFor('bad frame counted', async () => (stats('n1').badFrames === bad + 1 ? true : undefined));
      bad++;
    }
    // An oversized hello before the handshake, and a random burst.
    {
      const socket = await rawConnect(n1Port);
      const gone = closed(socket);
      socket.write(rawFrame(Buffer.alloc(8), 1 << 30));
      await gone;
      await waitFor('bad frame counted', async () => (stats('n1').badFrames === bad + 1 ? true : undefined));
      bad++;
    }
    // The real peers' connections were not touched.
    const { leader } = await waitForLeader(ids);
    expect(stats(leader).connectedPeers.sort()).to.deep.equal(ids.filter((p) => p !== leader));
    await commits('after-garbage');
  });

  it('fuzz: seeded random bytes, random frames and oversized headers at the peer port; the cluster stays correct and up', async () => {
    const seed = Number(process.env.TCP_FUZZ_SEED ?? 6);
    const ports = ids.map((id) => Number(addresses[id]!.split(':')[1]));
    await fuzzPeerPorts(ports, { clusterId: 'test-cluster', from: 'ghost', to: 'n1' }, { seed, maxFrameBytes: MAX_FRAME });
    const { leader } = await waitForLeader(ids);
    await waitFor('the real peers connected again', async () =>
      stats(leader).connectedPeers.length === ids.length - 1 ? true : undefined,
    );
    await commits(`after-fuzz-${seed}`);
    const totals = ids.map(stats).reduce((n, s) => n + s.badFrames + s.refused, 0);
    expect(totals, 'the bad connections were counted').to.be.greaterThan(0);
  });

  it('carries values larger than a socket chunk, and bundles larger than a frame', async () => {
    // 8 × 300 kB in one turn: the leader's bundle of appends exceeds MAX_FRAME and is split.
    const big = 'v'.repeat(300_000);
    const badBefore = ids.map((id) => stats(id).badFrames);
    await Promise.all(Array.from({ length: 8 }, (_, i) => op('n2', { type: 'set', key: `big-${i}`, value: `${i}${big}` })));
    const { statuses } = await waitForLeader(ids);
    await waitForApplied(ids, Math.max(...statuses.map((s) => s.commitIndex)));
    for (const id of ids) expect(((await read(id, { type: 'get', key: 'big-7' })) as string).length).to.equal(300_001);
    expect(ids.map((id) => stats(id).badFrames)).to.deep.equal(badBefore);
  });

  it('elects a new leader when the leader node is killed, and the killed node catches up', async () => {
    const { leader } = await waitForLeader(ids);
    await nemesis.kill(leader);
    expect(transportStats(leader)).to.equal(null);
    const rest = ids.filter((id) => id !== leader);
    const next = await waitForLeader(rest);
    expect(next.leader).to.not.equal(leader);
    await op(next.leader, { type: 'set', key: 'after-kill', value: 1 });
    await startNode(leader, optionsOf(leader));
    const all = await waitForLeader(ids);
    await waitForApplied(ids, all.statuses.find((s) => s.role === 'leader')!.commitIndex);
    expect(await read(leader, { type: 'get', key: 'after-kill' })).to.equal(1);
  });

  it('reconnects after a peer node stops and restarts', async () => {
    const { leader } = await waitForLeader(ids);
    const follower = ids.find((id) => id !== leader)!;
    const reconnectsBefore = stats(leader).reconnects;
    await stopNode(follower);
    for (let i = 0; i < 5; i++) await op(leader, { type: 'set', key: `while-down-${i}`, value: i });
    await startNode(follower, optionsOf(follower));
    const { statuses } = await waitForLeader(ids);
    const leaderStatus = statuses.find((s) => s.role === 'leader')!;
    await waitForApplied(ids, leaderStatus.commitIndex);
    expect(await read(follower, { type: 'get', key: 'while-down-4' })).to.equal(4);
    await waitFor('a reconnect', async () => {
      const now = await waitForLeader(ids);
      return stats(now.leader).reconnects > 0 || stats(leader).reconnects > reconnectsBefore ? true : undefined;
    });
    const now = await waitForLeader(ids);
    expect(stats(now.leader).connectedPeers.sort()).to.deep.equal(ids.filter((p) => p !== now.leader));
    await commits('after-restart');
  });
});

describe('TCP transport: membership with remote peers', function () {
  this.timeout(60_000);
  const fixture = realCluster();

  it('validates options.network', async () => {
    const base: NodeOptions = { stateMachine: 'kv', dataDir: path.join(fixture.root, 'v') };
    const cases: [Partial<NetworkOptions>, ErrorConstructor][] = [
      [{ listen: 'localhost', peers: {}, clusterId: 'c' }, TypeError],
      [{ listen: '127.0.0.1:0', peers: { v: '127.0.0.1:7001' }, clusterId: 'c' }, RangeError],
      [{ listen: '127.0.0.1:0', peers: { w: '127.0.0.1' }, clusterId: 'c' }, TypeError],
      [{ listen: '127.0.0.1:0', peers: {}, clusterId: '' }, TypeError],
      [{ listen: '127.0.0.1:0', peers: {}, clusterId: 'c', maxFrameBytes: -1 }, RangeError],
      [{ listen: '127.0.0.1:0', peers: {}, clusterId: 'c', maxFrameBytes: 1 << 20 }, RangeError],
    ];
    for (const [network, error] of cases) {
      let thrown: unknown;
      try {
        await startNode('v', { ...base, network: network as NetworkOptions });
      } catch (err) {
        thrown = err;
      }
      expect(thrown, JSON.stringify(network)).to.be.instanceOf(error);
    }
  });

  it('counts network peers as known: one node bootstraps the full list alone', async () => {
    const [p1, p2, p3] = await freePorts(3);
    await startNode('m1', {
      stateMachine: 'kv',
      dataDir: path.join(fixture.root, 'm1'),
      ...TEST_TIMING,
      network: { listen: `127.0.0.1:${p1}`, peers: { m2: `127.0.0.1:${p2}`, m3: `127.0.0.1:${p3}` }, clusterId: 'c' },
    });
    let refused: unknown;
    try {
      await setConfig('m1', ['m1', 'm2', 'nobody']);
    } catch (err) {
      refused = err;
    }
    expect(refused).to.be.instanceOf(ConfigError);
    await setConfig('m1', ['m1', 'm2', 'm3']);
    const s = await status('m1');
    expect([...s.peers].sort()).to.deep.equal(['m1', 'm2', 'm3']);
    // No quorum yet (the others are not running): dialing them is retried with backoff.
    await new Promise((r) => setTimeout(r, 300));
    expect(transportStats('m1')!.connects).to.equal(0);
  });
});

describe('TCP transport: mutual TLS', function () {
  this.timeout(120_000);
  const ids = ['t1', 't2', 't3'];
  const fixture = realCluster('suite');
  let addresses: Record<string, string>;
  let pki: ReturnType<typeof makePki>;
  let otherPki: ReturnType<typeof makePki>;

  before(async function () {
    if (!haveOpenssl()) {
      console.log('    (skipped: the openssl command is not installed; it makes the test certificates)');
      this.skip();
    }
    pki = makePki(path.join(fixture.root, 'pki'), [...ids, 'client']);
    otherPki = makePki(path.join(fixture.root, 'other-pki'), ['rogue'], 'another CA');
    const ports = await freePorts(4);
    addresses = Object.fromEntries(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
    // t1 also knows a peer 'client' that never runs: a TLS client below poses as it.
    const ghost = `127.0.0.1:${ports[3]}`;
    await Promise.all(
      ids.map((id) =>
        startNode(id, {
          stateMachine: 'kv',
          dataDir: path.join(fixture.root, id),
          ...TEST_TIMING,
          network: {
            listen: addresses[id]!,
            peers: {
              ...Object.fromEntries(ids.filter((p) => p !== id).map((p) => [p, addresses[p]!])),
              ...(id === 't1' ? { client: ghost } : {}),
            },
            clusterId: 'tls-cluster',
            tls: { ca: pki.ca, ...pki.certs[id]! },
          },
        }),
      ),
    );
    await setConfig('t1', ids);
    await waitForLeader(ids);
  });

  /** Try a TLS connection to t1 and a hello; resolves with whether a challenge came back. */
  async function tryTls(options: tls.ConnectionOptions, from = 't2'): Promise<boolean> {
    const port = Number(addresses.t1!.split(':')[1]);
    return new Promise((resolve) => {
      const socket = tls.connect({ host: '127.0.0.1', port, ...options });
      let answered = false;
      socket.on('secureConnect', () => {
        socket.write(rawFrame(codec.encode({ hs: 'hello', clusterId: 'tls-cluster', from, to: 't1', nonce: crypto.randomBytes(32) })));
      });
      socket.on('data', () => {
        answered = true;
        socket.destroy();
      });
      socket.on('error', () => undefined);
      socket.on('close', () => resolve(answered));
    });
  }

  it('commits over TLS between peers', async () => {
    for (const via of ids) {
      await op(via, { type: 'set', key: `tls-${via}`, value: via });
      expect(await read(via, { type: 'get', key: `tls-${via}` })).to.equal(via);
    }
    expect(transportStats('t1')!.connectedPeers.sort()).to.deep.equal(['t2', 't3']);
  });

  it('refuses a client without a valid certificate', async () => {
    const before = transportStats('t1')!.refused;
    const ca = fs.readFileSync(pki.ca);
    // No certificate at all.
    expect(await tryTls({ ca })).to.equal(false);
    // A certificate of another CA.
    expect(
      await tryTls({ ca, cert: fs.readFileSync(otherPki.certs.rogue!.cert), key: fs.readFileSync(otherPki.certs.rogue!.key) }),
    ).to.equal(false);
    // Plain TCP to the TLS port.
    const socket = await rawConnect(Number(addresses.t1!.split(':')[1]));
    const gone = closed(socket);
    socket.write(rawFrame(codec.encode({ hs: 'hello', clusterId: 'tls-cluster', from: 't2', to: 't1', nonce: crypto.randomBytes(32) })));
    await gone;
    await waitFor('refusals counted', async () => (transportStats('t1')!.refused >= before + 3 ? true : undefined));
    // Control: a certificate of the cluster's CA bound to the id claimed does get a challenge
    // back (posing as the configured peer 'client').
    expect(
      await tryTls({ ca, cert: fs.readFileSync(pki.certs.client!.cert), key: fs.readFileSync(pki.certs.client!.key) }, 'client'),
    ).to.equal(true);
    for (const via of ids) await op(via, { type: 'set', key: `tls-after-${via}`, value: 1 });
  });

  it("refuses a valid certificate of another name, counting it (the issue's CN=client taken as a peer)", async () => {
    const before = transportStats('t1')!;
    const ca = fs.readFileSync(pki.ca);
    const client = { ca, cert: fs.readFileSync(pki.certs.client!.cert), key: fs.readFileSync(pki.certs.client!.key) };
    // The certificate of 'client', valid and of the cluster's CA, claiming to be t2.
    expect(await tryTls(client, 't2')).to.equal(false);
    // The certificate of t3 claiming to be t2.
    expect(await tryTls({ ca, cert: fs.readFileSync(pki.certs.t3!.cert), key: fs.readFileSync(pki.certs.t3!.key) }, 't2')).to.equal(false);
    await waitFor('refusals counted', async () => (transportStats('t1')!.authFailures >= before.authFailures + 2 ? true : undefined));
    expect(transportStats('t1')!.refused).to.be.at.least(before.refused + 2);
    for (const via of ids) await op(via, { type: 'set', key: `tls-other-name-${via}`, value: 1 });
  });
});
