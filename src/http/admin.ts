/**
 * The HTTP admin routes: membership and leadership of a running cluster over the wire (etcd's
 * `member add/remove/list` and `move-leader`, Consul's `/v1/operator/raft/peer`), mounted by
 * src/http/server.ts under `/admin/`.
 *
 * | request                             | answer                                                     |
 * |-------------------------------------|------------------------------------------------------------|
 * | `GET /admin/members`                | 200 `MembersView` (src/api/members.ts) as this node sees it |
 * | `POST /admin/members`               | JSON `{"id","peer","http"?}` → 200 `MembersView` once added |
 * | `DELETE /admin/members/:id`         | 200 `MembersView` once removed                              |
 * | `POST /admin/leader`                | JSON `{"target"?}` or no body → 200 `{"leader": id}`        |
 * | `GET /admin/snapshot[?local=1]`     | 200 a backup file (src/backup.ts) of the leader's applied state, or with `local=1` this node's; 409 `SNAPSHOT_UNAVAILABLE` when it has none |
 *
 * Writes, and snapshots without `local=1`, go to the leader: a follower whose leader runs in another process answers
 * `307 Temporary Redirect` to the leader's HTTP address (from the configuration's addresses,
 * else the server's `peerHttp`), as the kv routes do; 503 with `Retry-After` when no leader
 * is known. A JSON body needs `Content-Type: application/json` (415 otherwise). Errors are
 * JSON `{"error", "code", ...}`:
 *
 * - 400 `CONFIG_INVALID` / `BAD_REQUEST`: a bad id or address, removing the last member;
 * - 409 `CONFIG_IN_PROGRESS`: another change is running, nothing changed (retry later);
 * - 409 `TRANSFER_FAILED`: the target is not a voter or did not take over;
 * - 504 `CATCH_UP_TIMEOUT` (`"outcome":"unchanged"`): the new member did not catch up in time
 *   (down or unreachable at the address given); the configuration is unchanged;
 * - 504 `TIMEOUT` / 503 `LEADERSHIP_LOST`, `ACTOR_RESTARTED` (`"outcome":"unknown"`): the
 *   change may still complete; `GET /admin/members` tells, and the same request may be sent
 *   again (membership commands are idempotent).
 */
import type http from 'node:http';
import * as api from '../api/index.js';
import { running } from '../api/registry.js';
import { encodeBackup } from '../backup.js';
import type { SnapshotNow } from '../control.js';
import { isRaftError, NotLeaderError, type RaftError } from '../errors.js';

/** What the server hands the admin routes for one request. */
export interface AdminRequestContext {
  /** The local peer the server fronts. */
  node: string;
  /** The server's peer id → HTTP base URL map (redirects for leaders the configuration has no address for). */
  peerHttp: Record<string, string>;
  /** Read the request body (the server's size limit applies). */
  body(): Promise<Buffer>;
  /** Answer with JSON. */
  send(status: number, body: unknown, headers?: Record<string, string>): void;
  /** Answer with bytes of this content type. */
  sendBytes(status: number, body: Buffer, contentType: string, headers?: Record<string, string>): void;
}

/** Whether the request is for the admin routes. */
export function isAdminPath(url: string | undefined): boolean {
  return url === '/admin' || (url ?? '').startsWith('/admin/');
}

class AdminError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

type AdminRoute = { kind: 'members' } | { kind: 'member'; id: string } | { kind: 'leader' } | { kind: 'snapshot' };

