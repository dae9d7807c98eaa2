/**
 * Every protocol of actor-raft as a discriminated union, and the one msgpackr codec.
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
 * Control calls (status, setConfig, stop, wiring) travel over comlink and are typed in
 * `src/control.ts`; nothing on the op path or between peers uses anything but this codec.
 *
 * Encode once, validate once: the API packs a command once; the leader packs each entry once
 * (`entryBytes`), and inside every message an entry is those bytes (`ENTRY_EXT`), which a
 * receiver keeps with the entry it decodes, sends on and stores in LMDB unchanged. An entry's
 * shape is checked once per hop, by the guard of the port it arrives on (`isPeerMessage`,
 * `isLogRequest`, `isLogReply`); the log stores check only its place in the log.
 */
import { addExtension, Packr, Unpackr } from 'msgpackr';

// ---------------------------------------------------------------------------------------------
// Log entries

/** A no-op appended by every new leader at the start of its term (§8, commits earlier terms). */
export interface NoopEntry {
  type: 'noop';
  index: number;
  term: number;
}
/**
 * A client command; `data` is a `LogCommand` packed with this codec, opaque to consensus.
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
  /** A `LogCommand` packed with this codec (see `encodeLogCommand`): the entry's data. */
  command: Uint8Array;
}
/** Every op submitted in one event-loop turn travels as one message. */
export interface ClientOps {
  type: 'ops';
  ops: OpRequest[];
}
export interface ReadQuery {
  id: number;
  /** The query packed with this codec, answered by the state machine's `query`. */
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
// The codec

/**
 * Record structures agreed on both sides in advance (msgpackr "records"): each is the key
 * order of one message shape above. Objects whose keys match one of these are written as a
 * record id plus values; anything else is still encoded, with its structure inline.
 * Never reorder or remove an item: that changes the wire format. At most 32: beyond that
 * msgpackr switches to two-byte record ids. Rare shapes (pre-votes share RequestVote's keys;
 * snapshots, TimeoutNow, membership requests, joint configurations) go with their keys inline,
 * and optional fields are left out when absent, so the hot shapes keep their records.
 */
const SHARED_STRUCTURES: readonly (readonly string[])[] = [
  ['type', 'index', 'term'],
  ['type', 'index', 'term', 'data'],
  ['type', 'index', 'term', 'peers'],
  ['type', 'term', 'from', 'to', 'lastLogIndex', 'lastLogTerm'],
  ['type', 'term', 'from', 'to', 'granted'],
  ['type', 'term', 'from', 'to', 'prevLogIndex', 'prevLogTerm', 'entries', 'leaderCommit', 'readSeq'],
  ['type', 'term', 'from', 'to', 'success', 'matchIndex', 'rejectedIndex', 'conflictIndex', 'conflictTerm', 'readSeq'],
  ['type', 'seq', 'term', 'votedFor', 'truncateFrom', 'entries'],
  ['type', 'id', 'from', 'to'],
  ['type', 'term', 'votedFor', 'firstIndex', 'lastIndex', 'lastTerm'],
  ['type', 'seq'],
  ['type', 'id', 'entries'],
  ['type', 'message'],
  ['id', 'command'],
  ['type', 'ops'],
  ['code', 'message', 'leader'],
  ['id', 'ok', 'result', 'error'],
  ['type', 'results'],
  ['type', 'term', 'from', 'to', 'id'],
  ['type', 'term', 'from', 'to', 'id', 'readIndex', 'ok'],
  ['id', 'query'],
  ['type', 'reads'],
  ['type', 'messages'],
  // The built-in kv's commands, so they pack as records too.
  ['type', 'key', 'value'],
  ['type', 'key'],
  ['type', 'key', 'expected', 'value'],
  // Entries stamped with the leader's time, and the log commands around user commands.
  ['type', 'index', 'term', 'data', 'time'],
  ['type', 'client', 'seq', 'ack', 'command'],
  ['type', 'command'],
  ['type', 'client', 'timeoutMs'],
];

function codecOptions() {
  // A fresh copy each time: msgpackr annotates the array it is given.
  const structures = SHARED_STRUCTURES.map((s) => [...s]);
  return { structures, maxSharedStructures: structures.length, useRecords: true, moreTypes: false };
}

// ---------------------------------------------------------------------------------------------
// Entries packed once (encode once: the leader packs an entry, and those bytes travel unchanged
// through its persist, every AppendEntries and every follower's persist into LMDB)

/**
 * The msgpack extension type of an entry inside a message (AppendEntries, persist,
 * readResult): its payload is the entry packed alone with this codec, which is also exactly
 * what the log store keeps under the entry's index (src/log/lmdb-store.ts). A receiver keeps
 * the payload with the entry it decodes, so sending the entry on or storing it copies those
 * bytes and never packs the entry again.
 */
export const ENTRY_EXT = 1;

/** An entry's packed bytes, on their way into a message as one ENTRY_EXT. */
class PackedEntry {
  constructor(readonly bytes: Uint8Array) {}
}

/** An ENTRY_EXT just unpacked: where its payload lies in the message, unpacked once the message is. */
class PendingEntry {
  constructor(readonly payload: Uint8Array) {}
}

/** Returns the object it is given, so that a subclass can add a private field to any object. */
class Itself {
  constructor(o: object) {
    return o;
  }
}

/**
 * The packed bytes an entry carries: set by `entryBytes` (the first time an entry is sent or
 * stored) or kept from the message or store the entry was decoded from. A private field on the
 * entry itself: unseen by the entry's keys, spreads, deep equality and the codec, and left
 * behind by a copy (`{ ...e }`), which is packed anew. (A WeakMap did the same at several times
 * the cost per entry.) Entries are never modified once made (the core treats them as values),
 * so the bytes stay true.
 */
class EntryBytes extends Itself {
  #bytes: Uint8Array;
  private constructor(entry: object, bytes: Uint8Array) {
    super(entry);
    this.#bytes = bytes;
  }

