/**
 * `npm start`: a 3-peer kv cluster on the embedded LMDB default (./data/<id>), with visible
 * progress: elections, a few ops, a short write load, then a clean stop. Run it again and
 * the cluster resumes from disk (the run counter goes up).
 */
import { events, op, setConfig, startNode, status, stopNode } from './api/index.js';

const PEERS = ['n1', 'n2', 'n3'];
const LOAD_SECONDS = Number(process.env.DEMO_SECONDS ?? 5);
const IN_FLIGHT = 64;

function log(line: string): void {
  console.log(`${new Date().toISOString().slice(11, 23)}  ${line}`);
}

async function main(): Promise<void> {
  events.on('role', (n) => {
    if (n.role !== 'follower' || n.leader) log(`${n.id}: ${n.role} in term ${n.term}${n.leader ? `, leader ${n.leader}` : ''}`);
  });
  events.on('restart', (n) => log(`${n.id}: restarted (${n.reason})`));

  log(`starting peers ${PEERS.join(', ')} (data under ./data)`);
  await Promise.all(PEERS.map((id) => startNode(id, { stateMachine: 'kv' })));
  // The first run bootstraps the cluster; later runs find the configuration on disk.
  await setConfig('n1', PEERS);

  const runs = ((await op('n1', { type: 'get', key: 'demo:runs' })) as number | null) ?? 0;
  await op('n2', { type: 'set', key: 'demo:runs', value: runs + 1 });
  log(`run #${runs + 1} of this cluster (kv 'demo:runs' survives restarts)`);

  log(`set greeting → ${JSON.stringify(await op('n3', { type: 'set', key: 'greeting', value: 'hello, raft' }))}`);
  log(`get greeting → ${JSON.stringify(await op('n1', { type: 'get', key: 'greeting' }))}`);
  log(`cas greeting → ${JSON.stringify(await op('n2', { type: 'cas', key: 'greeting', expected: 'hello, raft', value: 'hi' }))}`);
  log(`delete greeting → ${JSON.stringify(await op('n2', { type: 'delete', key: 'greeting' }))}`);

  log(`writing for ${LOAD_SECONDS}s with ${IN_FLIGHT} ops in flight (durable on every peer)...`);
  let done = 0;
  const end = Date.now() + LOAD_SECONDS * 1000;
  let lastDone = 0;
  const progress = setInterval(() => {
    log(`  ${done} ops committed (${done - lastDone} ops/s)`);
    lastDone = done;
  }, 1000);
  await Promise.all(
    Array.from({ length: IN_FLIGHT }, async (_, w) => {
      for (let i = 0; Date.now() < end; i++) {
        await op('n1', { type: 'set', key: `load:${w}`, value: i });
        done++;
      }
    }),
  );
  clearInterval(progress);
  log(`${done} ops in ${LOAD_SECONDS}s: ${Math.round(done / LOAD_SECONDS)} ops/s`);

  for (const id of PEERS) {
    const s = await status(id);
    log(`${id}: ${s.role}, term ${s.term}, commit ${s.commitIndex}, applied ${s.lastApplied}, snapshot at ${s.snapshotIndex} (log: ${s.lastIndex - s.snapshotIndex} entries)`);
  }
  await Promise.all(PEERS.map((id) => stopNode(id)));
  log('stopped; the data stays in ./data (delete it to start afresh)');
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
