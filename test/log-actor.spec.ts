/**
 * The log actor for real: a worker thread over LMDB in a temp dir, driven through its two
 * ports the way the supervisor and the consensus actor drive it.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import type { LogActorControl, LogActorData, LogActorNotice } from '../src/control.js';
import {
  codec,
  decodeAll,
  decodeEntryBytes,
  postEncoded,
} from '../src/codec.js';
import {
  isLogReply,
  type Entry,
  type LogReady,
  type LogReply,
  type LogRequest,
  type ReadResult,
  type SnapshotWrite,
} from '../src/messages.js';

const LOG_ACTOR = new URL('../actors/log-actor.js', import.meta.url);

/** Collects what arrives on a port or a worker, and hands it out in order. */
class Inbox<T> {
  private readonly queue: T[] = [];
  private readonly waiters: ((m: T) => void)[] = [];

  push(m: T): void {
    const waiter = this.waiters.shift();
    if (waiter) waiter(m);
    else this.queue.push(m);
  }

  next(): Promise<T> {
    const m = this.queue.shift();
    if (m !== undefined) return Promise.resolve(m);
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  get size(): number {
    return this.queue.length;
  }
}

/** One consensus-side end of the log port. */
class ConsensusEnd {
  readonly inbox = new Inbox<LogReply>();

  constructor(readonly port: MessagePort) {
    // Replies of one turn may arrive as a bundle: the consensus actor takes them in order.
    port.on('message', (bytes: Uint8Array) => {
      const { messages } = decodeAll(bytes, isLogReply);
      for (const m of messages) this.inbox.push(m);
    });
  }

  send(request: LogRequest): void {
    postEncoded(this.port, request);
  }

  async expect<K extends LogReply['type']>(type: K): Promise<Extract<LogReply, { type: K }>> {
    const m = await this.inbox.next();
    expect(m.type, JSON.stringify(m)).to.equal(type);
    return m as Extract<LogReply, { type: K }>;
  }

