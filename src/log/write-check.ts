import type { HardState } from './store.js';
/**
 * What both log stores check before they accept a write, so that `MemoryLogStore` and
 * `LmdbLogStore` refuse exactly the same writes (test/log-store.spec.ts holds them to it).
 *
 * A store validates each write against the state that every write issued before it leaves
 * (its "tip"), not against what is already durable: writes are pipelined, and a write
 * issued while an earlier one is still in flight builds on that earlier one.
 */
import { copyAddresses, isSnapshotMeta, type Snapshot, type SnapshotMeta, type SnapshotWrite } from '../messages.js';
import { StorageError } from '../errors.js';
import type { LogWrite } from './store.js';

/**
 * The state a store is in after some prefix of its writes. Always firstIndex = the
 * snapshot's index + 1 (1 without a snapshot) and lastIndex >= the snapshot's index.
 */
export interface LogTip {
  readonly term: number;
  readonly votedFor: string | null;
  readonly firstIndex: number;
  readonly lastIndex: number;
  readonly lastTerm: number;
  /**
   * The snapshot, as the store keeps it (`canonicalSnapshot`: its own copy of the data). Held
   * in the tip so that `snapshot()` answers from what is durable like every other query, and
   * the snapshot of a write in flight becomes durable with the rest of that write.
   */
  readonly snapshot: Snapshot | null;
}

export const EMPTY_TIP: LogTip = { term: 0, votedFor: null, firstIndex: 1, lastIndex: 0, lastTerm: 0, snapshot: null };

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

  snapshot(): Snapshot | null {
    return this.durable.snapshot;
  }
}

const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;

/**
 * Check `w` against `tip` and return the tip after it, or throw StorageError. Nothing is
 * changed either way: the caller issues the write only once this has returned.
 *
 * `termAt(i)` gives the term of entry i in `tip` (firstIndex <= i <= lastIndex); it is asked
 * only when a truncation leaves a shorter log that still holds entries, and to check that a
 * snapshot compacting the log matches the entry at its index.
 *
 * A write with a snapshot returns a tip holding a copy of it (`canonicalSnapshot`), which the
 * store keeps and stores: the caller may reuse the data's buffer once write() returns.
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

  let { firstIndex, lastIndex, lastTerm } = tip;
  let snapshotTerm = tip.snapshot?.meta.term ?? 0;
  if (w.snapshot !== undefined && w.snapshot !== null) {
    const meta = checkSnapshot(tip, w.snapshot, w.term, termAt);
    firstIndex = meta.index + 1;
    snapshotTerm = meta.term;
    if (w.snapshot.discardLog) {
      lastIndex = meta.index;
      lastTerm = meta.term;
    }
  }

  if (w.truncateFrom > 0 && w.truncateFrom <= lastIndex) {
    if (w.truncateFrom < firstIndex) {
      throw new StorageError(`cannot truncate from ${w.truncateFrom}: the log starts at ${firstIndex}`);
    }
    // §5.3: delete the conflicting entry and all that follow it. Truncating to firstIndex
    // leaves the log ending where the snapshot does (or empty, with no snapshot).
    lastIndex = w.truncateFrom - 1;
    lastTerm = lastIndex >= firstIndex ? termAt(lastIndex) : snapshotTerm;
  }

  // Each entry's shape was checked once, where it entered this thread (the log actor's message
  // guard, `isLogRequest`); here only its place in the log is.
  for (const e of w.entries) {
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

  // Copied last, once the whole write is accepted.
  const snapshot = w.snapshot ? canonicalSnapshot(w.snapshot) : tip.snapshot;
  return { term: w.term, votedFor: w.votedFor, firstIndex, lastIndex, lastTerm, snapshot };
}

/** Check a write's snapshot against `tip` (see `LogWrite.snapshot`) and return its meta. */
function checkSnapshot(
  tip: LogTip,
  s: SnapshotWrite,
  writeTerm: number,
  termAt: (index: number) => number,
): SnapshotMeta {
  if (typeof s !== 'object' || s === null || !isSnapshotMeta(s.meta)) {
    throw new StorageError('write snapshot must be { meta: SnapshotMeta, data, discardLog }');
  }
  const { meta } = s;
  if (!(s.data instanceof Uint8Array) || s.data.length !== meta.size) {
    const got = s.data instanceof Uint8Array ? `${s.data.length} bytes` : 'no Uint8Array';
    throw new StorageError(`snapshot ${meta.index} has ${got} of data, its meta says ${meta.size}`);
  }
  if (typeof s.discardLog !== 'boolean') throw new StorageError('write snapshot discardLog must be a boolean');
  const current = tip.snapshot?.meta;
  // A snapshot only ever moves forward: one at or below the stored one would bring back
  // entries that are gone.
  if (current !== undefined && meta.index <= current.index) {
    throw new StorageError(`snapshot ${meta.index} is not above the stored snapshot ${current.index}`);
  }
  if (meta.index === 0) throw new StorageError('a snapshot must cover at least entry 1');
  // The same invariants as for entries: terms never decrease along a log, and nothing in the
  // log is newer than the term the write is made in.
  if (current !== undefined && meta.term < current.term) {
    throw new StorageError(`snapshot ${meta.index} has term ${meta.term}, below the stored snapshot's ${current.term}`);
  }
  if (meta.term > writeTerm) {
    throw new StorageError(`snapshot ${meta.index} has term ${meta.term}, above the write's term ${writeTerm}`);
  }
  if (!s.discardLog) {
    // Compaction (§7): the snapshot stands for a prefix of this log, so it must end on an
    // entry of this log. A log that does not match takes the snapshot with discardLog.
    if (meta.index > tip.lastIndex) {
      throw new StorageError(`snapshot ${meta.index} compacts beyond the log, which ends at ${tip.lastIndex}`);
    }
    const term = termAt(meta.index);
    if (term !== meta.term) {
      throw new StorageError(`snapshot ${meta.index} has term ${meta.term}, but entry ${meta.index} has term ${term}`);
    }
  }
  return meta;
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
 * The snapshot as a store keeps it: only its own fields, in the key order of their types in
 * src/messages.ts (so every stored snapshot packs alike), with a copy of the data.
 */
export function canonicalSnapshot(s: Snapshot): Snapshot {
  const m = s.meta;
  return {
    meta: {
      index: m.index,
      term: m.term,
      peers: [...m.peers],
      old: m.old === null ? null : [...m.old],
      digest: m.digest,
      size: m.size,
      ...(m.addresses === undefined ? {} : { addresses: copyAddresses(m.addresses) }),
    },
    data: new Uint8Array(s.data),
  };
}
