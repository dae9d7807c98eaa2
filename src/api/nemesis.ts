/**
 * The fault-injection room: `nemesis` crashes actors, corrupts messages, fails disk writes,
 * kills peers, partitions the network and makes links lossy, for testing your own state
 * machines and deployments. It also keeps the fault plan in force in this process, which
 * every consensus actor applies to what it sends (a new actor starts with it).
 */
import { NO_FAULTS, NO_LINK_FAULTS, validateLinkFaults, validatePartition, type FaultPlan, type LinkFaults } from '../faults.js';
import { nodes, nodeSupervisor, retire, running, stopped } from './registry.js';

/** The fault plan every consensus actor in this process applies to what it sends. */
let faults: FaultPlan = NO_FAULTS;

/** The fault plan in force now (a starting consensus actor's). */
export function currentFaults(): FaultPlan {
  return faults;
}

async function setFaults(plan: FaultPlan): Promise<void> {
  faults = plan;
  await Promise.all(
    [...nodes.values()]
      .filter((h) => h.state === 'running')
      .map((h) => h.withControl((c) => c.setFaults(plan)).catch(() => undefined)),
  );
}

/**
 * Fault injection, for testing your own state machines and deployments against crashes,
 * corrupt messages, disk faults, partitions and lossy links (`actor-raft/testing` records
 * what the clients saw meanwhile and checks it).
 */
export const nemesis = {
  /** Crash one actor of a peer abruptly; its supervisor restarts it. */
  async crash(id: string, actor: 'consensus' | 'log'): Promise<void> {
    if (actor !== 'consensus' && actor !== 'log') throw new TypeError(`actor must be 'consensus' or 'log', got ${String(actor)}`);
    await running(id).supervisor.crash(actor);
  },

  /**
   * Put raw bytes (garbage, truncated messages) on one of `id`'s ports: to a peer's
   * consensus actor (`to` = that peer's id, sent from `id`), to `id`'s log actor (`'log'`),
   * or to `id`'s consensus actor on its client port (`'client'`). The receiver drops and
   * counts what it cannot decode.
   */
  async garbage(id: string, to: string, bytes: Uint8Array): Promise<void> {
    const handle = running(id);
    if (!(bytes instanceof Uint8Array)) throw new TypeError('bytes must be a Uint8Array');
    if (to === 'client') handle.postRaw(bytes);
    else await handle.withControl((c) => c.sendRaw(to, bytes));
  },

  /** A disk fault: the peer's next log write fails, so its log actor crashes and restarts. */
  diskFault(id: string): void {
    running(id).supervisor.failNextWrite();
  },

  /**
   * Stop a whole peer without any cleanup (both threads end at once, LMDB is not closed
   * orderly). Its ops in flight fail with NodeStoppedError; `startNode` brings it back.
   */
  async kill(id: string): Promise<void> {
    const handle = running(id);
    handle.state = 'stopping';
    try {
      await nodeSupervisor.killPeer(id);
    } finally {
      await retire(handle, `node '${id}' was killed while the op was in flight; its outcome is unknown`);
    }
  },

  /**
   * Split the peers into groups that hear only each other; a peer in no group hears no one,
   * a peer in two groups bridges them ([[a, b, c], [c, d, e]]).
   */
  async partition(groups: string[][]): Promise<void> {
    await setFaults({ ...faults, partition: validatePartition(groups, [...nodes.keys(), ...stopped.keys()]) });
  },

  /** End any partition (link faults stay until `setLinkFaults(null)`). */
  async heal(): Promise<void> {
    await setFaults({ ...faults, partition: null });
  },

  /** Random loss, duplication and delay (which reorders) on every link; null for none. */
  async setLinkFaults(links: LinkFaults | null, seed = faults.seed): Promise<void> {
    await setFaults({ ...faults, links: links === null ? NO_LINK_FAULTS : validateLinkFaults(links), seed });
  },
};
