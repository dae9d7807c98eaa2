/**
 * The consensus core: `step(state, input) → { state, effects }`.
 *
 * Deterministic and free of I/O: no clock (time is `tick` inputs), no disk (writes are
 * `persist` effects, acknowledged by `persisted` inputs), no ports (messages are `send`
 * effects), no unseeded randomness (election timeouts come from a PRNG seed in the state).
 *
 * `step` takes ownership of `state`: it updates it in place and returns it, so a caller
 * must use the returned state and drop the old reference. (Copying the log on every step
 * would make the core useless for throughput; determinism is what the simulator needs.)
 *
 * Structure (after etcd/raft and rafter): `onMessage` settles terms once (§5.1), then
 * dispatches to the handler of the current role; only the `become*` functions of this file
 * change the role (those of `progress.ts` change a follower's replication mode). Messages
 * whose meaning presumes durable state (votes granted, AppendEntries answers) wait in
 * `pendingWrites` until the log actor acknowledges the write (§5.2, §5.3; thesis §3.8).
 *
 * This file holds the handlers; the bookkeeping they lean on lives in leaves of its own:
 * `options.ts` (defaults and validation), `progress.ts` (each follower's window of
 * AppendEntries in flight), `reads.ts` (ReadIndex rounds and the lease, thesis §6.4),
 * `raft-log.ts` (the in-memory log).
 */
import {
  allowConfig,
  committedIndex,
  editVoters,
  hasQuorum,
  isVoter,
  jointConfig,
  stableConfig,
  voteResult,
  voters,
  type Config,
} from '../config.js';
import type {
  AddressBook,
  AppendEntries,
  AppendEntriesReply,
  CommandEntry,
  ConfigEntry,
  Entry,
  InstallSnapshot,
  InstallSnapshotReply,
  OpRequest,
  PeerMessage,
  PersistRequest,
  PreVote,
  PreVoteReply,
  ReadIndexReply,
  RequestVote,
  RequestVoteReply,
  Snapshot,
  SnapshotMeta,
  SnapshotWrite,
} from '../messages.js';
import { DEFAULT_CORE_OPTIONS, validateCoreOptions } from './options.js';
import {
  becomeProbe,
  becomeReplicate,
  becomeSnapshot,
  fitEntries,
  freeInflight,
  isWindowOpen,
  newProgress,
  recordSent,
} from './progress.js';
import { RaftLog } from './raft-log.js';
import {
  extendLease,
  giveUpLease,
  holdForwarded,
  holdsLease,
  isQueued,
  newReadState,
  nextRound,
  openRound,
  recordAck,
  resetForLeadership,
  takeAllForwarded,
  takeAppliedReads,
  takeConfirmedRound,
  takeDueForward,
  takeForwarded,
  takeUnconfirmedReads,
} from './reads.js';
import { nextRandom } from '../rng.js';
import { assertNever } from '../validate.js';
import type { ClientErrorCode, CoreOptions, CoreState, Effect, FetchReason, Input, Progress, Role, Status, StepResult } from './types.js';

// ---------------------------------------------------------------------------------------------
// Construction and recovery

export interface CoreInit {
  id: string;
  /** Seed for election-timeout randomness. */
  seed: number;
  options?: Partial<CoreOptions>;
  /** Recovered from the log store (a fresh peer passes nothing). */
  term?: number;
  votedFor?: string | null;
  /** The recovered log: its entries, or a RaftLog built from them (which may have evicted some). */
  entries?: readonly Entry[];
  log?: RaftLog;
  /**
   * The recovered snapshot (§7), already restored into the state machine: the log continues
   * after it (a `log` given must start there too).
   */
  snapshot?: Snapshot | null;
}

/** A core for a peer starting (or restarting from what its log store recovered). */
export function createCore(init: CoreInit): CoreState {
  const options = validateCoreOptions({ ...DEFAULT_CORE_OPTIONS, ...init.options });
  const snapshot = init.snapshot ?? null;
  const log = init.log ?? new RaftLog(init.entries ?? [], snapshot?.meta);
  if (snapshot !== null && log.snapshotIndex !== snapshot.meta.index) {
    throw new Error(`the recovered log starts at ${log.snapshotIndex + 1}, not after the snapshot at ${snapshot.meta.index}`);
  }
  // Everything recovered is durable: keep only the memory window (the rest is fetched to apply).
  log.evict(log.lastIndex, options.maxCachedEntries, options.maxCachedBytes);
  const state: CoreState = {
    id: init.id,
    options,
    role: 'follower',
    currentTerm: init.term ?? 0,
    votedFor: init.votedFor ?? null,
    log,
    config: null,
    leader: null,
    // §5.3 volatile state starts at 0 after a restart (the leader tells us the commit index),
    // or at the snapshot, which holds only committed entries and is already applied.
    commitIndex: log.snapshotIndex,
    lastApplied: log.snapshotIndex,
    ticks: 0,
    electionElapsed: 0,
    // A restarted peer may have acknowledged a leader just before it stopped: it keeps that
    // leader's lease (§4.2.3, §6.4.1) as if it had just heard from it. A blank one never did.
    voteGuard: log.lastIndex > 0 ? options.electionTicks : 0,
    electionTimeout: options.electionTicks,
    heartbeatElapsed: 0,
    quorumCheckElapsed: 0,
    recentlyActive: new Set(),
    votes: new Map(),
    progress: new Map(),
    persistSeq: 0,
    persistedSeq: 0,
    // Everything recovered from the store is durable.
    durableIndex: log.lastIndex,
    pendingWrites: [],
    waiting: new Map(),
    reads: newReadState(),
    fetchingApply: false,
    preVote: null,
    configChange: null,
    transfer: null,
    snapshot,
    snapshotting: false,
    incoming: null,
    rngSeed: init.seed | 0,
  };
  refreshConfig(state);
  resetElectionTimer(state);
  return state;
}

export function status(s: CoreState): Status {
  return {
    id: s.id,
    role: s.role,
    term: s.currentTerm,
    leader: s.leader,
    commitIndex: s.commitIndex,
    lastApplied: s.lastApplied,
    peers: s.config ? voters(s.config) : [],
    config: s.config,
    learners: s.configChange?.phase === 'catchUp' ? [...s.configChange.learners] : [],
    snapshotIndex: s.log.snapshotIndex,
    ...reachableMembers(s),
    matchIndex: s.role === 'leader' ? Object.fromEntries([...s.progress].map(([id, pr]) => [id, pr.matchIndex])) : {},
  };
}

/**
 * The peers this one should be able to reach, and where (the transport follows it): the
 * voters of the latest configuration (§6: it rules from the moment it is in the log) and of
 * the committed one (a removed peer still hears until its removal is committed), and a
 * leader's learners being caught up. Addresses are carried opaque; nothing here counts them.
 */
function reachableMembers(s: CoreState): { members: string[]; addresses: AddressBook } {
  const latest = s.log.lastConfig();
  if (latest === undefined) return { members: [], addresses: {} };
  const committed = s.log.lastConfig(s.commitIndex);
  const ids = new Set(voters(configOf(latest)));
  if (committed) for (const id of voters(configOf(committed))) ids.add(id);
  const change = s.configChange;
  if (change?.phase === 'catchUp') for (const id of change.learners) ids.add(id);
  ids.delete(s.id);
  const addresses: AddressBook = { ...committed?.addresses, ...latest.addresses, ...change?.addresses };
  return { members: [...ids], addresses };
}

/** The addresses of `ids` found in `book`; undefined when none is (entries stay as before addresses). */
function addressesOf(ids: readonly string[], book: AddressBook | undefined): AddressBook | undefined {
  if (book === undefined) return undefined;
  const out: AddressBook = {};
  for (const id of ids) if (Object.hasOwn(book, id)) out[id] = book[id]!;
  return Object.keys(out).length > 0 ? out : undefined;
}

/** A config entry, with `addresses` only when there are some. */
function configEntry(index: number, term: number, peers: readonly string[], old: readonly string[] | undefined, addresses: AddressBook | undefined): ConfigEntry {
  const e: ConfigEntry = { type: 'config', index, term, peers: [...peers] };
  if (old !== undefined) e.old = [...old];
  if (addresses !== undefined) e.addresses = addresses;
  return e;
}

/** True while the peer has no configuration and no log: it may be bootstrapped. */
export function isBlank(s: CoreState): boolean {
  return s.config === null && s.log.lastIndex === 0;
}

export type ConfigDecision =
  | { kind: 'bootstrap' }
  | { kind: 'unchanged' }
  | { kind: 'change' }
  | { kind: 'refused'; code: 'CONFIG_INVALID' | 'CONFIG_IN_PROGRESS'; message: string };

/**
 * What a setConfig(peers) asked of this peer means (rafter's set_config): bootstrap a blank
 * peer, nothing for the configuration it already has, a membership change of the running
 * cluster (§6: a `changeConfig` input, which only the leader carries out), or a refusal.
 */
