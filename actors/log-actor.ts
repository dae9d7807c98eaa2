/**
 * The log actor: a thin shell over one peer's LmdbLogStore (docs/architecture.md, "The picture").
 *
 * Startup: `workerData` is `{ dataDir, port }`, `port` (in the transfer list) leading to the
 * peer's consensus actor. The actor opens the store, sends `LogReady` on that port, then
 * posts `{ type: 'ready' }` on parentPort. Failing to open throws: a start failure.
 *
 * Consensus port (msgpack bytes, src/messages.ts and src/codec.ts): `persist` → `Persisted{seq}` once the
 * write is durable, in seq order (the persists of one event turn share one LMDB transaction;
 * a persist's snapshot is stored and its log compacted in that same transaction);
 * `read` → `ReadResult`, answered after every write received before it, with the entries of
 * the range that are stored (none below the snapshot: those were compacted). `LogReady`
 * carries the durable snapshot, if any (the field is absent when there is none), which
 * recovery starts from. Anything else is dropped and counted. A write that fails for lack of
 * space sends `LogFailure` (the consensus actor's nospace alarm) and is held with every later
 * persist, unacknowledged, and issued again once the disk has room (see "Disk full" below);
 * any other failed write sends `LogFailure` and crashes the actor, so the supervisor restarts
 * it and the consensus actor recovers from what is on disk. The crash is an exception thrown
 * from a microtask, never from inside an LMDB batch, so the dying thread leaves no LMDB
 * transaction open (see "Group commit" in src/log/lmdb-store.ts).
 *
 * Control, on parentPort (raw structured-clone messages, from the supervisor):
 *  - `{ type: 'attach', port }` (port transferred): a restarted consensus actor replaces
 *    the current one; once the old actor's writes have settled, it gets a fresh `LogReady`.
 *  - `{ type: 'close' }`: finish pending writes, close LMDB and the ports, post
 *    `{ type: 'closed', dropped }`, and let the thread end.
 * While writes are held for lack of space it posts `{ type: 'alarm', message }`, and
 * `{ type: 'alarm', message: null }` once they are durable again.
 * After writes it posts `{ type: 'stats', persistSeconds }` (the time from issuing each write
 * to its being durable: LMDB commit and fsync, group commit included), at most every
 * STATS_INTERVAL_MS, never on the write path itself.
 */
import { isMainThread, parentPort as maybeParentPort, workerData, MessagePort } from 'node:worker_threads';
import type { LogActorControl, LogActorData, LogActorNotice } from '../src/control.js';
import { decodeAll, postEncoded } from '../src/codec.js';
import { isLogRequest, type PersistRequest, type ReadRequest } from '../src/messages.js';
import { Batcher } from '../src/transport/batcher.js';
import { statfs } from 'node:fs/promises';
import { LmdbLogStore, spaceFailureKind } from '../src/log/lmdb-store.js';
import { StorageError } from '../src/errors.js';
import { Histogram, secondsSince } from '../src/histogram.js';
import { assertNever } from '../src/validate.js';

function parseWorkerData(v: unknown): LogActorData {
  const d = v as Partial<LogActorData> | null;
  if (typeof d !== 'object' || d === null) throw new TypeError('log actor: workerData must be an object');
  if (typeof d.dataDir !== 'string' || d.dataDir.length === 0) {
    throw new TypeError('log actor: workerData.dataDir must be a non-empty string');
  }
  if (!(d.port instanceof MessagePort)) throw new TypeError('log actor: workerData.port must be a transferred MessagePort');
  return { dataDir: d.dataDir, port: d.port };
}

function parseControl(v: unknown): LogActorControl | null {
  if (typeof v !== 'object' || v === null) return null;
  const m = v as Record<string, unknown>;
  if (m.type === 'close') return { type: 'close' };
  if (m.type === 'crash') return { type: 'crash' };
  if (m.type === 'failNextWrite') return { type: 'failNextWrite' };
  if (m.type === 'attach' && m.port instanceof MessagePort) return { type: 'attach', port: m.port };
  return null;
}

