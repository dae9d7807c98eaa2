/**
 * One contract for every LogStore (etcd's Storage tests, ra's ra_log_memory): the same suite
 * runs against MemoryLogStore and LmdbLogStore, then a few cases only one of them can show.
 */
import { expect } from 'chai';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StorageError } from '../src/errors.js';
import type { Entry } from '../src/messages.js';
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
      await store().write(write(3, 'a', run(1, 2, 2)));
      const bad: [string, LogWrite][] = [
        ['term goes down (§5.1)', write(2, 'a')],
        ['second vote in one term (§5.2)', write(3, 'b')],
        ['vote withdrawn in its term (§5.2)', write(3, null)],
        ['entry term decreases (§5.3)', write(3, 'a', run(3, 3, 1))],
        ['entry newer than the write term', write(3, 'a', run(3, 3, 4))],
        ['entries not consecutive', write(3, 'a', [noop(3, 3), noop(5, 3)])],
        ['entry overwrites without truncation', write(3, 'a', run(2, 2, 3))],
        ['not an entry', write(3, 'a', [{ type: 'bogus', index: 3, term: 3 } as unknown as Entry])],
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

  it('reads a long log back in order (uint32 keys sort numerically)', async () => {
    const s = store!;
    await s.write(write(1, null, run(1, 300, 1)));
    const indexes = s.entries(250, 262).map((e) => e.index);
    expect(indexes).to.deep.equal(Array.from({ length: 13 }, (_, i) => 250 + i));
  });
});