export function configDecision(s: CoreState, peers: readonly string[]): ConfigDecision {
  const allowed = allowConfig(s.config, peers);
  if (!allowed.ok) {
    switch (allowed.reason) {
      case 'notModified':
        return { kind: 'unchanged' };
      case 'empty':
        return { kind: 'refused', code: 'CONFIG_INVALID', message: 'a configuration needs at least one peer' };
      case 'duplicate':
        return { kind: 'refused', code: 'CONFIG_INVALID', message: 'a configuration lists each peer once' };
      case 'configInProgress':
        return { kind: 'refused', code: 'CONFIG_IN_PROGRESS', message: 'a membership change is in progress (joint configuration in the log)' };
    }
  }
  if (s.config !== null) return { kind: 'change' };
  if (!isBlank(s)) return { kind: 'refused', code: 'CONFIG_INVALID', message: `${s.id} has log entries but no configuration` };
  return { kind: 'bootstrap' };
}

// ---------------------------------------------------------------------------------------------
// The step function

/**
 * Everything one step wants written and sent, gathered so that all writes of the step
 * become one persist effect and messages that need them durable wait for that write.
 */
interface StepContext {
  effects: Effect[];
  hardStateDirty: boolean;
  truncateFrom: number;
  appended: Entry[];
  /** Sent only once this step's write (or the latest pending one) is durable. */
  afterDurable: PeerMessage[];
  selfVoteTerm: number;
  /** A snapshot to store with this step's write (own, or installed from the leader). */
  snapshotWrite: SnapshotWrite | null;
  roleBefore: Role;
  termBefore: number;
  leaderBefore: string | null;
}

export function step(state: CoreState, input: Input): StepResult {
  const ctx: StepContext = {
    effects: [],
    hardStateDirty: false,
    truncateFrom: 0,
    appended: [],
    afterDurable: [],
    selfVoteTerm: 0,
    snapshotWrite: null,
    roleBefore: state.role,
    termBefore: state.currentTerm,
    leaderBefore: state.leader,
  };
  switch (input.type) {
    case 'tick':
      onTick(state, ctx, input.ticks ?? 1);
      break;
    case 'message':
      onMessage(state, ctx, input.message);
      break;
    case 'propose':
      onPropose(state, ctx, input.requests, input.now);
      break;
    case 'persisted':
      onPersisted(state, ctx, input.seq);
      break;
    case 'bootstrap':
      onBootstrap(state, ctx, input.peers, input.addresses);
      break;
    case 'read':
      onRead(state, ctx, input.ids);
      break;
    case 'fetched':
      onFetched(state, ctx, input.reason, input.entries);
      break;
    case 'snapshotTaken':
      onSnapshotTaken(state, ctx, input.index, input.data, input.digest);
      break;
    case 'changeConfig':
      onChangeConfig(state, ctx, input.id, input.peers, input.addresses ?? {}, input.edit);
      break;
    case 'transferLeadership':
      onTransferLeadership(state, ctx, input.id, input.target);
      break;
    default:
      assertNever(input, 'input');
  }
  // A leader learned of: the reads we hold for one are asked of it at once.
  if (state.leader !== ctx.leaderBefore) forwardHeldReads(state, ctx);
  finish(state, ctx);
  return { state, effects: ctx.effects };
}

/** Turn the step's gathered writes into one persist effect, and release what may go now. */
function finish(s: CoreState, ctx: StepContext): void {
  const effects = ctx.effects;
  if (ctx.hardStateDirty || ctx.truncateFrom > 0 || ctx.appended.length > 0 || ctx.snapshotWrite !== null) {
    const seq = ++s.persistSeq;
    const write: PersistRequest = {
      type: 'persist',
      seq,
      term: s.currentTerm,
      votedFor: s.votedFor,
      truncateFrom: ctx.truncateFrom,
      entries: ctx.appended,
    };
    // Only when there is one, so the common write keeps its compact record.
    if (ctx.snapshotWrite !== null) write.snapshot = ctx.snapshotWrite;
    effects.unshift({ type: 'persist', write });
    s.pendingWrites.push({
      seq,
      lastIndex: s.log.lastIndex,
      messages: ctx.afterDurable,
      selfVoteTerm: ctx.selfVoteTerm,
    });
  } else if (ctx.afterDurable.length > 0) {
    const last = s.pendingWrites[s.pendingWrites.length - 1];
    if (last) last.messages.push(...ctx.afterDurable);
    else for (const message of ctx.afterDurable) effects.push({ type: 'send', message });
  }
  if (s.role !== ctx.roleBefore || s.currentTerm !== ctx.termBefore || s.leader !== ctx.leaderBefore) {
    effects.push({ type: 'roleChanged', role: s.role, term: s.currentTerm, leader: s.leader });
  }
  // Entries applied and on our disk can leave memory: the log actor has them.
  s.log.evict(Math.min(s.lastApplied, s.durableIndex), s.options.maxCachedEntries, s.options.maxCachedBytes);
  maybeSnapshot(s, ctx);
}

// ---------------------------------------------------------------------------------------------
// Time

function onTick(s: CoreState, ctx: StepContext, ticks: number): void {
  if (!(Number.isSafeInteger(ticks) && ticks >= 1)) throw new RangeError(`tick: ticks must be a positive integer, got ${ticks}`);
  s.ticks += ticks;
  s.voteGuard = Math.max(0, s.voteGuard - ticks);
  if (s.role === 'leader') {
    if (!checkQuorum(s, ctx, ticks)) return;
    checkAdminDeadlines(s, ctx);
    s.heartbeatElapsed += ticks;
    if (s.heartbeatElapsed >= s.options.heartbeatTicks) {
      s.heartbeatElapsed = 0;
      // With lease reads every heartbeat is a round whose acknowledgement renews the lease.
      if (s.options.leaseReads) nextRound(s.reads, s.options, s.ticks);
      for (const peer of s.progress.keys()) sendAppend(s, ctx, peer, true);
    }
    return;
  }
  // §5.2: a follower or candidate that hears nothing for an election timeout campaigns
  // (after a pre-vote, thesis §9.6).
  s.electionElapsed += ticks;
  if (s.electionElapsed >= s.electionTimeout) {
    if (!mayCampaign(s)) resetElectionTimer(s);
    else if (s.options.preVote) startPreVote(s, ctx);
    else becomeCandidate(s, ctx);
  }
  // Requests for a read index that went unanswered for a heartbeat interval go again.
  forwardHeldReads(s, ctx);
}

/**
 * A voter of its latest configuration campaigns. So does a peer outside it while that
 * configuration is not known to be committed (thesis §4.2.2): the cluster may still need it,
 * e.g. when only peers being removed hold the newest entries. Its own vote does not count
 * (`voteResult` counts the configuration's voters only). A peer that knows its removal is
 * committed stays quiet, and so, once it has caught up, does a learner. (While a peer
 * campaigns needlessly, its pre-votes fail: the members hear their leader, §4.2.3.)
 */
function mayCampaign(s: CoreState): boolean {
  if (s.config === null) return false;
  if (isVoter(s.config, s.id)) return true;
  const latest = s.log.lastConfig()!;
  return latest.index > s.commitIndex;
}

/**
 * Thesis §9.6: ask the voters whether they would vote for us in the next term, without
 * raising anyone's term. Only a quorum of yeses starts a real election; a peer that was
 * partitioned away (or removed, §4.2.3) gets no quorum while the cluster has a leader.
 */
function startPreVote(s: CoreState, ctx: StepContext): void {
  resetElectionTimer(s);
  const config = s.config!;
  s.preVote = { term: s.currentTerm + 1, votes: new Map([[s.id, true]]) };
  if (voteResult(config, s.preVote.votes) === 'won') {
    s.preVote = null;
    return becomeCandidate(s, ctx);
  }
  for (const peer of voters(config)) {
    if (peer === s.id) continue;
    ctx.effects.push({
      type: 'send',
      message: {
        type: 'preVote',
        term: s.currentTerm + 1,
        from: s.id,
        to: peer,
        lastLogIndex: s.log.lastIndex,
        lastLogTerm: s.log.lastTerm,
      },
    });
  }
}

/**
 * Answer a pre-vote as a vote would be answered (§5.4.1 up-to-date log, a term above ours),
 * and no while we lead or heard a leader within an election timeout (§4.2.3). Changes nothing.
 */
function handlePreVote(s: CoreState, ctx: StepContext, m: PreVote): void {
  const granted =
    m.term > s.currentTerm && s.role !== 'leader' && s.voteGuard === 0 && s.log.isUpToDate(m.lastLogTerm, m.lastLogIndex);
  // A refusal carries our own term: a requester behind it adopts it (it exists), never the term
  // it asked about (adopting that would raise its term at every refused pre-vote).
  const reply: PreVoteReply = { type: 'preVoteReply', term: granted ? m.term : s.currentTerm, from: s.id, to: m.from, granted };
  ctx.effects.push({ type: 'send', message: reply });
}

