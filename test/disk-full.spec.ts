/**
 * A full disk is an alarm, not a crash loop (etcd's NOSPACE alarm): real peers whose data
 * directories sit on a small tmpfs that fills up, then is grown with `mount -o remount`.
 * Mounting needs root; without it the suite skips, saying why.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { nemesis, op, query, read, setConfig, status, transferLeadership } from '../src/api/index.js';
import { isRaftError, NoSpaceError } from '../src/errors.js';
import { startHttpServer, type HttpServer } from '../src/http/server.js';
import { request } from './helpers/http-client.js';
import { startPeer, startPeers, stopAll, tempDir, waitFor, waitForLeader } from './helpers/cluster.js';

const VALUE = 'x'.repeat(4096);

function tryMount(dir: string, size: string): string | null {
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'pipe' });
    return null;
  } catch (err) {
    return (err as { stderr?: Buffer }).stderr?.toString().trim() || String(err);
  }
}

function grow(dir: string, size: string): void {
  execFileSync('mount', ['-o', `remount,size=${size}`, dir], { stdio: 'pipe' });
}

function unmount(dir: string): void {
  try {
    execFileSync('umount', [dir], { stdio: 'pipe' });
  } catch {
    // not mounted (the mount failed, or was already undone)
  }
}

/**
 * Write distinct keys through `via` until the peer refuses one with NoSpaceError. Returns the
 * keys acknowledged and those whose outcome is unknown (a try that was held when the disk filled).
 */
async function fillDisk(via: string, prefix: string): Promise<{ acked: string[]; unknown: string[]; refused: NoSpaceError }> {
  const acked: string[] = [];
  const unknown: string[] = [];
  for (let i = 0; i < 20_000; i++) {
    const key = `${prefix}${i}`;
    try {
      await op(via, { type: 'set', key, value: VALUE }, { timeoutMs: 3000 });
      acked.push(key);
    } catch (err) {
      if (err instanceof NoSpaceError) {
        if (err.outcome === 'unknown') unknown.push(key);
        return { acked, unknown, refused: err };
      }
      if (!isRaftError(err) || err.outcome !== 'unknown') throw err;
      unknown.push(key);
    }
  }
  throw new Error('the disk never filled');
}

