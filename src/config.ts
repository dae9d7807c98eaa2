/**
 * Pure membership math (rafter_config's role). Nothing else in actor-raft computes a
 * majority. Imports nothing.
 *
 * A configuration is either stable (one set of voters) or joint (C_old,new, §6 of the
 * paper): during a joint phase every decision, election or commitment, needs a majority
 * of the old voters AND a majority of the new voters.
 */

export type Config =
  | { readonly kind: 'stable'; readonly voters: readonly string[] }
  | { readonly kind: 'joint'; readonly old: readonly string[]; readonly new: readonly string[] };

export function stableConfig(voters: readonly string[]): Config {
  return { kind: 'stable', voters: [...voters] };
}

export function jointConfig(oldVoters: readonly string[], newVoters: readonly string[]): Config {
  return { kind: 'joint', old: [...oldVoters], new: [...newVoters] };
}

/** Every peer that votes in `config` (the union of old and new when joint), each once. */
export function voters(config: Config): string[] {
  if (config.kind === 'stable') return [...config.voters];
  const all = [...config.old];
  for (const id of config.new) if (!all.includes(id)) all.push(id);
  return all;
}

export function isVoter(config: Config, id: string): boolean {
  return config.kind === 'stable' ? config.voters.includes(id) : config.old.includes(id) || config.new.includes(id);
}

/** Size of a majority of `n` voters: ⌊n/2⌋ + 1. */
export function quorumSize(n: number): number {
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`quorumSize needs a positive integer, got ${n}`);
  return Math.floor(n / 2) + 1;
}

function majorityHas(group: readonly string[], has: (id: string) => boolean): boolean {
  let count = 0;
  for (const id of group) if (has(id)) count++;
  return count >= quorumSize(group.length);
}

/**
 * Whether the peers for which `has` is true form a quorum of `config`: a majority of the
 * voters, or, when joint, a majority of the old voters and a majority of the new (§6).
 */
export function hasQuorum(config: Config, has: (id: string) => boolean): boolean {
  if (config.kind === 'stable') return majorityHas(config.voters, has);
  return majorityHas(config.old, has) && majorityHas(config.new, has);
}

/** The highest index that a majority of `group` has reached. */
function majorityIndex(group: readonly string[], matchOf: (id: string) => number): number {
  const sorted = group.map(matchOf).sort((a, b) => b - a);
  return sorted[quorumSize(group.length) - 1]!;
}

/**
 * The highest log index replicated on a quorum, given each voter's match index
 * (the smaller of the two majorities when joint). The caller still applies §5.4.2:
 * only an entry of the leader's current term is committed by counting.
 */
export function committedIndex(config: Config, matchOf: (id: string) => number): number {
  if (config.kind === 'stable') return majorityIndex(config.voters, matchOf);
  return Math.min(majorityIndex(config.old, matchOf), majorityIndex(config.new, matchOf));
}

export type VoteResult = 'won' | 'lost' | 'pending';

/**
 * The outcome of an election so far. `votes` maps a voter to its answer; voters missing
 * from it have not answered. Lost means a quorum can no longer be reached.
 */
export function voteResult(config: Config, votes: ReadonlyMap<string, boolean>): VoteResult {
  if (hasQuorum(config, (id) => votes.get(id) === true)) return 'won';
  if (!hasQuorum(config, (id) => votes.get(id) !== false)) return 'lost';
  return 'pending';
}

export type ConfigRefusal = 'empty' | 'duplicate' | 'notModified' | 'configInProgress';

/**
 * Whether `proposed` may replace `current` (rafter's allow_config): a non-empty list with
 * no duplicates, different from the current voters, and no change while a joint phase is
 * still in progress. `current` null means the peer is blank and may be bootstrapped.
 */
export function allowConfig(
  current: Config | null,
  proposed: readonly string[],
): { ok: true } | { ok: false; reason: ConfigRefusal } {
  if (proposed.length === 0) return { ok: false, reason: 'empty' };
  if (new Set(proposed).size !== proposed.length) return { ok: false, reason: 'duplicate' };
  if (current === null) return { ok: true };
  if (current.kind === 'joint') return { ok: false, reason: 'configInProgress' };
  if (sameMembers(current.voters, proposed)) return { ok: false, reason: 'notModified' };
  return { ok: true };
}

/**
 * The voters after adding or removing `ids` from `current` (a membership command naming only
 * the members it changes, resolved by the leader against the configuration it holds, so a
 * lagging peer's view cannot drop a member). Adding a voter or removing a stranger leaves
 * the list as it is.
 */
export function editVoters(current: readonly string[], edit: 'add' | 'remove', ids: readonly string[]): string[] {
  if (edit === 'remove') return current.filter((id) => !ids.includes(id));
  return [...current, ...ids.filter((id, i) => !current.includes(id) && ids.indexOf(id) === i)];
}

/** The same members, ignoring order (compared as multisets, so duplicates must match too). */
export function sameMembers(a: readonly string[], b: readonly string[]): boolean {
  if (a.length !== b.length) return false;
  const x = [...a].sort();
  const y = [...b].sort();
  return x.every((id, i) => id === y[i]);
}