function handlePreVoteReply(s: CoreState, ctx: StepContext, m: PreVoteReply): void {
  // A refusal from a later term: that term exists, so adopt it (raising no one else's).
  if (!m.granted && m.term > s.currentTerm) return becomeFollower(s, ctx, m.term, null);
  const pv = s.preVote;
  if (pv === null || m.term !== pv.term || s.role === 'leader') return;
  pv.votes.set(m.from, m.granted);
  const result = voteResult(s.config!, pv.votes);
  if (result === 'won') {
    s.preVote = null;
    becomeCandidate(s, ctx);
  } else if (result === 'lost') {
    s.preVote = null;
  }
}

/**
 * Thesis §6.2 check-quorum: every election timeout, a leader that has not heard from a quorum
 * since the last check steps down, so a leader cut off in a minority stops taking writes and
 * leases, and its clients look elsewhere. False if it stepped down.
 */
function checkQuorum(s: CoreState, ctx: StepContext, ticks: number): boolean {
  s.quorumCheckElapsed += ticks;
  if (s.quorumCheckElapsed < s.options.electionTicks) return true;
  s.quorumCheckElapsed = 0;
  const heard = hasQuorum(s.config!, (id) => id === s.id || s.recentlyActive.has(id));
  s.recentlyActive.clear();
  if (heard) return true;
  becomeFollower(s, ctx, s.currentTerm, null);
  return false;
}

function resetElectionTimer(s: CoreState): void {
  const r = nextRandom(s.rngSeed);
  s.rngSeed = r.seed;
  s.electionElapsed = 0;
  // §5.2 randomized election timeouts, in [electionTicks, 2 * electionTicks).
  s.electionTimeout = s.options.electionTicks + Math.floor(r.value * s.options.electionTicks);
}

// ---------------------------------------------------------------------------------------------
// Role changes: the only writers of `role`

function becomeFollower(s: CoreState, ctx: StepContext, term: number, leader: string | null): void {
  if (s.role === 'leader') {
    endReadRounds(s, ctx);
    endLeadership(s, ctx, leader);
  }
  s.preVote = null;
  if (term > s.currentTerm) {
    s.currentTerm = term;
    s.votedFor = null;
    ctx.hardStateDirty = true;
  }
  s.role = 'follower';
  s.leader = leader;
  s.votes.clear();
  s.progress.clear();
  resetElectionTimer(s);
}

/**
 * §5.2: increment the term, vote for self, ask every other voter. `transfer`: the leader asked
 * us to (TimeoutNow, thesis §3.10), and the voters may not ignore us for having heard it.
 */
function becomeCandidate(s: CoreState, ctx: StepContext, transfer = false): void {
  if (s.role === 'leader') throw new Error('illegal transition: leader -> candidate');
  const config = s.config!;
  s.preVote = null;
  s.role = 'candidate';
  s.currentTerm += 1;
  s.votedFor = s.id;
  s.leader = null;
  ctx.hardStateDirty = true;
  s.votes.clear();
  s.progress.clear();
  resetElectionTimer(s);
  // Our own vote counts once the vote is durable (see onPersisted).
  ctx.selfVoteTerm = s.currentTerm;
  for (const peer of voters(config)) {
    if (peer === s.id) continue;
    ctx.effects.push({
      type: 'send',
      message: {
        type: 'requestVote',
        term: s.currentTerm,
        from: s.id,
        to: peer,
        lastLogIndex: s.log.lastIndex,
        lastLogTerm: s.log.lastTerm,
        ...(transfer ? { transfer } : {}),
      },
    });
  }
}

function becomeLeader(s: CoreState, ctx: StepContext): void {
  if (s.role !== 'candidate') throw new Error(`illegal transition: ${s.role} -> leader`);
  s.role = 'leader';
  s.leader = s.id;
  s.votes.clear();
  s.heartbeatElapsed = 0;
  s.quorumCheckElapsed = 0;
  s.recentlyActive.clear();
  resetForLeadership(s.reads);
  // The reads we held for a leader wait for our own rounds, once we have committed an entry
  // of this term (§6.4 step 1).
  const held = takeAllForwarded(s.reads);
  if (held.length > 0) s.reads.waiting.push({ kind: 'local', ids: held });
  const next = s.log.lastIndex + 1;
  s.progress.clear();
  s.configChange = null;
  s.transfer = null;
  syncProgress(s, next);
  // §8: a no-op of the new term, so entries of earlier terms get committed (§5.4.2).
  appendEntry(s, ctx, { type: 'noop', index: next, term: s.currentTerm });
  for (const peer of s.progress.keys()) sendAppend(s, ctx, peer, true);
  maybeCommit(s, ctx);
  // A change the previous leader left half done (C_old,new committed) goes on from here.
  advanceConfig(s, ctx, 0);
}

// ---------------------------------------------------------------------------------------------
// Messages

function onMessage(s: CoreState, ctx: StepContext, m: PeerMessage): void {
  if (m.to !== s.id || m.from === s.id || !wellFormed(m)) return;
  // Pre-votes (thesis §9.6) are about a term nobody is in yet: they never change terms.
  if (m.type === 'preVote') return handlePreVote(s, ctx, m);
  if (m.type === 'preVoteReply') return handlePreVoteReply(s, ctx, m);
  // Thesis §4.2.3: while a current leader is heard (or we lead), a RequestVote of a higher
  // term is ignored, neither adopting its term nor answering it. A removed or partitioned
  // peer then cannot depose a healthy leader this way, and a leader's lease (§6.4.1) holds.
  // A campaign the leader itself asked for (TimeoutNow, §3.10) is the exception.
  if (m.type === 'requestVote' && m.term > s.currentTerm && !m.transfer && (s.role === 'leader' || s.voteGuard > 0)) return;
  // §5.1: a higher term makes us a follower of that term; a lower one marks a stale sender.
  if (m.term > s.currentTerm) {
    const fromLeader = m.type === 'appendEntries' || m.type === 'installSnapshot' || m.type === 'timeoutNow';
    becomeFollower(s, ctx, m.term, fromLeader ? m.from : null);
  } else if (m.term < s.currentTerm) {
    // Answer stale RPCs so the sender learns the new term; ignore stale replies.
    if (m.type === 'requestVote') replyVote(s, ctx, m, false);
    else if (m.type === 'appendEntries') replyAppend(s, ctx, m, false, 0);
    else if (m.type === 'readIndex') replyReadIndex(s, ctx, m.from, m.id, 0, false);
    else if (m.type === 'installSnapshot') replySnapshot(s, ctx, m, 0, false);
    return;
  }
  HANDLERS[s.role](s, ctx, m);
}

/** Entries of an AppendEntries must continue prevLogIndex without gaps; drop anything else. */
function wellFormed(m: PeerMessage): boolean {
  if (m.type !== 'appendEntries') return true;
  for (let k = 0; k < m.entries.length; k++) {
    const e = m.entries[k]!;
    if (e.index !== m.prevLogIndex + 1 + k || e.term > m.term) return false;
  }
  return m.prevLogTerm <= m.term;
}

type Handler = (s: CoreState, ctx: StepContext, m: PeerMessage) => void;

const HANDLERS: Record<Role, Handler> = {
  follower(s, ctx, m) {
    switch (m.type) {
      case 'requestVote':
        return handleRequestVote(s, ctx, m);
      case 'appendEntries':
      case 'installSnapshot':
        // A current leader is heard: remember it and stay a follower (§5.2).
        heardLeader(s, m.from);
        return m.type === 'appendEntries' ? handleAppendEntries(s, ctx, m) : handleInstallSnapshot(s, ctx, m);
      case 'timeoutNow':
        // Thesis §3.10: our leader hands over to us; campaign at once, without a pre-vote.
        if (mayCampaign(s)) becomeCandidate(s, ctx, true);
        return;
      case 'requestVoteReply':
      case 'appendEntriesReply':
      case 'installSnapshotReply':
        return; // answers to a campaign or leadership of ours that has ended
      case 'readIndex':
        return replyReadIndex(s, ctx, m.from, m.id, 0, false);
      case 'readIndexReply':
        return handleReadIndexReply(s, ctx, m);
    }
  },
  candidate(s, ctx, m) {
    switch (m.type) {
      case 'requestVote':
        return handleRequestVote(s, ctx, m); // refused: we voted for ourselves this term
      case 'appendEntries':
      case 'installSnapshot':
        // §5.2: another peer won this term's election.
        becomeFollower(s, ctx, m.term, m.from);
        heardLeader(s, m.from);
        return m.type === 'appendEntries' ? handleAppendEntries(s, ctx, m) : handleInstallSnapshot(s, ctx, m);
      case 'requestVoteReply':
        s.votes.set(m.from, m.granted);
        return countVotes(s, ctx);
      case 'appendEntriesReply':
      case 'installSnapshotReply':
      case 'timeoutNow':
        return;
      case 'readIndexReply':
        return handleReadIndexReply(s, ctx, m); // the reads we hold wait for a leader
      case 'readIndex':
        return replyReadIndex(s, ctx, m.from, m.id, 0, false);
    }
  },
  leader(s, ctx, m) {
    s.recentlyActive.add(m.from); // a message of our term: the sender is up and hears us
    switch (m.type) {
      case 'requestVote':
        return handleRequestVote(s, ctx, m); // refused: we voted for ourselves this term
      case 'appendEntries':
      case 'installSnapshot':
      case 'timeoutNow':
        // Election Safety makes a second leader in our term impossible; ignore it loudly
        // in tests by never answering.
        return;
      case 'requestVoteReply':
      case 'readIndexReply':
        return;
      case 'appendEntriesReply':
        return handleAppendReply(s, ctx, m);
      case 'installSnapshotReply':
        return handleSnapshotReply(s, ctx, m);
      case 'readIndex':
        if (holdsLease(s)) return replyReadIndex(s, ctx, m.from, m.id, s.commitIndex, true);
        // A request sent again while the first is still waiting: that round answers it.
        if (isQueued(s.reads, m.from, m.id)) return;
        s.reads.waiting.push({ kind: 'forwarded', from: m.from, id: m.id });
        return startReadRound(s, ctx);
    }
  },
};

