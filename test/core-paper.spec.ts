/**
 * The consensus core against the paper (Ongaro & Ousterhout, extended version), in the
 * manner of etcd's raft_paper_test.go: each case covers a few sentences of a section or a
 * figure and has three parts: init (cores built from a recovered log), step (inputs), check
 * (the effects and the state).
 *
 * Durability is part of every rule here (docs/architecture.md, "Rules of the protocol"): a vote or an
 * AppendEntries success leaves only after the `persisted` input for its write.
 */
import { expect } from 'chai';
import { createCore, type Effect } from '../src/core/index.js';
import type { AppendEntries, RequestVote } from '../src/messages.js';
import {
  appendReplies,
  appends,
  applied,
  command,
  configEntry,
  elect,
  grant,
  logOfTerms,
  payload,
  Peer,
  persists,
  settle,
  sends,
  termsOf,
  voteReplies,
  voteRequests,
} from './sim/core-harness.js';
import { MANUAL, Simulator } from './sim/simulator.js';

const P3 = ['a', 'b', 'c'];
const P5 = ['a', 'b', 'c', 'd', 'e'];
const enc = new TextEncoder();

function requestVote(from: string, to: string, term: number, lastLogIndex: number, lastLogTerm: number): RequestVote {
  return { type: 'requestVote', term, from, to, lastLogIndex, lastLogTerm };
}

function appendEntries(m: Omit<AppendEntries, 'type' | 'readSeq'> & { readSeq?: number }): AppendEntries {
  return { type: 'appendEntries', readSeq: 0, ...m };
}

/** a, leader of term 2 of {a, b, c}, with b and c holding its no-op (index 2) and every write durable. */
function threePeers(options = {}): { a: Peer; b: Peer; c: Peer } {
  const [a, b, c] = P3.map((id) => new Peer({ id, peers: P3, options })) as [Peer, Peer, Peer];
  const first = elect(a, ['b']);
  settle([a, b, c], [...sends(first), ...sends(a.ackAll())]);
  expect(a.core.commitIndex).to.equal(2);
  // A heartbeat tells the followers the commit index.
  settle([a, b, c], sends(a.tick(a.core.options.heartbeatTicks)));
  return { a, b, c };
}

function roleChanges(effects: readonly Effect[]) {
  return effects.flatMap((e) => (e.type === 'roleChanged' ? [{ role: e.role, term: e.term, leader: e.leader }] : []));
}

// -------------------------------------------------------------------------------------------------

