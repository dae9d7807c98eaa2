/**
 * Helpers for driving single cores by hand (test/core-paper.spec.ts): build a core from a
 * recovered log, step it, pick effects apart, acknowledge its writes, elect it.
 */
import { createCore, step, type CoreOptions, type CoreState, type Effect, type Input } from '../../src/core/index.js';
import type {
  AppendEntries,
  AppendEntriesReply,
  CommandEntry,
  ConfigEntry,
  Entry,
  PeerMessage,
  PersistRequest,
  RequestVote,
  RequestVoteReply,
} from '../../src/messages.js';

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export function configEntry(peers: readonly string[], index = 1, term = 1): ConfigEntry {
  return { type: 'config', index, term, peers: [...peers] };
}

/** A command whose payload names its position, so equal (index, term) means equal content. */
export function command(index: number, term: number, tag = ''): CommandEntry {
  return { type: 'command', index, term, data: encoder.encode(`${index}/${term}${tag}`) };
}

export function payload(e: Entry): string {
  return e.type === 'command' ? decoder.decode(e.data) : e.type;
}

/**
 * A log as in the paper's figures: one term per index. Index 1 is the configuration entry
 * (every figure's first entry has term 1); the rest are commands.
 */
export function logOfTerms(peers: readonly string[], terms: readonly number[]): Entry[] {
  if (terms[0] !== 1) throw new Error('index 1 holds the configuration, of term 1');
  return terms.map((t, i) => (i === 0 ? configEntry(peers) : command(i + 1, t)));
}

export function termsOf(core: CoreState): number[] {
  return core.log.slice(1, core.log.lastIndex).map((e) => e.term);
}

export class Peer {
  core: CoreState;
  /** Every effect this peer produced, oldest first. */
  readonly history: Effect[] = [];

  constructor(init: {
    id: string;
    peers: readonly string[];
    term?: number;
    votedFor?: string | null;
    entries?: readonly Entry[];
    options?: Partial<CoreOptions>;
    seed?: number;
  }) {
    this.core = createCore({
      id: init.id,
      seed: init.seed ?? 42,
      // The paper's §5.2 elections: a timed-out follower campaigns at once (no pre-vote, §9.6).
      options: { preVote: false, ...init.options },
      term: init.term ?? 1,
      votedFor: init.votedFor ?? null,
      entries: init.entries ?? [configEntry(init.peers)],
    });
    // The paper's scenarios start from logs as the figures draw them, long after any leader
    // was last heard: no §4.2.3 guard from the restart.
    this.core.voteGuard = 0;
  }

  get id(): string {
    return this.core.id;
  }

  step(input: Input): Effect[] {
    const r = step(this.core, input);
    this.core = r.state;
    this.history.push(...r.effects);
    return r.effects;
  }

  receive(m: PeerMessage): Effect[] {
    return this.step({ type: 'message', message: m });
  }

  tick(n = 1): Effect[] {
    const out: Effect[] = [];
    for (let k = 0; k < n; k++) out.push(...this.step({ type: 'tick' }));
    return out;
  }

  /** Tick until the role changes to `role`; returns the ticks taken and the effects. */
  tickUntil(role: CoreState['role'], max = 1000): { ticks: number; effects: Effect[] } {
    const effects: Effect[] = [];
    for (let ticks = 1; ticks <= max; ticks++) {
      effects.push(...this.step({ type: 'tick' }));
      if (this.core.role === role) return { ticks, effects };
    }
    throw new Error(`${this.id} did not become ${role} in ${max} ticks`);
  }

  /** Acknowledge every write issued so far (the log actor made them durable). */
  ackAll(): Effect[] {
    if (this.core.persistSeq === this.core.persistedSeq) return [];
    return this.step({ type: 'persisted', seq: this.core.persistSeq });
  }
}

export function sends(effects: readonly Effect[]): PeerMessage[] {
  return effects.flatMap((e) => (e.type === 'send' ? [e.message] : []));
}

export function appends(effects: readonly Effect[], to?: string): AppendEntries[] {
  return sends(effects).filter((m): m is AppendEntries => m.type === 'appendEntries' && (to === undefined || m.to === to));
}

export function appendReplies(effects: readonly Effect[]): AppendEntriesReply[] {
  return sends(effects).filter((m): m is AppendEntriesReply => m.type === 'appendEntriesReply');
}

export function voteRequests(effects: readonly Effect[]): RequestVote[] {
  return sends(effects).filter((m): m is RequestVote => m.type === 'requestVote');
}

export function voteReplies(effects: readonly Effect[]): RequestVoteReply[] {
  return sends(effects).filter((m): m is RequestVoteReply => m.type === 'requestVoteReply');
}

export function persists(effects: readonly Effect[]): PersistRequest[] {
  return effects.flatMap((e) => (e.type === 'persist' ? [e.write] : []));
}

export function applied(effects: readonly Effect[]): Entry[] {
  return effects.flatMap((e) => (e.type === 'apply' ? e.entries : []));
}

export function grant(from: string, to: string, term: number, granted = true): RequestVoteReply {
  return { type: 'requestVoteReply', term, from, to, granted };
}

/**
 * Make `p` leader of its next term: tick until it campaigns, make its vote durable, and
 * feed granted votes from `voters` (enough for a majority with its own). Returns the
 * effects of becoming leader (the no-op's write and the first AppendEntries).
 */
export function elect(p: Peer, voters: readonly string[]): Effect[] {
  p.tickUntil('candidate');
  const effects = [...p.ackAll()];
  for (const v of voters) {
    if (p.core.role === 'leader') break;
    effects.push(...p.receive(grant(v, p.id, p.core.currentTerm)));
  }
  if (p.core.role !== 'leader') throw new Error(`${p.id} was not elected`);
  return effects;
}

/**
 * Deliver messages among `peers` only, first in first out, each write acknowledged at once,
 * until nobody has anything left to say; messages to anyone else are dropped. Returns how
 * many AppendEntries were rejected on the way (the rounds of the §5.3 back-off).
 */
export function settle(peers: readonly Peer[], first: readonly PeerMessage[], maxMessages = 10_000): { rejections: number } {
  const byId = new Map(peers.map((p) => [p.id, p]));
  const queue = first.filter((m) => byId.has(m.to) && byId.has(m.from));
  let rejections = 0;
  for (let n = 0; queue.length > 0; n++) {
    if (n > maxMessages) throw new Error('messages do not settle');
    const m = queue.shift()!;
    if (m.type === 'appendEntriesReply' && !m.success) rejections++;
    const target = byId.get(m.to)!;
    const out = [...target.receive(m), ...target.ackAll()];
    for (const s of sends(out)) if (byId.has(s.to)) queue.push(s);
  }
  return { rejections };
}
