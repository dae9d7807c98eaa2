/**
 * Helpers for tests that run real peers (worker threads + LMDB) in this process. Waits are
 * bounded polls for a condition, never sleeps followed by assertions on time.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runningNodes, startNode, status, stopNode, type NodeOptions, type NodeStatus } from '../../src/api.js';

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
