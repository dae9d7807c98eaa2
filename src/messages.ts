/**
 * Every protocol of actor-raft as a discriminated union, and the guards that check a decoded
 * value against them.
 *
 * Protocols:
 *  - log entries (`Entry`), stored by the log actor and carried by AppendEntries;
 *  - log commands (`LogCommand`), what a command entry holds: the user's command in its
 *    client session (thesis §6.3), or a session's registration;
 *  - peer RPCs between consensus actors (`PeerMessage`, Figure 2 of the paper);
 *  - the log protocol between a consensus actor and its log actor (`LogRequest` / `LogReply`);
 *  - the client protocol between the API (main thread) and a consensus actor
 *    (`ClientRequest` / `ClientReply`).
 *
 * The bytes these travel in are `src/codec.ts`'s. Control calls (status, setConfig, stop,
 * wiring) travel over comlink and are typed in `src/control.ts`.
 *
 * Validate once: an entry's shape is checked once per hop, by the guard of the port it arrives
 * on (`isPeerMessage`, `isLogRequest`, `isLogReply`); the log stores check only its place in
 * the log.
 */
// ---------------------------------------------------------------------------------------------
// Log entries

/** A no-op appended by every new leader at the start of its term (§8, commits earlier terms). */
export interface NoopEntry {
  type: 'noop';
  index: number;
  term: number;
}
/**
 * A client command; `data` is a `LogCommand` packed with the codec (src/codec.ts), opaque to consensus.
 * `time` is the leader's wall clock (ms since the epoch) when it appended the entry (thesis
 * §6.3): the replicated clock by which client sessions expire, alike on every peer.
 */
export interface CommandEntry {
  type: 'command';
  index: number;
  term: number;
  data: Uint8Array;
  time?: number;
}
/**
 * A cluster configuration (§6). A peer uses the latest one in its log, committed or not.
 * Stable: `peers` are the voters. Joint (C_old,new): `old` are the old voters and `peers` the
 * new ones, and every decision needs a majority of each.
 */
export interface ConfigEntry {
  type: 'config';
  index: number;
  term: number;
  peers: string[];
  old?: string[];
  /**
   * Where the members of this configuration are reached (old and new when joint), so every
   * peer learns a new member's address from the log. Opaque to consensus: no majority looks
   * at it. Absent in entries written before addresses were carried, and for members added
   * without one (in-process peers).
   */
  addresses?: AddressBook;
}
/** How a member is reached: its peer (TCP) address, and its client HTTP address if it serves one. */
export interface MemberAddress {
  peer: string;
  http?: string;
}
/** Member id → its addresses. */
export type AddressBook = Record<string, MemberAddress>;
export type Entry = NoopEntry | CommandEntry | ConfigEntry;

/** A copy of a configuration's addresses with only their own fields. */
export function copyAddresses(book: AddressBook): AddressBook {
  const out: AddressBook = {};
  for (const [id, a] of Object.entries(book)) out[id] = a.http === undefined ? { peer: a.peer } : { peer: a.peer, http: a.http };
  return out;
}

// ---------------------------------------------------------------------------------------------
// Log commands: what a command entry's `data` holds, written by the API (src/api/index.ts) and
// carried out by the consensus actor through the session table (src/sessions.ts).

/**
 * A command under a client session (exactly once, thesis §6.3): `seq` numbers the client's
 * commands from 1, and a retry reuses it; `ack` is the lowest seq whose answer the client
 * still waits for, so saved results below it can go.
 */
export interface SessionCommand {
  type: 'op';
  client: string;
  seq: number;
  ack: number;
  command: unknown;
}
/** A command the client declared safe to repeat (`{ idempotent: true }`): no session. */
export interface IdempotentCommand {
  type: 'idempotent';
  command: unknown;
}
/** Open a client session through the log; it expires after `timeoutMs` of log time without a command. */
export interface RegisterSession {
  type: 'register';
  client: string;
  timeoutMs: number;
}
export type LogCommand = SessionCommand | IdempotentCommand | RegisterSession;

// ---------------------------------------------------------------------------------------------
// Peer RPCs (Figure 2)

export interface RequestVote {
  type: 'requestVote';
  term: number;
  from: string;
  to: string;
  lastLogIndex: number;
  lastLogTerm: number;
  /**
   * Sent on the current leader's request (TimeoutNow, thesis §3.10): the receivers must not
   * ignore it for having heard that leader recently (§4.2.3). Absent means false.
   */
  transfer?: boolean;
}
/**
 * Pre-vote (thesis §9.6): would the receiver vote for the sender in `term` (the sender's term
 * + 1)? Neither side changes its term; only a sender that gathers a quorum of yeses starts a
 * real election, so a peer that was cut off cannot raise the cluster's term on its return.
 */
