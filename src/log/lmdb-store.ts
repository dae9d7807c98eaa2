/**
 * The durable LogStore: one LMDB environment per peer, opened only by that peer's log actor.
 *
 * On-disk format (version 1), in the environment at `dir` (LMDB's files data.mdb and lock.mdb):
 *  - root database, string keys, binary values packed with the project codec:
 *      'format'    → 1
 *      'hardState' → { term, votedFor }          (§5.1 persistent state)
 *      'snapshot'  → the Snapshot { meta, data } (§7), absent until the first one
 *  - 'entries' database, uint32 keys (MDB_INTEGERKEY, so LMDB orders them numerically):
 *      index → the Entry packed with the project codec, for every index from the snapshot's
 *      index + 1 (1 without a snapshot) to the last, without a hole
 * The snapshot key is optional, so a store written before snapshots existed is a valid
 * format 1 store with no snapshot; the version stays 1.
 *
 * Snapshots and compaction. A write with a snapshot puts it under 'snapshot' and deletes the
 * entries it covers in the same transaction as the rest of the write, so a crash leaves either
 * the old snapshot and log or the new ones. The entries to delete are a known range (the log's
 * first index up to the snapshot's, or to its last with discardLog), deleted key by key: no
 * scan, and as many deletes as entries were appended since the last snapshot. LMDB puts the
 * freed pages on its free list and reuses them for later appends, so under a steady load of
 * appends and snapshots the data file stops growing (test/log-store.spec.ts measures it). The
 * latest durable snapshot is also kept in memory (`snapshot()`), read once at open.
 *
 * Entries are packed with `codec` from src/codec.ts and stored as 'binary' rather than
 * with lmdb-js's own msgpack encoding. The codec knows the three entry shapes as records agreed
 * in advance, so an entry packs as a record id plus values (55 bytes for a 40-byte command);
 * lmdb's msgpack keeps its own record structures, which it stores in the database and checks
 * inside our transactions, and would be a second codec (docs/architecture.md allows one). Measured here
 * on durable batches of 64 and 1024 entries: CPU per entry within noise of each other (lmdb's
 * packs straight into its write buffer, ours pays one exact-size copy), and the codec's log
 * took 25% fewer pages, i.e. less to write and sync per commit. So the codec is the cheaper.
 * An entry's stored value is exactly the payload it travels in inside messages (ENTRY_EXT in
 * src/codec.ts): a write stores the bytes the entry arrived in, and a read hands back the
 * stored bytes with the entry, so no entry is packed again on its way to or from the disk.
 *
 * Durability. lmdb-js defaults to `overlappingSync: true` on Linux, where a put's promise
 * resolves when the transaction commits and is visible, and the flush to disk happens
 * afterwards (README, "Overlapping Sync Options"; `db.flushed` is the separate signal). In its
 * native writer (src/writer.cpp) that mode begins the write transaction with MDB_NOSYNC and
 * marks it committed at once, leaving the sync to a later callback. Raft must not acknowledge
 * a vote or an append before it is on stable storage (§5.1, Figure 2: "updated on stable
 * storage before responding to RPCs"), so the environment is opened with
 * `overlappingSync: false`: the transaction begins with no NOSYNC flag, so LMDB's commit
 * writes the data pages, fdatasync()s them and writes the meta page through its O_DSYNC
 * descriptor before the writer marks it committed and lmdb-js resolves the put (strace of
 * this configuration shows exactly that order). The commit promise therefore means durable,
 * with no reliance on `db.flushed`, a thenable that samples whichever flush is current when
 * it is awaited. It is also the durable path that docs/benchmarks.md compares against.
 *
 * Group commit. All the writes issued in one event-loop turn (everything the log actor
 * decodes from one drain of its port) share one transaction: `write()` validates and encodes
 * at once, and a setImmediate at the end of the turn hands the turn's operations to one
 * lmdb-js `batch()`, which lmdb-js guarantees to put in one transaction. lmdb-js's own
 * `eventTurnBatching` would group a turn the same way, but it starts the transaction at the
 * turn's first put and keeps it open, with the native writer thread waiting on this thread,
 * until the turn ends. A thread that dies inside that window (worker.terminate(), an uncaught
 * exception, process.exit) leaves the writer waiting forever inside an open LMDB write
 * transaction: the dead worker never finishes exiting (gdb: its teardown waits on
 * WriteWorker::WaitForCallbacks) and no other writer in the process can commit. The log actor
 * crashes on purpose after a failed write, and under load that hung on the first try. With
 * `eventTurnBatching: false` and an explicit batch, the batch is opened and closed inside one
 * synchronous call, so no crash at a JS safe point can hit the window; only an external
 * terminate() landing inside that call still can.
 */
