/**
 * A latency histogram with fixed buckets, cheap enough for an actor's hot path (one
 * comparison loop and two additions per observation), whose snapshot is plain data: it
 * crosses a thread as part of a status answer or a notice and is rendered as a Prometheus
 * histogram (cumulative `le` buckets, `_sum`, `_count`) by src/http/metrics.ts.
 *
 *   const h = new Histogram();
 *   const t0 = performance.now();
 *   work();
 *   h.observe(secondsSince(t0));
 *   h.snapshot(); // { bounds: [0.0001, ...], cumulative: [0, 1, ...], count: 1, sum: 0.0003 }
 */

/** Upper bounds (seconds) of the latency buckets: 100 µs to 10 s; `+Inf` is implied. */
export const LATENCY_BUCKETS_SECONDS: readonly number[] = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

/** A histogram's state as plain data. */
export interface HistogramSnapshot {
  /** Upper bounds of the buckets, ascending (the `+Inf` bucket is `count`). */
  bounds: number[];
  /** `cumulative[i]`: observations ≤ `bounds[i]` (Prometheus's `le` buckets). */
  cumulative: number[];
  /** Every observation. */
  count: number;
  /** Sum of every observed value. */
  sum: number;
}

export class Histogram {
  private readonly bounds: readonly number[];
  /** Observations per bucket (not cumulative); the last slot is above every bound. */
  private readonly counts: number[];
  private sum = 0;

  constructor(bounds: readonly number[] = LATENCY_BUCKETS_SECONDS) {
    this.bounds = bounds;
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    let i = 0;
    while (i < this.bounds.length && value > this.bounds[i]!) i++;
    this.counts[i]!++;
    this.sum += value;
  }

  snapshot(): HistogramSnapshot {
    const cumulative: number[] = [];
    let running = 0;
    for (let i = 0; i < this.bounds.length; i++) cumulative.push((running += this.counts[i]!));
    return { bounds: [...this.bounds], cumulative, count: running + this.counts[this.bounds.length]!, sum: this.sum };
  }
}

/** Seconds elapsed since `start`, a `performance.now()` reading. */
export function secondsSince(start: number): number {
  return (performance.now() - start) / 1000;
}