describe('§5.2 leader election', function () {
  it('a follower that hears nothing for an election timeout campaigns: term + 1, votes for itself, asks every other voter', function () {
    const a = new Peer({ id: 'a', peers: P3 });
    const { ticks, effects } = a.tickUntil('candidate');
    expect(ticks).to.be.within(10, 19); // [electionTicks, 2·electionTicks)
    expect(a.core.currentTerm).to.equal(2);
    expect(a.core.votedFor).to.equal('a');
    const [write, ...more] = persists(effects);
    expect(more).to.deep.equal([]);
    expect(write).to.deep.include({ term: 2, votedFor: 'a', truncateFrom: 0, entries: [] });
    const reqs = voteRequests(effects);
    expect(reqs.map((m) => m.to).sort()).to.deep.equal(['b', 'c']);
    for (const m of reqs) expect(m).to.deep.include({ term: 2, from: 'a', lastLogIndex: 1, lastLogTerm: 1 });
    expect(roleChanges(effects)).to.deep.equal([{ role: 'candidate', term: 2, leader: null }]);
  });

  it('a candidate that wins a majority becomes leader, appends a no-op of its term (§8) and sends AppendEntries to every follower', function () {
    const a = new Peer({ id: 'a', peers: P3 });
    a.tickUntil('candidate');
    a.ackAll();
    const effects = a.receive(grant('b', 'a', 2));
    expect(a.core.role).to.equal('leader');
    expect(a.core.leader).to.equal('a');
    expect(a.core.log.entry(2)).to.deep.equal({ type: 'noop', index: 2, term: 2 });
    expect(persists(effects).flatMap((w) => w.entries)).to.deep.equal([{ type: 'noop', index: 2, term: 2 }]);
    const aes = appends(effects);
    expect(aes.map((m) => m.to).sort()).to.deep.equal(['b', 'c']);
    for (const m of aes) {
      expect(m).to.deep.include({ term: 2, from: 'a', prevLogIndex: 1, prevLogTerm: 1, leaderCommit: 0 });
      expect(m.entries).to.deep.equal([{ type: 'noop', index: 2, term: 2 }]);
    }
    expect(roleChanges(effects)).to.deep.equal([{ role: 'leader', term: 2, leader: 'a' }]);
  });

  it('a candidate counts its own vote only once that vote is durable', function () {
    const a = new Peer({ id: 'a', peers: P3 });
    a.tickUntil('candidate');
    a.receive(grant('b', 'a', 2));
    expect(a.core.role, 'one durable vote of three').to.equal('candidate');
    a.ackAll();
    expect(a.core.role).to.equal('leader');
  });

  // Regression, found by test/core-sim.spec.ts (see countVotes in src/core/step.ts).
  it('a candidate does not lead on the others’ votes alone while its own term and vote are not yet durable', function () {
    const a = new Peer({ id: 'a', peers: P3 });
    a.tickUntil('candidate');
    a.receive(grant('b', 'a', 2));
    const effects = a.receive(grant('c', 'a', 2));
    expect(a.core.role, 'b and c are a majority, but a could still restart in term 1').to.equal('candidate');
    expect(appends(effects)).to.deep.equal([]);
    a.ackAll();
    expect(a.core.role).to.equal('leader');
  });

  it('a candidate refused by a majority returns to follower in the same term, keeping its vote', function () {
    const a = new Peer({ id: 'a', peers: P3 });
    a.tickUntil('candidate');
    a.ackAll();
    a.receive(grant('b', 'a', 2, false));
    expect(a.core.role, 'c may still grant').to.equal('candidate');
    a.receive(grant('c', 'a', 2, false));
    expect(a.core.role).to.equal('follower');
    expect(a.core.currentTerm).to.equal(2);
    expect(a.core.votedFor).to.equal('a');
  });

  it('a candidate steps down on AppendEntries of its own term: another peer won the election', function () {
    const a = new Peer({ id: 'a', peers: P3 });
    a.tickUntil('candidate');
    a.ackAll();
    const effects = a.receive(
      appendEntries({ term: 2, from: 'b', to: 'a', prevLogIndex: 1, prevLogTerm: 1, entries: [{ type: 'noop', index: 2, term: 2 }], leaderCommit: 1 }),
    );
    expect(a.core.role).to.equal('follower');
    expect(a.core.leader).to.equal('b');
    expect(a.core.currentTerm).to.equal(2);
    expect(termsOf(a.core)).to.deep.equal([1, 2]);
    expect(appendReplies(effects), 'withheld until the no-op is durable').to.deep.equal([]);
    expect(appendReplies(a.ackAll())).to.deep.equal([
      { type: 'appendEntriesReply', term: 2, from: 'a', to: 'b', success: true, matchIndex: 2, rejectedIndex: 0, conflictIndex: 0, conflictTerm: 0, readSeq: 0 },
    ]);
  });

  it('a leader or candidate steps down on any message of a higher term (§5.1)', function () {
    const { a } = threePeers();
    const effects = a.receive({ type: 'requestVoteReply', term: 5, from: 'c', to: 'a', granted: false });
    expect(a.core.role).to.equal('follower');
    expect(a.core.currentTerm).to.equal(5);
    expect(a.core.votedFor).to.equal(null);
    expect(persists(effects)).to.have.length(1);
    expect(persists(effects)[0]).to.deep.include({ term: 5, votedFor: null });
  });

  it('randomized election timeouts: peers time out after different numbers of ticks, each in [electionTicks, 2·electionTicks)', function () {
    const timeouts = Array.from({ length: 20 }, (_, seed) => new Peer({ id: 'a', peers: P3, seed }).tickUntil('candidate').ticks);
    for (const t of timeouts) expect(t).to.be.within(10, 19);
    expect(new Set(timeouts).size, `timeouts ${timeouts.join(' ')}`).to.be.greaterThan(3);
    // A split vote is retried after a new random timeout, in a new term.
    const a = new Peer({ id: 'a', peers: P3, seed: 3 });
    a.tickUntil('candidate');
    a.ackAll();
    let ticks = 0;
    while (a.core.currentTerm === 2) {
      a.tick(1);
      ticks++;
    }
    expect(ticks).to.be.within(10, 19);
    expect(a.core.currentTerm).to.equal(3);
    expect(a.core.role).to.equal('candidate');
  });

  it('a vote is sent only once it is durable', function () {
    const b = new Peer({ id: 'b', peers: P3 });
    const effects = b.receive(requestVote('a', 'b', 2, 1, 1));
    expect(voteReplies(effects)).to.deep.equal([]);
    expect(persists(effects)).to.have.length(1);
    expect(persists(effects)[0]).to.deep.include({ term: 2, votedFor: 'a' });
    expect(voteReplies(b.ackAll())).to.deep.equal([{ type: 'requestVoteReply', term: 2, from: 'b', to: 'a', granted: true }]);
  });

  it('at most one vote per term, first come first served, kept across a restart', function () {
    const b = new Peer({ id: 'b', peers: P3 });
    b.receive(requestVote('a', 'b', 2, 1, 1));
    b.ackAll();
    const refused = [...b.receive(requestVote('c', 'b', 2, 1, 1)), ...b.ackAll()];
    expect(voteReplies(refused)).to.deep.equal([{ type: 'requestVoteReply', term: 2, from: 'b', to: 'c', granted: false }]);
    // The same candidate asking again (its reply was lost) gets the same answer.
    expect(voteReplies([...b.receive(requestVote('a', 'b', 2, 1, 1)), ...b.ackAll()])[0]!.granted).to.equal(true);
    // Restarted from what is durable: still a's vote in term 2.
    const restarted = new Peer({ id: 'b', peers: P3, term: 2, votedFor: 'a' });
    expect(voteReplies([...restarted.receive(requestVote('c', 'b', 2, 1, 1)), ...restarted.ackAll()])[0]!.granted).to.equal(false);
  });

  it('a RequestVote of an older term is refused with the current term', function () {
    const b = new Peer({ id: 'b', peers: P3, term: 3 });
    const effects = [...b.receive(requestVote('a', 'b', 2, 5, 2)), ...b.ackAll()];
    expect(voteReplies(effects)).to.deep.equal([{ type: 'requestVoteReply', term: 3, from: 'b', to: 'a', granted: false }]);
    expect(b.core.votedFor).to.equal(null);
  });
});

