/**
 * The in-process transport: every pair of consensus actors in this process gets its own
 * MessageChannel, so peer traffic goes thread to thread without touching the main thread.
 * When an actor (re)starts it is wired to every running actor; when it dies its ports
 * close and its peers drop them (they treat it as an unreachable peer until it rejoins).
 */
import { MessageChannel } from 'node:worker_threads';
import { transferPort, type ControlProxy } from '../control.js';

export class InProcessSwitchboard {
  private readonly members = new Map<string, ControlProxy>();

  async join(id: string, control: ControlProxy): Promise<void> {
    this.members.delete(id);
    const wiring: Promise<void>[] = [];
    for (const [other, otherControl] of this.members) {
      const { port1, port2 } = new MessageChannel();
      wiring.push(control.connectPeer(other, transferPort(port1)), otherControl.connectPeer(id, transferPort(port2)));
    }
    this.members.set(id, control);
    await Promise.all(wiring);
  }

  leave(id: string, control: ControlProxy): void {
    if (this.members.get(id) === control) this.members.delete(id);
  }
}
