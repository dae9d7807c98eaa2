/**
 * The public API (rafter.erl's role), the front room: start supervised peers in this
 * process, form a cluster, submit commands, read, change the membership, read status, stop.
 *
 *   await startNode('a', { stateMachine: 'kv' });   // likewise 'b', 'c'
 *   await setConfig('a', ['a', 'b', 'c']);           // the first call bootstraps the cluster
 *   await op('a', { type: 'set', key: 'k', value: 1 });
 *   await read('a', { type: 'get', key: 'k' });      // linearizable, without a log entry (thesis §6.4)
 *   await startNode('d', { stateMachine: 'kv' });
 *   await setConfig('a', ['a', 'b', 'c', 'd']);      // later calls change the membership (§6)
 *   await transferLeadership('a', 'd');              // thesis §3.10
 *
 * Ops travel as msgpack over a port of their own (every op of one event-loop turn in one
 * message, see node-handle.ts); status and stop use the comlink control plane. The rooms
 * behind it: registry.ts (the peers of this process), node-handle.ts (one peer),
 * routing.ts (redirects and retries), options.ts, nemesis.ts (fault injection), events.ts.
 */
import type { ConsensusControl, ConsensusMetrics, PeerStatus } from '../control.js';
import { Histogram, secondsSince, type HistogramSnapshot } from '../histogram.js';
import fs from 'node:fs';
import { ClientSession } from '../client-session.js';
import { ConfigError, fromWire, isRaftError, NodeExistsError, SessionExpiredError, TransferFailedError, withOutcome } from '../errors.js';
import { checkCommand, codec, encodeCommand, encodeLogCommand } from '../codec.js';
import { type AddressBook, type SessionCommand, type WireError } from '../messages.js';
import { lockDataDir } from '../log/dir-lock.js';
import { checkMemberAddress, waitingMessage } from './members.js';
import { TcpSwitchboard, type TcpStats } from '../transport/tcp.js';
import { currentFaults } from './nemesis.js';
import { NodeHandle } from './node-handle.js';
import {
  checkHttpUrl,
  DEFAULT_ATTEMPT_TIMEOUT_MS,
  DEFAULT_CONFIG_TIMEOUT_MS,
  DEFAULT_OP_TIMEOUT_MS,
  peerSpec,
  sessionTimeoutMs,
  switchboardOptions,
  validateId,
  validateNodeOptions,
  type ConfigOptions,
  type NodeOptions,
  type OpOptions,
  type ReadOptions,
  type WriteOptions,
} from './options.js';
import { forgetFailed, nodes, nodeSupervisor, retire, running, stopped, underConfigLock } from './registry.js';
import { sleep, submitWithRetry, type RetryPolicy } from './routing.js';
import { positiveInt } from '../validate.js';

export { events, type RaftEvents } from './events.js';
export { addMember, listMembers, removeMember, type MemberAddressInput, type MemberInfo, type MembersView } from './members.js';
export { nemesis } from './nemesis.js';
export type { ConfigOptions, NetworkOptions, NodeOptions, OpOptions, ReadOptions, WriteOptions } from './options.js';

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
  /**
   * While the peer has no configuration (blank, not bootstrapped, not yet added): that it waits
   * to be added to a cluster, and how to add it or form one. Null once it has a configuration.
   */
  waiting: string | null;
  /**
   * Peers with a live link now: a peer in this process whose port is wired, or a remote peer
   * (options.network) whose TCP connection is established. Compare `wiredPeers`.
   */
  livePeers: string[];
  /** @deprecated the same as `wiredPeers` (ports wired, not live connections): use `wiredPeers` or `livePeers`. */
  connectedPeers: string[];
  metrics: NodeMetrics;
}

/** The consensus actor's metrics, with those timed by the log actor and by this API. */
export interface NodeMetrics extends ConsensusMetrics {
  /** `op()` on this node, from the call to its result, for ops that succeeded. */
  opSeconds: HistogramSnapshot;
  /** The log actor's writes, from issue to durable (LMDB commit and fsync). */
  persistSeconds: HistogramSnapshot;
}

/** Latency of the ops that succeeded, per node id (since its `startNode`). */
const opLatency = new Map<string, Histogram>();

/**
 * Start a supervised peer: its log actor (LMDB under `dataDir`), then its consensus actor.
 * Rejects with DataDirLockedError, having changed nothing, when `dataDir` has another owner.
 */
