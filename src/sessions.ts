/**
 * Client sessions: exactly-once commands (thesis §6.3, as in LogCabin).
 *
 * A retry of a command whose first try may already have been applied (a timeout, a leader
 * change, a restarted actor) must not apply it again. The API gives every `op` a client id and
 * a per-client sequence number, reused by its retries (src/api/index.ts); each peer keeps, beside
 * the user's state machine, this replicated table of sessions:
 *
 *  - a session is opened by a `register` entry through the log, so every peer has it from the
 *    same index on;
 *  - per session, the result of each command the client has not yet acknowledged (the
 *    pipelined form of §6.3: the client says, with each command, the lowest seq it still
 *    waits for, and the results below it go). A command whose seq has a saved result is a
 *    duplicate: the saved result is its answer and the state machine never sees it again;
 *  - the clock is the log's own (§6.3): each command entry carries its leader's wall clock,
 *    and the table's time is the largest seen so far. A session idle for longer than its
 *    timeout, in that time, expires at the same entry on every peer, and a command of an
 *    expired (or unknown) session is refused with SESSION_EXPIRED, never applied.
 *
 * Everything here is a function of the entries applied, so it is deterministic: equal logs
 * give equal tables, and the table goes into snapshots with the state machine's bytes
 * (`packSnapshot` in src/state-machines/replicated.ts).
 *
 * Data written before client sessions still loads: an entry that holds the user's command
 * itself (no log command around it) is applied as it was then, without a session (and a
 * snapshot of the state machine's bytes alone comes with an empty table, see `unpackSnapshot`).
 */
import { toWire } from './errors.js';
import { FNV_OFFSET, fnvBytes, fnvNumber, fnvString } from './hash.js';
import { codec } from './codec.js';
import { isLogCommand, type WireError } from './messages.js';

/** What a command came to, for the client waiting on it. */
export type Outcome = { ok: true; result: unknown } | { ok: false; error: WireError };

/**
 * A saved outcome: a primitive result as it is; any other result packed (a copy no later apply
 * can change, known to encode); or the error.
 */
type SavedOutcome = { ok: true; result: Primitive } | { ok: true; packed: Uint8Array } | { ok: false; error: WireError };
type Primitive = null | boolean | number | string;

interface Session {
  timeoutMs: number;
  /** Log time of the session's latest command, or of its registration. */
  lastActive: number;
  /** The client has its answers to every seq below this one; their results are gone. */
  ack: number;
  /** Outcomes of the client's commands from `ack` on, by seq. */
  results: Map<number, SavedOutcome>;
}

/** What `status` reports of the table; equal on peers that applied the same log. */
export interface SessionsStatus {
  /** Sessions open now. */
  active: number;
  /** Sessions expired so far. */
  expired: number;
  /** A hash of every expiry (entry index and client id), in order: equal when peers expired the same sessions at the same entries. */
  expiryDigest: number;
  /** A hash of the whole table (sessions, saved results, clock). */
  digest: number;
}

/** The table as it goes into a snapshot: plain values, sessions sorted by client id, results by seq. */
interface TableImage {
  clock: number;
  expired: number;
  expiryDigest: number;
  sessions: [client: string, timeoutMs: number, lastActive: number, ack: number, results: [seq: number, outcome: SavedOutcome][]][];
}

export class SessionTable {
  private readonly sessions = new Map<string, Session>();
  /** The replicated clock (§6.3): the largest entry time applied. Leaders' clocks differ; it never goes back. */
  private clock = 0;
  private expired = 0;
  private expiryDigest = FNV_OFFSET;
  /** No session expires before this log time: a lower bound, exact after each sweep. */
  private nextSweep = Infinity;

  /**
   * Carry out the log command of one committed command entry: `run` applies a user command to
   * the state machine and returns its result, or throws to refuse it (the error goes to the
   * client as its outcome, and counts as applied). Returns the outcome for the client.
   */
  apply(index: number, time: number | undefined, data: Uint8Array, run: (command: unknown) => unknown): Outcome {
    if (time !== undefined && time > this.clock) {
      this.clock = time;
      if (this.clock > this.nextSweep) this.sweep(index);
    }
    const command = decodeOrUndecodable(data);
    if (command === UNDECODABLE) return refused('INVALID_COMMAND', 'the entry holds bytes that do not decode');
    if (!isLogCommand(command)) {
      if (isEnvelopeType(command)) return refused('INVALID_COMMAND', 'the entry holds a malformed log command');
      // An entry written before client sessions: the user's command itself, applied as then.
      return execute(run, command);
    }
    switch (command.type) {
      case 'idempotent':
        return execute(run, command.command);
      case 'register': {
        const known = this.sessions.get(command.client);
        // Registering twice (a retried registration) keeps the session as it is.
        if (known) known.lastActive = this.clock;
        else this.sessions.set(command.client, { timeoutMs: command.timeoutMs, lastActive: this.clock, ack: 1, results: new Map() });
        this.nextSweep = Math.min(this.nextSweep, this.clock + command.timeoutMs);
        return { ok: true, result: null };
      }
      case 'op': {
        const session = this.sessions.get(command.client);
        if (!session) {
          return refused('SESSION_EXPIRED', `client session ${command.client} has expired (or was never opened on this cluster); the command was not applied`);
        }
        // Its deadline only moves later, so nextSweep stays a lower bound.
        session.lastActive = this.clock;
        if (command.ack > session.ack) forget(session, command.ack);
        if (command.seq < session.ack) {
          return refused('STALE_REQUEST', `command ${command.seq} of client session ${command.client} was answered already (its result is gone); not applied again`);
        }
        const earlier = session.results.get(command.seq);
        if (earlier) return unpack(earlier);
        const outcome = execute(run, command.command);
        const saved = pack(outcome);
        session.results.set(command.seq, saved);
        return saved.ok ? outcome : saved;
      }
    }
  }

