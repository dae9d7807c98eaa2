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
 * dispatches to the handler of the current role; only the `become*` functions change the
 * role. Messages whose meaning presumes durable state (votes granted, AppendEntries
 * answers) wait in `pendingWrites` until the log actor acknowledges the write (§5.2, §5.3;
 * thesis §3.8).
 */
import { allowConfig, committedIndex, hasQuorum, isVoter, stableConfig, voteResult, voters, type Config } from '../config.js';
import type {
  AppendEntries,
  AppendEntriesReply,
  Entry,
  OpRequest,
  PeerMessage,
  ReadIndexReply,
  RequestVote,
  RequestVoteReply,
} from '../messages.js';
import { entryBytes, RaftLog } from './raft-log.js';
import { nextRandom } from './rng.js';
import type { CoreOptions, CoreState, Effect, FetchReason, Input, Progress, Role, Status, StepResult } from './types.js';
import { DEFAULT_CORE_OPTIONS } from './types.js';

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
}

export function validateCoreOptions(o: CoreOptions): CoreOptions {
  const positive = (name: Exclude<keyof CoreOptions, 'leaseReads'>) => {
    if (!Number.isSafeInteger(o[name]) || o[name] < 1) {
      throw new RangeError(`options.${name} must be a positive integer, got ${String(o[name])}`);
    }
  };
  positive('heartbeatTicks');
  positive('electionTicks');
  positive('maxEntriesPerAppend');
  positive('maxInflightAppends');
  positive('maxAppendBytes');
  positive('maxInflightBytes');
  positive('maxCachedEntries');
  positive('maxCachedBytes');
  if (o.electionTicks <= o.heartbeatTicks) {
    throw new RangeError('options.electionTicks must be greater than options.heartbeatTicks');
  }
  if (typeof o.leaseReads !== 'boolean') throw new TypeError(`options.leaseReads must be a boolean, got ${String(o.leaseReads)}`);
  if (typeof o.clockDriftBound !== 'number' || !Number.isFinite(o.clockDriftBound) || o.clockDriftBound < 1) {
    throw new RangeError(`options.clockDriftBound must be a number >= 1, got ${String(o.clockDriftBound)}`);
  }
  if (o.leaseReads && leaseTicks(o) < 1) {
    throw new RangeError(
      `lease reads need a lease of at least one tick: (electionTicks - 1) / clockDriftBound - 1 = ${leaseTicks(o)}; raise electionTicks or lower clockDriftBound`,
    );
  }
  return o;
}

/**
 * How long a lease lasts, in the leader's ticks from the start of a heartbeat round that a
 * quorum acknowledged (thesis §6.4.1). Each acknowledging follower ignores RequestVotes for an
 * election timeout of its own clock after it heard the round (§4.2.3, `voteGuard`): at least
 * electionTicks - 1 whole ticks of its clock, which the leader's clock may count as little as
 * (electionTicks - 1) / clockDriftBound; one more tick is taken off because the leader's
 * count of the round's start may lag the real start by up to one tick.
 */
export function leaseTicks(o: CoreOptions): number {
  return Math.floor((o.electionTicks - 1) / o.clockDriftBound) - 1;
}

/** A core for a peer starting (or restarting from what its log store recovered). */
export function createCore(init: CoreInit): CoreState {
  const options = validateCoreOptions({ ...DEFAULT_CORE_OPTIONS, ...init.options });
  const log = init.log ?? new RaftLog(init.entries ?? []);
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
    // §5.3 volatile state starts at 0 after a restart; the leader tells us the commit index.
    commitIndex: 0,
    lastApplied: 0,
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
    reads: {
      round: 0,
      acked: new Map(),
      waiting: [],
      inRound: null,
      forwarded: new Map(),
      awaitingApply: [],
      leaseRounds: [],
      leaseUntil: 0,
    },
    fetchingApply: false,
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
  };
}

/** True while the peer has no configuration and no log: it may be bootstrapped. */
export function isBlank(s: CoreState): boolean {
  return s.config === null && s.log.lastIndex === 0;
}

export type ConfigDecision =
  | { kind: 'bootstrap' }
  | { kind: 'unchanged' }
  | { kind: 'refused'; code: 'CONFIG_INVALID' | 'CONFIG_CHANGE_UNSUPPORTED'; message: string };

