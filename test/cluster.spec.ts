/**
 * Real peers: worker threads, MessagePorts and LMDB, driven through the public API.
 */
import { expect } from 'chai';
import { events, nemesis, op, query, read, setConfig, startNode, status, stopNode } from '../src/api/index.js';
import {
  ConfigError,
  InvalidCommandError,
  NodeExistsError,
  NodeStoppedError,
  UnknownNodeError,
} from '../src/errors.js';
import { codec } from '../src/codec.js';
import { realCluster, setConfigWhenIdle, stopAll, TEST_TIMING, waitFor, waitForApplied, waitForLeader } from './helpers/cluster.js';

describe('a cluster of real peers', function () {
  this.timeout(120_000);
  const fixture = realCluster();

  /** Write `n` keys concurrently through `via`; returns the acknowledged ones. */
  async function writeKeys(via: string, prefix: string, n: number): Promise<Map<string, number>> {
    const acked = new Map<string, number>();
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const key = `${prefix}${i}`;
        await op(via, { type: 'set', key, value: i });
        acked.set(key, i);
      }),
    );
    return acked;
  }

  async function expectKeys(via: string, keys: Map<string, number>): Promise<void> {
    const values = await Promise.all([...keys.keys()].map((key) => op(via, { type: 'get', key })));
    expect(values).to.deep.equal([...keys.values()]);
  }

  for (const size of [3, 5]) {
    it(`${size} peers elect exactly one leader, and ops commit and read back on every peer`, async () => {
      const ids = Array.from({ length: size }, (_, i) => `p${i + 1}`);
      const { leader, statuses } = await fixture.startCluster(ids);
      expect(statuses.filter((s) => s.role === 'leader').map((s) => s.id)).to.deep.equal([leader]);
      expect(new Set(statuses.map((s) => s.term)).size).to.equal(1);
      // A follower may hear the leader's heartbeat before the log that holds the configuration.
      const configured = await waitFor('every peer to hold the configuration', async () => {
        const all = await Promise.all(ids.map((id) => status(id)));
        return all.every((s) => s.peers.length === size) ? all : undefined;
      });
      for (const s of configured) expect([...s.peers].sort()).to.deep.equal([...ids].sort());

      // Every op through every peer: followers redirect to the leader.
      for (const [i, id] of ids.entries()) {
        expect(await op(id, { type: 'set', key: `k${i}`, value: { from: id, n: i } })).to.equal(null);
      }
      for (const [i, id] of ids.entries()) {
        expect(await op(id, { type: 'get', key: `k${i}` })).to.deep.equal({ from: id, n: i });
      }
      expect(await op(ids[1]!, { type: 'delete', key: 'k0' })).to.equal(true);
      expect(await op(ids[1]!, { type: 'delete', key: 'k0' })).to.equal(false);
      expect(await op(ids[2]!, { type: 'cas', key: 'k1', expected: { from: ids[1], n: 1 }, value: 'swapped' })).to.equal(true);
      expect(await op(ids[2]!, { type: 'cas', key: 'k1', expected: 'nope', value: 'x' })).to.equal(false);

      // Every peer's own state machine holds the same state once it applied the last op.
      const leaderStatus = await status(leader);
      const applied = await waitForApplied(ids, leaderStatus.lastApplied);
      // The same log, entry for entry, on every peer.
      expect(new Set(applied.map((s) => `${s.lastApplied}/${s.appliedDigest}`)).size).to.equal(1);
      for (const id of ids) {
        expect(await query(id, { type: 'get', key: 'k1' })).to.equal('swapped');
        expect(await query(id, { type: 'get', key: 'k0' })).to.equal(null);
        expect(await query(id, { type: 'get', key: `k${size - 1}` })).to.deep.equal({ from: ids[size - 1], n: size - 1 });
      }
    });
  }

  it('linearizable reads (ReadIndex) through the leader and through followers see every acknowledged write', async () => {
    const ids = ['a', 'b', 'c'];
    const { leader } = await fixture.startCluster(ids);
    for (let i = 0; i < 20; i++) {
      await op(ids[i % 3]!, { type: 'set', key: 'r', value: i });
      // Right after the write is acknowledged, a read at any peer must see it.
      for (const id of ids) expect(await read(id, { type: 'get', key: 'r' }), `read at ${id}`).to.equal(i);
    }
    // Many concurrent reads share confirmation rounds and all see the last write.
    const values = await Promise.all(Array.from({ length: 300 }, (_, i) => read(ids[i % 3]!, { type: 'get', key: 'r' })));
    expect(new Set(values)).to.deep.equal(new Set([19]));
    expect(await read(leader, { type: 'get', key: 'missing' })).to.equal(null);
    // A read is a query, not a command: a write-shaped one is refused by the kv.
    const err = await read(leader, { type: 'set', key: 'r', value: 1 }).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(InvalidCommandError);
    expect(await read(leader, { type: 'get', key: 'r' })).to.equal(19);
  });

  it('stopping the leader elects a new one with every acknowledged write intact', async () => {
    const ids = ['a', 'b', 'c'];
    const first = await fixture.startCluster(ids);
    const acked = await writeKeys(first.leader, 'before', 200);
    await stopNode(first.leader);
    const rest = ids.filter((id) => id !== first.leader);
    const second = await waitForLeader(rest);
    expect(second.leader).to.not.equal(first.leader);
    expect(second.term).to.be.greaterThan(first.term);
    await expectKeys(rest[0]!, acked);
    // The cluster keeps accepting writes with one peer down.
    const more = await writeKeys(rest[1]!, 'after', 50);
    await expectKeys(rest[0]!, more);
  });

  it('stopping and restarting the whole cluster from LMDB keeps every acknowledged write', async () => {
    const ids = ['a', 'b', 'c'];
    const { leader } = await fixture.startCluster(ids, {}, 'b');
    const acked = await writeKeys(leader, 'key', 300);
    await stopAll();

    await fixture.startPeers(ids);
    const again = await waitForLeader(ids);
    for (const s of again.statuses) expect([...s.peers].sort()).to.deep.equal(ids);
    await expectKeys('c', acked);
    expect(await op('a', { type: 'cas', key: 'key7', expected: 7, value: 'seven' })).to.equal(true);
  });

  it('a crashed consensus actor is restarted by its supervisor and recovers its log', async () => {
    const ids = ['a', 'b', 'c'];
    const { leader } = await fixture.startCluster(ids);
    const acked = await writeKeys(leader, 'x', 100);
    const victim = ids.find((id) => id !== leader)!;
    const before = await status(victim);
    await nemesis.crash(victim, 'consensus');
    const after = await waitFor('the restarted actor', async () => {
      const s = await status(victim);
      return s.restarts.consensus === 1 && s.lastIndex >= before.lastIndex ? s : undefined;
    });
    expect(after.restarts.log).to.equal(0);
    expect(after.term).to.be.at.least(before.term);
    await expectKeys(victim, acked);
    await waitForApplied([victim], (await status(leader)).lastApplied);
    expect(await query(victim, { type: 'get', key: 'x42' })).to.equal(42);
  });

  it('a crashed log actor restarts with its consensus actor (rest_for_one), nothing acknowledged lost', async () => {
    const ids = ['a', 'b', 'c'];
    const { leader } = await fixture.startCluster(ids);
    const acked = await writeKeys(leader, 'y', 100);
    await nemesis.crash(leader, 'log');
    await waitFor('both actors restarted', async () => {
      const s = await status(leader).catch(() => undefined);
      return s && s.restarts.log === 1 && s.restarts.consensus === 1 ? s : undefined;
    });
    await waitForLeader(ids);
    await expectKeys('b', acked);
  });

  it('a peer that keeps crashing is stopped by its supervisor, which reports why; the rest go on', async () => {
    const ids = ['a', 'b', 'c'];
    const { leader } = await fixture.startCluster(ids);
    const victim = ids.find((id) => id !== leader)!;
    await stopNode(victim);
    await startNode(victim, { stateMachine: 'kv', dataDir: `${fixture.root}/${victim}`, ...TEST_TIMING, maxRestarts: 1 });
    const failed = new Promise<{ id: string; reason: string }>((r) => events.once('failed', r));
    await nemesis.crash(victim, 'consensus');
    await waitFor('the first restart', async () => ((await status(victim)).restarts.consensus === 1 ? true : undefined));
    await nemesis.crash(victim, 'consensus');
    const report = await failed;
    expect(report.id).to.equal(victim);
    expect(report.reason).to.match(/consensus died 2 times/);
    const err = await status(victim).catch((e: unknown) => e);
    expect(err).to.be.instanceOf(NodeStoppedError);
    expect((err as Error).message).to.match(/stopped by its supervisor/);
    expect(await op(leader, { type: 'set', key: 'still', value: 'up' })).to.equal(null);
    // startNode brings it back, from its disk.
    await startNode(victim, { stateMachine: 'kv', dataDir: `${fixture.root}/${victim}`, ...TEST_TIMING });
    await waitForApplied([victim], (await status(leader)).lastApplied);
  });

  it('garbage and truncated messages on any port are dropped, counted in status, and harm nothing', async () => {
    const ids = ['a', 'b', 'c'];
    const { leader } = await fixture.startCluster(ids);
    const follower = ids.find((id) => id !== leader)!;
    const valid = codec.encode({
      type: 'appendEntries', term: 99, from: leader, to: follower, prevLogIndex: 0, prevLogTerm: 0, entries: [], leaderCommit: 0,
    });
    const junk = [
      new Uint8Array([0xc1, 0xff, 0x00, 0x13]),
      valid.subarray(0, valid.length - 3), // truncated
      codec.encode({ type: 'appendEntries', term: 'x' }), // msgpack, wrong shape
      codec.encode('just a string'),
    ];
    const before = await status(follower);
    for (const bytes of junk) {
      await nemesis.garbage(leader, follower, bytes); // leader → follower peer port
      await nemesis.garbage(follower, 'log', bytes); // follower consensus → its log actor
      await nemesis.garbage(follower, 'client', bytes); // API → follower client port
    }
    const after = await waitFor('the drops to be counted', async () => {
      const s = await status(follower);
      return s.droppedMessages - before.droppedMessages >= 2 * junk.length && s.logDroppedMessages >= junk.length ? s : undefined;
    });
    expect(after.droppedMessages - before.droppedMessages).to.equal(2 * junk.length);
    expect(after.logDroppedMessages).to.equal(junk.length);
    expect(after.term, 'the garbage term-99 message was never acted on').to.equal(before.term);
    expect(after.restarts).to.deep.equal({ log: 0, consensus: 0 });
    expect(await op(follower, { type: 'set', key: 'after-garbage', value: 1 })).to.equal(null);
    await waitForApplied(ids, (await status(leader)).lastApplied);
    expect(await query(follower, { type: 'get', key: 'after-garbage' })).to.equal(1);
  });

  describe('bad input gets a typed error and harms nothing', () => {
    it('ops, status and stop on unknown or stopped nodes', async () => {
      await fixture.startCluster(['a']);
      let err = await op('zz', { type: 'get', key: 'k' }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(UnknownNodeError);
      await stopNode('a');
      err = await op('a', { type: 'get', key: 'k' }).catch((e: unknown) => e);
      expect(err).to.be.instanceOf(NodeStoppedError);
      err = await status('a').catch((e: unknown) => e);
      expect(err).to.be.instanceOf(NodeStoppedError);
      err = await stopNode('a').catch((e: unknown) => e);
      expect(err).to.be.instanceOf(NodeStoppedError);
    });

    it('startNode twice, bad ids and bad options', async () => {
      await fixture.startPeers(['a']);
      const again = await fixture.startPeers(['a']).catch((e: unknown) => e);
      expect(again).to.be.instanceOf(NodeExistsError);
      expect(await startNode('', { stateMachine: 'kv' }).catch((e: unknown) => e)).to.be.instanceOf(TypeError);
      expect(await startNode('../x', { stateMachine: 'kv' }).catch((e: unknown) => e)).to.be.instanceOf(TypeError);
      expect(await startNode('..', { stateMachine: 'kv' }).catch((e: unknown) => e)).to.be.instanceOf(TypeError);
      expect(
        await startNode('b', { stateMachine: 'nope' as 'kv', dataDir: `${fixture.root}/b` }).catch((e: unknown) => e),
      ).to.be.instanceOf(TypeError);
      const timing = await startNode('b', { stateMachine: 'kv', heartbeatMs: 100, electionTimeoutMs: 150 }).catch(
        (e: unknown) => e,
      );
      expect(timing).to.be.instanceOf(RangeError);
      expect((timing as Error).message).to.match(/electionTimeoutMs/);
    });

    it('setConfig with an empty list, duplicates, unknown ids, or without the callee', async () => {
      const ids = ['a', 'b', 'c'];
      await fixture.startPeers(ids);
      const refusals = await Promise.all([
        setConfig('a', []).catch((e: unknown) => e),
        setConfig('a', ['a', 'b', 'a']).catch((e: unknown) => e),
        setConfig('a', ['a', 'b', 'q']).catch((e: unknown) => e),
        setConfig('a', ['b', 'c']).catch((e: unknown) => e),
      ]);
      for (const r of refusals) expect(r).to.be.instanceOf(ConfigError);
      expect((refusals[2] as Error).message).to.match(/q/);
      // None of it formed a cluster; a valid call still does.
      for (const id of ids) expect((await status(id)).peers).to.deep.equal([]);
      await setConfig('a', ids);
      await waitForLeader(ids);
      await setConfigWhenIdle('b', ['c', 'b', 'a']); // the same configuration again: a no-op
    });

    it('a kv command of the wrong shape is refused alike on every peer and the cluster keeps going', async () => {
      const ids = ['a', 'b', 'c'];
      await fixture.startCluster(ids);
      await op('a', { type: 'set', key: 'k', value: 1 });
      for (const bad of [{ type: 'set', key: 7, value: 1 }, { type: 'explode' }, 'not an object', { type: 'cas', key: 'k' }]) {
        const err = await op('b', bad).catch((e: unknown) => e);
        expect(err, JSON.stringify(bad)).to.be.instanceOf(InvalidCommandError);
      }
      expect(await op('c', { type: 'get', key: 'k' })).to.equal(1);
      const { lastApplied } = await status((await waitForLeader(ids)).leader);
      const statuses = await waitForApplied(ids, lastApplied);
      for (const s of statuses) expect(s.lastApplied).to.equal(lastApplied);
      for (const id of ids) expect(await query(id, { type: 'get', key: 'k' })).to.equal(1);
      // Values msgpack cannot carry stop at the API.
      const fn = await op('a', { type: 'set', key: 'f', value: () => 1 }).catch((e: unknown) => e);
      expect(fn).to.be.instanceOf(TypeError);
    });
  });
});