import { mkdir } from 'node:fs/promises';
import { open, type Database, type RootDatabase } from 'lmdb';
import { codec, decodeEntryBytes, entryBytes } from '../codec.js';
import { isEntry, isSnapshotMeta, type Entry, type Snapshot } from '../messages.js';
import { StorageError } from '../errors.js';
import type { HardState, LogStore, LogWrite } from './store.js';
import {
  canonicalSnapshot,
  checkWrite,
  DurableTipQueries,
  EMPTY_TIP,
  pendingTerm,
  type LogTip,
} from './write-check.js';

const FORMAT_VERSION = 1;
const FORMAT_KEY = 'format';
const HARD_STATE_KEY = 'hardState';
const SNAPSHOT_KEY = 'snapshot';
const ENTRIES_DB = 'entries';
/** Entry keys are uint32. */
const MAX_INDEX = 0xffff_ffff;

export interface LmdbLogStoreOptions {
  /** Initial size of LMDB's memory map in bytes; lmdb-js grows it as needed. */
  mapSize?: number;
}

/** One LMDB operation of a write, encoded and waiting for the end of the event turn. */
type Op =
  | { kind: 'snapshot'; value: Uint8Array }
  | { kind: 'hardState'; value: Uint8Array }
  /** Delete entries from..to (inclusive), every one of which is stored when the op runs. */
  | { kind: 'remove'; from: number; to: number }
  | { kind: 'put'; index: number; value: Uint8Array };

function asStorageError(e: unknown, what: string): StorageError {
  if (e instanceof StorageError) return e;
  const err = new StorageError(`${what}: ${e instanceof Error ? e.message : String(e)}`);
  (err as { cause?: unknown }).cause = e;
  return err;
}

/** errno values (and lmdb's MDB_MAP_FULL) that mean a write found no room. */
const NO_ROOM_CODES = new Set<unknown>([28, 'ENOSPC', 122, 'EDQUOT', -30792, 'MDB_MAP_FULL']);
/**
 * errno values a full disk may also surface as: with LMDB's writes to a full tmpfs the commit
 * fails with EIO ("Input/output error", code 5), not ENOSPC (tried here). They mean "no room"
 * only when the file system confirms it is (nearly) full, which the caller checks.
 */
const MAYBE_NO_ROOM_CODES = new Set<unknown>([5, 'EIO']);

/**
 * How a failed write looks for lack of space: 'no-room' (ENOSPC, EDQUOT, MDB_MAP_FULL
 * anywhere on its cause chain), 'maybe' (EIO or lmdb-js's "Commit failed" with nothing more
 * precise: a full disk, if statfs says the disk is full), or 'other' (a real failure).
 */
export function spaceFailureKind(e: unknown): 'no-room' | 'maybe' | 'other' {
  let kind: 'maybe' | 'other' = 'other';
  for (let cur: unknown = e, depth = 0; cur !== undefined && cur !== null && depth < 8; depth++) {
    const err = cur as { code?: unknown; errno?: unknown; message?: unknown; cause?: unknown };
    if (NO_ROOM_CODES.has(err.code) || NO_ROOM_CODES.has(err.errno)) return 'no-room';
    if (MAYBE_NO_ROOM_CODES.has(err.code) || MAYBE_NO_ROOM_CODES.has(err.errno)) kind = 'maybe';
    if (typeof err.message === 'string' && /Commit failed|MDB_MAP_FULL|No space left/.test(err.message)) {
      if (/MDB_MAP_FULL|No space left/.test(err.message)) return 'no-room';
      kind = 'maybe';
    }
    cur = err.cause;
  }
  return kind;
}

/**
 * lmdb-js rejects a failed commit with "Commit failed (see commitError for details)" and the
 * errno in a second promise, `commitError`, which would be an unhandled rejection unless
 * observed. Wait for it and keep it as the error's cause, so the errno can be classified.
 */
async function withCommitCause(e: unknown): Promise<never> {
  const pending = (e as { commitError?: unknown } | null)?.commitError;
  if (pending instanceof Promise && (e as { cause?: unknown }).cause === undefined) {
    const cause = await pending.then(
      () => undefined,
      (c: unknown) => c,
    );
    if (cause !== undefined) (e as { cause?: unknown }).cause = cause;
  }
  throw e;
}

