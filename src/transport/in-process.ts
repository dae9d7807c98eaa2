/**
 * The in-process transport: every pair of consensus actors in this process gets its own
 * MessageChannel, so peer traffic goes thread to thread without touching the main thread.
 * When an actor (re)starts it is wired to every running actor; when it dies its ports
 * close and its peers drop them (they treat it as an unreachable peer until it rejoins).
 */
import { MessageChannel } from 'node:worker_threads';
import { transferPort, type ControlProxy } from '../control.js';
import type { Switchboard } from './switchboard.js';

interface Member {
  control: ControlProxy;
  /** Settles when the actor's thread has exited. */
  gone: Promise<void>;
}

export class InProcessSwitchboard implements Switchboard {
  private readonly members = new Map<string, Member>();

  /**
   * Wire the actor `id` (whose thread settles `gone` when it exits) to every member. A
   * control call to an actor that dies before answering never settles (comlink knows nothing
   * of the thread behind a port), so each call is waited for only while both its ends live:
   * a peer that dies meanwhile is wired again when it restarts and joins.
   */
  async join(id: string, control: ControlProxy, gone: Promise<void>): Promise<void> {
    this.members.delete(id);
    const wiring: Promise<void>[] = [];
    const whileAlive = (call: Promise<void>, other: Promise<void>) =>
      Promise.race([call.catch(() => undefined), gone, other]);
    for (const [other, member] of this.members) {
      const { port1, port2 } = new MessageChannel();
      wiring.push(
        whileAlive(control.connectPeer(other, transferPort(port1)), member.gone),
        whileAlive(member.control.connectPeer(id, transferPort(port2)), member.gone),
      );
    }
    this.members.set(id, { control, gone });
    await Promise.all(wiring);
  }

  leave(id: string, control: ControlProxy): void {
    if (this.members.get(id)?.control === control) this.members.delete(id);
  }
}
