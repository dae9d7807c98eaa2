/**
 * Raft's safety properties (Figure 3 of the paper), checked by the simulator after every
 * event, plus the durability rules the shells rely on (docs/architecture.md, "Rules of the protocol").
 *
 *  - Election Safety: at most one leader per term, ever (a peer that is elected twice in the
 *    same term across a restart counts as two leaders).
 *  - Leader Append-Only: a leader never overwrites or deletes entries in its log.
 *  - Log Matching: two logs holding an entry with the same index and term are identical up
 *    to that index. Checked over the whole run, not only between live logs: every (index,
 *    term) ever seen is bound to the hash of the log prefix it ended, and any log that later
 *    holds that (index, term) must end the same prefix there.
 *  - Leader Completeness: an entry committed in term T is in the log of every leader of a
 *    term > T (checked when a leader is elected, when an entry is first seen committed, and
 *    continuously through Leader Append-Only).
 *  - State Machine Safety: no two peers apply different entries at the same index; the real
 *    apply side (src/state-machines/replicated.ts) gives every entry the same outcome and the
 *    same applied digest after it on every peer; peers that snapshot at the same index hold
 *    the same state (the same bytes), and a snapshot restored is one taken at its index.
 *  - Durability: a granted vote and an AppendEntries success leave a peer only once what
 *    they claim is on its disk; a leader is elected only with its own term and vote on disk;
 *    a committed entry is on a majority of disks when it is first seen committed and is
 *    never removed from any disk; a command acknowledged to a client is committed at the
 *    index it was acknowledged for.
 *
 * The checker reads the cores' state but trusts none of their bookkeeping: it diffs each
 * log against its own shadow copy and reads disks directly.
 */
import { hasQuorum, jointConfig, stableConfig, type Config } from '../../src/config.js';
import type { CoreState } from '../../src/core/index.js';
import { OUTCOME_OF, type ErrorOutcome } from '../../src/errors.js';
import type { ConfigEntry, Entry, PeerMessage, PersistRequest, Snapshot } from '../../src/messages.js';
import type { Outcome } from '../../src/state-machines/replicated.js';

export class InvariantViolation extends Error {
  override readonly name = 'InvariantViolation';
  constructor(
    readonly rule: string,
    detail: string,
  ) {
    super(`${rule}: ${detail}`);
  }
}

/**
 * What a peer keeps across crashes (the simulator's in-memory LMDB). `entries[i - 1]` is entry
 * i; entries compacted into the snapshot are holes.
 */
export interface Disk {
  term: number;
  votedFor: string | null;
  entries: Entry[];
  snapshot: Snapshot | null;
}

function configOfEntry(e: ConfigEntry): Config {
  return e.old === undefined ? stableConfig(e.peers) : jointConfig(e.old, e.peers);
}

/** What the checker may look at of a simulated peer. */
export interface PeerView {
  readonly id: string;
  /** null while crashed. */
  readonly core: CoreState | null;
  /** Bumped on every restart. */
  readonly incarnation: number;
  readonly disk: Disk;
  /** Fingerprints of the entries its state machine applied since the last restart (or that its snapshot stands for). */
  readonly applied: readonly string[];
}

const fpCache = new WeakMap<Entry, string>();

/** Content of an entry, without its position (index and term are compared separately). */
export function fingerprint(e: Entry): string {
  let fp = fpCache.get(e);
  if (fp !== undefined) return fp;
  switch (e.type) {
    case 'noop':
      fp = 'noop';
      break;
    case 'config':
      fp = `config:${e.old ? `${e.old.join(',')}>` : ''}${e.peers.join(',')}`;
      break;
    case 'command': {
      let s = 'cmd:';
      for (const b of e.data) s += (b < 16 ? '0' : '') + b.toString(16);
      fp = s;
      break;
    }
  }
  fpCache.set(e, fp);
  return fp;
}

/** Stands for compacted entries in a shadow log (never compared: compacted entries cannot change). */
const COMPACTED: Entry = Object.freeze({ type: 'noop', index: -1, term: -1 }) as Entry;

