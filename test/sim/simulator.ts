/**
 * A deterministic simulator of N consensus cores over a virtual clock and a virtual network,
 * driven by one seeded PRNG (test/sim/rng.ts). It plays the part of the shells: it carries
 * out the cores' effects the way actors/consensus-actor.ts and the log actor do, with faults.
 *
 *  - Disk: each peer has an in-memory durable store (term, votedFor, entries). `persist`
 *    effects queue up and are group-committed after a random delay, in order, sometimes only
 *    the oldest few of them; the disk is written first, then `persisted{seq}` of the last
 *    write in the batch is fed back.
 *  - Crash: the core, the state machine, the queued (not yet durable) writes and pending client
 *    requests are lost; the disk is kept. Restart rebuilds the core from the disk with
 *    `createCore` and a new seed; commitIndex/lastApplied restart at 0, so the state machine is
 *    rebuilt by re-applying from index 1.
 *  - Network: every send gets a random delay (so messages reorder), and may be dropped or
 *    duplicated; partitions (groups) and per-link drop probabilities (`drop`, `cut`,
 *    `isolate`) are checked on delivery; `heal` removes them. Messages are frozen on send,
 *    so a core that mutated a message it received (or one it sent) would throw.
 *  - Time: each live core is ticked every `tickMs` virtual ms, skewed per peer by up to
 *    `clockDrift`, each peer with its own phase.
 *  - State machine: each peer runs the real apply side (src/state-machines/replicated.ts: the
 *    built-in kv behind the client session table, the applied digest, real snapshot bytes);
 *    beside it the peer keeps the fingerprints of the entries it applied, which the checker
 *    reads. The checker compares every entry's outcome and the applied digest after it across
 *    the peers that apply that index, and the state a snapshot holds across the peers that
 *    take one at the same index.
 *  - Clients: `propose` sends kv commands (each unique: it carries its request id) to a peer,
 *    stamped with the virtual clock (the log time sessions expire by), under the client
 *    session `openSession` registered last, if any, or as idempotent commands; the random driver
 *    sends them mostly to the current leader, sometimes to a random peer (→ NOT_LEADER).
 *
 * The SafetyChecker runs after every event: every step of a core, every disk write, every
 * message sent and every entry applied.
 *
 * Besides the random driver (`runRandomized` in test/sim/random-run.ts) the simulator offers
 * an etcd-style manual harness: `tick`, `deliver`, `stabilize`, `drop(from, to, p)`, `cut`,
 * `isolate`, `partition`, `heal`, `ignore(type)`, `crash`, `restart`, `propose`.
 */
import { createCore, step, type CoreOptions, type CoreState, type Effect, type FetchReason, type Input } from '../../src/core/index.js';
import { encodeLogCommand } from '../../src/codec.js';
import {
  type Entry,
  type LogCommand,
  type OpRequest,
  type PeerMessage,
  type PersistRequest,
  type Snapshot,
} from '../../src/messages.js';
import { KvStateMachine } from '../../src/state-machines/kv.js';
import { ReplicatedStateMachine } from '../../src/state-machines/replicated.js';
import { assertNever } from '../../src/validate.js';
import { fingerprint, InvariantViolation, SafetyChecker, type Disk, type PeerView } from './checker.js';
import { Rng } from './rng.js';

export interface NetworkOptions {
  /** Delay of a message, uniform in [minDelayMs, maxDelayMs]. */
  minDelayMs: number;
  maxDelayMs: number;
  /** Probability that a message is delayed by up to `longDelayMs` instead (stale messages). */
  longDelayP: number;
  longDelayMs: number;
  /** Probability that a message is lost. */
  dropP: number;
  /** Probability that a message is delivered twice (with independent delays). */
  duplicateP: number;
}

export interface DiskOptions {
  /** Time from the first queued write to the group commit, uniform in [min, max]. */
  minDelayMs: number;
  maxDelayMs: number;
  /** Probability that a group commit takes only some of the queued writes (the rest follow). */
  partialP: number;
}

export interface SimOptions {
  peers: number;
  /** How many of the peers (the first ones) the bootstrap configuration holds; all by default. */
  members?: number;
  seed: number;
  core?: Partial<CoreOptions>;
  /** Virtual ms between two ticks of a core. */
  tickMs?: number;
  /** Each peer's clock runs at a rate drawn from [1 - drift, 1 + drift]. */
  clockDrift?: number;
  /** Tick the cores from the event queue (random runs) or only on `tick()` (manual harness). */
  autoTick?: boolean;
  net?: Partial<NetworkOptions>;
  disk?: Partial<DiskOptions>;
  /** Events kept for the failure trace. */
  traceSize?: number;
}