function handleRequestVote(s: CoreState, ctx: StepContext, m: RequestVote): void {
  // §5.2 one vote per term, first come first served; §5.4.1 election restriction.
  const canVote = s.votedFor === null || s.votedFor === m.from;
  const grant = canVote && s.role === 'follower' && s.log.isUpToDate(m.lastLogTerm, m.lastLogIndex);
  if (grant) {
    if (s.votedFor !== m.from) {
      s.votedFor = m.from;
      ctx.hardStateDirty = true;
    }
    resetElectionTimer(s);
  }
  replyVote(s, ctx, m, grant);
}

function replyVote(s: CoreState, ctx: StepContext, m: RequestVote, granted: boolean): void {
  const reply: RequestVoteReply = { type: 'requestVoteReply', term: s.currentTerm, from: s.id, to: m.from, granted };
  // A granted vote must be durable before it is announced (§5.2, Figure 2 "persistent state").
  ctx.afterDurable.push(reply);
}

function countVotes(s: CoreState, ctx: StepContext): void {
  const result = voteResult(s.config!, s.votes);
  // Figure 2: currentTerm and votedFor are "updated on stable storage before responding to
  // RPCs", and a leader's AppendEntries are RPCs of its term. So a candidate leads only once
  // its own vote is durable (it enters `votes` in onPersisted), even when the others' votes
  // already make a majority: a candidate that led on those alone and crashed before its write
  // landed would restart in the previous term, could win the same term again with another
  // log, and write a second, different entry at an (index, term) some follower already holds
  // (Log Matching, then State Machine Safety, broken; found by test/core-sim.spec.ts).
  if (result === 'won' && s.votes.get(s.id) === true) becomeLeader(s, ctx);
  else if (result === 'lost') becomeFollower(s, ctx, s.currentTerm, null);
}

/** Our current leader was heard: stay its follower for another election timeout (§5.2, §4.2.3). */
function heardLeader(s: CoreState, leader: string): void {
  s.leader = leader;
  s.electionElapsed = 0;
  s.voteGuard = s.options.electionTicks;
  s.preVote = null;
}

/** §5.3 AppendEntries receiver, for a message of our current term from its leader. */
function handleAppendEntries(s: CoreState, ctx: StepContext, m: AppendEntries): void {
  const log = s.log;
  if (m.prevLogIndex < log.snapshotIndex) {
    // Entries up to our snapshot are committed, hence the leader's too (§5.4 Leader
    // Completeness): skip them and check the rest from the snapshot on.
    const skip = Math.min(log.snapshotIndex - m.prevLogIndex, m.entries.length);
    if (m.prevLogIndex + m.entries.length < log.snapshotIndex) return replyAppend(s, ctx, m, true, log.snapshotIndex);
    m = { ...m, prevLogIndex: log.snapshotIndex, prevLogTerm: log.snapshotTerm, entries: m.entries.slice(skip) };
  }
  // Consistency check: our log must contain an entry at prevLogIndex with prevLogTerm.
  if (m.prevLogIndex > log.lastIndex) {
    return replyAppend(s, ctx, m, false, 0, log.lastIndex + 1, 0);
  }
  const termAtPrev = log.term(m.prevLogIndex)!;
  if (termAtPrev !== m.prevLogTerm) {
    // Fast back-off hint: the conflicting term and where it starts in our log.
    return replyAppend(s, ctx, m, false, 0, log.firstIndexOfTerm(m.prevLogIndex), termAtPrev);
  }
  // Append any new entries; an existing entry that conflicts (same index, different term)
  // is deleted with everything after it. Entries we already have are skipped, so a stale
  // or duplicated AppendEntries never truncates.
  let i = 0;
  for (; i < m.entries.length; i++) {
    const e = m.entries[i]!;
    const existing = log.term(e.index);
    if (existing === undefined) break;
    if (existing !== e.term) {
      if (e.index <= s.commitIndex) {
        throw new Error(`safety violation: leader ${m.from} conflicts with committed entry ${e.index}`);
      }
      truncateLog(s, ctx, e.index);
      break;
    }
  }
  for (; i < m.entries.length; i++) appendEntry(s, ctx, m.entries[i]!);
  const matchIndex = m.prevLogIndex + m.entries.length;
  // Figure 2: commitIndex = min(leaderCommit, index of last new entry).
  const commit = Math.min(m.leaderCommit, matchIndex);
  if (commit > s.commitIndex) {
    s.commitIndex = commit;
    applyCommitted(s, ctx);
    // A snapshot half received is of no use once the log has caught up past it.
    if (s.incoming !== null && s.incoming.meta.index <= s.commitIndex) s.incoming = null;
  }
  replyAppend(s, ctx, m, true, matchIndex);
}

function replyAppend(
  s: CoreState,
  ctx: StepContext,
  m: AppendEntries,
  success: boolean,
  matchIndex: number,
  conflictIndex = 0,
  conflictTerm = 0,
): void {
  const reply: AppendEntriesReply = {
    type: 'appendEntriesReply',
    term: s.currentTerm,
    from: s.id,
    to: m.from,
    success,
    matchIndex,
    rejectedIndex: success ? 0 : m.prevLogIndex,
    conflictIndex,
    conflictTerm,
    readSeq: m.readSeq,
  };
  // A success claims the entries are stored: only once they are durable (§5.3, thesis §3.8).
  ctx.afterDurable.push(reply);
}

/** Leader: a follower answered an AppendEntries of our term. */
function handleAppendReply(s: CoreState, ctx: StepContext, m: AppendEntriesReply): void {
  const pr = s.progress.get(m.from);
  if (!pr) return;
  ackRound(s, ctx, m.from, m.readSeq);
  if (m.success) {
    if (m.matchIndex > pr.matchIndex) pr.matchIndex = m.matchIndex;
    if (pr.nextIndex <= pr.matchIndex) pr.nextIndex = pr.matchIndex + 1;
    if (pr.mode === 'snapshot' && pr.matchIndex < s.log.snapshotIndex) {
      // An AppendEntries sent before we compacted: the follower still needs the snapshot.
      return maybeCommit(s, ctx);
    }
    // A probe found the match (or, while sending a snapshot, the follower turned out to
    // hold our snapshot's last entry after all, and needs only what follows).
    if (pr.mode !== 'replicate') becomeReplicate(pr);
    else freeInflight(pr, m.matchIndex);
    pr.probeSent = false;
    maybeCommit(s, ctx);
    followerProgressed(s, ctx, m.from);
    replicate(s, ctx, m.from);
    return;
  }
  // While the snapshot is on its way, rejections of heartbeats say nothing new.
  if (pr.mode === 'snapshot') return;
  // Rejected. A rejection of an index we know matches, or of an older probe, is stale.
  if (m.rejectedIndex <= pr.matchIndex) return;
  if (pr.mode === 'probe' && m.rejectedIndex !== pr.nextIndex - 1) return;
  // §5.3 fast back-off: skip the follower's whole conflicting term at once.
  let next = m.conflictIndex;
  if (m.conflictTerm > 0) {
    const ours = s.log.lastIndexOfTerm(m.conflictTerm, m.rejectedIndex);
    if (ours > 0) next = ours + 1;
  }
  becomeProbe(pr, Math.max(pr.matchIndex + 1, Math.min(next, m.rejectedIndex)));
  sendAppend(s, ctx, m.from, true);
}

/** Any answer of our term acknowledges us as leader as of the round it echoes (§6.4). */
function ackRound(s: CoreState, ctx: StepContext, peer: string, readSeq: number): void {
  if (!recordAck(s.reads, peer, readSeq)) return;
  if (s.options.leaseReads) extendLease(s.reads, s.config!, s.id, s.options);
  confirmReadRound(s, ctx);
}

