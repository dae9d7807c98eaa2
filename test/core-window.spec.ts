/**
 * The leader's replication window per follower is bounded in messages and in bytes, so a
 * slow or silent follower can hold up only a bounded amount of the leader's sends.
 */
import { expect } from 'chai';
import { createCore, step, type CoreState, type Effect } from '../src/core/index.js';
import type { AppendEntries, PeerMessage } from '../src/messages.js';

const OPTIONS = { maxEntriesPerAppend: 1000, maxInflightAppends: 100, maxAppendBytes: 8 * 1024, maxInflightBytes: 32 * 1024 };

/** Elect `a` leader of {a, b}, every write acknowledged at once; from then on b is silent. */
function twoPeers(): { a: CoreState } {
  const cores = { a: createCore({ id: 'a', seed: 1, options: OPTIONS }), b: createCore({ id: 'b', seed: 2, options: OPTIONS }) };
  const queue: PeerMessage[] = [];
  const run = (id: 'a' | 'b', input: Parameters<typeof step>[1]): void => {
    const { state, effects } = step(cores[id], input);
    cores[id] = state;
    for (const e of effects as Effect[]) {
      if (e.type === 'persist') run(id, { type: 'persisted', seq: e.write.seq });
      else if (e.type === 'send') queue.push(e.message);
    }
  };
  run('a', { type: 'bootstrap', peers: ['a', 'b'] });
  while (queue.length > 0) {
    const m = queue.shift()!;
    run(m.to as 'a' | 'b', { type: 'message', message: m });
  }
  expect(cores.a.role).to.equal('leader');
  return { a: cores.a };
}

function sent(effects: Effect[]): AppendEntries[] {
  return effects.flatMap((e) => (e.type === 'send' && e.message.type === 'appendEntries' && e.message.entries.length > 0 ? [e.message] : []));
}

const bytesOf = (m: AppendEntries) => m.entries.reduce((n, e) => n + 16 + (e.type === 'command' ? e.data.length : 0), 0);

describe('replication window per follower (bytes and count)', () => {
  it('a silent follower is sent at most maxInflightBytes (+ one AppendEntries) however much is proposed', () => {
    let { a } = twoPeers();
    const out: AppendEntries[] = [];
    for (let i = 0; i < 500; i++) {
      const r = step(a, { type: 'propose', requests: [{ id: i, command: new Uint8Array(1024) }] });
      a = r.state;
      out.push(...sent(r.effects));
      for (const e of r.effects) if (e.type === 'persist') a = step(a, { type: 'persisted', seq: e.write.seq }).state;
    }
    const total = out.reduce((n, m) => n + bytesOf(m), 0);
    expect(total).to.be.at.most(OPTIONS.maxInflightBytes + OPTIONS.maxAppendBytes);
    expect(total).to.be.at.least(OPTIONS.maxInflightBytes);
    for (const m of out) expect(bytesOf(m)).to.be.at.most(OPTIONS.maxAppendBytes);
    // Once the follower acknowledges, the window reopens and replication resumes in order.
    const last = out[out.length - 1]!;
    const matchIndex = last.prevLogIndex + last.entries.length;
    const r = step(a, {
      type: 'message',
      message: { type: 'appendEntriesReply', term: a.currentTerm, from: 'b', to: 'a', success: true, matchIndex, rejectedIndex: 0, conflictIndex: 0, conflictTerm: 0, readSeq: 0 },
    });
    const more = sent(r.effects);
    expect(more.length).to.be.greaterThan(0);
    expect(more[0]!.prevLogIndex).to.equal(matchIndex);
  });

  it('an AppendEntries carries at least one entry, even one larger than maxAppendBytes', () => {
    let { a } = twoPeers();
    const r = step(a, { type: 'propose', requests: [{ id: 1, command: new Uint8Array(64 * 1024) }] });
    a = r.state;
    const out = sent(r.effects);
    expect(out).to.have.length(1);
    expect(out[0]!.entries).to.have.length(1);
  });

  it('rejects non-positive byte limits with a RangeError naming the option', () => {
    expect(() => createCore({ id: 'x', seed: 1, options: { maxInflightBytes: 0 } })).to.throw(RangeError, /maxInflightBytes/);
    expect(() => createCore({ id: 'x', seed: 1, options: { maxAppendBytes: -1 } })).to.throw(RangeError, /maxAppendBytes/);
  });
});
