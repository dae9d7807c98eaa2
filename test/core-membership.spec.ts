/**
 * Issue 5 in the core, on the simulator's manual harness (invariants checked after every
 * event): membership changes by joint consensus (§6, thesis §4.3), learners (§4.2.1), a leader
 * outside C_new (§4.2.2), removed peers that cannot disrupt (pre-vote §9.6, §4.2.3), leadership
 * transfer (§3.10), snapshots and InstallSnapshot (§7).
 */
import { expect } from 'chai';
import { jointConfig, stableConfig } from '../src/config.js';
import { DEFAULT_CORE_OPTIONS, status, validateCoreOptions, type CoreOptions } from '../src/core/index.js';
import { MANUAL, Simulator } from './sim/simulator.js';

function cluster(peers: number, members: number, core: Partial<CoreOptions> = {}): Simulator {
  const sim = new Simulator({ peers, members, seed: 5, core, ...MANUAL });
  sim.bootstrap('p1');
  sim.stabilize();
  expect(sim.leader()).to.equal('p1');
  return sim;
}

/** Heartbeats until nothing is left to say: followers learn the last commit index. */
function settle(sim: Simulator, rounds = 3): void {
  for (let k = 0; k < rounds; k++) {
    const leader = sim.leader();
    if (leader !== null) sim.tick(1, [leader]);
    sim.stabilize();
  }
}

function outcome(sim: Simulator, id: number): string {
  return sim.adminResults.get(id)!.outcome;
}

/** Drive deliveries and disk flushes one round at a time until `cond` holds. */
function stepUntil(sim: Simulator, cond: () => boolean, what: string): void {
  for (let k = 0; k < 1000 && !cond(); k++) {
    sim.flushAll();
    sim.deliver();
  }
  expect(cond(), what).to.equal(true);
}

