/**
 * Snapshots, log compaction and InstallSnapshot (§7), on the simulator's manual harness: the
 * leader compacts at the threshold, a follower behind the snapshot gets it in chunks (again
 * after a crash or a lost chunk), a peer restarts from its snapshot, a new peer catches up by one.
 */
import { expect } from 'chai';
import { outcome, settle, simCluster, stepUntil } from './helpers/sim-cluster.js';
import type { Simulator } from './sim/simulator.js';

describe('§7 snapshots and InstallSnapshot', function () {
  const SNAP = { snapshotThreshold: 10, snapshotChunkBytes: 8, maxCachedEntries: 4 };

  /** `rounds` rounds of 10 commands through p1, each stabilized (several snapshots at threshold 10). */
  function write(sim: Simulator, rounds: number): void {
    for (let k = 0; k < rounds; k++) {
      sim.propose('p1', 10);
      sim.stabilize();
    }
  }

  /** Cut `id` off while the others write and compact past it: it will need the snapshot. */
  function leaveBehind(sim: Simulator, id: string, rounds: number): void {
    sim.isolate(id);
    write(sim, rounds);
  }

  it('compacts at the threshold; a follower behind the snapshot gets it in chunks and applies from it', function () {
    const sim = simCluster(3, 3, SNAP);
    leaveBehind(sim, 'p3', 6);
    const leader = sim.core('p1');
    expect(leader.log.snapshotIndex, 'the leader compacted').to.be.above(30);
    expect(sim.peer('p1').disk.snapshot!.meta.index).to.be.above(30);
    const chunks: number[] = [];
    sim.msgHook = (m) => {
      if (m.type === 'installSnapshot') chunks.push(m.offset);
      return true;
    };
    sim.heal();
    settle(sim, 5);
    expect(chunks.length, 'many chunks of 8 bytes').to.be.above(10);
    expect(sim.core('p3').log.snapshotIndex).to.be.above(30);
    expect(sim.peer('p3').applied).to.deep.equal(sim.peer('p1').applied);
  });

  it('a follower that crashes during the transfer starts it again and still converges', function () {
    const sim = simCluster(3, 3, SNAP);
    leaveBehind(sim, 'p3', 6);
    sim.heal();
    sim.tick(1, ['p1']);
    stepUntil(sim, () => (sim.core('p3').incoming?.received ?? 0) > 16, 'p3 is receiving the snapshot');
    sim.crash('p3');
    sim.restart('p3');
    expect(sim.core('p3').incoming).to.equal(null);
    for (let k = 0; k < 40; k++) {
      sim.tick(1);
      sim.stabilize();
    }
    expect(sim.peer('p3').applied).to.deep.equal(sim.peer('p1').applied);
  });

  it('a lost chunk is sent again, from where the follower stands', function () {
    const sim = simCluster(3, 3, SNAP);
    leaveBehind(sim, 'p3', 6);
    let dropped = 0;
    sim.msgHook = (m) => !(m.type === 'installSnapshot' && m.offset === 64 && dropped++ < 2);
    sim.heal();
    for (let k = 0; k < 40; k++) {
      sim.tick(1);
      sim.stabilize();
    }
    expect(dropped).to.be.at.least(1);
    expect(sim.peer('p3').applied).to.deep.equal(sim.peer('p1').applied);
  });

  it('restarts from its snapshot and the log after it', function () {
    const sim = simCluster(3, 3, SNAP);
    write(sim, 4);
    settle(sim);
    const applied = [...sim.peer('p2').applied];
    sim.crash('p2');
    sim.restart('p2');
    const c = sim.core('p2');
    expect(c.log.snapshotIndex).to.be.above(0);
    expect(c.lastApplied, 'the snapshot is applied state').to.equal(c.log.snapshotIndex);
    settle(sim);
    expect(sim.peer('p2').applied).to.deep.equal(applied.concat(sim.peer('p1').applied.slice(applied.length)));
    expect(sim.peer('p2').applied).to.deep.equal(sim.peer('p1').applied);
  });

  it('a new peer joins after compaction and catches up by snapshot', function () {
    const sim = simCluster(4, 3, SNAP);
    write(sim, 4);
    const installs = sim.stats.installs;
    const id = sim.changeConfig('p1', ['p1', 'p2', 'p3', 'p4']);
    sim.stabilize();
    settle(sim, 5);
    expect(outcome(sim, id)).to.equal('ok');
    expect(sim.stats.installs).to.be.above(installs);
    expect(sim.peer('p4').applied).to.deep.equal(sim.peer('p1').applied);
  });
});
