/**
 * Helpers for tests that run real peers (worker threads + LMDB) in this process. Waits are
 * bounded polls for a condition, never sleeps followed by assertions on time.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nemesis, op, read, runningNodes, setConfig, startNode, status, stopNode, type NodeOptions, type NodeStatus } from '../../src/api/index.js';
import { ConfigInProgressError, isRaftError } from '../../src/errors.js';

/** Timing for tests: fast elections, still tolerant of a loaded 2-core machine. */
export const TEST_TIMING = { heartbeatMs: 25, electionTimeoutMs: 250 } as const;

export function tempDir(prefix = 'actor-raft-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export async function startPeers(ids: string[], root: string, extra: Partial<NodeOptions> = {}): Promise<void> {
  await Promise.all(
    ids.map((id) => startNode(id, { stateMachine: 'kv', dataDir: path.join(root, id), ...TEST_TIMING, ...extra })),
  );
}

export async function stopAll(): Promise<void> {
  await Promise.all(runningNodes().map((id) => stopNode(id)));
}

/** The data of a suite of real peers, set up and torn down by `realCluster`. */
export interface RealCluster {
  /** The data root of the running test (or suite): each peer's directory is `peerDir(root, id)`. */
  readonly root: string;
  /** Start (or restart) peers `ids` with TEST_TIMING and `extra`, each with its directory under `root`. */
  startPeers(ids: string[], extra?: Partial<NodeOptions>): Promise<void>;
  /**
   * Start `ids` as a new cluster: the peers, then its configuration through `via` (setConfig
   * bootstraps a blank peer), then one leader that every peer follows.
   */
  startCluster(ids: string[], extra?: Partial<NodeOptions>, via?: string): Promise<{ leader: string; term: number; statuses: NodeStatus[] }>;
  /** Tear down as after a test and start over in a fresh, empty root (a test of several trials). */
  reset(): Promise<void>;
}

/**
 * The before/after that every spec of real peers shares; call it inside a `describe`. Before
 * each test (`'test'`) or once before the suite (`'suite'`, whose own `before` then starts its
 * nodes), a fresh temporary data root; after it, partitions healed, every node of this process
 * stopped and the root removed, so each test ends on its own whatever it left running.
 */
export function realCluster(scope: 'test' | 'suite' = 'test'): RealCluster {
  let root: string | null = null;
  const setUp = (): void => {
    root = tempDir();
  };
  const tearDown = async (): Promise<void> => {
    await nemesis.heal();
    await stopAll();
    if (root !== null) fs.rmSync(root, { recursive: true, force: true });
    root = null;
  };
  if (scope === 'test') {
    beforeEach(setUp);
    afterEach(tearDown);
  } else {
    before(setUp);
    after(tearDown);
  }
  const fixture: RealCluster = {
    get root(): string {
      if (root === null) throw new Error('the data root of real peers exists only while a test (or its suite) runs');
      return root;
    },
    startPeers(ids, extra = {}) {
      return startPeers(ids, fixture.root, extra);
    },
    async startCluster(ids, extra = {}, via = ids[0]!) {
      await startPeers(ids, fixture.root, extra);
      await setConfig(via, ids);
      return waitForLeader(ids);
    },
    async reset() {
      await tearDown();
      setUp();
    },
  };
  return fixture;
}

/** Poll `probe` until it returns a value (not undefined), or fail after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Wait until exactly one of `ids` leads and every one of them follows it in its term. */
export async function waitForLeader(ids: string[]): Promise<{ leader: string; term: number; statuses: NodeStatus[] }> {
  return waitFor(`one leader among ${ids.join(',')}`, async () => {
    const statuses = await Promise.all(ids.map((id) => status(id)));
    const leaders = statuses.filter((s) => s.role === 'leader');
    if (leaders.length !== 1) return undefined;
    const { id: leader, term } = leaders[0]!;
    if (!statuses.every((s) => s.leader === leader && s.term === term)) return undefined;
    return { leader, term, statuses };
  });
}

/** Wait until every peer in `ids` has applied at least `index`. */
export async function waitForApplied(ids: string[], index: number): Promise<NodeStatus[]> {
  return waitFor(`${ids.join(',')} to apply index ${index}`, async () => {
    const statuses = await Promise.all(ids.map((id) => status(id)));
    return statuses.every((s) => s.lastApplied >= index) ? statuses : undefined;
  });
}

export function peerDir(root: string, id: string): string {
  return path.join(root, id);
}

/** Start one peer under `root` with TEST_TIMING (and `extra`). */
export async function startPeer(id: string, root: string, extra: Partial<NodeOptions> = {}): Promise<void> {
  await startPeers([id], root, extra);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && [...a].sort().join(',') === [...b].sort().join(',');
}

/**
 * setConfig, sent again while the leader still finishes the previous change: a follower can
 * show the new configuration before the leader has committed it and ended its change, and a
 * change asked for in between is refused with ConfigInProgressError (outcome 'not-applied',
 * so sending it again is safe).
 */