/** Send one AppendEntries to `peer` if its progress allows; true if entries were sent. */
function sendAppend(s: CoreState, ctx: StepContext, peer: string, heartbeat: boolean): boolean {
  const pr = s.progress.get(peer);
  // Not (or no longer) a peer we replicate to: removed by a committed configuration (§6), or
  // we stepped down in this very step.
  if (pr === undefined) return false;
  const log = s.log;
  // §7: the entries the follower needs next are compacted into our snapshot.
  if (pr.mode === 'snapshot' || pr.nextIndex - 1 < log.snapshotIndex) {
    sendSnapshot(s, ctx, peer, pr, heartbeat);
    return false;
  }
  const windowOpen = isWindowOpen(pr, s.options, heartbeat);
  const hasEntries = pr.nextIndex <= log.lastIndex;
  let entries: Entry[] = [];
  if (windowOpen && hasEntries) {
    if (pr.nextIndex >= log.firstCachedIndex) {
      entries = log.slice(pr.nextIndex, pr.nextIndex + s.options.maxEntriesPerAppend - 1);
    } else if (pr.mode === 'replicate') {
      // Behind the memory window: the entries come back from the log actor (onFetched).
      // A probe goes without them: it only has to find where the two logs match.
      fetchForFollower(s, ctx, peer, pr);
      if (!heartbeat) return false;
    }
  } else if (!heartbeat) {
    return false;
  }
  return sendEntries(s, ctx, peer, pr, entries);
}

/**
 * Send an AppendEntries from `pr.nextIndex` with as many of `entries` (which start there) as
 * the byte limit allows, at least one, and count it in the window; true if entries were sent.
 */
function sendEntries(s: CoreState, ctx: StepContext, peer: string, pr: Progress, entries: Entry[]): boolean {
  const fit = fitEntries(entries, s.options.maxAppendBytes);
  sendAppendEntries(s, ctx, peer, pr.nextIndex - 1, fit.entries);
  return recordSent(pr, fit.entries, fit.bytes);
}

/** One AppendEntries to `peer` after `prevLogIndex` (whose term we know), with the read round. */
function sendAppendEntries(s: CoreState, ctx: StepContext, peer: string, prevLogIndex: number, entries: Entry[]): void {
  ctx.effects.push({
    type: 'send',
    message: {
      type: 'appendEntries',
      term: s.currentTerm,
      from: s.id,
      to: peer,
      prevLogIndex,
      prevLogTerm: s.log.term(prevLogIndex)!,
      entries,
      leaderCommit: s.commitIndex,
      readSeq: s.reads.round,
    },
  });
}

/** Ask the log actor for the next entries of a follower that is behind the memory window. */
function fetchForFollower(s: CoreState, ctx: StepContext, peer: string, pr: Progress): void {
  if (pr.fetching) return;
  pr.fetching = true;
  const to = Math.min(s.log.firstCachedIndex - 1, pr.nextIndex + s.options.maxEntriesPerAppend - 1);
  ctx.effects.push({ type: 'fetch', from: pr.nextIndex, to, reason: { kind: 'replicate', peer } });
}

/**
 * The leading run of `entries` that starts at `from`, ends by `to` and agrees with our log
 * (same index and term, hence the same entry: §5.3 Log Matching). A fetch reads the disk as it
 * was when the log actor got to it; whatever our log has changed since is cut off here.
 */
function usableFetched(s: CoreState, entries: Entry[], from: number, to: number): Entry[] {
  let k = 0;
  while (k < entries.length) {
    const e = entries[k]!;
    if (e.index !== from + k || e.index > to || s.log.term(e.index) !== e.term) break;
    k++;
  }
  return k === entries.length ? entries : entries.slice(0, k);
}

function onFetched(s: CoreState, ctx: StepContext, reason: FetchReason, entries: Entry[]): void {
  if (reason.kind === 'apply') {
    if (!s.fetchingApply) return;
    s.fetchingApply = false;
    const usable = usableFetched(s, entries, s.lastApplied + 1, s.commitIndex);
    if (usable.length > 0) {
      applyEntries(s, ctx, usable);
    } else if (entries.length === 0 && s.lastApplied < s.commitIndex && s.lastApplied + 1 < s.log.firstCachedIndex) {
      // Committed entries are never truncated (Leader Completeness) and were durable when
      // they left memory: a store that cannot return them has lost data.
      throw new Error(`the log store returned no entries to apply from ${s.lastApplied + 1}`);
    }
    return applyCommitted(s, ctx);
  }
  const pr = s.progress.get(reason.peer);
  if (s.role !== 'leader' || pr === undefined) return;
  pr.fetching = false;
  if (pr.mode === 'replicate') {
    let usable = usableFetched(s, entries, pr.nextIndex, s.log.lastIndex);
    // One fetch can fill several AppendEntries, as far as the window allows.
    while (usable.length > 0 && isWindowOpen(pr, s.options, false)) {
      const before = pr.nextIndex;
      if (!sendEntries(s, ctx, reason.peer, pr, usable)) break;
      usable = usable.slice(pr.nextIndex - before);
    }
  }
  replicate(s, ctx, reason.peer);
}

/** Leader: pipeline whatever the follower's window allows. */
function replicate(s: CoreState, ctx: StepContext, peer: string): void {
  while (sendAppend(s, ctx, peer, false)) {
    /* keep filling the window */
  }
}

// ---------------------------------------------------------------------------------------------
// Client requests

function onPropose(s: CoreState, ctx: StepContext, requests: OpRequest[], now: number | undefined): void {
  if (requests.length === 0) return;
  if (s.role !== 'leader' || s.transfer !== null || !isVoter(s.config!, s.id)) {
    // Thesis §3.10: a leader handing over takes no new commands (they would only be lost); nor
    // does one that C_new leaves out (§6), about to step down.
    const leader = s.role === 'leader' ? null : s.leader;
    return clientError(ctx, requests.map((r) => r.id), 'NOT_LEADER', leader);
  }
  for (const r of requests) {
    const index = s.log.lastIndex + 1;
    const entry: CommandEntry = { type: 'command', index, term: s.currentTerm, data: r.command };
    if (now !== undefined) entry.time = now;
    appendEntry(s, ctx, entry);
    s.waiting.set(index, { term: s.currentTerm, id: r.id });
  }
  // §10.2.1 of the thesis: replicate while our own write is in flight.
  for (const peer of s.progress.keys()) replicate(s, ctx, peer);
  maybeCommit(s, ctx);
}

function onBootstrap(s: CoreState, ctx: StepContext, peers: string[], addresses: AddressBook | undefined): void {
  if (!isBlank(s)) throw new Error('bootstrap of a peer that already has a log');
  // The configuration entry gets a term of its own that we claim by voting for ourselves
  // in it, so no other leader can write a different entry at index 1 in that term.
  s.currentTerm += 1;
  s.votedFor = s.id;
  ctx.hardStateDirty = true;
  appendEntry(s, ctx, configEntry(1, s.currentTerm, peers, undefined, addressesOf(peers, addresses)));
  if (isVoter(s.config!, s.id)) becomeCandidate(s, ctx);
}

function clientError(ctx: StepContext, ids: number[], code: ClientErrorCode, leader: string | null, message?: string): void {
  ctx.effects.push(message === undefined ? { type: 'clientError', ids, code, leader } : { type: 'clientError', ids, code, leader, message });
}

// ---------------------------------------------------------------------------------------------
// Membership changes by joint consensus (§6; thesis §4.3)

/**
 * Leader: the peers to replicate to. The voters of the latest configuration, those of the
 * committed one (a removed peer keeps hearing from us until its removal is committed, so it
 * learns of it and stays quiet), and the learners of a change in progress. New ones start
 * probing at `nextIndex`.
 */
function syncProgress(s: CoreState, nextIndex = s.log.lastIndex + 1): void {
  if (s.role !== 'leader' || s.config === null) return;
  const targets = new Set(voters(s.config));
  const committed = s.log.lastConfig(s.commitIndex);
  if (committed) for (const id of voters(configOf(committed))) targets.add(id);
  if (s.configChange?.phase === 'catchUp') for (const id of s.configChange.learners) targets.add(id);
  targets.delete(s.id);
  for (const id of targets) {
    if (!s.progress.has(id)) s.progress.set(id, newProgress(nextIndex));
  }
  for (const id of [...s.progress.keys()]) {
    if (targets.has(id)) continue;
    s.progress.delete(id);
    s.reads.acked.delete(id);
  }
}

/**
 * A client asks for `peers` as the voters. The new peers first catch up as learners (thesis
 * §4.2.1), then C_old,new goes into the log, then C_new (`advanceConfig`). One change at a
 * time: another while one is in progress is refused with CONFIG_IN_PROGRESS.
 */
