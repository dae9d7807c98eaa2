/**
 * The in-process transport: every pair of consensus actors in this process gets its own
 * MessageChannel, so peer traffic goes thread to thread without touching the main thread.
 * When an actor (re)starts it is wired to every running actor; when it dies its ports
 * close and its peers drop them (they treat it as an unreachable peer until it rejoins).
 */
import { MessageChannel } from 'node:worker_threads';
import type { ConnectPeer, Switchboard } from './switchboard.js';

interface Member {
  connect: ConnectPeer;
  /** Settles when the actor's thread has exited. */
  gone: Promise<void>;
}

export class InProcessSwitchboard implements Switchboard {
  private readonly members = new Map<string, Member>();

  /**
   * Wire the actor `id` (whose thread settles `gone` when it exits) to every member. A
   * connect call to an actor that dies before answering may never settle (a control call
   * knows nothing of the thread behind its port), so each is waited for only while both its
   * ends live: a peer that dies meanwhile is wired again when it restarts and joins.
   */
  async join(id: string, connect: ConnectPeer, gone: Promise<void>): Promise<void> {
    this.members.delete(id);
    const wiring: Promise<void>[] = [];
    const whileAlive = (call: Promise<void>, other: Promise<void>) =>
      Promise.race([call.catch(() => undefined), gone, other]);
    for (const [other, member] of this.members) {
      const { port1, port2 } = new MessageChannel();
      wiring.push(
        whileAlive(connect(other, port1), member.gone),
        whileAlive(member.connect(id, port2), member.gone),
      );
    }
    this.members.set(id, { connect, gone });
    await Promise.all(wiring);
  }

  leave(id: string, connect: ConnectPeer): void {
    if (this.members.get(id)?.connect === connect) this.members.delete(id);
  }
}
