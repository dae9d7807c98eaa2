/**
 * The public API (rafter.erl's role): start supervised peers in this process, form a
 * cluster, submit commands, read status, stop.
 *
 *   await startNode('a', { stateMachine: 'kv' });   // likewise 'b', 'c'
 *   await setConfig('a', ['a', 'b', 'c']);           // the first call bootstraps the cluster
 *   await op('a', { type: 'set', key: 'k', value: 1 });
 *   await startNode('d', { stateMachine: 'kv' });
 *   await setConfig('a', ['a', 'b', 'c', 'd']);      // later calls change the membership (§6)
 *   await transferLeadership('a', 'd');              // thesis §3.10
 *
 * Ops travel as msgpack over a port of their own (every op of one event-loop turn in one
 * message); status and stop use the comlink control plane.
 */
import { EventEmitter } from 'node:events';
import path from 'node:path';
import type { MessagePort } from 'node:worker_threads';
import type { ConsensusNotice } from '../actors/consensus-actor.js';
import { NodeSupervisor } from '../supervisors/node-supervisor.js';
import type { PeerSpec, PeerSupervisor } from '../supervisors/peer-supervisor.js';
import type { ConsensusControl, ControlProxy, PeerStatus } from './control.js';
import { DEFAULT_CORE_OPTIONS, validateCoreOptions } from './core/index.js';
import {
  ActorRestartedError,
  ConfigError,
  TransferFailedError,
  fromWire,
  NodeExistsError,
  NodeStoppedError,
  NotLeaderError,
  TimeoutError,
  UnknownNodeError,
  LeadershipLostError,
  SessionExpiredError,
} from './errors.js';
import { ClientSession } from './client-session.js';
import {
  decodeAll,
  checkCommand,
  codec,
  encodeCommand,
  encodeLogCommand,
  isClientReply,
  postEncoded,
  type ClientChangeConfig,
  type ClientReply,
  type ClientTransferLeadership,
  type OpRequest,
  type ReadQuery,
  type SessionCommand,
  type WireError,
} from './messages.js';
import type { StateMachineSpec } from './state-machines/index.js';
import {
  NO_FAULTS,
  NO_LINK_FAULTS,
  validateLinkFaults,
  validatePartition,
  type FaultPlan,
  type LinkFaults,
} from './transport/faults.js';
import { lockDataDir, type DataDirLock } from './log/dir-lock.js';
import { TcpSwitchboard, validateOptions as validateNetworkOptions, type TcpStats, type TcpTlsOptions } from './transport/tcp.js';

export interface NodeOptions {
  /** 'kv' for the built-in key-value store, or a module exporting `createStateMachine`. */
  stateMachine: StateMachineSpec;
  /** Where the peer's LMDB environment lives; default `./data/<id>` under the working directory. */
  dataDir?: string;
  /** Leader heartbeat interval (default 50 ms). */
  heartbeatMs?: number;
  /** Base election timeout; each election waits a random time in [t, 2t) (default 500 ms, §5.2). */
  electionTimeoutMs?: number;
  /** Most entries per AppendEntries (default 4096). */
  maxEntriesPerAppend?: number;
  /** AppendEntries in flight per follower (default 64). */
  maxInflightAppends?: number;
  /** Bytes of entries per AppendEntries (default 1 MiB; at least one entry is always sent). */
  maxAppendBytes?: number;
  /** Bytes of entries in flight per follower (default 16 MiB): what a slow follower can hold up. */
  maxInflightBytes?: number;
  /**
   * Log entries kept in memory per peer (default 16384, and at most `maxCachedBytes`, default
   * 32 MiB); older ones are read back from LMDB when a lagging follower or a restart needs them.
   */
  maxCachedEntries?: number;
  maxCachedBytes?: number;
  /**
   * Lease reads (thesis §6.4.1, default off): while a quorum has acknowledged the leader within
   * the lease, `read` is answered without a heartbeat round. The lease lasts
   * ((electionTimeoutMs / heartbeatMs) - 1) / clockDriftBound - 1 heartbeat intervals from the
   * start of an acknowledged round. Safe only if no peer's clock runs more than
   * `clockDriftBound` times faster than another's (default 1.5) and every peer's clock keeps
   * counting while its process is paused (the actors count ticks from a monotonic clock).
   */
  leaseReads?: boolean;
  clockDriftBound?: number;
  /**
   * Log compaction (§7): once this many entries have been applied since the last snapshot the
   * peer snapshots its state machine and deletes the log entries the snapshot covers, so the
   * log (and the LMDB file) stays bounded under a steady write load (default 16384; 0 never).
   * A state machine without `snapshot`/`restore` never compacts, whatever this says.
   */
  snapshotThreshold?: number;
  /**
   * Bytes of snapshot per InstallSnapshot message when a leader sends its snapshot to a
   * follower that is behind its compacted log, e.g. a new peer (default 1 MiB). The transfer
   * resumes from the last chunk the follower holds after a lost message or a restart.
   */
  snapshotChunkBytes?: number;
  /**
   * How long a membership change (`setConfig`) waits, while this peer leads, for the new peers
   * to catch up as learners before giving up with CatchUpTimeoutError, nothing changed
   * (default 20 s; counted in heartbeat intervals, rounded up).
   */
  catchUpTimeoutMs?: number;
  /**
   * Client sessions (thesis §6.3): the ops submitted through this node run in a session of
   * the cluster's, which applies each op exactly once however often it is retried. The
   * session expires after this long without an op, counted in the log's time (the leaders'
   * clocks, alike on every peer; default 1 hour); the next op then opens a new session.
   */
  sessionTimeoutMs?: number;
  /** Restart intensity: more than `maxRestarts` within `restartPeriodMs` stops the peer (default 5 in 10 s). */
  maxRestarts?: number;
  restartPeriodMs?: number;
  /**
   * Run this peer as a networked node: its consensus actor talks to the other peers over TCP
   * (src/transport/tcp.ts) instead of in-process channels. Without it, every peer of the
   * cluster must be started in this process.
   *
   * With `network`, the ids in `peers` count as known peers for `setConfig` and
   * `transferLeadership`. Forming a cluster: start every node blank with the full `peers` map,
   * then bootstrap ONCE, on one node, with the full list (`setConfig('n1', ['n1','n2','n3'])`);
   * only the statuses of peers in this process are checked (a remote peer that already
   * belongs to another cluster is not detected), and the other nodes join when the new
   * leader reaches them. Requests reaching a follower whose leader is in another process
   * fail with NotLeaderError naming the leader (the caller redirects).
   */
  network?: NetworkOptions;
}

