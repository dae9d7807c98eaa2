/**
 * Client sessions (thesis §6.3) on real peers: a command delivered again under its session is
 * applied once (and an idempotent one as often as it comes); the session table is the same on
 * every peer, survives restarts of the whole cluster, and reaches a new peer in its snapshot;
 * a session expires at the same entry on every peer; an op in doubt when its session expired
 * fails with SessionExpiredError and is never applied, while a fresh op opens a new session;
 * data written before client sessions still loads.
 *
 * The state machine is the counting kv (src/testing/counting-kv.ts): it counts applications
 * per command `opId`, so a double application shows as a count of 2.
 */
import { expect } from 'chai';
import path from 'node:path';
import { nemesis, op, query, setConfig, status, type NodeOptions, type NodeStatus } from '../src/api/index.js';
import { SessionExpiredError } from '../src/errors.js';
import { LmdbLogStore } from '../src/log/lmdb-store.js';
import { codec, encodeCommand, encodeLogCommand } from '../src/codec.js';
import { type Entry, type LogCommand } from '../src/messages.js';
import { KvStateMachine } from '../src/state-machines/kv.js';
import { COUNTING_KV_MODULE } from '../src/testing/counting-kv.js';
import { realCluster, stopAll, waitFor, waitForConfig, waitForConverged, waitForLeader } from './helpers/cluster.js';

const COUNTING: Partial<NodeOptions> = { stateMachine: { module: COUNTING_KV_MODULE } };
const PEERS = ['a', 'b', 'c'];

/** Client-port op ids of the raw deliveries below: far from the API's own (which count from 1). */
let rawOpId = 1_000_000_000;

/**
 * Deliver a log command to `id`'s consensus actor as the API would, but bypassing it (the
 * answer is dropped): the same bytes delivered twice are what a retry looks like to the cluster.
 */
async function deliver(id: string, command: LogCommand): Promise<void> {
  const message = { type: 'ops', ops: [{ id: rawOpId++, command: encodeLogCommand(command) }] };
  await nemesis.garbage(id, 'client', codec.encode(message));
}

/** How often each peer applied the command `opId` (0 when never). */
async function applications(ids: string[], opId: string): Promise<number[]> {
  return Promise.all(
    ids.map(async (id) => {
      const counts = (await query(id, { type: 'applications' })) as [string, number][];
      return counts.find(([k]) => k === opId)?.[1] ?? 0;
    }),
  );
}

/** Wait for `ids` to converge (same applied log) and return their session tables' status. */
async function convergedSessions(ids: string[], atLeast = 0): Promise<NodeStatus['sessions'][]> {
  const statuses = await waitForConverged(ids, atLeast);
  return statuses.map((s) => s.sessions);
}

function expectAllEqual<T>(values: T[], what: string): void {
  for (const v of values.slice(1)) expect(v, what).to.deep.equal(values[0]);
}

