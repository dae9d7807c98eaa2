/**
 * Jepsen-style runs: concurrent clients doing random kv ops on a few keys (gets as ReadIndex
 * reads, the rest through the log) against a cluster
 * of real peers in this process, while a seeded nemesis crashes actors, kills peers,
 * partitions the network (majority/minority, bridge, leader isolation), injects link and
 * disk faults, and heals. At the end: heal, wait for convergence, check the recorded
 * history for linearizability and that every peer applied the same log.
 *
 * The schedule and the workload come from the seed; thread timing does not, so a failing
 * seed reproduces the same schedule, and usually the failure.
 */
import path from 'node:path';
import { nemesis, op, query, read, runningNodes, setConfig, startNode, status, stopNode } from '../api.js';
import { Rng } from '../core/rng.js';
import type { KvCommand } from '../state-machines/kv.js';
import { History } from './history.js';
import { formatResult, KvChecker, type CheckResult } from './linearizability.js';

export interface JepsenOptions {
  seed: number;
  /** Length of the faulty phase. */
  seconds: number;
  /** Where the peers keep their LMDB environments (one directory per peer under it). */
  dataDir: string;
  peers?: number;
  clients?: number;
  keys?: number;
  /** Inject faults (default true); false gives a fault-free baseline. */
  faults?: boolean;
  /** Progress lines. */
  log?: (line: string) => void;
  /** A checker to reuse across runs (its pool stays up); one is made and closed otherwise. */
  checker?: KvChecker;
  /** Serve gets by lease reads (thesis §6.4.1) instead of a ReadIndex round each. */
  leaseReads?: boolean;
}

export interface JepsenResult {
  seed: number;
  ok: boolean;
  /** Ops recorded in the history (every invocation). */
  ops: number;
  /** Ops acknowledged as applied. */
  acknowledged: number;
  check: CheckResult;
  /** Peers whose applied state differs from the others', with the first difference. */
  divergence: string[];
  /** The nemesis steps carried out, with their time offsets. */
  schedule: string[];
  /** A readable summary, with the seed and schedule when the run failed. */
  report: string;
}

/** Timing for fault runs: quick elections, so a run sees many leader changes. */
const TIMING = { heartbeatMs: 20, electionTimeoutMs: 200 };
const OP_TIMEOUT_MS = 1_500;


function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A random kv command; values written are unique (`fresh()`), cas expects a recent one. */
function randomCommand(rng: Rng, keys: number, fresh: () => number, latest: () => number): KvCommand {
  const key = `k${rng.int(0, keys - 1)}`;
  const roll = rng.next();
  if (roll < 0.35) return { type: 'get', key };
  if (roll < 0.7) return { type: 'set', key, value: fresh() };
  if (roll < 0.9) {
    const expected = rng.int(0, 3) === 0 ? null : Math.max(latest() - rng.int(0, keys * 2 - 1), 0);
    return { type: 'cas', key, expected, value: fresh() };
  }
  return { type: 'delete', key };
}

