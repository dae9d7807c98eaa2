/**
 * A test state machine: the built-in kv that also counts how many times it applied each
 * command, by the command's `opId` field (which the kv itself ignores). A command applied
 * twice (a retry that the client sessions failed to catch) shows as a count of 2.
 *
 *   startNode(id, { stateMachine: { module: COUNTING_KV_MODULE } })
 *   query(id, { type: 'applications' })  // → [[opId, count], ...] sorted by opId
 *
 * Other queries go to the kv. The counts are part of snapshots, so a peer restored from one
 * still knows them.
 */
import { fileURLToPath } from 'node:url';
import { codec } from '../codec.js';
import { KvStateMachine } from '../state-machines/kv.js';
import type { StateMachine } from '../state-machines/types.js';

/** Absolute path of this module, for `stateMachine: { module }`. */
export const COUNTING_KV_MODULE = fileURLToPath(import.meta.url);

export class CountingKv implements StateMachine {
  private readonly kv = new KvStateMachine();
  private counts = new Map<string, number>();

  apply(command: unknown): unknown {
    const opId = (command as { opId?: unknown } | null)?.opId;
    // Counted whether the kv accepts the command or refuses it: either way it was applied.
    if (typeof opId === 'string') this.counts.set(opId, (this.counts.get(opId) ?? 0) + 1);
    return this.kv.apply(command);
  }

  query(query: unknown): unknown {
    if ((query as { type?: unknown } | null)?.type === 'applications') {
      return [...this.counts].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    }
    return this.kv.query(query);
  }

  snapshot(): Uint8Array {
    return codec.encode({ kv: this.kv.snapshot(), counts: [...this.counts].sort((a, b) => (a[0] < b[0] ? -1 : 1)) });
  }

  restore(data: Uint8Array): void {
    const v = codec.decode(data) as { kv?: unknown; counts?: unknown };
    if (!(v?.kv instanceof Uint8Array) || !Array.isArray(v.counts)) throw new Error('not a counting kv snapshot');
    const counts = new Map<string, number>();
    for (const pair of v.counts as unknown[]) {
      if (!Array.isArray(pair) || typeof pair[0] !== 'string' || typeof pair[1] !== 'number') throw new Error('not a counting kv snapshot');
      counts.set(pair[0], pair[1]);
    }
    this.kv.restore(v.kv);
    this.counts = counts;
  }
}

export function createStateMachine(): StateMachine {
  return new CountingKv();
}
