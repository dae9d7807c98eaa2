/**
 * Jepsen-style runs: concurrent clients doing random kv ops on a few keys (gets as ReadIndex
 * reads, the rest through the log) against a cluster
 * of real peers in this process, while a seeded nemesis crashes actors, kills peers,
 * partitions the network (majority/minority, bridge, leader isolation), injects link and
 * disk faults, and heals. At the end: heal, wait for convergence, check the recorded
 * history for linearizability and that every peer applied the same log.
 *
 * With `membership`, the cluster starts with 3 voters of 5 peers (2 spares, blank) and the
 * nemesis also changes the membership (setConfig with a random voter set drawn from the
 * running peers: peers get added, removed, replaced, the leader removed) and hands leadership
 * over (transferLeadership), each in the background with a bounded timeout, its outcome
 * (ok or the error's class) noted in the schedule. At the end a fixed final voter set (drawn
 * from the seed) is set, retried until it is in force, and only its voters are checked for
 * convergence: a removed peer stays behind, as it should.
 *
 * With `exactlyOnce`, the peers run the counting kv (src/testing/counting-kv.ts) and every
 * write carries a unique `opId` (the history records the plain kv command; the checker would
 * keep only the kv fields anyway). Writes go through client sessions (thesis §6.3) with a
 * short per-try timeout (ATTEMPT_TIMEOUT_MS), so many are sent several times, across actor
 * crashes, kills and partitions. After convergence every checked peer's table of applications
 * per opId is read: an opId applied twice, peers whose counts differ, or an acknowledged write
 * missing is a failure. Writes that failed or whose outcome is unknown are only tallied (applied
 * or not); a failed one that was applied is listed as a note, since the history is then wrong
 * about it. With `idempotentWrites` (a control, not asserted anywhere) the same writes go
 * without a session (`{ idempotent: true }`), so a retried write may be applied twice, and the
 * same counts show it.
 *
 * Half the clients (the odd ones, unless `placedClients` says otherwise) sit beside the peer
 * they ask (`{ via }`): a partition cuts them off from the peers on the other side, so an op
 * sent to a leader that is then cut off from the majority ends with its outcome unknown, as it
 * would for a real client, instead of being sent again to the new leader across the partition.
 * Every error's `outcome` is recorded; besides linearizability the run checks that no read saw
 * a value written by an op reported `'not-applied'` (`notAppliedSeen`).
 *
 * The schedule and the workload come from the seed; thread timing does not, so a failing
 * seed reproduces the same schedule, and usually the failure.
 */
import path from 'node:path';
import {
  nemesis,
  op,
  query,
  read,
  runningNodes,
  setConfig,
  startNode,
  status,
  stopNode,
  transferLeadership,
  type NodeOptions,
  type WriteOptions,
} from '../api/index.js';
import { Rng } from '../rng.js';
import type { KvCommand } from '../state-machines/kv.js';
import { COUNTING_KV_MODULE } from './counting-kv.js';
import { renderCommand } from './format.js';
import { classifyError, History, notAppliedSeen } from './history.js';
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
  /**
   * Change the membership during the faults (see above): 3 voters of `peers` at first, the
   * rest spares; the nemesis adds setConfig and transferLeadership steps.
   */
  membership?: boolean;
  /**
   * Snapshot every this many applied entries (NodeOptions.snapshotThreshold). Membership runs
   * default to MEMBERSHIP_SNAPSHOT_THRESHOLD, so snapshots, compaction and InstallSnapshot
   * happen under the faults; other runs to the peers' default.
   */
  snapshotThreshold?: number;
  /**
   * Exactly-once writes (see above): the counting kv, an opId on every write, tries of
   * ATTEMPT_TIMEOUT_MS, and a check that every write was applied at most once (acknowledged
   * ones exactly once) and alike on every checked peer.
   */
  exactlyOnce?: boolean;
  /**
   * The control for `exactlyOnce`: the same counting and checks, but the writes are sent with
   * `{ idempotent: true }` (no session), so a retried write may be applied twice; the run then
   * fails with the doubles listed. Implies the rest of `exactlyOnce`.
   */
  idempotentWrites?: boolean;
  /**
   * How many clients sit beside the peer they ask (`{ via }`, see above): the odd-numbered
   * ones, up to this many. Default: half of them.
   */
  placedClients?: number;
}

