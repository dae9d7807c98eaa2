/**
 * Batching at a hop: messages for the same port produced during one event-loop turn leave
 * together at the end of the turn (setImmediate), as one message or one bundle. This is
 * transport only; the receiver handles a bundle's messages one by one, in order.
 */
import type { MessagePort } from 'node:worker_threads';
import { postEncoded } from '../codec.js';
import { type AnyMessage } from '../messages.js';

export class Batcher {
  private readonly queues = new Map<MessagePort, AnyMessage[]>();
  private scheduled = false;

  constructor(private readonly afterFlush: () => void = () => undefined) {}

  send(port: MessagePort, message: AnyMessage): void {
    let queue = this.queues.get(port);
    if (!queue) this.queues.set(port, (queue = []));
    queue.push(message);
    this.schedule();
  }

  /** Make sure `afterFlush` runs at the end of this turn even if nothing was queued. */
  schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => this.flush());
  }

  flush(): void {
    this.scheduled = false;
    for (const [port, messages] of this.queues) {
      postEncoded(port, messages.length === 1 ? messages[0]! : { type: 'bundle', messages });
    }
    this.queues.clear();
    this.afterFlush();
  }

  /** Drop what is queued (the actor is stopping). */
  clear(): void {
    this.queues.clear();
  }
}
