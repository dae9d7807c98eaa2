/**
 * The core's in-memory view of its log. Pure data structure, no I/O.
 *
 * It knows the term of every index (as runs of equal terms: terms never decrease along a log,
 * §5.3) and every configuration entry (§6: the latest one rules), but keeps the entries
 * themselves only for a window at the end of the log, from `firstCachedIndex` to `lastIndex`.
 * The core evicts entries from the front of that window once they are applied and durable
 * (see `trimCache` in step.ts); entries before it are read back from the log actor (`fetch`
 * effects) when a lagging follower needs them or a restarted peer applies them. So what a
 * peer holds in memory is bounded by the window, not by the length of its log.
 */
import type { ConfigEntry, Entry, SnapshotMeta } from '../messages.js';

/** A run of consecutive entries with the same term, from `start` to the next run's start. */
interface TermRun {
  start: number;
  term: number;
}

/** An entry's weight for byte limits: its payload plus a fixed overhead. */
export function entryBytes(e: Entry): number {
  switch (e.type) {
    case 'command':
      return 16 + e.data.length;
    case 'config':
      return 16 + e.peers.reduce((n, p) => n + p.length + 1, 0);
    case 'noop':
      return 16;
  }
}

export class RaftLog {
  /** Entries firstCachedIndex..lastIndex. */
  private cache: Entry[] = [];
  private cacheStart = 1;
  private bytes = 0;
  private last = 0;
  /** Terms of 1..last, strictly increasing from run to run. */
  private readonly runs: TermRun[] = [];
  /** Every configuration entry after the snapshot, in index order. */
  private configs: ConfigEntry[] = [];
  private base = 0;
  private baseTerm = 0;
  /** The configuration as of the snapshot (null when there is no snapshot). */
  private baseConfig: ConfigEntry | null = null;

  constructor(entries: readonly Entry[] = [], snapshot?: SnapshotMeta) {
    if (snapshot) this.reset(snapshot);
    for (const e of entries) this.push(e);
  }

  /** The last index covered by the snapshot (0 without one): entries up to it are compacted. */
  get snapshotIndex(): number {
    return this.base;
  }

  get snapshotTerm(): number {
    return this.baseTerm;
  }

  /**
   * Compact: forget the entries up to `meta.index` (which must be in the log), now held by a
   * snapshot. Their terms and configurations go too, except the snapshot's own.
   */
  compact(meta: SnapshotMeta): void {
    if (meta.index <= this.base) return;
    if (meta.index > this.last || this.term(meta.index) !== meta.term) {
      throw new Error(`cannot compact to ${meta.index}/${meta.term}: the log does not hold it`);
    }
    if (meta.index >= this.cacheStart) {
      const drop = meta.index + 1 - this.cacheStart;
      for (let i = 0; i < drop; i++) this.bytes -= entryBytes(this.cache[i]!);
      this.cache = this.cache.slice(drop);
      this.cacheStart = meta.index + 1;
    }
    const r = this.runAt(meta.index);
    this.runs.splice(0, r);
    this.runs[0] = { start: meta.index, term: meta.term };
    this.configs = this.configs.filter((c) => c.index > meta.index);
    this.setBase(meta);
  }

  /** Replace the whole log by a snapshot (§7: a follower whose log does not match it). */
  reset(meta: SnapshotMeta): void {
    this.cache = [];
    this.bytes = 0;
    this.cacheStart = meta.index + 1;
    this.last = meta.index;
    this.runs.length = 0;
    this.runs.push({ start: meta.index, term: meta.term });
    this.configs = [];
    this.setBase(meta);
  }

  private setBase(meta: SnapshotMeta): void {
    this.base = meta.index;
    this.baseTerm = meta.term;
    this.baseConfig = { type: 'config', index: meta.index, term: meta.term, peers: [...meta.peers] };
    if (meta.old !== null) this.baseConfig.old = [...meta.old];
    if (meta.addresses !== undefined) this.baseConfig.addresses = meta.addresses;
  }

  get lastIndex(): number {
    return this.last;
  }

  get lastTerm(): number {
    return this.runs.length === 0 ? 0 : this.runs[this.runs.length - 1]!.term;
  }

  /** The first index whose entry is in memory (lastIndex + 1 when none is). */
  get firstCachedIndex(): number {
    return this.cacheStart;
  }

  /** How many entries, and how many bytes of them (`entryBytes`), are in memory. */
  get cachedCount(): number {
    return this.cache.length;
  }

  get cachedBytes(): number {
    return this.bytes;
  }

  /**
   * Term of the entry at `index`: 0 for index 0 (the empty prefix), the snapshot's term at its
   * index, undefined past the end and below the snapshot (compacted).
   */
  term(index: number): number | undefined {
    if (index === this.base) return this.baseTerm;
    if (index > this.last || index < this.base) return undefined;
    if (index >= this.cacheStart) return this.cache[index - this.cacheStart]!.term;
    return this.runs[this.runAt(index)]!.term;
  }

