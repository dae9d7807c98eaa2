/**
 * Typed errors with stable codes that survive a thread hop: an actor sends
 * `{ code, message, leader }` (a `WireError`) and `fromWire` rebuilds the class.
 */
import type { WireError } from './messages.js';

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
  | 'INSECURE_PEERS';

export class RaftError extends Error {
  readonly isRaftError = true;
  constructor(
    readonly code: RaftErrorCode,
    message: string,
  ) {
    super(message);
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

/** No answer within `ms`. For an op the outcome is unknown: it may still be applied. */
export class TimeoutError extends RaftError {
  constructor(
    readonly ms: number,
    message = `no answer within ${ms} ms`,
  ) {
    super('TIMEOUT', message);
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

export class NodeStoppedError extends RaftError {
  constructor(readonly nodeId: string, message = `node '${nodeId}' is stopped`) {
    super('NODE_STOPPED', message);
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

/** A leadership transfer could not be carried out (no such voter, or it did not take over in time). */
export class TransferFailedError extends RaftError {
  constructor(message: string) {
    super('TRANSFER_FAILED', message);
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

/** The actor holding the op crashed and was restarted; the op's outcome is unknown. */
export class ActorRestartedError extends RaftError {
  constructor(message = 'the consensus actor restarted while the op was in flight; its outcome is unknown') {
    super('ACTOR_RESTARTED', message);
  }
}

/** The state machine threw while applying a committed command (on every peer alike). */
export class StateMachineError extends RaftError {
  constructor(message: string) {
    super('STATE_MACHINE_ERROR', message);
  }
}

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
 * The op's client session expired (thesis §6.3: idle for longer than its timeout, in the
 * log's time) before the op was applied, and the op had been sent before, so it may or may
 * not have been applied then: the outcome is unknown, and the op will not be applied now.
 * (An op sent for the first time is simply resubmitted under a new session.)
 */
export class SessionExpiredError extends RaftError {
  constructor(message = 'the client session expired; the op was not applied now, and may have been applied before') {
    super('SESSION_EXPIRED', message);
  }
}

/**
 * A copy of an op arrived after its client had stopped waiting for it (it was answered, or
 * gave up): it is not applied again. No `op` call sees this unless it gave up on the op.
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
    default:
      return new StateMachineError(w.message);
  }
}
