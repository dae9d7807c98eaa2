/**
 * The members room: membership commands that name only the member they change, for a cluster
 * whose peers run in other processes (hashicorp/raft's AddVoter/RemoveServer, etcd's
 * `member add/remove/list`). Each goes to the leader, which resolves it against the
 * configuration it holds and carries it out by joint consensus (§6, through `setConfig`'s
 * machinery in the core): a lagging peer's stale view can never drop a member, and the
 * command is idempotent (adding a member twice, or removing a stranger, changes nothing), so
 * one whose outcome is unknown (TimeoutError) is simply run again.
 *
 * The new member's addresses go into the configuration entries, so every peer learns from the
 * log where to reach it (src/transport/tcp.ts follows the configuration in force).
 */
import type { PeerStatus } from '../control.js';
import { ConfigError } from '../errors.js';
import type { AddressBook, MemberAddress } from '../messages.js';
import { parseHostPort } from '../transport/tcp.js';
import { positiveInt } from '../validate.js';
import type { NodeHandle } from './node-handle.js';
import { checkHttpUrl, DEFAULT_CONFIG_TIMEOUT_MS, validateId, type OpOptions } from './options.js';
import { running, underConfigLock } from './registry.js';
import { submitWithRetry } from './routing.js';

/** Where a new member is reached: `peer` is its `host:port` for peers, `http` its client URL (optional). */
export interface MemberAddressInput {
  peer: string;
  /** `http(s)://host:port`, or `host:port` (taken as http). */
  http?: string;
}

/** One member as `listMembers` reports it. */
export interface MemberInfo {
  id: string;
  /** Its peer address as the configuration carries it (null: not carried, e.g. an in-process peer or an older entry). */
  peer: string | null;
  /** Its client HTTP base URL, if the configuration carries one. */
  http: string | null;
  /** voter: counts in elections and commitment; learner: a new member still catching up (thesis §4.2.1). */
  role: 'voter' | 'learner';
  /** How far its log matches the leader's (§5.3); known on the leader only (null elsewhere, and for the leader itself: its last index). */
  matchIndex: number | null;
  /** Whether it leads, as the peer asked knows. */
  leader: boolean;
}

/** The membership as one peer sees it. */
export interface MembersView {
  /** The peer asked. */
  node: string;
  /** The leader it knows, if any. */
  leader: string | null;
  term: number;
  /** True while a joint configuration (C_old,new) is in force: a change is half-way. */
  joint: boolean;
  members: MemberInfo[];
}

/** A checked copy of a member's address (the form others dial), or a TypeError/RangeError naming the bad field. */
export function checkMemberAddress(address: unknown): MemberAddress {
  if (typeof address !== 'object' || address === null) throw new TypeError('a member address must be { peer: "host:port", http?: URL }');
  const a = address as Record<string, unknown>;
  parseHostPort(a.peer, 'peer address');
  const out: MemberAddress = { peer: a.peer as string };
  if (a.http !== undefined) out.http = checkHttpUrl(a.http, 'http address');
  return out;
}

function configTimeout(options: OpOptions): number {
  return positiveInt(options.timeoutMs, 'options.timeoutMs', DEFAULT_CONFIG_TIMEOUT_MS);
}

/**
 * Add `member` as a voter, reached at `address` (needed for a networked cluster: the leader
 * dials it, and every peer learns it from the log). Asked of any peer; it goes to the leader.
 * The new member first catches up as a learner (thesis §4.2.1), then C_old,new and C_new are
 * committed; resolves once C_new is. Adding a member already in the configuration at the same
 * address does nothing; at another address it moves it (through the log alike).
 *
 * Errors: ConfigError (bad id or address), ConfigInProgressError (another change is running;
 * nothing changed), CatchUpTimeoutError (it did not catch up; nothing changed), NotLeaderError
 * (the leader is in another process: `leader` names it), TimeoutError (outcome unknown: run it
 * again, or look at `listMembers`).
 */
export function addMember(id: string, member: string, address?: MemberAddressInput, options: OpOptions = {}): Promise<void> {
  validateId(member, 'member id');
  const checked = address === undefined ? undefined : checkMemberAddress(address);
  const timeoutMs = configTimeout(options);
  return underConfigLock(async () => {
    const handle = running(id);
    if (checked === undefined && handle.transport !== null) {
      const known = Object.hasOwn((await peerStatus(handle)).addresses, member);
      if (!known) throw new ConfigError(`member '${member}' needs its peer address (host:port) to be added to a networked cluster`);
    }
    const addresses: AddressBook | undefined = checked === undefined ? undefined : { [member]: checked };
    await submitWithRetry(handle, { kind: 'config', peers: [member], edit: 'add', ...(addresses ? { addresses } : {}) }, timeoutMs);
  });
}

/**
 * Remove `member` from the voters by joint consensus (§6); resolves once C_new is committed.
 * Removing the leader works: it steps down once C_new is committed, handing over to the most
 * up-to-date voter (thesis §3.10). Removing a peer that is not a member changes nothing.
 * Errors as for `addMember`; removing the last member is a ConfigError.
 */
export function removeMember(id: string, member: string, options: OpOptions = {}): Promise<void> {
  validateId(member, 'member id');
  const timeoutMs = configTimeout(options);
  return underConfigLock(async () => {
    const handle = running(id);
    await submitWithRetry(handle, { kind: 'config', peers: [member], edit: 'remove' }, timeoutMs);
  });
}

/**
 * The members as peer `id` sees them: the voters of the configuration in force (both sets
 * while joint) and, on the leader, the learners catching up; each with the addresses the
 * configuration carries. Match indexes are the leader's knowledge: ask the leader for them.
 */
export async function listMembers(id: string): Promise<MembersView> {
  const s = await peerStatus(running(id));
  const learners = s.learners.filter((l) => !s.peers.includes(l));
  const info = (member: string, role: MemberInfo['role']): MemberInfo => {
    const a = Object.hasOwn(s.addresses, member) ? s.addresses[member] : undefined;
    const matchIndex = s.role !== 'leader' ? null : member === s.id ? s.lastIndex : (s.matchIndex[member] ?? 0);
    return { id: member, peer: a?.peer ?? null, http: a?.http ?? null, role, matchIndex, leader: s.leader === member };
  };
  return {
    node: s.id,
    leader: s.leader,
    term: s.term,
    joint: s.config?.kind === 'joint',
    members: [...s.peers.map((m) => info(m, 'voter')), ...learners.map((m) => info(m, 'learner'))],
  };
}

function peerStatus(handle: NodeHandle): Promise<PeerStatus> {
  return handle.withControl((c) => c.status());
}

/**
 * What a peer with no configuration says (in `status` and the CLI's log): that it waits to be
 * added to a cluster, and how to add it or form a new one.
 */
export function waitingMessage(id: string, peer: string | null, http: string | null): string {
  const where = peer ?? 'HOST:PORT';
  const body = JSON.stringify({ id, peer: where, ...(http ? { http } : {}) });
  return (
    `${id} has no configuration and is waiting to be added to a cluster. ` +
    `On the cluster: POST /admin/members with ${body} (actor-raft member add ${id} ${where}${http ? ` --http ${http}` : ''}), ` +
    `or addMember(leader, '${id}', { peer: '${where}'${http ? `, http: '${http}'` : ''} }); ` +
    `to form a new cluster instead, start its nodes with --bootstrap (setConfig on one of them).`
  );
}
