/**
 * Seed hunting outside mocha: run many seeded simulations and print each failure's first
 * lines (SEED=…), then a one-line total. Not a test; run after `npx tsc -p .`:
 *
 *   P=5 FROM=0 N=20000 node dist/test/sim/hunt.js       # 20 000 seeds of 5 peers
 *   P=3 FROM=17 N=1 LINES=200 node dist/test/sim/hunt.js # one seed, the whole report
 *
 * Env: P peers (3), FROM first seed (0), N seeds (100), CHAOS virtual ms (3000),
 * LINES lines of each failure report (3), TRACE events in the report (60), V=1 prints
 * every run's summary.
 */
import { runRandomized } from './random-run.js';

const num = (name: string, dflt: number): number => (process.env[name] ? Number(process.env[name]) : dflt);
const peers = num('P', 3);
const from = num('FROM', 0);
const count = num('N', 100);
const chaosMs = num('CHAOS', 3000);
const lines = num('LINES', 3);
const traceLines = num('TRACE', 60);

const t0 = Date.now();
let failures = 0;
let events = 0;
for (let seed = from; seed < from + count; seed++) {
  try {
    const s = runRandomized({ seed, peers, chaosMs, traceLines });
    events += s.events;
    if (process.env.V) console.log(JSON.stringify(s));
  } catch (err) {
    failures++;
    console.log((err as Error).message.split('\n').slice(0, lines).join('\n'));
  }
}
console.log(`peers=${peers} seeds=${from}..${from + count - 1} failures=${failures} events=${events} wall=${Date.now() - t0}ms`);