if (isMainThread || maybeParentPort === null) throw new Error('log actor: must run as a worker thread');
const parentPort = maybeParentPort;
const data = parseWorkerData(workerData);

let store = await LmdbLogStore.open(data.dataDir);

/** The consensus actor currently attached. */
let consensus: MessagePort = data.port;
/** Settles once every write received so far has settled; never rejects. */
let writesSettled: Promise<void> = Promise.resolve();
/** Messages refused as malformed, from either port. */
let dropped = 0;
let failed = false;
/** Set by the `failNextWrite` fault. */
let failNextWrite = false;
/** The acknowledgements of one LMDB batch leave as one message. */
const replies = new Batcher();
let closing = false;
/** Bumped by every attach, so a superseded attach does not go on. */
let attachments = 0;
const persistSeconds = new Histogram();
const STATS_INTERVAL_MS = 250;
let statsTimer: NodeJS.Timeout | null = null;

function onRequest(bytes: unknown): void {
  if (failed || closing) return;
  const { messages, dropped } = decodeAll(bytes, isLogRequest);
  for (let i = 0; i < dropped; i++) countDrop();
  // Replies go to the port the request came on: if a restarted consensus actor has been
  // attached since, the old port is closed and the reply is dropped with it.
  const replyTo = consensus;
  for (const request of messages) {
    if (failed) return;
    switch (request.type) {
      case 'persist':
        persist(request, replyTo);
        break;
      case 'read':
        read(request, replyTo);
        break;
      default:
        assertNever(request, 'log actor request');
    }
  }
}

function persist(request: PersistRequest, replyTo: MessagePort): void {
  if (failNextWrite) {
    failNextWrite = false;
    return fail(new StorageError('injected disk fault: write failed'), replyTo);
  }
  const held: Held = { request, replyTo };
  unacknowledged.push(held);
  // Out of space: held, in order, until a retry issues it (see "Disk full" below).
  if (stall !== null && !stall.retrying) return;
  issue(held);
}