function onChangeConfig(s: CoreState, ctx: StepContext, id: number, asked: string[], addresses: AddressBook, edit?: 'add' | 'remove'): void {
  if (s.role !== 'leader' || s.transfer !== null) return clientError(ctx, [id], 'NOT_LEADER', s.role === 'leader' ? null : s.leader);
  const latest = s.log.lastConfig()!;
  const busy = s.configChange !== null || latest.index > s.commitIndex;
  if (edit !== undefined && s.config!.kind === 'joint') return clientError(ctx, [id], 'CONFIG_IN_PROGRESS', null, 'a membership change is in progress');
  const peers = edit === undefined ? asked : editVoters(voters(s.config!), edit, asked);
  const allowed = allowConfig(s.config, peers);
  if (!allowed.ok) {
    switch (allowed.reason) {
      case 'empty':
        return clientError(ctx, [id], 'CONFIG_INVALID', null, 'a configuration needs at least one peer');
      case 'duplicate':
        return clientError(ctx, [id], 'CONFIG_INVALID', null, 'a configuration lists each peer once');
      case 'configInProgress':
        return clientError(ctx, [id], 'CONFIG_IN_PROGRESS', null, 'a membership change is in progress');
      case 'notModified':
        if (busy) return clientError(ctx, [id], 'CONFIG_IN_PROGRESS', null, 'a membership change is in progress');
        // The same voters at new addresses (a member moved) still goes through the log.
        if (!movesMembers(latest.addresses, addresses, peers)) {
          ctx.effects.push({ type: 'adminDone', id, result: null });
          return;
        }
        break;
    }
  }
  if (busy) return clientError(ctx, [id], 'CONFIG_IN_PROGRESS', null, 'a membership change is in progress');
  const current = voters(s.config!);
  s.configChange = {
    id,
    peers: [...peers],
    phase: 'catchUp',
    learners: peers.filter((p) => !current.includes(p)),
    addresses: { ...addresses },
    startedAt: s.ticks,
    roundTarget: s.log.lastIndex,
    roundStart: s.ticks,
  };
  syncProgress(s);
  for (const learner of s.configChange.learners) sendAppend(s, ctx, learner, true);
  maybeFinishCatchUp(s, ctx);
}

/** Whether `asked` gives some member of `ids` an address other than the one in `current`. */
function movesMembers(current: AddressBook | undefined, asked: AddressBook, ids: readonly string[]): boolean {
  return ids.some((id) => {
    const a = Object.hasOwn(asked, id) ? asked[id] : undefined;
    const c = current && Object.hasOwn(current, id) ? current[id] : undefined;
    return a !== undefined && (c === undefined || c.peer !== a.peer || c.http !== a.http);
  });
}

/**
 * Thesis §4.2.1: learners catch up in rounds, each replicating what the log held when it began.
 * A round that ends within an election timeout leaves them close enough to count: C_old,new
 * goes into the log.
 */
function maybeFinishCatchUp(s: CoreState, ctx: StepContext): void {
  const c = s.configChange;
  if (c === null || c.phase !== 'catchUp') return;
  for (const id of c.learners) if ((s.progress.get(id)?.matchIndex ?? 0) < c.roundTarget) return;
  if (s.ticks - c.roundStart > s.options.electionTicks) {
    c.roundTarget = s.log.lastIndex;
    c.roundStart = s.ticks;
    return maybeFinishCatchUp(s, ctx);
  }
  c.phase = 'joint';
  const old = voters(s.config!);
  const book = { ...s.log.lastConfig()!.addresses, ...c.addresses };
  appendEntry(s, ctx, configEntry(s.log.lastIndex + 1, s.currentTerm, c.peers, old, addressesOf([...old, ...c.peers], book)));
  for (const peer of s.progress.keys()) replicate(s, ctx, peer);
}

/**
 * Leader, after the commit index moved past `before`: §6's second step. Once C_old,new is
 * committed, C_new goes into the log; once C_new is committed the change is done, peers outside
 * it are no longer replicated to, and a leader outside it steps down (handing over, §3.10).
 * Nothing to do unless the latest configuration got committed by this move (a new leader
 * passes 0: it may inherit a committed C_old,new).
 */
function advanceConfig(s: CoreState, ctx: StepContext, before: number): void {
  if (s.role !== 'leader') return;
  const latest = s.log.lastConfig()!;
  if (latest.index > s.commitIndex || latest.index <= before) return;
  if (latest.old !== undefined) {
    appendEntry(s, ctx, configEntry(s.log.lastIndex + 1, s.currentTerm, latest.peers, undefined, addressesOf(latest.peers, latest.addresses)));
    for (const peer of s.progress.keys()) replicate(s, ctx, peer);
    return;
  }
  syncProgress(s);
  const change = s.configChange;
  if (change !== null && change.phase === 'joint') {
    s.configChange = null;
    ctx.effects.push({ type: 'adminDone', id: change.id, result: null });
  }
  if (!isVoter(s.config!, s.id)) {
    const successor = bestFollower(s);
    if (successor !== null) sendTimeoutNow(s, ctx, successor);
    // No leader will replicate to us again: requests waiting on entries past the commit index
    // would wait forever. The next leader may still commit them: outcome unknown.
    const lost: number[] = [];
    for (const [index, w] of s.waiting) {
      if (index <= s.commitIndex) continue;
      lost.push(w.id);
      s.waiting.delete(index);
    }
    if (lost.length > 0) clientError(ctx, lost, 'LEADERSHIP_LOST', successor);
    // The successor as a hint, so clients asking us are redirected to it (it leads a later term).
    becomeFollower(s, ctx, s.currentTerm, successor);
  }
}

