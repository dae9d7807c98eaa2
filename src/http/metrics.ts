/**
 * `GET /metrics` of the HTTP server (src/http/server.ts): Prometheus text format 0.0.4 for
 * one peer of this process. Every sample carries `node="<id>"`. The names are listed in
 * docs/network.md ("Health, readiness and metrics").
 *
 * Numbers come from three places: the peer's `status` (its consensus actor's counters and
 * apply histogram, the log actor's persist histogram, the API's op histogram: all
 * cumulative, gathered on the control plane, never on the op path), the HTTP server's own
 * request counters, and this process (CPU, memory, open files, event-loop lag).
 */
import fs from 'node:fs';
import type { HistogramSnapshot } from '../histogram.js';
import type { TcpStats } from '../transport/tcp.js';
import { readiness, type StatusLike } from './health.js';

/** The transport counters metrics use (what `transportStats` of src/api/index.ts reports). */
export type TransportCounters = TcpStats;

/** What the metrics are made from: the server's backend calls and counters. */
export interface MetricsSource {
  node: string;
  backend: {
    status(id: string): Promise<unknown>;
    transportStats?(id: string): Partial<TransportCounters> | null | Promise<Partial<TransportCounters> | null>;
  };
  /** `method code` → count, kv requests. */
  ops: Map<string, number>;
  /** `method code` → count, every request. */
  requests: Map<string, number>;
  /** The readiness bound (see health.ts), for `raft_ready`. */
  readyMaxLag: number;
}

/** The fields of `status()` metrics read; every one may be absent (a stub backend). */
interface NodeStatusLike extends StatusLike {
  term?: number;
  lastIndex?: number;
  snapshotIndex?: number;
  restarts?: { log?: number; consensus?: number };
  droppedMessages?: number;
  logDroppedMessages?: number;
  droppedReplies?: number;
  wiredPeers?: string[];
  livePeers?: string[];
  metrics?: Partial<{
    opSeconds: HistogramSnapshot;
    persistSeconds: HistogramSnapshot;
    applySeconds: HistogramSnapshot;
    leaderChanges: number;
    proposalsRefused: Record<string, number>;
    snapshotsTaken: number;
    snapshotsInstalled: number;
  }>;
}

const ROLES = ['follower', 'candidate', 'leader'] as const;

function label(v: string): string {
  return v.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n');
}

/** Lines of a text exposition, one metric family at a time. */
class Exposition {
  readonly lines: string[] = [];
  constructor(private readonly node: string) {}

  /** `{node="..",extra}` */
  labels(extra = ''): string {
    return `{node="${label(this.node)}"${extra === '' ? '' : `,${extra}`}}`;
  }

  family(name: string, type: 'gauge' | 'counter' | 'histogram', help: string, samples: [labels: string, value: number][]): void {
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
    for (const [l, v] of samples) this.lines.push(`${name}${l} ${v}`);
  }

  /** One sample labelled by node only; left out when `v` is not a number. */
  single(name: string, type: 'gauge' | 'counter', help: string, v: unknown): void {
    if (typeof v === 'number' && Number.isFinite(v)) this.family(name, type, help, [[this.labels(), v]]);
  }

