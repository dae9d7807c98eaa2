/**
 * Network faults between peers, applied where a consensus actor sends (so each direction of
 * a link is decided by its sender): partitions, random loss, duplication and delay (delay
 * with jitter reorders messages). Decisions come from a seeded PRNG, so a fault schedule
 * is reproducible up to thread timing.
 *
 * Not part of a transport: the plan is set through the API's `nemesis`, travels to the
 * consensus actor over its control port (`setFaults`) or in its start data, and is applied
 * there, in `sendToPeer`, to whatever transport carries the messages.
 */
import { nextRandom } from './rng.js';

export interface LinkFaults {
  /** Probability that a message is lost. */
  drop: number;
  /** Probability that a message is delivered twice. */
  duplicate: number;
  /** Each delivery waits a uniform random time in [min, max] ms; [0, 0] for none. */
  delayMs: [number, number];
}

export interface FaultPlan {
  /**
   * Groups of peers that can talk among themselves only; null when healed. A peer may sit
   * in several groups (a bridge: [[a, b, c], [c, d, e]] lets c hear everyone).
   */
  partition: string[][] | null;
  links: LinkFaults;
  seed: number;
}

export const NO_LINK_FAULTS: LinkFaults = { drop: 0, duplicate: 0, delayMs: [0, 0] };
export const NO_FAULTS: FaultPlan = { partition: null, links: NO_LINK_FAULTS, seed: 1 };

export function validateLinkFaults(f: LinkFaults): LinkFaults {
  const probability = (name: 'drop' | 'duplicate') => {
    const p = f[name];
    if (typeof p !== 'number' || !(p >= 0 && p <= 1)) throw new RangeError(`${name} must be a probability in [0, 1], got ${p}`);
  };
  probability('drop');
  probability('duplicate');
  const d = f.delayMs;
  if (!Array.isArray(d) || d.length !== 2 || !(d[0] >= 0) || !(d[1] >= d[0]) || !Number.isFinite(d[1])) {
    throw new RangeError(`delayMs must be [min, max] with 0 <= min <= max, got ${JSON.stringify(d)}`);
  }
  return { drop: f.drop, duplicate: f.duplicate, delayMs: [d[0], d[1]] };
}

export function validatePartition(groups: string[][], known: readonly string[]): string[][] {
  if (!Array.isArray(groups) || groups.some((g) => !Array.isArray(g))) {
    throw new TypeError('partition takes an array of groups of peer ids');
  }
  for (const id of groups.flat()) {
    if (!known.includes(id)) throw new RangeError(`unknown peer '${id}' in partition`);
  }
  return groups.map((g) => [...g]);
}

/** What becomes of one message on one link: delivery delays in ms, one per copy (none: lost). */
export class FaultyLinks {
  private seed: number;

  constructor(private readonly plan: FaultPlan) {
    this.seed = plan.seed | 0;
  }

  get active(): boolean {
    const l = this.plan.links;
    return this.plan.partition !== null || l.drop > 0 || l.duplicate > 0 || l.delayMs[1] > 0;
  }

  /** Whether some group holds both `from` and `to` (a peer in no group is cut off from all). */
  connected(from: string, to: string): boolean {
    const groups = this.plan.partition;
    if (groups === null) return true;
    return groups.some((g) => g.includes(from) && g.includes(to));
  }

  deliveries(from: string, to: string): number[] {
    if (!this.connected(from, to)) return [];
    const { drop, duplicate, delayMs } = this.plan.links;
    if (drop > 0 && this.random() < drop) return [];
    const copies = duplicate > 0 && this.random() < duplicate ? 2 : 1;
    const out: number[] = [];
    for (let i = 0; i < copies; i++) out.push(delayMs[1] > 0 ? delayMs[0] + this.random() * (delayMs[1] - delayMs[0]) : 0);
    return out;
  }

  private random(): number {
    const r = nextRandom(this.seed);
    this.seed = r.seed;
    return r.value;
  }
}