describe('§6 membership changes by joint consensus', function () {
  it('grows 3 → 5: the new peers catch up as learners, then C_old,new and C_new are committed in turn', function () {
    const sim = cluster(5, 3);
    sim.propose('p1', 5);
    sim.stabilize();
    const id = sim.changeConfig('p1', ['p1', 'p2', 'p3', 'p4', 'p5']);
    // Learners first: replicated to, not counted, and shown by status.
    expect(status(sim.core('p1')).learners).to.deep.equal(['p4', 'p5']);
    expect(sim.core('p1').config).to.deep.equal(stableConfig(['p1', 'p2', 'p3']));
    sim.stabilize();
    settle(sim);
    expect(outcome(sim, id)).to.equal('ok');
    for (const p of sim.ids) {
      const c = sim.core(p);
      expect(c.config, p).to.deep.equal(stableConfig(['p1', 'p2', 'p3', 'p4', 'p5']));
      // Both steps are in every log, in order: C_old,new then C_new.
      const configs = c.log.configsAfter(1).map((e) => (e.old ? `${e.old.join(',')}>${e.peers.join(',')}` : e.peers.join(',')));
      expect(configs, p).to.deep.equal(['p1,p2,p3>p1,p2,p3,p4,p5', 'p1,p2,p3,p4,p5']);
      expect(sim.peer(p).applied, p).to.deep.equal(sim.peer('p1').applied);
    }
    // The new peers count now: with two old peers down, the five still commit.
    sim.crash('p2');
    sim.crash('p3');
    const [w] = sim.propose('p1', 1);
    sim.stabilize();
    expect(sim.checker.requests.get(w!)!.status).to.equal('acked');
  });

  it('while joint, an entry commits only with a majority of the old AND of the new voters', function () {
    const sim = cluster(6, 3);
    sim.changeConfig('p1', ['p1', 'p4', 'p5']);
    stepUntil(sim, () => sim.core('p1').config?.kind === 'joint', 'the joint configuration is in the log');
    expect(sim.core('p1').config).to.deep.equal(jointConfig(['p1', 'p2', 'p3'], ['p1', 'p4', 'p5']));
    // The old majority (p1, p2, p3) hears the leader; the new one (p1 with p4 or p5) does not.
    sim.cut('p1', 'p4');
    sim.cut('p1', 'p5');
    const jointIndex = sim.core('p1').log.lastConfig()!.index;
    const [w] = sim.propose('p1', 1);
    settle(sim);
    expect(sim.core('p1').commitIndex, 'nothing at or after C_old,new commits').to.be.below(jointIndex);
    expect(sim.checker.requests.get(w!)!.status).to.equal('pending');
    sim.heal();
    settle(sim, 5);
    expect(sim.checker.requests.get(w!)!.status).to.equal('acked');
    expect(sim.core('p1').config).to.deep.equal(stableConfig(['p1', 'p4', 'p5']));
  });

  it('a leader outside C_new steps down once C_new is committed and hands over (§4.2.2, §3.10); it never campaigns again', function () {
    const sim = cluster(3, 3);
    const id = sim.changeConfig('p1', ['p2', 'p3']);
    sim.stabilize();
    settle(sim);
    expect(outcome(sim, id)).to.equal('ok');
    expect(sim.core('p1').role).to.equal('follower');
    expect(sim.core('p1').config).to.deep.equal(stableConfig(['p2', 'p3']));
    const leader = sim.leader();
    expect(leader, 'TimeoutNow made a new leader at once').to.be.oneOf(['p2', 'p3']);
    const term = sim.core(leader!).currentTerm;
    for (let k = 0; k < 100; k++) {
      sim.forgetLeader(['p1']);
      sim.tick(1);
      sim.stabilize();
    }
    expect(sim.core('p1').role).to.equal('follower');
    expect(sim.leader()).to.equal(leader);
    expect(sim.core(leader!).currentTerm, 'no election after the handover').to.equal(term);
  });

  it('a removed peer that missed C_new keeps pre-voting but cannot depose the leader (§9.6, §4.2.3)', function () {
    const sim = cluster(3, 3);
    // p3 gets C_old,new (it is still a voter there) and is then cut off before C_new.
    sim.changeConfig('p1', ['p1', 'p2']);
    stepUntil(sim, () => sim.core('p3').config?.kind === 'joint', 'p3 holds C_old,new');
    sim.isolate('p3');
    sim.stabilize();
    settle(sim);
    expect(sim.core('p1').config).to.deep.equal(stableConfig(['p1', 'p2']));
    const term = sim.core('p1').currentTerm;
    sim.heal();
    for (let k = 0; k < 200; k++) {
      sim.tick(1);
      sim.stabilize();
    }
    expect(sim.leader()).to.equal('p1');
    expect(sim.core('p1').currentTerm).to.equal(term);
    expect(sim.core('p2').currentTerm).to.equal(term);
  });

  it('refuses a second change while one is in progress (CONFIG_IN_PROGRESS), and bad lists (CONFIG_INVALID)', function () {
    const sim = cluster(5, 3);
    const first = sim.changeConfig('p1', ['p1', 'p2', 'p3', 'p4']);
    const second = sim.changeConfig('p1', ['p1', 'p2', 'p3', 'p5']);
    expect(outcome(sim, second)).to.equal('CONFIG_IN_PROGRESS');
    expect(outcome(sim, sim.changeConfig('p1', []))).to.equal('CONFIG_INVALID');
    expect(outcome(sim, sim.changeConfig('p1', ['p1', 'p1']))).to.equal('CONFIG_INVALID');
    expect(outcome(sim, sim.changeConfig('p2', ['p1', 'p2']))).to.equal('NOT_LEADER');
    sim.stabilize();
    settle(sim);
    expect(outcome(sim, first)).to.equal('ok');
    expect(outcome(sim, sim.changeConfig('p1', ['p4', 'p3', 'p2', 'p1'])), 'the same voters: nothing to do').to.equal('ok');
  });

  it('gives up when a new peer does not catch up in time (CATCH_UP_TIMEOUT), leaving the configuration as it was', function () {
    const sim = cluster(4, 3, { catchUpTicks: 30 });
    sim.crash('p4');
    const id = sim.changeConfig('p1', ['p1', 'p2', 'p3', 'p4']);
    for (let k = 0; k < 40; k++) {
      sim.tick(1);
      sim.stabilize();
    }
    expect(outcome(sim, id)).to.equal('CATCH_UP_TIMEOUT');
    expect(sim.core('p1').config).to.deep.equal(stableConfig(['p1', 'p2', 'p3']));
    expect(status(sim.core('p1')).learners).to.deep.equal([]);
    expect([...sim.core('p1').progress.keys()].sort()).to.deep.equal(['p2', 'p3']);
  });

  it('a new leader completes a change its predecessor left joint', function () {
    const sim = cluster(4, 3);
    sim.changeConfig('p1', ['p2', 'p3', 'p4']);
    stepUntil(sim, () => ['p2', 'p3', 'p4'].every((p) => sim.core(p).config?.kind === 'joint'), 'C_old,new everywhere');
    sim.crash('p1');
    for (let k = 0; k < 200 && sim.leader() === null; k++) {
      sim.tick(1, ['p2', 'p3', 'p4']);
      sim.stabilize();
    }
    settle(sim, 5);
    const leader = sim.leader()!;
    expect(sim.core(leader).config).to.deep.equal(stableConfig(['p2', 'p3', 'p4']));
  });
});

describe('§9.6 pre-vote', function () {
  function isolatedFollowerReturns(preVote: boolean): { before: number; after: number; leader: string | null } {
    const sim = cluster(3, 3, { preVote });
    sim.isolate('p3');
    for (let k = 0; k < 100; k++) {
      sim.tick(1);
      sim.stabilize();
    }
    const before = sim.core('p1').currentTerm;
    sim.heal();
    for (let k = 0; k < 30; k++) {
      sim.tick(1);
      sim.stabilize();
    }
    return { before, after: sim.core('p1').currentTerm, leader: sim.leader() };
  }

  it('a partitioned follower that rejoins does not raise the term or depose a healthy leader', function () {
    const r = isolatedFollowerReturns(true);
    expect(r.after).to.equal(r.before);
    expect(r.leader).to.equal('p1');
  });

  it('(without pre-vote the same follower returns with a higher term and the leader steps down)', function () {
    const r = isolatedFollowerReturns(false);
    expect(r.after).to.be.greaterThan(r.before);
  });
});

