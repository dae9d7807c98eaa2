/**
 * One contract for every LogStore (etcd's Storage tests, ra's ra_log_memory): the same suite
 * runs against MemoryLogStore and LmdbLogStore, then a few cases only one of them can show.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StorageError } from '../src/errors.js';
import { open } from 'lmdb';
import { codec, entryBytes } from '../src/codec.js';
import { type AppendEntries, type Entry, type Snapshot, type SnapshotWrite } from '../src/messages.js';
import { LmdbLogStore } from '../src/log/lmdb-store.js';
import { MemoryLogStore } from '../src/log/memory-store.js';
import type { LogStore, LogWrite } from '../src/log/store.js';

// ---------------------------------------------------------------------------------------------
// Helpers

interface Subject {
  readonly store: LogStore;
  /** Lose the process (LMDB: close and open again; memory: crash) and come back. */
  restart(): Promise<void>;
  dispose(): Promise<void>;
}

interface Variant {
  name: string;
  create(): Promise<Subject>;
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'actor-raft-log-'));
}

const variants: Variant[] = [
  {
    name: 'MemoryLogStore',
    async create() {
      const store = new MemoryLogStore();
      return {
        store,
        async restart() {
          store.crash();
        },
        async dispose() {
          await store.close();
        },
      };
    },
  },
  {
    name: 'LmdbLogStore',
    async create() {
      const dir = tempDir();
      let store = await LmdbLogStore.open(dir);
      return {
        get store() {
          return store;
        },
        async restart() {
          await store.close();
          store = await LmdbLogStore.open(dir);
        },
        async dispose() {
          await store.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
];

function noop(index: number, term: number): Entry {
  return { type: 'noop', index, term };
}

function command(index: number, term: number, ...bytes: number[]): Entry {
  return { type: 'command', index, term, data: new Uint8Array(bytes) };
}

function config(index: number, term: number, peers: string[]): Entry {
  return { type: 'config', index, term, peers };
}

/** Entries `from..to` (inclusive), all of term `term`. */
function run(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = [];
  for (let i = from; i <= to; i++) out.push(command(i, term, i & 0xff));
  return out;
}

function write(term: number, votedFor: string | null, entries: Entry[] = [], truncateFrom = 0): LogWrite {
  return { term, votedFor, truncateFrom, entries };
}

/** A snapshot of `index`/`term` with `size` bytes of data (derived from the index). */
function snap(index: number, term: number, discardLog = false, size = 16): SnapshotWrite {
  const data = new Uint8Array(size).map((_, i) => (index + i) & 0xff);
  return { meta: { index, term, peers: ['a', 'b', 'c'], old: null, digest: index * 31, size }, data, discardLog };
}

/** `write(...)` with a snapshot: the snapshot and compaction come first. */
function withSnapshot(
  s: SnapshotWrite,
  term: number,
  votedFor: string | null,
  entries: Entry[] = [],
  truncateFrom = 0,
): LogWrite {
  return { ...write(term, votedFor, entries, truncateFrom), snapshot: s };
}

/** The log's bounds and its snapshot, in comparable form, for one assertion. */
function bounds(store: LogStore): { firstIndex: number; lastIndex: number; lastTerm: number; snapshot: unknown } {
  return {
    firstIndex: store.firstIndex(),
    lastIndex: store.lastIndex(),
    lastTerm: store.lastTerm(),
    snapshot: plainSnapshot(store.snapshot()),
  };
}

/** Comparable form of a stored snapshot (or of the one written): meta and data bytes. */
function plainSnapshot(s: Snapshot | null): unknown {
  if (s === null) return null;
  const { meta } = s;
  return { meta: { ...meta, peers: [...meta.peers], old: meta.old && [...meta.old] }, data: Array.from(s.data) };
}

/** Comparable form: Buffers and Uint8Arrays become plain arrays. */
function plain(entries: Entry[]): unknown[] {
  return entries.map((e) => (e.type === 'command' ? { ...e, data: Array.from(e.data) } : { ...e }));
}

function terms(entries: Entry[]): number[] {
  return entries.map((e) => e.term);
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  throw new Error('expected the promise to reject');
}

function nextTurn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

// ---------------------------------------------------------------------------------------------
// The contract

for (const variant of variants) {
  describe(`LogStore contract: ${variant.name}`, () => {
    let subject: Subject;
    let store: () => LogStore;

    beforeEach(async () => {
      subject = await variant.create();
      store = () => subject.store;
    });

    afterEach(async () => {
      await subject.dispose();
    });

    it('starts empty: term 0, no vote, first index 1, last index and term 0', () => {
      expect(store().hardState()).to.deep.equal({ term: 0, votedFor: null });
      expect(store().firstIndex()).to.equal(1);
      expect(store().lastIndex()).to.equal(0);
      expect(store().lastTerm()).to.equal(0);
      expect(store().entries(1, 10)).to.deep.equal([]);
    });

    it('appends entries of every kind and reads back any range', async () => {
      const entries = [noop(1, 1), command(2, 1, 1, 2, 3), config(3, 1, ['a', 'b', 'c']), command(4, 2), noop(5, 2)];
      await store().write(write(2, 'a', entries));
      expect(store().lastIndex()).to.equal(5);
      expect(store().lastTerm()).to.equal(2);
      expect(plain(store().entries(1, 5))).to.deep.equal(plain(entries));
      expect(plain(store().entries(2, 3))).to.deep.equal(plain(entries.slice(1, 3)));
      expect(plain(store().entries(5, 5))).to.deep.equal(plain(entries.slice(4)));
      expect(plain(store().entries(0, 100))).to.deep.equal(plain(entries), 'clamped to the log');
      expect(store().entries(4, 3)).to.deep.equal([]);
      expect(store().entries(6, 9)).to.deep.equal([]);
    });

    it('keeps its own copy of appended data', async () => {
      const e = command(1, 1, 7, 7, 7);
      await store().write(write(1, null, [e]));
      (e as { data: Uint8Array }).data.fill(0);
      expect(plain(store().entries(1, 1))).to.deep.equal(plain([command(1, 1, 7, 7, 7)]));
    });

    it('round-trips the hard state (§5.1 currentTerm, votedFor)', async () => {
      await store().write(write(3, 'b'));
      expect(store().hardState()).to.deep.equal({ term: 3, votedFor: 'b' });
      await store().write(write(4, null));
      expect(store().hardState()).to.deep.equal({ term: 4, votedFor: null });
      await store().write(write(4, 'c'));
      expect(store().hardState()).to.deep.equal({ term: 4, votedFor: 'c' });
      expect(store().lastIndex()).to.equal(0, 'a hard-state write appends nothing');
    });

    it('truncates a conflicting suffix, then appends (§5.3)', async () => {
      await store().write(write(1, null, run(1, 5, 1)));
      await store().write(write(2, null, run(3, 4, 2), 3));
      expect(store().lastIndex()).to.equal(4);
      expect(store().lastTerm()).to.equal(2);
      expect(terms(store().entries(1, 10))).to.deep.equal([1, 1, 2, 2]);

      await store().write(write(2, null, [], 2));
      expect(store().lastIndex()).to.equal(1);
      expect(store().lastTerm()).to.equal(1);
      expect(terms(store().entries(1, 10))).to.deep.equal([1]);

      await store().write(write(2, null, [], 1));
      expect(store().lastIndex()).to.equal(0);
      expect(store().lastTerm()).to.equal(0);
      expect(store().entries(1, 10)).to.deep.equal([]);

      await store().write(write(3, null, run(1, 2, 3)));
      expect(terms(store().entries(1, 10))).to.deep.equal([3, 3]);
    });

    it('ignores a truncation beyond the last entry', async () => {
      await store().write(write(1, null, run(1, 3, 1)));
      await store().write(write(1, null, run(4, 4, 1), 9));
      expect(store().lastIndex()).to.equal(4);
    });

    it('rejects a gap with StorageError and leaves the store unchanged', async () => {
      await store().write(write(1, 'a', run(1, 3, 1)));
      const err = await rejection(store().write(write(2, 'b', run(5, 6, 2))));
      expect(err).to.be.instanceOf(StorageError);
      expect((err as StorageError).code).to.equal('STORAGE_ERROR');
      expect((err as Error).message).to.match(/gap/);
      const check = () => {
        expect(store().hardState()).to.deep.equal({ term: 1, votedFor: 'a' });
        expect(store().lastIndex()).to.equal(3);
        expect(store().lastTerm()).to.equal(1);
        expect(terms(store().entries(1, 10))).to.deep.equal([1, 1, 1]);
      };
      check();
      await subject.restart();
      check();
      // Still usable afterwards.
      await store().write(write(2, 'b', run(4, 4, 2)));
      expect(store().lastIndex()).to.equal(4);
    });

    it('refuses writes that would break Raft invariants, changing nothing', async () => {
      // (An entry's shape is checked where it enters the log actor, by the message guard
      // `isEntry`, test/codec.spec.ts and test/log-actor.spec.ts; the store checks its place.)
      await store().write(write(3, 'a', run(1, 2, 2)));
      const bad: [string, LogWrite][] = [
        ['term goes down (§5.1)', write(2, 'a')],
        ['second vote in one term (§5.2)', write(3, 'b')],
        ['vote withdrawn in its term (§5.2)', write(3, null)],
        ['entry term decreases (§5.3)', write(3, 'a', run(3, 3, 1))],
        ['entry newer than the write term', write(3, 'a', run(3, 3, 4))],
        ['entries not consecutive', write(3, 'a', [noop(3, 3), noop(5, 3)])],
        ['entry overwrites without truncation', write(3, 'a', run(2, 2, 3))],
      ];
      for (const [why, w] of bad) {
        expect(await rejection(store().write(w)), why).to.be.instanceOf(StorageError);
      }
      expect(store().hardState()).to.deep.equal({ term: 3, votedFor: 'a' });
      expect(terms(store().entries(1, 10))).to.deep.equal([2, 2]);
    });

    it('resolves writes in issue order, refused ones included', async () => {
      const settled: number[] = [];
      const track = (i: number, p: Promise<void>) =>
        p.then(
          () => settled.push(i),
          () => settled.push(-i),
        );
      const all = [
        track(1, store().write(write(1, null, run(1, 100, 1)))),
        track(2, store().write(write(1, 'a'))),
        track(3, store().write(write(1, 'a', run(200, 200, 1)))), // gap: refused at once, answered in turn
        track(4, store().write(write(1, 'a', run(101, 101, 1)))),
        track(5, store().write(write(1, 'a'))), // nothing to write
      ];
      await nextTurn();
      all.push(track(6, store().write(write(1, 'a'))), track(7, store().write(write(1, 'a', run(102, 102, 1)))));
      await Promise.all(all);
      expect(settled).to.deep.equal([1, 2, -3, 4, 5, 6, 7]);
      expect(store().lastIndex()).to.equal(102);
    });

    it('checks a write against the writes still in flight before it', async () => {
      // Issued together: the second truncates entries the first has not yet made durable.
      const first = store().write(write(1, null, run(1, 5, 1)));
      const second = store().write(write(2, null, run(3, 3, 2), 3));
      const third = store().write(write(2, null, run(4, 4, 2)));
      await Promise.all([first, second, third]);
      expect(terms(store().entries(1, 10))).to.deep.equal([1, 1, 2, 2]);
      expect(store().lastTerm()).to.equal(2);
    });

    it('recovers hard state, entries and last index/term after a restart', async () => {
      await store().write(write(2, 'b', [noop(1, 1), config(2, 1, ['a', 'b']), command(3, 2, 9)]));
      await store().write(write(5, 'c', [command(3, 5, 4, 2)], 3));
      const before = plain(store().entries(1, 10));
      await subject.restart();
      expect(store().hardState()).to.deep.equal({ term: 5, votedFor: 'c' });
      expect(store().firstIndex()).to.equal(1);
      expect(store().lastIndex()).to.equal(3);
      expect(store().lastTerm()).to.equal(5);
      expect(plain(store().entries(1, 10))).to.deep.equal(before);
      await store().write(write(5, 'c', run(4, 4, 5)));
      expect(store().lastIndex()).to.equal(4);
    });

    it('keeps the old voters of a joint configuration entry', async () => {
      const joint: Entry = { type: 'config', index: 1, term: 1, peers: ['a', 'b', 'd'], old: ['a', 'b', 'c'] };
      await store().write(write(1, null, [joint, config(2, 1, ['a', 'b', 'd'])]));
      await subject.restart();
      expect(store().entries(1, 2)).to.deep.equal([joint, config(2, 1, ['a', 'b', 'd'])]);
    });

    it("keeps a command entry's leader time (session expiry, thesis §6.3) across a restart", async () => {
      const stamped: Entry = { type: 'command', index: 1, term: 1, data: new Uint8Array([1, 2]), time: 1_795_000_000_123 };
      await store().write(write(1, null, [stamped, command(2, 1, 3)]));
      await subject.restart();
      expect(plain(store().entries(1, 2))).to.deep.equal(plain([stamped, command(2, 1, 3)]));
    });

    it('a snapshot compacts the entries up to its index (§7)', async () => {
      await store().write(write(2, 'a', [...run(1, 10, 1), ...run(11, 20, 2)]));
      const s = snap(12, 2);
      await store().write(withSnapshot(s, 2, 'a'));
      expect(bounds(store())).to.deep.equal({ firstIndex: 13, lastIndex: 20, lastTerm: 2, snapshot: plainSnapshot(s) });
      expect(store().hardState()).to.deep.equal({ term: 2, votedFor: 'a' });
      expect(store().entries(1, 12)).to.deep.equal([], 'a compacted range holds nothing');
      expect(store().entries(1, 100).map((e) => e.index)).to.deep.equal(run(13, 20, 2).map((e) => e.index));
      expect(plain(store().entries(12, 14))).to.deep.equal(plain(run(13, 14, 2)), 'only what exists');

      // Up to the last entry: the log is then empty, and ends where the snapshot does.
      const t = snap(20, 2);
      await store().write(withSnapshot(t, 2, 'a'));
      expect(bounds(store())).to.deep.equal({ firstIndex: 21, lastIndex: 20, lastTerm: 2, snapshot: plainSnapshot(t) });
      expect(store().entries(0, 100)).to.deep.equal([]);
      await store().write(write(3, null, run(21, 22, 3)));
      expect(terms(store().entries(0, 100))).to.deep.equal([3, 3]);
      expect(store().firstIndex()).to.equal(21);
    });

    it('a snapshot with discardLog replaces the whole log; appends continue after it', async () => {
      await store().write(write(1, null, run(1, 10, 1)));
      // A leader's snapshot this log does not match (index 6 has term 1 here, 3 there).
      const s = snap(6, 3, true);
      await store().write(withSnapshot(s, 3, 'b'));
      expect(bounds(store())).to.deep.equal({ firstIndex: 7, lastIndex: 6, lastTerm: 3, snapshot: plainSnapshot(s) });
      expect(store().hardState()).to.deep.equal({ term: 3, votedFor: 'b' });
      expect(store().entries(0, 100)).to.deep.equal([], 'entries past the snapshot went too');
      expect(await rejection(store().write(write(3, 'b', run(8, 8, 3)))), 'a gap after the snapshot').to.be.instanceOf(
        StorageError,
      );
      expect(await rejection(store().write(write(3, 'b', run(7, 7, 2)))), 'a term below the snapshot').to.be.instanceOf(
        StorageError,
      );
      await store().write(write(3, 'b', run(7, 8, 3)));
      expect(store().lastIndex()).to.equal(8);
      expect(plain(store().entries(0, 100))).to.deep.equal(plain(run(7, 8, 3)));

      // Beyond the log's end, and in the same write as the appends that follow it.
      const t = snap(50, 4, true);
      await store().write(withSnapshot(t, 4, null, run(51, 52, 4)));
      expect(store().firstIndex()).to.equal(51);
      expect(store().lastIndex()).to.equal(52);
      expect(plain(store().entries(0, 100))).to.deep.equal(plain(run(51, 52, 4)));
    });

    it('truncation after compaction: to firstIndex leaves the log ending at the snapshot', async () => {
      await store().write(write(1, null, run(1, 10, 1)));
      await store().write(withSnapshot(snap(5, 1), 1, null));
      await store().write(write(2, null, [], 6));
      // The log ends at the snapshot, with the snapshot's term.
      const stored = plainSnapshot(snap(5, 1));
      expect(bounds(store())).to.deep.equal({ firstIndex: 6, lastIndex: 5, lastTerm: 1, snapshot: stored });
      expect(store().entries(0, 100)).to.deep.equal([]);
      await store().write(write(2, null, run(6, 7, 2)));
      expect(terms(store().entries(0, 100))).to.deep.equal([2, 2]);

      // One write, in its order: snapshot and compaction, truncation, append.
      await store().write(withSnapshot(snap(6, 2), 3, null, run(7, 8, 3), 7));
      expect(store().firstIndex()).to.equal(7);
      expect(plain(store().entries(0, 100))).to.deep.equal(plain(run(7, 8, 3)));
      expect(store().lastTerm()).to.equal(3);
    });

    it('refuses bad snapshots and truncation below the first index, changing nothing', async () => {
      await store().write(write(2, 'a', [...run(1, 5, 1), ...run(6, 10, 2)]));
      await store().write(withSnapshot(snap(5, 1), 2, 'a'));
      const short = snap(7, 2);
      const wrongSize: SnapshotWrite = { ...short, data: short.data.subarray(1) };
      const bad: [string, LogWrite][] = [
        ['index not above the stored snapshot', withSnapshot(snap(5, 1), 2, 'a')],
        ['index below the stored snapshot', withSnapshot(snap(4, 1, true), 2, 'a')],
        ['term differs from the entry at its index', withSnapshot(snap(7, 1), 2, 'a')],
        ['term differs from the entry at its index (higher)', withSnapshot(snap(7, 3), 3, 'a')],
        ['data length differs from meta.size', withSnapshot(wrongSize, 2, 'a')],
        ['log does not reach its index without discardLog', withSnapshot(snap(11, 2), 2, 'a')],
        ['term above the write term', withSnapshot(snap(12, 3, true), 2, 'a')],
        ['term below the stored snapshot', withSnapshot(snap(12, 0, true), 2, 'a')],
        ['meta is not a SnapshotMeta', withSnapshot({ ...short, meta: { index: 7 } } as unknown as SnapshotWrite, 2, 'a')],
        ['truncation below the first index', write(2, 'a', [], 3)],
        ['truncation at the snapshot index', write(2, 'a', run(5, 5, 2), 5)],
        ['append overlapping the compacted range', write(2, 'a', run(3, 3, 2))],
      ];
      for (const [why, w] of bad) {
        const err = await rejection(store().write(w));
        expect(err, why).to.be.instanceOf(StorageError);
        expect((err as StorageError).code, why).to.equal('STORAGE_ERROR');
      }
      const check = () => {
        expect(store().hardState()).to.deep.equal({ term: 2, votedFor: 'a' });
        const stored = plainSnapshot(snap(5, 1));
        expect(bounds(store())).to.deep.equal({ firstIndex: 6, lastIndex: 10, lastTerm: 2, snapshot: stored });
        expect(terms(store().entries(0, 100))).to.deep.equal([2, 2, 2, 2, 2]);
      };
      check();
      await subject.restart();
      check();
    });

    it('keeps its own copy of snapshot data', async () => {
      await store().write(write(1, null, run(1, 3, 1)));
      const s = snap(3, 1);
      const expected = plainSnapshot(s);
      await store().write(withSnapshot(s, 1, null));
      s.data.fill(0);
      s.meta.peers.push('z');
      expect(plainSnapshot(store().snapshot())).to.deep.equal(expected);
    });

    it('checks a snapshot against the writes still in flight before it', async () => {
      // Issued together: the snapshot compacts entries the first write has not yet made durable,
      // and the third truncates after it.
      const all = [
        store().write(write(1, null, run(1, 6, 1))),
        store().write(withSnapshot(snap(4, 1), 1, null)),
        store().write(write(2, null, run(6, 7, 2), 6)),
        store().write(withSnapshot(snap(6, 2), 2, null)),
      ];
      await Promise.all(all);
      expect(store().firstIndex()).to.equal(7);
      expect(plain(store().entries(0, 100))).to.deep.equal(plain(run(7, 7, 2)));
      expect(store().snapshot()!.meta.index).to.equal(6);
    });

    it('recovers the snapshot and the log after it after a restart', async () => {
      await store().write(write(3, 'c', [...run(1, 4, 2), ...run(5, 9, 3)]));
      const s = snap(6, 3, false, 1000);
      await store().write(withSnapshot(s, 3, 'c'));
      await subject.restart();
      expect(bounds(store())).to.deep.equal({ firstIndex: 7, lastIndex: 9, lastTerm: 3, snapshot: plainSnapshot(s) });
      expect(store().hardState()).to.deep.equal({ term: 3, votedFor: 'c' });
      expect(plain(store().entries(0, 100))).to.deep.equal(plain(run(7, 9, 3)));

      // A snapshot with no entry after it: the log ends at the snapshot.
      const t = snap(40, 4, true);
      await store().write(withSnapshot(t, 4, null));
      await subject.restart();
      expect(bounds(store())).to.deep.equal({ firstIndex: 41, lastIndex: 40, lastTerm: 4, snapshot: plainSnapshot(t) });
      expect(store().entries(0, 100)).to.deep.equal([]);
      await store().write(write(4, null, run(41, 41, 4)));
      expect(store().lastIndex()).to.equal(41);
    });

    it('refuses writes once closed', async () => {
      await store().close();
      expect(await rejection(store().write(write(1, null)))).to.be.instanceOf(StorageError);
    });
  });
}

// ---------------------------------------------------------------------------------------------
// What only one store can show

describe('MemoryLogStore: durability under the simulator', () => {
  it('keeps issued writes pending until flush(), and a crash loses exactly those', async () => {
    const store = new MemoryLogStore({ autoFlush: false });
    const settled: number[] = [];
    void store.write(write(1, 'a', run(1, 2, 1))).then(() => settled.push(1));
    void store.write(write(2, 'b', run(3, 3, 2))).then(() => settled.push(2));
    expect(store.pendingWrites).to.equal(2);
    expect(store.lastIndex()).to.equal(0, 'nothing is durable yet');

    expect(store.flush(1)).to.equal(1);
    await nextTurn();
    expect(settled).to.deep.equal([1]);
    expect(store.hardState()).to.deep.equal({ term: 1, votedFor: 'a' });
    expect(store.lastIndex()).to.equal(2);

    store.crash();
    expect(store.pendingWrites).to.equal(0);
    expect(store.hardState()).to.deep.equal({ term: 1, votedFor: 'a' });
    expect(terms(store.entries(1, 10))).to.deep.equal([1, 1]);

    // The store goes on from its durable state: index 3 is free again.
    void store.write(write(3, 'c', run(3, 3, 3))).then(() => settled.push(3));
    store.flush();
    await nextTurn();
    expect(settled).to.deep.equal([1, 3]);
    expect(terms(store.entries(1, 10))).to.deep.equal([1, 1, 3]);
    await store.close();
  });
});

describe('LmdbLogStore', () => {
  let dir: string;
  let store: LmdbLogStore | null;

  beforeEach(async () => {
    dir = tempDir();
    store = await LmdbLogStore.open(dir);
  });

  afterEach(async () => {
    await store?.close();
    store = null;
    rmSync(dir, { recursive: true, force: true });
  });

  it('puts every write issued in one event turn into one transaction', async () => {
    const s = store!;
    await s.write(write(1, null)); // settle the format record's transaction first
    const before = s.lastTxnId();
    const writes: Promise<void>[] = [];
    for (let i = 1; i <= 50; i++) writes.push(s.write(write(i, 'a', run(i, i, i))));
    await Promise.all(writes);
    expect(s.lastTxnId() - before).to.equal(1, '50 writes of one turn, one commit');

    // Writes of a later turn get a transaction of their own, or join one not yet committed.
    const a = s.write(write(51, 'a', run(51, 51, 51)));
    await nextTurn();
    const b = s.write(write(52, 'a', run(52, 52, 52)));
    await Promise.all([a, b]);
    expect(s.lastTxnId() - before).to.be.within(2, 3);
    expect(s.lastIndex()).to.equal(52);
  });

  it('close() waits for the writes in flight', async () => {
    const s = store!;
    const written = s.write(write(7, 'x', run(1, 1000, 7)));
    const closed = s.close();
    await Promise.all([written, closed]);
    store = await LmdbLogStore.open(dir);
    expect(store.hardState()).to.deep.equal({ term: 7, votedFor: 'x' });
    expect(store.lastIndex()).to.equal(1000);
    expect(store.lastTerm()).to.equal(7);
  });

  it('stores a snapshot and compacts in the same transaction as the rest of the write', async () => {
    const s = store!;
    await s.write(write(1, null, run(1, 500, 1)));
    const before = s.lastTxnId();
    await s.write(withSnapshot(snap(400, 1), 2, 'a', run(501, 510, 2)));
    expect(s.lastTxnId() - before).to.equal(1);
    expect(s.storedEntryCount()).to.equal(110);
    await s.write(withSnapshot(snap(600, 2, true), 2, 'a'));
    expect(s.storedEntryCount()).to.equal(0, 'discardLog deletes every entry');
  });

  it('a compaction and a read of the range it compacts may meet: the read gets what is stored', async () => {
    // Both writes share one batch; the first resolves, and a read then finds the second's
    // compaction on disk before it is marked durable (the log actor's reads do this).
    const s = store!;
    const first = s.write(write(1, null, run(1, 10, 1)));
    const second = s.write(withSnapshot(snap(8, 1), 1, null));
    await first;
    // Marked durable or not, the second write is on disk: only 9 and 10 are stored.
    expect(s.entries(1, 10).map((e) => e.index)).to.deep.equal([9, 10]);
    await second;
    expect(s.entries(1, 10).map((e) => e.index)).to.deep.equal([9, 10]);
  });

  it('the data file stops growing under steady appends and compaction', async function () {
    this.timeout(120_000);
    const s = store!;
    const dataFile = join(dir, 'data.mdb');
    const payload = (i: number): Entry => ({ type: 'command', index: i, term: 1, data: new Uint8Array(64).fill(i & 0xff) });
    let next = 1;
    const sizes: number[] = [];
    for (let round = 1; round <= 30; round++) {
      const entries: Entry[] = [];
      for (let k = 0; k < 2000; k++) entries.push(payload(next++));
      await s.write(write(1, null, entries));
      expect(s.storedEntryCount()).to.be.at.most(2000);
      // A snapshot big enough to take overflow pages, replaced every round.
      await s.write(withSnapshot(snap(next - 1, 1, false, 64 * 1024), 1, null));
      expect(s.storedEntryCount()).to.equal(0);
      sizes.push(statSync(dataFile).size);
    }
    const at10 = sizes[9]!;
    const at30 = sizes[29]!;
    expect(at30, `data.mdb: ${at10} bytes after round 10, ${at30} after round 30`).to.be.at.most(at10 * 1.1);
    // And it recovers to the same place.
    await s.close();
    store = await LmdbLogStore.open(dir);
    expect(store.firstIndex()).to.equal(next);
    expect(store.lastIndex()).to.equal(next - 1);
    expect(store.snapshot()!.meta.size).to.equal(64 * 1024);
  });

  /** What LMDB holds under each entry index, read with lmdb-js directly (the store closed). */
  async function rawEntries(): Promise<Map<number, Uint8Array>> {
    await store!.close();
    store = null;
    const root = open<Uint8Array, string>({ path: dir, maxDbs: 2, encoding: 'binary' });
    const db = root.openDB<Uint8Array, number>('entries', { keyEncoding: 'uint32', encoding: 'binary' });
    const out = new Map<number, Uint8Array>();
    for (const { key, value } of db.getRange({})) out.set(key, Uint8Array.from(value));
    await root.close();
    return out;
  }

  it('stores an entry as the bytes it arrived in (format 1: the entry packed alone)', async () => {
    const sent: Entry[] = [
      { type: 'command', index: 1, term: 2, data: Uint8Array.of(1, 2, 3), time: 1_700_000_000_000 },
      { type: 'noop', index: 2, term: 2 },
      { type: 'config', index: 3, term: 2, peers: ['a', 'b', 'd'], old: ['a', 'b', 'c'] },
    ];
    const message: AppendEntries = { type: 'appendEntries', term: 2, from: 'a', to: 'b', prevLogIndex: 0, prevLogTerm: 0, entries: sent, leaderCommit: 0, readSeq: 0 };
    const received = (codec.decode(codec.encode(message)) as AppendEntries).entries;
    await store!.write(write(2, 'a', received));
    // Read back with the stored bytes: sending them on packs nothing again.
    const read = store!.entries(1, 3);
    expect(plain(read)).to.deep.equal(plain(sent));
    const raw = await rawEntries();
    for (const [i, e] of read.entries()) {
      expect(entryBytes(e), `entry ${e.index}`).to.deep.equal(raw.get(e.index));
      expect(raw.get(e.index), `entry ${e.index}`).to.deep.equal(entryBytes(received[i]!));
      expect(raw.get(e.index), `entry ${e.index}`).to.deep.equal(codec.encode(sent[i]));
    }
  });

  it('opens a data directory written before entries were stored as they arrive', async () => {
    // Format 1 as the store wrote it before: each entry packed alone with the codec (here by
    // lmdb-js directly), a hard state, no snapshot.
    await store!.close();
    store = null;
    const old: Entry[] = [
      { type: 'config', index: 1, term: 1, peers: ['a', 'b', 'c'] },
      { type: 'noop', index: 2, term: 1 },
      { type: 'command', index: 3, term: 1, data: Uint8Array.of(9) }, // before leader times
      { type: 'command', index: 4, term: 2, data: Uint8Array.of(8, 7), time: 1_600_000_000_000 },
    ];
    const root = open<Uint8Array, string>({ path: dir, maxDbs: 2, encoding: 'binary' });
    const db = root.openDB<Uint8Array, number>('entries', { keyEncoding: 'uint32', encoding: 'binary' });
    await root.put('format', codec.encode(1));
    await root.put('hardState', codec.encode({ term: 2, votedFor: 'b' }));
    for (const e of old) await db.put(e.index, codec.encode(e));
    await root.close();
    store = await LmdbLogStore.open(dir);
    expect(store.hardState()).to.deep.equal({ term: 2, votedFor: 'b' });
    expect([store.firstIndex(), store.lastIndex(), store.lastTerm()]).to.deep.equal([1, 4, 2]);
    expect(plain(store.entries(1, 4))).to.deep.equal(plain(old));
    await store.write(write(2, 'b', run(5, 6, 2)));
    expect(store.lastIndex()).to.equal(6);
  });

  it('reads a long log back in order (uint32 keys sort numerically)', async () => {
    const s = store!;
    await s.write(write(1, null, run(1, 300, 1)));
    const indexes = s.entries(250, 262).map((e) => e.index);
    expect(indexes).to.deep.equal(Array.from({ length: 13 }, (_, i) => 250 + i));
  });
});