export async function startNode(id: string, options: NodeOptions): Promise<void> {
  validateId(id);
  validateNodeOptions(id, options);
  if (nodes.has(id)) throw new NodeExistsError(id);
  stopped.delete(id);

  const spec = peerSpec(id, options, currentFaults);
  const handle = new NodeHandle(id, new ClientSession(sessionTimeoutMs(options)), forgetFailed);
  const newDir = !fs.existsSync(spec.dataDir);
  handle.dataDirLock = lockDataDir(spec.dataDir, id); // before LMDB opens it; refused: nothing changed
  nodes.set(id, handle);
  try {
    const network = options.network;
    if (network !== undefined) {
      handle.network = network;
      handle.remotePeers = new Set(Object.keys(network.peers));
      handle.transport = await TcpSwitchboard.start(switchboardOptions(id, network));
      spec.switchboard = handle.transport;
    }
    handle.supervisor = await nodeSupervisor.startPeer(spec, handle.hooks());
  } catch (err) {
    if (nodes.get(id) === handle) nodes.delete(id);
    handle.state = 'stopped';
    await handle.transport?.close();
    handle.dataDirLock.release();
    // A start refused before LMDB wrote anything (e.g. insecure peers) leaves no directory behind.
    if (newDir) removeIfEmpty(spec.dataDir);
    throw err;
  }
  handle.state = 'running';
  opLatency.set(id, new Histogram());
}

