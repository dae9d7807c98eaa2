/**
 * An in-memory LogStore for core tests and the deterministic simulator (etcd's
 * MemoryStorage, ra's ra_log_memory). It keeps what is durable apart from what is only
 * issued, so a simulated crash loses exactly the writes that were never acknowledged:
 *
 *   const store = new MemoryLogStore({ autoFlush: false });
 *   store.write(w1); store.write(w2);  // issued, not durable
 *   store.flush(1);                    // w1 is durable; its promise resolves
 *   store.crash();                     // w2 is lost, as if the machine died
 *   // build a new core from store.hardState(), store.entries(...), store.lastIndex()
 *
 * With the default `autoFlush: true` each write becomes durable one microtask after it is
 * issued, which is enough for tests that just need a working store.
 */
import { canonicalEntry } from '../codec.js';
import { type Entry } from '../messages.js';
import { StorageError } from '../errors.js';
import type { LogStore, LogWrite } from './store.js';
import { checkWrite, DurableTipQueries, EMPTY_TIP, pendingTerm, type LogTip } from './write-check.js';

export interface MemoryLogStoreOptions {
  /**
   * true (default): a write becomes durable by itself, a microtask after it is issued.
   * false: writes stay pending until `flush()`, and `crash()` can lose them.
   */
  autoFlush?: boolean;
}

interface Pending {
  /** The write as stored (entries and snapshot copied), or null when it was refused. */
  write: LogWrite | null;
  /** The store's state once this write is durable. */
  after: LogTip;
  error: StorageError | null;
  resolve: () => void;
  reject: (e: StorageError) => void;
}

export class MemoryLogStore extends DurableTipQueries implements LogStore {
  private readonly autoFlush: boolean;
  protected durable: LogTip = EMPTY_TIP;
  /** Durable entries: log[k] has index durable.firstIndex + k. */
  private log: Entry[] = [];
  /** The state after every issued write; new writes are checked against it. */
  private tip: LogTip = EMPTY_TIP;
  private readonly queue: Pending[] = [];
  private closed = false;

  constructor(options: MemoryLogStoreOptions = {}) {
    super();
    if (options.autoFlush !== undefined && typeof options.autoFlush !== 'boolean') {
      throw new TypeError('options.autoFlush must be a boolean');
    }
    this.autoFlush = options.autoFlush ?? true;
  }

  /** Durable entries with from <= index <= to. Treat them as immutable: they are the store's own. */
  entries(from: number, to: number): Entry[] {
    const first = this.durable.firstIndex;
    const lo = Math.max(from, first);
    const hi = Math.min(to, this.durable.lastIndex);
    return lo > hi ? [] : this.log.slice(lo - first, hi - first + 1);
  }

  write(w: LogWrite): Promise<void> {
    // close() made every earlier write durable, so refusing at once keeps the order.
    if (this.closed) return Promise.reject(new StorageError('the log store is closed'));
    let stored: LogWrite | null = null;
    let error: StorageError | null = null;
    try {
      this.tip = checkWrite(this.tip, w, (i) => this.termAt(i));
      // Copied now: the caller may reuse the entries' buffers once write() returns (the tip
      // already holds a copy of the snapshot).
      const snapshot = w.snapshot ? { ...this.tip.snapshot!, discardLog: w.snapshot.discardLog } : null;
      stored = {
        snapshot,
        term: w.term,
        votedFor: w.votedFor,
        truncateFrom: w.truncateFrom,
        entries: w.entries.map((e) => canonicalEntry(e, true)),
      };
    } catch (e) {
      if (!(e instanceof StorageError)) throw e;
      error = e;
    }
    const after = this.tip;
    const promise = new Promise<void>((resolve, reject) => {
      this.queue.push({ write: stored, after, error, resolve, reject });
    });
    if (this.autoFlush) queueMicrotask(() => this.flush(1));
    return promise;
  }

  /** How many issued writes are not yet durable (or refused but not yet answered). */
  get pendingWrites(): number {
    return this.queue.length;
  }

  /**
   * Make the oldest `count` pending writes durable, in issue order, and settle their
   * promises (a refused write is rejected in its turn). Returns how many were settled.
   */
  flush(count = Infinity): number {
    let n = 0;
    while (n < count && this.queue.length > 0) {
      const p = this.queue.shift()!;
      n++;
      if (p.write === null) {
        p.reject(p.error ?? new StorageError('write refused'));
        continue;
      }
      this.apply(p.write, p.after.firstIndex);
      this.durable = p.after;
      p.resolve();
    }
    return n;
  }

  /**
   * Lose every write that is not yet durable, as a crash would. Their promises never settle
   * (the core that issued them is gone); the store carries on from its durable state.
   */
  crash(): void {
    this.queue.length = 0;
    this.tip = this.durable;
  }

  /** Waits for (makes durable) every pending write; later writes are refused. */
  async close(): Promise<void> {
    this.closed = true;
    this.flush();
  }

  /** Carry out `w` on the durable log; `first` is the first index once it is done. */
  private apply(w: LogWrite, first: number): void {
    if (w.snapshot) {
      // Drop the entries the snapshot covers (all of them with discardLog): what stays
      // starts at `first`, the snapshot's index + 1.
      const covered = first - this.durable.firstIndex;
      this.log.splice(0, w.snapshot.discardLog ? this.log.length : covered);
    }
    if (w.truncateFrom > 0 && w.truncateFrom - first < this.log.length) {
      this.log.length = Math.max(0, w.truncateFrom - first);
    }
    for (const e of w.entries) this.log.push(e);
  }

  /** Term of entry i as the issued writes leave it. */
  private termAt(index: number): number {
    const pending = pendingTerm(
      this.queue.flatMap((p) => (p.write === null ? [] : [p.write])),
      index,
    );
    if (pending !== undefined) return pending;
    const e = this.log[index - this.durable.firstIndex];
    if (e === undefined) throw new StorageError(`entry ${index} is missing from the log`);
    return e.term;
  }
}