export interface NetworkOptions {
  /** `host:port` to listen on for peer connections (port 0: any free port, see `transportAddress`). */
  listen: string;
  /** Every other peer of the cluster: id → `host:port` (this node's own id must not be here). */
  peers: Record<string, string>;
  /** A connection from a node with another cluster id is refused. */
  clusterId: string;
  /** Mutual TLS between peers: PEM file paths of the CA, this node's certificate and key. */
  tls?: TcpTlsOptions;
  /**
   * Largest peer frame accepted (default 64 MiB); at least maxAppendBytes and
   * snapshotChunkBytes plus 64 KiB. A single command larger than this cannot be replicated.
   */
  maxFrameBytes?: number;
  /** Bytes waiting to be sent per peer before frames are dropped (default 64 MiB). */
  maxQueuedBytes?: number;
}

export interface OpOptions {
  /**
   * How long to wait for the op to be committed and applied, including finding the leader
   * and every retry (default 10 s). On expiry the op rejects with TimeoutError, or
   * NotLeaderError when no leader could be found; a TimeoutError means the outcome is unknown.
   */
  timeoutMs?: number;
}

export interface WriteOptions extends OpOptions {
  /**
   * How long one try of the op may take before it is sent again, to the leader this process
   * knows best (default 2 s). An op is also sent again at once when its try ends with an
   * unknown outcome (LeadershipLostError, ActorRestartedError, its peer stopped). Each try
   * carries the same client session and sequence number, so the op is applied once.
   */
  attemptTimeoutMs?: number;
  /**
   * The command is safe to apply more than once (a plain `set`, a `get`): it goes without a
   * session, saving the session table its result; tries after an unknown outcome may apply
   * it again. Default false: exactly once.
   */
  idempotent?: boolean;
}

/**
 * What `status(id)` reports. `restarts` counts restarts of each actor of the peer;
 * `droppedMessages` counts malformed messages dropped by its consensus actor (peer, client
 * and log ports), `logDroppedMessages` those dropped by its current log actor, and
 * `droppedReplies` those dropped by the API on the client port.
 */
export interface NodeStatus extends PeerStatus {
  restarts: { log: number; consensus: number };
  /**
   * The client session of this node's ops (thesis §6.3): its id (null until the first op),
   * sessions opened, tries sent again, and sessions that expired under an op.
   */
  client: { session: string | null; opened: number; retries: number; expired: number };
  logDroppedMessages: number;
  droppedReplies: number;
}

/** Lifecycle events of every peer in this process, for logs and progress displays. */
export interface RaftEvents {
  role: [notice: { id: string; role: string; term: number; leader: string | null }];
  restart: [notice: { id: string; reason: string }];
  failed: [notice: { id: string; reason: string }];
}
export const events = new EventEmitter<RaftEvents>();

const DEFAULT_OP_TIMEOUT_MS = 10_000;
const DEFAULT_ATTEMPT_TIMEOUT_MS = 2_000;
const DEFAULT_SESSION_TIMEOUT_MS = 60 * 60_000;
/** Membership changes wait for new peers to catch up, which can take a while. */
const DEFAULT_CONFIG_TIMEOUT_MS = 60_000;
const CONTROL_WAIT_MS = 5_000;
const ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;
/** Room for a message's envelope beyond its entries or snapshot chunk, in a TCP frame. */
const FRAME_SLACK_BYTES = 64 << 10;

/** What a client asks of a peer: a command, a read, a membership change, a leadership transfer. */
type Request =
  | { kind: 'op' | 'read'; data: Uint8Array }
  | { kind: 'config'; peers: string[] }
  | { kind: 'transfer'; target: string | null };

interface PendingOp {
  resolve(result: unknown): void;
  reject(err: Error): void;
  deadline: number;
  timeoutMs: number;
}