export interface PreVote {
  type: 'preVote';
  term: number;
  from: string;
  to: string;
  lastLogIndex: number;
  lastLogTerm: number;
}
/** The answer to a PreVote: `term` echoes the term asked about when granted, else is the receiver's. */
export interface PreVoteReply {
  type: 'preVoteReply';
  term: number;
  from: string;
  to: string;
  granted: boolean;
}
/** Leadership transfer (thesis §3.10): the leader tells an up-to-date follower to campaign now. */
export interface TimeoutNow {
  type: 'timeoutNow';
  term: number;
  from: string;
  to: string;
}
export interface RequestVoteReply {
  type: 'requestVoteReply';
  term: number;
  from: string;
  to: string;
  granted: boolean;
}
export interface AppendEntries {
  type: 'appendEntries';
  term: number;
  from: string;
  to: string;
  prevLogIndex: number;
  prevLogTerm: number;
  entries: Entry[];
  leaderCommit: number;
  /** The leader's latest ReadIndex round when this was sent (thesis §6.4); echoed back. */
  readSeq: number;
}
/**
 * Beyond the paper (docs/deviations.md, "Messages and replication"): a success carries `matchIndex` (prevLogIndex +
 * entries.length) so pipelined replies need no request id; a rejection carries
 * `rejectedIndex` (the prevLogIndex it refused, to spot stale rejections) and the §5.3
 * fast back-off hint `conflictIndex`/`conflictTerm` (conflictTerm 0: the log is too short).
 */
export interface AppendEntriesReply {
  type: 'appendEntriesReply';
  term: number;
  from: string;
  to: string;
  success: boolean;
  matchIndex: number;
  rejectedIndex: number;
  conflictIndex: number;
  conflictTerm: number;
  /** The `readSeq` of the AppendEntries answered: the follower acknowledged that round. */
  readSeq: number;
}
/** A follower asks the leader for a read index on behalf of its clients (thesis §6.4). */
export interface ReadIndexRequest {
  type: 'readIndex';
  term: number;
  from: string;
  to: string;
  /** The follower's id for this batch of reads. */
  id: number;
}
/**
 * The leader's answer: once the follower has applied `readIndex` it may serve the reads
 * locally; `ok` false means the peer asked is not (or no longer) the leader.
 */
export interface ReadIndexReply {
  type: 'readIndexReply';
  term: number;
  from: string;
  to: string;
  id: number;
  readIndex: number;
  ok: boolean;
}
/**
 * What a snapshot stands for (§7): the state after applying every entry up to `index` (of
 * `term`), and the configuration at that point (stable when `old` is null). `digest` is the
 * consensus actor's running hash of the entries applied up to `index` (a test aid, carried so
 * peers restored from a snapshot still compare with the others); `size` is the data's length.
 */
export interface SnapshotMeta {
  index: number;
  term: number;
  peers: string[];
  old: string[] | null;
  digest: number;
  size: number;
  /** The configuration's addresses (ConfigEntry.addresses); absent in older snapshots. */
  addresses?: AddressBook;
}
/** A snapshot: its meta and the state machine's bytes (`StateMachine.snapshot()`). */
export interface Snapshot {
  meta: SnapshotMeta;
  data: Uint8Array;
}
/**
 * InstallSnapshot (§7, Figure 13): one chunk of the leader's snapshot, `data` being its bytes
 * at `offset`. `done` marks the last chunk. A transfer resumes where the follower's reply says.
 */
export interface InstallSnapshot {
  type: 'installSnapshot';
  term: number;
  from: string;
  to: string;
  meta: SnapshotMeta;
  offset: number;
  data: Uint8Array;
  done: boolean;
  /** As in AppendEntries: the leader's latest ReadIndex round, echoed back. */
  readSeq: number;
}
/**
 * The follower holds the first `offset` bytes of the snapshot `index`/`snapshotTerm` (the next
 * chunk it wants starts there); `done` once it has installed the snapshot durably.
 */