/** What an exactly-once run (or its idempotent control) found in the counting kv. */
export interface ExactlyOnceStats {
  /** Writes sent with an opId. */
  writes: number;
  /** Tries sent again after an unknown outcome: `status(id).client.retries` summed over the peers' node handles (killed ones included). */
  retries: number;
  /** OpIds applied more than once on some checked peer (must be 0). */
  doubleApplied: number;
  /** Acknowledged writes not applied exactly once on some checked peer (must be 0). */
  ackedNotOnce: number;
  /** Writes whose outcome the client never learned (`info`): how many were applied 0 times and once (on the first checked peer). */
  unknown: { applied0: number; applied1: number };
  /**
   * Writes recorded as definitely failed (`fail`: their error's outcome was `'not-applied'`):
   * applied 0 times and once. Once means a `fail` that did happen (say an earlier try of the
   * op, whose outcome was unknown, was applied and the op then ended with a NOT_LEADER): the
   * error lied about the outcome, and the linearizability check may fail on it. Listed in the
   * report; it must be 0 (the API never calls a write in doubt not applied), which
   * test/jepsen.spec.ts asserts.
   */
  failed: { applied0: number; applied1: number };
}

/** Exactly-once runs: a write sent with an opId, and how its op ended as the history has it. */
interface WriteRecord {
  command: KvCommand;
  end: 'ok' | 'fail' | 'info';
  /** The error of a `fail` or `info` end. */
  error?: string;
}

export interface JepsenResult {
  seed: number;
  ok: boolean;
  /** Ops recorded in the history (every invocation). */
  ops: number;
  /** Ops acknowledged as applied. */
  acknowledged: number;
  /** Ops whose error said `'not-applied'` (recorded `fail`) and `'unknown'` (or no outcome: `info`). */
  outcomes: { notApplied: number; unknown: number };
  check: CheckResult;
  /** Peers whose applied state differs from the others', with the first difference. */
  divergence: string[];
  /** The nemesis steps carried out, with their time offsets. */
  schedule: string[];
  /** Membership runs: the voters in force at the end (every peer otherwise). */
  voters: string[];
  /** Membership runs: setConfig and transferLeadership steps tried and succeeded during the faults. */
  changes: { configs: number; configsOk: number; transfers: number; transfersOk: number };
  /** Exactly-once runs (and the idempotent control): the application counts; null otherwise. */
  exactlyOnce: ExactlyOnceStats | null;
  /** A readable summary, with the seed and schedule when the run failed. */
  report: string;
}

/** Timing for fault runs: quick elections, so a run sees many leader changes. */
const TIMING = { heartbeatMs: 20, electionTimeoutMs: 200 };
const OP_TIMEOUT_MS = 1_500;
/**
 * Exactly-once runs: how long one try of a write may take before it is sent again. Short (a
 * few heartbeats), so that writes are retried often, not only across faults.
 */
const ATTEMPT_TIMEOUT_MS = 60;
/** Exactly-once runs: at most this many opIds named per kind of problem in the report. */
const MAX_LISTED = 5;
/** Bounds on the nemesis's membership steps, so none holds a run up. */
const CONFIG_TIMEOUT_MS = 5_000;
const TRANSFER_TIMEOUT_MS = 3_000;
/** How long the final configuration may take to be in force once everything is healed. */
const SETTLE_MS = 60_000;
/** Membership runs: voters at first, and in the final configuration. */
const MEMBERSHIP_VOTERS = 3;
/** Membership runs snapshot often, so new and lagging peers get InstallSnapshot. */
const MEMBERSHIP_SNAPSHOT_THRESHOLD = 200;