/** Two independent 32-bit FNV-1a style hashes of (previous prefix hash, term, content). */
function chain(prev: number, term: number, fp: string): number {
  let h1 = (prev % 0x100000000) ^ 0x811c9dc5;
  let h2 = Math.floor(prev / 0x100000000) ^ 0x01000193 ^ term;
  h1 = Math.imul(h1 ^ term, 0x01000193) >>> 0;
  for (let i = 0; i < fp.length; i++) {
    const c = fp.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 0x01000193) >>> 0;
    h2 = Math.imul(h2 ^ c, 0x5bd1e995) >>> 0;
  }
  // 53 bits, so it stays an exact JS number.
  return (h2 & 0x1fffff) * 0x100000000 + h1;
}

interface Shadow {
  /** The log as last seen, by reference. */
  refs: Entry[];
  /** hashes[i - 1]: hash of the prefix ending at index i. */
  hashes: number[];
  /** Role and term as last seen (for Leader Append-Only). */
  leaderTerm: number;
}

interface Committed {
  term: number;
  fp: string;
  /** The lowest term of a peer seen applying it: the entry was committed in this term or earlier. */
  commitTerm: number;
  /** The state machine's answer to it and the applied digest after it, as the first peer to apply it had them. */
  outcome?: string;
  digest?: number;
}

/** A snapshot some peer took: the state at its index, and the entries that state stands for. */
interface TakenSnapshot {
  term: number;
  data: Uint8Array;
  digest: number;
  applied: readonly string[];
}

/** `notApplied`: answered with an error whose outcome is 'not-applied' (src/errors.ts), so it must never be applied. */
export type RequestStatus = 'pending' | 'acked' | 'notApplied' | 'lost' | 'unknown';

export interface ClientRequestRecord {
  id: number;
  fp: string;
  peer: string;
  status: RequestStatus;
  /** Index it was acknowledged at, once acked. */
  index: number;
}

export class SafetyChecker {
  readonly quorum: number;
  /** term → who led it (id and incarnation). */
  readonly leaders = new Map<number, { id: string; incarnation: number }>();
  /** (index, term) → hash of the log prefix ending there, and who first held it. */
  private readonly prefixOf = new Map<number, { hash: number; peer: string }>();
  private readonly shadows = new Map<string, Shadow>();
  /** committed[i]: the entry committed at index i (from applies anywhere). */
  private readonly committed: (Committed | undefined)[] = [];
  /** command fingerprint → index where it was applied. */
  private readonly appliedAt = new Map<string, number>();
  /** index → the snapshot taken there (the first one; any other must be the same). */
  private readonly snapshots = new Map<number, TakenSnapshot>();
  /** `${voter}@${term}` → candidate granted. */
  private readonly granted = new Map<string, string>();
  readonly requests = new Map<number, ClientRequestRecord>();
  private readonly byFp = new Map<string, ClientRequestRecord>();
  /** Counters, for the run summary. */
  readonly stats = { elections: 0, maxCommitted: 0, acked: 0, checks: 0 };

  constructor(private readonly peers: () => readonly PeerView[]) {
    this.quorum = Math.floor(peers().length / 2) + 1;
  }

  get committedCount(): number {
    return this.committed.length - 1 < 0 ? 0 : this.committed.length - 1;
  }

  // -------------------------------------------------------------------------------------------
  // After every step of a core

  afterStep(p: PeerView): void {
    const core = p.core!;
    this.stats.checks++;
    const sh = this.shadowOf(p);
    this.diffLog(p, core, sh);
    const disk = p.disk;
    if (core.currentTerm < disk.term) {
      throw new InvariantViolation('Durability', `${p.id} runs in term ${core.currentTerm} below its durable term ${disk.term}`);
    }
    if (core.commitIndex > core.log.lastIndex || core.lastApplied > core.commitIndex) {
      throw new InvariantViolation(
        'Sanity',
        `${p.id}: lastApplied ${core.lastApplied} commitIndex ${core.commitIndex} lastIndex ${core.log.lastIndex}`,
      );
    }
    if (core.role === 'leader') {
      const seen = this.leaders.get(core.currentTerm);
      if (seen === undefined) {
        this.leaders.set(core.currentTerm, { id: p.id, incarnation: p.incarnation });
        this.onNewLeader(p, core);
      } else if (seen.id !== p.id || seen.incarnation !== p.incarnation) {
        throw new InvariantViolation(
          'Election Safety',
          `term ${core.currentTerm} has two leaders: ${seen.id}#${seen.incarnation} and ${p.id}#${p.incarnation}`,
        );
      }
      sh.leaderTerm = core.currentTerm;
    } else {
      sh.leaderTerm = 0;
    }
  }

