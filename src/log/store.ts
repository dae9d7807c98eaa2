/**
 * The log store: entries by index plus the hard state (§5.1 currentTerm, votedFor).
 * One interface, two implementations (`MemoryLogStore` for the simulator and unit tests,
 * `LmdbLogStore` for the log actor), held to one contract suite in test/log-store.spec.ts.
 */
import type { Entry, Snapshot, SnapshotWrite } from '../messages.js';

export interface HardState {
  term: number;
  votedFor: string | null;
}

/** One durable write, applied in this order: snapshot and compaction, hard state, truncation, append. */
export interface LogWrite {
  /**
   * A snapshot to store in place of the stored one (its index must be above the stored
   * snapshot's). Then, with `discardLog`, every entry is deleted and the log continues from the
   * snapshot (lastIndex = its index, lastTerm = its term); otherwise the entries up to its
   * index are deleted (compaction, §7), and the log must reach that index with an entry of
   * the snapshot's term. Either way firstIndex becomes the snapshot's index + 1. Also refused:
   * data that is not `meta.size` bytes, index 0, a term above the write's `term` or below the
   * stored snapshot's (terms never decrease along a log).
   */
  snapshot?: SnapshotWrite | null;
  term: number;
  votedFor: string | null;
  /**
   * Delete every entry with index >= truncateFrom first; 0 means no truncation. Refused below
   * firstIndex (a snapshot is never truncated); at firstIndex the log is left ending at the
   * snapshot (lastIndex, lastTerm = its index and term).
   */
  truncateFrom: number;
  /** Entries to append; their indexes must continue the log without a gap. */
  entries: Entry[];
}

export interface LogStore {
  hardState(): HardState;
  /** Index of the first stored entry (1 while nothing is compacted, else the snapshot's index + 1). */
  firstIndex(): number;
  /** Index of the last stored entry, or the snapshot's index when no entry follows it; 0 when empty. */
  lastIndex(): number;
  /** Term of that entry (or of the snapshot), 0 when empty. */
  lastTerm(): number;
  /** The durable snapshot, if any (its data is the store's own copy; do not modify it). */
  snapshot(): Snapshot | null;
  /** Entries with from <= index <= to that exist, in order. */
  entries(from: number, to: number): Entry[];
  /**
   * Carry out one write. The promise resolves only once the write is durable; writes
   * resolve in the order they were issued. Rejects with StorageError on a gap or I/O error.
   */
  write(w: LogWrite): Promise<void>;
  close(): Promise<void>;
}