/** A manual harness: no delays, no auto ticks, so `stabilize` runs messages in FIFO order. */
export const MANUAL: Pick<SimOptions, 'autoTick' | 'net' | 'disk'> = {
  autoTick: false,
  net: { minDelayMs: 0, maxDelayMs: 0, longDelayP: 0, dropP: 0, duplicateP: 0 },
  disk: { minDelayMs: 0, maxDelayMs: 0, partialP: 0 },
};

const DEFAULT_NET: NetworkOptions = {
  minDelayMs: 1,
  maxDelayMs: 10,
  longDelayP: 0,
  longDelayMs: 100,
  dropP: 0,
  duplicateP: 0,
};
const DEFAULT_DISK: DiskOptions = { minDelayMs: 1, maxDelayMs: 5, partialP: 0.3 };

export interface SimPeer extends PeerView {
  readonly id: string;
  core: CoreState | null;
  incarnation: number;
  disk: Disk;
  applied: string[];
  /** The apply side, as the consensus actor runs it: the kv behind the session table. */
  machine: ReplicatedStateMachine;
  /** Writes handed to the disk and not yet durable. */
  queued: PersistRequest[];
  flushScheduled: boolean;
  /** Virtual ms between this peer's ticks (tickMs, skewed by its clock drift). */
  tickEvery: number;
  /** Client requests sent to this incarnation that have no outcome yet. */
  pending: Set<number>;
}

type SimEvent =
  | { kind: 'msg'; at: number; n: number; msg: PeerMessage }
  | { kind: 'flush'; at: number; n: number; peer: string; incarnation: number }
  | { kind: 'tick'; at: number; n: number; peer: string; incarnation: number }
  | { kind: 'fetch'; at: number; n: number; peer: string; incarnation: number; from: number; to: number; reason: FetchReason }
  | { kind: 'call'; at: number; n: number; what: string; fn: () => void };

/** Binary min-heap on (at, n): events due at the same time run in the order they were queued. */
class EventQueue {
  private readonly a: SimEvent[] = [];

  get size(): number {
    return this.a.length;
  }

  push(e: SimEvent): void {
    const a = this.a;
    a.push(e);
    let i = a.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!before(a[i]!, a[p]!)) break;
      [a[i], a[p]] = [a[p]!, a[i]!];
      i = p;
    }
  }

  peek(): SimEvent | undefined {
    return this.a[0];
  }

  pop(): SimEvent | undefined {
    const a = this.a;
    if (a.length === 0) return undefined;
    const top = a[0]!;
    const last = a.pop()!;
    if (a.length > 0) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && before(a[l]!, a[m]!)) m = l;
        if (r < a.length && before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }

  /** Remove every event matching `drop`. */
  filter(keep: (e: SimEvent) => boolean): void {
    const kept = this.a.filter(keep);
    this.a.length = 0;
    for (const e of kept) this.push(e);
  }

  all(): readonly SimEvent[] {
    return this.a;
  }
}

function before(x: SimEvent, y: SimEvent): boolean {
  return x.at < y.at || (x.at === y.at && x.n < y.n);
}

/** Deep-freeze a message and its entries (not the command bytes: typed arrays cannot be frozen). */
function freeze(m: PeerMessage): PeerMessage {
  if (m.type === 'appendEntries') {
    for (const e of m.entries) {
      if (e.type === 'config') Object.freeze(e.peers);
      Object.freeze(e);
    }
    Object.freeze(m.entries);
  }
  return Object.freeze(m);
}

export class Simulator {
  readonly ids: string[];
  readonly peers = new Map<string, SimPeer>();
  readonly checker: SafetyChecker;
  readonly rng: Rng;
  readonly tickMs: number;
  readonly net: NetworkOptions;
  readonly diskOptions: DiskOptions;
  readonly coreOptions: Partial<CoreOptions>;
  private readonly autoTick: boolean;
  private readonly queue = new EventQueue();
  private n = 0;
  now = 0;
  /** Peers in different groups cannot talk; null: no partition. */
  private groups: Map<string, number> | null = null;
  private readonly linkDrop = new Map<string, number>();
  private readonly ignored = new Set<PeerMessage['type']>();
  /** Called with every message before it is sent; return false to drop it. */
  msgHook: ((m: PeerMessage) => boolean) | null = null;
  private nextRequestId = 1;
  /** Reads issued and not yet served: the highest index committed anywhere at issue time. */
  private readonly readsIssued = new Map<number, number>();
  /** Reads served and checked. */
  readsServed = 0;
  private bootstrapper: string | null = null;
  /** The voters of the bootstrap configuration. */
  readonly members: string[];
  /** Membership changes and transfers issued, and how each ended ('pending' until then). */
  readonly adminResults = new Map<number, { kind: string; peer: string; outcome: string }>();
  /** Ring buffer of recent events, for the failure report. */
  private readonly trace: (string | SimEvent)[] = [];
  private traceAt = 0;
  private readonly traceSize: number;
  readonly stats = {
    events: 0,
    steps: 0,
    sent: 0,
    dropped: 0,
    duplicated: 0,
    crashes: 0,
    flushes: 0,
    fetches: 0,
    snapshots: 0,
    installs: 0,
  };

