/**
 * Typed errors with stable codes that survive a thread hop: an actor sends
 * `{ code, message, leader }` (a `WireError`) and `fromWire` rebuilds the class.
 *
 * Every error also says what became of the request that failed (`outcome`), so that a caller
 * can tell a safe retry from a possible duplicate:
 *
 * - `'not-applied'`: the request did not take effect and never will (it was refused before it
 *   reached a leader's log, never sent at all, or applied as a refusal that changed nothing).
 *   Retrying it cannot apply it twice.
 * - `'unknown'`: it may have taken effect, or may still (lost in flight, timed out after it was
 *   sent, leadership lost after it was appended, an actor or peer gone while it was held):
 *   retrying it outside its session may apply it twice.
 *
 * Errors that are not about a request (NodeExistsError, UnknownNodeError) say `'not-applied'`:
 * the call changed nothing. StorageError says `'unknown'` (a store that failed may hold part
 * of a write). A read changes nothing whatever its error: its outcome says only whether a peer
 * had taken it up. An error's outcome is fixed where the code knows it; the class gives the
 * usual one (`OUTCOME_OF`), and the API passes the other where it knows better (a
 * NodeStoppedError for an op never sent versus one in flight). docs/api.md has the table.
 */
import type { WireError } from './messages.js';

/** What became of a request that failed: see the header. */
export type ErrorOutcome = 'not-applied' | 'unknown';

export type RaftErrorCode =
  | 'NOT_LEADER'
  | 'TIMEOUT'
  | 'UNKNOWN_NODE'
  | 'NODE_STOPPED'
  | 'NODE_EXISTS'
  | 'CONFIG_INVALID'
  | 'CONFIG_IN_PROGRESS'
  | 'CATCH_UP_TIMEOUT'
  | 'TRANSFER_FAILED'
  | 'LEADERSHIP_LOST'
  | 'ACTOR_RESTARTED'
  | 'STATE_MACHINE_ERROR'
  | 'INVALID_COMMAND'
  | 'STORAGE_ERROR'
  | 'SESSION_EXPIRED'
  | 'STALE_REQUEST'
  | 'DATA_DIR_LOCKED'
  | 'INSECURE_PEERS'
  | 'NO_SPACE';

/**
 * The usual outcome of each error, where the code that raises it says nothing else. Those marked
 * "per instance" are set where the error is raised (see each class).
 */
export const OUTCOME_OF: Readonly<Record<RaftErrorCode, ErrorOutcome>> = {
  NOT_LEADER: 'not-applied',
  TIMEOUT: 'unknown', // per instance: 'not-applied' when no try was ever sent
  UNKNOWN_NODE: 'not-applied',
  NODE_STOPPED: 'not-applied', // per instance: 'unknown' for requests in flight when it stopped
  NODE_EXISTS: 'not-applied',
  CONFIG_INVALID: 'not-applied',
  CONFIG_IN_PROGRESS: 'not-applied',
  CATCH_UP_TIMEOUT: 'not-applied',
  TRANSFER_FAILED: 'unknown', // per instance: 'not-applied' when refused by the API
  LEADERSHIP_LOST: 'unknown',
  ACTOR_RESTARTED: 'unknown', // per instance: 'not-applied' for requests never handed to the actor
  STATE_MACHINE_ERROR: 'not-applied', // per instance: 'unknown' for a result that could not be sent
  INVALID_COMMAND: 'not-applied',
  STORAGE_ERROR: 'unknown',
  SESSION_EXPIRED: 'unknown', // per instance: 'not-applied' when no try was in doubt
  STALE_REQUEST: 'unknown',
  DATA_DIR_LOCKED: 'not-applied',
  INSECURE_PEERS: 'not-applied',
  NO_SPACE: 'not-applied',
};

export class RaftError extends Error {
  readonly isRaftError = true;
  /** What became of the request: see the header of src/errors.ts. */
  readonly outcome: ErrorOutcome;
  constructor(
    readonly code: RaftErrorCode,
    message: string,
    outcome: ErrorOutcome = OUTCOME_OF[code],
  ) {
    super(message);
    this.outcome = outcome;
  }
  override get name(): string {
    return this.constructor.name;
  }
  toWire(): WireError {
    return { code: this.code, message: this.message, leader: null };
  }
}

/** The peer asked is not the leader; `leader` is the last one it knew of (or null). */
export class NotLeaderError extends RaftError {
  constructor(
    readonly leader: string | null,
    message = leader ? `not the leader; try ${leader}` : 'not the leader, and no leader is known',
  ) {
    super('NOT_LEADER', message);
  }
  override toWire(): WireError {
    return { code: this.code, message: this.message, leader: this.leader };
  }
}

/**
 * No answer within `ms`. Outcome `'unknown'` once some try was sent (it may still be applied);
 * `'not-applied'` when none was (the peer's actor was down all along, or every try was refused
 * with NOT_LEADER).
 */
export class TimeoutError extends RaftError {
  constructor(
    readonly ms: number,
    message = `no answer within ${ms} ms`,
    outcome: ErrorOutcome = 'unknown',
  ) {
    super('TIMEOUT', message, outcome);
  }
}

