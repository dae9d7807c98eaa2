/**
 * The consensus actor: a worker thread that runs one peer's pure core and carries out its
 * effects. It owns the timer, the port to its log actor, one port per other peer and the
 * client port; every message on those ports is msgpack (the protocols in src/messages.ts, the codec in src/codec.ts). Committed entries go
 * through the peer's replicated state machine (src/state-machines/replicated.ts: the user's
 * machine, the session table, the applied digest and snapshots).
 * Control calls (status, setConfig, connectPeer, stop) arrive over comlink.
 *
 * No Raft rule lives here: decode → step → execute effects.
 */
import { performance } from 'node:perf_hooks';
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { exposeControl, type Alarm, type ConsensusActorData, type ConsensusControl, type ConsensusNotice, type PeerStatus, type SnapshotNow } from '../src/control.js';
import {
  configDecision,
  createCore,
  DEFAULT_CORE_OPTIONS,
  RaftLog,
  status,
  step,
  validateCoreOptions,
  type CoreState,
  type Effect,
  type Input,
} from '../src/core/index.js';
import { toWire } from '../src/errors.js';
import { FaultyLinks, type FaultPlan } from '../src/faults.js';
import { Histogram, secondsSince } from '../src/histogram.js';
import { decodeAll, decodeCommand, postEncoded } from '../src/codec.js';
import {
  isClientRequest,
  isLogReply,
  isPeerMessage,
  type AddressBook,
  type Entry,
  type LogReady,
  type LogReply,
  type OpOutcome,
  type PeerMessage,
  type ReadResult,
  type Snapshot,
  type WireError,
} from '../src/messages.js';
import { loadStateMachine } from '../src/state-machines/index.js';
import { ReplicatedStateMachine, type Outcome } from '../src/state-machines/replicated.js';
import { Batcher } from '../src/transport/batcher.js';
import { assertNever } from '../src/validate.js';

const data = workerData as ConsensusActorData;
const { id, logPort, clientPort, controlPort } = data;
const READ_CHUNK = 8192;

let core: CoreState;
/** The user's state machine behind the client sessions (thesis §6.3), with the applied digest. */
let replicated: ReplicatedStateMachine;
let ticker: NodeJS.Timeout | undefined;
let stopped = false;
let droppedMessages = 0;
const peers = new Map<string, MessagePort>();
let links = new FaultyLinks(data.faults);
const delayed = new Set<NodeJS.Timeout>();
let outcomes: OpOutcome[] = [];
/** Everything sent to one port in one turn leaves as one message; outcomes go with it. */
const batcher = new Batcher(() => flushOutcomes());
/** Queries of reads in progress, by request id, until the core releases them. */
const queries = new Map<number, Uint8Array>();
/** For metrics (PeerStatus.metrics): counted and timed here, read by `status()`. */
const applySeconds = new Histogram();
const proposalsRefused: Record<string, number> = {};
let lastKnownLeader: string | null = null;
let leaderChanges = 0;
let snapshotsTaken = 0;
let snapshotsInstalled = 0;
/** Raised while the log actor cannot make writes durable for lack of space: a leader refuses new writes. */
let alarm: Alarm | null = null;

// ---------------------------------------------------------------------------------------------
// Log actor port: recovery reads first, then persist acknowledgements.

/** The log actor's LogReady, kept until recovery asks for it (loading the state machine may take longer). */
let logReady: LogReady | null = null;
let onLogReady: ((m: LogReady) => void) | null = null;
const pendingReads = new Map<number, (r: ReadResult) => void>();
let nextReadId = 1;

logPort.on('message', (bytes: unknown) => {
  const { messages, dropped } = decodeAll(bytes, isLogReply);
  droppedMessages += dropped;
  for (const m of messages) onLogReply(m);
});