  status(): SessionsStatus {
    return { active: this.sessions.size, expired: this.expired, expiryDigest: this.expiryDigest, digest: fnvBytes(FNV_OFFSET, codec.encode(this.image())) };
  }

  /** The table as bytes for a snapshot; `SessionTable.restore` reads them back. */
  snapshot(): Uint8Array {
    return codec.encode(this.image());
  }

  /** The table a `snapshot()` stands for; throws TypeError if `data` is not one. */
  static restore(data: Uint8Array): SessionTable {
    const image = decodeOrUndecodable(data);
    if (!isTableImage(image)) throw new TypeError('not a session table snapshot');
    const table = new SessionTable();
    table.clock = image.clock;
    table.expired = image.expired;
    table.expiryDigest = image.expiryDigest;
    for (const [client, timeoutMs, lastActive, ack, results] of image.sessions) {
      table.sessions.set(client, { timeoutMs, lastActive, ack, results: new Map(results) });
      table.nextSweep = Math.min(table.nextSweep, lastActive + timeoutMs);
    }
    return table;
  }

  /** Expire every session idle past its timeout at log time `clock`, in client id order. */
  private sweep(index: number): void {
    const gone: string[] = [];
    let next = Infinity;
    for (const [client, s] of this.sessions) {
      const deadline = s.lastActive + s.timeoutMs;
      if (deadline < this.clock) gone.push(client);
      else next = Math.min(next, deadline);
    }
    this.nextSweep = next;
    // Map order depends on how a peer got its table (a restored one is sorted): hash in a fixed order.
    for (const client of gone.sort()) {
      this.sessions.delete(client);
      this.expired++;
      this.expiryDigest = fnvString(fnvNumber(this.expiryDigest, index), client);
    }
  }

  private image(): TableImage {
    const clients = [...this.sessions.keys()].sort();
    return {
      clock: this.clock,
      expired: this.expired,
      expiryDigest: this.expiryDigest,
      sessions: clients.map((client) => {
        const s = this.sessions.get(client)!;
        const results = [...s.results].sort((a, b) => a[0] - b[0]);
        return [client, s.timeoutMs, s.lastActive, s.ack, results];
      }),
    };
  }
}

const UNDECODABLE: unique symbol = Symbol('undecodable');

function decodeOrUndecodable(data: Uint8Array): unknown {
  try {
    return codec.decode(data);
  } catch {
    return UNDECODABLE;
  }
}

/** Whether `v` claims to be a log command (by its type) whatever its other fields. */
function isEnvelopeType(v: unknown): boolean {
  const type = (v as { type?: unknown } | null)?.type;
  return type === 'op' || type === 'idempotent' || type === 'register';
}

/** Drop the results the client no longer waits for (seq < ack). */
function forget(session: Session, ack: number): void {
  if (ack - session.ack < session.results.size) {
    for (let seq = session.ack; seq < ack; seq++) session.results.delete(seq);
  } else {
    for (const seq of session.results.keys()) if (seq < ack) session.results.delete(seq);
  }
  session.ack = ack;
}

function execute(run: (command: unknown) => unknown, command: unknown): Outcome {
  try {
    return { ok: true, result: run(command) ?? null };
  } catch (err) {
    // Refused alike on every peer; the state machine is unchanged.
    return { ok: false, error: toWire(err, 'STATE_MACHINE_ERROR') };
  }
}

function refused(code: string, message: string): Outcome {
  return { ok: false, error: { code, message, leader: null } };
}

/** The outcome as saved; a result msgpack cannot carry is saved (and answered) as an error. */
function pack(outcome: Outcome): SavedOutcome {
  if (!outcome.ok) return outcome;
  const r = outcome.result;
  // Most results (kv: null, true, false) need no copy.
  if (r === null || typeof r === 'boolean' || typeof r === 'number' || typeof r === 'string') return { ok: true, result: r };
  try {
    return { ok: true, packed: codec.encode(r) };
  } catch (err) {
    return { ok: false, error: { code: 'STATE_MACHINE_ERROR', message: `result not encodable: ${(err as Error).message}`, leader: null } };
  }
}

function unpack(saved: SavedOutcome): Outcome {
  if (!saved.ok) return saved;
  return 'packed' in saved ? { ok: true, result: codec.decode(saved.packed) } : saved;
}

const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isTime = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);

function isSavedOutcome(v: unknown): v is SavedOutcome {
  if (typeof v !== 'object' || v === null) return false;
  const o = v as Record<string, unknown>;
  if (o.ok === true) {
    const r = o.result;
    if ('packed' in o) return o.packed instanceof Uint8Array && !('result' in o);
    return r === null || typeof r === 'boolean' || typeof r === 'number' || typeof r === 'string';
  }
  const e = o.error as Record<string, unknown> | null | undefined;
  return o.ok === false && typeof e === 'object' && e !== null && typeof e.code === 'string' && typeof e.message === 'string';
}

function isTableImage(v: unknown): v is TableImage {
  if (typeof v !== 'object' || v === null) return false;
  const t = v as Record<string, unknown>;
  if (!isTime(t.clock) || !isCount(t.expired) || !isCount(t.expiryDigest) || !Array.isArray(t.sessions)) return false;
  return t.sessions.every(
    (s: unknown) =>
      Array.isArray(s) &&
      s.length === 5 &&
      typeof s[0] === 'string' &&
      isCount(s[1]) &&
      isTime(s[2]) &&
      isCount(s[3]) &&
      Array.isArray(s[4]) &&
      (s[4] as unknown[]).every((r) => Array.isArray(r) && r.length === 2 && isCount(r[0]) && isSavedOutcome(r[1])),
  );
}