/** One peer of this process, as the API sees it. */
class NodeHandle {
  state: 'starting' | 'running' | 'stopping' | 'stopped' = 'starting';
  failure: Error | null = null;
  /** Set once the peer's tree has started. */
  supervisor!: PeerSupervisor;
  private port: MessagePort | null = null;
  private control: ControlProxy | null = null;
  private readonly pending = new Map<number, PendingOp>();
  private outbox: OpRequest[] = [];
  private readOutbox: ReadQuery[] = [];
  private adminOutbox: (ClientChangeConfig | ClientTransferLeadership)[] = [];
  private flushScheduled = false;
  private sweeper: NodeJS.Timeout | null = null;
  private nextOpId = 1;
  /** Malformed messages dropped on the client port (from the actor's side). */
  droppedReplies = 0;
  /** The TCP transport of a networked node (`options.network`), closed when the peer stops. */
  transport: TcpSwitchboard | null = null;
  /** Remote peers this node knows from `options.network.peers`. */
  remotePeers: ReadonlySet<string> = new Set();
  /** This node's exclusive lock on its data directory, released when it stops. */
  dataDirLock: DataDirLock | null = null;

  constructor(
    readonly id: string,
    /** The client session of the ops submitted through this node (thesis §6.3). */
    readonly session: ClientSession,
  ) {}

  /** What the peer's tree tells its owner. */
  hooks() {
    return {
      consensusUp: (port: MessagePort, control: ControlProxy) => this.up(port, control),
      consensusDown: (reason: Error | null) => this.down(reason),
      notice: (n: ConsensusNotice) => this.notice(n),
    };
  }

  /** Submit one request to this peer; resolves with its result, rejects with a typed error. */
  submit(request: Request, timeoutMs: number): Promise<unknown> {
    if (this.state !== 'running') return Promise.reject(this.stoppedError());
    const id = this.nextOpId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: Date.now() + timeoutMs, timeoutMs });
      switch (request.kind) {
        case 'op':
          this.outbox.push({ id, command: request.data });
          break;
        case 'read':
          this.readOutbox.push({ id, query: request.data });
          break;
        case 'config':
          this.adminOutbox.push({ type: 'changeConfig', id, peers: request.peers });
          break;
        case 'transfer':
          this.adminOutbox.push({ type: 'transferLeadership', id, target: request.target });
          break;
      }
      this.scheduleFlush();
      this.startSweeper();
    });
  }

  /**
   * Make a control call on the current consensus actor. If the actor goes down during the
   * call (a crash, a restart), the call is retried on its successor; it fails with a
   * TimeoutError if no actor answers within CONTROL_WAIT_MS.
   */
  async withControl<T>(call: (c: ControlProxy) => Promise<T>): Promise<T> {
    const deadline = Date.now() + CONTROL_WAIT_MS;
    for (;;) {
      if (this.state === 'stopped') throw this.stoppedError();
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new TimeoutError(CONTROL_WAIT_MS, `node '${this.id}' did not answer a control call`);
      const control = this.control;
      if (!control) {
        await this.nextUp(remaining);
        continue;
      }
      const answer = await race(call(control), this.down$, remaining);
      if (answer.kind === 'value') return answer.value;
      // The actor went down or did not answer in time: try its successor, if any.
    }
  }

  private readonly upWaiters: (() => void)[] = [];
  /** Resolves when the current consensus actor goes down; renewed at each start. */
  private down$: Promise<void> = new Promise(() => undefined);
  private signalDown: () => void = () => undefined;

  private nextUp(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.upWaiters.push(done);
    });
  }

  stoppedError(): NodeStoppedError {
    return this.failure
      ? new NodeStoppedError(this.id, `node '${this.id}' was stopped by its supervisor: ${this.failure.message}`)
      : new NodeStoppedError(this.id);
  }

  /** Fault injection: raw bytes on the client port. */
  postRaw(bytes: Uint8Array): void {
    this.port?.postMessage(bytes);
  }

  /** Fail every op in flight (and queued) with `err`. */
  failAll(err: Error): void {
    const all = [...this.pending.values()];
    this.pending.clear();
    this.outbox = [];
    this.readOutbox = [];
    this.adminOutbox = [];
    for (const p of all) p.reject(err);
    this.stopSweeper();
  }

  private up(port: MessagePort, control: ControlProxy): void {
    this.port = port;
    this.control = control;
    port.on('message', (bytes: unknown) => {
      const { messages, dropped } = decodeAll(bytes, isClientReply);
      this.droppedReplies += dropped;
      for (const reply of messages) this.onResults(reply);
    });
    this.down$ = new Promise((resolve) => (this.signalDown = resolve));
    for (const w of this.upWaiters.splice(0)) w();
    this.scheduleFlush();
  }

  private down(reason: Error | null): void {
    this.port = null;
    this.control = null;
    this.signalDown();
    // Ops handed to the dead actor may or may not have been applied: their outcome is unknown.
    if (reason) this.failAll(new ActorRestartedError());
  }

  /** The peer's latest role notice: where ops go when the peer asked knows no leader. */
  lastRole: { role: string; term: number } = { role: 'follower', term: 0 };

  private notice(n: ConsensusNotice): void {
    if (n.type !== 'role') return;
    this.lastRole = { role: n.role, term: n.term };
    events.emit('role', { id: this.id, role: n.role, term: n.term, leader: n.leader });
  }

  /** The peer's supervisor gave up (escalated through the node supervisor). */
  fail(reason: Error): void {
    this.failure = reason;
    void retire(this, this.stoppedError().message);
    events.emit('failed', { id: this.id, reason: reason.message });
  }

  private scheduleFlush(): void {
    const empty = this.outbox.length === 0 && this.readOutbox.length === 0 && this.adminOutbox.length === 0;
    if (this.flushScheduled || empty || !this.port) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (!this.port) return;
      if (this.outbox.length > 0) {
        const ops = this.outbox;
        this.outbox = [];
        postEncoded(this.port, { type: 'ops', ops });
      }
      if (this.readOutbox.length > 0) {
        const reads = this.readOutbox;
        this.readOutbox = [];
        postEncoded(this.port, { type: 'reads', reads });
      }
      for (const request of this.adminOutbox.splice(0)) postEncoded(this.port, request);
    });
  }

  private onResults(reply: ClientReply): void {
    for (const r of reply.results) {
      const p = this.pending.get(r.id);
      if (!p) continue; // already timed out
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r.result);
      else p.reject(fromWire(r.error!));
    }
    if (this.pending.size === 0) this.stopSweeper();
  }

  /** One timer per node sweeps expired ops, instead of a timer per op. */
  private startSweeper(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => {
      const now = Date.now();
      for (const [id, p] of this.pending) {
        if (p.deadline > now) continue;
        this.pending.delete(id);
        this.outbox = this.outbox.filter((o) => o.id !== id);
        this.readOutbox = this.readOutbox.filter((o) => o.id !== id);
        this.adminOutbox = this.adminOutbox.filter((o) => o.id !== id);
        p.reject(new TimeoutError(p.timeoutMs, `op not applied within ${p.timeoutMs} ms; its outcome is unknown`));
      }
      if (this.pending.size === 0) this.stopSweeper();
    }, 20);
  }

  private stopSweeper(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
  }
}