export interface InstallSnapshotReply {
  type: 'installSnapshotReply';
  term: number;
  from: string;
  to: string;
  index: number;
  snapshotTerm: number;
  offset: number;
  done: boolean;
  readSeq: number;
}
export type PeerMessage =
  | RequestVote
  | RequestVoteReply
  | AppendEntries
  | AppendEntriesReply
  | ReadIndexRequest
  | ReadIndexReply
  | PreVote
  | PreVoteReply
  | TimeoutNow
  | InstallSnapshot
  | InstallSnapshotReply;

// ---------------------------------------------------------------------------------------------
// Log protocol: consensus actor <-> its log actor

/**
 * A snapshot to store (§7): it replaces the stored one, and the log entries it covers go.
 * `discardLog` (a follower installing a leader's snapshot that its log does not match): every
 * entry goes and the log continues from the snapshot; otherwise entries up to `meta.index`.
 */
export interface SnapshotWrite {
  meta: SnapshotMeta;
  data: Uint8Array;
  discardLog: boolean;
}
/**
 * One durable write: an optional snapshot with its compaction, then the hard state (§5.1
 * currentTerm, votedFor), then an optional suffix truncation (§5.3 conflicting entries), then
 * appended entries, in one LMDB transaction. The log actor answers `persisted` with the same
 * `seq` once it is flushed to disk; seqs are acknowledged in order.
 */
export interface PersistRequest {
  type: 'persist';
  seq: number;
  term: number;
  votedFor: string | null;
  /** Delete every entry with index >= truncateFrom before appending; 0 means no truncation. */
  truncateFrom: number;
  entries: Entry[];
  /** Absent or null: no snapshot in this write. */
  snapshot?: SnapshotWrite | null;
}
/**
 * Read entries [from, to] (inclusive): for recovery, and for entries the core no longer holds
 * in memory (its `fetch` effects). Answered after every write sent before it.
 */
export interface ReadRequest {
  type: 'read';
  id: number;
  from: number;
  to: number;
}
export type LogRequest = PersistRequest | ReadRequest;

/**
 * Sent once when the log actor has opened its store: what recovery starts from. With a
 * snapshot, the stored entries are firstIndex..lastIndex with firstIndex = snapshot index + 1
 * (none when lastIndex is the snapshot's index).
 */
export interface LogReady {
  type: 'logReady';
  term: number;
  votedFor: string | null;
  firstIndex: number;
  lastIndex: number;
  lastTerm: number;
  /** The stored snapshot; left out when there is none (the common shape keeps its record). */
  snapshot?: Snapshot | null;
}
export interface Persisted {
  type: 'persisted';
  seq: number;
}
export interface ReadResult {
  type: 'readResult';
  id: number;
  entries: Entry[];
}
/** The log actor could not carry out a request; it crashes itself right after sending it. */
export interface LogFailure {
  type: 'logFailure';
  message: string;
}
export type LogReply = LogReady | Persisted | ReadResult | LogFailure;

// ---------------------------------------------------------------------------------------------
// Client protocol: API (main thread) <-> consensus actor

export interface OpRequest {
  id: number;
  /** A `LogCommand` packed with the codec (`encodeLogCommand`, src/codec.ts): the entry's data. */
  command: Uint8Array;
}
/** Every op submitted in one event-loop turn travels as one message. */
export interface ClientOps {
  type: 'ops';
  ops: OpRequest[];
}
export interface ReadQuery {
  id: number;
  /** The query packed with the codec (src/codec.ts), answered by the state machine's `query`. */
  query: Uint8Array;
}
/** Linearizable reads (ReadIndex, thesis §6.4), every one of a turn in one message. */
export interface ClientReads {
  type: 'reads';
  reads: ReadQuery[];
}
/**
 * Membership change (§6, joint consensus): make `peers` the voters. Answered once the new
 * configuration is committed, or with an error.
 */
export interface ClientChangeConfig {
  type: 'changeConfig';
  id: number;
  peers: string[];
  /** Addresses of members the configuration is to carry (new ones, or new addresses). */
  addresses?: AddressBook;
  /** Add `peers` to, or remove them from, the leader's voters instead of replacing them. */
  edit?: 'add' | 'remove';
}
/** Leadership transfer (thesis §3.10) to `target`, or to the most up-to-date voter when null. */
export interface ClientTransferLeadership {
  type: 'transferLeadership';
  id: number;
  target: string | null;
}
export type ClientRequest = ClientOps | ClientReads | ClientChangeConfig | ClientTransferLeadership;