// -------------------------------------------------------------------------------------------------

describe('§5.3 log replication', function () {
  const op = (id: number) => ({ id, command: enc.encode(`op ${id}`) });

  it('the leader appends a proposal to its log and sends it to every follower before its own write is durable', function () {
    const { a } = threePeers();
    const effects = a.step({ type: 'propose', requests: [op(7)] });
    const entry = a.core.log.entry(3)!;
    expect(entry).to.deep.include({ type: 'command', index: 3, term: 2 });
    expect(persists(effects)[0]!.entries).to.deep.equal([entry]);
    for (const to of ['b', 'c']) {
      const [m] = appends(effects, to);
      expect(m, to).to.deep.include({ term: 2, prevLogIndex: 2, prevLogTerm: 2, leaderCommit: 2 });
      expect(m!.entries).to.deep.equal([entry]);
    }
    expect(applied(effects)).to.deep.equal([]);
  });

  it('the leader commits an entry once a majority stored it, applies it and names the waiting request', function () {
    const { a, b } = threePeers();
    const effects = a.step({ type: 'propose', requests: [op(7)] });
    a.ackAll();
    expect(a.core.commitIndex, 'only the leader has it').to.equal(2);
    const [reply] = appendReplies([...b.receive(appends(effects, 'b')[0]!), ...b.ackAll()]);
    expect(reply).to.deep.include({ success: true, matchIndex: 3 });
    const done = a.receive(reply!);
    expect(a.core.commitIndex).to.equal(3);
    expect(done.filter((e) => e.type === 'apply')).to.deep.equal([{ type: 'apply', entries: [a.core.log.entry(3)], requestIds: [7] }]);
  });

  it('the leader counts itself toward a majority only once its own write is durable', function () {
    const { a, b } = threePeers();
    const effects = a.step({ type: 'propose', requests: [op(7)] });
    const [reply] = appendReplies([...b.receive(appends(effects, 'b')[0]!), ...b.ackAll()]);
    a.receive(reply!);
    expect(a.core.commitIndex, "b has it durably, a's own write is pending").to.equal(2);
    const acked = a.ackAll();
    expect(a.core.commitIndex).to.equal(3);
    expect(applied(acked).map((e) => e.index)).to.deep.equal([3]);
  });

  it('a majority of followers commits even before the leader’s own write lands (thesis §10.2.1)', function () {
    const { a, b, c } = threePeers();
    const effects = a.step({ type: 'propose', requests: [op(7)] });
    for (const f of [b, c]) a.receive(appendReplies([...f.receive(appends(effects, f.id)[0]!), ...f.ackAll()])[0]!);
    expect(a.core.commitIndex).to.equal(3);
  });

  it('a follower learns the commit index from leaderCommit, never beyond the last entry it checked against the leader', function () {
    // b holds entries 2..4 from a deposed leader of term 2; the leader of term 3 has committed 4 entries of its own.
    const b = new Peer({ id: 'b', peers: P3, term: 2, entries: logOfTerms(P3, [1, 2, 2, 2]) });
    const hb = [...b.receive(appendEntries({ term: 3, from: 'a', to: 'b', prevLogIndex: 1, prevLogTerm: 1, entries: [], leaderCommit: 4 })), ...b.ackAll()];
    expect(b.core.commitIndex, 'entries 2..4 were not checked, they may conflict').to.equal(1);
    expect(applied(hb).map((e) => e.index)).to.deep.equal([1]);
    const next = [
      ...b.receive(appendEntries({ term: 3, from: 'a', to: 'b', prevLogIndex: 1, prevLogTerm: 1, entries: [command(2, 3)], leaderCommit: 4 })),
      ...b.ackAll(),
    ];
    expect(termsOf(b.core)).to.deep.equal([1, 3]);
    expect(b.core.commitIndex).to.equal(2);
    expect(applied(next).map((e) => `${e.index}/${e.term}`)).to.deep.equal(['2/3']);
  });

  it('consistency check: a follower without an entry at prevLogIndex rejects, hinting the index after its last', function () {
    const b = new Peer({ id: 'b', peers: P3, term: 2, entries: logOfTerms(P3, [1, 2]) });
    const effects = [...b.receive(appendEntries({ term: 2, from: 'a', to: 'b', prevLogIndex: 5, prevLogTerm: 2, entries: [command(6, 2)], leaderCommit: 0 })), ...b.ackAll()];
    expect(appendReplies(effects)).to.deep.equal([
      { type: 'appendEntriesReply', term: 2, from: 'b', to: 'a', success: false, matchIndex: 0, rejectedIndex: 5, conflictIndex: 3, conflictTerm: 0, readSeq: 0 },
    ]);
    expect(termsOf(b.core)).to.deep.equal([1, 2]);
  });

  it('consistency check: a term mismatch at prevLogIndex rejects, naming the conflicting term and where it starts', function () {
    const b = new Peer({ id: 'b', peers: P3, term: 2, entries: logOfTerms(P3, [1, 2, 2, 2]) });
    const effects = [...b.receive(appendEntries({ term: 3, from: 'a', to: 'b', prevLogIndex: 4, prevLogTerm: 3, entries: [], leaderCommit: 0 })), ...b.ackAll()];
    expect(appendReplies(effects)).to.deep.equal([
      { type: 'appendEntriesReply', term: 3, from: 'b', to: 'a', success: false, matchIndex: 0, rejectedIndex: 4, conflictIndex: 2, conflictTerm: 2, readSeq: 0 },
    ]);
    expect(termsOf(b.core), 'a rejection changes nothing').to.deep.equal([1, 2, 2, 2]);
  });

  it('a conflicting entry and everything after it are deleted and replaced, in one write', function () {
    const b = new Peer({ id: 'b', peers: P3, term: 2, entries: logOfTerms(P3, [1, 2, 2, 2]) });
    const effects = b.receive(appendEntries({ term: 3, from: 'a', to: 'b', prevLogIndex: 2, prevLogTerm: 2, entries: [command(3, 3)], leaderCommit: 0 }));
    expect(termsOf(b.core)).to.deep.equal([1, 2, 3]);
    const writes = persists(effects);
    expect(writes).to.have.length(1);
    expect(writes[0]).to.deep.include({ term: 3, truncateFrom: 3 });
    expect(writes[0]!.entries.map((e) => payload(e))).to.deep.equal(['3/3']);
  });

  it('an AppendEntries success is withheld until the entries are durable', function () {
    const b = new Peer({ id: 'b', peers: P3, term: 2, entries: logOfTerms(P3, [1, 2]) });
    const effects = b.receive(appendEntries({ term: 2, from: 'a', to: 'b', prevLogIndex: 2, prevLogTerm: 2, entries: [command(3, 2)], leaderCommit: 2 }));
    expect(sends(effects)).to.deep.equal([]);
    expect(persists(effects)[0]!.entries.map((e) => e.index)).to.deep.equal([3]);
    // A heartbeat meanwhile claims index 3 too: it waits for the same write.
    expect(sends(b.receive(appendEntries({ term: 2, from: 'a', to: 'b', prevLogIndex: 3, prevLogTerm: 2, entries: [], leaderCommit: 2 })))).to.deep.equal([]);
    const replies = appendReplies(b.ackAll());
    expect(replies.map((r) => [r.success, r.matchIndex])).to.deep.equal([
      [true, 3],
      [true, 3],
    ]);
    // With nothing pending, an answer about durable entries goes at once.
    expect(appendReplies(b.receive(appendEntries({ term: 2, from: 'a', to: 'b', prevLogIndex: 3, prevLogTerm: 2, entries: [], leaderCommit: 3 }))))
      .to.have.length(1);
  });

  it('a stale or duplicated AppendEntries never truncates', function () {
    const b = new Peer({ id: 'b', peers: P3, term: 2, entries: logOfTerms(P3, [1, 2, 2, 2, 2]) });
    // An early AppendEntries of the current leader, delivered late: it carries entry 2 only.
    const effects = b.receive(appendEntries({ term: 2, from: 'a', to: 'b', prevLogIndex: 1, prevLogTerm: 1, entries: [command(2, 2)], leaderCommit: 1 }));
    expect(termsOf(b.core)).to.deep.equal([1, 2, 2, 2, 2]);
    expect(persists(effects)).to.deep.equal([]);
    expect(appendReplies(effects).map((r) => [r.success, r.matchIndex])).to.deep.equal([[true, 2]]);
  });

  it('an AppendEntries of an older term is refused with the current term and leaves the log alone', function () {
    const b = new Peer({ id: 'b', peers: P3, term: 3, entries: logOfTerms(P3, [1, 2]) });
    const effects = b.receive(appendEntries({ term: 2, from: 'a', to: 'b', prevLogIndex: 2, prevLogTerm: 2, entries: [command(3, 2)], leaderCommit: 3 }));
    expect(termsOf(b.core)).to.deep.equal([1, 2]);
    expect(b.core.commitIndex).to.equal(0);
    expect(appendReplies(effects).map((r) => [r.term, r.success])).to.deep.equal([[3, false]]);
  });

  it('a new leader commits the entries of earlier terms together with its own no-op (§5.4.2, §8)', function () {
    const entries = logOfTerms(P3, [1, 2, 2]);
    const a = new Peer({ id: 'a', peers: P3, term: 2, entries });
    const b = new Peer({ id: 'b', peers: P3, term: 2, entries });
    const first = elect(a, ['b']);
    expect(termsOf(a.core)).to.deep.equal([1, 2, 2, 3]);
    expect(a.core.log.entry(4)!.type).to.equal('noop');
    settle([a, b], [...sends(first), ...sends(a.ackAll())]);
    expect(a.core.commitIndex).to.equal(4);
    expect(applied(a.history).map((e) => e.index)).to.deep.equal([1, 2, 3, 4]);
  });

  it('heartbeats: an idle leader sends AppendEntries to every follower every heartbeatTicks ticks', function () {
    const { a } = threePeers({ heartbeatTicks: 3 });
    for (let round = 0; round < 3; round++) {
      expect(sends(a.tick(1)), `round ${round}, tick 1`).to.deep.equal([]);
      expect(sends(a.tick(1)), `round ${round}, tick 2`).to.deep.equal([]);
      const beats = appends(a.tick(1));
      expect(beats.map((m) => m.to).sort()).to.deep.equal(['b', 'c']);
      for (const m of beats) expect(m).to.deep.include({ term: 2, prevLogIndex: 2, prevLogTerm: 2, entries: [], leaderCommit: 2 });
    }
  });

  it('nextIndex backs off fast: one rejection per conflicting term, not one per entry', function () {
    const P = ['l', 'f'];
    // 1 + 40 entries of term 2 and 40 of term 3 on the follower; the leader has 80 of term 4 after the first.
    const followerTerms = [1, ...Array<number>(40).fill(2), ...Array<number>(40).fill(3)];
    const leaderTerms = [1, ...Array<number>(80).fill(4)];
    const l = new Peer({ id: 'l', peers: P, term: 4, entries: logOfTerms(P, leaderTerms) });
    const f = new Peer({ id: 'f', peers: P, term: 3, entries: logOfTerms(P, followerTerms) });
    const { rejections } = settle([l, f], sends(elect(l, ['f'])));
    expect(termsOf(f.core)).to.deep.equal(termsOf(l.core));
    expect(rejections, 'terms 3 and 2 conflict').to.be.at.most(2);
  });
});