/** Remove `dir` if nothing is in it (a directory that holds anything stays as it is). */
function removeIfEmpty(dir: string): void {
  try {
    fs.rmdirSync(dir);
  } catch {
    // not empty, or already gone
  }
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

/**
 * The peers a networked node's transport links to now, each with the address it dials (null:
 * reached only by the connection that peer made): the configuration's members, as learned
 * from the log, and first contacts not yet in a configuration. Null as for `transportStats`.
 */
export function transportPeers(id: string): Record<string, string | null> | null {
  const handle = nodes.get(id);
  return handle && handle.state === 'running' && handle.transport ? handle.transport.peerAddresses() : null;
}

/** A peer started here, or a remote peer of some networked node here, or one whose address is known. */
function knownPeer(handle: NodeHandle, peer: string, addresses: AddressBook = {}): boolean {
  return nodes.has(peer) || handle.remotePeers.has(peer) || Object.hasOwn(addresses, peer);
}

/**
 * The addresses a networked node's configuration entries carry for `peers`: this node's own
 * (advertised, or where it listens), its `network.peers`, then those of the configuration in
 * force, then the caller's. Empty for a node that is not networked.
 */
function configAddresses(handle: NodeHandle, inForce: AddressBook, given: ConfigOptions['addresses']): AddressBook {
  const book: AddressBook = {};
  const network = handle.network;
  if (network && handle.transport) {
    for (const [peer, address] of Object.entries(network.peers)) book[peer] = { peer: address };
    const self = network.advertise ?? handle.transport.address();
    const dialable = !/^(0\.0\.0\.0|\[::\]):/.test(self);
    if (dialable) book[handle.id] = { peer: self, ...(network.advertiseHttp ? { http: checkHttpUrl(network.advertiseHttp, 'advertiseHttp') } : {}) };
  }
  Object.assign(book, inForce);
  for (const [peer, address] of Object.entries(given ?? {})) book[peer] = checkMemberAddress(address);
  return book;
}

/**
 * The voters of the configuration `s` reports (both sides of a joint one). Learners are not
 * among them: a peer still catching up is new, and must be running to finish.
 */
function configuredPeers(s: PeerStatus): Set<string> {
  const c = s.config;
  const inConfig = c === null ? [] : c.kind === 'joint' ? [...c.old, ...c.new] : c.voters;
  return new Set([...s.peers, ...inConfig]);
}

/**
 * Set the cluster's voters (rafter's set_config). A peer new to the configuration must be
 * started in this process or, for a networked node (`options.network`), be in its
 * `network.peers` map or in `options.addresses`, since it has to catch up; a peer the
 * configuration already holds may be down (removing a dead voter works while it is dead) or in
 * another process. A bootstrap needs every one of `peers` started here, in `network.peers` or
 * in `options.addresses`. A networked node's configuration entries carry the members'
 * addresses (see ConfigOptions), so every peer learns them from the log. To add or remove one
 * member of a networked cluster, `addMember`/`removeMember` are simpler.
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
export function setConfig(id: string, peers: string[], options: ConfigOptions = {}): Promise<void> {
  return underConfigLock(() => setConfigNow(id, peers, options));
}

async function setConfigNow(id: string, peers: string[], options: ConfigOptions): Promise<void> {
  const handle = running(id);
  const timeoutMs = positiveInt(options.timeoutMs, 'options.timeoutMs', DEFAULT_CONFIG_TIMEOUT_MS);
  if (!Array.isArray(peers) || peers.length === 0) throw new ConfigError('setConfig needs a non-empty list of peer ids');
  for (const p of peers) validateId(p, 'peer id');
  const duplicate = peers.find((p, i) => peers.indexOf(p) !== i);
  if (duplicate !== undefined) throw new ConfigError(`peer '${duplicate}' is listed twice`);
  const self = await status(id);
  const addresses = configAddresses(handle, self.addresses, options.addresses);
  const configured = configuredPeers(self);
  const unknown = peers.filter((p) => !knownPeer(handle, p, addresses) && !configured.has(p));
  if (unknown.length > 0) throw new ConfigError(`unknown peer(s): ${unknown.join(', ')} (start them first, or give their addresses)`);
  const carried = pick(addresses, peers);

  // A peer that has heard a leader belongs to a running cluster even while its log is still
  // empty (a new follower whose first AppendEntries was a probe that it refused).
  if (self.peers.length > 0 || self.lastIndex > 0 || self.leader !== null) {
    // A running cluster: a membership change, decided by its leader.
    await submitWithRetry(handle, { kind: 'config', peers: [...peers], ...(carried ? { addresses: carried } : {}) }, timeoutMs);
    return;
  }
  if (!peers.includes(id)) throw new ConfigError(`setConfig must be called on one of the peers; '${id}' is not in the list`);
  // Remote peers (options.network) cannot be asked: only the peers in this process are checked.
  const statuses = await Promise.all(peers.filter((p) => nodes.has(p)).map((p) => status(p)));
  // Bootstrap only a cluster whose peers are all blank: a peer in another cluster would
  // let two configurations elect two leaders.
  for (const s of statuses) {
    if (s.peers.length > 0 || s.lastIndex > 0) {
      throw new ConfigError(`peer '${s.id}' already belongs to a cluster (${s.peers.join(', ') || 'no configuration yet'})`);
    }
  }
  const refusal: WireError | null | 'change' = await handle.withControl((c) => c.setConfig(peers, carried) as Promise<WireError | null | 'change'>);
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
    // A member added over the wire is known from the configuration, not from this node's flags.
    const member = knownPeer(first, target) || (await first.withControl((c) => c.status())).peers.includes(target);
    if (!member) throw new TransferFailedError(`unknown peer '${target}'`, 'not-applied');
  }
  const timeoutMs = positiveInt(options.timeoutMs, 'options.timeoutMs', DEFAULT_OP_TIMEOUT_MS);
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
 * restarted actor, a stopped peer) carries the same, so the cluster applies it at most once
 * and answers a repeat with the saved result. `{ idempotent: true }` opts out, for commands
 * safe to repeat. `{ via }` places the client beside one peer (see ReadOptions).
 *
 * Every error says the op's outcome (`err.outcome`, docs/api.md has the table): 'not-applied'
 * (NotLeaderError, a refusal, a TimeoutError or NodeStoppedError before any try was sent) or
 * 'unknown' (a TimeoutError once some try was in doubt: applied at most once;
 * SessionExpiredError when the session expired while the op was in doubt: never applied from
 * then on). It does not reject with LeadershipLostError or ActorRestartedError: those tries
 * are sent again; NodeStoppedError only when no peer of this process is left to send it to.
 */
export async function op(id: string, command: unknown, options: WriteOptions = {}): Promise<unknown> {
  const started = performance.now();
  const result = await opNow(id, command, options);
  opLatency.get(id)?.observe(secondsSince(started));
  return result;
}

async function opNow(id: string, command: unknown, options: WriteOptions): Promise<unknown> {
  const first = running(id);
  const timeoutMs = positiveInt(options.timeoutMs, 'options.timeoutMs', DEFAULT_OP_TIMEOUT_MS);
  const attemptMs = positiveInt(options.attemptTimeoutMs, 'options.attemptTimeoutMs', DEFAULT_ATTEMPT_TIMEOUT_MS);
  if (options.idempotent !== undefined && typeof options.idempotent !== 'boolean') {
    throw new TypeError(`options.idempotent must be a boolean, got ${JSON.stringify(options.idempotent)}`);
  }
  const via = viaOption(options);
  // Registrations and idempotent commands may be applied twice: retried without a care.
  const carefree: RetryPolicy = { attemptMs, onUnknown: () => undefined };
  if (options.idempotent === true) {
    const data = encodeLogCommand({ type: 'idempotent', command });
    return submitWithRetry(first, { kind: 'op', data }, timeoutMs, { retry: carefree, via });
  }
  // Bad input fails before a session is opened.
  checkCommand(command);
  const deadline = Date.now() + timeoutMs;
  const session = first.session;
  const register = (data: Uint8Array) =>
    submitWithRetry(first, { kind: 'op', data }, Math.max(deadline - Date.now(), 1), { retry: carefree, via });
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
    const ticket = await session.begin(register).catch((err: unknown) => {
      // No session could be opened: the op itself was never sent (its registration may have been).
      throw isRaftError(err) ? withOutcome(err, 'not-applied') : err;
    });
    try {
      const envelope: SessionCommand = { type: 'op', client: ticket.client, seq: ticket.seq, ack: session.ack(), command };
      const data = codec.encode(envelope); // checked above
      return await submitWithRetry(first, { kind: 'op', data }, Math.max(deadline - Date.now(), 1), { retry: policy, via });
    } catch (err) {
      if (!(err instanceof SessionExpiredError)) throw err;
      session.expired(ticket.client);
      // Never applied under the expired session, nor anywhere else: send it under a new one.
      if (!inDoubt && Date.now() < deadline) continue;
      throw withOutcome(err, inDoubt ? 'unknown' : 'not-applied');
    } finally {
      session.end(ticket);
    }
  }
}

