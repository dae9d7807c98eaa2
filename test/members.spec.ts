/**
 * Members over the wire (issue 15, items 1 and 2): configuration entries carry the members'
 * addresses, the TCP switchboard follows the configuration in force, and membership commands
 * (addMember, removeMember, listMembers, the HTTP admin routes) work on a networked cluster
 * whose new member is known only by its address. Nodes run in this process, each with its own
 * TCP listener and HTTP server on loopback.
 */
import { expect } from 'chai';
import path from 'node:path';
import {
  addMember,
  listMembers,
  op,
  read,
  removeMember,
  setConfig,
  startNode,
  status,
  stopNode,
  transferLeadership,
  transportPeers,
  transportStats,
  type NodeOptions,
} from '../src/api/index.js';
import { createCore, RaftLog, status as coreStatus } from '../src/core/index.js';
import { ConfigError } from '../src/errors.js';
import { startHttpServer, type HttpServer } from '../src/http/server.js';
import { LmdbLogStore } from '../src/log/lmdb-store.js';
import { codec } from '../src/codec.js';
import { isEntry, isSnapshotMeta, type Entry, type SnapshotMeta } from '../src/messages.js';
import { TcpSwitchboard } from '../src/transport/tcp.js';
import { checkLoad, realCluster, startLoad, tempDir, TEST_TIMING, waitFor, waitForAcks, waitForConfig, waitForLeader } from './helpers/cluster.js';
import { fakeActor, freePorts, vote } from './helpers/net.js';