function decodeHardState(bytes: Uint8Array): HardState {
  const v = codec.decode(bytes) as Partial<HardState> | null;
  if (
    typeof v !== 'object' ||
    v === null ||
    typeof v.term !== 'number' ||
    !Number.isSafeInteger(v.term) ||
    v.term < 0 ||
    (v.votedFor !== null && typeof v.votedFor !== 'string')
  ) {
    throw new StorageError('the stored hard state is corrupt');
  }
  return { term: v.term, votedFor: v.votedFor };
}

function entryCount(db: Database<Uint8Array, number>): number {
  return (db.getStats() as { entryCount: number }).entryCount;
}

function decodeSnapshot(bytes: Uint8Array): Snapshot {
  const v = codec.decode(bytes) as Partial<Snapshot> | null;
  if (
    typeof v !== 'object' ||
    v === null ||
    !isSnapshotMeta(v.meta) ||
    !(v.data instanceof Uint8Array) ||
    v.data.length !== v.meta.size ||
    v.meta.index === 0
  ) {
    throw new StorageError('the stored snapshot is corrupt');
  }
  // A copy that owns its buffer, whatever the decoder's data aliases.
  return canonicalSnapshot({ meta: v.meta, data: v.data });
}

/** A stored entry; it keeps `bytes` (lmdb-js hands out a copy of its own) as its packed form. */
function decodeEntry(bytes: Uint8Array, index: number): Entry {
  let e: unknown;
  try {
    e = decodeEntryBytes(bytes);
  } catch {
    throw new StorageError(`stored entry ${index} is corrupt`);
  }
  if (!isEntry(e) || e.index !== index) throw new StorageError(`stored entry ${index} is corrupt`);
  return e;
}

export class LmdbLogStore extends DurableTipQueries implements LogStore {
  protected durable: LogTip;
  /** The state after every issued write; new writes are checked against it. */
  private tip: LogTip;
  /** Writes issued and not yet durable, oldest first. */
  private readonly pending: LogWrite[] = [];
  /** Settles after every write issued so far has settled; never rejects. */
  private tail: Promise<void> = Promise.resolve();
  /** Operations of the writes issued in this event turn, not yet handed to lmdb-js. */
  private turnOps: Op[] = [];
  /** Settles when this turn's batch has committed; null when no write is waiting for one. */
  private turnCommitted: Promise<unknown> | null = null;
  /** Set by the first failed commit: the disk no longer matches the tip, refuse everything. */
  private failure: StorageError | null = null;
  private closing: Promise<void> | null = null;

  private constructor(
    private readonly root: RootDatabase<Uint8Array, string>,
    private readonly entriesDb: Database<Uint8Array, number>,
    recovered: LogTip,
  ) {
    super();
    this.durable = recovered;
    this.tip = recovered;
  }

  /** Open (creating if needed) the environment in `dir` and recover its state. */
  static async open(dir: string, options: LmdbLogStoreOptions = {}): Promise<LmdbLogStore> {
    if (typeof dir !== 'string' || dir.length === 0) throw new TypeError('dir must be a non-empty string');
    if (options.mapSize !== undefined && !(Number.isSafeInteger(options.mapSize) && options.mapSize > 0)) {
      throw new RangeError('options.mapSize must be a positive integer');
    }
    await mkdir(dir, { recursive: true });
    let root: RootDatabase<Uint8Array, string>;
    try {
      root = open<Uint8Array, string>({
        path: dir,
        noSubdir: false, // `dir` is a directory even if its name has a dot in it
        maxDbs: 2,
        encoding: 'binary',
        overlappingSync: false, // a commit is durable when its promise resolves (see above)
        eventTurnBatching: false, // we batch each turn ourselves (see "Group commit" above)
        ...(options.mapSize !== undefined ? { mapSize: options.mapSize } : {}),
      });
    } catch (e) {
      throw asStorageError(e, `cannot open the log store in ${dir}`);
    }
    try {
      const entriesDb = root.openDB<Uint8Array, number>(ENTRIES_DB, { keyEncoding: 'uint32', encoding: 'binary' });
      const recovered = LmdbLogStore.recover(root, entriesDb);
      if (root.get(FORMAT_KEY) === undefined) await root.put(FORMAT_KEY, codec.encode(FORMAT_VERSION));
      return new LmdbLogStore(root, entriesDb, recovered);
    } catch (e) {
      await root.close().catch(() => undefined);
      throw asStorageError(e, `cannot open the log store in ${dir}`);
    }
  }

