/**
 * The registry room, at the bottom of the API: the peers running in this process (by id),
 * the ones stopped here (for clearer errors), the node supervisor all of them hang under,
 * the lock that queues membership changes, and the lookups every other room shares:
 * `running(id)` and the local leader.
 */
import { NodeSupervisor } from '../../supervisors/node-supervisor.js';
import { NodeStoppedError, UnknownNodeError } from '../errors.js';
import { events } from './events.js';
import type { NodeHandle } from './node-handle.js';
import { validateId } from './options.js';

/** The peers of this process, by id: starting, running or stopping. */
export const nodes = new Map<string, NodeHandle>();
/** Peers stopped in this process (by stopNode or their supervisor), for clearer errors. */
export const stopped = new Map<string, NodeStoppedError>();

export const nodeSupervisor = new NodeSupervisor();
nodeSupervisor.on('peerFailed', (id, reason) => nodes.get(id)?.fail(reason));
nodeSupervisor.on('peerRestarted', (id, reason) => events.emit('restart', { id, reason }));

/** The running peer `id`, or the typed error saying why there is none. */
export function running(id: string): NodeHandle {
  validateId(id);
  const handle = nodes.get(id);
  if (!handle) throw stopped.get(id) ?? new UnknownNodeError(id);
  if (handle.state !== 'running') throw handle.stoppedError();
  return handle;
}

/**
 * The running peer of this process that last said it leads, in the highest term, if any;
 * among those `reaches` accepts (a client placed beside one peer reaches only its side of a
 * partition).
 */
export function localLeader(reaches: (id: string) => boolean = () => true): NodeHandle | undefined {
  let best: NodeHandle | undefined;
  for (const h of nodes.values()) {
    if (h.state !== 'running' || h.lastRole.role !== 'leader' || !reaches(h.id)) continue;
    if (!best || h.lastRole.term > best.lastRole.term) best = h;
  }
  return best;
}

/** Forget a peer that has stopped: later calls get NodeStoppedError; its ops in flight fail. */
export function retire(handle: NodeHandle, inFlightMessage: string): Promise<void> {
  forget(handle);
  return handle.retire(inFlightMessage);
}

/** A node handle's `onFailure`: its supervisor gave up, the handle has retired; forget it and tell the listeners. */
export function forgetFailed(handle: NodeHandle, reason: Error): void {
  forget(handle);
  events.emit('failed', { id: handle.id, reason: reason.message });
}

function forget(handle: NodeHandle): void {
  if (nodes.get(handle.id) === handle) nodes.delete(handle.id);
  stopped.set(handle.id, handle.stoppedError());
  handle.dataDirLock?.release();
}

let configLock: Promise<unknown> = Promise.resolve();

/** Run `change` once every membership change queued before it has settled (one at a time per process). */
export function underConfigLock<T>(change: () => Promise<T>): Promise<T> {
  const run = configLock.then(change);
  configLock = run.catch(() => undefined);
  return run;
}