function onLogReply(m: LogReply): void {
  switch (m.type) {
    case 'logReady':
      if (onLogReady) onLogReady(m);
      else logReady = m;
      onLogReady = null;
      return;
    case 'readResult':
      pendingReads.get(m.id)?.(m);
      pendingReads.delete(m.id);
      return;
    case 'persisted':
      // A write is durable again: the disk has room (see "Disk full" in actors/log-actor.ts).
      if (alarm !== null) alarm = null;
      return run({ type: 'persisted', seq: m.seq });
    case 'logFailure':
      // Either the log actor holds writes for lack of space and retries them (the alarm,
      // cleared by the next `persisted`), or it crashes itself after this and the supervisor
      // restarts both of us. The core hears nothing: it gets no `persisted` for what is held,
      // so it neither acknowledges nor counts those entries (§5.1, Figure 2).
      alarm = { kind: 'nospace', message: m.message, since: alarm?.since ?? Date.now() };
      return;
  }
}

function readEntries(from: number, to: number): Promise<Entry[]> {
  const readId = nextReadId++;
  return new Promise((resolve) => {
    pendingReads.set(readId, (r) => resolve(r.entries));
    postEncoded(logPort, { type: 'read', id: readId, from, to });
  });
}

/**
 * Read the stored log back in chunks. Only the core's memory window of entries is kept (the
 * log keeps every term and configuration); the core fetches older entries when it needs them.
 */
async function recover(): Promise<CoreState> {
  const ready = logReady ?? (await new Promise<LogReady>((resolve) => (onLogReady = resolve)));
  logReady = null;
  const options = validateCoreOptions({ ...DEFAULT_CORE_OPTIONS, ...data.core });
  // A state machine that cannot snapshot never compacts its log (§7).
  if (!replicated.canSnapshot) options.snapshotThreshold = 0;
  const snapshot = ready.snapshot ?? null;
  // The snapshot is the applied state up to its index; the log continues after it.
  if (snapshot !== null) replicated.restore(snapshot);
  const log = new RaftLog([], snapshot?.meta);
  for (let from = ready.firstIndex; from <= ready.lastIndex; from += READ_CHUNK) {
    for (const e of await readEntries(from, Math.min(from + READ_CHUNK - 1, ready.lastIndex))) log.push(e);
    log.evict(log.lastIndex, options.maxCachedEntries, options.maxCachedBytes);
  }
  return createCore({ id, seed: data.seed, options, term: ready.term, votedFor: ready.votedFor, log, snapshot });
}

// ---------------------------------------------------------------------------------------------
// Running the core

function run(input: Input): void {
  const result = step(core, input);
  core = result.state;
  for (const effect of result.effects) execute(effect);
  if (outcomes.length > 0) batcher.schedule();
  noticeMembers();
}

/** What the last members notice was drawn from: the latest and committed config entries, the change. */
let membersSeen: { latest: unknown; committed: unknown; change: unknown; phase: unknown } | null = null;

/**
 * Tell the supervisor (and so the transport) which peers to reach and where, whenever the
 * configurations in force or a leader's learners change (cheap identity checks per step).
 */
function noticeMembers(): void {
  const latest = core.log.lastConfig();
  const committed = core.log.lastConfig(core.commitIndex);
  const change = core.configChange;
  const seen = membersSeen;
  if (seen && seen.latest === latest && seen.committed === committed && seen.change === change && seen.phase === change?.phase) return;
  membersSeen = { latest, committed, change, phase: change?.phase };
  const s = status(core);
  notify({ type: 'members', configured: latest !== undefined, members: s.members, addresses: s.addresses });
}