// -------------------------------------------------------------------------------------------------

describe('§5.3 Figure 7: a new leader brings every follower log to its own', function () {
  // The leader of term 8 and the followers' logs (a)–(f), one term per index.
  const P7 = ['L', 'a', 'b', 'c', 'd', 'e', 'f'];
  const leaderTerms = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6];
  const followers: Record<string, number[]> = {
    a: [1, 1, 1, 4, 4, 5, 5, 6, 6], // missing entries
    b: [1, 1, 1, 4], // missing entries
    c: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6], // an extra uncommitted entry
    d: [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7], // extra uncommitted entries of a later term
    e: [1, 1, 1, 4, 4, 4, 4], // missing entries and extra entries
    f: [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3], // extra entries of terms 2 and 3, missing the rest
  };
  const rounds: string[] = [];
  after(function () {
    console.log(`      Figure 7, AppendEntries rejected before the logs matched: ${rounds.join(' ')}`);
  });

  for (const [name, terms] of Object.entries(followers)) {
    it(`(${name}) follower [${terms.join(' ')}] ends with the leader's log`, function () {
      const leader = new Peer({ id: 'L', peers: P7, term: 7, entries: logOfTerms(P7, leaderTerms) });
      const first = elect(leader, ['b', 'e', 'f']);
      expect(leader.core.currentTerm).to.equal(8);
      const follower = new Peer({ id: name, peers: P7, term: Math.max(...terms), entries: logOfTerms(P7, terms) });
      const { rejections } = settle([leader, follower], sends(first));
      rounds.push(`(${name})=${rejections}`);
      expect(termsOf(follower.core)).to.deep.equal([...leaderTerms, 8]);
      const content = (p: Peer) => p.core.log.slice(1, p.core.log.lastIndex).map(payload);
      expect(content(follower)).to.deep.equal(content(leader));
      expect(leader.core.progress.get(name)!.matchIndex).to.equal(11);
    });
  }
});