/** A JSON request; redirects (307 to the leader) are followed. */
async function call(method: string, url: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: any }> {
  const res = await fetch(url, {
    method,
    redirect: 'follow',
    ...(body === undefined ? {} : { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': contentType } }),
  });
  const text = await res.text();
  return { status: res.status, body: text === '' ? null : JSON.parse(text) };
}

describe('members: old data and the codec', function () {
  it('decodes and loads configuration entries and snapshots written without addresses', async () => {
    // The bytes the codec wrote for a config entry before addresses existed: the same shape.
    const old: Entry = { type: 'config', index: 1, term: 1, peers: ['a', 'b', 'c'] };
    const decoded = codec.decode(codec.encode(old));
    expect(isEntry(decoded)).to.equal(true);
    expect(decoded).to.deep.equal(old);
    const oldMeta: SnapshotMeta = { index: 5, term: 2, peers: ['a', 'b'], old: null, digest: 7, size: 0 };
    expect(isSnapshotMeta(codec.decode(codec.encode(oldMeta)))).to.equal(true);
    // A bad address book is refused, as any malformed entry is.
    expect(isEntry({ ...old, addresses: { a: { peer: 7 } } })).to.equal(false);
    expect(isEntry({ ...old, addresses: ['a'] })).to.equal(false);

    // Stored and read back by the log store, old and new side by side.
    const dir = tempDir();
    const withAddresses: Entry = {
      type: 'config',
      index: 2,
      term: 1,
      peers: ['a', 'b', 'd'],
      old: ['a', 'b', 'c'],
      addresses: { a: { peer: '127.0.0.1:7001', http: 'http://127.0.0.1:8001' }, d: { peer: '127.0.0.1:7004' } },
    };
    try {
      let store = await LmdbLogStore.open(dir);
      await store.write({ term: 1, votedFor: 'a', truncateFrom: 1, entries: [old, withAddresses] } as never);
      await store.close();
      store = await LmdbLogStore.open(dir);
      expect(store.entries(1, 2)).to.deep.equal([old, withAddresses]);
      await store.close();
    } finally {
      (await import('node:fs')).rmSync(dir, { recursive: true, force: true });
    }

    // The core loads an old log: no addresses, the members still known.
    const core = createCore({ id: 'a', seed: 1, entries: [old] });
    expect(coreStatus(core).addresses).to.deep.equal({});
    expect([...coreStatus(core).members].sort()).to.deep.equal(['b', 'c']);
    // An old snapshot's configuration has none either; a new one's keeps them.
    expect(new RaftLog([], oldMeta).lastConfig()!.addresses).to.equal(undefined);
    const newMeta: SnapshotMeta = { ...oldMeta, addresses: { b: { peer: '127.0.0.1:7002' } } };
    expect(new RaftLog([], newMeta).lastConfig()!.addresses).to.deep.equal({ b: { peer: '127.0.0.1:7002' } });
  });
});

describe('members: the switchboard follows the configuration', function () {
  this.timeout(30_000);

  it('dials a member it learns from the configuration, takes a hello from a stranger only while blank, drops a removed member', async () => {
    const [pa, pb, pc] = await freePorts(3);
    const [addrA, addrB, addrC] = [pa, pb, pc].map((p) => `127.0.0.1:${p}`);
    // a and c know nobody; b knows a only as a first contact.
    const a = await TcpSwitchboard.start({ id: 'a', listen: addrA!, peers: {}, clusterId: 'k' });
    const b = await TcpSwitchboard.start({ id: 'b', listen: addrB!, peers: { a: addrA! }, clusterId: 'k' });
    const c = await TcpSwitchboard.start({ id: 'c', listen: addrC!, peers: {}, clusterId: 'k' });
    const actors = [fakeActor(), fakeActor(), fakeActor()];
    try {
      const never = new Promise<void>(() => undefined);
      await a.join('a', actors[0]!.connect, never);
      await b.join('b', actors[1]!.connect, never);
      await c.join('c', actors[2]!.connect, never);
      expect(a.peerAddresses()).to.deep.equal({});

      // a learns b and c from its configuration: it gets a port for each and dials them.
      a.follow(true, ['a', 'b', 'c'], { b: { peer: addrB! }, c: { peer: addrC! } });
      expect(a.peerAddresses()).to.deep.equal({ b: addrB, c: addrC });
      expect([...actors[0]!.ports.keys()].sort()).to.deep.equal(['b', 'c']);
      actors[0]!.ports.get('b')!.postMessage(codec.encode(vote('a', 'b')));
      actors[0]!.ports.get('c')!.postMessage(codec.encode(vote('a', 'c')));
      // c is blank: it takes a's hello though it does not know a, and answers on that connection.
      await waitFor('c to hear from a', async () => (actors[2]!.received.length > 0 ? true : undefined));
      expect(c.peerAddresses()).to.deep.equal({ a: null });
      actors[2]!.ports.get('a')!.postMessage(codec.encode(vote('c', 'a')));
      await waitFor('a to hear from c', async () => (actors[0]!.received.some((r) => r.peer === 'c') ? true : undefined));
      await waitFor('b to hear from a', async () => (actors[1]!.received.length > 0 ? true : undefined));

      // c now holds a configuration (a and c): the log gives a's address; b's hello is refused.
      c.follow(true, ['a', 'c'], { a: { peer: addrA! } });
      expect(c.peerAddresses()).to.deep.equal({ a: addrA });
      const refusedBefore = c.stats().refused;
      const stranger = await TcpSwitchboard.start({ id: 'b', listen: '127.0.0.1:0', peers: { c: addrC! }, clusterId: 'k' });
      const strangerActor = fakeActor();
      await stranger.join('b', strangerActor.connect, never);
      strangerActor.ports.get('c')!.postMessage(codec.encode(vote('b', 'c')));
      await waitFor('c to refuse a peer outside its configuration', async () => (c.stats().refused > refusedBefore ? true : undefined));
      strangerActor.close();
      await stranger.close();

      // b leaves a's configuration: a drops its link and port; b's first contact stays.
      a.follow(true, ['a', 'c'], { c: { peer: addrC! } });
      expect(a.peerAddresses()).to.deep.equal({ c: addrC });
      await waitFor('a to close its connection to b', async () => (a.stats().connectedPeers.includes('b') ? undefined : true));
      b.follow(true, ['a', 'b'], {});
      expect(b.peerAddresses()).to.deep.equal({ a: addrA }, 'no address in the log: the first contact is used');
    } finally {
      for (const actor of actors) actor.close();
      await Promise.all([a.close(), b.close(), c.close()]);
    }
  });
});

describe('members: a networked cluster changes its members over the wire', function () {
  this.timeout(180_000);
  const fixture = realCluster();
  const servers: HttpServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  interface Ports {
    peer: Record<string, string>;
    http: Record<string, string>;
  }

  async function ports(ids: string[]): Promise<Ports> {
    const free = await freePorts(ids.length * 2);
    return {
      peer: Object.fromEntries(ids.map((id, i) => [id, `127.0.0.1:${free[2 * i]}`])),
      http: Object.fromEntries(ids.map((id, i) => [id, `http://127.0.0.1:${free[2 * i + 1]}`])),
    };
  }

  /** Start a networked node that knows `contacts` (id → peer address) and serves HTTP. */
  async function startMember(id: string, p: Ports, contacts: Record<string, string>, extra: Partial<NodeOptions> = {}): Promise<void> {
    await startNode(id, {
      stateMachine: 'kv',
      dataDir: path.join(fixture.root, id),
      ...TEST_TIMING,
      ...extra,
      network: { listen: p.peer[id]!, peers: contacts, clusterId: 'members-test', advertiseHttp: p.http[id]! },
    });
    servers.push(await startHttpServer({ node: id, listen: p.http[id]!.replace('http://', '') }));
  }

  /** Stop the HTTP server of `id`. */
  async function closeServer(p: Ports, id: string): Promise<void> {
    const i = servers.findIndex((s) => s.address() === p.http[id]!.replace('http://', ''));
    await servers.splice(i, 1)[0]!.close();
  }

  const others = (p: Ports, id: string, ids: string[]) => Object.fromEntries(ids.filter((x) => x !== id).map((x) => [x, p.peer[x]!]));

  it('grows from 3 to 4 with a blank node known only by its address, removes its leader, and a node restarted with one contact finds everyone', async () => {
    const ids = ['n1', 'n2', 'n3'];
    const p = await ports([...ids, 'n4']);
    for (const id of ids) await startMember(id, p, others(p, id, ids));
    await setConfig('n1', ids);
    const { leader } = await waitForLeader(ids);

    // The bootstrap configuration carries every member's peer address, and n1's HTTP address.
    const view = await listMembers(leader);
    expect(view.members.map((m) => [m.id, m.peer, m.role]).sort()).to.deep.equal(ids.map((id) => [id, p.peer[id], 'voter']));
    expect(view.members.find((m) => m.id === 'n1')!.http).to.equal(p.http.n1);
    expect(view.members.find((m) => m.id === leader)!.leader).to.equal(true);

    // n4 starts blank with no peers at all: it says it waits, in status and over HTTP.
    await startMember('n4', p, {});
    const blank = await status('n4');
    expect(blank.waiting).to.match(/n4 has no configuration and is waiting to be added/);
    expect(blank.waiting).to.include(p.peer.n4!);
    const overHttp = await call('GET', `${p.http.n4}/status`);
    expect(overHttp.body.waiting).to.equal(blank.waiting);
    expect((await status(leader)).waiting).to.equal(null);

    let members = [...ids];
    let turn = 0;
    const load = startLoad(() => members[turn++ % members.length]!, ['k1', 'k2', 'k3']);
    try {
      await waitForAcks(load, 10);
      // Bad requests change nothing.
      expect((await call('POST', `${p.http.n2}/admin/members`, { id: 'n4', peer: p.peer.n4 }, 'text/plain')).status).to.equal(415);
      const badAddress = await call('POST', `${p.http.n2}/admin/members`, { id: 'n4', peer: 'nowhere' });
      expect(badAddress.status).to.equal(400);
      expect(badAddress.body.code).to.equal('BAD_REQUEST');
      expect((await call('PUT', `${p.http.n2}/admin/members`)).status).to.equal(405);

      // Added through a follower's HTTP admin route (it goes to the leader).
      const follower = ids.find((id) => id !== leader)!;
      const added = await call('POST', `${p.http[follower]}/admin/members`, { id: 'n4', peer: p.peer.n4, http: p.http.n4 });
      expect(added.status, JSON.stringify(added.body)).to.equal(200);
      expect(added.body.members.map((m: { id: string }) => m.id)).to.include('n4');
      await waitForConfig(['n1', 'n2', 'n3', 'n4'], ['n1', 'n2', 'n3', 'n4']);
      members = ['n1', 'n2', 'n3', 'n4'];
      // Adding it again changes nothing (idempotent: safe to repeat after a timeout).
      await addMember(leader, 'n4', { peer: p.peer.n4!, http: p.http.n4! });

      // n4 learned everyone's address from the log: its transport dials them, it lists them.
      expect(transportPeers('n4')).to.deep.equal(others(p, 'n4', ['n1', 'n2', 'n3', 'n4']));
      expect((await status('n4')).waiting).to.equal(null);
      const seen = await listMembers('n4');
      expect(seen.members.find((m) => m.id === 'n4')).to.deep.include({ peer: p.peer.n4, http: p.http.n4, role: 'voter' });
      expect(seen.members.find((m) => m.id === 'n2')!.peer).to.equal(p.peer.n2);
      const listed = await call('GET', `${p.http.n4}/admin/members`);
      expect(listed.status).to.equal(200);
      expect(listed.body.members).to.have.length(4);
      await waitForAcks(load, 10);

      // Remove the leader (library call on another member): it steps down once C_new is committed.
      members = ['n1', 'n2', 'n3', 'n4'].filter((id) => id !== leader);
      await removeMember(members[0]!, leader);
      await waitForConfig(members, members);
      const next = await waitForLeader(members);
      expect(next.leader).to.not.equal(leader);
      // Once each knows the removal is committed, it drops its link to the removed leader.
      await waitFor('every member to drop the removed leader', async () =>
        members.every((id) => !Object.keys(transportPeers(id)!).includes(leader)) ? true : undefined,
      );
      // Removing it again changes nothing.
      await removeMember(next.leader, leader);
      await waitForAcks(load, 10);
    } finally {
      const result = await load.stop();
      expect(result.anomalies).to.deep.equal([]);
      await checkLoad(members, result);
    }

    // Leadership cannot go to a stranger.
    const last = await call('POST', `${p.http[members[0]!]}/admin/leader`, { target: 'nobody' });
    expect(last.status).to.equal(409);
    expect(last.body.code).to.equal('TRANSFER_FAILED');

    // The removed leader is stopped; n4 restarts knowing a single contact (another member).
    await stopNode(leader);
    await closeServer(p, leader);
    await closeServer(p, 'n4');
    await stopNode('n4');
    const contact = members.find((id) => id !== 'n4')!;
    await startMember('n4', p, { [contact]: p.peer[contact]! });
    expect(transportPeers('n4')).to.deep.equal(others(p, 'n4', members), 'every member, from its own log');

    // It leads, and reaches every member at the address the log gave it.
    await waitForLeader(members);
    expect(await transferLeadership(contact, 'n4')).to.equal('n4');
    await op('n4', { type: 'set', key: 'after-restart', value: 1 });
    await waitFor('n4 to be connected to every member', async () =>
      members.filter((id) => id !== 'n4').every((id) => transportStats('n4')!.connectedPeers.includes(id)) ? true : undefined,
    );
    for (const id of members) expect(await read(id, { type: 'get', key: 'after-restart' })).to.equal(1);
    const moved = await call('POST', `${p.http.n4}/admin/leader`);
    expect(moved.status, JSON.stringify(moved.body)).to.equal(200);
    expect(members).to.include(moved.body.leader);
  });

  it('a member that cannot be reached is refused after the catch-up timeout, nothing changed; bad changes are refused', async () => {
    const ids = ['m1', 'm2', 'm3'];
    const p = await ports([...ids, 'ghost']);
    for (const id of ids) await startMember(id, p, others(p, id, ids), { catchUpTimeoutMs: 1_000 });
    await setConfig('m1', ids);
    const { leader } = await waitForLeader(ids);
    await op(leader, { type: 'set', key: 'k', value: 'v' });

    // Nothing listens at the ghost's address.
    const refused = await call('POST', `${p.http[leader]}/admin/members`, { id: 'ghost', peer: p.peer.ghost });
    expect(refused.status, JSON.stringify(refused.body)).to.equal(504);
    expect(refused.body).to.deep.include({ code: 'CATCH_UP_TIMEOUT', outcome: 'unchanged' });
    await waitForConfig(ids, ids);
    expect((await listMembers(leader)).members.map((m) => m.id).sort()).to.deep.equal(ids);

    // A networked member needs an address; the last member cannot go.
    let thrown: unknown;
    try {
      await addMember(leader, 'nameless');
    } catch (err) {
      thrown = err;
    }
    expect(thrown).to.be.instanceOf(ConfigError);
    await removeMember(leader, ids.find((id) => id !== leader)!);
    for (const id of ids.filter((x) => x !== leader)) {
      if ((await listMembers(leader)).members.some((m) => m.id === id)) await removeMember(leader, id);
    }
    const lastOne = await call('DELETE', `${p.http[leader]}/admin/members/${leader}`);
    expect(lastOne.status).to.equal(400);
    expect(lastOne.body.code).to.equal('CONFIG_INVALID');
    expect(await read(leader, { type: 'get', key: 'k' })).to.equal('v');
  });
});