  constructor(opts: SimOptions) {
    this.rng = new Rng(opts.seed);
    this.tickMs = opts.tickMs ?? 10;
    this.autoTick = opts.autoTick ?? true;
    this.net = { ...DEFAULT_NET, ...opts.net };
    this.diskOptions = { ...DEFAULT_DISK, ...opts.disk };
    this.coreOptions = opts.core ?? {};
    this.traceSize = opts.traceSize ?? 200;
    this.ids = Array.from({ length: opts.peers }, (_, i) => `p${i + 1}`);
    this.members = this.ids.slice(0, opts.members ?? opts.peers);
    for (const id of this.ids) {
      const peer: SimPeer = {
        id,
        core: null,
        incarnation: 0,
        disk: { term: 0, votedFor: null, entries: [], snapshot: null },
        applied: [],
        machine: new ReplicatedStateMachine(new KvStateMachine()),
        queued: [],
        flushScheduled: false,
        tickEvery: Math.max(1, Math.round(this.tickMs * (1 + (this.rng.next() * 2 - 1) * (opts.clockDrift ?? 0)))),
        pending: new Set(),
      };
      this.peers.set(id, peer);
    }
    this.checker = new SafetyChecker(() => [...this.peers.values()]);
    for (const id of this.ids) this.start(this.peer(id));
  }

  peer(id: string): SimPeer {
    const p = this.peers.get(id);
    if (!p) throw new Error(`no peer ${id}`);
    return p;
  }

  core(id: string): CoreState {
    const c = this.peer(id).core;
    if (!c) throw new Error(`${id} is down`);
    return c;
  }

  isUp(id: string): boolean {
    return this.peer(id).core !== null;
  }

  /** Live peers that are leaders, highest term first. */
  leaders(): CoreState[] {
    const out: CoreState[] = [];
    for (const p of this.peers.values()) if (p.core?.role === 'leader') out.push(p.core);
    return out.sort((a, b) => b.currentTerm - a.currentTerm);
  }

  /** The leader of the highest term among live peers, if any. */
  leader(): string | null {
    return this.leaders()[0]?.id ?? null;
  }

  // -------------------------------------------------------------------------------------------
  // Running cores

  private start(p: SimPeer): void {
    const snapshot = p.disk.snapshot;
    p.core = createCore({
      id: p.id,
      seed: this.rng.int(0, 0x7fffffff),
      options: this.coreOptions,
      term: p.disk.term,
      votedFor: p.disk.votedFor,
      entries: p.disk.entries.slice(snapshot?.meta.index ?? 0),
      snapshot,
    });
    // The state machine restarts from the snapshot, as the consensus actor's does.
    p.machine = new ReplicatedStateMachine(new KvStateMachine());
    p.applied = [];
    if (snapshot) this.restoreMachine(p, snapshot);
    p.queued = [];
    p.flushScheduled = false;
    p.pending = new Set();
    this.checker.onRestart(p);
    if (this.autoTick) this.scheduleTick(p, true);
    // A blank bootstrapper lost its bootstrap write: set the configuration again, as the
    // API would on a retried setConfig.
    if (p.id === this.bootstrapper && p.disk.entries.length === 0) this.input(p, { type: 'bootstrap', peers: [...this.members] });
  }

  /** Form the cluster: `id` (the first peer by default) is given the members as voters. */
  bootstrap(id = this.ids[0]!): void {
    this.bootstrapper = id;
    this.input(this.peer(id), { type: 'bootstrap', peers: [...this.members] });
  }

  /** Ask `via` for a membership change to `peers` (§6); its outcome lands in `adminResults`. */
  changeConfig(via: string, peers: readonly string[]): number {
    const id = this.nextRequestId++;
    this.adminResults.set(id, { kind: `config ${peers.join(',')}`, peer: via, outcome: 'pending' });
    this.input(this.peer(via), { type: 'changeConfig', id, peers: [...peers] });
    return id;
  }

  /** Ask `via` to hand leadership over to `target` (or the best voter); outcome in `adminResults`. */
  transferLeadership(via: string, target: string | null = null): number {
    const id = this.nextRequestId++;
    this.adminResults.set(id, { kind: `transfer ${target ?? 'any'}`, peer: via, outcome: 'pending' });
    this.input(this.peer(via), { type: 'transferLeadership', id, target });
    return id;
  }