function execute(e: Effect): void {
  switch (e.type) {
    case 'persist':
      batcher.send(logPort, e.write);
      return;
    case 'send':
      return sendToPeer(e.message);
    case 'apply':
      return applyEntries(e.entries, e.requestIds);
    case 'clientError': {
      const error: WireError = { code: e.code, message: e.message ?? clientErrorMessage(e.code, e.leader), leader: e.leader };
      for (const opId of e.ids) {
        if (!queries.delete(opId)) proposalsRefused[e.code] = (proposalsRefused[e.code] ?? 0) + 1;
        outcomes.push({ id: opId, ok: false, result: null, error });
      }
      return;
    }
    case 'readReady':
      return answerReads(e.ids);
    case 'fetch': {
      const reason = e.reason;
      void readEntries(e.from, e.to).then((entries) => {
        if (!stopped) run({ type: 'fetched', reason, entries });
      });
      return;
    }
    case 'roleChanged':
      if (e.leader !== null && e.leader !== lastKnownLeader) {
        if (lastKnownLeader !== null) leaderChanges++;
        lastKnownLeader = e.leader;
      }
      notify({ type: 'role', role: e.role, term: e.term, leader: e.leader });
      return;
    case 'adminDone':
      outcomes.push({ id: e.id, ok: true, result: e.result ?? null, error: null });
      return;
    case 'takeSnapshot': {
      snapshotsTaken++;
      // The machine has applied exactly e.index now; its answer goes back in a step of its own.
      const snapshotTaken: Input = { type: 'snapshotTaken', index: e.index, data: replicated.snapshot(), digest: replicated.appliedDigest };
      queueMicrotask(() => {
        if (!stopped) run(snapshotTaken);
      });
      return;
    }
    case 'restore':
      snapshotsInstalled++;
      return replicated.restore(e.snapshot);
    default:
      assertNever(e, 'effect');
  }
}

/** Send to a peer through the injected link faults, if any (see src/faults.ts). */
function sendToPeer(message: PeerMessage): void {
  const port = peers.get(message.to);
  if (!port) return; // not connected: as good as lost
  if (!links.active) return batcher.send(port, message);
  for (const delay of links.deliveries(id, message.to)) {
    if (delay === 0) {
      batcher.send(port, message);
      continue;
    }
    const timer = setTimeout(() => {
      delayed.delete(timer);
      const later = peers.get(message.to);
      if (later) batcher.send(later, message);
    }, delay);
    delayed.add(timer);
  }
}

function clientErrorMessage(code: string, leader: string | null): string {
  if (code === 'NOT_LEADER') return leader ? `${id} is not the leader; ${leader} is` : `${id} is not the leader and knows no leader`;
  if (code === 'LEADERSHIP_LOST') return 'leadership was lost before the request took effect; its outcome is unknown';
  return `${id} refused the request (${code})`;
}

/**
 * Committed entries, in order, through the replicated state machine; each outcome goes to the
 * client waiting on its entry, if any. A refused command (bad shape, state machine error,
 * expired session) is refused alike on every peer; the peer keeps running.
 */
function applyEntries(entries: Entry[], requestIds: (number | null)[]): void {
  const started = performance.now();
  const results = replicated.apply(entries);
  applySeconds.observe(secondsSince(started));
  for (let i = 0; i < entries.length; i++) {
    const outcome = results[i];
    const opId = requestIds[i];
    if (outcome && opId !== null && opId !== undefined) outcomes.push(opOutcome(opId, outcome));
  }
}

function opOutcome(id: number, outcome: Outcome): OpOutcome {
  return outcome.ok ? { id, ok: true, result: outcome.result, error: null } : { id, ok: false, result: null, error: outcome.error };
}

/** Answer reads from the state machine's applied state (the core says it is recent enough). */
function answerReads(ids: number[]): void {
  for (const readId of ids) {
    const q = queries.get(readId);
    if (q === undefined) continue;
    queries.delete(readId);
    let query: unknown;
    try {
      query = decodeCommand(q);
    } catch (err) {
      outcomes.push({ id: readId, ok: false, result: null, error: toWire(err, 'STATE_MACHINE_ERROR') });
      continue;
    }
    outcomes.push(opOutcome(readId, replicated.query(query)));
  }
}

