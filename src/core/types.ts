/**
 * The consensus core's inputs, effects and state. The core knows time only as `tick`
 * inputs and durability only as `persisted` inputs; everything it wants done comes out
 * as an `Effect` for the shell (the consensus actor, or the test simulator) to carry out.
 */
import type { Config } from '../config.js';
import type { AddressBook, Entry, OpRequest, PeerMessage, PersistRequest, Snapshot } from '../messages.js';
import type { RaftLog } from './raft-log.js';

export type Role = 'follower' | 'candidate' | 'leader';

/** What a core may be tuned with; defaults and checks in `options.ts`. */
export interface CoreOptions {
  /** A leader sends heartbeats every `heartbeatTicks` ticks. */
  heartbeatTicks: number;
  /** Election timeout, randomized per election in [electionTicks, 2 * electionTicks) (§5.2). */
  electionTicks: number;
  /** Most entries in one AppendEntries. */
  maxEntriesPerAppend: number;
  /** Most AppendEntries with entries in flight to one follower (pipelining window). */
  maxInflightAppends: number;
  /** Most bytes of entries in one AppendEntries (at least one entry is always sent). */
  maxAppendBytes: number;
  /** Most bytes of entries in flight to one follower: what a slow follower can hold up. */
  maxInflightBytes: number;
  /**
   * Most entries kept in memory at the end of the log (older ones, once applied and durable,
   * are read back from the log actor when needed): bounds a peer's memory whatever the length
   * of its log and however far behind a follower is.
   */
  maxCachedEntries: number;
  /** Most bytes of entries kept in memory (see `maxCachedEntries`). */
  maxCachedBytes: number;
  /**
   * Lease reads (thesis §6.4.1): a leader answers reads without a heartbeat round while a
   * quorum has acknowledged it within the lease (see `leaseTicks`). Safe only while every
   * peer's clock runs within a factor `clockDriftBound` of every other's.
   */
  leaseReads: boolean;
  /** The assumed bound on clock rates between peers (≥ 1), for lease reads. */
  clockDriftBound: number;
  /**
   * Pre-vote (thesis §9.6): a peer whose election timer fires first asks whether it could win,
   * and raises its term only if a quorum says yes.
   */
  preVote: boolean;
  /**
   * Snapshot (§7) once this many entries have been applied since the last snapshot; 0 never
   * (a state machine without snapshot/restore).
   */
  snapshotThreshold: number;
  /** Bytes of snapshot per InstallSnapshot chunk. */
  snapshotChunkBytes: number;
  /**
   * How long, in ticks, a membership change waits for its new peers to catch up as learners
   * before it gives up.
   */
  catchUpTicks: number;
}

/** Why the core asked for entries it no longer holds in memory. */
export type FetchReason =
  /** To apply them (a restarted peer whose log was longer than its memory window). */
  | { kind: 'apply' }
  /** To send them to a follower that is behind the memory window. */
  | { kind: 'replicate'; peer: string };

export type Input =
  /** `ticks` units of time passed (1 if absent). */
  | { type: 'tick'; ticks?: number }
  /** A peer's RPC or reply arrived. */
  | { type: 'message'; message: PeerMessage }
  /**
   * Client commands to append (every op of one event-loop turn at once). A leader stamps
   * their entries with `now`, the shell's wall clock in ms (thesis §6.3, session expiry).
   */
  | { type: 'propose'; requests: OpRequest[]; now?: number }
  /** The log actor made every write up to `seq` durable. */
  | { type: 'persisted'; seq: number }
  /** Form a new cluster from a blank peer (rafter's first set_config). */
  | { type: 'bootstrap'; peers: string[]; addresses?: AddressBook }
  /** Linearizable reads by clients of this peer (ReadIndex, thesis §6.4). */
  | { type: 'read'; ids: number[] }
  /** The answer to a `fetch` effect: the stored entries of the range asked for, in order. */
  | { type: 'fetched'; reason: FetchReason; entries: Entry[] }
  /** The answer to a `takeSnapshot` effect: the state machine's bytes and the shell's digest at `index`. */
  | { type: 'snapshotTaken'; index: number; data: Uint8Array; digest: number }
  /**
   * A client asks for a membership change to `peers` (§6), answered by `adminDone` or
   * `clientError`. `addresses` go into the new configuration's entries (opaque to consensus).
   * With `edit`, `peers` are added to (or removed from) the voters this leader holds.
   */
  | { type: 'changeConfig'; id: number; peers: string[]; addresses?: AddressBook; edit?: 'add' | 'remove' }
  /** A client asks the leader to hand over to `target`, or to the best voter (thesis §3.10). */
  | { type: 'transferLeadership'; id: number; target: string | null };

export type ClientErrorCode =
  | 'NOT_LEADER'
  | 'LEADERSHIP_LOST'
  | 'CONFIG_INVALID'
  | 'CONFIG_IN_PROGRESS'
  | 'CATCH_UP_TIMEOUT'
  | 'TRANSFER_FAILED';