describe('§3.10 leadership transfer', function () {
  it('hands over to the target: TimeoutNow, the target campaigns at once and wins', function () {
    const sim = cluster(3, 3);
    sim.propose('p1', 3);
    sim.stabilize();
    const id = sim.transferLeadership('p1', 'p3');
    sim.stabilize();
    expect(sim.leader()).to.equal('p3');
    expect(outcome(sim, id)).to.equal('ok');
    const [w] = sim.propose('p3', 1);
    sim.stabilize();
    expect(sim.checker.requests.get(w!)!.status).to.equal('acked');
  });

  it('brings a lagging target up to date first, and takes no commands meanwhile', function () {
    const sim = cluster(3, 3);
    sim.cut('p1', 'p3');
    sim.propose('p1', 4);
    sim.stabilize();
    const id = sim.transferLeadership('p1', 'p3');
    const [w] = sim.propose('p1', 1);
    expect(sim.checker.requests.get(w!)!.status, 'refused while handing over').to.equal('notLeader');
    expect(outcome(sim, id)).to.equal('pending');
    sim.heal();
    sim.tick(1, ['p1']);
    sim.stabilize();
    expect(sim.leader()).to.equal('p3');
    expect(sim.core('p3').log.lastIndex).to.be.at.least(sim.core('p1').log.lastIndex - 1);
  });

  it('gives up after an election timeout (TRANSFER_FAILED) and takes commands again; refuses non-voters', function () {
    const sim = cluster(4, 3);
    expect(outcome(sim, sim.transferLeadership('p1', 'p4'))).to.equal('TRANSFER_FAILED');
    sim.isolate('p3');
    sim.propose('p1', 1);
    const id = sim.transferLeadership('p1', 'p3');
    for (let k = 0; k < 12; k++) {
      sim.tick(1, ['p1', 'p2']);
      sim.stabilize();
    }
    expect(outcome(sim, id)).to.equal('TRANSFER_FAILED');
    expect(sim.leader()).to.equal('p1');
    const [w] = sim.propose('p1', 1);
    sim.stabilize();
    expect(sim.checker.requests.get(w!)!.status).to.equal('acked');
  });

  it('without a target, picks the most up-to-date voter', function () {
    const sim = cluster(3, 3);
    sim.cut('p1', 'p2');
    sim.propose('p1', 2);
    sim.stabilize();
    sim.transferLeadership('p1');
    sim.stabilize();
    expect(sim.leader()).to.equal('p3');
  });
});

describe('§7 snapshots and InstallSnapshot', function () {
  const SNAP = { snapshotThreshold: 10, snapshotChunkBytes: 32, maxCachedEntries: 4 };

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
    const sim = cluster(3, 3, SNAP);
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
    expect(chunks.length, 'many chunks of 32 bytes').to.be.above(10);
    expect(sim.core('p3').log.snapshotIndex).to.be.above(30);
    expect(sim.peer('p3').applied).to.deep.equal(sim.peer('p1').applied);
  });

  it('a follower that crashes during the transfer starts it again and still converges', function () {
    const sim = cluster(3, 3, SNAP);
    leaveBehind(sim, 'p3', 6);
    sim.heal();
    sim.tick(1, ['p1']);
    stepUntil(sim, () => (sim.core('p3').incoming?.received ?? 0) > 64, 'p3 is receiving the snapshot');
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
    const sim = cluster(3, 3, SNAP);
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
    const sim = cluster(3, 3, SNAP);
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
    const sim = cluster(4, 3, SNAP);
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

describe('issue 5 core options', function () {
  it('rejects bad values with an error naming the option', function () {
    const bad: [Partial<CoreOptions>, RegExp][] = [
      [{ snapshotThreshold: -1 }, /snapshotThreshold/],
      [{ snapshotThreshold: 1.5 }, /snapshotThreshold/],
      [{ snapshotChunkBytes: 0 }, /snapshotChunkBytes/],
      [{ catchUpTicks: 0 }, /catchUpTicks/],
      [{ preVote: 'yes' as unknown as boolean }, /preVote/],
    ];
    for (const [o, re] of bad) expect(() => validateCoreOptions({ ...DEFAULT_CORE_OPTIONS, ...o }), JSON.stringify(o)).to.throw(re);
    expect(validateCoreOptions({ ...DEFAULT_CORE_OPTIONS, snapshotThreshold: 0 }).snapshotThreshold, '0: never').to.equal(0);
  });
});