function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** An outcome for the schedule: the error's class (RaftErrors name theirs), with the message of others. */
function outcome(err: unknown): string {
  if (!(err instanceof Error)) return `thrown ${String(err)}`;
  const raft = (err as { isRaftError?: unknown }).isRaftError === true;
  return raft ? err.name : `${err.name}: ${err.message}`;
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((x) => b.includes(x));
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
  const placedClients = o.placedClients ?? Math.floor(clients / 2);
  /** Whether client `c` sits beside the peer it asks (the odd ones, up to placedClients). */
  const placed = (c: number) => c % 2 === 1 && (c - 1) / 2 < placedClients;
  const keys = o.keys ?? 6;
  const log = o.log ?? (() => undefined);
  const membership = o.membership ?? false;
  const rng = new Rng(o.seed);
  const history = new History();
  const schedule: string[] = [];
  const t0 = Date.now();
  const note = (step: string) => {
    const line = `+${((Date.now() - t0) / 1000).toFixed(2)}s ${step}`;
    schedule.push(line);
    log(`  nemesis ${line}`);
  };
  const snapshotThreshold = o.snapshotThreshold ?? (membership ? MEMBERSHIP_SNAPSHOT_THRESHOLD : undefined);
  const idempotentWrites = o.idempotentWrites ?? false;
  const counting = (o.exactlyOnce ?? false) || idempotentWrites;
  const nodeOptions: NodeOptions = {
    stateMachine: counting ? { module: COUNTING_KV_MODULE } : 'kv',
    ...TIMING,
    leaseReads: o.leaseReads ?? false,
    ...(snapshotThreshold === undefined ? {} : { snapshotThreshold }),
  };
  const start = (id: string) => startNode(id, { ...nodeOptions, dataDir: path.join(o.dataDir, id) });

  // Membership runs draw their own numbers (the first voters are fixed, the final ones from the
  // seed), so the schedules of the other runs stay as they were.
  const mrng = new Rng(o.seed * 104729 + 17);
  const firstVoters = membership ? peers.slice(0, Math.min(MEMBERSHIP_VOTERS, peers.length)) : peers;
  const finalVoters = membership ? mrng.shuffle(peers).slice(0, Math.min(MEMBERSHIP_VOTERS, peers.length)).sort() : peers;

  await Promise.all(peers.map(start));
  await setConfig(peers[0]!, firstVoters);

  let value = 0;
  const fresh = () => ++value;
  const latest = () => value;
  let acknowledged = 0;
  let running = true;
  // Exactly-once runs: each write by its opId.
  const writes = new Map<string, WriteRecord>();
  const writeOptions: WriteOptions = counting
    ? { timeoutMs: OP_TIMEOUT_MS, attemptTimeoutMs: ATTEMPT_TIMEOUT_MS, ...(idempotentWrites ? { idempotent: true } : {}) }
    : { timeoutMs: OP_TIMEOUT_MS };
  // Retries counted by the node handles of killed peers (a restarted peer gets a new handle).
  let retriesOfKilled = 0;
  const retriesOf = async (id: string): Promise<number> => (await status(id).catch(() => null))?.client.retries ?? 0;

  const clientLoop = async (c: number) => {
    const crng = new Rng(o.seed * 7919 + c);
    // Membership runs: a client mostly goes back to the peer that last answered it (as a real
    // client keeps its leader), so blank spares and removed peers, which only redirect or time
    // out, get a share of the ops without starving the rest.
    let last: string | null = null;
    let n = 0;
    while (running) {
      const up = runningNodes().filter((id) => peers.includes(id));
      if (up.length === 0) {
        await sleep(20);
        continue;
      }
      const target: string = membership && last !== null && up.includes(last) && crng.chance(0.75) ? last : crng.pick(up);
      const command = randomCommand(crng, keys, fresh, latest);
      // Exactly-once runs: a write carries its opId to the counting kv; the history records
      // the plain command (the checker would drop the extra field anyway).
      const opId = counting && command.type !== 'get' ? `c${c}-${++n}` : null;
      // A placed client reaches only its side of a partition.
      const via = placed(c) ? { via: target } : {};
      try {
        // Gets are linearizable reads by ReadIndex (no log write); the rest go through the log.
        if (command.type === 'get') await history.run(c, command, () => read(target, command, { timeoutMs: OP_TIMEOUT_MS, ...via }));
        else await history.run(c, command, () => op(target, opId === null ? command : { ...command, opId }, { ...writeOptions, ...via }));
        if (opId !== null) writes.set(opId, { command, end: 'ok' });
        acknowledged++;
        last = target;
      } catch (err) {
        if (opId !== null) writes.set(opId, { command, end: classifyError(err), error: err instanceof Error ? `${err.name}: ${err.message}` : String(err) });
        if (last === target) last = null;
        await sleep(5); // recorded as fail or info; go on
      }
    }
  };

  const killed = new Set<string>();
  const changes = { configs: 0, configsOk: 0, transfers: 0, transfersOk: 0 };
  // Membership steps run in the background (each bounded by its timeout) so the faults go on
  // meanwhile; at most one setConfig and one transfer at a time.
  let configStep: Promise<void> | null = null;
  let transferStep: Promise<void> | null = null;
  const background = (label: string, run: () => Promise<unknown>, done: (ok: boolean) => void): Promise<void> => {
    const started = Date.now();
    note(label);
    return run().then(
      (v) => {
        done(true);
        note(`${label} -> ok${typeof v === 'string' ? ` (${v})` : ''} after ${((Date.now() - started) / 1000).toFixed(2)}s`);
      },
      (err: unknown) => {
        done(false);
        note(`${label} -> ${outcome(err)} after ${((Date.now() - started) / 1000).toFixed(2)}s`);
      },
    );
  };
  /**
   * Where to ask: half the time the leader, else any running peer that belongs to the cluster
   * (a removed one redirects or times out; a blank spare would take setConfig for a bootstrap).
   */
  const member = async (up: readonly string[]): Promise<string | null> => {
    if (rng.chance(0.5)) {
      const leader = await currentLeader(up);
      if (leader) return leader;
    }
    for (const id of rng.shuffle(up)) {
      const s = await status(id).catch(() => null);
      if (s && (s.config !== null || s.lastIndex > 0)) return id;
    }
    return null;
  };
  /** A setConfig or a transfer, started in the background; false when its slot is busy. */
  const membershipStep = async (up: readonly string[]): Promise<boolean> => {
    if (rng.next() < 0.7) {
      // A random voter set of the running peers: mostly 3 to 5, now and then 1 or 2.
      const most = up.length;
      const size = rng.chance(0.1) ? rng.int(1, Math.min(2, most)) : rng.int(Math.min(3, most), Math.min(5, most));
      const voters = rng.shuffle(up).slice(0, size).sort();
      if (configStep) return false; // one at a time: a fault step instead
      const via = await member(up);
      if (via === null) return false;
      changes.configs++;
      configStep = background(
        `setConfig [${voters.join(',')}] via ${via}`,
        () => setConfig(via, voters, { timeoutMs: CONFIG_TIMEOUT_MS }),
        (ok) => {
          if (ok) changes.configsOk++;
          configStep = null;
        },
      );
      return true;
    } else {
      const target = rng.chance(0.3) ? undefined : rng.pick(up);
      const label = `transferLeadership to ${target ?? 'the most up-to-date voter'}`;
      if (transferStep) return false;
      const via = await member(up);
      if (via === null) return false;
      changes.transfers++;
      transferStep = background(
        `${label} via ${via}`,
        () => transferLeadership(via, target, { timeoutMs: TRANSFER_TIMEOUT_MS }),
        (ok) => {
          if (ok) changes.transfersOk++;
          transferStep = null;
        },
      );
      return true;
    }
  };

  const nemesisLoop = async () => {
    const end = t0 + o.seconds * 1000;
    while (Date.now() < end) {
      await sleep(rng.int(300, 1199));
      if (Date.now() >= end || o.faults === false) continue;
      const up = peers.filter((id) => !killed.has(id));
      try {
        if (membership && rng.next() < 0.35 && (await membershipStep(up))) continue;
        const roll = rng.next();
        if (roll < 0.15) {
          const id = rng.pick(up);
          const actor = rng.int(0, 1) === 0 ? 'consensus' : 'log';
          note(`crash ${id} ${actor}`);
          await nemesis.crash(id, actor);
        } else if (roll < 0.25 && killed.size < Math.floor((peers.length - 1) / 2)) {
          const id = rng.pick(up);
          note(`kill ${id}`);
          killed.add(id);
          if (counting) retriesOfKilled += await retriesOf(id);
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

  log(
    `  seed ${o.seed}: ${peers.length} peers${membership ? ` (voters ${firstVoters.join(',')} at first, ${finalVoters.join(',')} at the end)` : ''}, ` +
      `${clients} clients (${Math.min(placedClients, Math.floor(clients / 2))} beside their peer), ${keys} keys, ${o.seconds}s of faults${membership ? ' and membership changes' : ''}` +
      `${snapshotThreshold === undefined ? '' : `, a snapshot every ${snapshotThreshold} entries`}` +
      `${counting ? `, ${idempotentWrites ? 'idempotent' : 'exactly-once'} writes counted by opId (tries of ${ATTEMPT_TIMEOUT_MS} ms)` : ''}`,
  );
  const clientRuns = Array.from({ length: clients }, (_, c) => clientLoop(c));
  await nemesisLoop();

  // Heal everything and let the cluster converge while clients keep going a little.
  note('final heal');
  await nemesis.heal();
  await nemesis.setLinkFaults(null);
  for (const id of killed) await start(id);
  killed.clear();
  const problems: string[] = [];
  let checked = peers;
  if (membership) {
    // The membership steps in flight end within their bounds; then the final voters.
    await Promise.all([configStep, transferStep]);
    const settled = await settleConfig(peers, finalVoters, note);
    if (settled === null) problems.push(`the final configuration [${finalVoters.join(',')}] was not in force within ${SETTLE_MS / 1000} s after healing`);
    else checked = settled;
  }
  await sleep(500);
  running = false;
  await Promise.all(clientRuns);

  let divergence: string[] = problems;
  let snapshotIndex = 0;
  let exactlyOnce: ExactlyOnceStats | null = null;
  let notes: string[] = [];
  try {
    if (problems.length === 0) divergence = await convergence(checked, keys, history);
    let retries = retriesOfKilled;
    for (const id of peers) {
      const s = await status(id).catch(() => null);
      snapshotIndex = Math.max(snapshotIndex, s?.snapshotIndex ?? 0);
      retries += s?.client.retries ?? 0;
    }
    if (counting) {
      const counted = await applicationCounts(checked, writes);
      exactlyOnce = { ...counted.stats, retries };
      notes = counted.notes;
      // All of them once the cluster converged; before, a peer left behind would show false
      // differences, but a write applied twice is one whatever the rest.
      divergence = divergence.length === 0 ? [...counted.doubles, ...counted.problems] : [...divergence, ...counted.doubles];
    }
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
  // No write reported not applied was ever read.
  const recorded = history.ops();
  divergence = [...divergence, ...notAppliedSeen(recorded).map((line) => `outcome: ${line}`)];
  const outcomes = {
    notApplied: recorded.filter((r) => r.status === 'fail').length,
    unknown: recorded.filter((r) => r.status === 'info').length,
  };
  const ok = check.ok && divergence.length === 0;
  const ops = recorded.length;
  const membershipLine = membership
    ? `; membership: ${changes.configsOk}/${changes.configs} setConfig ok, ${changes.transfersOk}/${changes.transfers} transfers ok, final voters ${checked.join(',')}, snapshots up to index ${snapshotIndex}`
    : '';
  const e = exactlyOnce;
  const retried = idempotentWrites ? 'tries retried not counted (no session)' : `${e?.retries ?? 0} tries retried`;
  const exactlyOnceLines = e
    ? [
        `${idempotentWrites ? 'idempotent' : 'exactly-once'} writes: ${e.writes} sent, ${retried}, ${e.doubleApplied} applied more than once, ` +
          `${e.ackedNotOnce} acknowledged not applied exactly once; of the unknown outcomes ${e.unknown.applied0} not applied, ${e.unknown.applied1} applied; ` +
          `of the failed ${e.failed.applied0} not applied, ${e.failed.applied1} applied`,
      ]
    : [];
  const mode = [membership ? 'membership' : '', o.exactlyOnce ? 'exactly-once' : '', idempotentWrites ? 'idempotent writes' : ''].filter((m) => m !== '');
  const modeText = mode.length > 0 ? ` (${mode.join(', ')})` : '';
  const lines = [
    `seed ${o.seed}${modeText}: ${ok ? 'ok' : 'FAILED'}; ${ops} ops recorded, ${acknowledged} acknowledged, ` +
      `${outcomes.notApplied} reported not applied, ${outcomes.unknown} unknown; ${formatResult(check)}${membershipLine}`,
    ...exactlyOnceLines,
    ...divergence.map((d) => `divergence: ${d}`),
    ...notes.map((n) => `note: ${n}`),
  ];
  if (!ok) lines.push(`reproduce with seed ${o.seed}${modeText}; nemesis schedule:`, ...schedule.map((s) => `  ${s}`));
  return { seed: o.seed, ok, ops, acknowledged, outcomes, check, divergence, schedule, voters: checked, changes, exactlyOnce, report: lines.join('\n') };
}

/**
 * Exactly-once runs: read every checked peer's table of applications per opId (the counting
 * kv's) and compare it with the writes sent. Problems: an opId applied more than once
 * (`doubles`), an opId counted differently by the peers, an acknowledged write missing on a peer.
 * Writes that failed or whose outcome is unknown may be applied once or not at all; how many
 * were is counted (on the first peer), not judged; failed ones that were applied are listed
 * in `notes` (the history calls them failed: a linearizability violation may come of it).
 */
async function applicationCounts(
  peers: readonly string[],
  writes: ReadonlyMap<string, WriteRecord>,
): Promise<{ stats: Omit<ExactlyOnceStats, 'retries'>; doubles: string[]; problems: string[]; notes: string[] }> {
  const problems: string[] = [];
  const tables: [id: string, table: Map<string, number>][] = [];
  for (const id of peers) {
    try {
      const pairs = (await query(id, { type: 'applications' })) as [string, number][];
      tables.push([id, new Map(pairs)]);
    } catch (err) {
      problems.push(`${id}: the applications query failed: ${outcome(err)}`);
    }
  }
  const listed = (what: string, items: string[], into = problems) => {
    if (items.length === 0) return;
    const more = items.length > MAX_LISTED ? ` and ${items.length - MAX_LISTED} more` : '';
    into.push(`${items.length} ${what}: ${items.slice(0, MAX_LISTED).join('; ')}${more}`);
  };
  const describe = (opId: string): string => {
    const w = writes.get(opId);
    if (!w) return 'not sent by a client';
    return `${renderCommand(w.command)} ended ${w.end}${w.error === undefined ? '' : ` (${w.error})`}`;
  };
  const countsOf = (opId: string): number[] => tables.map(([, table]) => table.get(opId) ?? 0);
  /** `2 times on every checked peer`, or each peer's count when they differ. */
  const where = (counts: readonly number[]): string =>
    counts.every((n) => n === counts[0]) ? `${counts[0]} times on every checked peer` : tables.map(([id], i) => `${counts[i]} on ${id}`).join(', ');
  const opIds = new Set<string>(writes.keys());
  for (const [, table] of tables) for (const opId of table.keys()) opIds.add(opId);
  const doubles: string[] = [];
  const differ: string[] = [];
  /** Acknowledged writes missing on some peer (those applied twice are listed as such). */
  const lost: string[] = [];
  let ackedNotOnce = 0;
  const failedApplied: string[] = [];
  const unknown = { applied0: 0, applied1: 0 };
  const failed = { applied0: 0, applied1: 0 };
  for (const opId of [...opIds].sort()) {
    const counts = countsOf(opId);
    if (counts.length === 0) break;
    // Applied twice (or more), on any peer; and every peer counted the same.
    if (counts.some((n) => n > 1)) doubles.push(`${opId} applied ${where(counts)}: ${describe(opId)}`);
    if (counts.some((n) => n !== counts[0])) differ.push(`${opId} ${where(counts)}`);
    const end = writes.get(opId)?.end;
    if (end === undefined) continue;
    // Acknowledged: exactly once, everywhere. The others are tallied by the first peer's count.
    if (end === 'ok') {
      if (counts.some((n) => n !== 1)) ackedNotOnce++;
      if (counts.some((n) => n === 0)) lost.push(`${opId} applied ${where(counts)}: ${describe(opId)}`);
      continue;
    }
    const tally = end === 'info' ? unknown : failed;
    if (counts[0] === 0) tally.applied0++;
    else if (counts[0] === 1) tally.applied1++;
    if (end === 'fail' && counts[0]! > 0) failedApplied.push(`${opId} ${describe(opId)}`);
  }
  const doubleLines: string[] = [];
  listed('writes applied more than once', doubles, doubleLines);
  listed('writes counted differently by the peers', differ);
  listed('acknowledged writes not applied on some peer', lost);
  const notes: string[] = [];
  listed('writes recorded as failed were applied nonetheless', failedApplied, notes);
  return { stats: { writes: writes.size, doubleApplied: doubles.length, ackedNotOnce, unknown, failed }, doubles: doubleLines, problems, notes };
}

/**
 * Put `final` in force: setConfig through a member of the cluster, retried (each attempt
 * bounded) until a leader reports the stable configuration `final`, or SETTLE_MS pass.
 * Returns the voters in force, null if it did not settle.
 */
async function settleConfig(peers: readonly string[], final: readonly string[], note: (step: string) => void): Promise<string[] | null> {
  const deadline = Date.now() + SETTLE_MS;
  let attempt = 0;
  while (Date.now() < deadline) {
    attempt++;
    const statuses = (await Promise.all(peers.map((id) => status(id).catch(() => null)))).filter((s) => s !== null);
    const leader = statuses.filter((s) => s.role === 'leader' && s.config !== null).sort((a, b) => b.term - a.term)[0];
    const via = leader ?? statuses.find((s) => s.config !== null);
    if (via) {
      try {
        await setConfig(via.id, [...final], { timeoutMs: Math.min(10_000, Math.max(deadline - Date.now(), 1)) });
        // Resolved once C_new committed; confirm a leader has it in force.
        const config = await configInForce(peers, deadline);
        if (config && sameSet(config, final)) {
          note(`final setConfig [${final.join(',')}] via ${via.id} -> ok (attempt ${attempt})`);
          return config;
        }
        note(`final setConfig [${final.join(',')}] via ${via.id} -> ok, but in force: ${config ? `[${config.join(',')}]` : 'unknown'}`);
      } catch (err) {
        note(`final setConfig [${final.join(',')}] via ${via.id} -> ${outcome(err)} (attempt ${attempt})`);
      }
    }
    await sleep(200);
  }
  return null;
}

/** The voters of the stable configuration a leader reports, waiting for one until `deadline`. */
async function configInForce(peers: readonly string[], deadline: number): Promise<string[] | null> {
  while (Date.now() < deadline) {
    const statuses = await Promise.all(peers.map((id) => status(id).catch(() => null)));
    // The newest leader: one cut off earlier may not have stepped down yet.
    const leader = statuses.filter((s) => s?.role === 'leader').sort((a, b) => b!.term - a!.term)[0];
    if (leader?.config?.kind === 'stable') return [...leader.config.voters].sort();
    await sleep(50);
  }
  return null;
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
