/**
 * Linearizable reads that recover from lost messages (thesis §6.4 ReadIndex, §6.4.1 leases),
 * on the deterministic simulator: a follower holds the reads it forwarded and asks again every
 * heartbeat interval until answered, and asks a new leader when it learns of one; the leader
 * answers a repeated request once; the leader's own rounds ride on its next heartbeat. Every
 * read served is checked against everything committed before it was issued (the simulator's
 * Linearizable Read check).
 */
import { expect } from 'chai';
import type { PeerMessage } from '../src/messages.js';
import { settle, simCluster } from './helpers/sim-cluster.js';
import { Rng } from './sim/rng.js';
import { Simulator } from './sim/simulator.js';

const LEASE = { leaseReads: true, clockDriftBound: 1.5 };

/** Tick every live peer once and let the messages settle, until `cond` holds; returns the ticks taken (or -1). */
function ticksUntil(sim: Simulator, cond: () => boolean, max: number, ids?: readonly string[]): number {
  for (let t = 1; t <= max; t++) {
    sim.tick(1, ids);
    sim.stabilize();
    if (cond()) return t;
  }
  return -1;
}

/** Why a run failed: the peers and the last events. */
function report(sim: Simulator): string {
  return `\n${sim.describePeers().join('\n')}\n${sim.recentTrace().join('\n')}`;
}