  private static recover(root: RootDatabase<Uint8Array, string>, entriesDb: Database<Uint8Array, number>): LogTip {
    const format = root.get(FORMAT_KEY);
    if (format !== undefined && codec.decode(format) !== FORMAT_VERSION) {
      throw new StorageError(`unknown log store format ${String(codec.decode(format))}`);
    }
    const hsBytes = root.get(HARD_STATE_KEY);
    const hs = hsBytes === undefined ? { term: 0, votedFor: null } : decodeHardState(hsBytes);
    const snapshotBytes = root.get(SNAPSHOT_KEY);
    const snapshot = snapshotBytes === undefined ? null : decodeSnapshot(snapshotBytes);
    // The log continues from the snapshot: with no entry after it, it ends there.
    const tip: LogTip =
      snapshot === null
        ? { ...EMPTY_TIP, term: hs.term, votedFor: hs.votedFor }
        : {
            term: hs.term,
            votedFor: hs.votedFor,
            firstIndex: snapshot.meta.index + 1,
            lastIndex: snapshot.meta.index,
            lastTerm: snapshot.meta.term,
            snapshot,
          };
    const [first] = entriesDb.getKeys({ limit: 1 });
    const [last] = entriesDb.getRange({ reverse: true, limit: 1 });
    if (first === undefined || last === undefined) return tip;
    if (first !== tip.firstIndex) {
      throw new StorageError(`the stored log starts at ${first}, not at ${tip.firstIndex} where the snapshot leaves off`);
    }
    const lastEntry = decodeEntry(last.value, last.key);
    // A cheap check that the log has no holes: LMDB keeps the entry count in its B-tree stats.
    const count = entryCount(entriesDb);
    if (count !== last.key - first + 1) {
      throw new StorageError(`the stored log is not contiguous: ${count} entries between ${first} and ${last.key}`);
    }
    return { ...tip, lastIndex: last.key, lastTerm: lastEntry.term };
  }

  /**
   * Durable entries with from <= index <= to, read from LMDB. What LMDB holds can be ahead of
   * `durable` for a moment: one batch commits every write of its turn, and the writes after
   * the first become durable here a few microtasks later, in turn. A read in that window
   * (the log actor answers a read once the writes before it are durable, and a persist sent
   * after it may share their batch) can find a prefix already compacted or a suffix already
   * truncated by that later write; it returns the contiguous run that is stored, which is what
   * the sender of both, having issued that write, expects. With no write in flight the disk
   * is exactly `durable`, and anything short of the whole range is corruption.
   */
  entries(from: number, to: number): Entry[] {
    const lo = Math.max(from, this.durable.firstIndex);
    const hi = Math.min(to, this.durable.lastIndex);
    if (lo > hi) return [];
    const out: Entry[] = [];
    for (const { key, value } of this.entriesDb.getRange({ start: lo, end: hi, inclusiveEnd: true })) {
      // Every commit leaves a contiguous log, so a hole is corruption, whatever is in flight.
      if (out.length > 0 && key !== out[out.length - 1]!.index + 1) {
        throw new StorageError(`entry ${out[out.length - 1]!.index + 1} is missing from the log`);
      }
      out.push(decodeEntry(value, key));
    }
    if (this.pending.length === 0 && out.length !== hi - lo + 1) {
      throw new StorageError(`entries ${lo}..${hi} are not all stored`);
    }
    return out;
  }

  /** How many entries LMDB holds right now (from its B-tree stats, no scan). For tests and benchmarks. */
  storedEntryCount(): number {
    return entryCount(this.entriesDb);
  }

  /** Id of the last committed LMDB transaction (it grows by one per commit). For tests and benchmarks. */
  lastTxnId(): number {
    return (this.root.getStats() as { lastTxnId: number }).lastTxnId;
  }

