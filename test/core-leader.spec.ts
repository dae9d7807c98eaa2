/**
 * Thesis §4.2.3 (ignore RequestVotes while a current leader is heard), §6.2 (check-quorum)
 * and §6.4.1 (lease reads), on the deterministic simulator's manual harness. The random runs in
 * core-sim.spec.ts check every read for linearizability with lease reads on in half the runs.
 */
import { expect } from 'chai';
import { createCore, DEFAULT_CORE_OPTIONS, leaseTicks, step, validateCoreOptions } from '../src/core/index.js';
import type { RequestVote } from '../src/messages.js';
import { MANUAL, Simulator } from './sim/simulator.js';

const LEASE = { leaseReads: true, electionTicks: 10, clockDriftBound: 1.5 };

function cluster(core = {}): Simulator {
  const sim = new Simulator({ peers: 3, seed: 1, core, ...MANUAL });
  sim.bootstrap('p1');
  sim.stabilize();
  expect(sim.leader()).to.equal('p1');
  return sim;
}

const requestVote = (term: number, to: string): RequestVote => ({ type: 'requestVote', term, from: 'p3', to, lastLogIndex: 99, lastLogTerm: 99 });

describe('§4.2.3: a RequestVote is ignored while a current leader is heard', function () {
  it('a follower that heard the leader neither adopts the higher term nor answers; an election timeout later it votes', function () {
    const sim = cluster();
    let b = sim.core('p2');
    const term = b.currentTerm;
    let r = step(b, { type: 'message', message: requestVote(term + 5, 'p2') });
    b = r.state;
    expect(b.currentTerm, 'term unchanged').to.equal(term);
    expect(r.effects.filter((e) => e.type === 'send' || e.type === 'persist')).to.deep.equal([]);
    for (let k = 0; k < b.options.electionTicks; k++) b = step(b, { type: 'tick' }).state;
    expect(b.voteGuard).to.equal(0);
    r = step(b, { type: 'message', message: requestVote(term + 5, 'p2') });
    expect(r.state.currentTerm).to.equal(term + 5);
    expect(r.state.votedFor).to.equal('p3');
  });

  it('a leader ignores a RequestVote of a higher term and keeps leading', function () {
    const sim = cluster();
    const a = sim.core('p1');
    const term = a.currentTerm;
    const r = step(a, { type: 'message', message: requestVote(term + 1, 'p1') });
    expect(r.state.role).to.equal('leader');
    expect(r.state.currentTerm).to.equal(term);
    expect(r.effects).to.deep.equal([]);
  });

  it('a restarted peer with a log keeps the guard for an election timeout; a blank one has none', function () {
    expect(createCore({ id: 'a', seed: 1 }).voteGuard).to.equal(0);
    const restarted = createCore({ id: 'a', seed: 1, term: 2, entries: [{ type: 'config', index: 1, term: 1, peers: ['a', 'b', 'c'] }] });
    expect(restarted.voteGuard).to.equal(DEFAULT_CORE_OPTIONS.electionTicks);
  });
});

