/**
 * The supervision tree of one peer (rafter_consensus_sup's role): the log actor first,
 * then the consensus actor, `rest_for_one`: if the log actor dies both restart (the
 * consensus actor recovers from the reopened log); if the consensus actor dies it alone
 * restarts, reattached to the running log actor, and recovers term, vote and log from it.
 */
import { randomInt } from 'node:crypto';
import { MessageChannel, type MessagePort, type Worker } from 'node:worker_threads';
import {
  connectControl,
  transferPort,
  type ConsensusActorData,
  type ConsensusNotice,
  type ControlProxy,
  type LogActorData,
  type LogActorNotice,
} from '../src/control.js';
import type { CoreOptions } from '../src/core/index.js';
import type { FaultPlan } from '../src/faults.js';
import type { HistogramSnapshot } from '../src/histogram.js';
import type { StateMachineSpec } from '../src/state-machines/index.js';
import type { ConnectPeer, Switchboard } from '../src/transport/switchboard.js';
import { Supervisor, type Child, type ChildSpec, type SupervisorOptions } from './supervisor.js';
import { startWorkerChild, type WorkerChild } from './worker-child.js';

export interface PeerSpec {
  id: string;
  dataDir: string;
  stateMachine: StateMachineSpec;
  tickMs: number;
  core: Partial<CoreOptions>;
  /** The network faults in force when a consensus actor starts (see src/faults.ts). */
  faults: () => FaultPlan;
  /** Restart intensity of the peer's supervisor. */
  maxRestarts: number;
  restartPeriodMs: number;
  /** How the consensus actor reaches its peers; the node supervisor's in-process one if absent. */
  switchboard?: Switchboard;
}

/** What the owner of a peer (the API) hears from its tree. */
export interface PeerHooks {
  /** A consensus actor is ready: ops go to `clientPort`, control calls to `control`. */
  consensusUp(clientPort: MessagePort, control: ControlProxy): void;
  /** The consensus actor is gone (crashed or stopping); ops in flight on it are lost. */
  consensusDown(reason: Error | null): void;
  notice(n: ConsensusNotice): void;
  /** The supervisor gave up (restart intensity exceeded). */
  failed(reason: Error): void;
}

const LOG_ACTOR = new URL('../actors/log-actor.js', import.meta.url);
const CONSENSUS_ACTOR = new URL('../actors/consensus-actor.js', import.meta.url);
const LOG_CLOSE_TIMEOUT_MS = 10_000;
const RESTART_BACKOFF_MS = 20;
const MAX_RESTART_BACKOFF_MS = 1_000;

export class PeerSupervisor {
  private readonly supervisor: Supervisor;
  private logChild: WorkerChild | null = null;
  /** Malformed messages the current log actor dropped (it reports each one). */
  private logDroppedBefore = 0;
  private consensusChild: WorkerChild | null = null;
  /** The log actor's first port, until a consensus actor claims it. */
  private unclaimedLogPort: MessagePort | null = null;

  constructor(
    private readonly spec: PeerSpec,
    private readonly switchboard: Switchboard,
    private readonly hooks: PeerHooks,
  ) {
    const children: ChildSpec[] = [
      { id: 'log', start: () => this.startLogActor() },
      { id: 'consensus', start: () => this.startConsensusActor() },
    ];
    const options: SupervisorOptions = {
      strategy: 'rest_for_one',
      maxRestarts: spec.maxRestarts,
      periodMs: spec.restartPeriodMs,
      backoffMs: RESTART_BACKOFF_MS,
      maxBackoffMs: MAX_RESTART_BACKOFF_MS,
    };
    this.supervisor = new Supervisor(children, options);
    this.supervisor.on('failed', (reason) => hooks.failed(reason));
  }

  /** Malformed messages dropped by the current log actor. */
  get logDroppedMessages(): number {
    return this.logDroppedBefore;
  }

  /** The current log actor's persist latency histogram, as it last reported it (null: not yet). */
  logPersistSeconds: HistogramSnapshot | null = null;

  get restarts(): ReadonlyMap<string, number> {
    return this.supervisor.restarts;
  }

  /** Called after each restart with the reason the child died. */
  onRestart(listener: (reason: string) => void): void {
    this.supervisor.on('restart', (child, reason) => listener(`${child} actor died: ${reason.message}`));
  }