  /** Step one core and carry out its effects, checking invariants after the step. */
  input(p: SimPeer, input: Input): void {
    if (!p.core) return;
    this.stats.steps++;
    const result = step(p.core, input);
    p.core = result.state;
    this.checker.afterStep(p);
    for (const e of result.effects) this.execute(p, e);
    // Inputs a shell feeds back right after a step (as the actor's queueMicrotask does).
    if (this.draining) return;
    this.draining = true;
    try {
      for (let next = this.followUps.shift(); next; next = this.followUps.shift()) next();
    } finally {
      this.draining = false;
    }
  }

  private readonly followUps: (() => void)[] = [];
  private draining = false;

  private execute(p: SimPeer, e: Effect): void {
    switch (e.type) {
      case 'persist':
        p.queued.push(e.write);
        if (!p.flushScheduled) {
          p.flushScheduled = true;
          const at = this.now + this.rng.int(this.diskOptions.minDelayMs, this.diskOptions.maxDelayMs);
          this.queue.push({ kind: 'flush', at, n: this.n++, peer: p.id, incarnation: p.incarnation });
        }
        return;
      case 'send':
        this.checker.onSend(p, e.message);
        this.send(freeze(e.message));
        return;
      case 'apply':
        this.checker.onApply(p, e.entries, e.requestIds);
        // One entry at a time, so that the digest after each can be compared across peers.
        for (let k = 0; k < e.entries.length; k++) {
          const entry = e.entries[k]!;
          const [outcome] = p.machine.apply([entry]);
          p.applied.push(fingerprint(entry));
          this.checker.onApplied(p, entry, outcome ?? null, p.machine.appliedDigest);
          const rid = e.requestIds[k];
          if (rid !== null && rid !== undefined && outcome) this.outcomes.set(rid, outcome.ok ? 'ok' : outcome.error.code);
        }
        for (const id of e.requestIds) if (id !== null) p.pending.delete(id);
        return;
      case 'clientError': {
        for (const id of e.ids) {
          const admin = this.adminResults.get(id);
          if (admin) admin.outcome = e.code;
        }
        // Refused reads only need forgetting (NOT_LEADER; a read has no effect to check).
        const writes = e.ids.filter((id) => !this.readsIssued.delete(id) && !this.adminResults.has(id));
        if (writes.length > 0) this.checker.onClientError(p, writes, e.code);
        for (const id of e.ids) p.pending.delete(id);
        return;
      }
      case 'readReady':
        // Linearizable reads (thesis §6.4): a read served now must reflect every entry
        // committed anywhere before it was issued.
        for (const id of e.ids) {
          const mustSee = this.readsIssued.get(id);
          if (mustSee === undefined) continue;
          this.readsIssued.delete(id);
          const applied = p.core!.lastApplied;
          if (applied < mustSee) {
            throw new InvariantViolation(
              'Linearizable Read',
              `${p.id} served read ${id} at applied index ${applied}, but index ${mustSee} was committed before the read was issued`,
            );
          }
          this.readsServed++;
        }
        return;
      case 'fetch': {
        // The log actor reads its disk once the writes before the request have landed.
        const at = this.now + this.rng.int(this.diskOptions.minDelayMs, this.diskOptions.maxDelayMs);
        this.stats.fetches++;
        this.queue.push({ kind: 'fetch', at, n: this.n++, peer: p.id, incarnation: p.incarnation, from: e.from, to: e.to, reason: e.reason });
        return;
      }
      case 'roleChanged':
        this.record(`${p.id} ${e.role} term ${e.term} leader ${e.leader}`);
        return;
      case 'adminDone': {
        const admin = this.adminResults.get(e.id);
        if (!admin) throw new InvariantViolation('Client', `${p.id} answers unknown admin request ${e.id}`);
        admin.outcome = 'ok';
        this.record(`${p.id} done: ${admin.kind}`);
        return;
      }
      case 'takeSnapshot': {
        // As the consensus actor does: the machine's state now, handed back in a step of its own.
        if (p.applied.length !== e.index || p.machine.appliedIndex !== e.index) {
          throw new InvariantViolation(
            'Sanity',
            `${p.id} asks for a snapshot at ${e.index} having applied ${p.applied.length} (its machine ${p.machine.appliedIndex})`,
          );
        }
        const data = p.machine.snapshot();
        const digest = p.machine.appliedDigest;
        this.checker.onSnapshotTaken(p, e.index, data, digest);
        const incarnation = p.incarnation;
        this.followUps.push(() => {
          this.record(`${p.id} snapshot taken at ${e.index}`);
          if (p.incarnation === incarnation && p.core) this.input(p, { type: 'snapshotTaken', index: e.index, data, digest });
        });
        this.stats.snapshots++;
        return;
      }
      case 'restore': {
        this.restoreMachine(p, e.snapshot);
        this.stats.installs++;
        this.record(`${p.id} restores snapshot at ${e.snapshot.meta.index}`);
        return;
      }
      default:
        assertNever(e, 'effect');
    }
  }