describe('§6.4.1: lease reads', function () {
  it('the lease lasts (electionTicks - 1) / clockDriftBound - 1 ticks, and a lease too short to be useful is refused', function () {
    expect(leaseTicks({ ...DEFAULT_CORE_OPTIONS, ...LEASE })).to.equal(5);
    expect(() => validateCoreOptions({ ...DEFAULT_CORE_OPTIONS, leaseReads: true, electionTicks: 3, clockDriftBound: 2 })).to.throw(RangeError, /lease/);
    expect(() => validateCoreOptions({ ...DEFAULT_CORE_OPTIONS, clockDriftBound: 0.5 })).to.throw(RangeError, /clockDriftBound/);
  });

  it('while a quorum acknowledged a heartbeat within the lease, the leader answers reads without a round', function () {
    const sim = cluster(LEASE);
    sim.tick(1, ['p1']); // a heartbeat round...
    sim.stabilize(); // ...acknowledged by both followers
    const leader = sim.core('p1');
    expect(leader.reads.leaseUntil).to.be.greaterThan(leader.ticks);
    const roundBefore = leader.reads.round;
    const served = sim.readsServed;
    sim.read('p1', 3);
    expect(sim.readsServed - served, 'answered in the same step').to.equal(3);
    expect(sim.core('p1').reads.round, 'no confirmation round').to.equal(roundBefore);
    expect(sim.inFlight().filter((m) => m.type === 'appendEntries')).to.deep.equal([]);
  });

  it('a follower\'s forwarded read is answered from the lease too', function () {
    const sim = cluster(LEASE);
    sim.tick(1, ['p1']);
    sim.stabilize();
    const roundBefore = sim.core('p1').reads.round;
    const served = sim.readsServed;
    sim.read('p2', 2);
    sim.stabilize();
    expect(sim.readsServed - served).to.equal(2);
    expect(sim.core('p1').reads.round).to.equal(roundBefore);
  });

  it('once no quorum has answered for the lease, reads wait for a ReadIndex round again', function () {
    const sim = cluster(LEASE);
    sim.tick(1, ['p1']);
    sim.stabilize();
    sim.isolate('p1');
    sim.tick(leaseTicks(sim.core('p1').options) + 1, ['p1']);
    sim.stabilize();
    const served = sim.readsServed;
    sim.read('p1', 1);
    sim.stabilize();
    expect(sim.readsServed - served, 'not served without a quorum').to.equal(0);
    sim.heal();
    sim.tick(1, ['p1']);
    sim.stabilize();
    expect(sim.readsServed - served, 'served after a confirmed round').to.equal(1);
  });

  it('a leader that sent TimeoutNow gives its lease up for the rest of its term (§3.10: the target may be elected inside it)', function () {
    const sim = cluster(LEASE);
    sim.tick(1, ['p1']);
    sim.stabilize();
    sim.ignore('timeoutNow'); // lost: p1 stays leader, its transfer pending, then failing
    sim.transferLeadership('p1', 'p2');
    expect(sim.core('p1').reads.leaseUntil).to.equal(-1);
    for (let k = 0; k < 12; k++) {
      sim.tick(1, ['p1']);
      sim.stabilize();
    }
    expect(sim.core('p1').role, 'the transfer gave up; p1 still leads').to.equal('leader');
    const roundBefore = sim.core('p1').reads.round;
    const served = sim.readsServed;
    sim.read('p1', 1);
    expect(sim.readsServed - served, 'not answered from a lease').to.equal(0);
    sim.stabilize();
    expect(sim.readsServed - served, 'answered after a ReadIndex round').to.equal(1);
    expect(sim.core('p1').reads.round).to.be.greaterThan(roundBefore);
  });

  it('without the option, every read takes a confirmation round', function () {
    const sim = cluster();
    sim.tick(1, ['p1']);
    sim.stabilize();
    const roundBefore = sim.core('p1').reads.round;
    const served = sim.readsServed;
    sim.read('p1', 1);
    expect(sim.readsServed - served).to.equal(0);
    sim.stabilize();
    expect(sim.readsServed - served).to.equal(1);
    expect(sim.core('p1').reads.round).to.equal(roundBefore + 1);
  });
});

describe('§6.2 check-quorum: a leader that cannot hear a majority for an election timeout steps down', function () {
  it('an isolated leader becomes a follower of the same term within two election timeouts', function () {
    const sim = cluster();
    const term = sim.core('p1').currentTerm;
    sim.isolate('p1');
    const ticks = 2 * sim.core('p1').options.electionTicks;
    for (let k = 0; k < ticks && sim.core('p1').role === 'leader'; k++) {
      sim.tick(1, ['p1']);
      sim.stabilize();
    }
    expect(sim.core('p1').role).to.equal('follower');
    expect(sim.core('p1').currentTerm, 'no term of its own').to.equal(term);
    expect(sim.core('p1').leader).to.equal(null);
  });

  it('a leader that hears a majority keeps leading however long it runs', function () {
    const sim = cluster();
    sim.isolate('p3'); // a minority gone does not matter
    for (let k = 0; k < 10 * sim.core('p1').options.electionTicks; k++) {
      sim.tick(1, ['p1']);
      sim.stabilize();
    }
    expect(sim.core('p1').role).to.equal('leader');
  });
});