  /** A peer restarted: its core was rebuilt from its disk. */
  onRestart(p: PeerView): void {
    const sh: Shadow = { refs: [], hashes: [], leaderTerm: 0 };
    this.shadows.set(p.id, sh);
    this.diffLog(p, p.core!, sh);
  }

  /** Pending requests at a crashed peer have an unknown outcome. */
  onCrash(id: string): void {
    for (const r of this.requests.values()) if (r.peer === id && r.status === 'pending') r.status = 'unknown';
  }

  private shadowOf(p: PeerView): Shadow {
    let sh = this.shadows.get(p.id);
    if (!sh) {
      sh = { refs: [], hashes: [], leaderTerm: 0 };
      this.shadows.set(p.id, sh);
    }
    return sh;
  }

  /**
   * Bring the shadow of `p`'s log up to date. A Raft log only changes at its tail (truncate,
   * append), so walk back from the shorter end until the entries are the same objects.
   */
  private diffLog(p: PeerView, core: CoreState, sh: Shadow): void {
    const log = core.log;
    const snap = log.snapshotIndex;
    if (snap > 0) this.rebaseOnSnapshot(p, core, sh);
    const newLast = log.lastIndex;
    const oldLast = sh.refs.length;
    let k = Math.min(oldLast, newLast);
    // Entries up to the snapshot are committed and compacted: they cannot have changed.
    while (k > snap && sh.refs[k - 1] !== entryAt(p, core, k)) k--;
    if (k === oldLast && k === newLast) return;
    if (k < oldLast) {
      // §5.3 / Figure 3 Leader Append-Only.
      if (sh.leaderTerm !== 0 && sh.leaderTerm === core.currentTerm && core.role === 'leader') {
        throw new InvariantViolation('Leader Append-Only', `leader ${p.id} of term ${core.currentTerm} lost entries from ${k + 1}`);
      }
      if (k < p.applied.length) {
        throw new InvariantViolation(
          'State Machine Safety',
          `${p.id} removed entry ${k + 1} from its log after applying through ${p.applied.length}`,
        );
      }
      sh.refs.length = k;
      sh.hashes.length = k;
    }
    for (let i = k + 1; i <= newLast; i++) {
      const e = entryAt(p, core, i)!;
      if (e.index !== i) throw new InvariantViolation('Sanity', `${p.id} holds entry with index ${e.index} at ${i}`);
      const prevTerm = i === 1 ? 0 : sh.refs[i - 2]!.term;
      if (e.term < prevTerm || e.term > core.currentTerm) {
        throw new InvariantViolation('Sanity', `${p.id} entry ${i} has term ${e.term} (previous ${prevTerm}, current ${core.currentTerm})`);
      }
      const hash = chain(i === 1 ? 0 : sh.hashes[i - 2]!, e.term, fingerprint(e));
      const key = i * 4294967296 + e.term;
      const seen = this.prefixOf.get(key);
      if (seen === undefined) this.prefixOf.set(key, { hash, peer: p.id });
      else if (seen.hash !== hash) {
        throw new InvariantViolation(
          'Log Matching',
          `${p.id} and ${seen.peer} both hold an entry at index ${i} term ${e.term}, but their logs differ up to it`,
        );
      }
      sh.refs.push(e);
      sh.hashes.push(hash);
    }
  }

