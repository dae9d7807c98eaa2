/**
 * `GET /health` and `GET /ready` of the HTTP server (src/http/server.ts), for load balancers,
 * orchestrators and alerts (docs/network.md, "Health, readiness and metrics").
 *
 * - `/health` — liveness: the peer this server fronts is running and its consensus actor
 *   answers a status call. 200 `{"status":"up",...}`; 503 `{"status":"down","code":...}`
 *   when the node was stopped, its supervisor gave up, or its actor does not answer.
 * - `/ready` — readiness to serve: 200 only when the peer (1) is a voter of the configuration
 *   in force, (2) knows a live leader (it leads, or heard its leader less than an election
 *   timeout ago), (3) has applied its log to within `readyMaxLag` entries of its commit
 *   index, and (4) is in no alarm (`space`: its disk is full). Otherwise 503, with `failing` naming the conditions that fail and `checks` the
 *   numbers behind each.
 *
 * Both answer GET and HEAD (405 otherwise) and are never cached.
 */
import type http from 'node:http';
import { isRaftError, type RaftError } from '../errors.js';

/** Default bound on `commitIndex - lastApplied` for `/ready`. */
export const DEFAULT_READY_MAX_LAG = 1000;

export interface HealthOptions {
  /**
   * `/ready` answers 503 while this peer's applied index trails its commit index by more
   * than this many entries (default 1000).
   */
  readyMaxLag?: number;
}

/** The `status()` fields readiness reads; absent ones count as failing (or, for `leaderRecentlyHeard`, as given). */
export interface StatusLike {
  id?: string;
  role?: string;
  leader?: string | null;
  leaderRecentlyHeard?: boolean;
  peers?: string[];
  commitIndex?: number;
  lastApplied?: number;
  /** The alarm the peer is in, if any (see `PeerStatus.alarm`). */
  alarm?: { kind: string; message: string; since: number } | null;
}

export type ReadinessCheck = 'member' | 'leader' | 'applied' | 'space';

export interface Readiness {
  ready: boolean;
  /** The conditions that fail, in the order above. */
  failing: ReadinessCheck[];
  checks: {
    member: { ok: boolean; voters: string[] };
    leader: { ok: boolean; leader: string | null };
    applied: { ok: boolean; commitIndex: number | null; lastApplied: number | null; lag: number | null; maxLag: number };
    space: { ok: boolean; alarm: string | null };
  };
}

/** `readyMaxLag`, checked, or the default. */
export function readyMaxLag(o: HealthOptions): number {
  const v = o.readyMaxLag;
  if (v === undefined) return DEFAULT_READY_MAX_LAG;
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    throw new TypeError(`options.readyMaxLag must be a whole number of entries ≥ 0, got ${JSON.stringify(v)}`);
  }
  return v;
}

/** Whether a peer with status `st` is ready, and why not. */
export function readiness(st: StatusLike, maxLag: number): Readiness {
  const voters = Array.isArray(st.peers) ? st.peers : [];
  const member = typeof st.id === 'string' && voters.includes(st.id);
  const leader = typeof st.leader === 'string' ? st.leader : null;
  const leaderOk = leader !== null && st.leaderRecentlyHeard !== false;
  const commitIndex = typeof st.commitIndex === 'number' ? st.commitIndex : null;
  const lastApplied = typeof st.lastApplied === 'number' ? st.lastApplied : null;
  const lag = commitIndex !== null && lastApplied !== null ? commitIndex - lastApplied : null;
  const appliedOk = lag !== null && lag <= maxLag;
  const failing: ReadinessCheck[] = [];
  if (!member) failing.push('member');
  if (!leaderOk) failing.push('leader');
  if (!appliedOk) failing.push('applied');
  const alarm = st.alarm ?? null;
  if (alarm !== null) failing.push('space');
  return {
    ready: failing.length === 0,
    failing,
    checks: {
      member: { ok: member, voters },
      leader: { ok: leaderOk, leader },
      applied: { ok: appliedOk, commitIndex, lastApplied, lag, maxLag },
      space: { ok: alarm === null, alarm: alarm === null ? null : alarm.message },
    },
  };
}

const REASONS: Record<ReadinessCheck, string> = {
  member: 'not a voter of a configuration (blank, being added, or removed)',
  leader: 'no live leader known (an election is under way, or this peer is cut off)',
  applied: 'the applied index trails the commit index by more than readyMaxLag',
  space: 'the disk is full (the nospace alarm): new writes are refused',
};

export interface ProbeAnswer {
  status: number;
  body: Record<string, unknown>;
  headers: Record<string, string>;
}

const NO_STORE = { 'Cache-Control': 'no-store' };

/**
 * The answer to `/health` or `/ready` (`null` for any other path): `status` is the server's
 * backend call, `node` the peer it fronts.
 */
export async function healthProbe(
  req: http.IncomingMessage,
  node: string,
  status: (id: string) => Promise<unknown>,
  maxLag: number,
): Promise<ProbeAnswer | null> {
  const path = (req.url ?? '').split(/[?#]/, 1)[0];
  if (path !== '/health' && path !== '/ready') return null;
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    return { status: 405, body: { error: `method ${req.method} not allowed here; use GET, HEAD`, code: 'METHOD_NOT_ALLOWED' }, headers: { Allow: 'GET, HEAD' } };
  }
  let st: StatusLike;
  try {
    st = (await status(node)) as StatusLike;
  } catch (err) {
    // A RaftError's text is meant for clients (NODE_STOPPED says why); anything else stays internal.
    const down = isRaftError(err) ? { code: (err as RaftError).code, error: (err as RaftError).message } : { code: 'INTERNAL', error: 'internal error' };
    const body = path === '/health' ? { status: 'down', node, ...down } : { ready: false, node, failing: ['up'], ...down };
    return { status: 503, body, headers: NO_STORE };
  }
  if (path === '/health') {
    return { status: 200, body: { status: 'up', node, role: st.role ?? null }, headers: NO_STORE };
  }
  const r = readiness(st, maxLag);
  const body = { ...r, node, ...(r.ready ? {} : { error: `not ready: ${r.failing.map((c) => REASONS[c]).join('; ')}` }) };
  return { status: r.ready ? 200 : 503, body, headers: NO_STORE };
}
