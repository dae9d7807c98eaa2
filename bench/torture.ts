/**
 * `npm run torture -- [--seconds 60] [--seed S] [--round 30] [--lease] [--membership] [--exactly-once]`
 * (`--help` for the options): Jepsen-style rounds (5 peers, concurrent clients, seeded
 * nemesis) back to back for `--seconds`, each round checked for linearizability and for every
 * peer applying the same log.
 * Round i uses seed S + i; odd rounds serve gets by lease reads (thesis §6.4.1), every round
 * with `--lease`. Every third round (i = 2, 5, 8, ...) is a membership round: 3 voters of 5
 * peers at first, setConfig and transferLeadership among the faults, snapshots every 200
 * entries, and only the final voters checked for convergence; every round with `--membership`.
 * Rounds i = 1, 2 (mod 4) (1, 2, 5, 6, 9, ...) run exactly-once writes (client sessions, thesis
 * §6.3): the counting kv, an opId on every write, short tries retried through the faults, and
 * a check that no write was applied twice and every acknowledged one exactly once; every round
 * with `--exactly-once`.
 * A failure prints the seed and the nemesis schedule that reproduce it and exits 1. On
 * SIGINT/SIGTERM the round's temporary data directory is removed (`cleanup.ts`) and the
 * process exits 130/143.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runningNodes, stopNode } from '../src/api/index.js';
import { runJepsen } from '../src/testing/jepsen.js';
import { KvChecker } from '../src/testing/linearizability.js';
import { parseTortureArgs, TORTURE_USAGE } from './args.js';
import { onInterrupt, removeDir, trackDir } from './cleanup.js';

async function main(): Promise<void> {
  const args = parseTortureArgs(process.argv.slice(2));
  if (args.help) {
    console.log(TORTURE_USAGE);
    return;
  }
  const { seconds, seed, round } = args;
  console.log(`torture: ${seconds}s of Jepsen-style rounds of ${round}s, seeds from ${seed}`);
  const checker = new KvChecker();
  const forgetChecker = onInterrupt(() => checker.close());
  // The round's peers stop (closing LMDB) before their data directory is removed.
  onInterrupt(() => Promise.all(runningNodes().map((id) => stopNode(id).catch(() => undefined))).then(() => undefined));
  const end = Date.now() + seconds * 1000;
  let histories = 0;
  let ops = 0;
  let acknowledged = 0;
  let retries = 0;
  let doubles = 0;
  let failed = false;
  try {
    for (let i = 0; Date.now() < end; i++) {
      const roundSeconds = Math.max(3, Math.min(round, (end - Date.now()) / 1000));
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'actor-raft-torture-'));
      trackDir(dataDir); // removed on SIGINT/SIGTERM too
      try {
        const leaseReads = args.lease || i % 2 === 1;
        const membership = args.membership || i % 3 === 2;
        const exactlyOnce = args.exactlyOnce || i % 4 === 1 || i % 4 === 2;
        const modes = [leaseReads ? 'lease reads' : '', membership ? 'membership changes' : '', exactlyOnce ? 'exactly-once writes' : ''].filter(
          (m) => m !== '',
        );
        if (modes.length > 0) console.log(`round ${i}: ${modes.join(', ')}`);
        const result = await runJepsen({
          seed: seed + i,
          seconds: roundSeconds,
          dataDir,
          checker,
          leaseReads,
          membership,
          exactlyOnce,
          log: (l) => console.log(l),
        });
        histories++;
        ops += result.ops;
        acknowledged += result.acknowledged;
        retries += result.exactlyOnce?.retries ?? 0;
        doubles += result.exactlyOnce?.doubleApplied ?? 0;
        console.log(result.report);
        if (!result.ok) {
          failed = true;
          break;
        }
      } finally {
        removeDir(dataDir);
      }
    }
  } finally {
    forgetChecker();
    await checker.close();
  }
  console.log(
    `\ntorture ${failed ? 'FAILED' : 'passed'}: ${histories} histories checked, ${ops} ops recorded (${acknowledged} acknowledged); ` +
      `exactly-once rounds: ${retries} tries retried, ${doubles} writes applied twice`,
  );
  if (failed) process.exitCode = 1;
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