/** Hand a persist to the store; acknowledged once durable, in seq order. */
function issue(held: Held): void {
  const { request, replyTo } = held;
  // Issued now, in this turn, so every persist of the turn joins one LMDB transaction.
  // The store settles writes in issue order, so the replies leave in seq order.
  const issued = performance.now();
  const writtenBy = store;
  const written = store.write({
    snapshot: request.snapshot ?? null,
    term: request.term,
    votedFor: request.votedFor,
    truncateFrom: request.truncateFrom,
    entries: request.entries,
  });
  // While writes are held, reads wait for the stall to end (see writeFailed), not for a retry
  // that may fail again.
  if (stall === null) {
    writesSettled = written.then(
      () => undefined,
      () => undefined,
    );
  }
  written.then(
    () => {
      if (unacknowledged[0] === held) unacknowledged.shift();
      persistSeconds.observe(secondsSince(issued));
      scheduleStats();
      replies.send(replyTo, { type: 'persisted', seq: request.seq });
      if (stall?.retrying && stall.lastHeld === held) clearStall();
    },
    (e: unknown) => {
      if (writtenBy === store) writeFailed(e, replyTo);
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Disk full (etcd's NOSPACE alarm). A write that fails for lack of space is not a crash: the
// actor tells the consensus actor (LogFailure, which raises its alarm), holds that write and
// every later persist unacknowledged (so nothing unsynced is ever acknowledged, §5.1 Figure 2
// "stable storage before responding"), and every RETRY_MS, once the file system has room again,
// reopens the store from what is durable and issues the held writes again, in order. The
// first acknowledgement after that (a `persisted`) tells the consensus actor writes are
// durable again. Any other write failure crashes the actor as before.

/** Free bytes under which a failed commit reporting EIO counts as "disk full", and above which a retry is worth trying. */
const NO_SPACE_FREE_BYTES = 1024 * 1024;
const RETRY_MS = 1000;

interface Held {
  request: PersistRequest;
  replyTo: MessagePort;
}
/** Persists received and not yet acknowledged, oldest first. */
const unacknowledged: Held[] = [];
/** Set while writes are held for lack of space. */
let stall: { retrying: boolean; lastHeld: Held | null; resume: () => void; timer: NodeJS.Timeout | null } | null = null;

async function freeBytes(): Promise<number> {
  const s = await statfs(data.dataDir);
  return Number(s.bavail) * Number(s.bsize);
}

function noSpaceMessage(free: number): string {
  return `disk full at ${data.dataDir}: ${free} bytes free`;
}

function writeFailed(e: unknown, replyTo: MessagePort): void {
  if (failed || closing) return;
  if (stall !== null) {
    // A retry failed (or a write of the failed batch reports too): wait for the next try.
    if (stall.retrying) {
      stall.retrying = false;
      scheduleRetry();
    }
    return;
  }
  const kind = spaceFailureKind(e);
  if (kind === 'other') return fail(e, replyTo);
  let resume!: () => void;
  writesSettled = new Promise<void>((resolve) => (resume = resolve)); // reads wait for the held writes
  stall = { retrying: false, lastHeld: null, resume, timer: null };
  replies.flush(); // acknowledgements of earlier writes first
  void freeBytes().then(
    (free) => {
      // EIO with room to spare is a real I/O error, not a full disk.
      if (kind === 'maybe' && free >= NO_SPACE_FREE_BYTES) return fail(e, replyTo);
      postEncoded(replyTo, { type: 'logFailure', message: noSpaceMessage(free) });
      parentPort.postMessage({ type: 'alarm', message: noSpaceMessage(free) } satisfies LogActorNotice);
      scheduleRetry();
    },
    () => fail(e, replyTo),
  );
}

function scheduleRetry(): void {
  if (stall === null || closing || failed) return;
  stall.timer = setTimeout(() => void retry().catch((e: unknown) => fail(e, consensus)), RETRY_MS);
}

/** Reopen the store from what is durable and issue every held write again, in order. */
async function retry(): Promise<void> {
  if (stall === null || closing || failed) return;
  stall.timer = null;
  if ((await freeBytes()) < NO_SPACE_FREE_BYTES) return scheduleRetry();
  await reopenStore();
  if (stall === null || closing || failed) return;
  stall.retrying = true;
  stall.lastHeld = unacknowledged[unacknowledged.length - 1] ?? null;
  if (stall.lastHeld === null) return clearStall();
  for (const held of unacknowledged) issue(held);
}

/** Serializes reopening, so a retry and an attach never open the store twice. */
let reopening: Promise<void> = Promise.resolve();

/** Close the store (a failed one closes once its writes have settled) and open it again from what is durable. */
function reopenStore(): Promise<void> {
  reopening = reopening.then(async () => {
    await store.close().catch(() => undefined);
    store = await LmdbLogStore.open(data.dataDir);
  });
  return reopening;
}

/**
 * A new consensus actor attaches while writes are held: they were never acknowledged, and it
 * recovers from what is durable, so they are dropped (as a crash would lose them) rather than
 * issued later behind its back. Its own writes raise the alarm again if the disk is still full.
 */
async function dropHeldWrites(): Promise<void> {
  if (stall === null) return;
  if (stall.timer) clearTimeout(stall.timer);
  unacknowledged.length = 0;
  clearStall();
  await reopenStore();
}

function clearStall(): void {
  if (stall === null) return;
  const { resume } = stall;
  stall = null;
  resume();
  parentPort.postMessage({ type: 'alarm', message: null } satisfies LogActorNotice);
}

function read(request: ReadRequest, replyTo: MessagePort): void {
  // After the writes before it, so a read sees every persist sent ahead of it.
  void writesSettled.then(() => {
    if (failed) return;
    try {
      // Through the same batcher as acknowledgements, so it never overtakes them.
      replies.send(replyTo, { type: 'readResult', id: request.id, entries: store.entries(request.from, request.to) });
    } catch (e) {
      fail(e, replyTo);
    }
  });
}

/** Tell the consensus actor, then crash: the supervisor restarts us from what is on disk. */
function fail(e: unknown, replyTo: MessagePort): void {
  if (failed) return;
  failed = true;
  const error = e instanceof Error ? e : new Error(String(e));
  replies.flush(); // acknowledgements of earlier writes first
  postEncoded(replyTo, { type: 'logFailure', message: error.message });
  queueMicrotask(() => {
    throw error;
  });
}

function sendLogReady(port: MessagePort): void {
  const hs = store.hardState();
  const snapshot = store.snapshot();
  postEncoded(port, {
    type: 'logReady',
    term: hs.term,
    votedFor: hs.votedFor,
    firstIndex: store.firstIndex(),
    lastIndex: store.lastIndex(),
    lastTerm: store.lastTerm(),
    // Left out when there is none, so the common shape packs as its codec record.
    ...(snapshot === null ? {} : { snapshot }),
  });
}

function listen(port: MessagePort): void {
  port.on('message', onRequest);
  port.on('messageerror', countDrop);
}

async function attach(port: MessagePort): Promise<void> {
  const attachment = ++attachments;
  const previous = consensus;
  previous.removeAllListeners();
  previous.close();
  consensus = port;
  await dropHeldWrites();
  // LogReady describes durable state, including the writes the previous actor left in flight.
  await writesSettled;
  if (attachment !== attachments || closing || failed) return; // superseded; its port is closed
  sendLogReady(port);
  listen(port);
}

async function close(): Promise<void> {
  if (closing) return;
  closing = true;
  if (statsTimer !== null) clearTimeout(statsTimer);
  if (stall?.timer) clearTimeout(stall.timer);
  stall?.resume(); // held writes stay unacknowledged: the next start recovers from the disk
  consensus.removeAllListeners();
  // Pending writes finish and their replies are posted before the port closes.
  await store.close();
  replies.flush();
  consensus.close();
  parentPort.off('message', onControl);
  parentPort.postMessage({ type: 'closed', dropped } satisfies LogActorNotice);
}

function onControl(message: unknown): void {
  const control = parseControl(message);
  if (control === null) {
    countDrop();
    return;
  }
  switch (control.type) {
    case 'attach':
      if (closing) {
        control.port.close();
        return;
      }
      void attach(control.port).catch((e: unknown) => fail(e, control.port));
      return;
    case 'crash':
      throw new Error('log actor crashed (injected by nemesis)');
    case 'failNextWrite':
      failNextWrite = true;
      return;
    case 'close':
      void close().catch((e: unknown) => {
        queueMicrotask(() => {
          throw e;
        });
      });
      return;
    default:
      return assertNever(control, 'log actor control message');
  }
}

/** Report the persist histogram to the supervisor soon (for metrics), once per interval. */
function scheduleStats(): void {
  if (statsTimer !== null) return;
  statsTimer = setTimeout(() => {
    statsTimer = null;
    if (!closing) parentPort.postMessage({ type: 'stats', persistSeconds: persistSeconds.snapshot() } satisfies LogActorNotice);
  }, STATS_INTERVAL_MS);
  statsTimer.unref();
}

/** A malformed message was dropped: count it, and tell the supervisor (for `status`). */
function countDrop(): void {
  dropped++;
  parentPort.postMessage({ type: 'dropped', total: dropped } satisfies LogActorNotice);
}

sendLogReady(consensus);
listen(consensus);
parentPort.on('message', onControl);
parentPort.postMessage({ type: 'ready' } satisfies LogActorNotice);