  /**
   * Restore `p`'s state machine from a snapshot (installed, or on its disk at a restart). The
   * checker first matches it with the one taken at its index, and gives back the fingerprints of
   * the entries it stands for.
   */
  private restoreMachine(p: SimPeer, snapshot: Snapshot): void {
    p.applied = this.checker.onRestore(p, snapshot);
    p.machine.restore(snapshot);
  }

  /** Complete `id`'s queued disk writes now (manual harness). */
  flush(id: string): void {
    const p = this.peer(id);
    while (p.core && p.queued.length > 0) this.flushDisk(p, true);
  }

  /**
   * Group commit: the queued writes (or, sometimes, only the oldest few) land on the disk in
   * order, then the last one's seq is acknowledged.
   */
  private flushDisk(p: SimPeer, all = false): void {
    p.flushScheduled = false;
    if (p.queued.length === 0) return;
    this.stats.flushes++;
    const count =
      !all && p.queued.length > 1 && this.rng.chance(this.diskOptions.partialP) ? this.rng.int(1, p.queued.length - 1) : p.queued.length;
    const writes = p.queued.splice(0, count);
    if (p.queued.length > 0) {
      p.flushScheduled = true;
      const at = this.now + this.rng.int(this.diskOptions.minDelayMs, this.diskOptions.maxDelayMs);
      this.queue.push({ kind: 'flush', at, n: this.n++, peer: p.id, incarnation: p.incarnation });
    }
    for (const w of writes) {
      this.checker.beforeDiskWrite(p, w);
      const d = p.disk;
      if (w.snapshot) {
        const from = d.snapshot?.meta.index ?? 0;
        d.snapshot = { meta: w.snapshot.meta, data: w.snapshot.data };
        if (w.snapshot.discardLog) d.entries = new Array<Entry>(w.snapshot.meta.index);
        else for (let i = from + 1; i <= w.snapshot.meta.index; i++) delete d.entries[i - 1];
      }
      d.term = w.term;
      d.votedFor = w.votedFor;
      if (w.truncateFrom > 0 && w.truncateFrom <= d.entries.length) d.entries.length = w.truncateFrom - 1;
      for (const e of w.entries) d.entries.push(e);
    }
    this.input(p, { type: 'persisted', seq: writes[writes.length - 1]!.seq });
  }

  // -------------------------------------------------------------------------------------------
  // Network

  private send(m: PeerMessage): void {
    this.stats.sent++;
    if (this.ignored.has(m.type) || (this.msgHook && !this.msgHook(m))) {
      this.stats.dropped++;
      return;
    }
    if (this.rng.chance(this.net.dropP)) {
      this.stats.dropped++;
      return;
    }
    const copies = this.rng.chance(this.net.duplicateP) ? 2 : 1;
    if (copies === 2) this.stats.duplicated++;
    for (let c = 0; c < copies; c++) {
      const delay = this.rng.chance(this.net.longDelayP)
        ? this.rng.int(this.net.maxDelayMs, this.net.longDelayMs)
        : this.rng.int(this.net.minDelayMs, this.net.maxDelayMs);
      this.queue.push({ kind: 'msg', at: this.now + delay, n: this.n++, msg: m });
    }
  }

  private blocked(m: PeerMessage): boolean {
    if (this.groups && this.groups.get(m.from) !== this.groups.get(m.to)) return true;
    const p = this.linkDrop.get(`${m.from}>${m.to}`);
    return p !== undefined && (p >= 1 || this.rng.chance(p));
  }

  private deliverMsg(m: PeerMessage): void {
    const to = this.peers.get(m.to);
    if (!to || !to.core || this.blocked(m)) {
      this.stats.dropped++;
      return;
    }
    this.input(to, { type: 'message', message: m });
  }

  /** etcd `drop(from, to, p)`: messages from → to are lost with probability p. */
  drop(from: string, to: string, p: number): void {
    this.linkDrop.set(`${from}>${to}`, p);
  }

  /** etcd `cut`: no messages between a and b, either way. */
  cut(a: string, b: string): void {
    this.drop(a, b, 1);
    this.drop(b, a, 1);
  }

  /** etcd `isolate`: `id` can neither send to nor receive from anyone. */
  isolate(id: string): void {
    for (const other of this.ids) if (other !== id) this.cut(id, other);
  }

  /** Split the cluster: peers in different groups cannot talk. Peers not listed form one more group. */
  partition(groups: readonly (readonly string[])[]): void {
    const g = new Map<string, number>();
    groups.forEach((ids, i) => ids.forEach((id) => g.set(id, i)));
    for (const id of this.ids) if (!g.has(id)) g.set(id, groups.length);
    this.groups = g;
  }

  /** etcd `recover`: remove partitions, link drops and ignored types. */
  heal(): void {
    this.groups = null;
    this.linkDrop.clear();
    this.ignored.clear();
  }