/** The voter (other than us) with the longest log we know of, or null. */
function bestFollower(s: CoreState): string | null {
  let best: string | null = null;
  let bestMatch = -1;
  for (const [id, pr] of s.progress) {
    if (!isVoter(s.config!, id) || pr.matchIndex <= bestMatch) continue;
    best = id;
    bestMatch = pr.matchIndex;
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Leadership transfer (thesis §3.10)

function onTransferLeadership(s: CoreState, ctx: StepContext, id: number, target: string | null): void {
  if (s.role !== 'leader') return clientError(ctx, [id], 'NOT_LEADER', s.leader);
  if (s.transfer !== null) return clientError(ctx, [id], 'TRANSFER_FAILED', null, 'a leadership transfer is already in progress');
  if (target === s.id) {
    ctx.effects.push({ type: 'adminDone', id, result: s.id });
    return;
  }
  const to = target ?? bestFollower(s);
  if (to === null) return clientError(ctx, [id], 'TRANSFER_FAILED', null, 'there is no other voter to hand over to');
  if (!isVoter(s.config!, to) || !s.progress.has(to)) {
    return clientError(ctx, [id], 'TRANSFER_FAILED', null, `${to} is not a voter of the current configuration`);
  }
  // §3.10: stop taking commands, bring the target up to date, then tell it to campaign; give
  // up after an election timeout.
  s.transfer = { id, target: to, deadline: s.ticks + s.options.electionTicks, sent: false };
  maybeSendTimeoutNow(s, ctx);
  if (!s.transfer.sent) replicate(s, ctx, to);
}

function maybeSendTimeoutNow(s: CoreState, ctx: StepContext): void {
  const t = s.transfer;
  if (t === null || t.sent || (s.progress.get(t.target)?.matchIndex ?? 0) < s.log.lastIndex) return;
  t.sent = true;
  sendTimeoutNow(s, ctx, t.target);
}

function sendTimeoutNow(s: CoreState, ctx: StepContext, to: string): void {
  // The target's RequestVote may not be ignored (it carries `transfer`), so voters may elect it
  // inside our lease, even after this transfer gives up (the RequestVote may be delayed): no
  // more lease reads in this term (§6.4.1), only ReadIndex rounds.
  giveUpLease(s.reads);
  ctx.effects.push({ type: 'send', message: { type: 'timeoutNow', term: s.currentTerm, from: s.id, to } });
}

/** Leader: a follower's match index moved; a transfer or a catch-up may be waiting for it. */
function followerProgressed(s: CoreState, ctx: StepContext, peer: string): void {
  if (s.transfer?.target === peer) maybeSendTimeoutNow(s, ctx);
  if (s.configChange?.phase === 'catchUp' && s.configChange.learners.includes(peer)) maybeFinishCatchUp(s, ctx);
}

/** Leader, every tick: a transfer or a catch-up that has run out of time gives up. */
function checkAdminDeadlines(s: CoreState, ctx: StepContext): void {
  const t = s.transfer;
  if (t !== null && s.ticks >= t.deadline) {
    s.transfer = null;
    clientError(ctx, [t.id], 'TRANSFER_FAILED', null, `${t.target} did not take over within an election timeout`);
  }
  const c = s.configChange;
  if (c !== null && c.phase === 'catchUp' && s.ticks - c.startedAt >= s.options.catchUpTicks) {
    s.configChange = null;
    syncProgress(s);
    clientError(ctx, [c.id], 'CATCH_UP_TIMEOUT', null, `new peer(s) ${c.learners.join(', ')} did not catch up in time`);
  }
}

/**
 * This peer stops leading. A change still catching up never reached the log (NOT_LEADER: safe
 * to retry); one in its joint phase may yet be completed by the next leader (LEADERSHIP_LOST:
 * outcome unknown). A transfer whose TimeoutNow went out has done its part.
 */
function endLeadership(s: CoreState, ctx: StepContext, newLeader: string | null): void {
  const c = s.configChange;
  s.configChange = null;
  if (c !== null) clientError(ctx, [c.id], c.phase === 'catchUp' ? 'NOT_LEADER' : 'LEADERSHIP_LOST', newLeader);
  const t = s.transfer;
  s.transfer = null;
  if (t === null) return;
  if (t.sent) ctx.effects.push({ type: 'adminDone', id: t.id, result: t.target });
  else clientError(ctx, [t.id], 'TRANSFER_FAILED', null, 'leadership was lost before the transfer');
}

// ---------------------------------------------------------------------------------------------
// Snapshots and log compaction (§7)

/** Once enough entries have been applied since the last snapshot, ask the shell for one. */
function maybeSnapshot(s: CoreState, ctx: StepContext): void {
  const threshold = s.options.snapshotThreshold;
  if (threshold === 0 || s.snapshotting || s.lastApplied - s.log.snapshotIndex < threshold) return;
  s.snapshotting = true;
  // Last among the step's effects: the state machine has then applied exactly lastApplied.
  ctx.effects.push({ type: 'takeSnapshot', index: s.lastApplied });
}

function onSnapshotTaken(s: CoreState, ctx: StepContext, index: number, data: Uint8Array, digest: number): void {
  s.snapshotting = false;
  // An installed snapshot may have overtaken this one.
  if (index <= s.log.snapshotIndex || index > s.lastApplied) return;
  const config = s.log.lastConfig(index)!;
  const meta: SnapshotMeta = {
    index,
    term: s.log.term(index)!,
    peers: [...config.peers],
    old: config.old === undefined ? null : [...config.old],
    digest,
    size: data.length,
    ...(config.addresses === undefined ? {} : { addresses: config.addresses }),
  };
  s.snapshot = { meta, data };
  s.log.compact(meta);
  // Stored, and the entries it covers deleted, in one write; entries after it stay.
  ctx.snapshotWrite = { meta, data, discardLog: false };
}

/**
 * Leader: send `peer` the next chunk of our snapshot, or resend one that went unanswered for
 * half an election timeout. A heartbeat also carries an empty AppendEntries at our snapshot's
 * index, so the follower keeps hearing us (and acknowledging read rounds) during a long
 * transfer, and, should its log already hold that entry, it needs no snapshot at all.
 */
function sendSnapshot(s: CoreState, ctx: StepContext, peer: string, pr: Progress, heartbeat: boolean): void {
  const snap = s.snapshot;
  if (snap === null) throw new Error(`${s.id} has compacted its log without a snapshot`);
  if (pr.mode !== 'snapshot' || pr.snapshot === null || pr.snapshot.index !== snap.meta.index) becomeSnapshot(pr, snap.meta);
  const ps = pr.snapshot!;
  if (heartbeat) sendAppendEntries(s, ctx, peer, s.log.snapshotIndex, []);
  if (ps.sentAt >= 0) {
    if (s.ticks - ps.sentAt < Math.max(1, Math.floor(s.options.electionTicks / 2))) return;
    // Unanswered: resend, from where the follower last said it stands if that is earlier
    // (it may have restarted and lost what it had received).
    ps.offset = Math.min(ps.offset, ps.reported);
  }
  const end = Math.min(ps.offset + s.options.snapshotChunkBytes, snap.meta.size);
  ps.sentAt = s.ticks;
  ctx.effects.push({
    type: 'send',
    message: {
      type: 'installSnapshot',
      term: s.currentTerm,
      from: s.id,
      to: peer,
      meta: snap.meta,
      offset: ps.offset,
      data: snap.data.subarray(ps.offset, end),
      done: end === snap.meta.size,
      readSeq: s.reads.round,
    },
  });
}

function handleSnapshotReply(s: CoreState, ctx: StepContext, m: InstallSnapshotReply): void {
  const pr = s.progress.get(m.from);
  if (!pr) return;
  ackRound(s, ctx, m.from, m.readSeq);
  const ps = pr.snapshot;
  if (pr.mode !== 'snapshot' || ps === null || m.index !== ps.index || m.snapshotTerm !== ps.term) return;
  if (m.done) {
    pr.matchIndex = Math.max(pr.matchIndex, m.index);
    becomeProbe(pr, pr.matchIndex + 1);
    maybeCommit(s, ctx);
    followerProgressed(s, ctx, m.from);
    sendAppend(s, ctx, m.from, true);
    return;
  }
  // The follower holds `offset` bytes. Only an answer that moves past the chunk in flight sends
  // the next one: answers to duplicated or stale chunks must not each start a chunk of their
  // own (that multiplies the messages in flight). Anything else waits for the resend timer.
  ps.reported = m.offset;
  if (m.offset <= ps.offset) return;
  ps.offset = m.offset;
  ps.sentAt = -1;
  sendSnapshot(s, ctx, m.from, pr, false);
}

/**
 * §7 InstallSnapshot receiver (Figure 13), for a chunk of our current leader's snapshot. Chunks
 * are taken in order; the reply says how much we hold, so the leader resumes there.
 */
function handleInstallSnapshot(s: CoreState, ctx: StepContext, m: InstallSnapshot): void {
  const meta = m.meta;
  // Already covered: our log holds the snapshot's last entry (Log Matching: then all before it).
  if (meta.index <= s.commitIndex || s.log.term(meta.index) === meta.term) {
    if (s.incoming?.meta.index === meta.index) s.incoming = null;
    return replySnapshot(s, ctx, m, meta.size, true);
  }
  let inc = s.incoming;
  if (inc === null || inc.from !== m.from || inc.meta.index !== meta.index || inc.meta.term !== meta.term) {
    if (m.offset !== 0) return replySnapshot(s, ctx, m, 0, false);
    inc = s.incoming = { from: m.from, meta, chunks: [], received: 0 };
  }
  if (m.offset === inc.received && m.data.length > 0) {
    inc.chunks.push(m.data);
    inc.received += m.data.length;
  }
  if (inc.received < meta.size || !m.done) return replySnapshot(s, ctx, m, inc.received, false);
  s.incoming = null;
  installSnapshot(s, ctx, { meta, data: concatChunks(inc.chunks, meta.size) });
  replySnapshot(s, ctx, m, meta.size, true);
}

function concatChunks(chunks: Uint8Array[], size: number): Uint8Array {
  if (chunks.length === 1 && chunks[0]!.length === size) return chunks[0]!;
  const data = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    data.set(c, at);
    at += c.length;
  }
  return data;
}

/**
 * Take the leader's snapshot as our state (§7): the state machine is restored from it, and our
 * log keeps what follows the snapshot's last entry if it holds that entry, else is discarded.
 */
function installSnapshot(s: CoreState, ctx: StepContext, snapshot: Snapshot): void {
  const meta = snapshot.meta;
  const keep = s.log.term(meta.index) === meta.term;
  if (keep) s.log.compact(meta);
  else s.log.reset(meta);
  const top = s.log.lastIndex;
  if (s.durableIndex > top) s.durableIndex = top;
  for (const w of s.pendingWrites) if (w.lastIndex > top) w.lastIndex = top;
  // Requests waiting on entries the snapshot covers (or that are gone): outcome unknown.
  const lost: number[] = [];
  for (const [index, w] of s.waiting) {
    if (index <= meta.index || index > top) {
      lost.push(w.id);
      s.waiting.delete(index);
    }
  }
  if (lost.length > 0) clientError(ctx, lost, 'LEADERSHIP_LOST', null);
  s.commitIndex = Math.max(s.commitIndex, meta.index);
  s.lastApplied = meta.index;
  s.fetchingApply = false;
  s.snapshot = snapshot;
  refreshConfig(s);
  ctx.snapshotWrite = { meta, data: snapshot.data, discardLog: !keep };
  ctx.effects.push({ type: 'restore', snapshot });
  releaseAppliedReads(s, ctx);
}

function replySnapshot(s: CoreState, ctx: StepContext, m: InstallSnapshot, offset: number, done: boolean): void {
  const reply: InstallSnapshotReply = {
    type: 'installSnapshotReply',
    term: s.currentTerm,
    from: s.id,
    to: m.from,
    index: m.meta.index,
    snapshotTerm: m.meta.term,
    offset,
    done,
    readSeq: m.readSeq,
  };
  // `done` claims the snapshot (or the entries covering it) is stored: only once durable.
  if (done) ctx.afterDurable.push(reply);
  else ctx.effects.push({ type: 'send', message: reply });
}

// ---------------------------------------------------------------------------------------------
// Log, durability, commitment, application

function appendEntry(s: CoreState, ctx: StepContext, e: Entry): void {
  s.log.push(e);
  ctx.appended.push(e);
  if (e.type === 'config') {
    // §6: a configuration rules from the moment it is in the log, committed or not.
    s.config = configOf(e);
    syncProgress(s, e.index);
  }
}

/** The configuration a config entry stands for: joint when it carries the old voters. */
function configOf(e: ConfigEntry): Config {
  return e.old === undefined ? stableConfig(e.peers) : jointConfig(e.old, e.peers);
}

function truncateLog(s: CoreState, ctx: StepContext, from: number): void {
  s.log.truncateFrom(from);
  // The disk keeps the old suffix until this step's write lands: what matches is below `from`.
  if (s.durableIndex >= from) s.durableIndex = from - 1;
  for (const w of s.pendingWrites) if (w.lastIndex >= from) w.lastIndex = from - 1;
  // Entries appended earlier in this same step are gone too.
  ctx.appended = ctx.appended.filter((e) => e.index < from);
  ctx.truncateFrom = ctx.truncateFrom === 0 ? from : Math.min(ctx.truncateFrom, from);
  refreshConfig(s);
  // Requests waiting on overwritten entries: their outcome is now unknown (Figure 8).
  const lost: number[] = [];
  for (const [index, w] of s.waiting) {
    if (index >= from) {
      lost.push(w.id);
      s.waiting.delete(index);
    }
  }
  if (lost.length > 0) ctx.effects.push({ type: 'clientError', ids: lost, code: 'LEADERSHIP_LOST', leader: null });
}

function refreshConfig(s: CoreState): void {
  const e = s.log.lastConfig();
  s.config = e ? configOf(e) : null;
}

function onPersisted(s: CoreState, ctx: StepContext, seq: number): void {
  if (seq <= s.persistedSeq) return;
  s.persistedSeq = seq;
  while (s.pendingWrites.length > 0 && s.pendingWrites[0]!.seq <= seq) {
    const w = s.pendingWrites.shift()!;
    s.durableIndex = w.lastIndex;
    for (const message of w.messages) ctx.effects.push({ type: 'send', message });
    if (w.selfVoteTerm === s.currentTerm && s.role === 'candidate') {
      s.votes.set(s.id, true);
      countVotes(s, ctx);
    }
  }
  // The leader counts itself toward a quorum only for entries on its own disk.
  if (s.role === 'leader') maybeCommit(s, ctx);
}

/** §5.3/§5.4.2: commit the highest index stored on a quorum, if it is of our term. */
function maybeCommit(s: CoreState, ctx: StepContext): void {
  if (s.role !== 'leader' || s.config === null) return;
  const config: Config = s.config;
  const candidate = committedIndex(config, (id) =>
    id === s.id ? s.durableIndex : (s.progress.get(id)?.matchIndex ?? 0),
  );
  if (candidate <= s.commitIndex) return;
  // §5.4.2: never commit an entry of an earlier term by counting replicas.
  if (s.log.term(candidate) !== s.currentTerm) return;
  const before = s.commitIndex;
  s.commitIndex = candidate;
  applyCommitted(s, ctx);
  advanceConfig(s, ctx, before);
}

function applyCommitted(s: CoreState, ctx: StepContext): void {
  if (s.commitIndex <= s.lastApplied) return;
  const from = s.lastApplied + 1;
  if (from >= s.log.firstCachedIndex) return applyEntries(s, ctx, s.log.slice(from, s.commitIndex));
  // Committed entries no longer in memory (a restarted peer with a long log): fetch them.
  if (s.fetchingApply) return;
  s.fetchingApply = true;
  const to = Math.min(s.commitIndex, s.log.firstCachedIndex - 1, from + s.options.maxEntriesPerAppend - 1);
  ctx.effects.push({ type: 'fetch', from, to, reason: { kind: 'apply' } });
}

/** Apply committed `entries`, which continue lastApplied, and answer the requests waiting for them. */
function applyEntries(s: CoreState, ctx: StepContext, entries: Entry[]): void {
  const requestIds: (number | null)[] = new Array(entries.length).fill(null);
  let lost: number[] | null = null;
  if (s.waiting.size > 0) {
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i]!;
      const w = s.waiting.get(e.index);
      if (w === undefined) continue;
      s.waiting.delete(e.index);
      if (w.term === e.term) requestIds[i] = w.id;
      else (lost ??= []).push(w.id);
    }
  }
  s.lastApplied = entries[entries.length - 1]!.index;
  ctx.effects.push({ type: 'apply', entries, requestIds });
  if (lost) ctx.effects.push({ type: 'clientError', ids: lost, code: 'LEADERSHIP_LOST', leader: null });
  releaseAppliedReads(s, ctx);
  // A new leader serves reads once it has committed an entry of its term (§6.4 step 1).
  if (s.role === 'leader') startReadRound(s, ctx);
}

