/**
 * The control plane between the main thread and the actors, and what the actors are started
 * with and report, so the supervisors, the API and the tests need no import of a worker entry
 * file (actors/*.ts), only its path.
 *
 * A consensus actor's control: rare calls (status, configuration, wiring peers, stop) over
 * comlink on a port of their own. Never the op path: comlink costs several times a raw port
 * (docs/architecture.md, "Where each package fits").
 *
 * Errors do not cross as exceptions (comlink rebuilds a plain Error and loses the class);
 * calls that can fail return a `WireError` that `src/errors.ts` turns back into a class.
 */
import * as Comlink from 'comlink';
import type { MessagePort } from 'node:worker_threads';
import type { CoreOptions, Status } from './core/index.js';
import type { FaultPlan } from './faults.js';
import type { HistogramSnapshot } from './histogram.js';
import type { AddressBook, Snapshot, WireError } from './messages.js';
import type { SessionsStatus } from './sessions.js';
import type { StateMachineSpec } from './state-machines/index.js';

// ---------------------------------------------------------------------------------------------
// The consensus actor (actors/consensus-actor.ts)

/** What the peer supervisor passes in `workerData`; the three ports must be in the transfer list. */
export interface ConsensusActorData {
  id: string;
  seed: number;
  tickMs: number;
  core: Partial<CoreOptions>;
  stateMachine: StateMachineSpec;
  faults: FaultPlan;
  logPort: MessagePort;
  clientPort: MessagePort;
  controlPort: MessagePort;
}

/** Raw (non-protocol) notices to the supervisor: lifecycle and role changes for logging. */
export type ConsensusNotice =
  | { type: 'ready' }
  | { type: 'role'; role: string; term: number; leader: string | null }
  /**
   * The peers to reach and where (core `Status.members`/`addresses`), sent at start and
   * whenever the configurations in force change: a networked node's transport follows it.
   * `configured` is false while the peer is blank (no configuration in its log).
   */
  | { type: 'members'; configured: boolean; members: string[]; addresses: AddressBook };

/** An alarm a peer raised (etcd's alarms): what, why in plain words, and since when (ms since the epoch). */
export interface Alarm {
  kind: 'nospace';
  message: string;
  since: number;
}

/** What `status()` reports for a peer. */
export interface PeerStatus extends Status {
  /** Index of the last entry in this peer's log. */
  lastIndex: number;
  /**
   * A hash of every entry this peer applied, in order (index, term, command bytes): peers
   * that applied the same log up to the same index have the same digest.
   */
  appliedDigest: number;
  /** The client session table (thesis §6.3): equal on peers that applied the same log. */
  sessions: SessionsStatus;
  /** Peer messages that were garbage or of the wrong shape, dropped since the actor started. */
  droppedMessages: number;
  /**
   * Null, or the alarm this peer is in: 'nospace' while its log cannot make writes durable for
   * lack of space (it refuses new writes as leader, acknowledges nothing it could not sync,
   * and clears the alarm by itself once a held write is durable again).
   */
  alarm: Alarm | null;
  /**
   * Peers this actor has a message port to ("wired"). For a peer in this process the port is
   * the link itself; for a networked node every peer the TCP switchboard routes for is wired,
   * whether or not its connection is up (see `livePeers` of the API's `status`).
   */
  wiredPeers: string[];
  /**
   * This peer leads, or heard its leader less than an election timeout ago. `leader` alone
   * does not say so: with pre-vote (thesis §9.6) a follower cut off from its leader keeps
   * naming it while its pre-votes fail.
   */
  leaderRecentlyHeard: boolean;
  /** What the consensus actor counts and times, for metrics (src/http/metrics.ts). */
  metrics: ConsensusMetrics;
}

/** Counters and histograms kept by a consensus actor since it started. */
export interface ConsensusMetrics {
  /** Time to apply one batch of committed entries to the state machine. */
  applySeconds: HistogramSnapshot;
  /** Times this peer learned of a leader other than the last one it knew. */
  leaderChanges: number;
  /** Client proposals (ops, membership changes, transfers) the core refused, by error code. */
  proposalsRefused: Record<string, number>;
  /** Snapshots this peer took of its own state machine (§7). */
  snapshotsTaken: number;
  /** Snapshots this peer installed from a leader (§7, InstallSnapshot). */
  snapshotsInstalled: number;
}

/** What `snapshotNow()` answers. */
export type SnapshotNow = { ok: true; snapshot: Snapshot; role: string; leader: string | null } | { ok: false; reason: string };