/** Every outcome of one step leaves as one message. */
function flushOutcomes(): void {
  if (outcomes.length === 0) return;
  const results = outcomes;
  outcomes = [];
  try {
    postEncoded(clientPort, { type: 'results', results });
  } catch {
    // Some result cannot be encoded: send each one alone, replacing those that fail.
    for (const r of results) {
      try {
        postEncoded(clientPort, { type: 'results', results: [r] });
      } catch (err) {
        const error = toWire(err, 'STATE_MACHINE_ERROR');
        error.message = `result not encodable: ${error.message}`;
        postEncoded(clientPort, { type: 'results', results: [{ id: r.id, ok: false, result: null, error }] });
      }
    }
  }
}

function notify(n: ConsensusNotice): void {
  parentPort?.postMessage(n);
}

/**
 * The core's clock: one tick per `tickMs` of the monotonic clock since start. A late timer
 * (a busy or paused thread) is caught up in one step with the missed ticks, so time as the core
 * counts it never falls behind real time by more than a tick, which lease reads rely on.
 */
let clockStart = 0;
let ticksGiven = 0;
function advanceClock(): void {
  const due = Math.floor((performance.now() - clockStart) / data.tickMs) - ticksGiven;
  if (due <= 0) return;
  ticksGiven += due;
  run({ type: 'tick', ticks: due });
}

// ---------------------------------------------------------------------------------------------
// Ports to peers and clients

function connectPeer(peer: string, port: MessagePort): void {
  peers.get(peer)?.close();
  peers.set(peer, port);
  port.on('message', (bytes: unknown) => {
    const { messages, dropped } = decodeAll(bytes, isPeerMessage);
    droppedMessages += dropped;
    for (const m of messages) {
      if (m.from === peer) run({ type: 'message', message: m });
      else droppedMessages++;
    }
  });
  port.on('close', () => {
    if (peers.get(peer) === port) peers.delete(peer);
  });
}

function onClientMessage(bytes: unknown): void {
  const { messages, dropped } = decodeAll(bytes, isClientRequest);
  droppedMessages += dropped;
  for (const m of messages) {
    if (m.type === 'ops') {
      if (alarm !== null && core.role === 'leader') {
        refuseForNoSpace(m.ops.map((op) => op.id));
        continue;
      }
      // The leader stamps the entries with its clock: the log's time, by which sessions expire.
      run({ type: 'propose', requests: m.ops, now: Date.now() });
      continue;
    }
    if (m.type === 'changeConfig') {
      run({ type: 'changeConfig', id: m.id, peers: m.peers, ...(m.addresses ? { addresses: m.addresses } : {}), ...(m.edit ? { edit: m.edit } : {}) });
      continue;
    }
    if (m.type === 'transferLeadership') {
      run({ type: 'transferLeadership', id: m.id, target: m.target });
      continue;
    }
    // A lease (§6.4.1) is judged by the core's clock: bring it up to date first, in case
    // this thread was held up and the ticker is late.
    advanceClock();
    for (const r of m.reads) queries.set(r.id, r.query);
    run({ type: 'read', ids: m.reads.map((r) => r.id) });
  }
}

/** etcd's NOSPACE alarm: new writes are refused (never appended) until the disk has room again. */
function refuseForNoSpace(ids: number[]): void {
  const error: WireError = { code: 'NO_SPACE', message: `${id} refuses new writes: ${alarm?.message ?? 'disk full'}`, leader: null };
  for (const opId of ids) {
    proposalsRefused.NO_SPACE = (proposalsRefused.NO_SPACE ?? 0) + 1;
    outcomes.push({ id: opId, ok: false, result: null, error });
  }
  batcher.schedule();
}

// ---------------------------------------------------------------------------------------------
// Control

