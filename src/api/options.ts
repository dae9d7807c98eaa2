/**
 * The API's options room: what a caller may pass to `startNode`, `op`, `read` and the admin
 * calls, how each is checked, and the peer spec a node's supervisor is started from. Every
 * consensus default comes from the core's DEFAULT_CORE_OPTIONS (in ticks of one heartbeat
 * interval); only the API's own defaults are written here.
 */
import path from 'node:path';
import type { PeerSpec } from '../../supervisors/peer-supervisor.js';
import { DEFAULT_CORE_OPTIONS, validateCoreOptions, type CoreOptions } from '../core/index.js';
import type { StateMachineSpec } from '../state-machines/index.js';
import type { FaultPlan } from '../faults.js';
import { parseHostPort, validateOptions as validateNetworkOptions, type TcpSwitchboardOptions, type TcpTlsOptions } from '../transport/tcp.js';
import { isPeerId, nonNegativeInt, positiveInt } from '../validate.js';

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
  /**
   * Other peers: id → `host:port` (this node's own id must not be here). Needed only to find
   * a first contact: once this node holds a configuration, the addresses it carries (from the
   * log) rule, and the transport follows it; these fill in members an older configuration
   * entry has no address for. A blank node waiting to be added may have none.
   */
  peers: Record<string, string>;
  /**
   * This node's peer address as others dial it, written into the configuration when this node
   * bootstraps a cluster (default: the bound listen address).
   */
  advertise?: string;
  /** This node's client HTTP base URL (`http(s)://host:port`), written alike when it bootstraps. */
  advertiseHttp?: string;
  /** A connection from a node with another cluster id is refused. */
  clusterId: string;
  /**
   * Mutual TLS between peers: PEM file paths of the CA, this node's certificate and key. Each
   * peer's certificate must be bound to its id (a DNS or URI subject alternative name or the
   * CN equal to the id, or a name listed for it in `tls.peerNames`); see docs/peer-security.md.
   */
  tls?: TcpTlsOptions;
  /**
   * A file holding the cluster's shared secret (at least 16 bytes, not readable by other
   * users): peers prove they know it in every handshake, without sending it. Authenticates
   * peers without TLS; it does not encrypt the stream nor protect it from tampering.
   */
  clusterSecretFile?: string;
  /**
   * Listen beyond loopback with neither `tls` nor `clusterSecretFile`: anyone reaching the
   * port can pose as any peer. Without this, such a node refuses to start (InsecurePeersError).
   */
  insecurePeers?: boolean;
  /**
   * Largest peer frame accepted (default 64 MiB); at least maxAppendBytes and
   * snapshotChunkBytes plus 64 KiB. A single command larger than this cannot be replicated.
   */
  maxFrameBytes?: number;
  /** Bytes waiting to be sent per peer before frames are dropped (default 64 MiB). */
  maxQueuedBytes?: number;
}

/** `setConfig`'s options: an op's, and the members' addresses for the configuration entries. */
export interface ConfigOptions extends OpOptions {
  /**
   * Where members are reached (id → `{ peer: 'host:port', http?: URL }`), carried in the
   * configuration entries so every peer learns them from the log (src/transport/tcp.ts).
   * A networked node bootstrapping fills in itself and its `network.peers` on its own.
   */
  addresses?: Record<string, { peer: string; http?: string }>;
}

export interface OpOptions {
  /**
   * How long to wait for the op to be committed and applied, including finding the leader
   * and every retry (default 10 s). On expiry the op rejects with TimeoutError, or
   * NotLeaderError when no leader could be found; a TimeoutError means the outcome is unknown.
   */
  timeoutMs?: number;
}

/** Options of `read` (and, through WriteOptions, of `op`). */
export interface ReadOptions extends OpOptions {
  /**
   * Place the client beside this peer (usually `id` itself), for tests of clients inside a
   * partition: the request goes only to that peer and to the peers that share a group of the
   * nemesis's partition with it (`nemesis.partition`), never across the partition to another
   * peer of this process. A leader it cannot reach is waited for until the timeout, as a real
   * client on that side would. Unset: any peer of this process.
   */
  via?: string;
}

