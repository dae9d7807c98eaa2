/**
 * `npm run bench -- --rss [N]`: the process's resident memory (process.memoryUsage().rss;
 * every actor is a worker thread of this process, so it counts all peers, their LMDB maps
 * and the driver) while writing at 256 in flight to a 3-peer cluster for N seconds, first
 * with all peers up, then with one follower stopped. Each phase runs in a fresh child
 * process so neither inherits the other's heap.
 */
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { performance } from 'node:perf_hooks';
import { trackChild } from './cleanup.js';
import { drive, progress, progressDone } from './driver.js';
import { RaftCluster } from './raft-target.js';

export type RssPhase = 'all-up' | 'follower-down';

export interface RssSample {
  t: number;
  rssMiB: number;
  /** Linux: anonymous (heaps, the in-memory logs) and file-backed (LMDB maps, code) parts of rss. */
  anonMiB: number | null;
  fileMiB: number | null;
  heapUsedMiB: number;
  opsPerSec: number;
  lastIndex: number | null;
}

export interface RssResult {
  phase: RssPhase;
  seconds: number;
  inFlight: number;
  valueBytes: number;
  processStartMiB: number;
  startMiB: number;
  startAnonMiB: number | null;
  endMiB: number;
  endAnonMiB: number | null;
  endFileMiB: number | null;
  maxMiB: number;
  ops: number;
  opsPerSec: number;
  stoppedFollower: string | null;
  samples: RssSample[];
}

const MiB = 2 ** 20;
const RESULT_TAG = '@rss-result ';
const IN_FLIGHT = 256;

const rssMiB = () => process.memoryUsage().rss / MiB;

/** RssAnon and RssFile from /proc/self/status (null where there is no /proc). */
function rssParts(): { anonMiB: number | null; fileMiB: number | null } {
  try {
    const status = fs.readFileSync('/proc/self/status', 'utf8');
    const kb = (name: string) => {
      const m = new RegExp(`^${name}:\\s+(\\d+) kB`, 'm').exec(status);
      return m ? Number(m[1]) / 1024 : null;
    };
    return { anonMiB: kb('RssAnon'), fileMiB: kb('RssFile') };
  } catch {
    return { anonMiB: null, fileMiB: null };
  }
}

const mib = (v: number | null) => (v === null ? '?' : v.toFixed(1));

/** One phase, in this process (the child). Prints per-second lines and a tagged JSON result. */
export async function runRssPhase(phase: RssPhase, seconds: number, valueBytes: number): Promise<void> {
  const processStartMiB = rssMiB();
  const cluster = await RaftCluster.start(3, phase === 'all-up' ? 'rssup' : 'rssdown');
  try {
    const stoppedFollower = phase === 'follower-down' ? await cluster.stopFollower() : null;
    const startMiB = rssMiB();
    const startParts = rssParts();
    let maxMiB = startMiB;
    const sampler = setInterval(() => (maxMiB = Math.max(maxMiB, rssMiB())), 100);
    const samples: RssSample[] = [];
    const value = new Uint8Array(valueBytes).fill(7);
    progress(`  [${phase}] start: rss ${startMiB.toFixed(1)} MiB (process start ${processStartMiB.toFixed(1)} MiB)${stoppedFollower ? `, follower ${stoppedFollower} stopped` : ''}`);
    if (process.stdout.isTTY) process.stdout.write('\n');
    const t0 = performance.now();
    const lastIndex = async () => {
      try {
        return (await cluster.status()).lastIndex;
      } catch {
        return null;
      }
    };
    const result = await drive({
      label: phase,
      inFlight: IN_FLIGHT,
      warmupMs: 0,
      durationMs: seconds * 1000,
      issue: (c) => cluster.set(`rss:${c}`, value),
      tick: ({ opsPerSec }) => {
        const mem = process.memoryUsage();
        const s: RssSample = {
          t: Math.round((performance.now() - t0) / 100) / 10,
          rssMiB: mem.rss / MiB,
          ...rssParts(),
          heapUsedMiB: mem.heapUsed / MiB,
          opsPerSec,
          lastIndex: null,
        };
        maxMiB = Math.max(maxMiB, s.rssMiB);
        samples.push(s);
        void lastIndex().then((i) => (s.lastIndex = i));
        console.log(
          `  [${phase}] t=${s.t.toFixed(0).padStart(3)}s  rss ${s.rssMiB.toFixed(1).padStart(7)} MiB (anon ${mib(s.anonMiB).padStart(6)}, file ${mib(s.fileMiB).padStart(6)})  main heap ${s.heapUsedMiB.toFixed(1).padStart(6)} MiB  ${Math.round(opsPerSec).toString().padStart(6)} ops/s`,
        );
      },
    });
    clearInterval(sampler);
    progressDone();
    const endMiB = rssMiB();
    const endParts = rssParts();
    maxMiB = Math.max(maxMiB, endMiB);
    const out: RssResult = {
      phase,
      seconds,
      inFlight: IN_FLIGHT,
      valueBytes,
      processStartMiB,
      startMiB,
      startAnonMiB: startParts.anonMiB,
      endMiB,
      endAnonMiB: endParts.anonMiB,
      endFileMiB: endParts.fileMiB,
      maxMiB,
      ops: result.ops,
      opsPerSec: result.opsPerSec,
      stoppedFollower,
      samples,
    };
    console.log(`  [${phase}] end: rss ${endMiB.toFixed(1)} MiB (anon ${mib(endParts.anonMiB)}, file ${mib(endParts.fileMiB)}), max ${maxMiB.toFixed(1)} MiB, ${result.ops} ops (${Math.round(result.opsPerSec)} ops/s), leader log at index ${(await lastIndex()) ?? '?'}`);
    console.log(`${RESULT_TAG}${JSON.stringify(out)}`);
  } finally {
    await cluster.stop();
  }
}

/** Both phases, each in a child process running this same script with `--rss-phase`. */
export async function runRss(seconds: number, valueBytes: number): Promise<RssResult[]> {
  const results: RssResult[] = [];
  for (const phase of ['all-up', 'follower-down'] as const) {
    console.log(`\n--rss ${phase}: 3 durable peers, kv set, ${IN_FLIGHT} in flight, ${valueBytes} B values, ${seconds}s${phase === 'follower-down' ? ', one follower stopped (stopNode) before the load' : ''}`);
    const child = spawn(process.execPath, [process.argv[1]!, '--rss-phase', phase, '--rss', String(seconds), '--values', String(valueBytes)], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    trackChild(child);
    let buffered = '';
    let result: RssResult | null = null;
    child.stdout.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        if (line.startsWith(RESULT_TAG)) result = JSON.parse(line.slice(RESULT_TAG.length)) as RssResult;
        else process.stdout.write(`${line}\n`);
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
    if (code !== 0 || !result) throw new Error(`the --rss ${phase} child exited ${code} without a result`);
    results.push(result);
  }
  return results;
}