describe('client sessions on real peers (thesis §6.3)', function () {
  this.timeout(90_000);
  const fixture = realCluster();

  async function cluster(extra: Partial<NodeOptions> = {}): Promise<string> {
    return (await fixture.startCluster(PEERS, { ...COUNTING, ...extra })).leader;
  }

  it('a command delivered three times under its session is applied once; an idempotent one three times', async () => {
    const leader = await cluster();
    await deliver(leader, { type: 'register', client: 'raw', timeoutMs: 60_000 });
    const once = { type: 'set', key: 'k', value: 1, opId: 'once' };
    const idem = { type: 'set', key: 'k', value: 2, opId: 'idem' };
    for (let i = 0; i < 3; i++) {
      await deliver(leader, { type: 'op', client: 'raw', seq: 1, ack: 1, command: once });
      await deliver(leader, { type: 'idempotent', command: idem });
    }
    await convergedSessions(PEERS);
    await waitFor('every delivery applied', async () => ((await applications(PEERS, 'idem')).every((n) => n === 3) ? true : undefined));
    expect(await applications(PEERS, 'once')).to.deep.equal([1, 1, 1]);

    // Through the API: each op applied once, and the session shows in status.
    for (let i = 0; i < 5; i++) await op('b', { type: 'set', key: 'k', value: i, opId: `api-${i}` });
    const sessions = await convergedSessions(PEERS);
    expectAllEqual(sessions, 'the session tables');
    expect(sessions[0]!.active).to.equal(2); // 'raw' and b's
    for (let i = 0; i < 5; i++) expect(await applications(PEERS, `api-${i}`)).to.deep.equal([1, 1, 1]);
    const b = await status('b');
    expect(b.client.session).to.be.a('string');
    expect(b.client.opened).to.equal(1);
  });

  it('a command of an unknown session is refused, never applied', async () => {
    const leader = await cluster();
    await deliver(leader, { type: 'op', client: 'never-opened', seq: 1, ack: 1, command: { type: 'set', key: 'k', value: 1, opId: 'ghost' } });
    await op(leader, { type: 'set', key: 'k', value: 2, opId: 'after' });
    await convergedSessions(PEERS);
    expect(await applications(PEERS, 'ghost')).to.deep.equal([0, 0, 0]);
    expect(await applications(PEERS, 'after')).to.deep.equal([1, 1, 1]);
  });

  it('the table survives a restart of the whole cluster from snapshots, and reaches a new peer by InstallSnapshot', async () => {
    const leader = await cluster({ snapshotThreshold: 10 });
    await deliver(leader, { type: 'register', client: 'raw', timeoutMs: 3_600_000 });
    const kept = { type: 'set', key: 'kept', value: 'v', opId: 'kept' };
    // ack 1: the client still waits for seq 1, so its result stays in the table.
    await deliver(leader, { type: 'op', client: 'raw', seq: 1, ack: 1, command: kept });
    for (let i = 0; i < 40; i++) await op(leader, { type: 'set', key: `k${i % 4}`, value: i, opId: `w${i}` });
    const before = await waitForConverged(PEERS);
    for (const s of before) expect(s.snapshotIndex, `${s.id} compacted past the session's command`).to.be.greaterThan(3);
    expectAllEqual(before.map((s) => s.sessions), 'the session tables');

    // The whole cluster restarts: each peer restores the table from its snapshot.
    const lastIndex = Math.max(...before.map((s) => s.lastIndex));
    await stopAll();
    await fixture.startPeers(PEERS, { ...COUNTING, snapshotThreshold: 10 });
    const next = (await waitForLeader(PEERS)).leader;
    const after = await waitForConverged(PEERS, lastIndex + 1);
    // The new leader's no-op carries no time and changes no session.
    expect(after[0]!.sessions.digest, 'the restored table').to.equal(before[0]!.sessions.digest);
    await deliver(next, { type: 'op', client: 'raw', seq: 1, ack: 1, command: kept });
    await op(next, { type: 'set', key: 'k', value: 'after restart', opId: 'after' });
    await convergedSessions(PEERS);
    expect(await applications(PEERS, 'kept'), 'the duplicate after the restart').to.deep.equal([1, 1, 1]);

    // A new peer catches up by InstallSnapshot: the table comes with it.
    await fixture.startPeers(['d'], { ...COUNTING, snapshotThreshold: 10 });
    await setConfig(next, [...PEERS, 'd']);
    await waitForConfig([...PEERS, 'd'], [...PEERS, 'd']);
    await op(next, { type: 'set', key: 'k', value: 'with d', opId: 'with-d' });
    const all = await waitForConverged([...PEERS, 'd']);
    expect(all.find((s) => s.id === 'd')!.snapshotIndex, 'd was sent a snapshot').to.be.greaterThan(0);
    expectAllEqual(all.map((s) => s.sessions), 'the session tables, d included');
    await deliver(next, { type: 'op', client: 'raw', seq: 1, ack: 1, command: kept });
    await op(next, { type: 'set', key: 'k', value: 'last', opId: 'last' });
    await convergedSessions([...PEERS, 'd']);
    expect(await applications([...PEERS, 'd'], 'kept')).to.deep.equal([1, 1, 1, 1]);
  });

  it('a data directory written before client sessions (plain commands, a bare kv snapshot) still loads', async () => {
    // What a peer of the earlier format left: its entries hold the user's command itself, and
    // its snapshot the kv's bytes alone.
    const set = (index: number, key: string, value: number): Entry => ({ type: 'command', index, term: 1, data: encodeCommand({ type: 'set', key, value }) });
    const kv = new KvStateMachine();
    kv.apply({ type: 'set', key: 'x', value: 1 });
    kv.apply({ type: 'set', key: 'y', value: 2 });
    const data = kv.snapshot();
    for (const id of PEERS) {
      const store = await LmdbLogStore.open(path.join(fixture.root, id));
      await store.write({ term: 1, votedFor: 'a', truncateFrom: 0, entries: [{ type: 'config', index: 1, term: 1, peers: PEERS }, set(2, 'x', 1), set(3, 'y', 2), set(4, 'x', 3)] });
      const meta = { index: 3, term: 1, peers: PEERS, old: null, digest: 0, size: data.length };
      await store.write({ term: 1, votedFor: 'a', truncateFrom: 0, entries: [], snapshot: { meta, data, discardLog: false } });
      await store.close();
    }
    await fixture.startPeers(PEERS);
    const leader = (await waitForLeader(PEERS)).leader;
    await op(leader, { type: 'set', key: 'z', value: 4 });
    await waitForConverged(PEERS);
    for (const id of PEERS) {
      const values = await Promise.all(['x', 'y', 'z'].map((key) => query(id, { type: 'get', key })));
      expect(values, id).to.deep.equal([3, 2, 4]);
    }
  });

  it('an op in doubt when its session expired fails with SessionExpiredError and is never applied; sessions expire alike on every peer', async () => {
    // Sessions expire after 100 ms of log time: less than an election takes.
    const leader = await cluster({ sessionTimeoutMs: 100 });
    // Every node opens its session.
    for (const id of PEERS) await op(id, { type: 'set', key: 'k', value: 0, opId: `warm-${id}` });
    const first = (await status(leader)).client.session;

    // The leader is cut off: the op's tries there time out (their outcome unknown), and it is
    // sent again under the same session to the new leader, whose entries are stamped well
    // past the session's last command.
    const others = PEERS.filter((p) => p !== leader);
    await nemesis.partition([[leader], others]);
    let failure: unknown = null;
    try {
      await op(leader, { type: 'set', key: 'k', value: 1, opId: 'doubt' }, { attemptTimeoutMs: 100, timeoutMs: 20_000 });
    } catch (err) {
      failure = err;
    }
    expect(failure, String(failure)).to.be.instanceOf(SessionExpiredError);
    const cutOff = await status(leader);
    expect(cutOff.client.retries, 'the op was tried again').to.be.greaterThan(0);
    expect(cutOff.client.expired).to.equal(1);

    await nemesis.heal();
    const next = (await waitForLeader(PEERS)).leader;
    // A fresh op through the same node opens a new session and is applied.
    await op(leader, { type: 'set', key: 'k', value: 2, opId: 'fresh' });
    const now = await status(leader);
    expect(now.client.session).to.be.a('string').and.not.equal(first);
    expect(now.client.opened).to.equal(2);
    // The idle session of another node expired meanwhile too; its next op is not in doubt,
    // so it goes under a new session without an error.
    const idle = others.find((p) => p !== next) ?? others[0]!;
    await op(idle, { type: 'set', key: 'k', value: 3, opId: 'idle' });
    const reopened = await status(idle);
    expect(reopened.client.expired, 'the idle session expired').to.equal(1);
    expect(reopened.client.opened).to.equal(2);

    const sessions = await convergedSessions(PEERS);
    expectAllEqual(sessions, 'the session tables (expiries included)');
    expect(sessions[0]!.expired, 'sessions expired').to.be.greaterThan(0);
    for (const opId of [...PEERS.map((p) => `warm-${p}`), 'fresh', 'idle']) expect(await applications(PEERS, opId), opId).to.deep.equal([1, 1, 1]);
    expect(await applications(PEERS, 'doubt'), 'the op in doubt').to.deep.equal([0, 0, 0]);
  });
});
