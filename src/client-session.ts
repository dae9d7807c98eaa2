/**
 * The client side of a session (thesis §6.3): the id and sequence numbers the API gives the
 * ops it submits, so that the cluster's session table (src/sessions.ts) applies each op once
 * however often it is retried.
 *
 * One session serves one node handle of the API, opened through the log on its first op. Its
 * id is random (96 bits): never reused, so a session that expired can never come back to life
 * and apply an old command again. When it expires, the next op opens a new one.
 */
import { randomBytes } from 'node:crypto';
import { encodeLogCommand } from './codec.js';

/** An op's place in a session: the session's id and the op's sequence number. */
export interface Ticket {
  client: string;
  seq: number;
}

/** Submit a registration (a log command) and resolve once it is applied. */
export type Register = (data: Uint8Array) => Promise<unknown>;

export class ClientSession {
  private client: string | null = null;
  private opening: Promise<string> | null = null;
  private nextSeq = 1;
  /** Seqs handed out and not yet ended: the client still waits for their answers. */
  private readonly open = new Set<number>();
  /** The lowest seq in `open`, or `nextSeq` when none is. */
  private lowest = 1;
  /** Counters for `status`: sessions opened, ops retried, sessions that expired under an op. */
  readonly stats = { opened: 0, retries: 0, expired: 0 };

  constructor(readonly timeoutMs: number) {}

  /** The current session's id, if one is open. */
  get id(): string | null {
    return this.client;
  }

  /** A ticket for a new op, opening a session through `register` first if none is open. */
  async begin(register: Register): Promise<Ticket> {
    const client = this.client ?? (await this.openSession(register));
    if (client !== this.client) return this.begin(register); // it expired meanwhile
    const seq = this.nextSeq++;
    if (this.open.size === 0) this.lowest = seq;
    this.open.add(seq);
    return { client, seq };
  }

  /**
   * The lowest seq whose answer is still awaited (§6.3): the cluster may forget the results
   * of the seqs below it. Sent with every op.
   */
  ack(): number {
    return this.open.size === 0 ? this.nextSeq : this.lowest;
  }

  /** The op of `ticket` is answered, or given up on: its result need not be kept. */
  end(ticket: Ticket): void {
    if (ticket.client !== this.client || !this.open.delete(ticket.seq)) return;
    if (ticket.seq !== this.lowest) return;
    while (this.lowest < this.nextSeq && !this.open.has(this.lowest)) this.lowest++;
  }

  /** The cluster said `client` has expired: the next op opens a new session. */
  expired(client: string): void {
    if (client !== this.client) return;
    this.stats.expired++;
    this.client = null;
    this.nextSeq = 1;
    this.lowest = 1;
    this.open.clear();
  }

  private openSession(register: Register): Promise<string> {
    if (this.opening) return this.opening;
    const client = randomBytes(12).toString('base64url');
    const opening = register(encodeLogCommand({ type: 'register', client, timeoutMs: this.timeoutMs })).then(
      () => {
        this.client = client;
        this.nextSeq = 1;
        this.lowest = 1;
        this.open.clear();
        this.stats.opened++;
        return client;
      },
    );
    this.opening = opening;
    // The next op after a failed opening tries again.
    const settled = () => {
      if (this.opening === opening) this.opening = null;
    };
    opening.then(settled, settled);
    return opening;
  }
}
