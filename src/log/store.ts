/**
 * The log store: entries by index plus the hard state (§5.1 currentTerm, votedFor).
 * One interface, two implementations (`MemoryLogStore` for the simulator and unit tests,
 * `LmdbLogStore` for the log actor), held to one contract suite in test/log-store.spec.ts.
 */
import type { Entry } from '../messages.js';

export interface HardState {
  term: number;
  votedFor: string | null;
}

/** One durable write, applied in this order: hard state, truncation, append. */
export interface LogWrite {
  term: number;
  votedFor: string | null;
  /** Delete every entry with index >= truncateFrom first; 0 means no truncation. */
  truncateFrom: number;
  /** Entries to append; their indexes must continue the log without a gap. */
  entries: Entry[];
}

export interface LogStore {
  hardState(): HardState;
  /** Index of the first stored entry (1 while nothing is compacted). */
  firstIndex(): number;
  /** Index of the last stored entry, 0 when empty. */
  lastIndex(): number;
  /** Term of the last stored entry, 0 when empty. */
  lastTerm(): number;
  /** Entries with from <= index <= to that exist, in order. */
  entries(from: number, to: number): Entry[];
  /**
   * Carry out one write. The promise resolves only once the write is durable; writes
   * resolve in the order they were issued. Rejects with StorageError on a gap or I/O error.
   */
  write(w: LogWrite): Promise<void>;
  close(): Promise<void>;
}