  /**
   * An election timeout passes for `ids` without them hearing a leader, short of their own
   * election timers: their §4.2.3 guard runs out, so they vote for a candidate of a higher term
   * (scenarios that elect a chosen peer by ticking only that one).
   */
  forgetLeader(ids: readonly string[] = this.ids): void {
    for (const id of ids) {
      const c = this.peer(id).core;
      if (c && c.role !== 'leader') c.voteGuard = 0;
    }
  }

  /** etcd `ignore(type)`: drop every message of this type. */
  ignore(type: PeerMessage['type']): void {
    this.ignored.add(type);
  }

  /** Messages sent and not yet delivered (or dropped on delivery). */
  inFlight(): PeerMessage[] {
    const out: PeerMessage[] = [];
    for (const e of this.queue.all()) if (e.kind === 'msg') out.push(e.msg);
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Faults

  /** The peer stops: core, state machine, queued writes and pending requests are lost. */
  crash(id: string): void {
    const p = this.peer(id);
    if (!p.core) return;
    this.stats.crashes++;
    this.record(`${id} crashes (disk: term ${p.disk.term} vote ${p.disk.votedFor} ${p.disk.entries.length} entries; ${p.queued.length} writes lost)`);
    p.core = null;
    p.queued = [];
    p.flushScheduled = false;
    p.applied = [];
    p.machine = new ReplicatedStateMachine(new KvStateMachine());
    p.pending.clear();
    p.incarnation++;
    this.checker.onCrash(id);
  }

  /** The peer starts again from its disk. */
  restart(id: string): void {
    const p = this.peer(id);
    if (p.core) return;
    p.incarnation++;
    this.record(`${id} restarts (term ${p.disk.term}, ${p.disk.entries.length} entries)`);
    this.start(p);
  }

  // -------------------------------------------------------------------------------------------
  // Clients

  /** Issue `count` linearizable reads at `id` (ReadIndex); returns their request ids. */
  read(id: string, count = 1): number[] {
    const p = this.peer(id);
    if (!p.core) return [];
    let committed = 0;
    for (const q of this.peers.values()) if (q.core) committed = Math.max(committed, q.core.commitIndex);
    const ids: number[] = [];
    for (let k = 0; k < count; k++) {
      const rid = this.nextRequestId++;
      this.readsIssued.set(rid, committed);
      ids.push(rid);
    }
    this.record(`read ${ids.join(',')} at ${id} (must see ${committed})`);
    this.input(p, { type: 'read', ids });
    return ids;
  }

  /** Propose `count` fresh kv commands to `id`; returns the request ids. */
  propose(id: string, count = 1): number[] {
    const p = this.peer(id);
    if (!p.core) return [];
    const requests: OpRequest[] = [];
    for (let k = 0; k < count; k++) {
      const rid = this.nextRequestId++;
      const command = kvCommand(rid, this.rng.int(0, 0xffffffff));
      const s = this.session;
      const logCommand: LogCommand = s ? { type: 'op', client: s.client, seq: rid, ack: this.sessionAck(s), command } : { type: 'idempotent', command };
      requests.push(this.request(id, rid, logCommand));
      if (s) s.seqs.push(rid);
    }
    this.record(`propose ${requests.map((r) => r.id).join(',')} to ${id}`);
    this.input(p, { type: 'propose', requests, now: this.now });
    return requests.map((r) => r.id);
  }

  /**
   * Register a new client session at `id` (thesis §6.3); the commands proposed from now on run
   * in it (whether or not its registration commits: if not, they are refused SESSION_EXPIRED
   * alike on every peer). Returns the registration's request id.
   */
  openSession(id: string, timeoutMs: number): number | null {
    const p = this.peer(id);
    if (!p.core) return null;
    const rid = this.nextRequestId++;
    const client = `s${rid}`;
    this.session = { client, seqs: [], acked: 0 };
    this.record(`register ${client} (${rid}) at ${id}, timeout ${timeoutMs}`);
    this.input(p, { type: 'propose', requests: [this.request(id, rid, { type: 'register', client, timeoutMs })], now: this.now });
    return rid;
  }

  /** The client session commands go under, if any; its seqs are request ids. */
  private session: { client: string; seqs: number[]; acked: number } | null = null;
  /** How each command's entry came out at its proposer ('ok' or the error code), by request id. */
  readonly outcomes = new Map<number, string>();

  /** The lowest seq of the session the client still waits for: its ack (§6.3). */
  private sessionAck(s: { seqs: number[]; acked: number }): number {
    while (s.acked < s.seqs.length && this.checker.requests.get(s.seqs[s.acked]!)!.status !== 'pending') s.acked++;
    return s.seqs[s.acked] ?? this.nextRequestId - 1;
  }

  private request(peer: string, rid: number, command: LogCommand): OpRequest {
    const data = encodeLogCommand(command);
    this.checker.onPropose(rid, fingerprint({ type: 'command', index: 0, term: 0, data }), peer);
    this.peer(peer).pending.add(rid);
    return { id: rid, command: data };
  }

  // -------------------------------------------------------------------------------------------
  // Time

  /** The next tick of `p`; after a restart, at a random phase. */
  private scheduleTick(p: SimPeer, first = false): void {
    const at = this.now + (first ? this.rng.int(1, p.tickEvery) : p.tickEvery);
    this.queue.push({ kind: 'tick', at, n: this.n++, peer: p.id, incarnation: p.incarnation });
  }

  /** Run `fn` at virtual time `at` (faults, clients: anything a scenario schedules). */
  at(at: number, what: string, fn: () => void): void {
    this.queue.push({ kind: 'call', at: Math.max(at, this.now), n: this.n++, what, fn });
  }

  /** Process the next event; false if there is none. */
  processNext(): boolean {
    const e = this.queue.pop();
    if (!e) return false;
    if (e.at > this.now) this.now = e.at;
    this.stats.events++;
    switch (e.kind) {
      case 'msg':
        this.record(e);
        this.deliverMsg(e.msg);
        return true;
      case 'flush': {
        const p = this.peer(e.peer);
        if (p.incarnation !== e.incarnation || !p.core) return true;
        this.record(`${p.id} flush ${p.queued.map((w) => w.seq).join(',')}`);
        this.flushDisk(p);
        return true;
      }
      case 'tick': {
        const p = this.peer(e.peer);
        if (p.incarnation !== e.incarnation || !p.core) return true;
        this.input(p, { type: 'tick' });
        this.scheduleTick(p);
        return true;
      }
      case 'fetch':
        this.answerFetch(e);
        return true;
      case 'call':
        this.record(e.what);
        e.fn();
        return true;
    }
  }

  /** Answer a `fetch` from the peer's disk, after its queued writes (as the log actor does). */
  private answerFetch(e: Extract<SimEvent, { kind: 'fetch' }>): void {
    const p = this.peer(e.peer);
    if (p.incarnation !== e.incarnation || !p.core) return;
    while (p.queued.length > 0) this.flushDisk(p, true);
    if (!p.core) return;
    this.record(`${p.id} fetched ${e.from}..${e.to} (${e.reason.kind === 'apply' ? 'apply' : `for ${e.reason.peer}`})`);
    // Compacted entries are gone (holes in the sim's disk), as in the store.
    const entries = p.disk.entries.slice(e.from - 1, e.to).filter((x) => x !== undefined);
    this.input(p, { type: 'fetched', reason: e.reason, entries });
  }

  /** Run every event due up to virtual time `t`, then set the clock to `t`. */
  runUntil(t: number): void {
    for (;;) {
      const e = this.queue.peek();
      if (!e || e.at > t) break;
      this.processNext();
    }
    if (t > this.now) this.now = t;
  }

  runFor(ms: number): void {
    this.runUntil(this.now + ms);
  }

  /** Run until `cond` holds (checked after every event) or `ms` pass; returns whether it held. */
  runUntilCond(cond: () => boolean, ms: number): boolean {
    const deadline = this.now + ms;
    if (cond()) return true;
    for (;;) {
      const e = this.queue.peek();
      if (!e || e.at > deadline) break;
      this.processNext();
      if (cond()) return true;
    }
    if (deadline > this.now) this.now = deadline;
    return cond();
  }

  // -------------------------------------------------------------------------------------------
  // Manual harness (etcd raft_test.go's network)

  /** Tick `ids` (every live peer by default) `n` times. */
  tick(n = 1, ids: readonly string[] = this.ids): void {
    for (let k = 0; k < n; k++) {
      for (const id of ids) {
        const p = this.peer(id);
        if (p.core) this.input(p, { type: 'tick' });
      }
    }
  }

  /** Deliver every message in flight now (not the ones they cause); returns how many. */
  deliver(): number {
    const msgs = this.queue.all().filter((e) => e.kind === 'msg');
    this.queue.filter((e) => e.kind !== 'msg');
    msgs.sort((a, b) => a.n - b.n);
    for (const e of msgs) {
      this.stats.events++;
      this.record(e);
      this.deliverMsg((e as { msg: PeerMessage }).msg);
    }
    return msgs.length;
  }

  /** Complete every queued disk write now. */
  flushAll(): void {
    this.queue.filter((e) => e.kind !== 'flush');
    for (const p of this.peers.values()) if (p.core) this.flush(p.id);
  }

  /**
   * etcd `stabilize`: deliver messages and complete disk writes, ignoring delays, until
   * nothing is left (ticks and scheduled calls are not run).
   */
  stabilize(maxRounds = 10_000): void {
    for (let round = 0; round < maxRounds; round++) {
      this.flushAll();
      const fetches = this.answerFetches();
      if (this.deliver() === 0 && fetches === 0 && !this.anyQueued()) return;
    }
    throw new Error(`stabilize: still busy after ${maxRounds} rounds`);
  }

  /** Answer every fetch waiting now; returns how many. */
  private answerFetches(): number {
    const fetches = this.queue.all().filter((e) => e.kind === 'fetch');
    this.queue.filter((e) => e.kind !== 'fetch');
    fetches.sort((a, b) => a.n - b.n);
    for (const e of fetches) this.answerFetch(e as Extract<SimEvent, { kind: 'fetch' }>);
    return fetches.length;
  }

  private anyQueued(): boolean {
    for (const p of this.peers.values()) if (p.core && p.queued.length > 0) return true;
    return false;
  }

  // -------------------------------------------------------------------------------------------
  // Trace

  /** Strings are recorded as they are; events are described only if a failure is reported. */
  private record(e: string | SimEvent): void {
    this.trace[this.traceAt++ % this.traceSize] = typeof e === 'string' ? `@${this.now} ${e}` : e;
  }

  /** The last events, oldest first, for a failure report. */
  recentTrace(): string[] {
    const out: string[] = [];
    const n = Math.min(this.traceAt, this.traceSize);
    for (let k = this.traceAt - n; k < this.traceAt; k++) {
      const t = this.trace[k % this.traceSize]!;
      out.push(typeof t === 'string' ? t : describeEvent(t));
    }
    return out;
  }

  /** A one-line summary of every peer. */
  describePeers(): string[] {
    return [...this.peers.values()].map((p) => {
      const c = p.core;
      const terms = (entries: readonly Entry[]) => entries.map((e) => e.term).join(' ');
      if (!c) return `${p.id} DOWN disk term ${p.disk.term} vote ${p.disk.votedFor} log [${terms(p.disk.entries)}]`;
      const log = c.log;
      return `${p.id} ${c.role} term ${c.currentTerm} vote ${c.votedFor} commit ${c.commitIndex} applied ${p.applied.length} log [${terms(
        log.slice(log.firstCachedIndex, log.lastIndex),
      )}] from ${log.firstCachedIndex} disk [${terms(p.disk.entries)}]`;
    });
  }
}

/**
 * A kv command drawn from `r` on a few keys, so that commands meet: set, cas, delete, get. It
 * carries its request id (a field the kv ignores), so that no two commands are the same bytes.
 */
function kvCommand(rid: number, r: number): Record<string, unknown> {
  const key = `k${r & 7}`;
  switch ((r >>> 3) & 3) {
    case 0:
      return { type: 'set', key, value: rid, id: rid };
    case 1:
      return { type: 'cas', key, expected: (r >>> 5) & 1 ? null : rid - 1 - ((r >>> 6) & 7), value: rid, id: rid };
    case 2:
      return { type: 'delete', key, id: rid };
    default:
      return { type: 'get', key, id: rid };
  }
}

function describeEvent(e: SimEvent): string {
  if (e.kind !== 'msg') return `@${e.at} ${e.kind}`;
  const m = e.msg;
  const head = `@${e.at} ${m.from}→${m.to} ${m.type} t${m.term}`;
  switch (m.type) {
    case 'requestVote':
      return `${head} last ${m.lastLogIndex}/${m.lastLogTerm}`;
    case 'requestVoteReply':
      return `${head} ${m.granted ? 'granted' : 'refused'}`;
    case 'appendEntries':
      return `${head} prev ${m.prevLogIndex}/${m.prevLogTerm} entries [${m.entries.map((x) => `${x.index}/${x.term}`).join(' ')}] commit ${m.leaderCommit}`;
    case 'appendEntriesReply':
      return `${head} ${m.success ? `ok match ${m.matchIndex}` : `reject ${m.rejectedIndex} hint ${m.conflictIndex}/${m.conflictTerm}`}`;
    case 'readIndex':
      return `${head} id ${m.id}`;
    case 'readIndexReply':
      return `${head} id ${m.id} ${m.ok ? `index ${m.readIndex}` : 'refused'}`;
    case 'preVote':
      return `${head} last ${m.lastLogIndex}/${m.lastLogTerm}`;
    case 'preVoteReply':
      return `${head} ${m.granted ? 'granted' : 'refused'}`;
    case 'timeoutNow':
      return head;
    case 'installSnapshot':
      return `${head} snapshot ${m.meta.index}/${m.meta.term} at ${m.offset} +${m.data.length}${m.done ? ' done' : ''}`;
    case 'installSnapshotReply':
      return `${head} snapshot ${m.index} holds ${m.offset}${m.done ? ' done' : ''}`;
  }
}

export { InvariantViolation };
