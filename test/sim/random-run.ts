/**
 * One randomized simulation run, everything drawn from its seed: the core options, the
 * network's delays/drops/duplication, the disk's delays, a fault schedule (crashes of any
 * peer or of the leader, whole-cluster crashes, partitions, isolated leaders, lossy links,
 * heals) and client traffic (kv commands, idempotent or under client sessions that open and
 * expire). Invariants are checked after every event (SafetyChecker).
 *
 * After the chaos phase the run checks liveness: everything is healed and restarted, the
 * network stops losing messages, and within bounded virtual time there must be a leader that
 * has committed an entry of its term, fresh proposals must be acknowledged, and every live
 * peer must have applied the same entries, including every command ever acknowledged, and
 * hold the same state (applied digest, kv and session table).
 */
import { isVoter, voters } from '../../src/config.js';
import { Rng } from './rng.js';
import { Simulator, type SimOptions } from './simulator.js';

export interface RandomRunOptions {
  seed: number;
  peers: number;
  /** Virtual ms of faults and client traffic before the liveness phase. */
  chaosMs: number;
  /** Events of the trace shown in a failure report (60 by default). */
  traceLines?: number;
}

export interface RunSummary {
  seed: number;
  peers: number;
  profile: string;
  virtualMs: number;
  events: number;
  steps: number;
  elections: number;
  crashes: number;
  committed: number;
  acked: number;
  sent: number;
  dropped: number;
  /** Entries read back from a disk because they had left a core's memory window. */
  fetches: number;
  /** Snapshots taken and installed (§7). */
  snapshots: number;
  installs: number;
  /** Membership changes asked for, and completed (§6). */
  configChanges: number;
  configDone: number;
  /** Leadership transfers completed (§3.10). */
  transfersDone: number;
  /** Commands answered at their proposer: applied by the kv, refused by it, refused for an expired session. */
  commandsOk: number;
  commandsRefused: number;
  sessionExpired: number;
}

/** A failed run: the message starts with SEED=<n>, then the rule, the peers and a trace. */
export class SimulationFailure extends Error {
  override readonly name = 'SimulationFailure';
}