  /**
   * A log that starts after a snapshot: its prefix up to the snapshot is the committed one,
   * whose hash some peer's log established when it held that entry. A shadow that is shorter,
   * or that ended another prefix there (a follower whose divergent log a snapshot replaced),
   * is rebased onto it.
   */
  private rebaseOnSnapshot(p: PeerView, core: CoreState, sh: Shadow): void {
    const snap = core.log.snapshotIndex;
    const term = core.log.snapshotTerm;
    const canonical = this.prefixOf.get(snap * 4294967296 + term);
    if (canonical === undefined) {
      throw new InvariantViolation('Sanity', `${p.id} holds a snapshot at ${snap} (term ${term}) of an entry no log ever held`);
    }
    if (sh.refs.length >= snap && sh.hashes[snap - 1] === canonical.hash) return;
    sh.refs = new Array<Entry>(snap).fill(COMPACTED);
    sh.refs[snap - 1] = { type: 'noop', index: snap, term };
    sh.hashes = new Array<number>(snap).fill(0);
    sh.hashes[snap - 1] = canonical.hash;
  }

  private onNewLeader(p: PeerView, core: CoreState): void {
    this.stats.elections++;
    // The leader's own term and vote are durable: otherwise a crash could let it be elected
    // again in the same term with a different log.
    if (p.disk.term !== core.currentTerm || p.disk.votedFor !== p.id) {
      throw new InvariantViolation(
        'Durability',
        `${p.id} became leader of term ${core.currentTerm} with disk term ${p.disk.term} votedFor ${p.disk.votedFor}`,
      );
    }
    // §5.2: elected by a quorum of its configuration (§6: both majorities when joint), each
    // vote granted durably (counted from the votes sent).
    const votedFor = (id: string) => id === p.id || this.granted.get(`${id}@${core.currentTerm}`) === p.id;
    if (core.config === null || !hasQuorum(core.config, votedFor)) {
      throw new InvariantViolation('Election Safety', `${p.id} leads term ${core.currentTerm} without a quorum of granted votes`);
    }
    // Leader Completeness.
    for (let i = 1; i < this.committed.length; i++) {
      const c = this.committed[i];
      if (c && c.commitTerm < core.currentTerm) this.expectHas(p, core, i, c, 'elected');
    }
  }

  private expectHas(p: PeerView, core: CoreState, i: number, c: Committed, when: string): void {
    // In its snapshot, whose content was checked against the committed entries when stored.
    if (i <= core.log.snapshotIndex) return;
    const e = entryAt(p, core, i);
    if (!e || e.term !== c.term || fingerprint(e) !== c.fp) {
      throw new InvariantViolation(
        'Leader Completeness',
        `leader ${p.id} of term ${core.currentTerm} (${when}) lacks entry ${i} (term ${c.term}) committed in term ${c.commitTerm}; it has ${e ? `term ${e.term}` : 'nothing'}`,
      );
    }
  }

  // -------------------------------------------------------------------------------------------
  // Effects

  /** An `apply` effect of `p`, before the state machine takes the entries. */
  onApply(p: PeerView, entries: readonly Entry[], requestIds: readonly (number | null)[]): void {
    const core = p.core!;
    if (requestIds.length !== entries.length) {
      throw new InvariantViolation('Sanity', `${p.id} apply with ${entries.length} entries and ${requestIds.length} request ids`);
    }
    let expected = p.applied.length + 1;
    for (let k = 0; k < entries.length; k++) {
      const e = entries[k]!;
      if (e.index !== expected) {
        throw new InvariantViolation('State Machine Safety', `${p.id} applies index ${e.index}, expected ${expected}`);
      }
      expected++;
      const fp = fingerprint(e);
      const mine = entryAt(p, core, e.index);
      if (mine !== e) {
        throw new InvariantViolation('Sanity', `${p.id} applies entry ${e.index} that is not the one in its log`);
      }
      const c = this.committed[e.index];
      if (c === undefined) {
        const fresh: Committed = { term: e.term, fp, commitTerm: core.currentTerm };
        this.committed[e.index] = fresh;
        this.stats.maxCommitted = Math.max(this.stats.maxCommitted, e.index);
        this.onNewlyCommitted(p, e.index, fresh);
      } else {
        if (c.term !== e.term || c.fp !== fp) {
          throw new InvariantViolation(
            'State Machine Safety',
            `${p.id} applies ${fp} (term ${e.term}) at index ${e.index}, where ${c.fp} (term ${c.term}) was applied`,
          );
        }
        if (core.currentTerm < c.commitTerm) {
          c.commitTerm = core.currentTerm;
          this.checkLeadersHave(e.index, c);
        }
      }
      if (e.type === 'command') {
        const at = this.appliedAt.get(fp);
        if (at === undefined) this.appliedAt.set(fp, e.index);
        else if (at !== e.index) {
          throw new InvariantViolation('State Machine Safety', `command ${fp} applied at ${at} and at ${e.index}`);
        }
        const r = this.byFp.get(fp);
        if (r && r.status === 'notApplied') {
          throw new InvariantViolation('Client', `request ${r.id}, answered with an error whose outcome is not-applied, was applied at ${e.index}`);
        }
      }
      const rid = requestIds[k];
      if (rid !== null && rid !== undefined) {
        const r = this.requests.get(rid);
        if (!r) throw new InvariantViolation('Client', `${p.id} acknowledged unknown request ${rid}`);
        if (r.fp !== fp) {
          throw new InvariantViolation('Client', `${p.id} acknowledged request ${rid} with entry ${e.index} holding another command`);
        }
        if (r.peer !== p.id || r.status !== 'pending') {
          throw new InvariantViolation('Client', `${p.id} acknowledged request ${rid} (sent to ${r.peer}, status ${r.status})`);
        }
        r.status = 'acked';
        r.index = e.index;
        this.stats.acked++;
      }
    }
  }