function adminRoute(url: string): AdminRoute {
  const pathname = url.split(/[?#]/, 1)[0]!;
  let parts: string[];
  try {
    parts = pathname.split('/').slice(2).map((p) => decodeURIComponent(p));
  } catch {
    throw new AdminError(400, 'BAD_REQUEST', 'malformed percent-encoding in the path');
  }
  if (parts.length === 1 && parts[0] === 'members') return { kind: 'members' };
  if (parts.length === 2 && parts[0] === 'members' && parts[1] !== '') return { kind: 'member', id: parts[1]! };
  if (parts.length === 1 && parts[0] === 'leader') return { kind: 'leader' };
  if (parts.length === 1 && parts[0] === 'snapshot') return { kind: 'snapshot' };
  throw new AdminError(404, 'NO_ROUTE', 'no such route');
}

const ALLOWED: Record<AdminRoute['kind'], string[]> = { members: ['GET', 'HEAD', 'POST'], member: ['DELETE'], leader: ['POST'], snapshot: ['GET', 'HEAD'] };

/**
 * Answer one admin request. Errors of the API and of the request are answered here; anything
 * else (the server's own errors, e.g. a body too large) is thrown back to the server.
 */
export async function handleAdmin(ctx: AdminRequestContext, req: http.IncomingMessage): Promise<void> {
  try {
    const route = adminRoute(req.url ?? '');
    const method = req.method ?? '';
    const allowed = ALLOWED[route.kind];
    if (!allowed.includes(method)) {
      throw new AdminError(405, 'METHOD_NOT_ALLOWED', `method ${method} not allowed here; use ${allowed.join(', ')}`, { Allow: allowed.join(', ') });
    }
    switch (route.kind) {
      case 'members': {
        if (method !== 'POST') return ctx.send(200, await api.listMembers(ctx.node));
        const b = await jsonBody(ctx, req, true);
        if (typeof b.id !== 'string') throw new AdminError(400, 'BAD_REQUEST', 'the body needs "id" (the new member\'s id) and "peer" (its host:port)');
        if (b.learner !== undefined && b.learner !== false) throw new AdminError(400, 'BAD_REQUEST', 'learners are not supported: a new member joins as a voter once caught up');
        await api.addMember(ctx.node, b.id, { peer: b.peer as string, ...(b.http === undefined ? {} : { http: b.http as string }) });
        return ctx.send(200, await api.listMembers(ctx.node));
      }
      case 'member':
        await api.removeMember(ctx.node, route.id);
        return ctx.send(200, await api.listMembers(ctx.node));
      case 'leader': {
        const b = await jsonBody(ctx, req, false);
        if (b.target !== undefined && b.target !== null && typeof b.target !== 'string') throw new AdminError(400, 'BAD_REQUEST', '"target" must be a member id');
        const leader = await api.transferLeadership(ctx.node, (b.target as string | null | undefined) ?? undefined);
        return ctx.send(200, { leader });
      }
      case 'snapshot':
        return await sendSnapshot(ctx, req);
    }
  } catch (err) {
    const answer = await errorAnswer(ctx, req, err);
    if (answer === null) throw err;
    ctx.send(answer.status, answer.body, answer.headers);
  }
}

/**
 * A backup file of the applied state (src/backup.ts): the leader's, so that it holds every
 * write acknowledged before the request (the leader answers a write once it has applied it),
 * or with `?local=1` this node's own, whatever its role.
 */
async function sendSnapshot(ctx: AdminRequestContext, req: http.IncomingMessage): Promise<void> {
  const local = new URL(req.url ?? '/', 'http://admin').searchParams.get('local');
  if (local !== null && local !== '1' && local !== 'true') throw new AdminError(400, 'BAD_REQUEST', 'local is 1 or true');
  const taken = await running(ctx.node).withControl<SnapshotNow>((c) => c.snapshotNow());
  if (!taken.ok) throw new AdminError(409, 'SNAPSHOT_UNAVAILABLE', taken.reason);
  if (local === null && taken.role !== 'leader') throw new NotLeaderError(taken.leader);
  const meta = taken.snapshot.meta;
  ctx.sendBytes(200, encodeBackup(taken.snapshot, ctx.node), 'application/octet-stream', {
    'Content-Disposition': `attachment; filename="${ctx.node.replace(/[^\w.-]/g, '_')}-${meta.index}.arsnap"`,
    'X-Raft-Snapshot-Index': String(meta.index),
    'X-Raft-Snapshot-Term': String(meta.term),
  });
}

/** The JSON object a request carries (`{}` for an empty body when not `required`). */
async function jsonBody(ctx: AdminRequestContext, req: http.IncomingMessage, required: boolean): Promise<Record<string, unknown>> {
  const body = await ctx.body();
  if (body.length === 0 && !required) return {};
  const type = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
  if (type !== 'application/json') throw new AdminError(415, 'UNSUPPORTED_MEDIA_TYPE', 'the body must be JSON with Content-Type: application/json');
  let v: unknown;
  try {
    v = JSON.parse(body.toString('utf8'));
  } catch {
    throw new AdminError(400, 'BAD_REQUEST', 'the body is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new AdminError(400, 'BAD_REQUEST', 'the body must be a JSON object');
  return v as Record<string, unknown>;
}

type Answer = { status: number; body: Record<string, unknown>; headers: Record<string, string> };

async function errorAnswer(ctx: AdminRequestContext, req: http.IncomingMessage, err: unknown): Promise<Answer | null> {
  if (err instanceof AdminError) return { status: err.status, body: { error: err.message, code: err.code }, headers: err.headers };
  // The API's argument checks (a bad id, address or URL).
  if (err instanceof TypeError || err instanceof RangeError) return { status: 400, body: { error: err.message, code: 'BAD_REQUEST' }, headers: {} };
  if (!isRaftError(err)) return null;
  const e = err as RaftError;
  const body = { error: e.message, code: e.code };
  switch (e.code) {
    case 'NOT_LEADER':
      return redirect(ctx, req, (e as NotLeaderError).leader);
    case 'CONFIG_INVALID':
      return { status: 400, body, headers: {} };
    case 'CONFIG_IN_PROGRESS':
    case 'TRANSFER_FAILED':
      return { status: 409, body, headers: {} };
    case 'CATCH_UP_TIMEOUT':
      return { status: 504, body: { ...body, outcome: 'unchanged' }, headers: {} };
    case 'TIMEOUT':
      return { status: 504, body: { ...body, outcome: 'unknown' }, headers: {} };
    case 'LEADERSHIP_LOST':
    case 'ACTOR_RESTARTED':
      return { status: 503, body: { ...body, outcome: 'unknown' }, headers: { 'Retry-After': '1' } };
    case 'NODE_STOPPED':
    case 'UNKNOWN_NODE':
      return { status: 503, body, headers: { 'Retry-After': '1' } };
    default:
      return { status: 500, body, headers: {} };
  }
}

/** 307 to the leader's HTTP address (the configuration's, else the server's map), or 503. */
async function redirect(ctx: AdminRequestContext, req: http.IncomingMessage, leader: string | null): Promise<Answer> {
  let base: string | undefined;
  if (leader !== null) {
    const view = await api.listMembers(ctx.node).catch(() => null);
    base = view?.members.find((m) => m.id === leader)?.http ?? ctx.peerHttp[leader] ?? undefined;
  }
  if (leader !== null && base !== undefined) {
    const location = base.replace(/\/+$/, '') + (req.url ?? '/');
    return { status: 307, body: { error: `not the leader; the leader is ${leader}`, code: 'NOT_LEADER', leader, location }, headers: { Location: location } };
  }
  const error = leader === null ? 'no leader' : `no leader reachable here (the leader is ${leader}, whose HTTP address is unknown)`;
  return { status: 503, body: { error, code: 'NOT_LEADER', leader }, headers: { 'Retry-After': '1' } };
}
