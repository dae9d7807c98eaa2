/**
 * Jepsen-style runs in `npm test`: a bounded set of seeds, each a few seconds of faults
 * against 5 real peers with concurrent clients, checked for linearizability and for every
 * peer applying the same log. Longer runs: `npm run torture -- --seconds N --seed S`.
 * `JEPSEN_SEEDS=1,2,3` picks the seeds, `JEPSEN_SECONDS` the length of each.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import { KvChecker } from '../src/testing/linearizability.js';
import { runJepsen } from '../src/testing/jepsen.js';
import { tempDir } from './helpers/cluster.js';

const seeds = (process.env.JEPSEN_SEEDS ?? '11,12,13').split(',').map(Number);
/** Seeds run with lease reads (thesis §6.4.1) serving the gets. */
const leaseSeeds = (process.env.JEPSEN_LEASE_SEEDS ?? '14').split(',').filter((v) => v !== '').map(Number);
const seconds = Number(process.env.JEPSEN_SECONDS ?? 6);

describe('Jepsen-style runs: 5 peers, concurrent clients, seeded nemesis', function () {
  this.timeout(180_000);
  let checker: KvChecker;
  before(() => {
    checker = new KvChecker();
  });
  after(async () => {
    await checker.close();
  });

  const runs = [...seeds.map((seed) => ({ seed, leaseReads: false })), ...leaseSeeds.map((seed) => ({ seed, leaseReads: true }))];
  for (const { seed, leaseReads } of runs) {
    it(`seed ${seed}${leaseReads ? ' (lease reads)' : ''}: linearizable, and every peer applied the same log`, async () => {
      const dataDir = tempDir('actor-raft-jepsen-');
      try {
        const result = await runJepsen({ seed, seconds, dataDir, checker, leaseReads });
        expect(result.ok, result.report).to.equal(true);
        expect(result.acknowledged, 'the cluster made progress').to.be.greaterThan(100);
        expect(result.schedule.length, 'the nemesis acted').to.be.greaterThan(2);
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    });
  }
});