  /**
   * A committed entry is stored on a quorum of disks (in a snapshot or as an entry): a quorum of
   * the configuration in force at it, or of a later one (§6: a leader counts by the latest
   * configuration in its log, which may be in no other log yet). The candidates come from every
   * live log and every crashed peer's disk.
   */
  private onNewlyCommitted(p: PeerView, i: number, c: Committed): void {
    const all = this.peers();
    const peers = new Map(all.map((v) => [v.id, v]));
    const onDisk = (id: string) => {
      const d = peers.get(id)?.disk;
      if (!d) return false;
      if (d.snapshot !== null && d.snapshot.meta.index >= i) return true;
      const e = d.entries[i - 1];
      return e !== undefined && e.term === c.term && fingerprint(e) === c.fp;
    };
    const candidates: ConfigEntry[] = [];
    for (const v of all) {
      if (v.core) {
        const inForce = v.core.log.lastConfig(i);
        if (inForce) candidates.push(inForce);
        candidates.push(...v.core.log.configsAfter(i));
      } else {
        for (let k = i; k < v.disk.entries.length; k++) {
          const e = v.disk.entries[k];
          if (e?.type === 'config') candidates.push(e);
        }
      }
    }
    if (p.core!.log.lastConfig(i) === undefined) throw new InvariantViolation('Sanity', `${p.id} applies ${i} with no configuration`);
    // Once C_old,new is committed the leader appends C_new and counts by it at once (§6); if it
    // then crashes before C_new is durable, C_new is in no log any more. Every later election
    // still needs a majority of C_new (both C_old,new and C_new do), so that is the rule.
    const configs = candidates.map(configOfEntry);
    for (const e of candidates) {
      if (e.old !== undefined && e.index < i && this.committed[e.index] !== undefined) configs.push(stableConfig(e.peers));
    }
    if (!configs.some((config) => hasQuorum(config, onDisk))) {
      throw new InvariantViolation('Durability', `entry ${i} (term ${c.term}) applied while on no quorum of disks`);
    }
    this.checkLeadersHave(i, c);
  }

  /**
   * The real state machine of `p` answered entry `e` with `outcome`, and its applied digest is
   * `digest` after it: every peer that applies the same index must say the same.
   */
  onApplied(p: PeerView, e: Entry, outcome: Outcome | null, digest: number): void {
    const c = this.committed[e.index]!;
    const answer = outcome === null ? '-' : JSON.stringify(outcome);
    if (c.digest === undefined) {
      c.digest = digest;
      c.outcome = answer;
      return;
    }
    if (c.digest !== digest) {
      throw new InvariantViolation(
        'State Machine Safety',
        `${p.id} has applied digest ${digest} after entry ${e.index}, where another peer had ${c.digest}`,
      );
    }
    if (c.outcome !== answer) {
      throw new InvariantViolation(
        'State Machine Safety',
        `${p.id} answers entry ${e.index} with ${answer}, where another peer answered ${c.outcome}`,
      );
    }
  }

