/**
 * A generic supervisor in the manner of OTP: children declared as data and started in
 * order; when one dies unexpectedly the strategy decides which are restarted:
 *
 *  - one_for_one:  only the child that died;
 *  - one_for_all:  every child (stopped in reverse order, started in order);
 *  - rest_for_one: the child that died and every child started after it.
 *
 * Restart intensity: more than `maxRestarts` restarts within `periodMs` means something is
 * badly wrong; the supervisor stops every child and reports `failed` to its owner (its
 * parent escalates) instead of looping. A child that dies while starting is a start
 * failure, never a restart loop. Restarts back off exponentially, from `backoffMs` up to
 * `maxBackoffMs`, with the number of recent restarts.
 */
import { EventEmitter } from 'node:events';

export type Strategy = 'one_for_one' | 'one_for_all' | 'rest_for_one';

/** A running child. `exited` settles once, when the child dies without being asked to. */
export interface Child {
  readonly exited: Promise<Error>;
  /** Orderly shutdown. */
  stop(): Promise<void>;
  /** Abrupt termination, no cleanup (used when a sibling died and we restart the rest). */
  kill(): Promise<void>;
}

export interface ChildSpec {
  id: string;
  /** Resolves once the child is ready; rejects if it could not start. */
  start(): Promise<Child>;
}

export interface SupervisorOptions {
  strategy: Strategy;
  maxRestarts: number;
  periodMs: number;
  /** Wait before the first restart within the period; doubled for each further one. */
  backoffMs: number;
  maxBackoffMs: number;
}

export interface SupervisorEvents {
  restart: [childId: string, reason: Error];
  failed: [reason: Error];
}

export class Supervisor extends EventEmitter<SupervisorEvents> {
  private readonly running = new Map<string, Child>();
  private readonly restartTimes: number[] = [];
  private stopping = false;
  private restarting: Promise<void> = Promise.resolve();
  /** Restarts carried out so far, by child id. */
  readonly restarts = new Map<string, number>();

  constructor(
    private readonly specs: readonly ChildSpec[],
    private readonly options: SupervisorOptions,
  ) {
    super();
  }

  /** Start every child in order; if one fails to start, stop those already started. */
  async start(): Promise<void> {
    for (const spec of this.specs) {
      try {
        await this.startChild(spec);
      } catch (err) {
        await this.stop();
        throw err;
      }
    }
  }

  /** Stop every child, last started first. */
  async stop(): Promise<void> {
    this.stopping = true;
    await this.restarting.catch(() => undefined);
    for (const spec of [...this.specs].reverse()) {
      const child = this.running.get(spec.id);
      this.running.delete(spec.id);
      if (child) await child.stop().catch(() => child.kill());
    }
  }

  /** Kill every child abruptly (a whole peer dying without cleanup). */
  async kill(): Promise<void> {
    this.stopping = true;
    for (const spec of [...this.specs].reverse()) {
      const child = this.running.get(spec.id);
      this.running.delete(spec.id);
      if (child) await child.kill();
    }
  }

  private async startChild(spec: ChildSpec): Promise<void> {
    const child = await spec.start();
    this.running.set(spec.id, child);
    void child.exited.then((reason) => this.onExit(spec.id, child, reason));
  }

  private onExit(childId: string, child: Child, reason: Error): void {
    if (this.stopping || this.running.get(childId) !== child) return; // asked to go, or already replaced
    this.running.delete(childId);
    this.restarting = this.restarting.then(() => this.restartAfter(childId, reason));
  }

  private async restartAfter(childId: string, reason: Error): Promise<void> {
    if (this.stopping) return;
    const now = Date.now();
    this.restartTimes.push(now);
    while (this.restartTimes.length > 0 && this.restartTimes[0]! < now - this.options.periodMs) this.restartTimes.shift();
    if (this.restartTimes.length > this.options.maxRestarts) {
      const failure = new Error(
        `child ${childId} died ${this.restartTimes.length} times within ${this.options.periodMs} ms; giving up: ${reason.message}`,
      );
      await this.kill();
      this.emit('failed', failure);
      return;
    }
    const backoff = Math.min(this.options.backoffMs * 2 ** (this.restartTimes.length - 1), this.options.maxBackoffMs);
    if (backoff > 0) await new Promise((r) => setTimeout(r, backoff));
    if (this.stopping) return;
    const index = this.specs.findIndex((s) => s.id === childId);
    const affected =
      this.options.strategy === 'one_for_one'
        ? [this.specs[index]!]
        : this.options.strategy === 'one_for_all'
          ? [...this.specs]
          : this.specs.slice(index);
    for (const spec of [...affected].reverse()) {
      const sibling = this.running.get(spec.id);
      this.running.delete(spec.id);
      if (sibling) await sibling.kill();
    }
    for (const spec of affected) {
      this.restarts.set(spec.id, (this.restarts.get(spec.id) ?? 0) + 1);
      try {
        await this.startChild(spec);
      } catch (err) {
        // Killed meanwhile (kill() does not wait for a restart): nothing more to start.
        if (this.stopping) return;
        // A child started before this one died while this one started (a child may need its
        // elder siblings to start, as the consensus actor needs the log actor); that death has
        // queued a restart, which starts this child again under rest_for_one and one_for_all.
        const elders = this.specs.slice(0, this.specs.indexOf(spec));
        if (this.options.strategy !== 'one_for_one' && elders.some((s) => !this.running.has(s.id))) return;
        const failure = new Error(`restart of ${spec.id} failed: ${(err as Error).message}`);
        await this.kill();
        this.emit('failed', failure);
        return;
      }
      if (this.stopping) {
        // kill() came while this child started and could not see it: end it too.
        const started = this.running.get(spec.id);
        this.running.delete(spec.id);
        await started?.kill();
        return;
      }
    }
    this.emit('restart', childId, reason);
  }
}