/** `options.via`, checked: a peer id, or undefined. */
function viaOption(options: ReadOptions): string | undefined {
  if (options.via !== undefined) validateId(options.via, 'options.via');
  return options.via;
}

/**
 * A linearizable read of the state machine (its `query`, e.g. kv `{ type: 'get', key }`)
 * without writing to the log, by ReadIndex (thesis §6.4): the leader confirms it still leads
 * with one heartbeat round (concurrent reads share it) and answers once it has applied the
 * commit index it recorded; a follower asks the leader for the index and answers from its
 * own state once it has applied it. As strong as `op(id, get)`, much cheaper. `{ via }` places
 * the client beside one peer (see ReadOptions).
 *
 * Errors: NotLeaderError (no leader found within the timeout), TimeoutError, ActorRestartedError,
 * NodeStoppedError, UnknownNodeError, InvalidCommandError or StateMachineError (the query was
 * refused). A read is not retried after such an error. It changes nothing, whatever its error,
 * so it is always safe to retry; its `outcome` only says whether a peer had taken it up
 * ('unknown') or not ('not-applied').
 */
export async function read(id: string, query: unknown, options: ReadOptions = {}): Promise<unknown> {
  const first = running(id);
  const timeoutMs = positiveInt(options.timeoutMs, 'options.timeoutMs', DEFAULT_OP_TIMEOUT_MS);
  const via = viaOption(options);
  return submitWithRetry(first, { kind: 'read', data: encodeCommand(query) }, timeoutMs, { via });
}

export async function status(id: string): Promise<NodeStatus> {
  const handle = running(id);
  const s = await handle.withControl((c) => c.status());
  const restarts = handle.supervisor.restarts;
  const tcpConnected = new Set(handle.transport?.stats().connectedPeers ?? []);
  return {
    ...s,
    livePeers: s.wiredPeers.filter((p) => !handle.remotePeers.has(p) || tcpConnected.has(p)),
    connectedPeers: s.wiredPeers,
    metrics: {
      ...s.metrics,
      opSeconds: (opLatency.get(id) ?? new Histogram()).snapshot(),
      persistSeconds: handle.supervisor.logPersistSeconds ?? new Histogram().snapshot(),
    },
    restarts: { log: restarts.get('log') ?? 0, consensus: restarts.get('consensus') ?? 0 },
    client: { session: handle.session.id, ...handle.session.stats },
    logDroppedMessages: handle.supervisor.logDroppedMessages,
    droppedReplies: handle.droppedReplies,
    waiting: s.config === null ? waitingMessage(id, handle.network?.advertise ?? handle.transport?.address() ?? null, handle.network?.advertiseHttp ?? null) : null,
  };
}

type QueryAnswer = ReturnType<ConsensusControl['query']>;

/**
 * Read from one peer's applied state without going through the log (the state machine's
 * `query`, e.g. kv `{ type: 'get', key }`). Serializable, not linearizable: a follower may
 * lag the leader, and a deposed leader may not know it yet. For a linearizable read use
 * `read(id, q)`.
 */
export async function query(id: string, q: unknown): Promise<unknown> {
  const handle = running(id);
  const answer = await handle.withControl((c) => c.query(q) as Promise<QueryAnswer>);
  if (!answer.ok) throw fromWire(answer.error);
  return answer.result;
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

/** The entries of `book` for `ids`, or undefined when it has none of them. */
function pick(book: AddressBook, ids: readonly string[]): AddressBook | undefined {
  const out: AddressBook = {};
  for (const id of ids) if (Object.hasOwn(book, id)) out[id] = book[id]!;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** Ids of the peers running in this process. */
export function runningNodes(): string[] {
  return [...nodes.values()].filter((h) => h.state === 'running').map((h) => h.id);
}
