/**
 * Backups (issue 15, item 5): `actor-raft snapshot save` takes the leader's applied state over
 * `GET /admin/snapshot` while a client writes, `actor-raft snapshot restore` seeds each member
 * of a new three-node cluster (new ids, new ports, new data directories) from the file, and the
 * new cluster, started without bootstrapping, serves every key. Corrupt files and a non-empty
 * data directory are refused with a message. The CLI runs as child processes (execFile); the
 * nodes run in this process with TCP between the new cluster's members and HTTP for clients.
 */
import { expect } from 'chai';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { op, read, startNode, status } from '../src/api/index.js';
import { BackupFileError, decodeBackup, encodeBackup } from '../src/backup.js';
import { startHttpServer, type HttpServer } from '../src/http/server.js';
import { realCluster, startLoad, TEST_TIMING, waitForAcks, waitForLeader, type KeyHistory } from './helpers/cluster.js';
import { freePorts } from './helpers/net.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');

/** Runs the CLI as a child process without blocking the event loop (the nodes run here). */
function cli(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 60_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, out: stdout.trim(), err: stderr.trim() });
    });
  });
}

describe('backups: the file format', () => {
  const snapshot = {
    meta: { index: 42, term: 3, peers: ['a', 'b'], old: null, digest: 12345, size: 5, addresses: { a: { peer: '127.0.0.1:1' } } },
    data: new Uint8Array([1, 2, 3, 4, 5]),
  };

  it('round-trips a snapshot with its metadata', () => {
    const file = encodeBackup(snapshot, 'a', new Date('2026-01-02T03:04:05Z'));
    expect(file.subarray(0, 7).toString('ascii')).to.equal('ARSNAP1');
    const { header, snapshot: back } = decodeBackup(file);
    expect(header).to.deep.include({ node: 'a', created: '2026-01-02T03:04:05.000Z', index: 42, term: 3, digest: 12345, size: 5 });
    expect(back.meta).to.deep.equal(snapshot.meta);
    expect([...back.data]).to.deep.equal([1, 2, 3, 4, 5]);
  });

  it('refuses a file cut anywhere, any flipped byte, and a file with bytes appended', () => {
    const file = encodeBackup(snapshot, 'a');
    for (let cut = 0; cut < file.length; cut++) expect(() => decodeBackup(file.subarray(0, cut)), `cut at ${cut}`).to.throw(BackupFileError);
    for (let i = 0; i < file.length; i++) {
      const bad = Buffer.from(file);
      bad[i] ^= 0x10;
      expect(() => decodeBackup(bad), `byte ${i} flipped`).to.throw(BackupFileError);
    }
    expect(() => decodeBackup(Buffer.concat([file, Buffer.from([0])]))).to.throw(BackupFileError);
  });
});