  write(w: LogWrite): Promise<void> {
    let after: LogTip;
    try {
      if (this.closing) throw new StorageError('the log store is closed');
      if (this.failure) throw this.failure;
      after = checkWrite(this.tip, w, (i) => this.termAt(i));
      if (after.lastIndex > MAX_INDEX) {
        throw new StorageError(`index ${after.lastIndex} is beyond the store's limit ${MAX_INDEX}`);
      }
    } catch (e) {
      // Refused before anything was issued: the store is unchanged. Still answered in turn.
      const refused = asStorageError(e, 'write refused');
      return this.inOrder(Promise.resolve(), () => {
        throw refused;
      });
    }

    // Encoded now; issued at the end of this event turn in one batch with the other writes
    // of the turn (see "Group commit"), in this order: snapshot and compaction (§7), hard
    // state, truncation (§5.3), append. The ranges removed are those the tip says are stored
    // at that point of the batch: the batch holds every earlier write, in order.
    const ops: Op[] = [];
    const before = this.tip;
    let stored = before.lastIndex;
    if (w.snapshot) {
      ops.push({ kind: 'snapshot', value: codec.encode(after.snapshot) });
      if (w.snapshot.discardLog) stored = 0; // nothing is left to truncate
      const to = w.snapshot.discardLog ? before.lastIndex : after.firstIndex - 1;
      if (to >= before.firstIndex) ops.push({ kind: 'remove', from: before.firstIndex, to });
    }
    if (w.term !== before.term || w.votedFor !== before.votedFor) {
      ops.push({ kind: 'hardState', value: codec.encode({ term: w.term, votedFor: w.votedFor }) });
    }
    if (w.truncateFrom > 0 && w.truncateFrom <= stored) ops.push({ kind: 'remove', from: w.truncateFrom, to: stored });
    // The entry's bytes as they arrived (or as the leader packed it): stored, not packed again.
    for (const e of w.entries) ops.push({ kind: 'put', index: e.index, value: entryBytes(e) });
    const committed = ops.length === 0 ? Promise.resolve() : this.enqueue(ops);
    this.tip = after;
    this.pending.push({ ...w, entries: w.entries.slice() });

    // The turn's batch settles when its transaction commits, which is durable
    // (overlappingSync: false).
    return this.inOrder(committed, (error) => {
      this.pending.shift();
      if (error !== undefined) this.failure ??= asStorageError(error, 'write failed');
      if (this.failure) throw this.failure;
      this.durable = after;
    });
  }

  /** Add `ops` to this turn's batch; settles when the batch's transaction has committed. */
  private enqueue(ops: Op[]): Promise<unknown> {
    for (const op of ops) this.turnOps.push(op);
    this.turnCommitted ??= new Promise<unknown>((resolve, reject) => {
      setImmediate(() => {
        const batch = this.turnOps;
        this.turnOps = [];
        this.turnCommitted = null;
        // After a failed commit the disk no longer matches the tip: issue nothing more.
        if (this.failure) return reject(this.failure);
        this.issue(batch).catch(withCommitCause).then(resolve, reject);
      });
    });
    return this.turnCommitted;
  }

  /**
   * Issue one turn's operations as one lmdb-js batch: one transaction, opened and closed
   * within this synchronous call (the writer thread never waits on this thread for more).
   */
  private issue(batch: Op[]): Promise<unknown> {
    try {
      return this.root.batch(() => {
        for (const op of batch) {
          switch (op.kind) {
            case 'snapshot':
              void this.root.put(SNAPSHOT_KEY, op.value);
              break;
            case 'hardState':
              void this.root.put(HARD_STATE_KEY, op.value);
              break;
            case 'remove':
              for (let i = op.from; i <= op.to; i++) void this.entriesDb.remove(i);
              break;
            case 'put':
              void this.entriesDb.put(op.index, op.value);
              break;
          }
        }
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Waits for every pending write, then closes the environment. Later writes are refused. */
  close(): Promise<void> {
    this.closing ??= this.tail.then(() => this.root.close());
    return this.closing;
  }

  /**
   * Run `settle` once `op` has settled and every earlier write has been settled, so writes
   * resolve (or reject) in issue order whatever order their commits report in.
   */
  private inOrder(op: Promise<unknown>, settle: (error: unknown) => void): Promise<void> {
    // Observe a rejection at once, so it is never reported as unhandled while it waits its turn.
    const outcome = op.then(
      () => undefined,
      (e: unknown) => e ?? new StorageError('write failed'),
    );
    const result = this.tail.then(() => outcome).then(settle);
    this.tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }

  /** Term of entry i as the issued writes leave it: in-flight writes first, then the disk. */
  private termAt(index: number): number {
    const pending = pendingTerm(this.pending, index);
    if (pending !== undefined) return pending;
    const bytes = this.entriesDb.get(index);
    if (bytes === undefined) throw new StorageError(`entry ${index} is missing from the log`);
    return decodeEntry(bytes, index).term;
  }
}
