/**
 * How a peer's consensus actor is wired to the other peers' (a MessagePort per other peer,
 * handed over with `control.connectPeer`). Two implementations: `InProcessSwitchboard` (every
 * peer in this process, a MessageChannel per pair) and the TCP one (each peer in its own
 * process, a port per remote peer bridged to a socket).
 */
import type { ControlProxy } from '../control.js';

export interface Switchboard {
  /**
   * Wire the (re)started consensus actor `id` to its peers. `gone` settles when the actor's
   * thread exits: a wiring call must not be waited for beyond it.
   */
  join(id: string, control: ControlProxy, gone: Promise<void>): Promise<void>;
  /** The actor stopped or crashed: forget it (its ports are closed). */
  leave(id: string, control: ControlProxy): void;
}
