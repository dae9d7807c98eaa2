/**
 * `npm run bench`: kv `set` and linearizable `get` against durable actor-raft clusters
 * (fsync on every peer) at several numbers of ops in flight and value sizes; optionally the
 * same workload against a local etcd cluster of the same size (`--vs-etcd`), the process's
 * memory under load with a follower down (`--rss`), and the data-path ceiling (`--ceiling`).
 * Not part of `npm test`. See USAGE in bench/args.ts, or `npm run bench -- --help`.
 *
 * One cluster per (system, peers, value size); every in-flight point runs on it after a
 * warm-up. Prints a progress line per second, a table of ops/s and p50/p99/max latency, and
 * writes JSON and an SVG chart to bench/results/. Machines here are noisy: compare ratios
 * measured in the same run.
 */
import fs from 'node:fs';
import path from 'node:path';
import { formatBytes, parseArgs, USAGE, type BenchArgs, type Workload } from './args.js';
import { isInterrupted } from './cleanup.js';
import { drive, type DriveResult } from './driver.js';
import { ensureEtcd, EtcdCluster, type EtcdBinary, type KvClient } from './etcd.js';
import { ceilingDir, ceilingHint, describeMachine, machine, resultsDir, runCeiling, type CeilingResult } from './machine.js';
import { RaftCluster } from './raft-target.js';
import { runRss, runRssPhase, type RssResult } from './rss.js';
import { renderChart } from './svg.js';

type System = 'actor-raft' | 'etcd';

interface Point extends DriveResult {
  system: System;
  peers: number;
  workload: Workload;
  valueBytes: number;
  inFlight: number;
}

interface Target {
  set(key: string, value: Uint8Array): Promise<unknown>;
  /** A set without a client session (`{ idempotent: true }`); actor-raft only. */
  setIdempotent?(key: string, value: Uint8Array): Promise<unknown>;
  get(key: string): Promise<unknown>;
  /** Cumulative CPU seconds of the server processes, when they are not this process. */
  externalCpuSeconds?: () => number;
}

const log = (line: string) => console.log(line);

function readDescription(args: BenchArgs): string {
  return args.lease
    ? 'get = read(leader, {type:"get", key}) (lease read, thesis §6.4.1, linearizable within the clock-drift bound)'
    : 'get = read(leader, {type:"get", key}) (ReadIndex, thesis §6.4, linearizable)';
}

async function runPoints(args: BenchArgs, system: System, peers: number, valueBytes: number, target: Target): Promise<Point[]> {
  const value = new Uint8Array(valueBytes).fill(7);
  const points: Point[] = [];
  const maxInFlight = Math.max(...args.inflight);
  for (const workload of args.workloads) {
    const setIdempotent = target.setIdempotent?.bind(target);
    if (workload === 'set-idem' && !setIdempotent) continue; // etcd has no sessions to skip
    if (workload === 'get') {
      // Every client reads its own key: write them all first, then check one reads back.
      for (let k = 0; k < maxInFlight; k += 256) {
        await Promise.all(Array.from({ length: Math.min(256, maxInFlight - k) }, (_, i) => target.set(`bench:${k + i}`, value)));
      }
      const back = (await target.get('bench:0')) as Uint8Array | null;
      if (!back || back.length !== valueBytes) {
        console.log(`  warning: ${system} get returned ${back === null ? 'null' : `${back.length} bytes`} for a ${valueBytes}-byte value`);
      }
    }
    for (const inFlight of args.inflight) {
      const label = `${system.padEnd(10)} ${peers}p ${formatBytes(valueBytes).padStart(6)} ${workload} ×${String(inFlight).padEnd(5)}`;
      const r = await drive({
        label,
        inFlight,
        warmupMs: args.warmup * 1000,
        durationMs: args.seconds * 1000,
        issue:
          workload === 'set'
            ? (c) => target.set(`bench:${c}`, value)
            : workload === 'set-idem'
              ? (c) => setIdempotent!(`bench:${c}`, value)
              : (c) => target.get(`bench:${c}`),
        externalCpuSeconds: target.externalCpuSeconds,
      });
      console.log(
        `  ${label}  ${Math.round(r.opsPerSec).toString().padStart(7)} ops/s  p50 ${ms(r.p50Ms)}  p99 ${ms(r.p99Ms)}  max ${ms(r.maxMs)} ms  cpu ${cpu(r)}${r.errors ? `  ${r.errors} errors (first: ${r.firstError})` : ''}`,
      );
      points.push({ system, peers, workload, valueBytes, inFlight, ...r });
    }
  }
  return points;
}

