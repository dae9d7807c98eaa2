/**
 * `npm run bench`: committed ops/s and latency of kv `set` against a durable cluster
 * (fsync on every peer), at several numbers of ops in flight. Not part of `npm test`.
 *
 *   npm run bench -- [--peers 3] [--inflight 1,16,256] [--seconds 5] [--warmup 1] [--value-size 64]
 *
 * Prints a progress line per second and a table; writes JSON to bench/results/.
 * Compare with ../shared/ceiling in the same sitting: the machine is noisy, ratios hold.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { op, setConfig, startNode, status, stopNode } from '../src/api.js';

interface Args {
  peers: number;
  inflight: number[];
  seconds: number;
  warmup: number;
  valueSize: number;
}

function parseArgs(argv: string[]): Args {
  const args: Args = { peers: 3, inflight: [1, 16, 256], seconds: 5, warmup: 1, valueSize: 64 };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    switch (flag) {
      case '--peers':
        args.peers = positive(flag, value);
        break;
      case '--inflight':
        args.inflight = value.split(',').map((v) => positive(flag, v));
        break;
      case '--seconds':
        args.seconds = positive(flag, value);
        break;
      case '--warmup':
        args.warmup = Number(value);
        break;
      case '--value-size':
        args.valueSize = positive(flag, value);
        break;
      default:
        throw new Error(`unknown option ${flag} (see the header of bench/throughput.ts)`);
    }
  }
  return args;
}

function positive(flag: string | undefined, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${flag} must be a positive number, got ${v}`);
  return n;
}

interface Point {
  peers: number;
  inFlight: number;
  valueBytes: number;
  seconds: number;
  ops: number;
  opsPerSec: number;
  p50ms: number;
  p99ms: number;
  maxMs: number;
}

function quantile(sorted: Float64Array, q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))]!;
}

/** Keep `inFlight` sets going against `leader` for `seconds`; latencies only after warm-up. */
async function drive(leader: string, inFlight: number, seconds: number, warmup: number, value: Uint8Array): Promise<Point & { latencies: number }> {
  const latencies: number[] = [];
  const start = performance.now();
  const measureFrom = start + warmup * 1000;
  const end = measureFrom + seconds * 1000;
  let measured = 0;
  let lastReport = measureFrom;
  let lastCount = 0;
  const progress = setInterval(() => {
    const now = performance.now();
    if (now < measureFrom) return;
    const rate = ((measured - lastCount) * 1000) / (now - lastReport);
    const line = `  in flight ${String(inFlight).padStart(5)}: ${Math.round(rate).toString().padStart(7)} ops/s, ${measured} ops`;
    // One line rewritten in place on a terminal; a line per second in a log.
    process.stdout.write(process.stdout.isTTY ? `\r${line}   ` : `${line}\n`);
    lastReport = now;
    lastCount = measured;
  }, 1000);
  await Promise.all(
    Array.from({ length: inFlight }, async (_, w) => {
      const key = `bench:${w}`;
      for (;;) {
        const t0 = performance.now();
        if (t0 >= end) return;
        await op(leader, { type: 'set', key, value });
        const t1 = performance.now();
        if (t0 >= measureFrom && t1 <= end) {
          latencies.push(t1 - t0);
          measured++;
        }
      }
    }),
  );
  clearInterval(progress);
  if (process.stdout.isTTY) process.stdout.write('\n');
  const sorted = Float64Array.from(latencies).sort();
  return {
    peers: 0,
    inFlight,
    valueBytes: value.length,
    seconds,
    ops: measured,
    opsPerSec: measured / seconds,
    p50ms: quantile(sorted, 0.5),
    p99ms: quantile(sorted, 0.99),
    maxMs: sorted.length ? sorted[sorted.length - 1]! : NaN,
    latencies: sorted.length,
  };
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'actor-raft-bench-'));
  const ids = Array.from({ length: args.peers }, (_, i) => `b${i + 1}`);
  const value = new Uint8Array(args.valueSize).fill(7);
  console.log(`actor-raft bench: ${args.peers} durable peers, kv set, ${args.valueSize} B values, ${args.seconds}s per point after ${args.warmup}s warm-up`);
  console.log(`machine: ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'cpu'}, node ${process.version}, data in ${root}`);
  const points: Point[] = [];
  try {
    await Promise.all(ids.map((id) => startNode(id, { stateMachine: 'kv', dataDir: path.join(root, id) })));
    await setConfig(ids[0]!, ids);
    await op(ids[0]!, { type: 'set', key: 'bench:ready', value: true });
    const leader = (await status(ids[0]!)).leader ?? ids[0]!;
    for (const inFlight of args.inflight) {
      const { latencies: _count, ...point } = await drive(leader, inFlight, args.seconds, args.warmup, value);
      points.push({ ...point, peers: args.peers });
    }
  } finally {
    await Promise.all(ids.map((id) => stopNode(id).catch(() => undefined)));
    fs.rmSync(root, { recursive: true, force: true });
  }

  console.log('\n| peers | in flight | value | ops/s | p50 ms | p99 ms | max ms |');
  console.log('|---:|---:|---:|---:|---:|---:|---:|');
  for (const p of points) {
    console.log(
      `| ${p.peers} | ${p.inFlight} | ${p.valueBytes} B | ${Math.round(p.opsPerSec)} | ${p.p50ms.toFixed(2)} | ${p.p99ms.toFixed(2)} | ${p.maxMs.toFixed(2)} |`,
    );
  }
  const here = path.dirname(fileURLToPath(import.meta.url));
  const resultsDir = path.resolve(here, '../../bench/results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `throughput-${new Date().toISOString().replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(
    file,
    JSON.stringify({ date: new Date().toISOString(), node: process.version, cpus: os.cpus().length, args, points }, null, 2),
  );
  console.log(`\nresults: ${path.relative(process.cwd(), file)}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
