/**
 * The deterministic simulator's manual harness (test/sim/simulator.ts) set up for the core's
 * scenario specs: a cluster bootstrapped with p1 as its leader, and ways to drive it until
 * something holds. Invariants are checked after every simulated event.
 */
import { expect } from 'chai';
import type { CoreOptions } from '../../src/core/index.js';
import { MANUAL, Simulator } from '../sim/simulator.js';

/** `peers` simulated peers, the first `members` of them bootstrapped as the cluster, led by p1. */
export function simCluster(peers: number, members: number, core: Partial<CoreOptions> = {}): Simulator {
  const sim = new Simulator({ peers, members, seed: 5, core, ...MANUAL });
  sim.bootstrap('p1');
  sim.stabilize();
  expect(sim.leader()).to.equal('p1');
  return sim;
}

/** Heartbeats until nothing is left to say: followers learn the last commit index. */
export function settle(sim: Simulator, rounds = 3): void {
  for (let k = 0; k < rounds; k++) {
    const leader = sim.leader();
    if (leader !== null) sim.tick(1, [leader]);
    sim.stabilize();
  }
}

/** How the membership change or transfer `id` ended (or 'pending'). */
export function outcome(sim: Simulator, id: number): string {
  return sim.adminResults.get(id)!.outcome;
}

/** Drive deliveries and disk flushes one round at a time until `cond` holds. */
export function stepUntil(sim: Simulator, cond: () => boolean, what: string): void {
  for (let k = 0; k < 1000 && !cond(); k++) {
    sim.flushAll();
    sim.deliver();
  }
  expect(cond(), what).to.equal(true);
}
