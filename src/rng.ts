/**
 * A seeded PRNG (mulberry32): the core's only source of randomness, carried in its state as a
 * plain number, and (as `Rng`) the one generator of the simulator, the tests, the nemesis and
 * the link faults. Never Math.random, so every run replays from its seed. It sits outside
 * src/core/ because the core is one of its users, not its owner.
 */
export function nextRandom(seed: number): { value: number; seed: number } {
  const s = (seed + 0x6d2b79f5) | 0;
  let t = s;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return { value: ((t ^ (t >>> 14)) >>> 0) / 4294967296, seed: s };
}

/** The same generator as an object, with helpers, for code that is not the core. */
export class Rng {
  private seed: number;

  constructor(seed: number) {
    this.seed = seed | 0;
  }

  /** Uniform in [0, 1). */
  next(): number {
    const r = nextRandom(this.seed);
    this.seed = r.seed;
    return r.value;
  }

  /** Integer in [lo, hi] inclusive. */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }

  chance(p: number): boolean {
    return p > 0 && this.next() < p;
  }

  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new Error('pick from an empty list');
    return items[Math.floor(this.next() * items.length)]!;
  }

  shuffle<T>(items: readonly T[]): T[] {
    const out = [...items];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(this.next() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  }

  /** An independent generator derived from this one (so sub-schedules stay stable). */
  fork(): Rng {
    return new Rng(Math.floor(this.next() * 4294967296));
  }
}
