/**
 * The bookkeeping of linearizable reads (after etcd/raft's `read_only.go`): ReadIndex rounds
 * (thesis §6.4), the reads a peer that does not lead holds until a leader gives them a read
 * index, and the leader's lease (thesis §6.4.1). Pure data: the step function sends the
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
 * Our leadership ended: the rounds of this leadership can no longer confirm
 * anything, so every read waiting for one is taken off and returned: our own clients' ids
 * (`local`), to be asked of the next leader, and the followers' batches (`refused`), to be
 * refused so they ask the next leader themselves. Reads that already hold a confirmed read
 * index stay until it is applied.
 */
export function takeUnconfirmedReads(r: ReadState): { local: number[]; refused: ForwardedBatch[] } {
  const local: number[] = [];
  const refused: ForwardedBatch[] = [];
  const batches = [...r.waiting, ...(r.inRound?.batches ?? [])];
  r.waiting = [];
  r.inRound = null;
  for (const b of batches) {
    if (b.kind === 'local') local.push(...b.ids);
    else refused.push(b);
  }
  return { local, refused };
}

// Forwarded reads. A peer that does not lead asks a leader for a read index (thesis §6.4, reads
// served by followers) and holds the reads until an answer comes, re-sending the request while none does: a lost request or
// answer costs a heartbeat interval, not the read's whole timeout.
//
// Safety of re-sending, to the same leader or to another one: a leader answers a request only
// from a commit index it took after the request reached it, and only once a quorum has
// confirmed it still led after that (or within its lease, §6.4.1). Any write acknowledged
// before the read was issued was committed before then, so it is at or below that commit
// index: the State Machine Safety and Leader Completeness properties (§5.4) put it in every
// later leader's log, and a leader of a later term has committed an entry of its own term
// (§6.4 step 1) before it answers, so its commit index covers it too. So any leader's answer
// to a request sent after the read was issued is a valid read index for it, whichever request
// of ours it answers and however late; answers are idempotent (the first one serves the reads,
// later ones find the id gone). The one thing that must never happen is a read joining a
// request that was sent before the read was issued: an answer to that request may predate it.

/** Hold reads `ids` under forward id `id`, not yet sent (they are sent with `takeDueForward`). */
export function holdForwarded(r: ReadState, id: number, ids: number[]): void {
  r.forwarded.set(id, { ids, sentTo: null, sentAt: 0 });
}

/**
 * The held reads due to be (re)sent to `leader` at tick `now`: those not yet sent to it, and
 * those sent more than `retryTicks` ago and unanswered. They go as one request, under the id
 * of the newest of them: the others were held earlier, so each of their reads was issued
 * before that request was first sent, and its answer serves them too (see above). Marked as
 * sent; null if none is due.
 */
export function takeDueForward(r: ReadState, leader: string, now: number, retryTicks: number): number | null {
  const due: number[] = [];
  for (const [id, f] of r.forwarded) if (f.sentTo !== leader || now - f.sentAt > retryTicks) due.push(id);
  if (due.length === 0) return null;
  const id = due[due.length - 1]!;
  const keep = r.forwarded.get(id)!;
  for (const older of due.slice(0, -1)) {
    keep.ids.push(...r.forwarded.get(older)!.ids);
    r.forwarded.delete(older);
  }
  keep.sentTo = leader;
  keep.sentAt = now;
  return id;
}

/** The held reads answered by forward id `id`, taken off; undefined if none is held (a late or repeated answer). */
export function takeForwarded(r: ReadState, id: number): number[] | undefined {
  const f = r.forwarded.get(id);
  if (f === undefined) return undefined;
  r.forwarded.delete(id);
  return f.ids;
}

/**
 * We lead now: the reads we held for a leader wait for our own ReadIndex round instead, whose
 * read index is taken after they were issued (see above). Returned as client ids.
 */
export function takeAllForwarded(r: ReadState): number[] {
  const ids: number[] = [];
  for (const f of r.forwarded.values()) ids.push(...f.ids);
  r.forwarded.clear();
  return ids;
}

/**
 * Leader: a follower's request `id` is already waiting for a round or in the round in flight
 * (it sent it again, its answer not come yet): that round answers it, once.
 */
export function isQueued(r: ReadState, from: string, id: number): boolean {
  const same = (b: ReadBatch) => b.kind === 'forwarded' && b.from === from && b.id === id;
  return r.waiting.some(same) || (r.inRound?.batches.some(same) ?? false);
}
