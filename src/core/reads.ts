/**
 * The bookkeeping of linearizable reads (after etcd/raft's `read_only.go`): ReadIndex rounds
 * (thesis §6.4) and the leader's lease (thesis §6.4.1). Pure data: the step function sends the
 * heartbeats that carry a round (`readSeq`), turns what these functions return into effects,
 * and decides when a round may start (§6.4 step 1: an entry of the leader's term committed).
 */
import { committedIndex, hasQuorum, type Config } from '../config.js';
import { leaseTicks } from './options.js';
import type { CoreOptions, CoreState, ReadBatch, ReadState } from './types.js';

/** A round whose confirmation the reads in it wait for. */
export type ReadRound = NonNullable<ReadState['inRound']>;

/** Reads a follower forwarded to us, the leader, to be answered with a read index. */
type ForwardedBatch = Extract<ReadBatch, { kind: 'forwarded' }>;

export function newReadState(): ReadState {
  return {
    round: 0,
    acked: new Map(),
    waiting: [],
    inRound: null,
    forwarded: new Map(),
    awaitingApply: [],
    leaseRounds: [],
    leaseUntil: 0,
  };
}

/** A new leadership: no follower has acknowledged this term yet, and there is no lease. */
export function resetForLeadership(r: ReadState): void {
  r.acked.clear();
  r.leaseRounds = [];
  r.leaseUntil = 0;
}

/**
 * Start a new round of AppendEntries (their `readSeq`) at tick `now`; returns its number.
 * With lease reads the round's start is remembered: its acknowledgement by a quorum gives a
 * lease from then on.
 */
export function nextRound(r: ReadState, o: CoreOptions, now: number): number {
  const round = ++r.round;
  if (o.leaseReads && r.leaseUntil >= 0) {
    // Rounds that could no longer give a lease (a leader that hears no quorum) are dropped.
    const lease = leaseTicks(o);
    while (r.leaseRounds.length > 0 && r.leaseRounds[0]!.start + lease <= now) r.leaseRounds.shift();
    r.leaseRounds.push({ round, start: now });
  }
  return round;
}

/**
 * §6.4 steps 2 and 3: the waiting reads take `readIndex` (the commit index) as their read
 * index and wait for a new round, started at tick `now`, to be acknowledged by a quorum.
 */
export function openRound(r: ReadState, o: CoreOptions, now: number, readIndex: number): void {
  r.inRound = { round: nextRound(r, o, now), readIndex, batches: r.waiting };
  r.waiting = [];
}

/** `peer` answered a message echoing round `readSeq`; false if that says nothing new. */
export function recordAck(r: ReadState, peer: string, readSeq: number): boolean {
  if (readSeq <= (r.acked.get(peer) ?? 0)) return false;
  r.acked.set(peer, readSeq);
  return true;
}

/**
 * The round in flight, taken off, if a quorum of `config` (with the leader `self`) has
 * acknowledged it; null while it has not. Its local reads then wait until the read index is
 * applied (§6.4 step 4); the batches forwarded by followers are returned for an answer.
 */
export function takeConfirmedRound(r: ReadState, config: Config, self: string): ReadRound | null {
  const current = r.inRound;
  if (current === null) return null;
  if (!hasQuorum(config, (id) => id === self || (r.acked.get(id) ?? 0) >= current.round)) return null;
  r.inRound = null;
  for (const b of current.batches) if (b.kind === 'local') r.awaitingApply.push({ readIndex: current.readIndex, ids: b.ids });
  return current;
}

/**
 * Thesis §6.4.1: once a quorum has acknowledged a round, no other leader can be elected until
 * the lease from that round's start runs out (`leaseTicks`), so until then the commit index is
 * the latest anywhere and reads need no round of their own.
 */
export function extendLease(r: ReadState, config: Config, self: string, o: CoreOptions): void {
  const acked = committedIndex(config, (id) => (id === self ? r.round : (r.acked.get(id) ?? 0)));
  let start = -1;
  while (r.leaseRounds.length > 0 && r.leaseRounds[0]!.round <= acked) start = r.leaseRounds.shift()!.start;
  if (start >= 0 && r.leaseUntil >= 0) r.leaseUntil = Math.max(r.leaseUntil, start + leaseTicks(o));
}

/** No more lease reads in this term (a leadership transfer began, §3.10), only ReadIndex rounds. */
export function giveUpLease(r: ReadState): void {
  r.leaseUntil = -1;
  r.leaseRounds = [];
}

/**
 * A leader may answer reads at once: it holds a lease and has committed an entry of its term
 * (§6.4 step 1). A leader that sent TimeoutNow has given its lease up (`giveUpLease`).
 */
export function holdsLease(s: CoreState): boolean {
  return (
    s.options.leaseReads &&
    s.role === 'leader' &&
    s.ticks < s.reads.leaseUntil &&
    s.log.term(s.commitIndex) === s.currentTerm
  );
}

/** Reads whose confirmed read index is applied (up to `lastApplied`), taken off: they may be served. */
export function takeAppliedReads(r: ReadState, lastApplied: number): number[] {
  const ready: number[] = [];
  if (r.awaitingApply.length === 0) return ready;
  r.awaitingApply = r.awaitingApply.filter((w) => {
    if (w.readIndex > lastApplied) return true;
    ready.push(...w.ids);
    return false;
  });
  return ready;
}

/**
 * Leadership changed: every read not yet confirmed is dropped, and returned: the local and
 * forwarded-to-the-leader client ids (`failed`), and the followers' batches to refuse. Reads
 * that already hold a confirmed read index stay until it is applied.
 */
export function abortUnconfirmedReads(r: ReadState): { failed: number[]; refused: ForwardedBatch[] } {
  const failed: number[] = [];
  const refused: ForwardedBatch[] = [];
  const batches = [...r.waiting, ...(r.inRound?.batches ?? [])];
  r.waiting = [];
  r.inRound = null;
  for (const b of batches) {
    if (b.kind === 'local') failed.push(...b.ids);
    else refused.push(b);
  }
  for (const ids of r.forwarded.values()) failed.push(...ids);
  r.forwarded.clear();
  return { failed, refused };
}