// ---------------------------------------------------------------------------------------------
// Linearizable reads: ReadIndex (thesis §6.4)

function onRead(s: CoreState, ctx: StepContext, ids: number[]): void {
  if (ids.length === 0) return;
  if (s.role === 'leader') {
    if (holdsLease(s)) {
      s.reads.awaitingApply.push({ readIndex: s.commitIndex, ids });
      return releaseAppliedReads(s, ctx);
    }
    s.reads.waiting.push({ kind: 'local', ids });
    return startReadRound(s, ctx);
  }
  if (s.role === 'follower' && s.leader !== null) {
    // A follower asks the leader for a read index, then serves the reads itself.
    holdForwarded(s.reads, randomForwardId(s), ids);
    return forwardHeldReads(s, ctx);
  }
  ctx.effects.push({ type: 'clientError', ids, code: 'NOT_LEADER', leader: s.leader });
}

/**
 * A follower that knows its leader asks it for a read index for the reads it holds: those it
 * has not asked this leader about, and those asked more than a heartbeat interval ago and
 * still unanswered (the request or its answer was lost), as one request (`takeDueForward`).
 * Forward ids are random, not a counter: a counter restarts with the peer, and a late answer
 * to its previous incarnation's request would then pass for an answer to a new one.
 */
function forwardHeldReads(s: CoreState, ctx: StepContext): void {
  if (s.role !== 'follower' || s.leader === null || s.reads.forwarded.size === 0) return;
  const id = takeDueForward(s.reads, s.leader, s.ticks, s.options.heartbeatTicks);
  if (id === null) return;
  ctx.effects.push({
    type: 'send',
    message: { type: 'readIndex', term: s.currentTerm, from: s.id, to: s.leader, id },
  });
}

function randomForwardId(s: CoreState): number {
  const hi = nextRandom(s.rngSeed);
  const lo = nextRandom(hi.seed);
  s.rngSeed = lo.seed;
  return Math.floor(hi.value * 2 ** 21) * 2 ** 32 + Math.floor(lo.value * 2 ** 32);
}

/**
 * §6.4: (1) wait until an entry of this term is committed; (2) take the commit index as the
 * read index; (3) confirm leadership with one round of heartbeats acknowledged by a quorum.
 * One round at a time: reads arriving while it is in flight share the next one.
 */
function startReadRound(s: CoreState, ctx: StepContext): void {
  const r = s.reads;
  if (s.role !== 'leader' || r.inRound !== null || r.waiting.length === 0) return;
  if (s.log.term(s.commitIndex) !== s.currentTerm) return;
  openRound(r, s.options, s.ticks, s.commitIndex);
  if (!confirmReadRound(s, ctx)) {
    for (const peer of s.progress.keys()) sendAppend(s, ctx, peer, true);
  }
}

/** Finish the round in flight if a quorum has acknowledged it; true if it finished. */
function confirmReadRound(s: CoreState, ctx: StepContext): boolean {
  if (s.config === null) return false;
  const confirmed = takeConfirmedRound(s.reads, s.config, s.id);
  if (confirmed === null) return false;
  // §6.4 step 4: our reads are served once the read index is applied (usually it already is);
  // a follower's forwarded ones get the read index.
  for (const b of confirmed.batches) if (b.kind === 'forwarded') replyReadIndex(s, ctx, b.from, b.id, confirmed.readIndex, true);
  releaseAppliedReads(s, ctx);
  startReadRound(s, ctx);
  return true;
}

function replyReadIndex(s: CoreState, ctx: StepContext, to: string, id: number, readIndex: number, ok: boolean): void {
  ctx.effects.push({
    type: 'send',
    message: { type: 'readIndexReply', term: s.currentTerm, from: s.id, to, id, readIndex, ok },
  });
}

function handleReadIndexReply(s: CoreState, ctx: StepContext, m: ReadIndexReply): void {
  const held = s.reads.forwarded.get(m.id);
  if (held === undefined) return; // answered already (answers are idempotent), or not ours
  if (!m.ok) {
    // The peer asked does not lead (any more): the reads stay held for the leader we know of,
    // asked at once if that is another peer; else at the next retry, or of the next leader.
    return forwardHeldReads(s, ctx);
  }
  const ids = takeForwarded(s.reads, m.id)!;
  s.reads.awaitingApply.push({ readIndex: m.readIndex, ids });
  releaseAppliedReads(s, ctx);
}

/** Serve reads whose confirmed read index this peer has applied. */
function releaseAppliedReads(s: CoreState, ctx: StepContext): void {
  const ready = takeAppliedReads(s.reads, s.lastApplied);
  if (ready.length > 0) ctx.effects.push({ type: 'readReady', ids: ready });
}

/**
 * Our leadership ends: its rounds can confirm nothing more. Our clients' reads waiting for one
 * are held for the next leader (`forwardHeldReads`), not failed; the followers' requests are
 * refused, and they ask the next leader themselves. Reads that already hold a confirmed read
 * index stay until it is applied.
 */
function endReadRounds(s: CoreState, ctx: StepContext): void {
  const { local, refused } = takeUnconfirmedReads(s.reads);
  for (const b of refused) replyReadIndex(s, ctx, b.from, b.id, 0, false);
  if (local.length > 0) holdForwarded(s.reads, randomForwardId(s), local);
}

