/**
 * One owner per data directory: an exclusive lock taken before LMDB opens the directory.
 *
 *   const lock = lockDataDir('/var/lib/raft/n1', 'n1'); // throws DataDirLockedError if owned
 *   ...open LMDB, run...
 *   lock.release();
 *
 * Two owners of one LMDB log (two processes, or two `startNode` calls in one process) both
 * believe they hold the peer's durable state: both vote, both acknowledge writes, and the log
 * ends up with entries neither would have written alone. The lock makes the second owner fail
 * at once, before it has touched anything.
 *
 * ## Design
 *
 * Node has no `flock`, so the lock is a file, `<dir>/actor-raft.lock`, holding a JSON record
 * of its owner: `pid`, the process's start time (`start`, field 22 of `/proc/<pid>/stat`, in
 * clock ticks since boot), the kernel's `boot` id (`/proc/sys/kernel/random/boot_id`), the
 * host name and a random `token` (so that every lock file's content is unique). `start` and
 * `boot` are null where there is no `/proc` (macOS, Windows).
 *
 * - **Taking a free lock.** The record is written to a private temporary file first and then
 *   hard-linked to the lock's name: `link` fails with EEXIST when the name exists, so of any
 *   number of racing takers exactly one wins, and no reader ever sees a half-written record
 *   (which an `open(O_EXCL)` followed by a write would show).
 * - **In this process.** Held directories are kept in a module-level map keyed by their real
 *   path (symlinks and `..` resolved), so a second owner in this process is refused without
 *   reading the file. A lock file naming this process that is *not* in the map belongs to
 *   another copy of this module in this process (a worker thread): it counts as held.
 * - **Is the holder alive?** A record is stale when its boot id differs from ours (the machine
 *   rebooted since; LMDB cannot be shared between machines anyway), when `process.kill(pid, 0)`
 *   says ESRCH (no such process; EPERM means it exists under another user), when that process
 *   is a zombie, or when the process with that pid started at another time than the record
 *   says (the pid was reused after a `kill -9`). A record that cannot be parsed is stale too:
 *   the link protocol never exposes a partial record, so only a crash (an unsynced file after
 *   a power loss) or a foreign writer leaves one. Without `/proc` only the pid is checked.
 * - **Taking over a stale lock.** Deleting the stale file and then linking is racy: taker P
 *   deletes and links, then taker Q (who read the stale record before P acted) deletes P's
 *   live lock and links its own, and both win. So a stale file is replaced only by the one
 *   taker that creates (by `link`, exclusively) a guard file named after a hash of the stale
 *   content, `actor-raft.lock.takeover-<hash>`. The guard's owner checks that the lock still
 *   holds exactly that content, replaces it atomically with `rename`, and removes the guard.
 *   Nobody else can change a file holding that content meanwhile: the dead holder will not
 *   release it, `link` needs the name to be free, and replacing needs the guard. A taker that
 *   arrives late finds either a live lock (refused) or, holding the guard after it was
 *   removed, content that no longer matches (it backs off and looks again). A guard left by a
 *   taker killed while holding it is itself stale and taken over the same way (one level up).
 * - **Release** on `release()` (stopNode), and for every lock still held when the process
 *   exits normally (`process.on('exit')`). A lock is removed only while it still holds our own
 *   record. After `kill -9`, a crash or a power loss the file stays, and the next owner finds
 *   it stale.
 *
 * Limits: without `/proc`, a lock whose pid was reused by a live process of this user is
 * taken as held; the error names the pid and the file, which the operator may delete once
 * sure no node runs there. A data directory on a network file system shared between machines
 * is not supported (by LMDB either).
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DataDirLockedError } from '../errors.js';

export const LOCK_FILE = 'actor-raft.lock';

export interface DataDirLock {
  /** The real path of the locked directory. */
  readonly dir: string;
  /** Give the directory up (idempotent). */
  release(): void;
}

interface OwnerRecord {
  pid: number;
  start: string | null;
  boot: string | null;
  host: string;
  token: string;
  owner?: string;
}

/** Real path → the record this process wrote there, for every directory this module holds. */
const held = new Map<string, { record: string; owner: string | undefined }>();
let exitHookInstalled = false;
/** How often to look again when the lock changes under us (released, or taken over meanwhile). */
const MAX_ATTEMPTS = 16;

/**
 * Take the exclusive lock on data directory `dir` (created if missing), before anything opens
 * it. Throws DataDirLockedError, having changed nothing on disk, when another live owner holds it.
 */
export function lockDataDir(dir: string, owner?: string): DataDirLock {
  fs.mkdirSync(dir, { recursive: true });
  const real = fs.realpathSync(dir);
  const mine = held.get(real);
  if (mine) {
    const who = mine.owner === undefined ? '' : ` for node '${mine.owner}'`;
    throw new DataDirLockedError(real, process.pid, `data directory ${real} is already in use by this process (pid ${process.pid})${who}`);
  }
  const lockPath = path.join(real, LOCK_FILE);
  const record = JSON.stringify({ ...selfIdentity(), token: randomBytes(16).toString('hex'), ...(owner === undefined ? {} : { owner }) });
  for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
    // Look first, so that a refusal writes nothing (not even a temporary file).
    const current = readOrNull(lockPath);
    if (current !== null && isAlive(current)) throw lockedError(real, lockPath, current);
    const won = current === null ? linkNew(record, lockPath) : takeOver(lockPath, current, record);
    if (!won) {
      sleepSync(Math.min(50, 1 << attempt)); // another taker is between its guard and its rename
      continue;
    }
    held.set(real, { record, owner });
    installExitHook();
    let released = false;
    return {
      dir: real,
      release() {
        if (released) return;
        released = true;
        releaseHeld(real);
      },
    };
  }
  // Still contended after every attempt: report whoever holds it now.
  const current = readOrNull(lockPath);
  throw lockedError(real, lockPath, current ?? '');
}