export function runRandomized(o: RandomRunOptions): RunSummary {
  const rng = new Rng(o.seed ^ 0x5eed);
  const profileRng = rng.fork();
  const faultRng = rng.fork();
  const clientRng = rng.fork();

  const heartbeatTicks = profileRng.pick([1, 1, 2, 3]);
  // The memory window on its own PRNG, so the rest of each seed's profile stays as it was:
  // mostly tiny, so that followers fall behind it and restarted peers apply from the disk.
  const cacheRng = new Rng(o.seed ^ 0xcac4e);
  const maxCachedEntries = cacheRng.pick([1, 2, 5, 16, 16384]);
  const maxCachedBytes = cacheRng.pick([40, 1 << 20]);
  // Lease reads (thesis §6.4.1) in half the runs, with the drift bound the simulated clocks
  // keep: rates in [1 - drift, 1 + drift].
  const leaseReads = cacheRng.chance(0.5);
  const clockDrift = profileRng.pick([0, 0.1, 0.3]);
  const tickMs = 10;
  // The fastest peer's tick period over the slowest's (see Simulator: tickEvery).
  const clockDriftBound = Math.round(tickMs * (1 + clockDrift)) / Math.max(1, Math.round(tickMs * (1 - clockDrift)));
  // Snapshots and membership changes (issue 5) on a PRNG of their own, again so the rest of
  // each seed's profile stays as it was: compaction in most runs, often with tiny chunks; in
  // half the runs the cluster starts smaller than the peers and its membership keeps changing.
  const issue5Rng = new Rng(o.seed ^ 0x15e5);
  const snapshotThreshold = issue5Rng.pick([0, 5, 20, 100]);
  const snapshotChunkBytes = issue5Rng.pick([64, 512, 1 << 20]);
  const membership = issue5Rng.chance(0.5);
  const members = membership ? issue5Rng.int(1, o.peers) : o.peers;
  const transfers = issue5Rng.chance(0.5);
  const options: SimOptions = {
    peers: o.peers,
    members,
    seed: o.seed,
    tickMs,
    clockDrift,
    core: {
      heartbeatTicks,
      electionTicks: profileRng.pick([8, 10, 15]),
      maxEntriesPerAppend: profileRng.pick([1, 3, 64]),
      maxInflightAppends: profileRng.pick([1, 4, 64]),
      maxCachedEntries,
      maxCachedBytes,
      leaseReads,
      clockDriftBound,
      snapshotThreshold,
      snapshotChunkBytes,
      catchUpTicks: 200,
    },
    net: {
      minDelayMs: 1,
      maxDelayMs: profileRng.pick([3, 10, 25]),
      longDelayP: profileRng.pick([0, 0.01, 0.05]),
      longDelayMs: 150,
      dropP: profileRng.pick([0, 0.02, 0.1, 0.25]),
      duplicateP: profileRng.pick([0, 0.05, 0.2]),
    },
    disk: { minDelayMs: 0, maxDelayMs: profileRng.pick([1, 5, 20]), partialP: profileRng.pick([0, 0.3]) },
  };
  // A storm: faults every few election timeouts instead of every few hundred ms, quick
  // restarts, so that leaders of many terms leave divergent suffixes (Figure 8 histories).
  const storm = profileRng.chance(0.35);
  const c = options.core!;
  const net = options.net!;
  const profile =
    `hb=${c.heartbeatTicks} el=${c.electionTicks} batch=${c.maxEntriesPerAppend} window=${c.maxInflightAppends}${c.leaseReads ? ' lease' : ''} cache=${c.maxCachedEntries}/${c.maxCachedBytes}B ` +
    `delay≤${net.maxDelayMs} long=${net.longDelayP} drop=${net.dropP} dup=${net.duplicateP} disk≤${options.disk!.maxDelayMs} partial=${options.disk!.partialP} drift=${options.clockDrift}` +
    (storm ? ' storm' : '') +
    (snapshotThreshold > 0 ? ` snapshot=${snapshotThreshold}/${snapshotChunkBytes}B` : '') +
    (membership ? ` members=${members} changes` : '') +
    (transfers ? ' transfers' : '');

  const traceLines = o.traceLines ?? 60;
  const sim = new Simulator({ ...options, traceSize: Math.max(traceLines, 1) });
  try {
    sim.bootstrap();
    scheduleFaults(sim, faultRng, o.chaosMs, storm);
    let clientsOn = true;
    const client = (): void => {
      if (!clientsOn) return;
      // Mostly the leader of the highest term; sometimes any leader (a deposed one in a
      // minority keeps appending entries that must never commit); sometimes any peer.
      const leaders = sim.leaders().map((c) => c.id);
      const live = sim.ids.filter((id) => sim.isUp(id));
      const r = clientRng.next();
      const target =
        leaders.length > 0 && r < 0.7 ? leaders[0]! : leaders.length > 0 && r < 0.85 ? clientRng.pick(leaders) : live.length > 0 ? clientRng.pick(live) : null;
      if (target !== null) sim.propose(target, clientRng.chance(0.1) ? clientRng.int(4, 12) : clientRng.int(1, 3));
      sim.at(sim.now + clientRng.int(2, 30), 'client', client);
    };
    sim.at(clientRng.int(0, 50), 'client', client);
    // Readers on their own PRNG (so the writers' schedule per seed is unchanged): ReadIndex
    // reads at random live peers, leaders and followers alike.
    const readRng = new Rng(o.seed ^ 0x4ead);
    const reader = (): void => {
      if (!clientsOn) return;
      const live = sim.ids.filter((id) => sim.isUp(id));
      if (live.length > 0) sim.read(readRng.pick(live), readRng.int(1, 3));
      sim.at(sim.now + readRng.int(5, 40), 'client', reader);
    };
    sim.at(readRng.int(0, 50), 'client', reader);
    // Membership changes (§6) at the leader, to random non-empty sets of the peers.
    let configChanges = 0;
    const changer = (): void => {
      if (!clientsOn) return;
      const leader = sim.leader();
      if (leader !== null) {
        const next = issue5Rng.shuffle(sim.ids).slice(0, issue5Rng.int(1, sim.ids.length));
        sim.changeConfig(leader, next);
        configChanges++;
      }
      sim.at(sim.now + issue5Rng.int(100, 600), 'membership', changer);
    };
    if (membership) sim.at(issue5Rng.int(100, 400), 'membership', changer);
    // Leadership transfers (thesis §3.10), to a random peer or the best voter; with lease reads
    // in half the runs, the reads check that a leader handing over gives its lease up.
    const transferer = (): void => {
      if (!clientsOn) return;
      const leader = sim.leader();
      if (leader !== null) sim.transferLeadership(leader, issue5Rng.chance(0.3) ? null : issue5Rng.pick(sim.ids));
      sim.at(sim.now + issue5Rng.int(100, 500), 'transfer', transferer);
    };
    if (transfers) sim.at(issue5Rng.int(100, 400), 'transfer', transferer);
    // Client sessions (thesis §6.3) on their own PRNG: now and then the commands move to a newly
    // registered session, whose timeout (in log time) partitions and idle spells can outlast.
    const sessionRng = new Rng(o.seed ^ 0x5e55);
    const opener = (): void => {
      if (!clientsOn) return;
      const leader = sim.leader();
      const live = sim.ids.filter((id) => sim.isUp(id));
      const target = leader !== null && sessionRng.chance(0.8) ? leader : live.length > 0 ? sessionRng.pick(live) : null;
      if (target !== null) sim.openSession(target, sessionRng.pick([200, 1_000, 10_000]));
      sim.at(sim.now + sessionRng.int(200, 1_000), 'session', opener);
    };
    sim.at(sessionRng.int(0, 500), 'session', opener);
    sim.runUntil(o.chaosMs);

    // Liveness: heal, restart, stop losing messages.
    clientsOn = false;
    sim.heal();
    sim.net.dropP = 0;
    sim.net.longDelayP = 0;
    for (const id of sim.ids) sim.restart(id);
    checkLiveness(sim);
    const outcomes = [...sim.outcomes.values()];
    return {
      seed: o.seed,
      peers: o.peers,
      profile,
      virtualMs: sim.now,
      events: sim.stats.events,
      steps: sim.stats.steps,
      elections: sim.checker.stats.elections,
      crashes: sim.stats.crashes,
      committed: sim.checker.committedCount,
      acked: sim.checker.stats.acked,
      sent: sim.stats.sent,
      dropped: sim.stats.dropped,
      fetches: sim.stats.fetches,
      snapshots: sim.stats.snapshots,
      installs: sim.stats.installs,
      configChanges,
      configDone: [...sim.adminResults.values()].filter((r) => r.kind.startsWith('config') && r.outcome === 'ok').length,
      transfersDone: [...sim.adminResults.values()].filter((r) => r.kind.startsWith('transfer') && r.outcome === 'ok').length,
      commandsOk: outcomes.filter((o) => o === 'ok').length,
      commandsRefused: outcomes.filter((o) => o !== 'ok' && o !== 'SESSION_EXPIRED').length,
      sessionExpired: outcomes.filter((o) => o === 'SESSION_EXPIRED').length,
    };
  } catch (err) {
    const e = err as Error;
    throw new SimulationFailure(
      [
        `SEED=${o.seed} peers=${o.peers} (rerun: SIM_SEED=${o.seed} SIM_PEERS=${o.peers}) at virtual ${sim.now} ms: ${e.message}`,
        `profile: ${profile}`,
        ...sim.describePeers().map((l) => `  ${l}`),
        'recent events:',
        ...sim.recentTrace().slice(-traceLines).map((l) => `  ${l}`),
        e.name === 'InvariantViolation' || e.name === 'Error' ? `stack: ${e.stack?.split('\n').slice(1, 6).join(' | ')}` : '',
      ].join('\n'),
    );
  }
}