  /**
   * Fault injection: one actor dies as from an uncaught exception; its supervisor sees the
   * crash and restarts it (and, for the log actor, the consensus actor too).
   */
  async crash(actor: 'log' | 'consensus'): Promise<void> {
    const child = actor === 'log' ? this.logChild : this.consensusChild;
    if (!child) throw new Error(`no ${actor} actor is running`);
    await child.crash();
  }

  /** Fault injection: the log actor's next write fails, so it crashes and is restarted. */
  failNextWrite(): void {
    this.logChild?.worker.postMessage({ type: 'failNextWrite' });
  }

  start(): Promise<void> {
    return this.supervisor.start();
  }

  stop(): Promise<void> {
    return this.supervisor.stop();
  }

  /** End both actors at once, without cleanup. */
  kill(): Promise<void> {
    return this.supervisor.kill();
  }

  private async startLogActor(): Promise<Child> {
    const { port1, port2 } = new MessageChannel();
    this.logDroppedBefore = 0;
    this.logPersistSeconds = null;
    const child = await startWorkerChild({
      entry: LOG_ACTOR,
      workerData: { dataDir: this.spec.dataDir, port: port2 } satisfies LogActorData,
      transferList: [port2],
      shutdown: (worker) => closeLogActor(worker),
      abort: (worker) => worker.postMessage({ type: 'crash' }),
      onMessage: (m) => {
        const notice = m as LogActorNotice;
        if (notice.type === 'dropped') this.logDroppedBefore = notice.total;
        if (notice.type === 'stats') this.logPersistSeconds = notice.persistSeconds;
      },
    });
    this.logChild = child;
    this.unclaimedLogPort = port1;
    return child;
  }

  private logPortForConsensus(): MessagePort {
    const unclaimed = this.unclaimedLogPort;
    this.unclaimedLogPort = null;
    if (unclaimed) return unclaimed;
    const { port1, port2 } = new MessageChannel();
    this.logChild!.worker.postMessage({ type: 'attach', port: port2 }, [port2]);
    return port1;
  }

  private async startConsensusActor(): Promise<Child> {
    const logChild = this.logChild!;
    const logPort = this.logPortForConsensus();
    const client = new MessageChannel();
    const controlChannel = new MessageChannel();
    const data: ConsensusActorData = {
      id: this.spec.id,
      seed: randomInt(0x7fffffff),
      tickMs: this.spec.tickMs,
      core: this.spec.core,
      stateMachine: this.spec.stateMachine,
      faults: this.spec.faults(),
      logPort,
      clientPort: client.port2,
      controlPort: controlChannel.port2,
    };
    const child = await startWorkerChild({
      entry: CONSENSUS_ACTOR,
      workerData: data,
      transferList: [logPort, client.port2, controlChannel.port2],
      onMessage: (m) => this.hooks.notice(m as ConsensusNotice),
      abort: (worker) => worker.postMessage({ type: 'crash' }),
      shutdown: async () => {
        await control.stop();
      },
      // It becomes ready only after recovering from its log actor: if that dies first, the
      // start fails (and the log actor's own restart starts a consensus actor again).
      abandon: logChild.gone.then(() => new Error('its log actor exited while it was starting')),
    });
    this.consensusChild = child;
    const control = connectControl(controlChannel.port1);
    const connect: ConnectPeer = (peer, port) => control.connectPeer(peer, transferPort(port));
    const down = (reason: Error | null) => {
      this.switchboard.leave(this.spec.id, connect);
      controlChannel.port1.close();
      client.port1.close();
      this.hooks.consensusDown(reason);
    };
    await this.switchboard.join(this.spec.id, connect, child.gone);
    this.hooks.consensusUp(client.port1, control);
    return {
      exited: child.exited.then((reason) => {
        down(reason);
        return reason;
      }),
      stop: async () => {
        try {
          await child.stop();
        } finally {
          down(null);
        }
      },
      kill: async () => {
        // Killed because a sibling died (rest_for_one) or the tree gave up: like a crash
        // for the ops it held.
        await child.kill();
        down(new Error('consensus actor killed by its supervisor'));
      },
    };
  }
}

/** Ask the log actor to finish its writes and close LMDB. */
function closeLogActor(worker: Worker): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      worker.off('message', onMessage);
      reject(new Error('log actor did not close in time'));
    }, LOG_CLOSE_TIMEOUT_MS);
    const onMessage = (m: unknown) => {
      if ((m as { type?: unknown })?.type === 'closed') {
        clearTimeout(timer);
        worker.off('message', onMessage);
        resolve();
      }
    };
    worker.on('message', onMessage);
    worker.postMessage({ type: 'close' });
  });
}