/** An error as it crosses a thread: rebuilt into a typed class by `src/errors.ts`. */
export interface WireError {
  code: string;
  message: string;
  /** For NOT_LEADER: the peer believed to lead, if any. */
  leader: string | null;
}
export interface OpOutcome {
  id: number;
  ok: boolean;
  /** The state machine's result when ok. */
  result: unknown;
  error: WireError | null;
}
/** Every outcome produced in one step of the consensus actor travels as one message. */
export interface ClientResults {
  type: 'results';
  results: OpOutcome[];
}
export type ClientReply = ClientResults;

/**
 * Several messages for one port, produced in one event-loop turn, sent as one: one encode
 * of the envelope, one copy, one postMessage (see src/transport/batcher.ts).
 */
export interface Bundle {
  type: 'bundle';
  messages: AnyMessage[];
}

export type AnyMessage = PeerMessage | LogRequest | LogReply | ClientRequest | ClientReply | Bundle;

// ---------------------------------------------------------------------------------------------
// Shape checks for bytes that arrive from ports: a decoded value is trusted only after these.

const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isStr = (v: unknown): v is string => typeof v === 'string';

/** Whether a decoded command entry's data is a log command (the user's command is not checked). */
export function isLogCommand(v: unknown): v is LogCommand {
  if (typeof v !== 'object' || v === null) return false;
  const c = v as Record<string, unknown>;
  switch (c.type) {
    case 'op':
      return isStr(c.client) && isNum(c.seq) && c.seq >= 1 && isNum(c.ack) && 'command' in c;
    case 'idempotent':
      return 'command' in c;
    case 'register':
      return isStr(c.client) && isNum(c.timeoutMs) && c.timeoutMs >= 1;
    default:
      return false;
  }
}

/**
 * Whether `v` is a log entry with nothing but its own fields: the bytes an entry arrives in are
 * what a follower stores and sends on (see `ENTRY_EXT` in src/codec.ts), so nothing else may ride along.
 */
export function isEntry(v: unknown): v is Entry {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  if (!isNum(e.index) || !isNum(e.term)) return false;
  switch (e.type) {
    case 'noop':
      return definedFields(e) === 3;
    case 'command':
      if (e.time !== undefined && !(typeof e.time === 'number' && Number.isFinite(e.time))) return false;
      return e.data instanceof Uint8Array && definedFields(e) === (e.time === undefined ? 4 : 5);
    case 'config':
      return (
        isStrList(e.peers) &&
        (e.old === undefined || isStrList(e.old)) &&
        (e.addresses === undefined || isAddressBook(e.addresses)) &&
        definedFields(e) === 4 + (e.old === undefined ? 0 : 1) + (e.addresses === undefined ? 0 : 1)
      );
    default:
      return false;
  }
}

/** How many fields of `o` hold a value (undefined ones are not packed). */
function definedFields(o: Record<string, unknown>): number {
  let n = 0;
  for (const k in o) if (o[k] !== undefined) n++;
  return n;
}

const isStrList = (v: unknown): v is string[] => Array.isArray(v) && v.every(isStr);

/** A map of member ids to `{ peer, http? }` address strings (their form is the transport's to check). */
export function isAddressBook(v: unknown): v is AddressBook {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false;
  return Object.values(v).every((a: unknown) => {
    if (typeof a !== 'object' || a === null) return false;
    const m = a as Record<string, unknown>;
    return isStr(m.peer) && (m.http === undefined || isStr(m.http));
  });
}

export function isSnapshotMeta(v: unknown): v is SnapshotMeta {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return (
    isNum(m.index) &&
    isNum(m.term) &&
    isStrList(m.peers) &&
    (m.old === null || isStrList(m.old)) &&
    isNum(m.digest) &&
    isNum(m.size) &&
    (m.addresses === undefined || isAddressBook(m.addresses))
  );
}

function isSnapshot(v: unknown): v is Snapshot {
  if (typeof v !== 'object' || v === null) return false;
  const s = v as Record<string, unknown>;
  return isSnapshotMeta(s.meta) && s.data instanceof Uint8Array && s.data.length === s.meta.size;
}