  /** `p` took a snapshot at `index`: the state there is the same on every peer that takes one. */
  onSnapshotTaken(p: PeerView, index: number, data: Uint8Array, digest: number): void {
    const c = this.committed[index];
    if (c === undefined || c.digest !== digest) {
      throw new InvariantViolation(
        'State Machine Safety',
        `${p.id} snapshots at ${index} with digest ${digest}, not the digest applied there (${c?.digest})`,
      );
    }
    const seen = this.snapshots.get(index);
    if (seen === undefined) {
      this.snapshots.set(index, { term: c.term, data, digest, applied: p.applied.slice() });
      return;
    }
    if (!sameBytes(seen.data, data)) {
      throw new InvariantViolation('State Machine Safety', `${p.id} snapshots at ${index} a state other than another peer's there`);
    }
  }

  /**
   * A snapshot restored into `p`'s state machine must be one a peer took at its index, and hold
   * exactly the committed entries. Returns the fingerprints of those entries.
   */
  onRestore(p: PeerView, snapshot: Snapshot): string[] {
    const meta = snapshot.meta;
    const taken = this.snapshots.get(meta.index);
    if (taken === undefined || taken.term !== meta.term || taken.digest !== meta.digest || !sameBytes(taken.data, snapshot.data)) {
      throw new InvariantViolation(
        'State Machine Safety',
        `${p.id} restores a snapshot at ${meta.index} (term ${meta.term}) that no peer took there`,
      );
    }
    const applied = taken.applied;
    if (applied.length !== meta.index) {
      throw new InvariantViolation('State Machine Safety', `${p.id} restores a snapshot at ${meta.index} holding ${applied.length} entries`);
    }
    for (let i = 1; i <= meta.index; i++) {
      const c = this.committed[i];
      if (c !== undefined && c.fp !== applied[i - 1]) {
        throw new InvariantViolation('State Machine Safety', `${p.id} restores a snapshot whose entry ${i} is ${applied[i - 1]}, not ${c.fp}`);
      }
    }
    return applied.slice();
  }

  private checkLeadersHave(i: number, c: Committed): void {
    for (const v of this.peers()) {
      const core = v.core;
      if (core && core.role === 'leader' && core.currentTerm > c.commitTerm) this.expectHas(v, core, i, c, 'committed');
    }
  }

  /** A message leaves peer `p` (checked before the network sees it). */
  onSend(p: PeerView, m: PeerMessage): void {
    if (m.type === 'requestVoteReply' && m.granted) {
      // §5.2 at most one vote per term, across restarts; granted only once durable.
      const key = `${p.id}@${m.term}`;
      const before = this.granted.get(key);
      if (before !== undefined && before !== m.to) {
        throw new InvariantViolation('Election Safety', `${p.id} granted votes to ${before} and ${m.to} in term ${m.term}`);
      }
      this.granted.set(key, m.to);
      const d = p.disk;
      if (d.term < m.term || (d.term === m.term && d.votedFor !== m.to)) {
        throw new InvariantViolation(
          'Durability',
          `${p.id} grants a vote to ${m.to} in term ${m.term} with disk term ${d.term} votedFor ${d.votedFor}`,
        );
      }
    } else if (m.type === 'appendEntriesReply' && m.success) {
      // The entries were durable when the write they waited for landed. A later write of a
      // higher term, committed in the same batch, may already have truncated them again:
      // that is the same history as this reply being delayed in the network. Within the
      // reply's own term the disk cannot have lost them (a leader never conflicts with itself).
      const d = p.disk;
      if (d.term < m.term || (d.term === m.term && d.entries.length < m.matchIndex)) {
        throw new InvariantViolation(
          'Durability',
          `${p.id} acknowledges index ${m.matchIndex} of term ${m.term} with ${d.entries.length} entries on disk (disk term ${d.term})`,
        );
      }
    }
  }