// -------------------------------------------------------------------------------------------------

describe('§5.4.1 election restriction', function () {
  // The voter's log ends at index 3 with term 2.
  const cases: { candidateLast: [index: number, term: number]; granted: boolean; why: string }[] = [
    { candidateLast: [2, 3], granted: true, why: 'a later last term wins over a longer log' },
    { candidateLast: [10, 1], granted: false, why: 'an earlier last term loses, however long the log' },
    { candidateLast: [2, 2], granted: false, why: 'same last term, shorter log' },
    { candidateLast: [3, 2], granted: true, why: 'same last term, same length' },
    { candidateLast: [5, 2], granted: true, why: 'same last term, longer log' },
  ];
  for (const { candidateLast, granted, why } of cases) {
    it(`${granted ? 'grants' : 'refuses'} a candidate whose log ends at ${candidateLast[0]}/${candidateLast[1]}: ${why}`, function () {
      const voter = new Peer({ id: 'b', peers: P3, term: 2, entries: logOfTerms(P3, [1, 2, 2]) });
      const effects = [...voter.receive(requestVote('a', 'b', 3, ...candidateLast)), ...voter.ackAll()];
      expect(voteReplies(effects)).to.deep.equal([{ type: 'requestVoteReply', term: 3, from: 'b', to: 'a', granted }]);
      expect(voter.core.currentTerm).to.equal(3);
      expect(voter.core.votedFor).to.equal(granted ? 'a' : null);
    });
  }
});