const nodeSupervisor = new NodeSupervisor();
nodeSupervisor.on('peerFailed', (id, reason) => nodes.get(id)?.fail(reason));
nodeSupervisor.on('peerRestarted', (id, reason) => events.emit('restart', { id, reason }));
const nodes = new Map<string, NodeHandle>();
/** Peers stopped in this process (by stopNode or their supervisor), for clearer errors. */
const stopped = new Map<string, NodeStoppedError>();
let configLock: Promise<unknown> = Promise.resolve();

function validateId(id: unknown, what = 'id'): asserts id is string {
  if (typeof id !== 'string' || !ID_PATTERN.test(id) || id === '.' || id === '..') {
    throw new TypeError(`${what} must be 1-64 characters of A-Z a-z 0-9 _ . -, got ${JSON.stringify(id)}`);
  }
}

function positiveInt(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1) throw new RangeError(`options.${name} must be a positive integer, got ${value}`);
  return value;
}

function nonNegativeInt(value: number | undefined, name: string, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`options.${name} must be a non-negative integer, got ${value}`);
  return value;
}

function running(id: string): NodeHandle {
  validateId(id);
  const handle = nodes.get(id);
  if (!handle) throw stopped.get(id) ?? new UnknownNodeError(id);
  if (handle.state !== 'running') throw handle.stoppedError();
  return handle;
}

/**
 * Start a supervised peer: its log actor (LMDB under `dataDir`), then its consensus actor.
 * Rejects with DataDirLockedError, having changed nothing, when `dataDir` has another owner.
 */
