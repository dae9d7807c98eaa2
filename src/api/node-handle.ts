/**
 * The node handle room: one peer of this process as the API sees it. It holds the peer's
 * client port and control proxy, queues requests in outboxes flushed once per event-loop
 * turn (every op of a turn in one message), matches replies to their callers, and sweeps
 * expired requests with one timer. It knows nothing of the other peers: when its supervisor
 * gives up it reports through the `onFailure` callback it was given.
 */
import type { MessagePort } from 'node:worker_threads';
import type { PeerHooks, PeerSupervisor } from '../../supervisors/peer-supervisor.js';
import type { ClientSession } from '../client-session.js';
import type { ConsensusNotice, ControlProxy } from '../control.js';
import { ActorRestartedError, fromWire, NodeStoppedError, TimeoutError, withOutcome } from '../errors.js';
import { decodeAll, postEncoded } from '../codec.js';
import {
  isClientReply,
  type AddressBook,
  type ClientChangeConfig,
  type ClientReply,
  type ClientTransferLeadership,
  type OpRequest,
  type ReadQuery,
} from '../messages.js';
import type { DataDirLock } from '../log/dir-lock.js';
import type { TcpSwitchboard } from '../transport/tcp.js';
import { events } from './events.js';
import type { NetworkOptions } from './options.js';

/** What a client asks of a peer: a command, a read, a membership change, a leadership transfer. */
export type Request =
  | { kind: 'op' | 'read'; data: Uint8Array }
  | { kind: 'config'; peers: string[]; addresses?: AddressBook; edit?: 'add' | 'remove' }
  | { kind: 'transfer'; target: string | null };

interface PendingOp {
  resolve(result: unknown): void;
  reject(err: Error): void;
  deadline: number;
  timeoutMs: number;
}

/** How long a control call may wait for a consensus actor to answer, across its restarts. */
const CONTROL_WAIT_MS = 5_000;
/** How often expired requests are swept. */
const SWEEP_INTERVAL_MS = 20;

/** One peer of this process, as the API sees it. */
export class NodeHandle {
  state: 'starting' | 'running' | 'stopping' | 'stopped' = 'starting';
  failure: Error | null = null;
  /** Set once the peer's tree has started. */
  supervisor!: PeerSupervisor;
  /** This node's exclusive lock on its data directory, released when it stops. */
  dataDirLock: DataDirLock | null = null;
  private port: MessagePort | null = null;
  private control: ControlProxy | null = null;
  private readonly pending = new Map<number, PendingOp>();
  private outbox: OpRequest[] = [];
  private readOutbox: ReadQuery[] = [];
  private adminOutbox: (ClientChangeConfig | ClientTransferLeadership)[] = [];
  private flushScheduled = false;
  private sweeper: NodeJS.Timeout | null = null;
  private nextOpId = 1;
  /** Malformed messages dropped on the client port (from the actor's side). */
  droppedReplies = 0;
  /** The TCP transport of a networked node (`options.network`), closed when the peer stops. */
  transport: TcpSwitchboard | null = null;
  /** The network options of a networked node (`options.network`). */
  network: NetworkOptions | null = null;
  /** Remote peers this node knows from `options.network.peers`. */
  remotePeers: ReadonlySet<string> = new Set();

  constructor(
    readonly id: string,
    /** The client session of the ops submitted through this node (thesis §6.3). */
    readonly session: ClientSession,
    /** Told once the peer's supervisor has given up and the handle has retired. */
    private readonly onFailure: (handle: NodeHandle, reason: Error) => void,
  ) {}

  /** What the peer's tree tells its owner. */
  hooks(): Omit<PeerHooks, 'failed'> {
    return {
      consensusUp: (port: MessagePort, control: ControlProxy) => this.up(port, control),
      consensusDown: (reason: Error | null) => this.down(reason),
      notice: (n: ConsensusNotice) => this.notice(n),
    };
  }

