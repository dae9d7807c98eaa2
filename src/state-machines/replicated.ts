/**
 * The apply side of one peer, as a pure unit: the user's state machine behind the client
 * session table (thesis §6.3, src/sessions.ts), the applied digest, and the snapshot of both
 * (§7). No ports, no timers, no clock: everything here is a function of the entries applied
 * (and of the snapshot restored), so peers that apply the same log reach the same state, the
 * same outcomes and the same digest. The consensus actor (actors/consensus-actor.ts) and the
 * deterministic simulator (test/sim/simulator.ts) both run committed entries through it.
 *
 * Snapshot bytes are an envelope `{ machine, sessions }` (`packSnapshot`); bytes that are no
 * such envelope are a snapshot taken before client sessions and restore with an empty table.
 */
import { InvalidCommandError, toWire } from '../errors.js';
import { FNV_OFFSET, fnvBytes, fnvNumber } from '../hash.js';
import { codec } from '../codec.js';
import { type Entry, type Snapshot } from '../messages.js';
import { SessionTable, type Outcome, type SessionsStatus } from '../sessions.js';
import type { StateMachine } from './types.js';

export type { Outcome, SessionsStatus } from '../sessions.js';

export class ReplicatedStateMachine {
  private sessions = new SessionTable();
  private digest = FNV_OFFSET;
  private index = 0;
  private readonly run: (command: unknown) => unknown;

  constructor(private readonly machine: StateMachine) {
    this.run = (command) => machine.apply(command);
  }

  /** Whether the machine can snapshot and restore; one that cannot never compacts its log (§7). */
  get canSnapshot(): boolean {
    return typeof this.machine.snapshot === 'function' && typeof this.machine.restore === 'function';
  }

  /** A running FNV-1a hash of every entry applied (index, term, command bytes): equal on peers that applied the same log. */
  get appliedDigest(): number {
    return this.digest;
  }

  /** The index of the last entry applied (or of the snapshot restored); 0 at the start. */
  get appliedIndex(): number {
    return this.index;
  }

  /** What `status` reports of the session table. */
  sessionsStatus(): SessionsStatus {
    return this.sessions.status();
  }

  /**
   * Apply committed entries, in log order. Returns one item per entry: for a command, what it
   * came to for the client waiting on it (its result, or the refusal: a malformed entry, a
   * state machine error, an expired session, all refused alike on every peer); null for a
   * no-op or a configuration entry, which the state machine never sees.
   */
  apply(entries: readonly Entry[]): (Outcome | null)[] {
    const outcomes: (Outcome | null)[] = new Array<Outcome | null>(entries.length);
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      this.digest = digestEntry(this.digest, e);
      this.index = e.index;
      outcomes[i] = e.type === 'command' ? this.sessions.apply(e.index, e.time, e.data, this.run) : null;
    }
    return outcomes;
  }

  /**
   * The state after the last entry applied, as snapshot bytes: the machine's and the session
   * table's. Throws if the machine cannot snapshot or returns something else than bytes.
   */
  snapshot(): Uint8Array {
    if (!this.canSnapshot) throw new Error('this state machine has no snapshot() and restore()');
    const machineData = this.machine.snapshot!();
    if (!(machineData instanceof Uint8Array)) throw new TypeError('StateMachine.snapshot() must return a Uint8Array');
    return packSnapshot(machineData, this.sessions);
  }

  /**
   * Replace the whole state with the one `snapshot` stands for (bytes from `snapshot()`, of this
   * peer or another): the machine's, the session table's, and the digest of its meta. Throws,
   * leaving the table and digest as they were, when the bytes are no snapshot of this machine.
   */
  restore(snapshot: Snapshot): void {
    if (typeof this.machine.restore !== 'function') throw new Error('a snapshot arrived but this state machine has no restore()');
    const parts = unpackSnapshot(snapshot.data);
    this.machine.restore(parts.machine);
    this.sessions = parts.table;
    this.digest = snapshot.meta.digest;
    this.index = snapshot.meta.index;
  }

  /**
   * The machine's read-only answer to `q` from the applied state, or the error it threw
   * (INVALID_COMMAND when the machine answers no queries; STATE_MACHINE_ERROR for a plain Error).
   */
  query(q: unknown): Outcome {
    try {
      if (typeof this.machine.query !== 'function') throw new InvalidCommandError('this state machine does not answer queries');
      return { ok: true, result: this.machine.query(q) ?? null };
    } catch (err) {
      return { ok: false, error: toWire(err, 'STATE_MACHINE_ERROR') };
    }
  }
}

/** The applied digest after entry `e`: its index and term, and a command's bytes. */
export function digestEntry(h: number, e: Entry): number {
  h = fnvNumber(fnvNumber(h, e.index), e.term);
  return e.type === 'command' ? fnvBytes(h, e.data) : h;
}

/**
 * A peer's snapshot data (§7): the state machine's bytes and the session table's, which
 * together stand for the state after the snapshot's last entry.
 */
export function packSnapshot(machine: Uint8Array, table: SessionTable): Uint8Array {
  return codec.encode({ machine, sessions: table.snapshot() });
}

/**
 * The parts of `packSnapshot`'s bytes. Bytes that are no such envelope are a snapshot taken
 * before client sessions (the state machine's bytes alone): they come with an empty table.
 * Throws TypeError for an envelope whose parts are wrong.
 */
export function unpackSnapshot(data: Uint8Array): { machine: Uint8Array; table: SessionTable } {
  let v: unknown;
  try {
    v = codec.decode(data);
  } catch {
    v = undefined;
  }
  const isEnvelope = typeof v === 'object' && v !== null && !Array.isArray(v) && ('machine' in v || 'sessions' in v);
  if (!isEnvelope) return { machine: data, table: new SessionTable() };
  const { machine, sessions } = v as { machine?: unknown; sessions?: unknown };
  if (!(machine instanceof Uint8Array) || !(sessions instanceof Uint8Array)) {
    throw new TypeError('not a snapshot of a state machine with its session table');
  }
  return { machine, table: SessionTable.restore(sessions) };
}