export async function startNode(id: string, options: NodeOptions): Promise<void> {
  validateId(id);
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const sm = options.stateMachine;
  if (sm !== 'kv' && !(typeof sm === 'object' && sm !== null && typeof sm.module === 'string' && sm.module !== '')) {
    throw new TypeError(`options.stateMachine must be 'kv' or { module: string }, got ${JSON.stringify(sm)}`);
  }
  if (options.dataDir !== undefined && (typeof options.dataDir !== 'string' || options.dataDir === '')) {
    throw new TypeError('options.dataDir must be a non-empty string');
  }
  const heartbeatMs = positiveInt(options.heartbeatMs, 'heartbeatMs', 50);
  const electionTimeoutMs = positiveInt(options.electionTimeoutMs, 'electionTimeoutMs', 500);
  if (electionTimeoutMs < 2 * heartbeatMs) {
    throw new RangeError('options.electionTimeoutMs must be at least twice options.heartbeatMs');
  }
  const network = options.network;
  if (network !== undefined) {
    if (typeof network !== 'object' || network === null) throw new TypeError('options.network must be an object');
    validateNetworkOptions({ ...network, id }, 'options.network.');
  }
  if (nodes.has(id)) throw new NodeExistsError(id);
  stopped.delete(id);

  const spec: PeerSpec = {
    id,
    dataDir: path.resolve(options.dataDir ?? path.join('data', id)),
    stateMachine: sm,
    // The core counts time in ticks of one heartbeat interval.
    tickMs: heartbeatMs,
    core: {
      heartbeatTicks: 1,
      electionTicks: Math.round(electionTimeoutMs / heartbeatMs),
      maxEntriesPerAppend: positiveInt(options.maxEntriesPerAppend, 'maxEntriesPerAppend', 4096),
      maxInflightAppends: positiveInt(options.maxInflightAppends, 'maxInflightAppends', 64),
      maxAppendBytes: positiveInt(options.maxAppendBytes, 'maxAppendBytes', 1 << 20),
      maxInflightBytes: positiveInt(options.maxInflightBytes, 'maxInflightBytes', 16 << 20),
      maxCachedEntries: positiveInt(options.maxCachedEntries, 'maxCachedEntries', 16384),
      maxCachedBytes: positiveInt(options.maxCachedBytes, 'maxCachedBytes', 32 << 20),
      leaseReads: options.leaseReads ?? false,
      clockDriftBound: options.clockDriftBound ?? 1.5,
      snapshotThreshold: nonNegativeInt(options.snapshotThreshold, 'snapshotThreshold', 16384),
      snapshotChunkBytes: positiveInt(options.snapshotChunkBytes, 'snapshotChunkBytes', 1 << 20),
      catchUpTicks: Math.ceil(positiveInt(options.catchUpTimeoutMs, 'catchUpTimeoutMs', 20_000) / heartbeatMs),
    },
    maxRestarts: positiveInt(options.maxRestarts, 'maxRestarts', 5),
    faults: () => faults,
    restartPeriodMs: positiveInt(options.restartPeriodMs, 'restartPeriodMs', 10_000),
  };
  // The same checks the core makes, here, so bad options fail the call instead of the actor.
  validateCoreOptions({ ...DEFAULT_CORE_OPTIONS, ...spec.core });
  if (network?.maxFrameBytes !== undefined) {
    // One AppendEntries or snapshot chunk must fit in a frame (with room for its envelope).
    const needed = Math.max(spec.core.maxAppendBytes!, spec.core.snapshotChunkBytes!) + FRAME_SLACK_BYTES;
    if (network.maxFrameBytes < needed) {
      throw new RangeError(
        `options.network.maxFrameBytes (${network.maxFrameBytes}) must be at least ${needed}: maxAppendBytes and snapshotChunkBytes plus ${FRAME_SLACK_BYTES} bytes`,
      );
    }
  }
  const handle = new NodeHandle(id, new ClientSession(positiveInt(options.sessionTimeoutMs, 'sessionTimeoutMs', DEFAULT_SESSION_TIMEOUT_MS)));
  handle.dataDirLock = lockDataDir(spec.dataDir, id); // before LMDB opens it; refused: nothing changed
  nodes.set(id, handle);
  try {
    if (network !== undefined) {
      handle.remotePeers = new Set(Object.keys(network.peers));
      handle.transport = await TcpSwitchboard.start({
        id,
        listen: network.listen,
        peers: { ...network.peers },
        clusterId: network.clusterId,
        ...(network.tls ? { tls: { ...network.tls } } : {}),
        ...(network.maxFrameBytes !== undefined ? { maxFrameBytes: network.maxFrameBytes } : {}),
        ...(network.maxQueuedBytes !== undefined ? { maxQueuedBytes: network.maxQueuedBytes } : {}),
      });
      spec.switchboard = handle.transport;
    }
    handle.supervisor = await nodeSupervisor.startPeer(spec, handle.hooks());
  } catch (err) {
    if (nodes.get(id) === handle) nodes.delete(id);
    handle.state = 'stopped';
    await handle.transport?.close();
    handle.dataDirLock.release();
    throw err;
  }
  handle.state = 'running';
}

/**
 * Transport counters of a networked node (started with `options.network`): frames and bytes
 * in and out, dropped frames, bad frames, refused connections, connects and reconnects.
 * Null when `id` is not running in this process or is not networked.
 */
export function transportStats(id: string): TcpStats | null {
  const handle = nodes.get(id);
  return handle && handle.state === 'running' && handle.transport ? handle.transport.stats() : null;
}

/** The bound `host:port` of a networked node's peer listener (null as for `transportStats`). */
export function transportAddress(id: string): string | null {
  const handle = nodes.get(id);
  return handle && handle.state === 'running' && handle.transport ? handle.transport.address() : null;
}

/** A peer started here, or a remote peer of some networked node here. */
function knownPeer(handle: NodeHandle, peer: string): boolean {
  return nodes.has(peer) || handle.remotePeers.has(peer);
}

/**
 * Set the cluster's voters (rafter's set_config). All of `peers` must be started in this process,
 * or, for a networked node (`options.network`), be in its `network.peers` map.
 *
 * - On a blank peer the first call bootstraps a cluster of `peers` (each blank, or already
 *   holding this configuration); `id` must be one of them.
 * - On a peer of a running cluster it changes the membership by joint consensus (§6): the
 *   request goes to the leader, new peers catch up as non-voting learners, then C_old,new and
 *   C_new are committed in turn; it resolves once C_new is committed. A leader not in C_new
 *   then steps down. Calling it with the current voters is a no-op.
 *
 * One change at a time: calls in this process are queued, each starting once the one before
 * it has settled. A change still running in the cluster when another arrives (its call timed
 * out, or a new leader is completing a joint configuration) gets the later one refused with
 * ConfigInProgressError (nothing changed; retry later). Errors: ConfigError (empty list,
 * duplicates, unknown peers), CatchUpTimeoutError (new peers did not catch up; nothing
 * changed), NotLeaderError (no leader found), LeadershipLostError or TimeoutError (outcome
 * unknown: `status` shows which configuration is in force). Default timeout 60 s.
 */
export function setConfig(id: string, peers: string[], options: OpOptions = {}): Promise<void> {
  const run = configLock.then(() => setConfigNow(id, peers, options));
  configLock = run.catch(() => undefined);
  return run;
}

