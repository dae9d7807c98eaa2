/**
 * The API's noticeboard: lifecycle events of every peer in this process (role changes,
 * restarts, a supervisor giving up), for logs and progress displays. A leaf: the node handle
 * posts role changes here, the registry restarts and failures.
 */
import { EventEmitter } from 'node:events';

/** Lifecycle events of every peer in this process, for logs and progress displays. */
export interface RaftEvents {
  role: [notice: { id: string; role: string; term: number; leader: string | null }];
  restart: [notice: { id: string; reason: string }];
  failed: [notice: { id: string; reason: string }];
}

export const events = new EventEmitter<RaftEvents>();