function scheduleFaults(sim: Simulator, rng: Rng, untilMs: number, storm: boolean): void {
  const live = (): string[] => sim.ids.filter((id) => sim.isUp(id));
  const restartLater = (id: string): void => {
    sim.at(sim.now + (storm ? rng.int(1, 120) : rng.int(5, 400)), `restart ${id}`, () => sim.restart(id));
  };
  const healLater = (): void => {
    sim.at(sim.now + (storm ? rng.int(20, 250) : rng.int(50, 600)), 'heal', () => sim.heal());
  };
  const actions: [number, () => void][] = [
    [
      3,
      () => {
        const ids = live();
        if (ids.length === 0) return;
        const id = rng.pick(ids);
        sim.crash(id);
        restartLater(id);
      },
    ],
    [
      2,
      () => {
        const id = sim.leader();
        if (id === null) return;
        sim.crash(id);
        restartLater(id);
      },
    ],
    [
      0.3,
      () => {
        for (const id of live()) {
          sim.crash(id);
          restartLater(id);
        }
      },
    ],
    [
      2,
      () => {
        const shuffled = rng.shuffle(sim.ids);
        const cut = rng.int(1, shuffled.length - 1);
        sim.partition([shuffled.slice(0, cut), shuffled.slice(cut)]);
        healLater();
      },
    ],
    [
      1,
      () => {
        const id = sim.leader();
        if (id === null) return;
        sim.isolate(id);
        healLater();
      },
    ],
    [
      1,
      () => {
        const [a, b] = rng.shuffle(sim.ids);
        sim.drop(a!, b!, rng.pick([0.5, 0.9, 1]));
        healLater();
      },
    ],
    [1, () => sim.heal()],
  ];
  const total = actions.reduce((s, [w]) => s + w, 0);
  for (let t = rng.int(100, 400); t < untilMs; t += storm ? rng.int(15, 150) : rng.int(60, 400)) {
    // The choice is drawn now, carried out at `t` against whatever the state is then.
    let r = rng.next() * total;
    let chosen = actions[actions.length - 1]![1];
    for (const [w, fn] of actions) {
      if ((r -= w) < 0) {
        chosen = fn;
        break;
      }
    }
    sim.at(t, 'fault', chosen);
  }
}