async function setConfigNow(id: string, peers: string[], options: OpOptions): Promise<void> {
  const handle = running(id);
  const timeoutMs = positiveInt(options.timeoutMs, 'timeoutMs', DEFAULT_CONFIG_TIMEOUT_MS);
  if (!Array.isArray(peers) || peers.length === 0) throw new ConfigError('setConfig needs a non-empty list of peer ids');
  for (const p of peers) validateId(p, 'peer id');
  const duplicate = peers.find((p, i) => peers.indexOf(p) !== i);
  if (duplicate !== undefined) throw new ConfigError(`peer '${duplicate}' is listed twice`);
  const unknown = peers.filter((p) => !knownPeer(handle, p));
  if (unknown.length > 0) throw new ConfigError(`unknown peer(s): ${unknown.join(', ')} (start them first)`);

  const self = await status(id);
  if (self.peers.length > 0 || self.lastIndex > 0) {
    // A running cluster: a membership change, decided by its leader.
    await submitWithRetry(handle, { kind: 'config', peers: [...peers] }, timeoutMs);
    return;
  }
  if (!peers.includes(id)) throw new ConfigError(`setConfig must be called on one of the peers; '${id}' is not in the list`);
  // Remote peers (options.network) cannot be asked: only the peers in this process are checked.
  const statuses = await Promise.all(peers.filter((p) => nodes.has(p)).map((p) => status(p)));
  {
    // Bootstrap only a cluster whose peers are all blank: a peer in another cluster would
    // let two configurations elect two leaders.
    for (const s of statuses) {
      if (s.peers.length > 0 || s.lastIndex > 0) {
        throw new ConfigError(`peer '${s.id}' already belongs to a cluster (${s.peers.join(', ') || 'no configuration yet'})`);
      }
    }
  }
  const refusal: WireError | null | 'change' = await handle.withControl((c) => c.setConfig(peers) as Promise<WireError | null | 'change'>);
  if (refusal === 'change') throw new ConfigError(`peer '${id}' joined a cluster meanwhile; call setConfig again`);
  if (refusal) throw fromWire(refusal);
}

/**
 * Hand leadership over (thesis §3.10) to `target`, or to the most up-to-date voter: the leader
 * stops taking commands, brings the target's log up to date and tells it to campaign at once.
 * Resolves with the new leader's id once `target` leads. Asked of any peer; it goes to the
 * leader. TransferFailedError when the target is not a voter, or did not take over within an
 * election timeout (the old leader then takes commands again).
 */
export async function transferLeadership(id: string, target?: string, options: OpOptions = {}): Promise<string> {
  const first = running(id);
  if (target !== undefined) {
    validateId(target, 'target');
    if (!knownPeer(first, target)) throw new TransferFailedError(`unknown peer '${target}'`);
  }
  const timeoutMs = positiveInt(options.timeoutMs, 'timeoutMs', DEFAULT_OP_TIMEOUT_MS);
  const deadline = Date.now() + timeoutMs;
  const chosen = (await submitWithRetry(first, { kind: 'transfer', target: target ?? null }, timeoutMs)) as string;
  // The old leader has stepped down and the target is campaigning: wait for it to win.
  for (;;) {
    // A remote target (options.network) is seen through this peer's view of the leader.
    const local = nodes.has(chosen);
    const s = await status(local ? chosen : first.id).catch(() => null);
    if (local ? s?.role === 'leader' : s?.leader === chosen) return chosen;
    if (Date.now() >= deadline) throw new TransferFailedError(`${chosen} was asked to take over but did not become leader in time`);
    await sleep(10);
  }
}

/**
 * Submit a command; resolves with the state machine's result once the command is committed
 * and applied on the leader. A non-leader redirects to the leader it knows.
 *
 * Exactly once (thesis §6.3): the op carries this node's client session and a sequence number
 * of its own, and every try of it (after a redirect, a timeout of a try, a leader change, a
 * restarted actor) carries the same, so the cluster applies it at most once and answers a
 * repeat with the saved result. It rejects with SessionExpiredError when the session expired
 * while the op was in doubt (it is then not applied any more; it may have been before).
 * `{ idempotent: true }` opts out, for commands safe to repeat.
 */
export async function op(id: string, command: unknown, options: WriteOptions = {}): Promise<unknown> {
  const first = running(id);
  const timeoutMs = positiveInt(options.timeoutMs, 'timeoutMs', DEFAULT_OP_TIMEOUT_MS);
  const attemptMs = positiveInt(options.attemptTimeoutMs, 'attemptTimeoutMs', DEFAULT_ATTEMPT_TIMEOUT_MS);
  if (options.idempotent !== undefined && typeof options.idempotent !== 'boolean') {
    throw new TypeError(`options.idempotent must be a boolean, got ${JSON.stringify(options.idempotent)}`);
  }
  // Registrations and idempotent commands may be applied twice: retried without a care.
  const carefree: RetryPolicy = { attemptMs, onUnknown: () => undefined };
  if (options.idempotent === true) {
    const data = encodeLogCommand({ type: 'idempotent', command });
    return submitWithRetry(first, { kind: 'op', data }, timeoutMs, carefree);
  }
  // Bad input fails before a session is opened.
  checkCommand(command);
  const deadline = Date.now() + timeoutMs;
  const session = first.session;
  const register = (data: Uint8Array) => submitWithRetry(first, { kind: 'op', data }, Math.max(deadline - Date.now(), 1), carefree);
  // Whether some try may have been applied (its outcome is unknown).
  let inDoubt = false;
  const policy: RetryPolicy = {
    attemptMs,
    onUnknown: () => {
      inDoubt = true;
      session.stats.retries++;
    },
  };
  for (;;) {
    const ticket = await session.begin(register);
    try {
      const envelope: SessionCommand = { type: 'op', client: ticket.client, seq: ticket.seq, ack: session.ack(), command };
      const data = codec.encode(envelope); // checked above
      return await submitWithRetry(first, { kind: 'op', data }, Math.max(deadline - Date.now(), 1), policy);
    } catch (err) {
      if (!(err instanceof SessionExpiredError)) throw err;
      session.expired(ticket.client);
      // Never applied under the expired session, nor anywhere else: send it under a new one.
      if (!inDoubt && Date.now() < deadline) continue;
      throw err;
    } finally {
      session.end(ticket);
    }
  }
}

