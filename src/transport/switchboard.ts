/**
 * How a peer's consensus actor is wired to the other peers': a MessagePort per other peer.
 * Two implementations: `InProcessSwitchboard` (every peer in this process, a MessageChannel
 * per pair) and `TcpSwitchboard` (each peer in its own process, a port per remote peer
 * bridged to a socket).
 *
 * A switchboard knows nothing of how a port reaches an actor: whoever starts the actor (the
 * peer supervisor) hands it a `ConnectPeer` for that actor's life.
 */
import type { MessagePort } from 'node:worker_threads';

/**
 * Give the consensus actor `port` as its link to `peer` (replacing any earlier one); settles
 * once the actor has it. The port is the caller's no more (it is transferred).
 */
export type ConnectPeer = (peer: string, port: MessagePort) => Promise<void>;

export interface Switchboard {
  /**
   * Wire the (re)started consensus actor `id`, reached through `connect`, to its peers.
   * `gone` settles when the actor's thread exits: a wiring call must not be waited for
   * beyond it.
   */
  join(id: string, connect: ConnectPeer, gone: Promise<void>): Promise<void>;
  /** The actor that joined with `connect` stopped or crashed: forget it (its ports are closed). */
  leave(id: string, connect: ConnectPeer): void;
}