  static get(entry: object): Uint8Array | undefined {
    return #bytes in entry ? (entry as EntryBytes).#bytes : undefined;
  }

  static keep(entry: object, bytes: Uint8Array): void {
    if (!(#bytes in entry) && Object.isExtensible(entry)) new EntryBytes(entry, bytes);
  }
}

addExtension({
  Class: PackedEntry,
  type: ENTRY_EXT,
  pack: (p: PackedEntry) => p.bytes,
  // msgpackr cannot unpack inside an unpack without copying the whole message, so the payload
  // waits until `Codec.decode` has finished the message (see `unpackEntries`).
  unpack: (payload: Uint8Array) => new PendingEntry(payload),
});

/**
 * The entry with only its own fields, in the key order of the codec's shared structures (so
 * it packs as a compact record whoever built it). With `copyData` the command bytes get a
 * buffer of their own, so a store never aliases a message buffer it was handed.
 */
export function canonicalEntry(e: Entry, copyData = false): Entry {
  switch (e.type) {
    case 'noop':
      return { type: 'noop', index: e.index, term: e.term };
    case 'command': {
      // new Uint8Array(view) copies; a Buffer's slice() would not.
      const data = copyData ? new Uint8Array(e.data) : e.data;
      // The leader's time is part of the entry (session expiry, thesis §6.3).
      return e.time === undefined ? { type: 'command', index: e.index, term: e.term, data } : { type: 'command', index: e.index, term: e.term, data, time: e.time };
    }
    case 'config': {
      const config: Entry = { type: 'config', index: e.index, term: e.term, peers: [...e.peers] };
      if (e.old !== undefined) config.old = [...e.old];
      if (e.addresses !== undefined) config.addresses = copyAddresses(e.addresses);
      return config;
    }
  }
}

/** A copy of a configuration's addresses with only their own fields. */
export function copyAddresses(book: AddressBook): AddressBook {
  const out: AddressBook = {};
  for (const [id, a] of Object.entries(book)) out[id] = a.http === undefined ? { peer: a.peer } : { peer: a.peer, http: a.http };
  return out;
}

/**
 * The entry packed alone with this codec (do not modify or transfer it): packed the first
 * time it is asked for, then the same bytes every time after, and the bytes it arrived in for
 * an entry decoded from a message or read from the log store.
 */
export function entryBytes(e: Entry): Uint8Array {
  let bytes = EntryBytes.get(e);
  if (bytes === undefined) {
    bytes = codec.encodeSmall(canonicalEntry(e));
    EntryBytes.keep(e, bytes);
  }
  return bytes;
}

/**
 * Unpack one entry packed alone (as `entryBytes` packs it, e.g. a value read from the log
 * store), remembering `bytes` as its packed form: `bytes` must not change afterwards. The
 * result is not checked: pass it through `isEntry`. Throws DecodeError.
 */
export function decodeEntryBytes(bytes: Uint8Array): unknown {
  const value = codec.decode(bytes);
  if (typeof value === 'object' && value !== null) EntryBytes.keep(value, bytes);
  return value;
}

/** The value to pack for `value`: a message that carries entries carries them packed (ENTRY_EXT). */
function withPackedEntries(value: unknown): unknown {
  if (typeof value !== 'object' || value === null) return value;
  const m = value as { type?: unknown; entries?: unknown; messages?: unknown };
  if (m.type === 'bundle' && Array.isArray(m.messages)) return { ...m, messages: m.messages.map(withPackedEntries) };
  if ((m.type === 'appendEntries' || m.type === 'persist' || m.type === 'readResult') && Array.isArray(m.entries) && m.entries.length > 0) {
    return { ...m, entries: (m.entries as Entry[]).map((e) => new PackedEntry(entryBytes(e))) };
  }
  return value;
}

/**
 * Unpack, in place, the entries of a message just unpacked from `source` (see `ENTRY_EXT`):
 * each payload must be exactly one value, and the entry keeps it as its packed bytes. A payload
 * anywhere but in a message's entries is left as it is, which no guard accepts.
 */
function unpackEntries(value: unknown, source: Uint8Array, unpackr: Unpackr): void {
  if (typeof value !== 'object' || value === null) return;
  const m = value as { type?: unknown; entries?: unknown; messages?: unknown };
  if (m.type === 'bundle' && Array.isArray(m.messages)) {
    for (const inner of m.messages) unpackEntries(inner, source, unpackr);
    return;
  }
  if (!Array.isArray(m.entries)) return;
  const entries = m.entries as unknown[];
  for (let i = 0; i < entries.length; i++) {
    const pending = entries[i];
    if (!(pending instanceof PendingEntry)) continue;
    const { payload } = pending;
    // Read from the message's own buffer (no new view, no copy); throws unless the payload
    // holds exactly one value. A payload not inside `source` cannot be: it is read alone.
    const start = payload.byteOffset - source.byteOffset;
    const inside = payload.buffer === source.buffer && start >= 0 && start + payload.length <= source.length;
    const entry: unknown = inside ? unpackr.unpack(source, { start, end: start + payload.length }) : unpackr.unpack(payload);
    if (typeof entry === 'object' && entry !== null) EntryBytes.keep(entry, payload);
    entries[i] = entry;
  }
}

/** Raised when bytes are not a message of this codec (garbage, truncated, wrong shape). */
export class DecodeError extends Error {
  override readonly name = 'DecodeError';
}

/**
 * The one codec. `encode` returns an exact-size Uint8Array that owns its ArrayBuffer, so the
 * buffer can be transferred: msgpackr's `pack` returns a view into a reused arena, and
 * transferring or retaining that view would corrupt the next message.
 */
export class Codec {
  private readonly packr = new Packr(codecOptions());
  private readonly unpackr = new Unpackr(codecOptions());

  encode(value: unknown): Uint8Array {
    const view = this.packr.pack(withPackedEntries(value));
    const owned = new Uint8Array(view.length);
    owned.set(view);
    return owned;
  }

  /**
   * Like `encode`, but the bytes may share an ArrayBuffer with others (Node's Buffer pool),
   * which makes small values much cheaper to keep: never transfer them.
   */
  encodeSmall(value: unknown): Uint8Array {
    return Buffer.from(this.packr.pack(withPackedEntries(value)));
  }

  decode(bytes: Uint8Array): unknown {
    try {
      const value: unknown = this.unpackr.unpack(bytes);
      unpackEntries(value, bytes, this.unpackr);
      return value;
    } catch (err) {
      throw new DecodeError(`undecodable message (${bytes.length} bytes): ${(err as Error).message}`);
    }
  }
}

/** One codec per thread (msgpackr instances are not shared across threads). */
export const codec = new Codec();

/**
 * Pack a user command for the log. Throws TypeError for values msgpack cannot carry
 * (functions, symbols), so bad input stops at the API.
 */
export function encodeCommand(command: unknown): Uint8Array {
  assertPackable(command, 'command');
  return codec.encode(command);
}

/**
 * Pack a log command (a user command in its session envelope, or a registration) for a
 * command entry. Throws TypeError, as `encodeCommand`, for a user command msgpack cannot carry.
 */
export function encodeLogCommand(command: LogCommand): Uint8Array {
  if (command.type !== 'register') checkCommand(command.command);
  return codec.encode(command);
}

/** Throws TypeError, as `encodeCommand`, for a command msgpack cannot carry; encodes nothing. */
export function checkCommand(command: unknown): void {
  assertPackable(command, 'command');
}

export function decodeCommand(data: Uint8Array): unknown {
  return codec.decode(data);
}

function assertPackable(value: unknown, path: string, depth = 0): void {
  if (depth > 64) throw new TypeError(`${path} is nested too deeply (or cyclic)`);
  const t = typeof value;
  if (t === 'function' || t === 'symbol') throw new TypeError(`${path} is a ${t}, which msgpack cannot carry`);
  if (t === 'bigint') return;
  if (value === null || t !== 'object') return;
  if (ArrayBuffer.isView(value) || value instanceof Date) return;
  if (value instanceof Map) {
    for (const [k, v] of value) {
      assertPackable(k, `${path} key`, depth + 1);
      assertPackable(v, `${path}.${String(k)}`, depth + 1);
    }
    return;
  }
  for (const [k, v] of Object.entries(value as object)) assertPackable(v, `${path}.${k}`, depth + 1);
}

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
 * what a follower stores and sends on (see `ENTRY_EXT`), so nothing else may ride along.
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

/**
 * Decode bytes from a port that may carry a bundle: the messages that pass `guard`, and how
 * many were dropped (garbage, truncated, wrong shape).
 */
export function decodeAll<T>(bytes: unknown, guard: (v: unknown) => v is T): { messages: T[]; dropped: number } {
  if (!(bytes instanceof Uint8Array)) return { messages: [], dropped: 1 };
  let decoded: unknown;
  try {
    decoded = codec.decode(bytes);
  } catch {
    return { messages: [], dropped: 1 };
  }
  const items =
    typeof decoded === 'object' && decoded !== null && (decoded as Bundle).type === 'bundle' && Array.isArray((decoded as Bundle).messages)
      ? (decoded as Bundle).messages
      : [decoded];
  const messages = items.filter(guard);
  return { messages, dropped: items.length - messages.length };
}

/** Post an encoded message on a port, transferring its (owned) buffer. */
export function postEncoded(
  port: { postMessage(value: unknown, transfer: ArrayBuffer[]): void },
  message: AnyMessage,
): void {
  const bytes = codec.encode(message);
  port.postMessage(bytes, [bytes.buffer as ArrayBuffer]);
}