/**
 * A linearizable read of the state machine (its `query`, e.g. kv `{ type: 'get', key }`)
 * without writing to the log, by ReadIndex (thesis §6.4): the leader confirms it still leads
 * with one heartbeat round (concurrent reads share it) and answers once it has applied the
 * commit index it recorded; a follower asks the leader for that index and answers from its
 * own state once it has applied it. As strong as `op(id, get)`, much cheaper.
 */
export async function read(id: string, query: unknown, options: OpOptions = {}): Promise<unknown> {
  const first = running(id);
  const timeoutMs = positiveInt(options.timeoutMs, 'timeoutMs', DEFAULT_OP_TIMEOUT_MS);
  return submitWithRetry(first, { kind: 'read', data: encodeCommand(query) }, timeoutMs);
}

/**
 * How to send a request again when a try ends with its outcome unknown, for requests that may
 * be applied twice safely (session ops, registrations, idempotent ops): each try waits at most
 * `attemptMs`; `onUnknown` hears of every such try.
 */
interface RetryPolicy {
  attemptMs: number;
  onUnknown: () => void;
}

/** A try's outcome is unknown: it may or may not have been applied. */
function unknownOutcome(err: unknown): boolean {
  return err instanceof TimeoutError || err instanceof LeadershipLostError || err instanceof ActorRestartedError || err instanceof NodeStoppedError;
}

/**
 * Submit until answered. NOT_LEADER is always retried (nothing was appended or read): an op
 * (or a membership change, a transfer) follows the redirect to the leader; a read retries
 * where it is, since any peer can serve it once a leader is known. A peer that knows no
 * leader at all is left for a peer of this process that leads, if any (a peer removed from
 * the cluster never hears of a leader again). With a `retry` policy, a try whose outcome is
 * unknown is sent again too, to this process's leader if it knows one.
 */
async function submitWithRetry(first: NodeHandle, request: Request, timeoutMs: number, retry?: RetryPolicy): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  let target = first;
  let notLeader: NotLeaderError | null = null;
  /** The last try whose outcome was unknown: once there is one, the request may have been applied. */
  let inDoubt: Error | null = null;
  const unknownTimeout = () =>
    new TimeoutError(timeoutMs, `no answer within ${timeoutMs} ms (a try ended: ${inDoubt!.message}); the outcome is unknown`);
  let backoffMs = 10;
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw inDoubt ? unknownTimeout() : (notLeader ?? new TimeoutError(timeoutMs));
    try {
      return await target.submit(request, retry ? Math.min(remaining, retry.attemptMs) : remaining);
    } catch (err) {
      if (retry && unknownOutcome(err)) {
        inDoubt = err as Error;
        if (deadline - Date.now() <= 0) throw unknownTimeout();
        retry.onUnknown();
        const next = localLeader() ?? (target.state === 'running' ? target : first.state === 'running' ? first : undefined);
        if (!next) throw err;
        // A leader that just lost its leadership, or an actor restarting: give it a moment.
        if (next === target) await sleep(Math.min(backoffMs, Math.max(deadline - Date.now(), 0)));
        target = next;
        continue;
      }
      if (!(err instanceof NotLeaderError)) throw err;
      notLeader = err;
      // A peer that knows no leader (one removed from the cluster hears from none) is passed
      // over for a peer of this process that leads, reads and writes alike.
      const fallback = err.leader === null ? localLeader() : undefined;
      if (fallback && fallback !== target) {
        target = fallback;
        continue;
      }
      if (request.kind !== 'read' && err.leader !== null) {
        const hinted = nodes.get(err.leader);
        if (hinted?.state === 'running' && hinted !== target) {
          target = hinted; // follow the redirect at once
          continue;
        }
        // The leader is in another process: the caller redirects. Not a request in doubt,
        // though (NotLeaderError says "not applied"), nor one whose leader just stopped here:
        // those wait for the next leader.
        if (!hinted && !inDoubt && !stopped.has(err.leader)) throw err;
      }
      await sleep(Math.min(backoffMs, Math.max(deadline - Date.now(), 0)));
      backoffMs = Math.min(backoffMs * 2, 200);
      if (target.state !== 'running') {
        const alive = localLeader() ?? (first.state === 'running' ? first : undefined);
        if (!alive) throw inDoubt ?? first.stoppedError();
        target = alive;
      }
    }
  }
}

export async function status(id: string): Promise<NodeStatus> {
  const handle = running(id);
  const s = await handle.withControl((c) => c.status());
  const restarts = handle.supervisor.restarts;
  return {
    ...s,
    restarts: { log: restarts.get('log') ?? 0, consensus: restarts.get('consensus') ?? 0 },
    client: { session: handle.session.id, ...handle.session.stats },
    logDroppedMessages: handle.supervisor.logDroppedMessages,
    droppedReplies: handle.droppedReplies,
  };
}

/**
 * Read from one peer's applied state without going through the log (the state machine's
 * `query`, e.g. kv `{ type: 'get', key }`). Serializable, not linearizable: a follower may
 * lag the leader. For a linearizable read use `op(id, { type: 'get', key })`.
 */