describe('disk full: the nospace alarm', function () {
  let root: string | null = null;
  let mounted: string[] = [];
  let server: HttpServer | null = null;

  before(function () {
    const probe = tempDir('actor-raft-disk-probe-');
    const why = tryMount(probe, '1m');
    unmount(probe);
    fs.rmSync(probe, { recursive: true, force: true });
    if (why !== null) {
      console.log(`      skipped: cannot mount a tmpfs here (${why}); these tests need root`);
      this.skip();
    }
  });

  beforeEach(() => {
    root = tempDir('actor-raft-disk-');
    mounted = [];
  });

  afterEach(async () => {
    await server?.close();
    server = null;
    await stopAll();
    for (const dir of mounted) unmount(dir);
    if (root !== null) fs.rmSync(root, { recursive: true, force: true });
    root = null;
  });

  /** A fresh tmpfs of `size` at ROOT/name, holding peer `id`'s data (ROOT/name/id). */
  function smallDisk(name: string, size: string): string {
    const dir = path.join(root!, name);
    fs.mkdirSync(dir);
    const why = tryMount(dir, size);
    if (why !== null) throw new Error(`mount failed: ${why}`);
    mounted.push(dir);
    return dir;
  }

  it('one node: raises the alarm, refuses writes with NoSpaceError, serves reads, and resumes once the disk grows', async () => {
    const disk = smallDisk('n1-disk', '6m');
    await startPeer('n1', disk);
    await setConfig('n1', ['n1']);
    await waitForLeader(['n1']);

    const { acked, unknown, refused } = await fillDisk('n1', 'k');
    expect(acked.length).to.be.greaterThan(0);
    expect(refused.code).to.equal('NO_SPACE');

    const st = await status('n1');
    expect(st.alarm?.kind).to.equal('nospace');
    expect(st.alarm?.message).to.match(/^disk full at .*n1: \d+ bytes free$/);
    // A refused write, not a crash loop: the log actor was never restarted.
    expect(st.restarts).to.deep.equal({ log: 0, consensus: 0 });
    const refusedNow = await op('n1', { type: 'set', key: 'late', value: 1 }, { timeoutMs: 3000 }).then(
      () => null,
      (err: unknown) => err,
    );
    expect(refusedNow).to.be.instanceOf(NoSpaceError);
    expect((refusedNow as NoSpaceError).outcome).to.equal('not-applied');
    // Reads are still served from what was applied.
    expect(await read('n1', { type: 'get', key: acked[0] })).to.equal(VALUE);
    // Over HTTP: 507 for a write, the alarm in /status, /ready and the metrics, reads served.
    server = await startHttpServer({ node: 'n1', listen: '127.0.0.1:0' });
    const at = server.address();
    const put = await request(at, 'PUT', '/kv/over-http', { body: '1' });
    expect(put.status).to.equal(507);
    expect(put.json()).to.include({ code: 'NO_SPACE', outcome: 'not-applied' });
    expect((await request(at, 'GET', `/kv/${acked[0]}`)).status).to.equal(200);
    expect((await request(at, 'GET', '/status')).json().alarm).to.include({ kind: 'nospace' });
    const ready = await request(at, 'GET', '/ready');
    expect(ready.status).to.equal(503);
    expect(ready.json().failing).to.deep.equal(['space']);
    expect((await request(at, 'GET', '/metrics')).text).to.include('raft_alarm{node="n1",kind="nospace"} 1');
    expect(await read('n1', { type: 'get', key: acked[acked.length - 1] })).to.equal(VALUE);

    // A consensus actor restarted meanwhile recovers from what is durable (the held writes were
    // never acknowledged and are dropped); writes raise the alarm again once the disk is full.
    await nemesis.crash('n1', 'consensus');
    await waitFor('the consensus actor back', async () => ((await status('n1').catch(() => undefined))?.restarts.consensus === 1 ? true : undefined));
    await waitForLeader(['n1']);
    const more = await fillDisk('n1', 'r');
    acked.push(...more.acked);
    unknown.push(...more.unknown);
    expect((await status('n1')).alarm?.kind).to.equal('nospace');
    expect((await status('n1')).restarts.log).to.equal(0);

    grow(disk, '64m');
    await waitFor('the alarm to clear', async () => ((await status('n1')).alarm === null ? true : undefined));
    await op('n1', { type: 'set', key: 'after', value: 'grown' });
    expect(await read('n1', { type: 'get', key: 'after' })).to.equal('grown');
    for (const key of acked) expect(await read('n1', { type: 'get', key }), key).to.equal(VALUE);
    expect((await request(at, 'GET', '/ready')).status).to.equal(200);
    expect((await request(at, 'GET', '/metrics')).text).to.include('raft_alarm{node="n1",kind="nospace"} 0');
    // A write held while the disk was full is either applied whole or not at all.
    for (const key of unknown) expect([null, VALUE]).to.include(await read('n1', { type: 'get', key }));
    expect((await status('n1')).restarts).to.deep.equal({ log: 0, consensus: 1 });
  });

  it('one of three full: the other two keep committing, and the full one catches up once its disk grows', async () => {
    const disk = smallDisk('n3-disk', '6m');
    await startPeers(['n1', 'n2'], root!);
    await startPeer('n3', disk);
    await setConfig('n1', ['n1', 'n2', 'n3']);
    let { leader } = await waitForLeader(['n1', 'n2', 'n3']);
    if (leader === 'n3') leader = await transferLeadership('n3', 'n1');

    // Write until n3's disk is full: its alarm rises while the leader goes on committing with n2.
    const acked: string[] = [];
    for (let i = 0; (await status('n3')).alarm === null; i++) {
      if (i >= 20_000) throw new Error('the disk of n3 never filled');
      const key = `a${i}`;
      await op(leader, { type: 'set', key, value: VALUE });
      acked.push(key);
    }
    expect((await status('n3')).alarm?.message).to.match(/^disk full at .*n3: \d+ bytes free$/);
    for (let i = 0; i < 50; i++) {
      await op(leader, { type: 'set', key: `b${i}`, value: i });
      acked.push(`b${i}`);
    }
    expect(await read(leader, { type: 'get', key: 'b49' })).to.equal(49);
    const n3 = await status('n3');
    expect(n3.alarm?.kind).to.equal('nospace');
    expect(n3.restarts).to.deep.equal({ log: 0, consensus: 0 });

    grow(disk, '64m');
    await waitFor('n3 to clear its alarm', async () => ((await status('n3')).alarm === null ? true : undefined), 30_000);
    const target = (await status(leader)).commitIndex;
    await waitFor('n3 to catch up', async () => ((await status('n3')).lastApplied >= target ? true : undefined), 30_000);
    for (const key of acked) {
      expect(await query('n3', { type: 'get', key }), key).to.equal(key.startsWith('b') ? Number(key.slice(1)) : VALUE);
    }
    expect((await status('n3')).restarts).to.deep.equal({ log: 0, consensus: 0 });
  });
});