function ms(v: number): string {
  return Number.isFinite(v) ? v.toFixed(2).padStart(7) : '      -';
}

/** CPU cores busy while measuring: this process, plus the etcd members when they did the work. */
function cpu(r: DriveResult): string {
  const own = Number.isFinite(r.cpuCores) ? r.cpuCores.toFixed(2) : '-';
  return r.externalCpuCores === null ? own : `${own} + etcd ${r.externalCpuCores.toFixed(2)}`;
}

function num(v: number): string {
  return Number.isFinite(v) ? Math.round(v).toLocaleString('en-US').replace(/,/g, ' ') : '-';
}

function ratio(a: number, b: number): string {
  return Number.isFinite(a) && Number.isFinite(b) && b > 0 ? `${(a / b).toFixed(2)}×` : '-';
}

function printTable(points: Point[]): void {
  console.log('\n| system | peers | op | value | in flight | ops/s | p50 ms | p99 ms | max ms | errors | CPU cores (node [+ etcd]) |');
  console.log('|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const p of points) {
    console.log(
      `| ${p.system} | ${p.peers} | ${p.workload} | ${formatBytes(p.valueBytes)} | ${p.inFlight} | ${num(p.opsPerSec)} | ${ms(p.p50Ms).trim()} | ${ms(p.p99Ms).trim()} | ${ms(p.maxMs).trim()} | ${p.errors} | ${cpu(p)} |`,
    );
  }
}

interface Comparison {
  peers: number;
  workload: Workload;
  valueBytes: number;
  inFlight: number;
  oursOpsPerSec: number;
  etcdOpsPerSec: number;
  opsRatio: number;
  oursP99Ms: number;
  etcdP99Ms: number;
  p99Ratio: number;
}

function compare(points: Point[]): Comparison[] {
  const out: Comparison[] = [];
  for (const o of points.filter((p) => p.system === 'actor-raft')) {
    const e = points.find(
      (p) => p.system === 'etcd' && p.peers === o.peers && p.workload === o.workload && p.valueBytes === o.valueBytes && p.inFlight === o.inFlight,
    );
    if (!e) continue;
    out.push({
      peers: o.peers,
      workload: o.workload,
      valueBytes: o.valueBytes,
      inFlight: o.inFlight,
      oursOpsPerSec: o.opsPerSec,
      etcdOpsPerSec: e.opsPerSec,
      opsRatio: o.opsPerSec / e.opsPerSec,
      oursP99Ms: o.p99Ms,
      etcdP99Ms: e.p99Ms,
      p99Ratio: o.p99Ms / e.p99Ms,
    });
  }
  return out;
}

function printComparison(rows: Comparison[]): void {
  console.log('\nactor-raft vs etcd (ratio = actor-raft / etcd; ops/s above 1× and p99 below 1× favour actor-raft)\n');
  console.log('| peers | op | value | in flight | actor-raft ops/s | etcd ops/s | ops/s ratio | actor-raft p99 ms | etcd p99 ms | p99 ratio |');
  console.log('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    console.log(
      `| ${r.peers} | ${r.workload} | ${formatBytes(r.valueBytes)} | ${r.inFlight} | ${num(r.oursOpsPerSec)} | ${num(r.etcdOpsPerSec)} | ${ratio(r.oursOpsPerSec, r.etcdOpsPerSec)} | ${ms(r.oursP99Ms).trim()} | ${ms(r.etcdP99Ms).trim()} | ${ratio(r.oursP99Ms, r.etcdP99Ms)} |`,
    );
  }
}

function stamp(): string {
  return new Date().toISOString().replace(/[:.]/g, '-');
}

/**
 * Anonymous memory (heaps: what the in-memory logs would grow) over the second half of a
 * phase, once the threads' heaps have warmed up: MiB at the half-way sample and at the end,
 * and bytes grown per op committed in between.
 */
function secondHalf(r: RssResult): { midMiB: string; endMiB: string; bytesPerOp: string } {
  const s = r.samples.filter((x) => x.anonMiB !== null);
  if (s.length < 4) return { midMiB: '-', endMiB: '-', bytesPerOp: '-' };
  const mid = Math.floor(s.length / 2);
  const ops = s.slice(mid + 1).reduce((n, x) => n + x.opsPerSec, 0);
  const grown = (s[s.length - 1]!.anonMiB! - s[mid]!.anonMiB!) * 2 ** 20;
  return { midMiB: s[mid]!.anonMiB!.toFixed(0), endMiB: s[s.length - 1]!.anonMiB!.toFixed(0), bytesPerOp: ops > 0 ? (grown / ops).toFixed(1) : '-' };
}