/**
 * What a setConfig(peers) asked of this peer means (rafter's set_config): bootstrap a blank
 * peer, nothing for the configuration it already has, or a refusal. Membership changes on a
 * running cluster (§6) are not supported yet.
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
        return { kind: 'refused', code: 'CONFIG_CHANGE_UNSUPPORTED', message: 'a configuration change is in progress' };
    }
  }
  if (s.config !== null) {
    return { kind: 'refused', code: 'CONFIG_CHANGE_UNSUPPORTED', message: 'membership changes on a running cluster are not supported yet' };
  }
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
      onPropose(state, ctx, input.requests);
      break;
    case 'persisted':
      onPersisted(state, ctx, input.seq);
      break;
    case 'bootstrap':
      onBootstrap(state, ctx, input.peers);
      break;
    case 'read':
      onRead(state, ctx, input.ids);
      break;
    case 'fetched':
      onFetched(state, ctx, input.reason, input.entries);
      break;
    default:
      assertNever(input);
  }
  finish(state, ctx);
  return { state, effects: ctx.effects };
}

function assertNever(x: never): never {
  throw new Error(`unhandled input ${JSON.stringify(x)}`);
}

/** Turn the step's gathered writes into one persist effect, and release what may go now. */
function finish(s: CoreState, ctx: StepContext): void {
  const effects = ctx.effects;
  if (ctx.hardStateDirty || ctx.truncateFrom > 0 || ctx.appended.length > 0) {
    const seq = ++s.persistSeq;
    effects.unshift({
      type: 'persist',
      write: {
        type: 'persist',
        seq,
        term: s.currentTerm,
        votedFor: s.votedFor,
        truncateFrom: ctx.truncateFrom,
        entries: ctx.appended,
      },
    });
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
}

// ---------------------------------------------------------------------------------------------
// Time

function onTick(s: CoreState, ctx: StepContext, ticks: number): void {
  if (!(Number.isSafeInteger(ticks) && ticks >= 1)) throw new RangeError(`tick: ticks must be a positive integer, got ${ticks}`);
  s.ticks += ticks;
  s.voteGuard = Math.max(0, s.voteGuard - ticks);
  if (s.role === 'leader') {
    if (!checkQuorum(s, ctx, ticks)) return;
    s.heartbeatElapsed += ticks;
    if (s.heartbeatElapsed >= s.options.heartbeatTicks) {
      s.heartbeatElapsed = 0;
      // With lease reads every heartbeat is a round whose acknowledgement renews the lease.
      if (s.options.leaseReads) nextRound(s);
      for (const peer of s.progress.keys()) sendAppend(s, ctx, peer, true);
    }
    return;
  }
  // §5.2: a follower or candidate that hears nothing for an election timeout campaigns.
  s.electionElapsed += ticks;
  if (s.electionElapsed >= s.electionTimeout) {
    if (s.config !== null && isVoter(s.config, s.id)) campaign(s, ctx);
    else resetElectionTimer(s);
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
  if (s.role === 'leader' || term > s.currentTerm || leader !== s.leader) abortReads(s, ctx);
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

/** §5.2: increment the term, vote for self, ask every other voter. */
function campaign(s: CoreState, ctx: StepContext): void {
  if (s.role === 'leader') throw new Error('illegal transition: leader -> candidate');
  const config = s.config!;
  abortReads(s, ctx);
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
  s.reads.acked.clear();
  s.reads.leaseRounds = [];
  s.reads.leaseUntil = 0;
  const next = s.log.lastIndex + 1;
  s.progress.clear();
  for (const peer of voters(s.config!)) {
    if (peer === s.id) continue;
    s.progress.set(peer, { nextIndex: next, matchIndex: 0, mode: 'probe', probeSent: false, inflight: [], inflightBytes: 0, fetching: false });
  }
  // §8: a no-op of the new term, so entries of earlier terms get committed (§5.4.2).
  appendEntry(s, ctx, { type: 'noop', index: next, term: s.currentTerm });
  for (const peer of s.progress.keys()) sendAppend(s, ctx, peer, true);
  maybeCommit(s, ctx);
}

// ---------------------------------------------------------------------------------------------
// Messages

function onMessage(s: CoreState, ctx: StepContext, m: PeerMessage): void {
  if (m.to !== s.id || m.from === s.id || !wellFormed(m)) return;
  // Thesis §4.2.3: while a current leader is heard (or we lead), a RequestVote of a higher
  // term is ignored, neither adopting its term nor answering it. A removed or partitioned
  // peer then cannot depose a healthy leader this way, and a leader's lease (§6.4.1) holds.
  if (m.type === 'requestVote' && m.term > s.currentTerm && (s.role === 'leader' || s.voteGuard > 0)) return;
  // §5.1: a higher term makes us a follower of that term; a lower one marks a stale sender.
  if (m.term > s.currentTerm) {
    becomeFollower(s, ctx, m.term, m.type === 'appendEntries' ? m.from : null);
  } else if (m.term < s.currentTerm) {
    // Answer stale RPCs so the sender learns the new term; ignore stale replies.
    if (m.type === 'requestVote') replyVote(s, ctx, m, false);
    else if (m.type === 'appendEntries') replyAppend(s, ctx, m, false, 0);
    else if (m.type === 'readIndex') replyReadIndex(s, ctx, m.from, m.id, 0, false);
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
        // A current leader is heard: remember it and stay a follower (§5.2).
        if (s.leader !== m.from) s.leader = m.from;
        s.electionElapsed = 0;
        return handleAppendEntries(s, ctx, m);
      case 'requestVoteReply':
      case 'appendEntriesReply':
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
        // §5.2: another peer won this term's election.
        becomeFollower(s, ctx, m.term, m.from);
        return handleAppendEntries(s, ctx, m);
      case 'requestVoteReply':
        s.votes.set(m.from, m.granted);
        return countVotes(s, ctx);
      case 'appendEntriesReply':
      case 'readIndexReply':
        return;
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
        // Election Safety makes a second leader in our term impossible; ignore it loudly
        // in tests by never answering.
        return;
      case 'requestVoteReply':
      case 'readIndexReply':
        return;
      case 'appendEntriesReply':
        return handleAppendReply(s, ctx, m);
      case 'readIndex':
        if (holdsLease(s)) return replyReadIndex(s, ctx, m.from, m.id, s.commitIndex, true);
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

/** §5.3 AppendEntries receiver, for a message of our current term from its leader. */
function handleAppendEntries(s: CoreState, ctx: StepContext, m: AppendEntries): void {
  const log = s.log;
  s.voteGuard = s.options.electionTicks;
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
  // Any answer of our term acknowledges us as leader as of the round it echoes (§6.4).
  if (m.readSeq > (s.reads.acked.get(m.from) ?? 0)) {
    s.reads.acked.set(m.from, m.readSeq);
    if (s.options.leaseReads) extendLease(s);
    confirmReadRound(s, ctx);
  }
  if (m.success) {
    if (m.matchIndex > pr.matchIndex) pr.matchIndex = m.matchIndex;
    if (pr.nextIndex <= pr.matchIndex) pr.nextIndex = pr.matchIndex + 1;
    if (pr.mode === 'probe') {
      pr.mode = 'replicate';
      pr.inflight = [];
      pr.inflightBytes = 0;
    } else {
      while (pr.inflight.length > 0 && pr.inflight[0]!.last <= m.matchIndex) pr.inflightBytes -= pr.inflight.shift()!.bytes;
    }
    pr.probeSent = false;
    maybeCommit(s, ctx);
    replicate(s, ctx, m.from);
    return;
  }
  // Rejected. A rejection of an index we know matches, or of an older probe, is stale.
  if (m.rejectedIndex <= pr.matchIndex) return;
  if (pr.mode === 'probe' && m.rejectedIndex !== pr.nextIndex - 1) return;
  // §5.3 fast back-off: skip the follower's whole conflicting term at once.
  let next = m.conflictIndex;
  if (m.conflictTerm > 0) {
    const ours = s.log.lastIndexOfTerm(m.conflictTerm, m.rejectedIndex);
    if (ours > 0) next = ours + 1;
  }
  pr.nextIndex = Math.max(pr.matchIndex + 1, Math.min(next, m.rejectedIndex));
  pr.mode = 'probe';
  pr.inflight = [];
  pr.inflightBytes = 0;
  pr.probeSent = false;
  sendAppend(s, ctx, m.from, true);
}

/** Send one AppendEntries to `peer` if its progress allows; true if entries were sent. */
function sendAppend(s: CoreState, ctx: StepContext, peer: string, heartbeat: boolean): boolean {
  const pr = s.progress.get(peer)!;
  const log = s.log;
  const windowOpen = isWindowOpen(s, pr, heartbeat);
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

/** The window per follower is bounded in messages and in bytes. */
function isWindowOpen(s: CoreState, pr: Progress, heartbeat: boolean): boolean {
  const o = s.options;
  return pr.mode === 'probe'
    ? heartbeat || !pr.probeSent
    : pr.inflight.length < o.maxInflightAppends && pr.inflightBytes < o.maxInflightBytes;
}

/**
 * Send an AppendEntries from `pr.nextIndex` with as many of `entries` (which start there) as
 * the byte limit allows, at least one, and count it in the window; true if entries were sent.
 */
function sendEntries(s: CoreState, ctx: StepContext, peer: string, pr: Progress, entries: Entry[]): boolean {
  let bytes = 0;
  for (let k = 0; k < entries.length; k++) {
    const size = entryBytes(entries[k]!);
    if (k > 0 && bytes + size > s.options.maxAppendBytes) {
      entries = entries.slice(0, k);
      break;
    }
    bytes += size;
  }
  const prevLogIndex = pr.nextIndex - 1;
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
  if (pr.mode === 'probe') {
    pr.probeSent = true;
    return false;
  }
  if (entries.length === 0) return false;
  const last = entries[entries.length - 1]!.index;
  pr.nextIndex = last + 1;
  pr.inflight.push({ last, bytes });
  pr.inflightBytes += bytes;
  return true;
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
    } else if (s.lastApplied < s.commitIndex && s.lastApplied + 1 < s.log.firstCachedIndex) {
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
    while (usable.length > 0 && isWindowOpen(s, pr, false)) {
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

function onPropose(s: CoreState, ctx: StepContext, requests: OpRequest[]): void {
  if (requests.length === 0) return;
  if (s.role !== 'leader') {
    ctx.effects.push({ type: 'clientError', ids: requests.map((r) => r.id), code: 'NOT_LEADER', leader: s.leader });
    return;
  }
  for (const r of requests) {
    const index = s.log.lastIndex + 1;
    appendEntry(s, ctx, { type: 'command', index, term: s.currentTerm, data: r.command });
    s.waiting.set(index, { term: s.currentTerm, id: r.id });
  }
  // §10.2.1 of the thesis: replicate while our own write is in flight.
  for (const peer of s.progress.keys()) replicate(s, ctx, peer);
  maybeCommit(s, ctx);
}

function onBootstrap(s: CoreState, ctx: StepContext, peers: string[]): void {
  if (!isBlank(s)) throw new Error('bootstrap of a peer that already has a log');
  // The configuration entry gets a term of its own that we claim by voting for ourselves
  // in it, so no other leader can write a different entry at index 1 in that term.
  s.currentTerm += 1;
  s.votedFor = s.id;
  ctx.hardStateDirty = true;
  appendEntry(s, ctx, { type: 'config', index: 1, term: s.currentTerm, peers: [...peers] });
  if (isVoter(s.config!, s.id)) campaign(s, ctx);
}

// ---------------------------------------------------------------------------------------------
// Log, durability, commitment, application

function appendEntry(s: CoreState, ctx: StepContext, e: Entry): void {
  s.log.push(e);
  ctx.appended.push(e);
  if (e.type === 'config') s.config = stableConfig(e.peers);
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
  s.config = e && e.type === 'config' ? stableConfig(e.peers) : null;
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
  s.commitIndex = candidate;
  applyCommitted(s, ctx);
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
    // A follower asks the leader for a read index, then serves the reads itself. The id is
    // random, not a counter: a counter restarts with the peer, and a late answer to its
    // previous incarnation's request would then pass for an answer to a new one.
    const id = randomForwardId(s);
    s.reads.forwarded.set(id, ids);
    ctx.effects.push({
      type: 'send',
      message: { type: 'readIndex', term: s.currentTerm, from: s.id, to: s.leader, id },
    });
    return;
  }
  ctx.effects.push({ type: 'clientError', ids, code: 'NOT_LEADER', leader: s.leader });
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
  r.inRound = { round: nextRound(s), readIndex: s.commitIndex, batches: r.waiting };
  r.waiting = [];
  if (!confirmReadRound(s, ctx)) {
    for (const peer of s.progress.keys()) sendAppend(s, ctx, peer, true);
  }
}

/** Finish the round in flight if a quorum has acknowledged it; true if it finished. */
function confirmReadRound(s: CoreState, ctx: StepContext): boolean {
  const r = s.reads;
  const current = r.inRound;
  if (current === null || s.config === null) return false;
  if (!hasQuorum(s.config, (id) => id === s.id || (r.acked.get(id) ?? 0) >= current.round)) return false;
  r.inRound = null;
  // §6.4 step 4: our reads are served once the read index is applied (usually it already is).
  for (const b of current.batches) {
    if (b.kind === 'local') r.awaitingApply.push({ readIndex: current.readIndex, ids: b.ids });
    else replyReadIndex(s, ctx, b.from, b.id, current.readIndex, true);
  }
  releaseAppliedReads(s, ctx);
  startReadRound(s, ctx);
  return true;
}

/** Start a new round of AppendEntries (their `readSeq`); returns its number. */
function nextRound(s: CoreState): number {
  const r = s.reads;
  const round = ++r.round;
  if (s.options.leaseReads) {
    // Rounds that could no longer give a lease (a leader that hears no quorum) are dropped.
    const lease = leaseTicks(s.options);
    while (r.leaseRounds.length > 0 && r.leaseRounds[0]!.start + lease <= s.ticks) r.leaseRounds.shift();
    r.leaseRounds.push({ round, start: s.ticks });
  }
  return round;
}

/**
 * Thesis §6.4.1: once a quorum has acknowledged a round, no other leader can be elected until
 * the lease from that round's start runs out (`leaseTicks`), so until then the commit index is
 * the latest anywhere and reads need no round of their own.
 */
function extendLease(s: CoreState): void {
  const r = s.reads;
  const acked = committedIndex(s.config!, (id) => (id === s.id ? r.round : (r.acked.get(id) ?? 0)));
  let start = -1;
  while (r.leaseRounds.length > 0 && r.leaseRounds[0]!.round <= acked) start = r.leaseRounds.shift()!.start;
  if (start >= 0) r.leaseUntil = Math.max(r.leaseUntil, start + leaseTicks(s.options));
}

/** A leader may answer reads at once: it holds a lease and has committed an entry of its term (§6.4 step 1). */
function holdsLease(s: CoreState): boolean {
  return (
    s.options.leaseReads && s.role === 'leader' && s.ticks < s.reads.leaseUntil && s.log.term(s.commitIndex) === s.currentTerm
  );
}

function replyReadIndex(s: CoreState, ctx: StepContext, to: string, id: number, readIndex: number, ok: boolean): void {
  ctx.effects.push({
    type: 'send',
    message: { type: 'readIndexReply', term: s.currentTerm, from: s.id, to, id, readIndex, ok },
  });
}

function handleReadIndexReply(s: CoreState, ctx: StepContext, m: ReadIndexReply): void {
  const ids = s.reads.forwarded.get(m.id);
  if (ids === undefined) return;
  s.reads.forwarded.delete(m.id);
  if (!m.ok) {
    ctx.effects.push({ type: 'clientError', ids, code: 'NOT_LEADER', leader: s.leader === m.from ? null : s.leader });
    return;
  }
  s.reads.awaitingApply.push({ readIndex: m.readIndex, ids });
  releaseAppliedReads(s, ctx);
}

/** Serve reads whose confirmed read index this peer has applied. */
function releaseAppliedReads(s: CoreState, ctx: StepContext): void {
  const waiting = s.reads.awaitingApply;
  if (waiting.length === 0) return;
  const ready: number[] = [];
  s.reads.awaitingApply = waiting.filter((w) => {
    if (w.readIndex > s.lastApplied) return true;
    ready.push(...w.ids);
    return false;
  });
  if (ready.length > 0) ctx.effects.push({ type: 'readReady', ids: ready });
}

/**
 * Leadership changed: reads not yet confirmed fail (NOT_LEADER, safe to retry: a read has
 * no effect). Reads that already hold a confirmed read index stay until it is applied.
 */
function abortReads(s: CoreState, ctx: StepContext): void {
  const r = s.reads;
  const failed: number[] = [];
  const batches = [...r.waiting, ...(r.inRound?.batches ?? [])];
  r.waiting = [];
  r.inRound = null;
  for (const b of batches) {
    if (b.kind === 'local') failed.push(...b.ids);
    else replyReadIndex(s, ctx, b.from, b.id, 0, false);
  }
  for (const ids of r.forwarded.values()) failed.push(...ids);
  r.forwarded.clear();
  if (failed.length > 0) ctx.effects.push({ type: 'clientError', ids: failed, code: 'NOT_LEADER', leader: null });
}