export interface ConsensusControl {
  status(): PeerStatus;
  /**
   * Bootstrap a blank peer with `peers`: null when done (or when it already has exactly that
   * configuration), 'change' when the peer belongs to a running cluster (the caller submits a
   * membership change on the client port instead), or why not.
   */
  setConfig(peers: string[], addresses?: AddressBook): WireError | null | 'change';
  /** Use `port` for messages to and from `peer` (replacing any earlier port). */
  connectPeer(peer: string, port: MessagePort): void;
  /** Fault injection: post raw bytes on the port to peer `to`, or to the log actor (`'log'`). */
  sendRaw(to: string, bytes: Uint8Array): void;
  /** Apply injected network faults to everything this actor sends (see src/faults.ts). */
  setFaults(plan: FaultPlan): void;
  /**
   * Answer a read-only query from this peer's applied state (the state machine's `query`).
   * Returns the answer, or a WireError when the machine has no `query` or refuses it.
   */
  query(query: unknown): { ok: true; result: unknown } | { ok: false; error: WireError };
  /**
   * A snapshot of this peer's applied state now (§7: what its next `takeSnapshot` would
   * store, its meta naming the configuration and term at `lastApplied`), for a backup
   * (src/backup.ts); the peer's log and stored snapshot are left as they are. Also says
   * whether this peer leads, and whom it knows as leader. Refused (with why) by a state
   * machine that cannot snapshot, or a peer that has applied nothing yet.
   */
  snapshotNow(): SnapshotNow;
  /** Stop ticking, close every port; the worker may then be terminated. */
  stop(): void;
}

/**
 * comlink's Endpoint over a Node MessagePort (what comlink's own node-adapter does, kept
 * here so the platform glue sits in one file).
 */
type Listener = Parameters<Comlink.Endpoint['addEventListener']>[1];
type Handler = { handleEvent(e: { data: unknown }): void } | ((e: { data: unknown }) => void);

function endpoint(port: MessagePort): Comlink.Endpoint {
  const listeners = new WeakMap<object, (data: unknown) => void>();
  return {
    postMessage: (message: unknown, transfer?: unknown[]) =>
      port.postMessage(message, transfer as readonly MessagePort[] | undefined),
    addEventListener: (_type: string, listener: Listener) => {
      const handler = listener as unknown as Handler;
      const l = (data: unknown) => {
        if (typeof handler === 'function') handler({ data });
        else handler.handleEvent({ data });
      };
      port.on('message', l);
      listeners.set(handler, l);
    },
    removeEventListener: (_type: string, listener: Listener) => {
      const l = listeners.get(listener as unknown as object);
      if (l) port.off('message', l);
      listeners.delete(listener as unknown as object);
    },
  };
}

export function exposeControl(api: ConsensusControl, port: MessagePort): void {
  Comlink.expose(api, endpoint(port));
}

export type ControlProxy = Comlink.Remote<ConsensusControl>;

export function connectControl(port: MessagePort): ControlProxy {
  return Comlink.wrap<ConsensusControl>(endpoint(port));
}

/** Mark a port to be transferred (not cloned) as an argument of a control call. */
export function transferPort(port: MessagePort): MessagePort {
  return Comlink.transfer(port, [port as unknown as Parameters<typeof Comlink.transfer>[1][number]]);
}

// ---------------------------------------------------------------------------------------------
// The log actor (actors/log-actor.ts): raw structured-clone messages on parentPort

/** What the peer supervisor passes in `workerData`. */
export interface LogActorData {
  dataDir: string;
  /** To the consensus actor; must be in the transfer list. */
  port: MessagePort;
}

/** parentPort, supervisor → log actor. */
export type LogActorControl =
  | { type: 'attach'; port: MessagePort }
  | { type: 'close' }
  /** Fault injection: die at once, as from an uncaught exception (between LMDB batches). */
  | { type: 'crash' }
  /** Fault injection: the next persist fails as a disk error would (LogFailure, then a crash). */
  | { type: 'failNextWrite' };

/**
 * parentPort, log actor → supervisor. `dropped` counts messages refused as malformed; `stats`
 * carries the persist latency histogram (after writes, a few times a second at most).
 */
export type LogActorNotice =
  | { type: 'ready' }
  | { type: 'closed'; dropped: number }
  | { type: 'dropped'; total: number }
  | { type: 'stats'; persistSeconds: HistogramSnapshot }
  /** Writes are held for lack of space (the message says where and how much is free), or, with null, durable again. */
  | { type: 'alarm'; message: string | null };
