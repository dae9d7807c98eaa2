/**
 * Real peers: a `read()` at a follower whose ReadIndex request was lost to a partition is
 * answered soon after the partition heals (the follower asks again every heartbeat interval,
 * thesis §6.4), not at the end of its timeout.
 */
import { expect } from 'chai';
import { nemesis, op, read } from '../src/api/index.js';
import { realCluster } from './helpers/cluster.js';

describe('reads on real peers recover from a cut', function () {
  this.timeout(60_000);
  const fixture = realCluster();

  for (const leaseReads of [false, true]) {
    it(`a read() issued at a follower cut from the leader answers well before its timeout once healed${leaseReads ? ' (lease reads)' : ''}`, async () => {
      const ids = ['a', 'b', 'c'];
      const { leader } = await fixture.startCluster(ids, { leaseReads });
      const [follower, other] = ids.filter((id) => id !== leader) as [string, string];
      await op(leader, { type: 'set', key: 'k', value: 1 });
      expect(await read(follower, { type: 'get', key: 'k' })).to.equal(1);
      // The follower hears no one but `other`; `other` still hears the leader, so no
      // election follows (pre-vote, §9.6) and the follower's leader stays the same.
      await nemesis.partition([[leader, other], [follower, other]]);
      await op(leader, { type: 'set', key: 'k', value: 2 });
      const answer = read(follower, { type: 'get', key: 'k' }, { timeoutMs: 8000 });
      await new Promise((r) => setTimeout(r, 200));
      await nemesis.heal();
      const healedAt = Date.now();
      // Before the fix its one request stayed lost and the read took its whole 8 s.
      expect(await answer, 'sees the write acknowledged before it').to.equal(2);
      expect(Date.now() - healedAt, 'ms from the heal to the answer').to.be.lessThan(3000);
    });
  }
});
