/**
 * A closed-loop load driver: `inFlight` clients, each issuing its next op as soon as its
 * previous one returns. After `warmupMs` it records every op that completes within the
 * next `durationMs` (its latency from issue to completion), then stops issuing and waits
 * for the ops still in flight. Prints a progress line per second.
 */
import { performance } from 'node:perf_hooks';
import { isInterrupted } from './cleanup.js';

export interface DriveOptions {
  label: string;
  inFlight: number;
  warmupMs: number;
  durationMs: number;
  /** Issue one op for client `client` (0 .. inFlight-1). */
  issue: (client: number) => Promise<unknown>;
  /** Replaces the default progress line, once a second. */
  tick?: (t: { elapsedS: number; opsPerSec: number; warmingUp: boolean; errors: number }) => void;
  /** Cumulative CPU seconds of other processes doing the work (etcd's members), if any. */
  externalCpuSeconds?: () => number;
}

export interface DriveResult {
  seconds: number;
  ops: number;
  errors: number;
  firstError: string | null;
  opsPerSec: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** CPU cores busy in this process (driver, client, and our peers' worker threads) while measuring. */
  cpuCores: number;
  /** CPU cores busy in the external processes (etcd members) while measuring; null for none. */
  externalCpuCores: number | null;
}

/** Nearest-rank quantile of an ascending array. */
export function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  const rank = Math.ceil(q * sorted.length);
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))]!;
}

const tty = Boolean(process.stdout.isTTY);

/** A status line: rewritten in place on a terminal, one line per call otherwise. */
export function progress(line: string): void {
  if (tty) process.stdout.write(`\r${line}\x1b[K`);
  else process.stdout.write(`${line}\n`);
}

/** End a status line on a terminal (so the next output starts on a clean line). */
export function progressDone(): void {
  if (tty) process.stdout.write('\r\x1b[K');
}

export async function drive(o: DriveOptions): Promise<DriveResult> {
  let latencies = new Float64Array(1 << 16);
  let ops = 0;
  let errors = 0;
  let firstError: string | null = null;
  let completedTotal = 0;
  const start = performance.now();
  const measureFrom = start + o.warmupMs;
  const end = measureFrom + o.durationMs;

  // CPU while measuring: snapshots when the measured window opens and closes.
  let cpu0: { at: number; own: NodeJS.CpuUsage; ext: number } | null = null;
  let cpu1: { at: number; own: NodeJS.CpuUsage; ext: number } | null = null;
  const snap = () => ({ at: performance.now(), own: process.cpuUsage(), ext: o.externalCpuSeconds?.() ?? 0 });
  const open = setTimeout(() => (cpu0 = snap()), o.warmupMs);
  const close = setTimeout(() => (cpu1 = snap()), o.warmupMs + o.durationMs);
  let lastTick = start;
  let lastCompleted = 0;
  const timer = setInterval(() => {
    if (isInterrupted()) return;
    const now = performance.now();
    const rate = ((completedTotal - lastCompleted) * 1000) / (now - lastTick);
    lastTick = now;
    lastCompleted = completedTotal;
    if (o.tick) return o.tick({ elapsedS: (now - start) / 1000, opsPerSec: rate, warmingUp: now < measureFrom, errors });
    const phase = now < measureFrom ? 'warm-up' : `${((Math.min(now, end) - measureFrom) / 1000).toFixed(1)}/${o.durationMs / 1000}s`;
    progress(`  ${o.label}  ${phase.padEnd(7)} ${Math.round(rate).toString().padStart(7)} ops/s${errors ? `, ${errors} errors` : ''}`);
  }, 1000);

  const client = async (c: number): Promise<void> => {
    for (;;) {
      const t0 = performance.now();
      if (t0 >= end || isInterrupted()) return;
      let ok = true;
      try {
        await o.issue(c);
      } catch (err) {
        ok = false;
        const t1 = performance.now();
        if (t1 >= measureFrom && t1 <= end) errors++;
        firstError ??= err instanceof Error ? `${err.name}: ${err.message}` : String(err);
        await new Promise((r) => setTimeout(r, 10)); // no hot loop on a persistent failure
      }
      if (!ok) continue;
      const t1 = performance.now();
      completedTotal++;
      if (t1 >= measureFrom && t1 <= end) {
        if (ops === latencies.length) {
          const grown = new Float64Array(latencies.length * 2);
          grown.set(latencies);
          latencies = grown;
        }
        latencies[ops++] = t1 - t0;
      }
    }
  };
  try {
    await Promise.all(Array.from({ length: o.inFlight }, (_, c) => client(c)));
  } finally {
    clearInterval(timer);
    clearTimeout(open);
    clearTimeout(close);
    progressDone();
  }
  if (isInterrupted()) throw new Error('interrupted');
  const c0 = cpu0 as { at: number; own: NodeJS.CpuUsage; ext: number } | null;
  const c1 = (cpu1 as { at: number; own: NodeJS.CpuUsage; ext: number } | null) ?? snap();
  const wallS = c0 ? (c1.at - c0.at) / 1000 : NaN;
  const cpuCores = c0 ? (c1.own.user - c0.own.user + c1.own.system - c0.own.system) / 1e6 / wallS : NaN;
  const externalCpuCores = o.externalCpuSeconds && c0 ? (c1.ext - c0.ext) / wallS : null;
  const sorted = latencies.subarray(0, ops).sort();
  const seconds = o.durationMs / 1000;
  return {
    seconds,
    ops,
    errors,
    firstError,
    opsPerSec: ops / seconds,
    p50Ms: quantile(sorted, 0.5),
    p99Ms: quantile(sorted, 0.99),
    maxMs: ops ? sorted[ops - 1]! : NaN,
    cpuCores,
    externalCpuCores,
  };
}