  histogram(name: string, help: string, h: HistogramSnapshot | undefined): void {
    if (!h || !Array.isArray(h.bounds) || !Array.isArray(h.cumulative)) return;
    this.lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} histogram`);
    h.bounds.forEach((bound, i) => this.lines.push(`${name}_bucket${this.labels(`le="${bound}"`)} ${h.cumulative[i] ?? 0}`));
    this.lines.push(`${name}_bucket${this.labels('le="+Inf"')} ${h.count}`, `${name}_sum${this.labels()} ${h.sum}`, `${name}_count${this.labels()} ${h.count}`);
  }
}

async function transportCounters(s: MetricsSource): Promise<Partial<TransportCounters> | null> {
  const fn = s.backend.transportStats;
  if (typeof fn !== 'function') return null;
  try {
    const st = await fn(s.node);
    return st && typeof st === 'object' ? st : null;
  } catch {
    return null;
  }
}

export async function renderMetrics(s: MetricsSource): Promise<string> {
  const x = new Exposition(s.node);
  let st: NodeStatusLike | null = null;
  try {
    st = (await s.backend.status(s.node)) as NodeStatusLike;
  } catch {
    st = null;
  }
  x.family('raft_node_up', 'gauge', 'Whether the peer this server fronts is running (1) or not (0).', [[x.labels(), st ? 1 : 0]]);
  if (st) raftMetrics(x, st, s.readyMaxLag);
  const counters = (m: Map<string, number>) =>
    [...m].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]): [string, number] => {
      const [method, code] = k.split(' ');
      return [x.labels(`method="${method}",code="${code}"`), v];
    });
  x.family('raft_ops_total', 'counter', 'kv requests (/kv/...) this HTTP server answered, by method and status code.', counters(s.ops));
  x.family('raft_http_requests_total', 'counter', 'Requests this HTTP server answered, by method and status code.', counters(s.requests));
  const t = await transportCounters(s);
  if (t) transportMetrics(x, t);
  await processMetrics(x);
  return x.lines.join('\n') + '\n';
}

function raftMetrics(x: Exposition, st: NodeStatusLike, readyMaxLag: number): void {
  x.single('raft_term', 'gauge', 'Current term.', st.term);
  x.single('raft_commit_index', 'gauge', 'Highest log index known to be committed.', st.commitIndex);
  x.single('raft_applied_index', 'gauge', 'Highest log index applied to the state machine.', st.lastApplied);
  x.single('raft_last_log_index', 'gauge', 'Index of the last entry in the log.', st.lastIndex);
  x.single('raft_snapshot_index', 'gauge', 'Last index covered by the snapshot.', st.snapshotIndex);
  x.family('raft_role', 'gauge', "The peer's role: 1 for the current one.", ROLES.map((role) => [x.labels(`role="${role}"`), st.role === role ? 1 : 0]));
  x.single('raft_is_leader', 'gauge', 'Whether the peer leads (1) or not (0).', st.role === 'leader' ? 1 : 0);
  x.single('raft_has_leader', 'gauge', 'Whether the peer knows a leader (1) or not (0).', typeof st.leader === 'string' ? 1 : 0);
  x.family('raft_alarm', 'gauge', 'Alarms raised by this peer: 1 while it is in the alarm (nospace: its disk is full, new writes are refused).', [
    [x.labels('kind="nospace"'), st.alarm?.kind === 'nospace' ? 1 : 0],
  ]);
  x.single('raft_ready', 'gauge', 'Whether GET /ready answers 200 (1) or 503 (0).', readiness(st, readyMaxLag).ready ? 1 : 0);
  if (Array.isArray(st.wiredPeers)) x.single('raft_wired_peers', 'gauge', 'Peers the consensus actor has a message port to (for a networked node: every peer the switchboard routes for).', st.wiredPeers.length);
  if (Array.isArray(st.livePeers)) x.single('raft_live_peers', 'gauge', 'Peers with a live link now (a wired port in this process, or an established TCP connection).', st.livePeers.length);
  x.family('raft_restarts_total', 'counter', 'Restarts of each actor of the peer by its supervisor.', [
    [x.labels('actor="consensus"'), st.restarts?.consensus ?? 0],
    [x.labels('actor="log"'), st.restarts?.log ?? 0],
  ]);
  x.family('raft_dropped_messages_total', 'counter', 'Malformed messages dropped.', [
    [x.labels('where="consensus"'), st.droppedMessages ?? 0],
    [x.labels('where="log"'), st.logDroppedMessages ?? 0],
    [x.labels('where="client"'), st.droppedReplies ?? 0],
  ]);
  const m = st.metrics;
  if (!m) return;
  x.histogram('raft_op_duration_seconds', 'op() on this node, from the call to its result (committed and applied), for ops that succeeded.', m.opSeconds);
  x.histogram('raft_log_persist_duration_seconds', 'Log writes, from issue to durable (LMDB commit and fsync, group commit included), timed by the log actor.', m.persistSeconds);
  x.histogram('raft_apply_duration_seconds', 'Applying one batch of committed entries to the state machine, timed by the consensus actor.', m.applySeconds);
  x.single('raft_leader_changes_total', 'counter', 'Times this peer learned of a leader other than the last one it knew (since its consensus actor started).', m.leaderChanges);
  const refused = Object.entries(m.proposalsRefused ?? {}).sort(([a], [b]) => (a < b ? -1 : 1));
  x.family('raft_proposals_refused_total', 'counter', 'Proposals (ops, membership changes, transfers) the core refused, by error code (NOT_LEADER, LEADERSHIP_LOST, ...).', refused.map(([code, n]) => [x.labels(`code="${label(code)}"`), n]));
  x.single('raft_snapshots_taken_total', 'counter', 'Snapshots this peer took of its state machine.', m.snapshotsTaken);
  x.single('raft_snapshots_installed_total', 'counter', 'Snapshots this peer installed from a leader.', m.snapshotsInstalled);
}

function transportMetrics(x: Exposition, t: Partial<TransportCounters>): void {
  x.single('raft_bytes_sent_total', 'counter', 'Bytes written to peer connections (TCP transport).', t.bytesOut);
  x.single('raft_bytes_received_total', 'counter', 'Bytes read from peer connections (TCP transport).', t.bytesIn);
  x.single('raft_frames_sent_total', 'counter', 'Frames sent to peers (TCP transport).', t.framesOut);
  x.single('raft_frames_received_total', 'counter', 'Frames received from peers (TCP transport).', t.framesIn);
  x.single('raft_transport_dropped_frames_total', 'counter', 'Frames dropped: queue full, or the actor down.', t.dropped);
  x.single('raft_transport_bad_frames_total', 'counter', 'Peer connections closed for a bad frame.', t.badFrames);
  x.single('raft_transport_refused_total', 'counter', 'Peer connections refused (other cluster, unknown peer, TLS).', t.refused);
  x.single('raft_transport_connects_total', 'counter', 'Peer connections established.', t.connects);
  x.single('raft_transport_reconnects_total', 'counter', 'Peer connections re-established after a loss.', t.reconnects);
  if (Array.isArray(t.connectedPeers)) x.single('raft_connected_peers', 'gauge', 'Peers with an established TCP connection now.', t.connectedPeers.length);
}

// ---------------------------------------------------------------------------------------------
// This process (the names Prometheus client libraries use)

/** Open file descriptors (Linux: /proc/self/fd, less the one reading it); null elsewhere. */
function openFds(): number | null {
  try {
    return fs.readdirSync('/proc/self/fd').length - 1;
  } catch {
    return null;
  }
}

/** The soft limit on open files (Linux: /proc/self/limits); null elsewhere or unlimited. */
function maxFds(): number | null {
  try {
    const m = /^Max open files\s+(\d+)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/** How late a callback queued now runs: the event loop's lag at this moment. */
function eventLoopLagSeconds(): Promise<number> {
  const start = process.hrtime.bigint();
  return new Promise((resolve) => setImmediate(() => resolve(Number(process.hrtime.bigint() - start) / 1e9)));
}

async function processMetrics(x: Exposition): Promise<void> {
  const cpu = process.cpuUsage();
  const mem = process.memoryUsage();
  x.single('process_cpu_user_seconds_total', 'counter', 'User CPU time of this process.', cpu.user / 1e6);
  x.single('process_cpu_system_seconds_total', 'counter', 'System CPU time of this process.', cpu.system / 1e6);
  x.single('process_cpu_seconds_total', 'counter', 'User and system CPU time of this process.', (cpu.user + cpu.system) / 1e6);
  x.single('process_resident_memory_bytes', 'gauge', 'Resident memory (RSS) of this process.', mem.rss);
  x.single('process_start_time_seconds', 'gauge', 'When this process started, in seconds since the Unix epoch.', Math.round(performance.timeOrigin / 1000));
  x.single('process_open_fds', 'gauge', 'Open file descriptors of this process.', openFds());
  x.single('process_max_fds', 'gauge', 'Most file descriptors this process may open.', maxFds());
  x.single('nodejs_heap_size_total_bytes', 'gauge', "Size of the main thread's V8 heap.", mem.heapTotal);
  x.single('nodejs_heap_size_used_bytes', 'gauge', "Used part of the main thread's V8 heap.", mem.heapUsed);
  x.single('nodejs_external_memory_bytes', 'gauge', 'Memory of C++ objects bound to JavaScript objects (buffers included).', mem.external);
  x.single('nodejs_eventloop_lag_seconds', 'gauge', "How late the main thread's event loop ran a callback queued at this scrape.", await eventLoopLagSeconds());
}