const control: ConsensusControl = {
  status(): PeerStatus {
    return {
      ...status(core),
      lastIndex: core.log.lastIndex,
      appliedDigest: replicated.appliedDigest,
      sessions: replicated.sessionsStatus(),
      droppedMessages,
      alarm: alarm === null ? null : { ...alarm },
      wiredPeers: [...peers.keys()],
      // §5.2: a follower that heard its leader less than an election timeout ago still has one.
      leaderRecentlyHeard: core.role === 'leader' || (core.leader !== null && core.voteGuard > 0),
      metrics: { applySeconds: applySeconds.snapshot(), leaderChanges, proposalsRefused: { ...proposalsRefused }, snapshotsTaken, snapshotsInstalled },
    };
  },
  setConfig(peerIds: string[], addresses?: AddressBook): WireError | null | 'change' {
    const decision = configDecision(core, peerIds);
    if (decision.kind === 'refused') return { code: decision.code, message: decision.message, leader: null };
    if (decision.kind === 'change') return 'change';
    if (decision.kind === 'bootstrap') run({ type: 'bootstrap', peers: peerIds, ...(addresses ? { addresses } : {}) });
    return null;
  },
  connectPeer,
  sendRaw(to: string, bytes: Uint8Array): void {
    const port = to === 'log' ? logPort : peers.get(to);
    port?.postMessage(bytes);
  },
  setFaults(plan: FaultPlan): void {
    links = new FaultyLinks(plan);
  },
  query(q: unknown) {
    return replicated.query(q);
  },
  snapshotNow() {
    return appliedSnapshot();
  },
  stop(): void {
    stopped = true;
    if (ticker) clearInterval(ticker);
    ticker = undefined;
    for (const timer of delayed) clearTimeout(timer);
    delayed.clear();
    batcher.clear();
    for (const port of peers.values()) port.close();
    peers.clear();
    clientPort.close();
    logPort.close();
  },
};

/**
 * The applied state as a snapshot (§7), built as the core builds one from a `takeSnapshot`
 * answer (src/core/step.ts, onSnapshotTaken): the machine has applied exactly lastApplied
 * between steps, so its bytes, the digest and the configuration and term at that index agree.
 * The stored snapshot is reused when nothing was applied after it.
 */
function appliedSnapshot(): SnapshotNow {
  const index = core.lastApplied;
  const who = { role: core.role, leader: core.leader };
  if (core.snapshot !== null && core.snapshot.meta.index === index) return { ok: true, snapshot: core.snapshot, ...who };
  if (!replicated.canSnapshot) return { ok: false, reason: `${id}'s state machine cannot snapshot (it has no snapshot/restore)` };
  const config = core.log.lastConfig(index);
  const term = core.log.term(index);
  if (index === 0 || config === undefined || term === undefined) return { ok: false, reason: `${id} has applied nothing yet` };
  let data: Uint8Array;
  try {
    data = replicated.snapshot();
  } catch (err) {
    return { ok: false, reason: `${id}'s state machine failed to snapshot: ${err instanceof Error ? err.message : String(err)}` };
  }
  const meta: Snapshot['meta'] = {
    index,
    term,
    peers: [...config.peers],
    old: config.old === undefined ? null : [...config.old],
    digest: replicated.appliedDigest,
    size: data.length,
    ...(config.addresses === undefined ? {} : { addresses: config.addresses }),
  };
  return { ok: true, snapshot: { meta, data }, ...who };
}

// Fault injection from the supervisor (raw, on parentPort): die as from an uncaught exception.
parentPort?.on('message', (m: unknown) => {
  if ((m as { type?: unknown })?.type === 'crash') throw new Error('consensus actor crashed (injected by nemesis)');
});

async function main(): Promise<void> {
  replicated = new ReplicatedStateMachine(await loadStateMachine(data.stateMachine));
  core = await recover();
  clientPort.on('message', onClientMessage);
  exposeControl(control, controlPort);
  clockStart = performance.now();
  ticker = setInterval(advanceClock, data.tickMs);
  notify({ type: 'ready' });
  noticeMembers();
}

void main();
