import type { HardState } from './store.js';
/**
 * What both log stores check before they accept a write, so that `MemoryLogStore` and
 * `LmdbLogStore` refuse exactly the same writes (test/log-store.spec.ts holds them to it).
 *
 * A store validates each write against the state that every write issued before it leaves
 * (its "tip"), not against what is already durable: writes are pipelined, and a write
 * issued while an earlier one is still in flight builds on that earlier one.
 */
import { isEntry, type Entry } from '../messages.js';
import { StorageError } from '../errors.js';
import type { LogWrite } from './store.js';

/** The state a store is in after some prefix of its writes. */
export interface LogTip {
  readonly term: number;
  readonly votedFor: string | null;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly lastTerm: number;
}

export const EMPTY_TIP: LogTip = { term: 0, votedFor: null, firstIndex: 1, lastIndex: 0, lastTerm: 0 };

/** The LogStore queries both stores answer alike, from what is durable. */
export abstract class DurableTipQueries {
  /** What is durable; every query answers from this. */
  protected abstract durable: LogTip;

  hardState(): HardState {
    return { term: this.durable.term, votedFor: this.durable.votedFor };
  }

  firstIndex(): number {
    return this.durable.firstIndex;
  }

  lastIndex(): number {
    return this.durable.lastIndex;
  }

  lastTerm(): number {
    return this.durable.lastTerm;
  }
}

const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Check `w` against `tip` and return the tip after it, or throw StorageError. Nothing is
 * changed either way: the caller issues the write only once this has returned.
 *
 * `termAt(i)` gives the term of entry i in `tip` (firstIndex <= i <= lastIndex); it is asked
 * only when a truncation leaves a shorter, non-empty log.
 */
export function checkWrite(tip: LogTip, w: LogWrite, termAt: (index: number) => number): LogTip {
  if (!isIndex(w.term)) throw new StorageError(`write term ${String(w.term)} is not a non-negative integer`);
  if (w.votedFor !== null && typeof w.votedFor !== 'string') {
    throw new StorageError('write votedFor must be a string or null');
  }
  // §5.1: currentTerm only grows.
  if (w.term < tip.term) throw new StorageError(`write term ${w.term} is below the stored term ${tip.term}`);
  // §5.2: at most one vote per term; a vote, once durable, is never taken back.
  if (w.term === tip.term && tip.votedFor !== null && w.votedFor !== tip.votedFor) {
    throw new StorageError(
      `write changes the vote of term ${w.term} from ${tip.votedFor} to ${String(w.votedFor)}`,
    );
  }
  if (!isIndex(w.truncateFrom)) {
    throw new StorageError(`truncateFrom ${String(w.truncateFrom)} is not a non-negative integer`);
  }
  if (!Array.isArray(w.entries)) throw new StorageError('write entries must be an array');

  let lastIndex = tip.lastIndex;
  let lastTerm = tip.lastTerm;
  if (w.truncateFrom > 0 && w.truncateFrom <= tip.lastIndex) {
    if (w.truncateFrom < tip.firstIndex) {
      throw new StorageError(`cannot truncate from ${w.truncateFrom}: the log starts at ${tip.firstIndex}`);
    }
    // §5.3: delete the conflicting entry and all that follow it.
    lastIndex = w.truncateFrom - 1;
    lastTerm = lastIndex >= tip.firstIndex ? termAt(lastIndex) : 0;
  }

  for (const e of w.entries as unknown[]) {
    if (!isEntry(e)) throw new StorageError(`the entry after ${lastIndex} is not a log entry`);
    if (e.index !== lastIndex + 1) {
      throw new StorageError(`entry ${e.index} leaves a gap: the log ends at ${lastIndex}`);
    }
    // Terms never decrease along a log (§5.3 Log Matching), and no entry is newer than the
    // term it is written in (§5.1: a peer adopts a higher term before it stores its entries).
    if (e.term < lastTerm) {
      throw new StorageError(`entry ${e.index} has term ${e.term}, below the previous entry's term ${lastTerm}`);
    }
    if (e.term > w.term) throw new StorageError(`entry ${e.index} has term ${e.term}, above the write's term ${w.term}`);
    lastIndex = e.index;
    lastTerm = e.term;
  }

  return { term: w.term, votedFor: w.votedFor, firstIndex: tip.firstIndex, lastIndex, lastTerm };
}

/**
 * The term of entry `index` as the writes still in flight leave it, or undefined when none of
 * them wrote it (it is then whatever the durable log holds). The newest write that appended
 * `index` wins; a newer write cannot have truncated it away without appending it again, since
 * callers ask only about indexes that exist in the tip.
 */
export function pendingTerm(pending: readonly LogWrite[], index: number): number | undefined {
  for (let i = pending.length - 1; i >= 0; i--) {
    const entries = pending[i]!.entries;
    if (entries.length === 0) continue;
    const e = entries[index - entries[0]!.index];
    if (e !== undefined) return e.term;
  }
  return undefined;
}

/**
 * The entry with only its own fields, in the key order of the codec's shared structures (so
 * it packs as a compact record whoever built it). With `copyData` the command bytes get a
 * buffer of their own, so a store never aliases a message buffer it was handed.
 */
export function canonicalEntry(e: Entry, copyData = false): Entry {
  switch (e.type) {
    case 'noop':
      return { type: 'noop', index: e.index, term: e.term };
    case 'command':
      return { type: 'command', index: e.index, term: e.term, data: copyData ? e.data.slice() : e.data };
    case 'config':
      return { type: 'config', index: e.index, term: e.term, peers: [...e.peers] };
  }
}