/** Lock records of this process: pid, start time, boot id, host. */
function selfIdentity(): Omit<OwnerRecord, 'token'> {
  return { pid: process.pid, start: procStat(process.pid)?.start ?? null, boot: bootId(), host: os.hostname() };
}

function releaseHeld(real: string): void {
  const mine = held.get(real);
  if (!mine) return;
  held.delete(real);
  const lockPath = path.join(real, LOCK_FILE);
  // Only our own record: never remove a lock someone else took over (it cannot happen while we
  // live, unless an operator deleted the file by hand).
  if (readOrNull(lockPath) === mine.record) unlinkQuietly(lockPath);
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const real of [...held.keys()]) releaseHeld(real);
  });
}

function lockedError(real: string, lockPath: string, content: string): DataDirLockedError {
  const r = parse(content);
  const pid = r?.pid ?? null;
  const who = r === null ? 'another owner' : `process ${r.pid}${r.host !== os.hostname() ? ` on ${r.host}` : ''}${r.owner ? ` (node '${r.owner}')` : ''}`;
  return new DataDirLockedError(
    real,
    pid,
    `data directory ${real} is in use by ${who} (lock file ${lockPath}); stop that process first, or delete the lock file once sure nothing runs on this directory`,
  );
}

function parse(content: string): OwnerRecord | null {
  try {
    const r = JSON.parse(content) as Partial<OwnerRecord>;
    if (typeof r !== 'object' || r === null || !Number.isSafeInteger(r.pid) || (r.pid as number) <= 0 || typeof r.token !== 'string') return null;
    return {
      pid: r.pid as number,
      start: typeof r.start === 'string' ? r.start : null,
      boot: typeof r.boot === 'string' ? r.boot : null,
      host: typeof r.host === 'string' ? r.host : '',
      token: r.token,
      ...(typeof r.owner === 'string' ? { owner: r.owner } : {}),
    };
  } catch {
    return null;
  }
}

/** Whether the owner a lock (or guard) file names still runs (see "Is the holder alive?"). */
function isAlive(content: string): boolean {
  const r = parse(content);
  if (r === null) return false;
  const boot = bootId();
  if (r.boot !== null && boot !== null && r.boot !== boot) return false;
  try {
    process.kill(r.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    // EPERM: the process exists (another user's); go on with the start time.
  }
  const stat = procStat(r.pid);
  if (stat === null) return true; // no /proc, or it vanished just now: assume alive (the safe side)
  if (stat.state === 'Z' || stat.state === 'X') return false;
  return r.start === null || r.start === stat.start;
}

/** Start time (field 22) and state (field 3) of `/proc/<pid>/stat`; null without /proc. */
function procStat(pid: number): { start: string; state: string } | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Field 2, the command name, is in parentheses and may itself hold spaces and ')'.
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  const state = fields[0];
  const start = fields[19];
  return state !== undefined && start !== undefined ? { start, state } : null;
}

let cachedBootId: string | null | undefined;
function bootId(): string | null {
  if (cachedBootId === undefined) {
    try {
      cachedBootId = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || null;
    } catch {
      cachedBootId = null;
    }
  }
  return cachedBootId;
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function readOrNull(file: string): string | null {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw err;
  }
}

function unlinkQuietly(file: string): void {
  try {
    fs.unlinkSync(file);
  } catch {
    // already gone
  }
}

/** A private temporary file next to `target` holding `content`. */
function writeTemp(target: string, content: string): string {
  const tmp = `${target}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  fs.writeFileSync(tmp, content, { flag: 'wx' });
  return tmp;
}

/** Create `target` holding `content` if no file has that name; false if one does. */
function linkNew(content: string, target: string): boolean {
  const tmp = writeTemp(target, content);
  try {
    fs.linkSync(tmp, target);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkQuietly(tmp);
  }
}

/**
 * Replace `target`, which held the stale `seen`, by `content` — unless another taker gets there
 * first (false). See "Taking over a stale lock".
 */
function takeOver(target: string, seen: string, content: string): boolean {
  const guard = `${target}.takeover-${createHash('sha256').update(seen).digest('hex').slice(0, 32)}`;
  const guardRecord = JSON.stringify({ ...selfIdentity(), token: randomBytes(16).toString('hex') });
  if (!linkNew(guardRecord, guard)) {
    const other = readOrNull(guard);
    // Another taker holds the guard: when it lives, it finishes the takeover (we look again);
    // when it died holding it, its guard is stale and taken over like a lock.
    if (other === null || isAlive(other) || !takeOver(guard, other, guardRecord)) return false;
  }
  try {
    if (readOrNull(target) !== seen) return false; // taken over (or released) meanwhile
    const tmp = writeTemp(target, content);
    try {
      fs.renameSync(tmp, target);
    } catch (err) {
      unlinkQuietly(tmp);
      throw err;
    }
    return true;
  } finally {
    if (readOrNull(guard) === guardRecord) unlinkQuietly(guard);
  }
}

/** Real paths of the directories this process holds (for tests and diagnostics). */
export function heldDataDirs(): string[] {
  return [...held.keys()];
}