  close(): void {
    this.port.close();
  }
}

interface Running {
  worker: Worker;
  consensus: ConsensusEnd;
  notices: Inbox<LogActorNotice>;
  errors: Error[];
  exited: Promise<number>;
}

const running = new Set<Running>();

async function start(dataDir: string): Promise<Running> {
  const { port1, port2 } = new MessageChannel();
  const data: LogActorData = { dataDir, port: port2 };
  const worker = new Worker(LOG_ACTOR, { workerData: data, transferList: [port2] });
  const notices = new Inbox<LogActorNotice>();
  const errors: Error[] = [];
  worker.on('message', (m: LogActorNotice) => notices.push(m));
  worker.on('error', (e) => errors.push(e));
  const exited = new Promise<number>((resolve) => worker.once('exit', resolve));
  const r: Running = { worker, consensus: new ConsensusEnd(port1), notices, errors, exited };
  running.add(r);
  expect(await notices.next()).to.deep.equal({ type: 'ready' });
  return r;
}

/** Ask the actor to close, and check it ends by itself (no terminate). */
async function stop(r: Running): Promise<LogActorNotice> {
  r.worker.postMessage({ type: 'close' } satisfies LogActorControl);
  let closed = await r.notices.next();
  while (closed.type === 'dropped') closed = await r.notices.next(); // drop reports come first
  expect(closed.type).to.equal('closed');
  expect(await r.exited).to.equal(0);
  r.consensus.close();
  running.delete(r);
  return closed;
}

function commands(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push({ type: 'command', index: i, term, data: new Uint8Array([i & 0xff]) });
  return out;
}

function readyState(m: LogReady): Omit<LogReady, 'type'> {
  const { type: _type, ...rest } = m;
  return rest;
}

describe('log actor (worker thread over LMDB)', () => {
  let dir: string;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'actor-raft-log-actor-'));
  });

  afterEach(async () => {
    // Whatever a failed test left behind: no worker, port or LMDB env outlives its test.
    for (const r of running) {
      r.consensus.close();
      await r.worker.terminate();
    }
    running.clear();
    rmSync(dir, { recursive: true, force: true });
  });

  it('sends LogReady for an empty log, persists, reads back, and recovers it after a restart', async () => {
    let r = await start(dir);
    const ready = await r.consensus.expect('logReady');
    expect(readyState(ready)).to.deep.equal({ term: 0, votedFor: null, firstIndex: 1, lastIndex: 0, lastTerm: 0 });

    // Two persists in one turn (one LMDB transaction), answered in seq order.
    r.consensus.send({ type: 'persist', seq: 1, term: 1, votedFor: 'a', truncateFrom: 0, entries: commands(1, 3, 1) });
    r.consensus.send({ type: 'persist', seq: 2, term: 2, votedFor: null, truncateFrom: 3, entries: commands(3, 5, 2) });
    expect((await r.consensus.expect('persisted')).seq).to.equal(1);
    expect((await r.consensus.expect('persisted')).seq).to.equal(2);

    r.consensus.send({ type: 'read', id: 9, from: 2, to: 4 });
    const read: ReadResult = await r.consensus.expect('readResult');
    expect(read.id).to.equal(9);
    expect(read.entries.map((e) => [e.index, e.term])).to.deep.equal([
      [2, 1],
      [3, 2],
      [4, 2],
    ]);

    await stop(r);

    r = await start(dir);
    expect(readyState(await r.consensus.expect('logReady'))).to.deep.equal({
      term: 2,
      votedFor: null,
      firstIndex: 1,
      lastIndex: 5,
      lastTerm: 2,
    });
    await stop(r);
  });

  it('answers a read only after the persists sent before it', async () => {
    const r = await start(dir);
    await r.consensus.expect('logReady');
    r.consensus.send({ type: 'persist', seq: 1, term: 1, votedFor: null, truncateFrom: 0, entries: commands(1, 50, 1) });
    r.consensus.send({ type: 'read', id: 1, from: 1, to: 100 });
    expect((await r.consensus.expect('persisted')).seq).to.equal(1);
    expect((await r.consensus.expect('readResult')).entries).to.have.length(50);
    await stop(r);
  });

  it('loses nothing it acknowledged when its thread is killed', async () => {
    const r = await start(dir);
    await r.consensus.expect('logReady');
    r.consensus.send({ type: 'persist', seq: 1, term: 4, votedFor: 'c', truncateFrom: 0, entries: commands(1, 20, 4) });
    await r.consensus.expect('persisted');
    await r.worker.terminate(); // no close: LMDB is left as a crash leaves it
    r.consensus.close();
    running.delete(r);

    const again = await start(dir);
    expect(readyState(await again.consensus.expect('logReady'))).to.deep.equal({
      term: 4,
      votedFor: 'c',
      firstIndex: 1,
      lastIndex: 20,
      lastTerm: 4,
    });
    await stop(again);
  });

  it('drops garbage, counts it, and keeps answering', async () => {
    const r = await start(dir);
    await r.consensus.expect('logReady');
    const port = r.consensus.port;
    port.postMessage(new Uint8Array([0xc1, 0xff, 0x00])); // not msgpack
    port.postMessage(codec.encode({ type: 'bogus', seq: 1 })); // msgpack, not a request
    port.postMessage(codec.encode({ type: 'persist', seq: -1, term: 1, votedFor: null, truncateFrom: 0, entries: [] }));
    port.postMessage('a string, not bytes');
    // Entries are checked here, at the port, and only here (the store takes them as checked):
    // a persist with one bad entry is dropped whole, and nothing of it is stored.
    const [good] = commands(1, 1, 1);
    const bad = { type: 'command', index: 2, term: 1, data: 'not bytes' } as unknown as Entry;
    r.consensus.send({ type: 'persist', seq: 1, term: 1, votedFor: null, truncateFrom: 0, entries: [good!, bad] });
    // Packed by hand with a field no entry has (entryBytes would pack only an entry's fields).
    const extra = decodeEntryBytes(codec.encode({ type: 'noop', index: 2, term: 1, note: 'extra' })) as Entry;
    r.consensus.send({ type: 'persist', seq: 1, term: 1, votedFor: null, truncateFrom: 0, entries: [good!, extra] });
    r.consensus.send({ type: 'persist', seq: 1, term: 1, votedFor: null, truncateFrom: 0, entries: commands(1, 1, 1) });
    expect((await r.consensus.expect('persisted')).seq).to.equal(1);
    r.consensus.send({ type: 'read', id: 1, from: 1, to: 9 });
    expect((await r.consensus.expect('readResult')).entries).to.deep.equal(commands(1, 1, 1));
    // Each drop is reported to the supervisor as it happens (status shows the count).
    const reports: LogActorNotice[] = [];
    for (let i = 0; i < 6; i++) reports.push(await r.notices.next());
    expect(reports).to.deep.equal([1, 2, 3, 4, 5, 6].map((total) => ({ type: 'dropped', total })));
    expect(await stop(r)).to.deep.equal({ type: 'closed', dropped: 6 });
  });

  it('attach replaces the consensus port and sends a fresh LogReady', async () => {
    const r = await start(dir);
    await r.consensus.expect('logReady');
    r.consensus.send({ type: 'persist', seq: 1, term: 3, votedFor: 'b', truncateFrom: 0, entries: commands(1, 2, 3) });
    await r.consensus.expect('persisted');

    // The consensus actor restarts alone: the supervisor hands the log actor a new port.
    const { port1, port2 } = new MessageChannel();
    r.worker.postMessage({ type: 'attach', port: port2 } satisfies LogActorControl, [port2]);
    const old = r.consensus;
    r.consensus = new ConsensusEnd(port1);
    old.close();
    expect(readyState(await r.consensus.expect('logReady'))).to.deep.equal({
      term: 3,
      votedFor: 'b',
      firstIndex: 1,
      lastIndex: 2,
      lastTerm: 3,
    });
    r.consensus.send({ type: 'read', id: 2, from: 1, to: 10 });
    expect((await r.consensus.expect('readResult')).entries.map((e) => e.index)).to.deep.equal([1, 2]);
    await stop(r);
  });

  it('stores a persist\'s snapshot, compacts, and sends the snapshot in LogReady after a restart', async () => {
    let r = await start(dir);
    await r.consensus.expect('logReady');
    const data = new Uint8Array(3000).map((_, i) => i % 251);
    const snapshot: SnapshotWrite = {
      meta: { index: 6, term: 2, peers: ['a', 'b', 'c'], old: null, digest: 12345, size: data.length },
      data,
      discardLog: false,
    };
    r.consensus.send({ type: 'persist', seq: 1, term: 2, votedFor: 'a', truncateFrom: 0, entries: commands(1, 10, 2) });
    r.consensus.send({ type: 'persist', seq: 2, term: 2, votedFor: 'a', truncateFrom: 0, entries: [], snapshot });
    expect((await r.consensus.expect('persisted')).seq).to.equal(1);
    expect((await r.consensus.expect('persisted')).seq).to.equal(2);

    // A read of a compacted range gets what is stored.
    r.consensus.send({ type: 'read', id: 1, from: 1, to: 10 });
    expect((await r.consensus.expect('readResult')).entries.map((e) => e.index)).to.deep.equal([7, 8, 9, 10]);
    await stop(r);

    r = await start(dir);
    const ready = await r.consensus.expect('logReady');
    const { snapshot: got, ...rest } = readyState(ready);
    expect(rest).to.deep.equal({ term: 2, votedFor: 'a', firstIndex: 7, lastIndex: 10, lastTerm: 2 });
    expect(got?.meta).to.deep.equal(snapshot.meta);
    expect(Array.from(got!.data)).to.deep.equal(Array.from(data));

    // A leader's snapshot past the log (InstallSnapshot): the log continues from it.
    const leaders: SnapshotWrite = { ...snapshot, meta: { ...snapshot.meta, index: 20, term: 3 }, discardLog: true };
    r.consensus.send({ type: 'persist', seq: 3, term: 3, votedFor: null, truncateFrom: 0, entries: [], snapshot: leaders });
    expect((await r.consensus.expect('persisted')).seq).to.equal(3);
    r.consensus.send({ type: 'read', id: 2, from: 1, to: 30 });
    expect((await r.consensus.expect('readResult')).entries).to.deep.equal([]);
    await stop(r);

    r = await start(dir);
    const again = await r.consensus.expect('logReady');
    expect([again.firstIndex, again.lastIndex, again.lastTerm]).to.deep.equal([21, 20, 3]);
    expect(again.snapshot?.meta).to.deep.equal(leaders.meta);
    await stop(r);
  });

  it('a failed write sends LogFailure, then the actor crashes', async () => {
    const r = await start(dir);
    await r.consensus.expect('logReady');
    // A gap: the store refuses it, and the actor must not go on as if it were written.
    r.consensus.send({ type: 'persist', seq: 1, term: 1, votedFor: null, truncateFrom: 0, entries: commands(5, 5, 1) });
    const failure = await r.consensus.expect('logFailure');
    expect(failure.message).to.match(/gap/);
    expect(await r.exited).to.equal(1);
    expect(r.errors).to.have.length(1);
    expect(r.errors[0]!.message).to.match(/gap/);
    r.consensus.close();
    running.delete(r);

    // Nothing was written; the next start recovers the empty log.
    const again = await start(dir);
    expect((await again.consensus.expect('logReady')).lastIndex).to.equal(0);
    await stop(again);
  });
});