export type Effect =
  /** Write durably, then answer with a `persisted` input carrying `write.seq`. */
  | { type: 'persist'; write: PersistRequest }
  | { type: 'send'; message: PeerMessage }
  /**
   * Apply committed entries to the state machine in order. `requestIds[i]` is the client
   * request waiting for `entries[i]`'s result on this peer, or null.
   */
  | { type: 'apply'; entries: Entry[]; requestIds: (number | null)[] }
  /**
   * These client requests failed (NOT_LEADER: never appended; LEADERSHIP_LOST: outcome
   * unknown; the others answer membership changes and transfers), with `message` if the code
   * alone does not say enough.
   */
  | { type: 'clientError'; ids: number[]; code: ClientErrorCode; leader: string | null; message?: string }
  /** A membership change or leadership transfer succeeded. */
  | { type: 'adminDone'; id: number; result: unknown }
  /**
   * Snapshot the state machine now (it has applied exactly up to `index`) and answer with a
   * `snapshotTaken` input.
   */
  | { type: 'takeSnapshot'; index: number }
  /** Replace the state machine's state by this snapshot's (a leader's, installed, §7). */
  | { type: 'restore'; snapshot: Snapshot }
  /**
   * These reads may now be answered from the state machine: this peer has applied at least
   * a read index confirmed by a quorum after the reads arrived (thesis §6.4).
   */
  | { type: 'readReady'; ids: number[] }
  /**
   * Read entries from..to (inclusive) back from the log store, after every write already
   * handed to it, and answer with a `fetched` input carrying `reason`.
   */
  | { type: 'fetch'; from: number; to: number; reason: FetchReason }
  /** Role, term or known leader changed (for logs and status). */
  | { type: 'roleChanged'; role: Role; term: number; leader: string | null };

/** What the leader knows of one follower's log (§5.3 nextIndex/matchIndex). */
export interface Progress {
  nextIndex: number;
  matchIndex: number;
  /**
   * probe: one AppendEntries at a time until the logs are found to match;
   * replicate: entries are pipelined, nextIndex advanced optimistically;
   * snapshot: the entries it needs are compacted, it is sent the snapshot (§7).
   */
  mode: 'probe' | 'replicate' | 'snapshot';
  /** In probe mode: an AppendEntries is out; wait for its reply or the next heartbeat. */
  probeSent: boolean;
  /** In replicate mode: each AppendEntries in flight (its last index, its entries' bytes), oldest first. */
  inflight: { last: number; bytes: number }[];
  /** Sum of `inflight` bytes. */
  inflightBytes: number;
  /** A `fetch` of entries before the memory window is out for this follower. */
  fetching: boolean;
  /**
   * In snapshot mode: the snapshot being sent, the offset of the chunk in flight (the bytes the
   * follower holds), the tick it left (-1: none in flight), and the offset the follower last
   * reported.
   */
  snapshot: { index: number; term: number; offset: number; sentAt: number; reported: number } | null;
}

/** Leader: a membership change in progress (§6), started by client request `id`. */
export interface ConfigChange {
  id: number;
  /** The voters asked for. */
  peers: string[];
  /** catchUp: new peers replicate as learners (thesis §4.2.1); joint: C_old,new or C_new is in the log. */
  phase: 'catchUp' | 'joint';
  /** Peers being caught up; they get entries but do not vote or count. */
  learners: string[];
  /** Addresses the client gave, for the new configuration's entries. */
  addresses: AddressBook;
  /** Tick the change started (catch-up gives up after `catchUpTicks`). */
  startedAt: number;
  /** The current catch-up round (thesis §4.2.1): the index it must reach, and when it began. */
  roundTarget: number;
  roundStart: number;
}

/** Leader: a leadership transfer in progress (thesis §3.10). */
export interface Transfer {
  id: number;
  target: string;
  /** Tick after which the transfer gives up and the leader takes requests again. */
  deadline: number;
  /** TimeoutNow was sent. */
  sent: boolean;
}

/** Follower: a snapshot arriving in chunks from `from`. */
export interface IncomingSnapshot {
  from: string;
  meta: SnapshotMetaRef;
  chunks: Uint8Array[];
  received: number;
}
type SnapshotMetaRef = Snapshot['meta'];

/**
 * A write handed to the log actor and not yet acknowledged, with what waits for it:
 * messages that may only leave once it is durable (votes, AppendEntries replies), and the
 * candidate's own vote (§5.2, counted only once durable).
 */
export interface PendingWrite {
  seq: number;
  /** The log's last index once this write is on disk (lowered by later truncations). */
  lastIndex: number;
  messages: PeerMessage[];
  selfVoteTerm: number;
}

/** Reads waiting for a ReadIndex round: local client ids, or a follower's forwarded batch. */
export type ReadBatch = { kind: 'local'; ids: number[] } | { kind: 'forwarded'; from: string; id: number };

