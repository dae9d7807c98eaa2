/**
 * Snapshots and log compaction (§7) on real peers (worker threads + LMDB): a new peer catching
 * up by a chunked InstallSnapshot, restarts from snapshot + tail, crashes during an install,
 * and a log (and LMDB file) that stays bounded under a steady write load.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import path from 'node:path';
import { nemesis, op, query, read, setConfig, startNode, status, stopNode, type NodeOptions } from '../src/api/index.js';
import { isRaftError } from '../src/errors.js';
import {
  peerDir,
  realCluster,
  sleep,
  stopAll,
  waitFor,
  waitForConfig,
  waitForConverged,
  waitForLeader,
} from './helpers/cluster.js';

const SMALL: Partial<NodeOptions> = { snapshotThreshold: 200, snapshotChunkBytes: 4096 };

describe('snapshots and log compaction on real peers', function () {
  this.timeout(90_000);
  const fixture = realCluster();

  /**
   * Write `rounds` rounds of `keys` keys (concurrently within a round) through `via`; key
   * `k<i>` ends with `value(rounds - 1)`. A set whose outcome is unknown (the leader changed
   * under the load) is simply sent again: sets are idempotent, and an earlier attempt, if it
   * lands at all, lands before the retry.
   */
  async function write(via: string, keys: number, rounds: number, value: (round: number) => unknown): Promise<void> {
    const set = async (key: string, v: unknown): Promise<void> => {
      for (let attempt = 1; ; attempt++) {
        try {
          await op(via, { type: 'set', key, value: v });
          return;
        } catch (err) {
          if (!(isRaftError(err) && ['LEADERSHIP_LOST', 'TIMEOUT', 'ACTOR_RESTARTED'].includes(err.code)) || attempt === 5) throw err;
        }
      }
    };
    for (let r = 0; r < rounds; r++) {
      await Promise.all(Array.from({ length: keys }, (_, i) => set(`k${i}`, value(r))));
    }
  }

  async function expectValues(id: string, keys: number, expected: unknown, how: 'read' | 'query'): Promise<void> {
    const get = how === 'read' ? read : query;
    const values = await Promise.all(Array.from({ length: keys }, (_, i) => get(id, { type: 'get', key: `k${i}` })));
    const wrong = values.findIndex((v) => JSON.stringify(v) !== JSON.stringify(expected));
    expect(wrong, `k${wrong} at ${id} (${how}): ${JSON.stringify(values[wrong])}`).to.equal(-1);
  }

  async function waitForSnapshots(ids: string[]): Promise<void> {
    await waitFor(`a snapshot on ${ids.join(',')}`, async () => {
      const statuses = await Promise.all(ids.map((id) => status(id)));
      return statuses.every((s) => s.snapshotIndex > 0) ? statuses : undefined;
    });
  }

  it('startNode checks the snapshot and catch-up options', async () => {
    const base = { stateMachine: 'kv' as const, dataDir: peerDir(fixture.root, 'x') };
    for (const bad of [
      { snapshotThreshold: -1 },
      { snapshotThreshold: 1.5 },
      { snapshotChunkBytes: 0 },
      { catchUpTimeoutMs: 0 },
      { catchUpTimeoutMs: Number.NaN },
    ]) {
      const err = await startNode('x', { ...base, ...bad }).catch((e: unknown) => e);
      expect(err, JSON.stringify(bad)).to.be.instanceOf(RangeError);
      expect((err as Error).message).to.match(new RegExp(Object.keys(bad)[0]!));
    }
    // 0 = never compact.
    await startNode('x', { ...base, snapshotThreshold: 0, snapshotChunkBytes: 1, catchUpTimeoutMs: 1 });
    await setConfig('x', ['x']);
    await waitForLeader(['x']);
    await write('x', 10, 30, (r) => r);
    const s = await status('x');
    expect(s.snapshotIndex).to.equal(0);
    expect(s.lastApplied).to.be.greaterThan(300);
  });

  it('a new peer joins after compaction and catches up by snapshot', async () => {
    const ids = ['a', 'b', 'c'];
    const { leader } = await fixture.startCluster(ids, SMALL);
    await write(leader, 100, 20, (r) => r); // 2000 ops
    await waitForSnapshots(ids);
    expect((await status(leader)).snapshotIndex).to.be.greaterThan(1000);

    await fixture.startPeers(['d'], SMALL);
    await setConfig('a', [...ids, 'd']);
    await waitForConfig([...ids, 'd'], [...ids, 'd']);
    const converged = await waitForConverged([...ids, 'd']);
    expect(new Set(converged.map((s) => `${s.lastApplied}/${s.appliedDigest}`)).size).to.equal(1);
    const d = await status('d');
    // It got the snapshot: its log starts after the leader's compaction point, not at 1.
    expect(d.snapshotIndex).to.be.greaterThan(0);
    await expectValues('d', 100, 19, 'read');
    await expectValues('d', 100, 19, 'query');
    // And it counts from now on: a write through it lands everywhere.
    await op('d', { type: 'set', key: 'k0', value: 'after' });
    await waitForConverged([...ids, 'd']);
    expect(await query('d', { type: 'get', key: 'k0' })).to.equal('after');
  });

  it('restarts from snapshot + tail: one peer, then the whole cluster', async () => {
    const ids = ['a', 'b', 'c'];
    const { leader } = await fixture.startCluster(ids, SMALL);
    await write(leader, 100, 10, (r) => r);
    await write(leader, 10, 1, () => 'tail'); // k0..k9 differ from k10..k99
    // Make sure every log holds entries past its snapshot (a tail to replay).
    let extra = 0;
    const before = await waitFor(
      'a tail after every snapshot',
      async () => {
        const statuses = await waitForConverged(ids);
        if (statuses.every((s) => s.snapshotIndex > 0 && s.lastIndex - s.snapshotIndex >= 5)) return statuses;
        await op(leader, { type: 'set', key: `extra${extra++}`, value: extra });
        return undefined;
      },
      30_000,
    );

    const now = (await waitForLeader(ids)).leader;
    const follower = ids.find((id) => id !== now)!;
    await stopNode(follower);
    await fixture.startPeers([follower], SMALL);
    const back = await status(follower);
    expect(back.snapshotIndex).to.be.at.least(before.find((s) => s.id === follower)!.snapshotIndex);
    const again = await waitForConverged(ids);
    expect(again.find((s) => s.id === follower)!.appliedDigest).to.equal(before[0]!.appliedDigest);
    expect(again[0]!.lastApplied).to.equal(before[0]!.lastApplied);
    await expectValues(follower, 10, 'tail', 'query');

    // Everyone at once: nobody can send anybody a snapshot, each recovers its own.
    await stopAll();
    await fixture.startPeers(ids, SMALL);
    for (const id of ids) {
      const s = await status(id);
      expect(s.snapshotIndex, id).to.be.greaterThan(0);
      expect(s.lastIndex, id).to.be.greaterThan(s.snapshotIndex);
    }
    await waitForLeader(ids);
    // The tail is committed again once the new leader's first entry is.
    await waitForConverged(ids, Math.max(...before.map((s) => s.lastIndex)) + 1);
    for (const id of ids) {
      expect(await query(id, { type: 'get', key: 'k0' })).to.equal('tail');
      expect(await query(id, { type: 'get', key: 'k99' })).to.equal(9);
      expect(await query(id, { type: 'get', key: `extra${extra - 1}` })).to.equal(extra > 0 ? extra : null);
    }
    expect(await read('b', { type: 'get', key: 'k50' })).to.equal(9);
  });

  it('a new peer whose actors crash while it receives a large snapshot still converges', async () => {
    const ids = ['a', 'b', 'c'];
    const { leader } = await fixture.startCluster(ids, SMALL);
    const big = 'v'.repeat(2048);
    await write(leader, 2000, 2, (r) => `${r}:${big}`); // a snapshot of ~4 MiB: ~1000 chunks
    await waitForSnapshots(ids);

    await fixture.startPeers(['d'], { ...SMALL, maxRestarts: 20 });
    const started = Date.now();
    const change = setConfig('a', [...ids, 'd']);
    let settled: unknown = null;
    void change.then(
      () => (settled = 'done'),
      (e: unknown) => (settled = e),
    );
    await waitFor('d as a learner', async () => {
      if (settled !== null) throw new Error(`setConfig settled before d was seen as a learner: ${String(settled)}`);
      const statuses = await Promise.all(ids.map((id) => status(id)));
      return statuses.some((s) => s.learners.includes('d')) ? true : undefined;
    });
    let duringTransfer = 0;
    for (const actor of ['consensus', 'consensus', 'log', 'consensus'] as const) {
      await sleep(150);
      const s = await status('d');
      if (s.snapshotIndex === 0) duringTransfer++;
      await nemesis.crash('d', actor);
      await waitFor('d to be back', async () => status('d'));
    }
    await change;
    const converged = await waitForConverged([...ids, 'd']);
    const d = await status('d');
    console.log(
      `      snapshot install: ${duringTransfer} of 4 crashes hit d before its snapshot was in; joined and converged in ${Date.now() - started} ms; d restarts ${JSON.stringify(d.restarts)}`,
    );
    expect(d.restarts.consensus).to.be.at.least(4);
    expect(d.restarts.log).to.be.at.least(1);
    expect(d.snapshotIndex).to.be.greaterThan(0);
    expect(new Set(converged.map((s) => s.appliedDigest)).size).to.equal(1);
    const sample = await Promise.all([0, 777, 1999].map((i) => query('d', { type: 'get', key: `k${i}` })));
    expect(sample).to.deep.equal([`1:${big}`, `1:${big}`, `1:${big}`]);
  });

  it('keeps the log and the LMDB file bounded under a steady write load', async () => {
    const threshold = 1000;
    const total = 50_000;
    const inFlight = 256;
    const ids = ['a', 'b', 'c'];
    const { leader } = await fixture.startCluster(ids, { snapshotThreshold: threshold });

    const fileSize = (id: string) => fs.statSync(path.join(peerDir(fixture.root, id), 'data.mdb')).size;
    const sample = async () => {
      const statuses = await Promise.all(ids.map((id) => status(id)));
      return statuses.map((s) => ({ id: s.id, log: s.lastIndex - s.snapshotIndex, snapshot: s.snapshotIndex, bytes: fileSize(s.id) }));
    };
    type Sample = Awaited<ReturnType<typeof sample>>;
    let third: Sample | null = null;
    let maxLog = 0;
    let next = 0;
    let unknown = 0;
    let sampling: Promise<void> | null = null;
    const started = Date.now();
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (next < total) {
          const i = next++;
          // Ops whose outcome is unknown (a leader change under the load) are only counted.
          await op(leader, { type: 'set', key: `k${i % 1000}`, value: i }).catch((err: unknown) => {
            if (!isRaftError(err)) throw err;
            unknown++;
          });
          if (i % 2500 === 0 && sampling === null) {
            sampling = sample().then((s) => {
              maxLog = Math.max(maxLog, ...s.map((x) => x.log));
              if (third === null && i >= total / 3) third = s;
              sampling = null;
            });
          }
        }
      }),
    );
    const elapsed = Date.now() - started;
    await waitForConverged(ids);
    const end = await sample();
    maxLog = Math.max(maxLog, ...end.map((x) => x.log));
    expect(third, 'a sample at a third of the load').to.not.equal(null);
    const at3 = third as unknown as Sample;
    const fmt = (s: Sample) => s.map((x) => `${x.id} log=${x.log} snap=${x.snapshot} data.mdb=${x.bytes}`).join(', ');
    console.log(
      `      ${total} ops (${inFlight} in flight, ${unknown} with an unknown outcome) in ${elapsed} ms, threshold ${threshold}; longest log seen ${maxLog}; at 1/3: ${fmt(at3)}; at the end: ${fmt(end)}`,
    );
    expect(maxLog).to.be.at.most(2 * threshold);
    for (const s of end) {
      expect(s.snapshot, s.id).to.be.greaterThan(total - 2 * threshold);
      expect(s.bytes, `${s.id}'s data.mdb`).to.be.at.most(1.25 * at3.find((x) => x.id === s.id)!.bytes);
    }
  });
});