describe('§6.4 reads recover from lost messages (simulator)', function () {
  it('a read issued at a follower during a cut from the leader is served within two heartbeat intervals of the heal', function () {
    const sim = simCluster(3, 3);
    settle(sim);
    sim.cut('p1', 'p3');
    const served = sim.readsServed;
    sim.read('p3', 2); // its readIndex request is lost
    // The cut lasts a few heartbeats, short of an election timeout: p3 keeps p1 as its leader.
    expect(ticksUntil(sim, () => sim.readsServed > served, 4), 'not served across the cut').to.equal(-1);
    expect(sim.core('p3').leader).to.equal('p1');
    sim.heal();
    const heartbeat = sim.core('p1').options.heartbeatTicks;
    const ticks = ticksUntil(sim, () => sim.readsServed - served === 2, 2 * heartbeat);
    expect(ticks, `served within ${2 * heartbeat} ticks of the heal${report(sim)}`).to.be.within(1, 2 * heartbeat);
  });

  it('a lost answer: the follower asks again and the leader answers again; a late duplicate answer is ignored', function () {
    const sim = simCluster(3, 3);
    settle(sim);
    const answers: PeerMessage[] = [];
    let dropNext = true;
    sim.msgHook = (m) => {
      if (m.type !== 'readIndexReply') return true;
      answers.push(m);
      if (dropNext) {
        dropNext = false;
        return false;
      }
      return true;
    };
    const served = sim.readsServed;
    sim.read('p2', 1);
    sim.stabilize();
    expect(answers.length, 'the leader answered once').to.equal(1);
    expect(sim.readsServed - served, 'the answer was lost').to.equal(0);
    const ticks = ticksUntil(sim, () => sim.readsServed - served === 1, 4);
    expect(ticks, `served after a retry${report(sim)}`).to.be.greaterThan(0);
    expect(answers.length).to.equal(2);
    // The lost answer turns up after all: nothing more is served, nothing fails.
    sim.input(sim.peer('p2'), { type: 'message', message: answers[0]! });
    expect(sim.readsServed - served).to.equal(1);
    expect(sim.core('p2').reads.forwarded.size).to.equal(0);
  });

  it('the leader queues a repeated request once while its round is unconfirmed, and answers it once', function () {
    const sim = simCluster(3, 3);
    settle(sim);
    // No follower acknowledges anything: p1's round cannot be confirmed.
    sim.ignore('appendEntriesReply');
    const served = sim.readsServed;
    sim.read('p2', 1);
    sim.stabilize();
    const leader = sim.core('p1');
    const round = leader.reads.inRound;
    expect(round, 'a round in flight').to.not.equal(null);
    const [id] = [...sim.core('p2').reads.forwarded.keys()];
    // p2 asks again at every heartbeat interval (its leader's heartbeats still arrive).
    const asked: number[] = [];
    sim.msgHook = (m) => {
      if (m.type === 'readIndex') asked.push(m.id);
      return true;
    };
    for (let k = 0; k < 4; k++) {
      sim.tick(1);
      sim.stabilize();
    }
    expect(asked.length, 'asked again').to.be.greaterThan(1);
    expect(new Set(asked), 'under the same id').to.deep.equal(new Set([id]));
    const queued = [...leader.reads.waiting, ...(leader.reads.inRound?.batches ?? [])].filter((b) => b.kind === 'forwarded');
    expect(queued, 'queued once').to.have.length(1);
    const answers: PeerMessage[] = [];
    sim.msgHook = (m) => {
      if (m.type === 'readIndexReply') answers.push(m);
      return true;
    };
    sim.heal();
    ticksUntil(sim, () => sim.readsServed > served, 2);
    expect(sim.readsServed - served).to.equal(1);
    expect(answers, 'answered once').to.have.length(1);
  });

  it('a follower that learns of a new leader asks it, instead of failing its reads (and they see every committed write)', function () {
    const sim = simCluster(3, 3);
    settle(sim);
    sim.cut('p1', 'p3');
    const served = sim.readsServed;
    sim.read('p3', 3); // asked of p1, lost
    sim.stabilize();
    // p1 goes away for good; p2 and p3 elect p2, which commits writes before p3 hears of it.
    sim.isolate('p1');
    sim.forgetLeader(['p2', 'p3']);
    ticksUntil(sim, () => sim.core('p2').role !== 'follower', 40, ['p2']);
    sim.stabilize();
    expect(sim.leader(), report(sim)).to.equal('p2');
    expect(sim.core('p3').leader).to.equal('p2');
    sim.propose('p2', 2);
    sim.stabilize();
    const ticks = ticksUntil(sim, () => sim.readsServed - served === 3, 2, ['p2', 'p3']);
    expect(ticks, `served by way of the new leader${report(sim)}`).to.be.greaterThan(0);
  });

  it('a leader that loses its leadership holds its unconfirmed reads for the next leader', function () {
    const sim = simCluster(3, 3);
    settle(sim);
    sim.isolate('p1');
    const served = sim.readsServed;
    sim.read('p1', 2); // its round reaches no one
    sim.stabilize();
    // p1 steps down (check-quorum, §6.2); p2 is elected meanwhile.
    sim.forgetLeader(['p2', 'p3']);
    ticksUntil(sim, () => sim.core('p1').role !== 'leader', 40, ['p1']);
    ticksUntil(sim, () => sim.core('p2').role === 'leader', 40, ['p2']);
    expect(sim.core('p1').reads.forwarded.size, 'held, not failed').to.equal(1);
    sim.heal();
    const ticks = ticksUntil(sim, () => sim.readsServed - served === 2, 4, ['p2', 'p3']);
    expect(ticks, `served by way of the new leader${report(sim)}`).to.be.greaterThan(0);
  });

  it('a follower that is elected serves the reads it held with a round of its own', function () {
    const sim = simCluster(3, 3);
    settle(sim);
    sim.cut('p1', 'p3');
    const served = sim.readsServed;
    sim.read('p3', 1);
    sim.stabilize();
    sim.isolate('p1');
    sim.forgetLeader(['p2', 'p3']);
    ticksUntil(sim, () => sim.core('p3').role !== 'follower', 40, ['p3']);
    sim.stabilize();
    expect(sim.leader(), report(sim)).to.equal('p3');
    expect(sim.core('p3').reads.forwarded.size).to.equal(0);
    const ticks = ticksUntil(sim, () => sim.readsServed - served === 1, 2, ['p3']);
    expect(ticks, `served by p3's own round${report(sim)}`).to.be.within(0, 2);
  });

  it("the leader's own round rides on its next heartbeat when the round's messages are lost", function () {
    const sim = simCluster(3, 3);
    settle(sim);
    sim.ignore('appendEntries');
    const served = sim.readsServed;
    sim.read('p1', 1);
    sim.stabilize();
    expect(sim.readsServed - served).to.equal(0);
    sim.heal();
    const heartbeat = sim.core('p1').options.heartbeatTicks;
    const ticks = ticksUntil(sim, () => sim.readsServed - served === 1, heartbeat, ['p1']);
    expect(ticks, `served at the next heartbeat${report(sim)}`).to.be.within(1, heartbeat);
  });

  it('§6.4.1: a forwarded read whose request was lost is answered from the lease when asked again', function () {
    const sim = simCluster(3, 3, LEASE);
    settle(sim);
    sim.drop('p3', 'p1', 1); // p3 hears p1, p1 does not hear p3
    const served = sim.readsServed;
    sim.read('p3', 1);
    sim.stabilize();
    expect(sim.readsServed - served).to.equal(0);
    sim.heal();
    const roundBefore = sim.core('p1').reads.round;
    const ticks = ticksUntil(sim, () => sim.readsServed - served === 1, 2, ['p3']);
    expect(ticks, `served on p3's retry${report(sim)}`).to.be.within(1, 2);
    expect(sim.core('p1').reads.round, 'from the lease: no round').to.equal(roundBefore);
  });

  describe('random loss, then a heal: every read is served', function () {
    for (const peers of [3, 5]) {
      for (const lease of [false, true]) {
        it(`${peers} peers${lease ? ', lease reads' : ''}: 30% loss for 1 s, reads at every peer; all served within 100 ticks of the heal`, function () {
          for (let seed = 1; seed <= 10; seed++) lossRun(seed, peers, lease);
        });
      }
    }
  });
});