type QueryAnswer = ReturnType<ConsensusControl['query']>;

export async function query(id: string, q: unknown): Promise<unknown> {
  const handle = running(id);
  const answer = await handle.withControl((c) => c.query(q) as Promise<QueryAnswer>);
  if (!answer.ok) throw fromWire(answer.error);
  return answer.result;
}

/**
 * Fault injection, for testing your own state machines and deployments against crashes.
 * (Partitions, link faults and disk faults come with the fault-testing release.)
 */
export const nemesis = {
  /** Crash one actor of a peer abruptly; its supervisor restarts it. */
  async crash(id: string, actor: 'consensus' | 'log'): Promise<void> {
    if (actor !== 'consensus' && actor !== 'log') throw new TypeError(`actor must be 'consensus' or 'log', got ${String(actor)}`);
    await running(id).supervisor.crash(actor);
  },

  /**
   * Put raw bytes (garbage, truncated messages) on one of `id`'s ports: to a peer's
   * consensus actor (`to` = that peer's id, sent from `id`), to `id`'s log actor (`'log'`),
   * or to `id`'s consensus actor on its client port (`'client'`). The receiver drops and
   * counts what it cannot decode.
   */
  async garbage(id: string, to: string, bytes: Uint8Array): Promise<void> {
    const handle = running(id);
    if (!(bytes instanceof Uint8Array)) throw new TypeError('bytes must be a Uint8Array');
    if (to === 'client') handle.postRaw(bytes);
    else await handle.withControl((c) => c.sendRaw(to, bytes));
  },

  /** A disk fault: the peer's next log write fails, so its log actor crashes and restarts. */
  diskFault(id: string): void {
    running(id).supervisor.failNextWrite();
  },

  /**
   * Stop a whole peer without any cleanup (both threads end at once, LMDB is not closed
   * orderly). Its ops in flight fail with NodeStoppedError; `startNode` brings it back.
   */
  async kill(id: string): Promise<void> {
    const handle = running(id);
    handle.state = 'stopping';
    try {
      await nodeSupervisor.killPeer(id);
    } finally {
      await retire(handle, `node '${id}' was killed while the op was in flight; its outcome is unknown`);
    }
  },

  /**
   * Split the peers into groups that hear only each other; a peer in no group hears no one,
   * a peer in two groups bridges them ([[a, b, c], [c, d, e]]).
   */
  async partition(groups: string[][]): Promise<void> {
    await setFaults({ ...faults, partition: validatePartition(groups, [...nodes.keys(), ...stopped.keys()]) });
  },

  /** End any partition (link faults stay until `setLinkFaults(null)`). */
  async heal(): Promise<void> {
    await setFaults({ ...faults, partition: null });
  },

  /** Random loss, duplication and delay (which reorders) on every link; null for none. */
  async setLinkFaults(links: LinkFaults | null, seed = faults.seed): Promise<void> {
    await setFaults({ ...faults, links: links === null ? NO_LINK_FAULTS : validateLinkFaults(links), seed });
  },
};

/** The fault plan every consensus actor in this process applies to what it sends. */
let faults: FaultPlan = NO_FAULTS;

async function setFaults(plan: FaultPlan): Promise<void> {
  faults = plan;
  await Promise.all(
    [...nodes.values()]
      .filter((h) => h.state === 'running')
      .map((h) => h.withControl((c) => c.setFaults(plan)).catch(() => undefined)),
  );
}

/** Forget a peer that has stopped: later calls get NodeStoppedError; its ops in flight fail. */
function retire(handle: NodeHandle, inFlightMessage: string): Promise<void> {
  handle.state = 'stopped';
  if (nodes.get(handle.id) === handle) nodes.delete(handle.id);
  stopped.set(handle.id, handle.stoppedError());
  handle.dataDirLock?.release();
  handle.failAll(new NodeStoppedError(handle.id, inFlightMessage));
  // A networked node's listener and connections go with it (so its port can be reused).
  const transport = handle.transport;
  return transport ? transport.close().catch(() => undefined) : Promise.resolve();
}

/** Stop a peer cleanly; its data stays in `dataDir` and `startNode` resumes it. */
export async function stopNode(id: string): Promise<void> {
  const handle = running(id);
  handle.state = 'stopping';
  try {
    await nodeSupervisor.stopPeer(id);
  } finally {
    await retire(handle, `node '${id}' stopped while the op was in flight; its outcome is unknown`);
  }
}

/** Ids of the peers running in this process. */
export function runningNodes(): string[] {
  return [...nodes.values()].filter((h) => h.state === 'running').map((h) => h.id);
}

/** Settle with `p`'s value, or report that `interrupt` fired or `ms` passed first. */
async function race<T>(
  p: Promise<T>,
  interrupt: Promise<void>,
  ms: number,
): Promise<{ kind: 'value'; value: T } | { kind: 'interrupted' }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  try {
    return await Promise.race([
      p.then((value) => ({ kind: 'value' as const, value })),
      interrupt.then(() => ({ kind: 'interrupted' as const })),
      timeout.then(() => ({ kind: 'interrupted' as const })),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** The running peer of this process that last said it leads, in the highest term, if any. */
function localLeader(): NodeHandle | undefined {
  let best: NodeHandle | undefined;
  for (const h of nodes.values()) {
    if (h.state !== 'running' || h.lastRole.role !== 'leader') continue;
    if (!best || h.lastRole.term > best.lastRole.term) best = h;
  }
  return best;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
