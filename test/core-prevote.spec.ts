/**
 * Pre-vote (thesis §9.6), on the simulator's manual harness: a peer whose election timer fires
 * asks whether it could win before it raises its term, so a partitioned peer that rejoins cannot
 * depose a healthy leader. (A removed peer's pre-votes: core-membership.spec.ts.)
 */
import { expect } from 'chai';
import { simCluster } from './helpers/sim-cluster.js';

describe('§9.6 pre-vote', function () {
  function isolatedFollowerReturns(preVote: boolean): { before: number; after: number; leader: string | null } {
    const sim = simCluster(3, 3, { preVote });
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
