/**
 * Jepsen-style runs in `npm test`: a bounded set of seeds, each a few seconds of faults
 * against 5 real peers with concurrent clients, checked for linearizability and for every
 * peer applying the same log. Longer runs: `npm run torture -- --seconds N --seed S`.
 * `JEPSEN_SEEDS=1,2,3` picks the seeds, `JEPSEN_SECONDS` the length of each;
 * `JEPSEN_MEMBERSHIP_SEEDS` the seeds run with membership changes and leadership transfers
 * during the faults (3 voters of 5 peers at first, snapshots every 200 entries),
 * `JEPSEN_MEMBERSHIP_SECONDS` their length; `JEPSEN_EXACTLY_ONCE_SEEDS` the seeds run with
 * exactly-once writes (client sessions, thesis §6.3): the counting kv, an opId on every write,
 * short tries retried through the faults, and a check that no write was applied twice and
 * every acknowledged one exactly once. An empty list runs none of its kind.
 */
import { expect } from 'chai';
import fs from 'node:fs';
import { NotLeaderError, NodeStoppedError } from '../src/errors.js';
import { History, notAppliedSeen } from '../src/testing/history.js';
import { KvChecker } from '../src/testing/linearizability.js';
import { runJepsen } from '../src/testing/jepsen.js';
import { tempDir } from './helpers/cluster.js';

function seedList(value: string): number[] {
  return value.split(',').filter((v) => v !== '').map(Number);
}

const seeds = seedList(process.env.JEPSEN_SEEDS ?? '11,12,13');
/** Seeds run with lease reads (thesis §6.4.1) serving the gets. */
const leaseSeeds = seedList(process.env.JEPSEN_LEASE_SEEDS ?? '14');
/** Seeds run with membership changes (joint consensus), transfers and snapshots under the faults. */
const membershipSeeds = seedList(process.env.JEPSEN_MEMBERSHIP_SEEDS ?? '21');
/**
 * Seeds run with exactly-once writes, retried often, counted per opId by the peers (72: the
 * leader killed with writes in flight, crashes, partitions).
 */
const exactlyOnceSeeds = seedList(process.env.JEPSEN_EXACTLY_ONCE_SEEDS ?? '72');
const seconds = Number(process.env.JEPSEN_SECONDS ?? 6);
/** Membership seeds run a little longer, so several changes meet the faults. */
const membershipSeconds = Number(process.env.JEPSEN_MEMBERSHIP_SECONDS ?? 10);

describe('Jepsen-style runs: 5 peers, concurrent clients, seeded nemesis', function () {
  this.timeout(180_000);
  let checker: KvChecker;
  before(() => {
    checker = new KvChecker();
  });
  after(async () => {
    await checker.close();
  });

  const runs = [
    ...seeds.map((seed) => ({ seed, leaseReads: false, membership: false, exactlyOnce: false })),
    ...leaseSeeds.map((seed) => ({ seed, leaseReads: true, membership: false, exactlyOnce: false })),
    ...membershipSeeds.map((seed) => ({ seed, leaseReads: false, membership: true, exactlyOnce: false })),
    ...exactlyOnceSeeds.map((seed) => ({ seed, leaseReads: false, membership: false, exactlyOnce: true })),
  ];
  for (const { seed, leaseReads, membership, exactlyOnce } of runs) {
    const what = membership ? ' (membership changes)' : leaseReads ? ' (lease reads)' : exactlyOnce ? ' (exactly-once writes)' : '';
    const checks = membership
      ? 'the final voters applied the same log'
      : exactlyOnce
        ? 'every peer applied the same log, each write at most once and each acknowledged one exactly once'
        : 'every peer applied the same log';
    it(`seed ${seed}${what}: linearizable, and ${checks}`, async () => {
      const dataDir = tempDir('actor-raft-jepsen-');
      try {
        const result = await runJepsen({
          seed,
          seconds: membership ? membershipSeconds : seconds,
          dataDir,
          checker,
          leaseReads,
          membership,
          exactlyOnce,
        });
        expect(result.ok, result.report).to.equal(true);
        // Part of ok, named here: no read saw a write reported not applied.
        expect(result.divergence.filter((d) => d.startsWith('outcome:')), result.report).to.deep.equal([]);
        expect(result.outcomes.notApplied + result.outcomes.unknown, 'outcomes are counted of ops not acknowledged').to.be.at.most(result.ops - result.acknowledged);
        expect(result.acknowledged, 'the cluster made progress').to.be.greaterThan(100);
        expect(result.schedule.length, 'the nemesis acted').to.be.greaterThan(2);
        if (membership) {
          expect(result.changes.configs + result.changes.transfers, `membership steps were tried\n${result.report}`).to.be.greaterThan(0);
        }
        if (exactlyOnce) {
          expect(result.exactlyOnce, result.report).to.not.equal(null);
          const e = result.exactlyOnce!;
          expect(e.doubleApplied, `no write applied twice\n${result.report}`).to.equal(0);
          expect(e.ackedNotOnce, `every acknowledged write applied once\n${result.report}`).to.equal(0);
          expect(e.retries, `writes were retried (the exactly-once path ran)\n${result.report}`).to.be.greaterThan(0);
          // NotLeaderError means "not applied": never said of a write that may have been.
          expect(e.failed.applied1, `no write that failed was applied\n${result.report}`).to.equal(0);
        }
      } finally {
        fs.rmSync(dataDir, { recursive: true, force: true });
      }
    });
  }
});

describe('the outcome check of a history (notAppliedSeen)', () => {
  it('names a read that saw a value written by an op reported not applied', () => {
    let t = 0;
    const h = new History({ clock: () => t++ });
    h.invoke(1, { type: 'set', key: 'x', value: 5 }).error(new NotLeaderError(null));
    h.invoke(2, { type: 'cas', key: 'x', expected: null, value: 6 }).error(new NodeStoppedError('j1', 'stopped in flight', 'unknown'));
    h.invoke(3, { type: 'get', key: 'x' }).ok(6); // an unknown outcome may have taken effect
    expect(notAppliedSeen(h.ops())).to.deep.equal([]);
    h.invoke(3, { type: 'get', key: 'x' }).ok(5);
    const seen = notAppliedSeen(h.ops());
    expect(seen).to.have.length(1);
    expect(seen[0]).to.contain('op #3').and.contain('op #0').and.contain('NOT_LEADER');
    // The outcomes are recorded with the ops.
    expect(h.ops().map((o) => [o.status, o.outcome])).to.deep.equal([
      ['fail', 'not-applied'],
      ['info', 'unknown'],
      ['ok', undefined],
      ['ok', undefined],
    ]);
  });
});