export class UnknownNodeError extends RaftError {
  constructor(
    readonly nodeId: string,
    message = `no node '${nodeId}' has been started in this process`,
  ) {
    super('UNKNOWN_NODE', message);
  }
}

/**
 * The peer is stopped (by stopNode, nemesis.kill or its supervisor). Outcome `'not-applied'`
 * for a request made after it stopped, or still queued in this process when it did (never
 * sent); `'unknown'` for one the peer held when it stopped (`inFlight`).
 */
export class NodeStoppedError extends RaftError {
  constructor(
    readonly nodeId: string,
    message = `node '${nodeId}' is stopped`,
    outcome: ErrorOutcome = 'not-applied',
  ) {
    super('NODE_STOPPED', message, outcome);
  }
  /** Whether the peer held the request when it stopped (its outcome is then unknown). */
  get inFlight(): boolean {
    return this.outcome === 'unknown';
  }
}

export class NodeExistsError extends RaftError {
  constructor(
    readonly nodeId: string,
    message = `node '${nodeId}' is already running in this process`,
  ) {
    super('NODE_EXISTS', message);
  }
}

/** A setConfig that cannot be a configuration: empty, duplicates, unknown peers. */
export class ConfigError extends RaftError {
  constructor(message: string) {
    super('CONFIG_INVALID', message);
  }
}

/**
 * A membership change was asked for while another is in progress (one at a time, §6): nothing
 * was changed; retry once the first one is done (`status` shows a joint configuration or
 * learners while it runs).
 */
export class ConfigInProgressError extends RaftError {
  constructor(message = 'a membership change is in progress') {
    super('CONFIG_IN_PROGRESS', message);
  }
}

/**
 * The new peers of a membership change did not catch up with the leader in time (they are
 * down, unreachable, or far too slow): the change was abandoned before it reached the log, so
 * the configuration is unchanged.
 */
export class CatchUpTimeoutError extends RaftError {
  constructor(message = 'the new peers did not catch up in time; the configuration is unchanged') {
    super('CATCH_UP_TIMEOUT', message);
  }
}

/**
 * A leadership transfer could not be carried out (no such voter, or it did not take over in
 * time). Outcome `'not-applied'` when the API refused it before sending (an unknown target);
 * `'unknown'` when it comes from the leader, which does not say whether the target may still
 * win the election it was told to start.
 */
export class TransferFailedError extends RaftError {
  constructor(message: string, outcome: ErrorOutcome = 'unknown') {
    super('TRANSFER_FAILED', message, outcome);
  }
}

/**
 * The leader that accepted the op lost its leadership before the op's entry was applied,
 * and the entry was overwritten. The outcome is unknown: a later leader may still commit
 * the original entry (Figure 8), so retrying may apply the command twice.
 */
export class LeadershipLostError extends RaftError {
  constructor(message = 'leadership lost before the op was applied; its outcome is unknown') {
    super('LEADERSHIP_LOST', message);
  }
}

/**
 * The consensus actor crashed and was restarted: ops it held have an unknown outcome; ops
 * still queued in this process for it (never handed over) are `'not-applied'`.
 */
export class ActorRestartedError extends RaftError {
  constructor(message = 'the consensus actor restarted while the op was in flight; its outcome is unknown', outcome: ErrorOutcome = 'unknown') {
    super('ACTOR_RESTARTED', message, outcome);
  }
}

/**
 * The state machine threw while applying a committed command (on every peer alike): by the
 * state machine contract its state is unchanged, so the outcome is `'not-applied'`. A result
 * msgpack cannot carry is answered with this error too, after the command was applied: that
 * one (its message starts with RESULT_NOT_ENCODABLE) is `'unknown'`, as is the error an
 * unknown code from a newer peer turns into.
 */
export class StateMachineError extends RaftError {
  constructor(message: string, outcome: ErrorOutcome = 'not-applied') {
    super('STATE_MACHINE_ERROR', message, outcome);
  }
}

/** How src/sessions.ts begins the message of a result it could not save (the command was applied). */
export const RESULT_NOT_ENCODABLE = 'result not encodable';

/** A command the state machine does not accept (wrong shape); thrown by `apply`. */
export class InvalidCommandError extends RaftError {
  constructor(message: string) {
    super('INVALID_COMMAND', message);
  }
}

export class StorageError extends RaftError {
  constructor(message: string) {
    super('STORAGE_ERROR', message);
  }
}

/**
 * The peer refused a new write because its disk is full (or over its quota): it is in the
 * no-space alarm (etcd's NOSPACE), raised when a log write could not be made durable for lack
 * of space, and cleared on its own once a write succeeds again. The write was refused before
 * it reached a log, so retrying it (later, or on another cluster) cannot apply it twice.
 */
export class NoSpaceError extends RaftError {
  constructor(message = 'the disk is full: new writes are refused until space returns') {
    super('NO_SPACE', message);
  }
}