export async function runJepsen(o: JepsenOptions): Promise<JepsenResult> {
  const peers = Array.from({ length: o.peers ?? 5 }, (_, i) => `j${i + 1}`);
  const clients = o.clients ?? 8;
  const keys = o.keys ?? 6;
  const log = o.log ?? (() => undefined);
  const rng = new Rng(o.seed);
  const history = new History();
  const schedule: string[] = [];
  const t0 = Date.now();
  const note = (step: string) => {
    const line = `+${((Date.now() - t0) / 1000).toFixed(2)}s ${step}`;
    schedule.push(line);
    log(`  nemesis ${line}`);
  };
  const start = (id: string) =>
    startNode(id, { stateMachine: 'kv', dataDir: path.join(o.dataDir, id), ...TIMING, leaseReads: o.leaseReads ?? false });

  await Promise.all(peers.map(start));
  await setConfig(peers[0]!, peers);

  let value = 0;
  const fresh = () => ++value;
  const latest = () => value;
  let acknowledged = 0;
  let running = true;

  const clientLoop = async (c: number) => {
    const crng = new Rng(o.seed * 7919 + c);
    while (running) {
      const up = runningNodes().filter((id) => peers.includes(id));
      if (up.length === 0) {
        await sleep(20);
        continue;
      }
      const target = crng.pick(up);
      const command = randomCommand(crng, keys, fresh, latest);
      try {
        // Gets are linearizable reads by ReadIndex (no log write); the rest go through the log.
        const submit = command.type === 'get' ? read : op;
        await history.run(c, command, () => submit(target, command, { timeoutMs: OP_TIMEOUT_MS }));
        acknowledged++;
      } catch {
        await sleep(5); // recorded as fail or info; go on
      }
    }
  };

  const killed = new Set<string>();
  const nemesisLoop = async () => {
    const end = t0 + o.seconds * 1000;
    while (Date.now() < end) {
      await sleep(rng.int(300, 1199));
      if (Date.now() >= end || o.faults === false) continue;
      const up = peers.filter((id) => !killed.has(id));
      const roll = rng.next();
      try {
        if (roll < 0.15) {
          const id = rng.pick(up);
          const actor = rng.int(0, 1) === 0 ? 'consensus' : 'log';
          note(`crash ${id} ${actor}`);
          await nemesis.crash(id, actor);
        } else if (roll < 0.25 && killed.size < Math.floor((peers.length - 1) / 2)) {
          const id = rng.pick(up);
          note(`kill ${id}`);
          killed.add(id);
          await nemesis.kill(id);
        } else if (roll < 0.35 && killed.size > 0) {
          const id = rng.pick([...killed]);
          note(`restart ${id}`);
          await start(id);
          killed.delete(id);
        } else if (roll < 0.5) {
          const order = rng.shuffle(peers);
          const cut = Math.floor(peers.length / 2);
          const groups = [order.slice(0, cut), order.slice(cut)];
          note(`partition ${groups.map((g) => g.join(',')).join(' | ')}`);
          await nemesis.partition(groups);
        } else if (roll < 0.6) {
          const order = rng.shuffle(peers);
          const mid = Math.floor(peers.length / 2);
          const groups = [order.slice(0, mid + 1), order.slice(mid)];
          note(`bridge ${groups.map((g) => g.join(',')).join(' | ')} (${order[mid]} in both)`);
          await nemesis.partition(groups);
        } else if (roll < 0.7) {
          const leader = await currentLeader(up);
          if (leader) {
            note(`isolate leader ${leader}`);
            await nemesis.partition([[leader], peers.filter((id) => id !== leader)]);
          }
        } else if (roll < 0.8) {
          note('link faults drop 0.2 duplicate 0.1 delay 0-15ms');
          await nemesis.setLinkFaults({ drop: 0.2, duplicate: 0.1, delayMs: [0, 15] }, o.seed + schedule.length);
        } else if (roll < 0.85) {
          const id = rng.pick(up);
          note(`disk fault ${id}`);
          nemesis.diskFault(id);
        } else {
          note('heal');
          await nemesis.heal();
          await nemesis.setLinkFaults(null);
        }
      } catch (err) {
        note(`(step refused: ${(err as Error).message})`);
      }
    }
  };

  log(`  seed ${o.seed}: ${peers.length} peers, ${clients} clients, ${keys} keys, ${o.seconds}s of faults`);
  const clientRuns = Array.from({ length: clients }, (_, c) => clientLoop(c));
  await nemesisLoop();

  // Heal everything and let the cluster converge while clients keep going a little.
  note('final heal');
  await nemesis.heal();
  await nemesis.setLinkFaults(null);
  for (const id of killed) await start(id);
  killed.clear();
  await sleep(500);
  running = false;
  await Promise.all(clientRuns);

  let divergence: string[] = [];
  try {
    divergence = await convergence(peers, keys, history);
  } finally {
    await Promise.all(runningNodes().filter((id) => peers.includes(id)).map((id) => stopNode(id).catch(() => undefined)));
  }

  const checker = o.checker ?? new KvChecker();
  let check: CheckResult;
  try {
    check = await checker.check(history);
  } finally {
    if (!o.checker) await checker.close();
  }
  const ok = check.ok && divergence.length === 0;
  const ops = history.ops().length;
  const lines = [
    `seed ${o.seed}: ${ok ? 'ok' : 'FAILED'}; ${ops} ops recorded, ${acknowledged} acknowledged; ${formatResult(check)}`,
    ...divergence.map((d) => `divergence: ${d}`),
  ];
  if (!ok) lines.push(`reproduce with seed ${o.seed}; nemesis schedule:`, ...schedule.map((s) => `  ${s}`));
  return { seed: o.seed, ok, ops, acknowledged, check, divergence, schedule, report: lines.join('\n') };
}

async function currentLeader(ids: readonly string[]): Promise<string | null> {
  for (const id of ids) {
    const s = await status(id).catch(() => null);
    if (s?.role === 'leader') return s.id;
  }
  return null;
}

/**
 * Wait until one leader is followed by all, every peer has applied the leader's commit
 * index, then read every key through the log (recorded) and from every peer's own state.
 * Returns the differences found (empty when every peer applied the same log).
 */
async function convergence(peers: readonly string[], keys: number, history: History): Promise<string[]> {
  const deadline = Date.now() + 30_000;
  const allApplied = async (): Promise<string | null> => {
    for (;;) {
      if (Date.now() > deadline) return null;
      const statuses = await Promise.all(peers.map((id) => status(id).catch(() => null)));
      const leader = statuses.find((s) => s?.role === 'leader');
      if (leader && statuses.every((s) => s && s.leader === leader.id && s.lastApplied === leader.commitIndex)) {
        return leader.id;
      }
      await sleep(50);
    }
  };
  const leader = await allApplied();
  if (leader === null) return ['the cluster did not converge within 30 s after healing'];
  // A final linearizable read of every key, recorded like any client op.
  for (let k = 0; k < keys; k++) {
    const command: KvCommand = { type: 'get', key: `k${k}` };
    await history.run('final', command, () => op(leader, command, { timeoutMs: 10_000 })).catch(() => undefined);
  }
  if ((await allApplied()) === null) return ['the cluster did not converge after the final reads'];
  const diffs: string[] = [];
  // Every peer applied the same log: same last index, same digest of every entry applied.
  const final = await Promise.all(peers.map((id) => status(id)));
  for (const s of final.slice(1)) {
    const f = final[0]!;
    if (s.lastApplied !== f.lastApplied || s.appliedDigest !== f.appliedDigest) {
      diffs.push(`applied log: ${f.id} has ${f.lastApplied}/${f.appliedDigest.toString(16)} but ${s.id} ${s.lastApplied}/${s.appliedDigest.toString(16)}`);
    }
  }
  // And so holds the same state.
  for (let k = 0; k < keys; k++) {
    const key = `k${k}`;
    const values = await Promise.all(peers.map((id) => query(id, { type: 'get', key })));
    const first = JSON.stringify(values[0]);
    peers.forEach((id, i) => {
      if (JSON.stringify(values[i]) !== first) diffs.push(`${key}: ${peers[0]}=${first} but ${id}=${JSON.stringify(values[i])}`);
    });
  }
  return diffs;
}