describe('backups: save under load, restore into a new 3-node cluster', function () {
  this.timeout(240_000);
  const fixture = realCluster();
  const servers: HttpServer[] = [];
  afterEach(async () => {
    await Promise.all(servers.splice(0).map((s) => s.close()));
  });

  /** HTTP servers for `nodes`, each knowing the others' addresses (for redirects to the leader). */
  async function serve(nodes: string[]): Promise<Record<string, string>> {
    const ports = await freePorts(nodes.length);
    const peerHttp = Object.fromEntries(nodes.map((id, i) => [id, `http://127.0.0.1:${ports[i]}`]));
    for (const node of nodes) servers.push(await startHttpServer({ node, listen: peerHttp[node]!.replace('http://', ''), peerHttp }));
    return peerHttp;
  }

  it('a node that has applied nothing has no snapshot to give (409); a bad local= is a bad request (400)', async () => {
    await fixture.startPeers(['b1']);
    const url = (await serve(['b1'])).b1!;
    const blank = await fetch(`${url}/admin/snapshot?local=1`);
    expect(blank.status).to.equal(409);
    expect(await blank.json()).to.deep.include({ code: 'SNAPSHOT_UNAVAILABLE', error: 'b1 has applied nothing yet' });
    expect((await fetch(`${url}/admin/snapshot?local=maybe`)).status).to.equal(400);
    const saved = await cli(['snapshot', 'save', path.join(fixture.root, 'none.arsnap'), '--node-endpoint', url]);
    expect(saved.code).to.equal(1);
    expect(saved.err).to.match(/SNAPSHOT_UNAVAILABLE b1 has applied nothing yet/);
    expect(fs.existsSync(path.join(fixture.root, 'none.arsnap'))).to.equal(false);
  });

  it('every key written before the save reads back on every new member; corrupt files and a used directory are refused', async () => {
    // The old cluster compacts its log often, so the backup follows a snapshot and log entries.
    const old = ['n1', 'n2', 'n3'];
    const { leader } = await fixture.startCluster(old, { snapshotThreshold: 64 });
    const follower = old.find((id) => id !== leader)!;
    const urls = await serve(old);
    const leaderUrl = urls[leader]!;
    const followerUrl = urls[follower]!;
    const KEYS = 300;
    for (let i = 0; i < KEYS; i += 50) {
      await Promise.all(Array.from({ length: 50 }, (_, j) => op(leader, { type: 'set', key: `key-${i + j}`, value: i + j })));
    }

    const file = path.join(fixture.root, 'backup.arsnap');
    const load = startLoad(() => old[Math.floor(Math.random() * old.length)]!, ['load-a', 'load-b', 'load-c']);
    // One more writer whose acknowledgements this test sees as they come: what it had
    // acknowledged when the save was asked for must be in the backup.
    let counterAcked = -1;
    let writing = true;
    const counter = (async () => {
      for (let n = 0; writing; n++) {
        await op(leader, { type: 'set', key: 'counter', value: n });
        counterAcked = n;
      }
    })();
    let ackedAtSave = -1;
    let histories: Map<string, KeyHistory>;
    try {
      await waitForAcks(load, 20);
      ackedAtSave = counterAcked;
      // Through a follower's endpoint: it redirects to the leader.
      const saved = await cli(['snapshot', 'save', file, '--endpoints', followerUrl, '-o', 'json']);
      expect(saved.code, saved.err).to.equal(0);
      const savedInfo = JSON.parse(saved.out) as { node: string; index: number; peers: string[] };
      expect(savedInfo.node).to.equal(leader);
      expect(savedInfo.peers).to.deep.equal(old);
      await waitForAcks(load, 20);
    } finally {
      writing = false;
      await counter;
      const result = await load.stop();
      expect(result.anomalies).to.deep.equal([]);
      histories = result.keys;
    }
    expect(ackedAtSave).to.be.at.least(0);

    // A chosen node's own state, whatever its role.
    const followerFile = path.join(fixture.root, 'follower.arsnap');
    const own = await cli(['snapshot', 'save', followerFile, '--endpoints', leaderUrl, '--node-endpoint', followerUrl, '-o', 'json']);
    expect(own.code, own.err).to.equal(0);
    expect((JSON.parse(own.out) as { node: string }).node).to.equal(follower);

    // Refused: a truncated file, a flipped byte, and (below) a directory in use.
    const bytes = fs.readFileSync(file);
    const truncated = path.join(fixture.root, 'truncated.arsnap');
    fs.writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const flipped = path.join(fixture.root, 'flipped.arsnap');
    const bad = Buffer.from(bytes);
    bad[Math.floor(bad.length * 0.75)] ^= 0x01;
    fs.writeFileSync(flipped, bad);

    const fresh = ['m1', 'm2', 'm3'];
    const ports = await freePorts(2 * fresh.length);
    const peerOf = Object.fromEntries(fresh.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
    const httpOf = Object.fromEntries(fresh.map((id, i) => [id, `127.0.0.1:${ports[fresh.length + i]}`]));
    const peersFlag = fresh.map((id) => `${id}=${peerOf[id]}`).join(',');
    const httpFlag = fresh.map((id) => `${id}=${httpOf[id]}`).join(',');
    const dirOf = (id: string) => path.join(fixture.root, 'restored', id);

    const cut = await cli(['snapshot', 'restore', truncated, '--data', dirOf('m1'), '--id', 'm1', '--peers', peersFlag]);
    expect(cut.code).to.equal(1);
    expect(cut.err).to.match(/refused: .*truncated/);
    const flip = await cli(['snapshot', 'restore', flipped, '--data', dirOf('m1'), '--id', 'm1', '--peers', peersFlag]);
    expect(flip.code).to.equal(1);
    expect(flip.err).to.match(/refused: the checksum does not match/);
    expect(fs.existsSync(dirOf('m1')), 'nothing written for a refused file').to.equal(false);
    const stranger = await cli(['snapshot', 'restore', file, '--data', dirOf('m1'), '--id', 'x9', '--peers', peersFlag]);
    expect(stranger.code).to.equal(1);
    expect(stranger.err).to.match(/x9 is not one of the peers/);

    for (const id of fresh) {
      const restored = await cli(['snapshot', 'restore', file, '--data', dirOf(id), '--id', id, '--peers', peersFlag, '--http-peers', httpFlag, '-o', 'json']);
      expect(restored.code, restored.err).to.equal(0);
      expect((JSON.parse(restored.out) as { peers: string[] }).peers).to.deep.equal(fresh);
    }
    const used = await cli(['snapshot', 'restore', file, '--data', dirOf('m1'), '--id', 'm1', '--peers', peersFlag]);
    expect(used.code).to.equal(1);
    expect(used.err).to.match(/not empty/);

    // The new cluster starts without bootstrapping: its members share the restored configuration.
    for (const id of fresh) {
      const contacts = Object.fromEntries(fresh.filter((p) => p !== id).map((p) => [p, peerOf[p]!]));
      await startNode(id, { stateMachine: 'kv', dataDir: dirOf(id), ...TEST_TIMING, network: { listen: peerOf[id]!, peers: contacts, clusterId: 'backup-restored' } });
    }
    const elected = await waitForLeader(fresh);
    for (const s of elected.statuses) {
      expect(s.peers).to.deep.equal(fresh);
      for (const id of fresh) expect(s.addresses[id]).to.deep.equal({ peer: peerOf[id], http: `http://${httpOf[id]}` });
    }
    for (const id of fresh) {
      for (let i = 0; i < KEYS; i++) expect(await read(id, { type: 'get', key: `key-${i}` }), `key-${i} at ${id}`).to.equal(i);
      expect(await read(id, { type: 'get', key: 'counter' }), `counter at ${id}`).to.be.at.least(ackedAtSave);
      // Each load key holds a value its writer wrote (the backup was taken while it wrote).
      for (const [key, h] of histories) {
        const value = (await read(id, { type: 'get', key })) as number | null;
        expect(value === null || (typeof value === 'number' && value <= h.lastAttempted), `${key} at ${id}: ${String(value)}`).to.equal(true);
      }
    }
    // And it takes new writes.
    await op(elected.leader, { type: 'set', key: 'after-restore', value: 'yes' });
    for (const id of fresh) expect(await read(id, { type: 'get', key: 'after-restore' })).to.equal('yes');
    expect((await status(elected.leader)).lastApplied).to.be.greaterThan(decodeBackup(bytes).header.index);
  });
});
