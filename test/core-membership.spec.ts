/**
 * Membership changes by joint consensus (§6, thesis §4.3) in the core, on the simulator's manual
 * harness (invariants checked after every event): learners (§4.2.1), a leader outside C_new
 * (§4.2.2), removed peers that cannot disrupt (pre-vote §9.6, §4.2.3). Pre-vote alone:
 * core-prevote.spec.ts; leadership transfer: core-transfer.spec.ts; snapshots: core-snapshots.spec.ts.
 */
import { expect } from 'chai';
import { jointConfig, stableConfig } from '../src/config.js';
import { status } from '../src/core/index.js';
import { outcome, settle, simCluster, stepUntil } from './helpers/sim-cluster.js';

describe('§6 membership changes by joint consensus', function () {
  it('grows 3 → 5: the new peers catch up as learners, then C_old,new and C_new are committed in turn', function () {
    const sim = simCluster(5, 3);
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
    const sim = simCluster(6, 3);
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
    const sim = simCluster(3, 3);
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
    const sim = simCluster(3, 3);
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
    const sim = simCluster(5, 3);
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
    const sim = simCluster(4, 3, { catchUpTicks: 30 });
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
    const sim = simCluster(4, 3);
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