  /** The entry at `index` if it is in memory (evicted entries must be fetched). */
  entry(index: number): Entry | undefined {
    return index >= this.cacheStart ? this.cache[index - this.cacheStart] : undefined;
  }

  /** Entries from..to inclusive, clipped to the end of the log; `from` must be in memory. */
  slice(from: number, to: number): Entry[] {
    const lo = Math.max(from, 1);
    if (lo < this.cacheStart) throw new Error(`log entries from ${lo} are not in memory (cache starts at ${this.cacheStart})`);
    return this.cache.slice(lo - this.cacheStart, Math.min(to, this.last) - this.cacheStart + 1);
  }

  push(entry: Entry): void {
    if (entry.index !== this.last + 1) {
      throw new Error(`log gap: appending index ${entry.index} after ${this.last}`);
    }
    if (entry.term < this.lastTerm) throw new Error(`log term ${entry.term} at ${entry.index} is below ${this.lastTerm}`);
    if (entry.term !== this.lastTerm || this.runs.length === 0) this.runs.push({ start: entry.index, term: entry.term });
    if (this.cache.length === 0) this.cacheStart = entry.index;
    if (entry.type === 'config') this.configs.push(entry);
    this.cache.push(entry);
    this.bytes += entryBytes(entry);
    this.last = entry.index;
  }

  /** Delete every entry with index >= from (§5.3 conflict truncation). */
  truncateFrom(from: number): void {
    if (from > this.last) return;
    if (from <= this.base) throw new Error(`cannot truncate from ${from}: entries up to ${this.base} are in a snapshot`);
    const keep = from - 1;
    if (keep >= this.cacheStart) {
      for (let i = keep + 1 - this.cacheStart; i < this.cache.length; i++) this.bytes -= entryBytes(this.cache[i]!);
      this.cache.length = keep + 1 - this.cacheStart;
    } else {
      this.cache = [];
      this.bytes = 0;
      this.cacheStart = keep + 1;
    }
    while (this.runs.length > 0 && this.runs[this.runs.length - 1]!.start > keep) this.runs.pop();
    this.configs = this.configs.filter((c) => c.index <= keep);
    this.last = keep;
  }

  /**
   * Once the in-memory window holds more than `maxEntries` entries or `maxBytes` bytes, drop
   * entries from its front, never past `upTo`, down to three quarters of those limits (so the
   * copying is paid once per quarter window, not once per step). Their terms and
   * configurations stay known.
   */
  evict(upTo: number, maxEntries: number, maxBytes: number): void {
    if (this.cache.length <= maxEntries && this.bytes <= maxBytes) return;
    const lowEntries = Math.floor(maxEntries * 0.75);
    const lowBytes = Math.floor(maxBytes * 0.75);
    let drop = 0;
    let bytes = this.bytes;
    const limit = Math.min(upTo - this.cacheStart + 1, this.cache.length);
    while (drop < limit && (this.cache.length - drop > lowEntries || bytes > lowBytes)) {
      bytes -= entryBytes(this.cache[drop]!);
      drop++;
    }
    if (drop === 0) return;
    this.cache = this.cache.slice(drop);
    this.bytes = bytes;
    this.cacheStart += drop;
  }

  /** §5.4.1: is a log ending at (lastTerm, lastIndex) at least as up-to-date as this one? */
  isUpToDate(lastTerm: number, lastIndex: number): boolean {
    return lastTerm > this.lastTerm || (lastTerm === this.lastTerm && lastIndex >= this.last);
  }

  /**
   * First index of the run of entries with the term of the entry at `index` (§5.3 hint), never
   * at or below the snapshot: its entries are committed, so they match any leader's.
   */
  firstIndexOfTerm(index: number): number {
    if (index <= this.base || index > this.last) return index;
    return Math.max(this.runs[this.runAt(index)]!.start, this.base + 1);
  }

  /** Last index <= `atMost` whose entry has term `term`, or 0 when the log has none. */
  lastIndexOfTerm(term: number, atMost: number): number {
    const top = Math.min(atMost, this.last);
    if (top < 1) return 0;
    for (let r = this.runAt(top); r >= 0; r--) {
      const run = this.runs[r]!;
      if (run.term === term) return r === this.runAt(top) ? top : this.runs[r + 1]!.start - 1;
      if (run.term < term) return 0;
    }
    return 0;
  }

  /**
   * The latest configuration entry at or below `atMost`, if any (§6: the latest one rules);
   * the snapshot's configuration stands for the compacted ones.
   */
  lastConfig(atMost = this.last): ConfigEntry | undefined {
    for (let i = this.configs.length - 1; i >= 0; i--) {
      if (this.configs[i]!.index <= atMost) return this.configs[i];
    }
    return this.baseConfig !== null && this.base <= atMost ? this.baseConfig : undefined;
  }

  /** The configuration entries after `index`, in order. */
  configsAfter(index: number): ConfigEntry[] {
    return this.configs.filter((c) => c.index > index);
  }

  /** Index into `runs` of the run holding `index` (1 <= index <= last). */
  private runAt(index: number): number {
    let lo = 0;
    let hi = this.runs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.runs[mid]!.start <= index) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }
}