export interface WriteOptions extends ReadOptions {
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

export const DEFAULT_OP_TIMEOUT_MS = 10_000;
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 2_000;
/** Membership changes wait for new peers to catch up, which can take a while. */
export const DEFAULT_CONFIG_TIMEOUT_MS = 60_000;
const DEFAULT_SESSION_TIMEOUT_MS = 60 * 60_000;
/** The API's tick: the core counts time in heartbeat intervals, this long by default. */
const DEFAULT_HEARTBEAT_MS = 50;
const DEFAULT_MAX_RESTARTS = 5;
const DEFAULT_RESTART_PERIOD_MS = 10_000;
/** Room for a message's envelope beyond its entries or snapshot chunk, in a TCP frame. */
const FRAME_SLACK_BYTES = 64 << 10;
export function validateId(id: unknown, what = 'id'): asserts id is string {
  if (!isPeerId(id)) {
    throw new TypeError(`${what} must be 1-64 characters of A-Z a-z 0-9 _ . -, got ${JSON.stringify(id)}`);
  }
}

/**
 * The checks `startNode` makes before it looks at the running peers (a node already running
 * is refused after these): the object, its state machine and data directory, the timing and
 * the network section.
 */
export function validateNodeOptions(id: string, options: NodeOptions): void {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  const sm = options.stateMachine;
  if (sm !== 'kv' && !(typeof sm === 'object' && sm !== null && typeof sm.module === 'string' && sm.module !== '')) {
    throw new TypeError(`options.stateMachine must be 'kv' or { module: string }, got ${JSON.stringify(sm)}`);
  }
  if (options.dataDir !== undefined && (typeof options.dataDir !== 'string' || options.dataDir === '')) {
    throw new TypeError('options.dataDir must be a non-empty string');
  }
  const { heartbeatMs, electionTimeoutMs } = timing(options);
  if (electionTimeoutMs < 2 * heartbeatMs) {
    throw new RangeError('options.electionTimeoutMs must be at least twice options.heartbeatMs');
  }
  const network = options.network;
  if (network !== undefined) {
    if (typeof network !== 'object' || network === null) throw new TypeError('options.network must be an object');
    validateNetworkOptions({ ...network, id }, 'options.network.');
    if (network.advertise !== undefined) parseHostPort(network.advertise, 'options.network.advertise');
    if (network.advertiseHttp !== undefined) checkHttpUrl(network.advertiseHttp, 'options.network.advertiseHttp');
  }
}

/** `host:port` or an http(s) URL → the base URL (no trailing slash). */
export function checkHttpUrl(v: unknown, what: string): string {
  if (typeof v !== 'string' || v === '') throw new TypeError(`${what} must be 'host:port' or an http(s) URL, got ${JSON.stringify(v)}`);
  const text = v.includes('://') ? v : `http://${v}`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new TypeError(`${what} must be 'host:port' or an http(s) URL, got ${JSON.stringify(v)}`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw new TypeError(`${what} must be an http(s)://host:port URL, got ${JSON.stringify(v)}`);
  }
  return `${url.protocol}//${url.host}`;
}

/** The heartbeat interval and base election timeout, in ms (defaults: the core's, one tick = one default heartbeat). */
function timing(options: NodeOptions): { heartbeatMs: number; electionTimeoutMs: number } {
  const heartbeatMs = positiveInt(options.heartbeatMs, 'options.heartbeatMs', DEFAULT_HEARTBEAT_MS);
  const electionTimeoutMs = positiveInt(options.electionTimeoutMs, 'options.electionTimeoutMs', DEFAULT_CORE_OPTIONS.electionTicks * DEFAULT_HEARTBEAT_MS);
  return { heartbeatMs, electionTimeoutMs };
}

/** The core options a caller sets as positive integers under the same name. */
type PositiveCoreOption = keyof CoreOptions &
  keyof NodeOptions &
  ('maxEntriesPerAppend' | 'maxInflightAppends' | 'maxAppendBytes' | 'maxInflightBytes' | 'maxCachedEntries' | 'maxCachedBytes' | 'snapshotChunkBytes');

/**
 * The spec a peer's supervisor starts the peer from, with every option checked (the same
 * checks the core makes, here, so bad options fail the call instead of the actor). The core
 * counts time in ticks of one heartbeat interval. `faults` gives the fault plan in force
 * when a consensus actor starts.
 */
export function peerSpec(id: string, options: NodeOptions, faults: () => FaultPlan): PeerSpec {
  const { heartbeatMs, electionTimeoutMs } = timing(options);
  const positive = (name: PositiveCoreOption) => positiveInt(options[name], `options.${name}`, DEFAULT_CORE_OPTIONS[name]);
  const core = {
    heartbeatTicks: 1, // a tick is one heartbeat interval
    electionTicks: Math.round(electionTimeoutMs / heartbeatMs),
    maxEntriesPerAppend: positive('maxEntriesPerAppend'),
    maxInflightAppends: positive('maxInflightAppends'),
    maxAppendBytes: positive('maxAppendBytes'),
    maxInflightBytes: positive('maxInflightBytes'),
    maxCachedEntries: positive('maxCachedEntries'),
    maxCachedBytes: positive('maxCachedBytes'),
    leaseReads: options.leaseReads ?? DEFAULT_CORE_OPTIONS.leaseReads,
    clockDriftBound: options.clockDriftBound ?? DEFAULT_CORE_OPTIONS.clockDriftBound,
    snapshotThreshold: nonNegativeInt(options.snapshotThreshold, 'options.snapshotThreshold', DEFAULT_CORE_OPTIONS.snapshotThreshold),
    snapshotChunkBytes: positive('snapshotChunkBytes'),
    catchUpTicks: Math.ceil(
      positiveInt(options.catchUpTimeoutMs, 'options.catchUpTimeoutMs', DEFAULT_CORE_OPTIONS.catchUpTicks * DEFAULT_HEARTBEAT_MS) / heartbeatMs,
    ),
  };
  const spec: PeerSpec = {
    id,
    dataDir: path.resolve(options.dataDir ?? path.join('data', id)),
    stateMachine: options.stateMachine,
    tickMs: heartbeatMs,
    core,
    maxRestarts: positiveInt(options.maxRestarts, 'options.maxRestarts', DEFAULT_MAX_RESTARTS),
    faults,
    restartPeriodMs: positiveInt(options.restartPeriodMs, 'options.restartPeriodMs', DEFAULT_RESTART_PERIOD_MS),
  };
  validateCoreOptions({ ...DEFAULT_CORE_OPTIONS, ...core });
  const maxFrameBytes = options.network?.maxFrameBytes;
  if (maxFrameBytes !== undefined) {
    // One AppendEntries or snapshot chunk must fit in a frame (with room for its envelope).
    const needed = Math.max(core.maxAppendBytes, core.snapshotChunkBytes) + FRAME_SLACK_BYTES;
    if (maxFrameBytes < needed) {
      throw new RangeError(
        `options.network.maxFrameBytes (${maxFrameBytes}) must be at least ${needed}: maxAppendBytes and snapshotChunkBytes plus ${FRAME_SLACK_BYTES} bytes`,
      );
    }
  }
  return spec;
}

/** How long this node's client session lives without an op (thesis §6.3). */
export function sessionTimeoutMs(options: NodeOptions): number {
  return positiveInt(options.sessionTimeoutMs, 'options.sessionTimeoutMs', DEFAULT_SESSION_TIMEOUT_MS);
}

/** The TCP transport's options for a networked node (a copy: later changes by the caller do not reach it). */
export function switchboardOptions(id: string, network: NetworkOptions): TcpSwitchboardOptions {
  return {
    id,
    listen: network.listen,
    peers: { ...network.peers },
    clusterId: network.clusterId,
    ...(network.tls ? { tls: copyTls(network.tls) } : {}),
    ...(network.clusterSecretFile !== undefined ? { clusterSecretFile: network.clusterSecretFile } : {}),
    ...(network.insecurePeers !== undefined ? { insecurePeers: network.insecurePeers } : {}),
    ...(network.maxFrameBytes !== undefined ? { maxFrameBytes: network.maxFrameBytes } : {}),
    ...(network.maxQueuedBytes !== undefined ? { maxQueuedBytes: network.maxQueuedBytes } : {}),
  };
}

function copyTls(tls: TcpTlsOptions): TcpTlsOptions {
  const { peerNames, ...files } = tls;
  return {
    ...files,
    ...(peerNames ? { peerNames: Object.fromEntries(Object.entries(peerNames).map(([p, names]) => [p, [...names]])) } : {}),
  };
}