  /** Check a durable write against the disk before it lands; returns nothing, throws on a bad write. */
  beforeDiskWrite(p: PeerView, w: PersistRequest): void {
    const d = p.disk;
    if (w.term < d.term) throw new InvariantViolation('Durability', `${p.id} writes term ${w.term} over ${d.term}`);
    if (w.term === d.term && d.votedFor !== null && w.votedFor !== d.votedFor) {
      throw new InvariantViolation('Election Safety', `${p.id} changes its durable vote in term ${w.term}: ${d.votedFor} → ${w.votedFor}`);
    }
    let last = d.entries.length;
    const s = w.snapshot;
    if (s) {
      const c = this.committed[s.meta.index];
      if (c === undefined || c.term !== s.meta.term) {
        throw new InvariantViolation('Durability', `${p.id} stores a snapshot at ${s.meta.index} (term ${s.meta.term}) of an entry not committed`);
      }
      if (s.discardLog) {
        for (let i = s.meta.index + 1; i <= last; i++) this.expectNotCommitted(p, d.entries[i - 1], i, 'discards');
        last = s.meta.index;
      }
    }
    const compactedTo = s ? s.meta.index : (d.snapshot?.meta.index ?? 0);
    if (w.truncateFrom > 0 && w.truncateFrom <= compactedTo) {
      throw new InvariantViolation('Durability', `${p.id} truncates from ${w.truncateFrom}, inside its snapshot (${compactedTo})`);
    }
    if (w.truncateFrom > 0) {
      if (w.truncateFrom > last + 1) {
        throw new InvariantViolation('Durability', `${p.id} truncates from ${w.truncateFrom} beyond its disk (${last} entries)`);
      }
      for (let i = w.truncateFrom; i <= last; i++) this.expectNotCommitted(p, d.entries[i - 1], i, 'removes');
      last = Math.min(last, w.truncateFrom - 1);
    }
    if (w.entries.length > 0 && w.entries[0]!.index !== last + 1) {
      throw new InvariantViolation('Durability', `${p.id} writes entry ${w.entries[0]!.index} after ${last} on disk`);
    }
  }

  private expectNotCommitted(p: PeerView, e: Entry | undefined, i: number, what: string): void {
    const c = this.committed[i];
    if (e && c && c.term === e.term && c.fp === fingerprint(e)) {
      throw new InvariantViolation('Durability', `${p.id} ${what} committed entry ${i} (term ${e.term}) from its disk`);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Clients

  onPropose(id: number, fp: string, peer: string): void {
    const r: ClientRequestRecord = { id, fp, peer, status: 'pending', index: 0 };
    this.requests.set(id, r);
    this.byFp.set(fp, r);
  }

  onClientError(p: PeerView, ids: readonly number[], code: string): void {
    for (const id of ids) {
      const r = this.requests.get(id);
      if (!r) throw new InvariantViolation('Client', `${p.id} fails unknown request ${id}`);
      if (r.status !== 'pending') throw new InvariantViolation('Client', `request ${id} got ${code} after ${r.status}`);
      // The outcome the API reports for this code (src/errors.ts): 'not-applied' must hold.
      const notApplied = (OUTCOME_OF as Readonly<Record<string, ErrorOutcome | undefined>>)[code] === 'not-applied';
      if (notApplied && this.appliedAt.has(r.fp)) {
        throw new InvariantViolation('Client', `request ${id} answered ${code} (not applied) but applied at ${this.appliedAt.get(r.fp)}`);
      }
      r.status = notApplied ? 'notApplied' : 'lost';
    }
  }

  /** The committed entry at `i`, if any peer applied one. */
  committedAt(i: number): { term: number; fp: string } | undefined {
    return this.committed[i];
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/**
 * Entry `i` of `p`'s log: from the core's memory window, or, before it, from the disk. Entries
 * leave memory only once applied and durable (or, at a restart, straight from the disk), and
 * the sim's disk holds the very objects the core had.
 */
function entryAt(p: PeerView, core: CoreState, i: number): Entry | undefined {
  return i >= core.log.firstCachedIndex ? core.log.entry(i) : p.disk.entries[i - 1];
}