/**
 * `peers` peers under 30% loss on every message for a virtual second, a read at a random peer
 * every few ms (at peers that lead or know a leader, so none is refused), then the loss ends:
 * every read must be served, each one checked for linearizability; a failure shows the trace.
 */
function lossRun(seed: number, peers: number, lease: boolean): void {
  const sim = new Simulator({ peers, seed, core: lease ? LEASE : {}, traceSize: 400 });
  sim.bootstrap();
  expect(sim.runUntilCond(() => sim.leader() !== null, 5000), `seed ${seed}: a leader`).to.equal(true);
  const rng = new Rng(seed ^ 0x4ead);
  sim.net.dropP = 0.3;
  const lossEnds = sim.now + 1000;
  let issued = 0;
  const readServedBefore = sim.readsServed;
  const client = (): void => {
    if (sim.now >= lossEnds) return;
    const askable = sim.ids.filter((id) => {
      const c = sim.isUp(id) ? sim.core(id) : null;
      return c !== null && (c.role === 'leader' || (c.role === 'follower' && c.leader !== null));
    });
    if (askable.length > 0) {
      const n = rng.int(1, 3);
      sim.read(rng.pick(askable), n);
      issued += n;
    }
    // Sometimes a write, so read indexes move.
    const leader = sim.leader();
    if (leader !== null && rng.chance(0.3)) sim.propose(leader, 1);
    sim.at(sim.now + rng.int(3, 20), 'client', client);
  };
  sim.at(sim.now, 'client', client);
  sim.runUntil(lossEnds);
  sim.net.dropP = 0;
  const tickMs = sim.tickMs;
  const allServed = sim.runUntilCond(() => sim.readsServed - readServedBefore === issued, 100 * tickMs);
  expect(issued, 'reads issued').to.be.greaterThan(20);
  expect(sim.stats.dropped, 'messages lost').to.be.greaterThan(20);
  expect(allServed, `seed ${seed}: ${issued - (sim.readsServed - readServedBefore)} of ${issued} reads unanswered 100 ticks after the heal${report(sim)}`).to.equal(true);
}
