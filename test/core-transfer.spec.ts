/**
 * Leadership transfer (thesis §3.10), on the simulator's manual harness: the leader stops
 * taking commands, brings the target up to date and sends it TimeoutNow; the target campaigns
 * at once. (The lease a transfer gives up: core-leader.spec.ts; a leader outside C_new handing
 * over: core-membership.spec.ts.)
 */
import { expect } from 'chai';
import { outcome, simCluster } from './helpers/sim-cluster.js';

describe('§3.10 leadership transfer', function () {
  it('hands over to the target: TimeoutNow, the target campaigns at once and wins', function () {
    const sim = simCluster(3, 3);
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
    const sim = simCluster(3, 3);
    sim.cut('p1', 'p3');
    sim.propose('p1', 4);
    sim.stabilize();
    const id = sim.transferLeadership('p1', 'p3');
    const [w] = sim.propose('p1', 1);
    expect(sim.checker.requests.get(w!)!.status, 'refused while handing over').to.equal('notApplied');
    expect(outcome(sim, id)).to.equal('pending');
    sim.heal();
    sim.tick(1, ['p1']);
    sim.stabilize();
    expect(sim.leader()).to.equal('p3');
    expect(sim.core('p3').log.lastIndex).to.be.at.least(sim.core('p1').log.lastIndex - 1);
  });

  it('gives up after an election timeout (TRANSFER_FAILED) and takes commands again; refuses non-voters', function () {
    const sim = simCluster(4, 3);
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
    const sim = simCluster(3, 3);
    sim.cut('p1', 'p2');
    sim.propose('p1', 2);
    sim.stabilize();
    sim.transferLeadership('p1');
    sim.stabilize();
    expect(sim.leader()).to.equal('p3');
  });
});