/** A liveness failure; the caller's report adds the seed, the peers and the trace. */
function fail(what: string): never {
  throw new Error(`liveness: ${what}`);
}

function checkLiveness(sim: Simulator): void {
  const committedInTerm = (): boolean => {
    const leaders = sim.leaders();
    const l = leaders[0];
    return l !== undefined && l.log.term(l.commitIndex) === l.currentTerm;
  };
  if (!sim.runUntilCond(committedInTerm, 30_000)) fail('no leader committed an entry of its term within 30 s (virtual) after healing');

  // Fresh proposals commit (retried on a new leader if leadership moves meanwhile).
  const wanted = 5;
  let acked = 0;
  // A leader outside its latest configuration (thesis §4.2.2) takes no commands: it is about to
  // step down once that configuration commits.
  const memberLeader = (): string | null => {
    const l = sim.leaders()[0];
    return l && l.config && isVoter(l.config, l.id) ? l.id : null;
  };
  for (let attempt = 0; attempt < 10 && acked < wanted; attempt++) {
    const leader = memberLeader();
    if (leader === null) {
      sim.runUntilCond(() => memberLeader() !== null, 2_000);
      continue;
    }
    const ids = sim.propose(leader, wanted - acked);
    const settled = (): boolean => ids.every((id) => sim.checker.requests.get(id)!.status !== 'pending');
    sim.runUntilCond(settled, 10_000);
    const now = ids.filter((id) => sim.checker.requests.get(id)!.status === 'acked').length;
    acked += now;
    // Refused (a leader handing over takes no commands, §3.10): let the handover play out.
    if (now === 0) sim.runFor(200);
  }
  if (acked < wanted) fail(`only ${acked} of ${wanted} proposals committed after healing`);

  // Every peer of the leader's configuration applies the same entries, up to its commit index
  // (a peer removed from the cluster stops hearing from it, and stays behind).
  const members = (): string[] => {
    const l = sim.leaders()[0];
    return l && l.config ? voters(l.config) : sim.ids;
  };
  const converged = (): boolean => {
    const l = sim.leaders()[0];
    // A leader that has not yet committed an entry of its term may not know everything
    // committed (a leader removed by the last membership change has just handed over to it).
    if (!l || l.log.term(l.commitIndex) !== l.currentTerm) return false;
    return members().every((id) => sim.peer(id).applied.length === l.commitIndex);
  };
  if (!sim.runUntilCond(converged, 30_000)) fail(`peers did not apply the same prefix within 30 s (virtual)`);
  const referenceId = sim.leader()!;
  const reference = sim.peer(referenceId).applied;
  for (const id of members()) {
    const applied = sim.peer(id).applied;
    for (let i = 0; i < reference.length; i++) {
      if (applied[i] !== reference[i]) fail(`${id} applied ${applied[i]} at ${i + 1}, ${referenceId} applied ${reference[i]}`);
    }
  }
  // The same state: the applied digest, and the kv and session table (as snapshot bytes).
  const state = sim.peer(referenceId).machine.snapshot();
  for (const id of members()) {
    const m = sim.peer(id).machine;
    if (m.appliedDigest !== sim.peer(referenceId).machine.appliedDigest) fail(`${id} has another applied digest than ${referenceId}`);
    const mine = m.snapshot();
    if (mine.length !== state.length || mine.some((b, i) => b !== state[i])) fail(`${id} holds another state than ${referenceId}`);
  }
  // Nothing acknowledged to a client is lost.
  for (const r of sim.checker.requests.values()) {
    if (r.status !== 'acked') continue;
    if (reference[r.index - 1] !== r.fp) fail(`acknowledged request ${r.id} (index ${r.index}) is not in the final state`);
  }
}