/** Client reads a non-leader asked a leader a read index for (thesis §6.4), under one forward id. */
export interface ForwardedRead {
  ids: number[];
  /** The leader it was last sent to; null while none was known since it was held. */
  sentTo: string | null;
  /** The tick it was last sent. */
  sentAt: number;
}

/** ReadIndex bookkeeping (thesis §6.4). */
export interface ReadState {
  /** Leader: the latest confirmation round started; AppendEntries carry it as `readSeq`. */
  round: number;
  /** Leader: the highest round each follower has acknowledged in this term. */
  acked: Map<string, number>;
  /** Leader: reads that arrived and wait for the next round. */
  waiting: ReadBatch[];
  /** Leader: the round in flight (at most one; reads arriving meanwhile share the next). */
  inRound: { round: number; readIndex: number; batches: ReadBatch[] } | null;
  /**
   * Reads of this peer's clients that a leader is asked to give a read index for, by (random)
   * forward id, held until an answer comes: re-sent while unanswered, and across changes of
   * leader (see `reads.ts`). Oldest first (insertion order).
   */
  forwarded: Map<number, ForwardedRead>;
  /** Reads with a confirmed read index, waiting until it is applied. */
  awaitingApply: { readIndex: number; ids: number[] }[];
  /** Leader with lease reads: the rounds sent and not yet acknowledged by a quorum, with the tick each started. */
  leaseRounds: { round: number; start: number }[];
  /**
   * Leader with lease reads: no other leader can exist before this tick (thesis §6.4.1); -1
   * once the lease is given up for the rest of the term (a leadership transfer was started).
   */
  leaseUntil: number;
}

export interface CoreState {
  readonly id: string;
  readonly options: CoreOptions;
  role: Role;
  /** §5.1 persistent state. */
  currentTerm: number;
  votedFor: string | null;
  log: RaftLog;
  /** The latest configuration in the log (§6), null while blank. */
  config: Config | null;
  leader: string | null;
  /** §5.3 volatile state. */
  commitIndex: number;
  lastApplied: number;
  /** Ticks since this core was created. */
  ticks: number;
  /** Timers, in ticks. */
  electionElapsed: number;
  /**
   * Ticks left during which a RequestVote of a higher term is ignored, because a current
   * leader was heard less than an election timeout ago (thesis §4.2.3).
   */
  voteGuard: number;
  electionTimeout: number;
  heartbeatElapsed: number;
  /**
   * Leader, check-quorum (thesis §6.2): ticks since the last check, and the followers heard
   * from since. A leader that has not heard from a quorum for an election timeout steps down.
   */
  quorumCheckElapsed: number;
  recentlyActive: Set<string>;
  /** Candidate: answers so far. */
  votes: Map<string, boolean>;
  /** Leader: per follower. */
  progress: Map<string, Progress>;
  /** Durability bookkeeping. */
  persistSeq: number;
  persistedSeq: number;
  /** Highest index that is on disk and equal to the in-memory log. */
  durableIndex: number;
  pendingWrites: PendingWrite[];
  /** Client requests this peer appended as leader, by log index. */
  waiting: Map<number, { term: number; id: number }>;
  reads: ReadState;
  /** A `fetch` of committed entries to apply is out. */
  fetchingApply: boolean;
  /** Pre-vote in progress (thesis §9.6): the term asked about and the answers. */
  preVote: { term: number; votes: Map<string, boolean> } | null;
  /** Leader: membership change and leadership transfer in progress. */
  configChange: ConfigChange | null;
  transfer: Transfer | null;
  /** The latest snapshot (own or installed), what lagging followers are sent (§7). */
  snapshot: Snapshot | null;
  /** A `takeSnapshot` effect is out. */
  snapshotting: boolean;
  /** Follower: a snapshot being received. */
  incoming: IncomingSnapshot | null;
  /** Seed of the PRNG for election timeouts. */
  rngSeed: number;
}

export interface StepResult {
  state: CoreState;
  effects: Effect[];
}

export interface Status {
  id: string;
  role: Role;
  term: number;
  leader: string | null;
  commitIndex: number;
  lastApplied: number;
  /** Every voter of the current configuration (both sets while joint). */
  peers: string[];
  /** The configuration in force (the latest in the log, §6), null while blank. */
  config: Config | null;
  /** Leader: the new peers being caught up as learners before a membership change. */
  learners: string[];
  /** The last index covered by this peer's snapshot (0 without one). */
  snapshotIndex: number;
  /**
   * Where the members are reached, as the configurations in force carry it (the latest and
   * the committed one), and, on a leader, the learners being caught up.
   */
  addresses: AddressBook;
  /**
   * Every peer this one should be able to reach: the voters of the latest and of the committed
   * configuration and, on a leader, the learners being caught up (itself excluded).
   */
  members: string[];
  /** Leader: each follower's match index (§5.3); empty on other peers. */
  matchIndex: Record<string, number>;
}