export function isPeerMessage(v: unknown): v is PeerMessage {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  if (!isNum(m.term) || !isStr(m.from) || !isStr(m.to)) return false;
  switch (m.type) {
    case 'requestVote':
      return isNum(m.lastLogIndex) && isNum(m.lastLogTerm) && (m.transfer === undefined || typeof m.transfer === 'boolean');
    case 'preVote':
      return isNum(m.lastLogIndex) && isNum(m.lastLogTerm);
    case 'requestVoteReply':
    case 'preVoteReply':
      return typeof m.granted === 'boolean';
    case 'timeoutNow':
      return true;
    case 'installSnapshot':
      return (
        isSnapshotMeta(m.meta) &&
        isNum(m.offset) &&
        m.data instanceof Uint8Array &&
        m.offset + m.data.length <= m.meta.size &&
        typeof m.done === 'boolean' &&
        isNum(m.readSeq)
      );
    case 'installSnapshotReply':
      return isNum(m.index) && isNum(m.snapshotTerm) && isNum(m.offset) && typeof m.done === 'boolean' && isNum(m.readSeq);
    case 'appendEntries':
      return (
        isNum(m.prevLogIndex) &&
        isNum(m.prevLogTerm) &&
        isNum(m.leaderCommit) &&
        isNum(m.readSeq) &&
        Array.isArray(m.entries) &&
        m.entries.every(isEntry)
      );
    case 'appendEntriesReply':
      return (
        typeof m.success === 'boolean' &&
        isNum(m.matchIndex) &&
        isNum(m.rejectedIndex) &&
        isNum(m.conflictIndex) &&
        isNum(m.conflictTerm) &&
        isNum(m.readSeq)
      );
    case 'readIndex':
      return isNum(m.id);
    case 'readIndexReply':
      return isNum(m.id) && isNum(m.readIndex) && typeof m.ok === 'boolean';
    default:
      return false;
  }
}

export function isClientRequest(v: unknown): v is ClientRequest {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  const withBytes = (list: unknown, field: 'command' | 'query') =>
    Array.isArray(list) &&
    list.every(
      (o: unknown) =>
        typeof o === 'object' &&
        o !== null &&
        isNum((o as Record<string, unknown>).id) &&
        (o as Record<string, unknown>)[field] instanceof Uint8Array,
    );
  if (m.type === 'ops') return withBytes(m.ops, 'command');
  if (m.type === 'reads') return withBytes(m.reads, 'query');
  if (m.type === 'changeConfig') return isNum(m.id) && isStrList(m.peers) && (m.addresses === undefined || isAddressBook(m.addresses)) && (m.edit === undefined || m.edit === 'add' || m.edit === 'remove');
  if (m.type === 'transferLeadership') return isNum(m.id) && (m.target === null || isStr(m.target));
  return false;
}

function isSnapshotWrite(v: unknown): v is SnapshotWrite {
  return isSnapshot(v) && typeof (v as unknown as Record<string, unknown>).discardLog === 'boolean';
}

export function isLogRequest(v: unknown): v is LogRequest {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  switch (m.type) {
    case 'persist':
      return (
        isNum(m.seq) &&
        isNum(m.term) &&
        (m.votedFor === null || isStr(m.votedFor)) &&
        isNum(m.truncateFrom) &&
        Array.isArray(m.entries) &&
        m.entries.every(isEntry) &&
        (m.snapshot === undefined || m.snapshot === null || isSnapshotWrite(m.snapshot))
      );
    case 'read':
      return isNum(m.id) && isNum(m.from) && isNum(m.to);
    default:
      return false;
  }
}

export function isLogReply(v: unknown): v is LogReply {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  switch (m.type) {
    case 'logReady':
      return (
        isNum(m.term) &&
        (m.votedFor === null || isStr(m.votedFor)) &&
        isNum(m.firstIndex) &&
        isNum(m.lastIndex) &&
        isNum(m.lastTerm) &&
        (m.snapshot === undefined || m.snapshot === null || isSnapshot(m.snapshot))
      );
    case 'persisted':
      return isNum(m.seq);
    case 'readResult':
      return isNum(m.id) && Array.isArray(m.entries) && m.entries.every(isEntry);
    case 'logFailure':
      return isStr(m.message);
    default:
      return false;
  }
}

function isWireError(v: unknown): v is WireError {
  if (typeof v !== 'object' || v === null) return false;
  const e = v as Record<string, unknown>;
  return isStr(e.code) && isStr(e.message) && (e.leader === null || isStr(e.leader));
}

export function isClientReply(v: unknown): v is ClientReply {
  if (typeof v !== 'object' || v === null) return false;
  const m = v as Record<string, unknown>;
  return (
    m.type === 'results' &&
    Array.isArray(m.results) &&
    m.results.every((r: unknown) => {
      if (typeof r !== 'object' || r === null) return false;
      const o = r as Record<string, unknown>;
      return Number.isSafeInteger(o.id) && typeof o.ok === 'boolean' && (o.ok || isWireError(o.error));
    })
  );
}
