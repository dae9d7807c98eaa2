/**
 * The routing room: how a request finds the peer that can answer it. Redirects to the
 * leader, falls back to a leader of this process when the peer asked knows none, backs off
 * while there is no leader, (with a retry policy) sends a request again when a try ends
 * with its outcome unknown, and keeps track of that outcome: a request is `'not-applied'`
 * until some try of it is in doubt, and `'unknown'` from then on. A client placed beside one
 * peer (`via`) is routed only to the peers it can reach through the nemesis's partition.
 */
import { ActorRestartedError, isRaftError, LeadershipLostError, NoSpaceError, NodeStoppedError, NotLeaderError, TimeoutError, withOutcome } from '../errors.js';
import { FaultyLinks } from '../faults.js';
import { currentFaults } from './nemesis.js';
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

/** How one request is routed: its retry policy, if any, and where its client sits. */
export interface Route {
  retry?: RetryPolicy;
  /**
   * The peer the client sits beside (`{ via }` of op and read): it reaches that peer and the
   * peers sharing a group of the nemesis's partition with it, and no other. Unset: every peer
   * of this process.
   */
  via?: string;
}

/** Whether a client beside `via` reaches peer `id` now (always, when it sits nowhere). */
export function reachesFrom(via: string | undefined): (id: string) => boolean {
  if (via === undefined) return () => true;
  return (id) => id === via || new FaultyLinks(currentFaults()).connected(via, id);
}

/** A try ended in a way another try may fix (at another peer, or the same one later). */
function worthAnotherTry(err: unknown): boolean {
  return err instanceof TimeoutError || err instanceof LeadershipLostError || err instanceof ActorRestartedError || err instanceof NodeStoppedError;
}

/** A try whose request may have been applied. */
function inDoubtAfter(err: unknown): boolean {
  return !isRaftError(err) || err.outcome === 'unknown';
}

/**
 * Submit until answered. NOT_LEADER is always retried (nothing was appended or read): an op
 * (or a membership change, a transfer) follows the redirect to the leader; a read retries
 * where it is, since any peer can serve it once a leader is known. A peer that knows no
 * leader at all is left for a peer of this process that leads, if any (a peer removed from
 * the cluster never hears of a leader again). With a `retry` policy, a try that failed where
 * another may succeed is sent again too, to this process's leader if it knows one.
 *
 * The error it ends with says the request's outcome: once a try was in doubt, `'unknown'`
 * (a TimeoutError naming the last try in doubt, or that try's own error), whatever the tries
 * after it said; before that, the error of the last try (NotLeaderError, a refusal) or a
 * TimeoutError that says `'not-applied'`.
 */
export async function submitWithRetry(first: NodeHandle, request: Request, timeoutMs: number, route: Route = {}): Promise<unknown> {
  const { retry } = route;
  const reaches = reachesFrom(route.via);
  const deadline = Date.now() + timeoutMs;
  let target = first;
  let notLeader: NotLeaderError | null = null;
  /** The last try whose outcome was unknown: once there is one, the request may have been applied. */
  let inDoubt: Error | null = null;
  const timedOut = (): Error =>
    inDoubt
      ? new TimeoutError(timeoutMs, `no answer within ${timeoutMs} ms (a try ended: ${inDoubt.message}); the outcome is unknown`)
      : (notLeader ?? new TimeoutError(timeoutMs, `no answer within ${timeoutMs} ms; nothing was applied`, 'not-applied'));
  /**
   * No peer of this process is left to send the request to (its peers stopped): a
   * NodeStoppedError, in flight (`'unknown'`) once a try was in doubt, whatever that try's
   * error was (an actor that went down as its peer was killed says ActorRestartedError).
   */
  const noPeerLeft = (): Error => {
    if (!inDoubt) return first.stoppedError();
    if (inDoubt instanceof NodeStoppedError) return inDoubt;
    return new NodeStoppedError(first.id, `${first.stoppedError().message} (a try ended: ${inDoubt.message}); the outcome is unknown`, 'unknown');
  };
  let backoffMs = 10;
  const backoff = async () => {
    await sleep(Math.min(backoffMs, Math.max(deadline - Date.now(), 0)));
    backoffMs = Math.min(backoffMs * 2, 200);
  };
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0) throw timedOut();
    if (!reaches(target.id)) {
      // The client cannot reach this peer now (a partition between them): nothing is sent. It
      // asks a leader it can reach, or the peer it started with, or waits for the partition to heal.
      const next = localLeader(reaches) ?? (first.state === 'running' && reaches(first.id) ? first : undefined);
      if (next) target = next;
      else await backoff();
      continue;
    }
    try {
      return await target.submit(request, retry ? Math.min(remaining, retry.attemptMs) : remaining);
    } catch (err) {
      if (retry && worthAnotherTry(err)) {
        if (inDoubtAfter(err)) inDoubt = err as Error;
        if (deadline - Date.now() <= 0) throw timedOut();
        if (inDoubt === err) retry.onUnknown();
        const next = localLeader(reaches) ?? (target.state === 'running' ? target : first.state === 'running' ? first : undefined);
        if (!next) throw noPeerLeft();
        // A leader that just lost its leadership, or an actor restarting: give it a moment.
        if (next === target) await sleep(Math.min(backoffMs, Math.max(deadline - Date.now(), 0)));
        target = next;
        continue;
      }
      // A peer whose disk is full refuses the request, but an earlier try in doubt may still be
      // in its log, held until the disk has room again: the outcome is unknown then.
      if (err instanceof NoSpaceError && inDoubt) throw withOutcome(err, 'unknown');
      if (!(err instanceof NotLeaderError)) throw err;
      notLeader = err;
      // A peer that knows no leader (one removed from the cluster hears from none) is passed
      // over for a peer of this process that leads, reads and writes alike.
      const fallback = err.leader === null ? localLeader(reaches) : undefined;
      if (fallback && fallback !== target) {
        target = fallback;
        continue;
      }
      if (request.kind !== 'read' && err.leader !== null) {
        const hinted = nodes.get(err.leader);
        if (hinted?.state === 'running' && hinted !== target && reaches(hinted.id)) {
          target = hinted; // follow the redirect at once
          continue;
        }
        // The leader is in another process: the caller redirects. Not a request in doubt,
        // though (NotLeaderError says "not applied"), nor one whose leader just stopped here:
        // those wait for the next leader.
        if (!hinted && !inDoubt && !stopped.has(err.leader)) throw err;
      }
      await backoff();
      if (target.state !== 'running') {
        const alive = localLeader(reaches) ?? (first.state === 'running' ? first : undefined);
        if (!alive) throw noPeerLeft();
        target = alive;
      }
    }
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