/**
 * The op's client session expired (thesis §6.3: idle for longer than its timeout, in the
 * log's time) before the op was applied, and the op had been sent before, so it may or may
 * not have been applied then: the outcome is unknown, and the op will not be applied now.
 * (An op sent for the first time is simply resubmitted under a new session.)
 */
export class SessionExpiredError extends RaftError {
  constructor(message = 'the client session expired; the op was not applied now, and may have been applied before', outcome: ErrorOutcome = 'unknown') {
    super('SESSION_EXPIRED', message, outcome);
  }
}

/**
 * A copy of an op arrived after its client had stopped waiting for it (it was answered, or
 * gave up): it is not applied again. No `op` call sees this unless it gave up on the op. Its
 * outcome is `'unknown'`: this copy was not applied, but another copy of the op may have been.
 */
export class StaleRequestError extends RaftError {
  constructor(message = 'the op was answered already; this copy was not applied') {
    super('STALE_REQUEST', message);
  }
}

/**
 * The data directory is owned by another live process, or by another node of this process
 * (`holderPid` is then this process's pid): nothing was opened or changed. See src/log/dir-lock.ts.
 */
export class DataDirLockedError extends RaftError {
  constructor(
    readonly dir: string,
    readonly holderPid: number | null,
    message = `data directory ${dir} is in use by ${holderPid === null ? 'another process' : `process ${holderPid}`}`,
  ) {
    super('DATA_DIR_LOCKED', message);
  }
}

/**
 * A networked node would run its peer port unsafely, so it does not start: it would listen
 * beyond loopback with no way for peers to prove who they are (no TLS, no cluster secret),
 * or its cluster secret is too short or readable by any user. The message says what to add.
 */
export class InsecurePeersError extends RaftError {
  constructor(message: string) {
    super('INSECURE_PEERS', message);
  }
}

export function isRaftError(e: unknown): e is RaftError {
  return typeof e === 'object' && e !== null && (e as { isRaftError?: unknown }).isRaftError === true;
}

/** Any thrown value as a WireError; non-Raft errors keep their message. */
export function toWire(e: unknown, fallbackCode: RaftErrorCode = 'STATE_MACHINE_ERROR'): WireError {
  if (isRaftError(e)) return e.toWire();
  const message = e instanceof Error ? e.message : String(e);
  return { code: fallbackCode, message, leader: null };
}

/**
 * A copy of `err` that says `outcome`, same class, message and stack (`err` itself when it
 * says so already): for a request whose fate the caller knows better than the error's origin,
 * e.g. an op in doubt since an earlier try whose last try was refused.
 */
export function withOutcome<E extends RaftError>(err: E, outcome: ErrorOutcome): E {
  if (err.outcome === outcome) return err;
  const copy = Object.create(Object.getPrototypeOf(err) as object, Object.getOwnPropertyDescriptors(err)) as E;
  Object.defineProperty(copy, 'outcome', { value: outcome, enumerable: true });
  return copy;
}

/** Rebuild the typed error a WireError stands for. */
export function fromWire(w: WireError): RaftError {
  switch (w.code as RaftErrorCode) {
    case 'NOT_LEADER':
      return new NotLeaderError(w.leader, w.message);
    case 'TIMEOUT':
      return new TimeoutError(0, w.message);
    case 'LEADERSHIP_LOST':
      return new LeadershipLostError(w.message);
    case 'ACTOR_RESTARTED':
      return new ActorRestartedError(w.message);
    case 'INVALID_COMMAND':
      return new InvalidCommandError(w.message);
    case 'CONFIG_INVALID':
      return new ConfigError(w.message);
    case 'CONFIG_IN_PROGRESS':
      return new ConfigInProgressError(w.message);
    case 'CATCH_UP_TIMEOUT':
      return new CatchUpTimeoutError(w.message);
    case 'TRANSFER_FAILED':
      return new TransferFailedError(w.message);
    case 'STORAGE_ERROR':
      return new StorageError(w.message);
    case 'NO_SPACE':
      return new NoSpaceError(w.message);
    case 'SESSION_EXPIRED':
      return new SessionExpiredError(w.message);
    case 'STALE_REQUEST':
      return new StaleRequestError(w.message);
    case 'INSECURE_PEERS':
      return new InsecurePeersError(w.message);
    // Raised by the API in the caller's thread; rebuilt for completeness (nodeId is not on
    // the wire, only in the message, like TimeoutError's ms).
    case 'UNKNOWN_NODE':
      return new UnknownNodeError('', w.message);
    case 'NODE_STOPPED':
      return new NodeStoppedError('', w.message);
    case 'NODE_EXISTS':
      return new NodeExistsError('', w.message);
    case 'DATA_DIR_LOCKED':
      return new DataDirLockedError('', null, w.message);
    case 'STATE_MACHINE_ERROR':
      return new StateMachineError(w.message, w.message.startsWith(RESULT_NOT_ENCODABLE) ? 'unknown' : 'not-applied');
    default:
      // A code this build does not know (a newer peer's): nothing can be said of the request.
      return new StateMachineError(w.message, 'unknown');
  }
}
