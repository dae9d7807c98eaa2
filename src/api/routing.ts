/**
 * The routing room: how a request finds the peer that can answer it. Redirects to the
 * leader, falls back to a leader of this process when the peer asked knows none, backs off
 * while there is no leader, and (with a retry policy) sends a request again when a try ends
 * with its outcome unknown.
 */
import { ActorRestartedError, LeadershipLostError, NodeStoppedError, NotLeaderError, TimeoutError } from '../errors.js';
import type { NodeHandle, Request } from './node-handle.js';
import { localLeader, nodes, stopped } from './registry.js';

/**
 * How to send a request again when a try ends with its outcome unknown, for requests that may
 * be applied twice safely (session ops, registrations, idempotent ops): each try waits at most
 * `attemptMs`; `onUnknown` hears of every such try.
 */
export interface RetryPolicy {
  attemptMs: number;
  onUnknown: () => void;
}

/** A try's outcome is unknown: it may or may not have been applied. */
function unknownOutcome(err: unknown): boolean {
  return err instanceof TimeoutError || err instanceof LeadershipLostError || err instanceof ActorRestartedError || err instanceof NodeStoppedError;
}

/**
 * Submit until answered. NOT_LEADER is always retried (nothing was appended or read): an op
 * (or a membership change, a transfer) follows the redirect to the leader; a read retries
 * where it is, since any peer can serve it once a leader is known. A peer that knows no
 * leader at all is left for a peer of this process that leads, if any (a peer removed from
 * the cluster never hears of a leader again). With a `retry` policy, a try whose outcome is
 * unknown is sent again too, to this process's leader if it knows one.
 */
export async function submitWithRetry(first: NodeHandle, request: Request, timeoutMs: number, retry?: RetryPolicy): Promise<unknown> {
  const deadline = Date.now() + timeoutMs;
  let target = first;
  let notLeader: NotLeaderError | null = null;
  /** The last try whose outcome was unknown: once there is one, the request may have been applied. */
  let inDoubt: Error | null = null;
  const unknownTimeout = () =>
    new TimeoutError(timeoutMs, `no answer within ${timeoutMs} ms (a try ended: ${inDoubt!.message}); the outcome is unknown`);
  let backoffMs = 10;
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw inDoubt ? unknownTimeout() : (notLeader ?? new TimeoutError(timeoutMs));
    try {
      return await target.submit(request, retry ? Math.min(remaining, retry.attemptMs) : remaining);
    } catch (err) {
      if (retry && unknownOutcome(err)) {
        inDoubt = err as Error;
        if (deadline - Date.now() <= 0) throw unknownTimeout();
        retry.onUnknown();
        const next = localLeader() ?? (target.state === 'running' ? target : first.state === 'running' ? first : undefined);
        if (!next) throw err;
        // A leader that just lost its leadership, or an actor restarting: give it a moment.
        if (next === target) await sleep(Math.min(backoffMs, Math.max(deadline - Date.now(), 0)));
        target = next;
        continue;
      }
      if (!(err instanceof NotLeaderError)) throw err;
      notLeader = err;
      // A peer that knows no leader (one removed from the cluster hears from none) is passed
      // over for a peer of this process that leads, reads and writes alike.
      const fallback = err.leader === null ? localLeader() : undefined;
      if (fallback && fallback !== target) {
        target = fallback;
        continue;
      }
      if (request.kind !== 'read' && err.leader !== null) {
        const hinted = nodes.get(err.leader);
        if (hinted?.state === 'running' && hinted !== target) {
          target = hinted; // follow the redirect at once
          continue;
        }
        // The leader is in another process: the caller redirects. Not a request in doubt,
        // though (NotLeaderError says "not applied"), nor one whose leader just stopped here:
        // those wait for the next leader.
        if (!hinted && !inDoubt && !stopped.has(err.leader)) throw err;
      }
      await sleep(Math.min(backoffMs, Math.max(deadline - Date.now(), 0)));
      backoffMs = Math.min(backoffMs * 2, 200);
      if (target.state !== 'running') {
        const alive = localLeader() ?? (first.state === 'running' ? first : undefined);
        if (!alive) throw inDoubt ?? first.stoppedError();
        target = alive;
      }
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