export async function setConfigWhenIdle(id: string, peers: string[], timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await setConfig(id, peers);
    } catch (err) {
      if (!(err instanceof ConfigInProgressError) || Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

/** Wait until every peer in `ids` has the stable configuration of exactly `voters` in force. */
export async function waitForConfig(ids: string[], voters: string[], timeoutMs?: number): Promise<NodeStatus[]> {
  return waitFor(
    `${ids.join(',')} to have the stable configuration [${voters.join(',')}]`,
    async () => {
      const statuses = await Promise.all(ids.map((id) => status(id)));
      const ok = statuses.every((s) => s.config?.kind === 'stable' && sameSet(s.config.voters, voters));
      return ok ? statuses : undefined;
    },
    timeoutMs,
  );
}

/**
 * Wait until every peer in `ids` has applied the same log: the same lastApplied and the same
 * appliedDigest, at least the highest commit index any of them knows (so nothing committed
 * is still on its way) and at least `atLeast`. Meant for a cluster without client load. Right
 * after a whole cluster restarts nobody knows the commit index yet: pass an `atLeast` past the
 * old log (the new leader's first entry) there.
 */
export async function waitForConverged(ids: string[], atLeast = 0, timeoutMs = 30_000): Promise<NodeStatus[]> {
  return waitFor(
    `${ids.join(',')} to converge`,
    async () => {
      const statuses = await Promise.all(ids.map((id) => status(id)));
      const applied = statuses[0]!.lastApplied;
      const commit = Math.max(atLeast, ...statuses.map((s) => s.commitIndex));
      const same = statuses.every((s) => s.lastApplied === applied && s.appliedDigest === statuses[0]!.appliedDigest);
      return same && applied >= commit ? statuses : undefined;
    },
    timeoutMs,
  );
}

/** Errors whose op outcome is unknown or that say "not now": a client under churn retries them. */
const UNKNOWN_OUTCOME = new Set(['NOT_LEADER', 'LEADERSHIP_LOST', 'TIMEOUT', 'ACTOR_RESTARTED', 'NODE_STOPPED']);

export interface KeyHistory {
  /** The last value whose write was acknowledged (-1: none). */
  lastAcked: number;
  /** The last value a write was attempted with (acknowledged or with an unknown outcome). */
  lastAttempted: number;
}

export interface LoadResult {
  acked: number;
  unknown: number;
  keys: Map<string, KeyHistory>;
  /** Anything a single writer per key should never see (a refused cas, an unexpected error). */
  anomalies: string[];
}

export interface ClientLoad {
  /** Writes acknowledged so far. */
  readonly acked: number;
  /** Stop the writers and wait for their last ops. */
  stop(): Promise<LoadResult>;
}

/**
 * One sequential writer per key, through `via()` (any running peer; ops redirect to the
 * leader), writing increasing numbers alternately with `set` and with `cas` on the value it
 * last wrote. With one writer per key a cas after an acknowledged write must succeed, and a
 * key's final value must lie between its last acknowledged write and its last attempted one.
 */
export function startLoad(via: () => string, keys: string[], opTimeoutMs = 10_000): ClientLoad {
  let stopped = false;
  const result: LoadResult = { acked: 0, unknown: 0, keys: new Map(), anomalies: [] };
  const writers = keys.map(async (key) => {
    const h: KeyHistory = { lastAcked: -1, lastAttempted: -1 };
    result.keys.set(key, h);
    let known: number | null = null;
    for (let n = 0; !stopped; n++) {
      h.lastAttempted = n;
      try {
        if (known !== null && n % 2 === 1) {
          const swapped = await op(via(), { type: 'cas', key, expected: known, value: n }, { timeoutMs: opTimeoutMs });
          if (swapped !== true) result.anomalies.push(`cas ${key}: ${known} -> ${n} refused`);
        } else {
          await op(via(), { type: 'set', key, value: n }, { timeoutMs: opTimeoutMs });
        }
        known = n;
        h.lastAcked = n;
        result.acked++;
      } catch (err) {
        known = null;
        result.unknown++;
        if (!isRaftError(err) || !UNKNOWN_OUTCOME.has(err.code)) result.anomalies.push(`${key}: ${String(err)}`);
        await sleep(10);
      }
    }
  });
  return {
    get acked() {
      return result.acked;
    },
    async stop() {
      stopped = true;
      await Promise.all(writers);
      return result;
    },
  };
}

/** Wait until `load` has had `more` further writes acknowledged. */
export async function waitForAcks(load: ClientLoad, more: number, timeoutMs = 30_000): Promise<void> {
  const target = load.acked + more;
  await waitFor(`${more} more acknowledged writes`, async () => (load.acked >= target ? true : undefined), timeoutMs);
}

/**
 * Check with linearizable reads through each of `ids` that every key of `load` holds its last
 * acknowledged value (or a later attempted one whose outcome was unknown).
 */
export async function checkLoad(ids: string[], load: LoadResult): Promise<void> {
  for (const id of ids) {
    for (const [key, h] of load.keys) {
      const value = (await read(id, { type: 'get', key })) as number | null;
      const ok =
        h.lastAcked < 0
          ? value === null || (typeof value === 'number' && value <= h.lastAttempted)
          : typeof value === 'number' && value >= h.lastAcked && value <= h.lastAttempted;
      if (!ok) throw new Error(`read ${key} at ${id}: ${String(value)}, acknowledged ${h.lastAcked}, attempted up to ${h.lastAttempted}`);
    }
  }
}