// -------------------------------------------------------------------------------------------------

describe('§5.4.2 Figure 8: committing entries from previous terms', function () {
  it('a leader does not commit an entry of an earlier term by counting replicas, only with an entry of its own term', function () {
    // 5 peers; a has an entry of term 2 at index 2 that nobody else has, and is elected in term 4.
    const a = new Peer({ id: 'a', peers: P5, term: 3, entries: logOfTerms(P5, [1, 2]) });
    elect(a, ['b', 'c']);
    a.ackAll();
    expect(termsOf(a.core)).to.deep.equal([1, 2, 4]);
    const ok = (from: string, matchIndex: number) =>
      a.receive({ type: 'appendEntriesReply', term: 4, from, to: 'a', success: true, matchIndex, rejectedIndex: 0, conflictIndex: 0, conflictTerm: 0, readSeq: 0 });
    ok('b', 2);
    ok('c', 2);
    expect(a.core.commitIndex, 'index 2 is on a, b and c, but it is of term 2').to.equal(0);
    ok('b', 3);
    expect(a.core.commitIndex, 'the no-op of term 4 is on a and b only').to.equal(0);
    const effects = ok('c', 3);
    expect(a.core.commitIndex, 'the no-op of term 4 is on a majority').to.equal(3);
    expect(applied(effects).map((e) => `${e.index}/${e.term}`)).to.deep.equal(['1/1', '2/2', '3/4']);
  });

  /**
   * The figure, played by five cores in the simulator (invariants checked after every event).
   * Our leaders append a no-op at the start of each term, so every index is one higher than in
   * the figure: the contested entry is at index 3, not 2.
   */
  function figure8(): Simulator {
    // The paper's elections: no pre-vote (§9.6), which would stop p5 from even trying in (d).
    const sim = new Simulator({ peers: 5, seed: 8, core: { maxEntriesPerAppend: 1, preVote: false }, ...MANUAL });
    sim.bootstrap('p1');
    sim.stabilize();
    sim.tick(1, ['p1']);
    sim.stabilize();
    expect(sim.ids.map((id) => sim.core(id).commitIndex)).to.deep.equal([2, 2, 2, 2, 2]);
    const electing = (id: string) => {
      for (let k = 0; k < 200 && sim.core(id).role !== 'leader'; k++) {
        sim.forgetLeader();
        sim.tick(1, [id]);
        sim.stabilize();
      }
      expect(sim.core(id).role, `${id} elected`).to.equal('leader');
    };
    // (a) p1, leader of term 2, replicates X at index 3 to p2 only.
    for (const id of ['p3', 'p4', 'p5']) sim.cut('p1', id);
    sim.propose('p1', 1);
    sim.stabilize();
    expect(termsOf(sim.core('p2'))).to.deep.equal([1, 2, 2]);
    // (b) p1 crashes; p5 is elected in term 3 by p3 and p4 and appends entries nobody receives.
    sim.crash('p1');
    sim.heal();
    sim.ignore('appendEntries');
    electing('p5');
    expect(sim.core('p5').currentTerm).to.equal(3);
    sim.propose('p5', 1);
    sim.flush('p5');
    sim.crash('p5');
    sim.heal();
    expect(sim.peer('p5').disk.entries.map((e) => e.term)).to.deep.equal([1, 2, 3, 3]);
    // (c) p1 restarts and is elected in term 4; it brings X to p3 and p4, so X is on a
    // majority (p1..p4), but its own no-op does not get through.
    sim.restart('p1');
    sim.msgHook = (m) =>
      !(m.type === 'appendEntries' && m.entries.some((e) => e.term === 4) && (sim.peer(m.to).core?.log.lastIndex ?? 0) >= 3);
    electing('p1');
    expect(sim.core('p1').currentTerm).to.equal(4);
    for (const id of ['p2', 'p3', 'p4']) expect(termsOf(sim.core(id)), id).to.deep.equal([1, 2, 2]);
    expect(sim.core('p1').progress.get('p3')!.matchIndex).to.equal(3);
    expect(sim.core('p1').progress.get('p4')!.matchIndex).to.equal(3);
    return sim;
  }

  it('(c)→(d): X, of term 2, on a majority but uncommitted, is overwritten by a later leader; nobody ever applied it', function () {
    const sim = figure8();
    // p1 restarted (commitIndex 0) and has replicated nothing of term 4 to a majority: X, of
    // term 2, does not count toward a commit however many peers hold it.
    expect(sim.core('p1').commitIndex, 'X is of term 2; p1 leads term 4').to.equal(0);
    expect(sim.checker.committedAt(3), 'nobody committed index 3').to.equal(undefined);
    const x = sim.core('p1').log.entry(3)!;
    // (d) p1 crashes; p5 (last term 3) is elected by p2, p3, p4 (last term 2) and overwrites X.
    sim.crash('p1');
    sim.msgHook = null;
    sim.restart('p5');
    for (let k = 0; k < 200 && sim.core('p5').role !== 'leader'; k++) {
      sim.forgetLeader();
      sim.tick(1, ['p5']);
      sim.stabilize();
    }
    expect(sim.core('p5').role).to.equal('leader');
    sim.tick(1, ['p5']);
    sim.stabilize();
    for (const id of ['p2', 'p3', 'p4', 'p5']) {
      expect(termsOf(sim.core(id)), id).to.deep.equal([1, 2, 3, 3, sim.core('p5').currentTerm]);
    }
    expect(sim.checker.committedAt(3)!.term).to.equal(3);
    for (const p of sim.peers.values()) expect(p.applied[2], p.id).to.not.equal(payload(x));
  });

  it('(c)→(e): once p1’s no-op of term 4 is on a majority, X commits with it, and p5 can no longer be elected', function () {
    const sim = figure8();
    sim.msgHook = null;
    sim.tick(1, ['p1']);
    sim.stabilize();
    expect(sim.core('p1').commitIndex).to.equal(4);
    expect(sim.checker.committedAt(3)!.term, 'X').to.equal(2);
    sim.crash('p1');
    sim.restart('p5');
    for (let k = 0; k < 300 && sim.leader() === null; k++) {
      sim.tick(1, ['p2', 'p3', 'p4', 'p5']);
      sim.stabilize();
    }
    const leader = sim.leader();
    expect(leader).to.be.oneOf(['p2', 'p3', 'p4']);
    expect(sim.core(leader!).log.entry(3)!.term, 'X survives').to.equal(2);
  });
});

// -------------------------------------------------------------------------------------------------

describe('recovery (§5.1 persistent state)', function () {
  it('a restarted core resumes from its durable term, vote and log, with commitIndex and lastApplied at 0', function () {
    const core = createCore({ id: 'b', seed: 1, term: 5, votedFor: 'a', entries: [configEntry(P3), command(2, 3), command(3, 5)] });
    expect(core.currentTerm).to.equal(5);
    expect(core.votedFor).to.equal('a');
    expect(core.log.lastIndex).to.equal(3);
    expect(core.commitIndex).to.equal(0);
    expect(core.lastApplied).to.equal(0);
    expect(core.role).to.equal('follower');
  });
});