async function rssMain(args: BenchArgs, header: Record<string, unknown>): Promise<void> {
  const seconds = args.rss ?? 10;
  const valueBytes = args.values[0] ?? 64;
  const results: RssResult[] = await runRss(seconds, valueBytes);
  console.log('\n| phase | start MiB | end MiB (anon / file) | ops | ops/s | anon MiB at half → end | anon bytes per op, 2nd half |');
  console.log('|---|---:|---:|---:|---:|---:|---:|');
  for (const r of results) {
    const h = secondHalf(r);
    console.log(
      `| ${r.phase} | ${r.startMiB.toFixed(1)} | ${r.endMiB.toFixed(1)} (${r.endAnonMiB?.toFixed(0) ?? '?'} / ${r.endFileMiB?.toFixed(0) ?? '?'}) | ${num(r.ops)} | ${num(r.opsPerSec)} | ${h.midMiB} → ${h.endMiB} | ${h.bytesPerOp} |`,
    );
  }
  console.log(
    "\n(rss is the whole process: the driver, every peer's worker threads and the resident pages of their LMDB maps. Each core keeps at most maxCachedEntries log entries in memory, so anonymous memory levels off once the heaps have warmed up; the file-backed part is LMDB's map of the growing log on disk, which log compaction bounds)",
  );
  const file = path.join(resultsDir(), `rss-${stamp()}.json`);
  fs.writeFileSync(file, JSON.stringify({ ...header, rss: results }, null, 2));
  console.log(`\nresults: ${path.relative(process.cwd(), file)}`);
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.help) {
    console.log(USAGE);
    return;
  }
  if (args.rssPhase) {
    await runRssPhase(args.rssPhase, args.rss ?? 10, args.values[0] ?? 64);
    return;
  }
  const m = machine();
  const startedAt = new Date().toISOString();
  console.log(`actor-raft bench, ${startedAt}`);
  console.log(describeMachine(m));
  const ceiling = ceilingDir();
  if (ceiling) console.log(ceilingHint(ceiling));
  const header = { date: startedAt, machine: m, args, readMode: args.lease ? 'lease' : 'readIndex' };

  if (args.rss !== null) {
    await rssMain(args, header);
    return;
  }

  let etcd: EtcdBinary | null = null;
  let etcdSkipped: string | null = null;
  let etcdClientKind = args.etcdClient;
  let etcdClientName: string | null = null;
  if (args.vsEtcd) {
    const found = ensureEtcd(log);
    if ('error' in found) {
      etcdSkipped = found.error;
      console.log(`\n*** --vs-etcd: ${found.error}; the etcd rows are SKIPPED ***\n`);
    } else {
      etcd = found;
      if (etcdClientKind === 'grpc') {
        try {
          await import('etcd3');
        } catch (err) {
          console.log(`etcd3 npm package unusable (${(err as Error).message}): using etcd's v3 JSON gateway over HTTP instead`);
          etcdClientKind = 'http';
        }
      }
      etcdClientName =
        etcdClientKind === 'grpc'
          ? 'etcd3 npm package (gRPC via @grpc/grpc-js, one HTTP/2 connection to the leader)'
          : "etcd's v3 JSON gRPC-gateway over HTTP/1.1 (node:http keep-alive agent, to the leader)";
    }
  }

  const perTarget = args.workloads.length * args.inflight.length * (args.seconds + args.warmup);
  const targets = args.peers.length * args.values.length * (etcd ? 2 : 1);
  console.log(
    `\nworkloads: ${args.workloads.join(', ')} (set = op(leader, {type:"set", key, value}), exactly once in a client session; set-idem = the same with { idempotent: true }, no session; ${readDescription(args)})`,
  );
  console.log(
    `matrix: peers ${args.peers.join(',')} × values ${args.values.map(formatBytes).join(',')} × in flight ${args.inflight.join(',')}; ${args.seconds}s per point after ${args.warmup}s warm-up; durable (fsync on every peer); about ${Math.ceil((perTarget * targets) / 60 + targets * 0.05)} min`,
  );
  if (etcd) {
    console.log(
      `etcd: ${etcd.bin} version ${etcd.version}, a cluster of the same size per (peers, value) on 127.0.0.1:${23790}+ (peer ports 23890+), default durability (WAL fsync), client: ${etcdClientName}; set = Put, get = Range with serializable=false (linearizable)`,
    );
  }
  console.log('');

  const points: Point[] = [];
  for (const peers of args.peers) {
    for (const valueBytes of args.values) {
      {
        const t0 = Date.now();
        const cluster = await RaftCluster.start(peers, `p${peers}v${valueBytes}-`, { leaseReads: args.lease });
        console.log(`actor-raft: ${peers} peers up in ${Date.now() - t0} ms (leader ${cluster.leader}, data in ${cluster.root})`);
        try {
          points.push(...(await runPoints(args, 'actor-raft', peers, valueBytes, cluster)));
        } finally {
          await cluster.stop();
        }
      }
      if (etcd) {
        const t0 = Date.now();
        const cluster = await EtcdCluster.start(etcd.bin, peers);
        let client: KvClient | null = null;
        try {
          client = await cluster.client(etcdClientKind);
          console.log(`etcd: ${peers} members up in ${Date.now() - t0} ms (leader ${cluster.leaderUrl}, data in ${cluster.root})`);
          const target: Target = { set: (k, v) => client!.set(k, v), get: (k) => client!.get(k), externalCpuSeconds: () => cluster.cpuSeconds() };
          points.push(...(await runPoints(args, 'etcd', peers, valueBytes, target)));
        } finally {
          await client?.close().catch(() => undefined);
          await cluster.stop();
        }
      }
    }
  }

  printTable(points);
  console.log(
    `\nCPU cores: busy time over the measured window of this Node process (for actor-raft the driver and every peer's worker threads; for etcd the driver and its client only)${etcd ? ", plus the etcd members' own (from /proc). Near 1.0 in the node column of an etcd row means its single-threaded client, not etcd, set the pace" : ''}.`,
  );
  const comparison = compare(points);
  if (etcd) {
    console.log(`\netcd ${etcd.version}, client: ${etcdClientName}`);
    printComparison(comparison);
  } else if (etcdSkipped) {
    console.log(`\n(etcd rows skipped: ${etcdSkipped})`);
  }

  let ceilingResults: CeilingResult[] | null = null;
  if (args.ceiling) {
    if (!ceiling) console.log('\n--ceiling: ../shared/ceiling not found; skipped');
    else {
      console.log('');
      try {
        ceilingResults = await runCeiling(ceiling, log);
        console.log('\nactor-raft (3 peers, 64 B, set) vs the data-path ceiling, same run:\n');
        console.log('| in flight | actor-raft ops/s | ceiling case | ceiling ops/s | ratio |');
        console.log('|---:|---:|---|---:|---:|');
        for (const [inFlight, c] of [
          [64, ceilingResults[0]!],
          [1024, ceilingResults[1]!],
        ] as const) {
          const ours = points.find((p) => p.system === 'actor-raft' && p.peers === 3 && p.valueBytes === 64 && p.workload === 'set' && p.inFlight === inFlight);
          console.log(`| ${inFlight} | ${ours ? num(ours.opsPerSec) : 'not measured'} | ${c.case} | ${num(c.opsPerSec)} | ${ours ? ratio(ours.opsPerSec, c.opsPerSec) : '-'} |`);
        }
      } catch (err) {
        console.log(`--ceiling failed: ${(err as Error).message}`);
      }
    }
  }

  const dir = resultsDir();
  const base = path.join(dir, `bench-${stamp()}`);
  fs.writeFileSync(
    `${base}.json`,
    JSON.stringify(
      {
        ...header,
        etcd: etcd ? { version: etcd.version, bin: etcd.bin, client: etcdClientName } : etcdSkipped ? { skipped: etcdSkipped } : null,
        points,
        comparison,
        ceiling: ceilingResults,
      },
      null,
      2,
    ),
  );
  const subtitle = `${m.cpus} × ${m.model}, node ${m.node}; durable; ${args.seconds}s per point after ${args.warmup}s warm-up; get via read() (${args.lease ? 'lease' : 'ReadIndex'})${etcd ? `; etcd ${etcd.version} dashed` : ''}`;
  fs.writeFileSync(`${base}.svg`, renderChart(points, `actor-raft${etcd ? ' vs etcd' : ''}: kv throughput and p99 latency`, subtitle));
  console.log(`\nresults: ${path.relative(process.cwd(), base)}.json, ${path.relative(process.cwd(), base)}.svg`);
}

main().then(
  () => process.exit(process.exitCode ?? 0),
  (err: unknown) => {
    if (isInterrupted()) return; // the signal handler finishes the cleanup and exits
    console.error(err);
    process.exit(1); // the 'exit' handler kills any etcd still running and removes temp dirs
  },
);
