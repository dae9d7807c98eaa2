/**
 * The core's in-memory view of its log: every entry since the start (index 1), kept in
 * memory beside the durable copy the log actor holds. Pure data structure, no I/O.
 *
 * The whole log is held in memory until log compaction arrives (snapshots, §7); see
 * the README, "Beyond the paper".
 */
import type { Entry } from '../messages.js';

export class RaftLog {
  private readonly items: Entry[];

  constructor(entries: readonly Entry[] = []) {
    this.items = [];
    for (const e of entries) this.push(e);
  }

  get lastIndex(): number {
    return this.items.length;
  }

  get lastTerm(): number {
    return this.items.length === 0 ? 0 : this.items[this.items.length - 1]!.term;
  }

  /** Term of the entry at `index`: 0 for index 0 (the empty prefix), undefined past the end. */
  term(index: number): number | undefined {
    if (index === 0) return 0;
    return this.items[index - 1]?.term;
  }

  entry(index: number): Entry | undefined {
    return this.items[index - 1];
  }

  /** Entries from..to inclusive, clipped to the log. */
  slice(from: number, to: number): Entry[] {
    return this.items.slice(Math.max(from, 1) - 1, Math.min(to, this.lastIndex));
  }

  push(entry: Entry): void {
    if (entry.index !== this.lastIndex + 1) {
      throw new Error(`log gap: appending index ${entry.index} after ${this.lastIndex}`);
    }
    this.items.push(entry);
  }

  /** Delete every entry with index >= from (§5.3 conflict truncation). */
  truncateFrom(from: number): void {
    if (from <= this.lastIndex) this.items.length = Math.max(from - 1, 0);
  }

  /** §5.4.1: is a log ending at (lastTerm, lastIndex) at least as up-to-date as this one? */
  isUpToDate(lastTerm: number, lastIndex: number): boolean {
    return lastTerm > this.lastTerm || (lastTerm === this.lastTerm && lastIndex >= this.lastIndex);
  }

  /** First index of the run of entries with the term of the entry at `index` (§5.3 hint). */
  firstIndexOfTerm(index: number): number {
    const t = this.term(index);
    let i = index;
    while (i > 1 && this.term(i - 1) === t) i--;
    return i;
  }

  /** Last index <= `atMost` whose entry has term `term`, or 0 when the log has none. */
  lastIndexOfTerm(term: number, atMost: number): number {
    for (let i = Math.min(atMost, this.lastIndex); i > 0; i--) {
      const t = this.term(i)!;
      if (t === term) return i;
      if (t < term) return 0;
    }
    return 0;
  }

  /** The latest configuration entry at or below `atMost`, if any (§6: the latest one rules). */
  lastConfig(atMost = this.lastIndex): Entry | undefined {
    for (let i = Math.min(atMost, this.lastIndex); i > 0; i--) {
      const e = this.items[i - 1]!;
      if (e.type === 'config') return e;
    }
    return undefined;
  }
}
