/**
 * The one msgpackr codec: every message between threads and between peers travels in its bytes.
 *
 * Encode once: the API packs a command once (`encodeCommand`, `encodeLogCommand`); the leader
 * packs each entry once (`entryBytes`), and inside every message an entry is those bytes
 * (`ENTRY_EXT`), which a receiver keeps with the entry it decodes, sends on and stores in LMDB
 * unchanged. A decoded value is trusted only after a guard of `src/messages.ts` accepts it
 * (`decodeAll` applies one).
 *
 * The wire format (record structures, the entry extension) is pinned by test/codec.spec.ts.
 */
import { addExtension, Packr, Unpackr } from 'msgpackr';
import { copyAddresses, type AnyMessage, type Bundle, type Entry, type LogCommand } from './messages.js';

/**
 * Record structures agreed on both sides in advance (msgpackr "records"): each is the key
 * order of one message shape of src/messages.ts. Objects whose keys match one of these are
 * written as a record id plus values; anything else is still encoded, with its structure inline.
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
// Ports

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