  /** Submit one request to this peer; resolves with its result, rejects with a typed error. */
  submit(request: Request, timeoutMs: number): Promise<unknown> {
    if (this.state !== 'running') return Promise.reject(this.stoppedError());
    const id = this.nextOpId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject, deadline: Date.now() + timeoutMs, timeoutMs });
      switch (request.kind) {
        case 'op':
          this.outbox.push({ id, command: request.data });
          break;
        case 'read':
          this.readOutbox.push({ id, query: request.data });
          break;
        case 'config':
          this.adminOutbox.push({
            type: 'changeConfig',
            id,
            peers: request.peers,
            ...(request.addresses ? { addresses: request.addresses } : {}),
            ...(request.edit ? { edit: request.edit } : {}),
          });
          break;
        case 'transfer':
          this.adminOutbox.push({ type: 'transferLeadership', id, target: request.target });
          break;
      }
      this.scheduleFlush();
      this.startSweeper();
    });
  }

  /**
   * Make a control call on the current consensus actor. If the actor goes down during the
   * call (a crash, a restart), the call is retried on its successor; it fails with a
   * TimeoutError if no actor answers within CONTROL_WAIT_MS (outcome unknown once the call was
   * made to some actor).
   */
  async withControl<T>(call: (c: ControlProxy) => Promise<T>): Promise<T> {
    const deadline = Date.now() + CONTROL_WAIT_MS;
    let called = false;
    for (;;) {
      const outcome = called ? 'unknown' : 'not-applied';
      if (this.state === 'stopped') throw withOutcome(this.stoppedError(), outcome);
      const remaining = deadline - Date.now();
      if (remaining <= 0) throw new TimeoutError(CONTROL_WAIT_MS, `node '${this.id}' did not answer a control call`, outcome);
      const control = this.control;
      if (!control) {
        await this.nextUp(remaining);
        continue;
      }
      called = true;
      const answer = await race(call(control), this.down$, remaining);
      if (answer.kind === 'value') return answer.value;
      // The actor went down or did not answer in time: try its successor, if any.
    }
  }

  private readonly upWaiters: (() => void)[] = [];
  /** Resolves when the current consensus actor goes down; renewed at each start. */
  private down$: Promise<void> = new Promise(() => undefined);
  private signalDown: () => void = () => undefined;

  private nextUp(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.upWaiters.push(done);
    });
  }

  /** Why requests to this stopped peer fail; nothing was sent (outcome 'not-applied'). */
  stoppedError(): NodeStoppedError {
    return this.failure
      ? new NodeStoppedError(this.id, `node '${this.id}' was stopped by its supervisor: ${this.failure.message}`)
      : new NodeStoppedError(this.id);
  }

  /** Fault injection: raw bytes on the client port. */
  postRaw(bytes: Uint8Array): void {
    this.port?.postMessage(bytes);
  }

  /**
   * Fail every request in flight with `inFlight`, and every one still queued here (never
   * posted to the actor) with `notSent`.
   */
  failAll(inFlight: Error, notSent: Error): void {
    const queued = this.queuedIds();
    const all = [...this.pending];
    this.pending.clear();
    this.outbox = [];
    this.readOutbox = [];
    this.adminOutbox = [];
    for (const [id, p] of all) p.reject(queued.has(id) ? notSent : inFlight);
    this.stopSweeper();
  }

  /** Ids of the requests queued in the outboxes: not yet posted to the actor. */
  private queuedIds(): Set<number> {
    return new Set([...this.outbox, ...this.readOutbox, ...this.adminOutbox].map((r) => r.id));
  }

  /**
   * The peer has stopped: later requests get NodeStoppedError, those in flight fail with
   * `inFlightMessage` (outcome unknown), those still queued here with the plain one (never
   * sent), and a networked node's listener and connections close (so its port can be reused).
   * Resolves once they have.
   */
  retire(inFlightMessage: string): Promise<void> {
    this.state = 'stopped';
    this.failAll(new NodeStoppedError(this.id, inFlightMessage, 'unknown'), this.stoppedError());
    const transport = this.transport;
    return transport ? transport.close().catch(() => undefined) : Promise.resolve();
  }

  /** The peer's supervisor gave up (escalated through the node supervisor). */
  fail(reason: Error): void {
    this.failure = reason;
    void this.retire(this.stoppedError().message);
    this.onFailure(this, reason);
  }

  private up(port: MessagePort, control: ControlProxy): void {
    this.port = port;
    this.control = control;
    port.on('message', (bytes: unknown) => {
      const { messages, dropped } = decodeAll(bytes, isClientReply);
      this.droppedReplies += dropped;
      for (const reply of messages) this.onResults(reply);
    });
    this.down$ = new Promise((resolve) => (this.signalDown = resolve));
    for (const w of this.upWaiters.splice(0)) w();
    this.scheduleFlush();
  }

  private down(reason: Error | null): void {
    this.port = null;
    this.control = null;
    this.signalDown();
    // Ops handed to the dead actor may or may not have been applied: their outcome is unknown.
    // Those still queued here never reached it.
    if (reason) {
      this.failAll(
        new ActorRestartedError(),
        new ActorRestartedError(`the consensus actor of '${this.id}' restarted before the op was sent to it; it was not applied`, 'not-applied'),
      );
    }
  }

  /** The peer's latest role notice: where ops go when the peer asked knows no leader. */
  lastRole: { role: string; term: number } = { role: 'follower', term: 0 };

  /** Whether the peer has a configuration (from its latest members notice). */
  configured = false;

  private notice(n: ConsensusNotice): void {
    if (n.type === 'members') {
      // The transport follows the configuration in force (addresses come from the log).
      this.configured = n.configured;
      this.transport?.follow(n.configured, n.members, n.addresses);
      return;
    }
    if (n.type !== 'role') return;
    this.lastRole = { role: n.role, term: n.term };
    events.emit('role', { id: this.id, role: n.role, term: n.term, leader: n.leader });
  }

  private scheduleFlush(): void {
    const empty = this.outbox.length === 0 && this.readOutbox.length === 0 && this.adminOutbox.length === 0;
    if (this.flushScheduled || empty || !this.port) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      if (!this.port) return;
      if (this.outbox.length > 0) {
        const ops = this.outbox;
        this.outbox = [];
        postEncoded(this.port, { type: 'ops', ops });
      }
      if (this.readOutbox.length > 0) {
        const reads = this.readOutbox;
        this.readOutbox = [];
        postEncoded(this.port, { type: 'reads', reads });
      }
      for (const request of this.adminOutbox.splice(0)) postEncoded(this.port, request);
    });
  }

  private onResults(reply: ClientReply): void {
    for (const r of reply.results) {
      const p = this.pending.get(r.id);
      if (!p) continue; // already timed out
      this.pending.delete(r.id);
      if (r.ok) p.resolve(r.result);
      else p.reject(fromWire(r.error!));
    }
    if (this.pending.size === 0) this.stopSweeper();
  }

  /** One timer per node sweeps expired ops, instead of a timer per op. */
  private startSweeper(): void {
    if (this.sweeper) return;
    this.sweeper = setInterval(() => {
      const now = Date.now();
      let queued: Set<number> | null = null;
      for (const [id, p] of this.pending) {
        if (p.deadline > now) continue;
        queued ??= this.queuedIds();
        this.pending.delete(id);
        if (queued.has(id)) {
          // Never posted (the actor was down): it cannot have been applied.
          this.outbox = this.outbox.filter((o) => o.id !== id);
          this.readOutbox = this.readOutbox.filter((o) => o.id !== id);
          this.adminOutbox = this.adminOutbox.filter((o) => o.id !== id);
          p.reject(new TimeoutError(p.timeoutMs, `no actor of '${this.id}' took the op within ${p.timeoutMs} ms; it was not sent`, 'not-applied'));
        } else {
          p.reject(new TimeoutError(p.timeoutMs, `op not applied within ${p.timeoutMs} ms; its outcome is unknown`));
        }
      }
      if (this.pending.size === 0) this.stopSweeper();
    }, SWEEP_INTERVAL_MS);
  }

  private stopSweeper(): void {
    if (this.sweeper) clearInterval(this.sweeper);
    this.sweeper = null;
  }
}

/** Settle with `p`'s value, or report that `interrupt` fired or `ms` passed first. */
async function race<T>(
  p: Promise<T>,
  interrupt: Promise<void>,
  ms: number,
): Promise<{ kind: 'value'; value: T } | { kind: 'interrupted' }> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<void>((resolve) => (timer = setTimeout(resolve, ms)));
  try {
    return await Promise.race([
      p.then((value) => ({ kind: 'value' as const, value })),
      interrupt.then(() => ({ kind: 'interrupted' as const })),
      timeout.then(() => ({ kind: 'interrupted' as const })),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
