/**
 * Three OS processes on loopback, each one `actor-raft node` (its own supervised
 * peer, TCP between peers, HTTP for clients), driven through the CLI's client commands.
 * `kill -9` of the leader's process, restart, and a stop and restart of everything.
 */
import { expect } from 'chai';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir, waitFor } from './helpers/cluster.js';

const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      server.close(() => resolve(port));
    });
  });
}

/** Runs the CLI as a child process without blocking the event loop. */
function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000 }, (error, stdout, stderr) => {
      const code = error === null ? 0 : typeof error.code === 'number' ? error.code : -1;
      resolve({ code, out: stdout.trim(), err: stderr.trim() });
    });
  });
}

interface NodeProc {
  id: string;
  raft: string;
  http: string;
  proc: ChildProcess | null;
  output: string[];
}

describe('networked nodes: three processes through the CLI (loopback)', function () {
  this.timeout(240_000); // some 80 CLI processes, each a Node start: slow on a loaded machine
  let root: string;
  let nodes: NodeProc[] = [];

  beforeEach(async () => {
    root = tempDir('actor-raft-cli-');
    nodes = [];
    for (const id of ['n1', 'n2', 'n3']) {
      nodes.push({ id, raft: `127.0.0.1:${await freePort()}`, http: `127.0.0.1:${await freePort()}`, proc: null, output: [] });
    }
  });

  afterEach(async () => {
    await Promise.all(nodes.map((n) => stopProc(n, 'SIGKILL')));
    fs.rmSync(root, { recursive: true, force: true });
  });

  function start(n: NodeProc, extra: string[] = []): void {
    const peers = nodes.map((p) => `${p.id}=${p.raft}`).join(',');
    const httpPeers = nodes.map((p) => `${p.id}=${p.http}`).join(',');
    const args = [CLI, 'node', '--id', n.id, '--listen', n.raft, '--peers', peers, '--data', path.join(root, n.id)];
    args.push('--http', n.http, '--http-peers', httpPeers, '--cluster-id', 'cli-test', '--log', 'json', ...extra);
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    const keep = (chunk: Buffer) => n.output.push(...chunk.toString().split('\n').filter((l) => l !== ''));
    proc.stdout!.on('data', keep);
    proc.stderr!.on('data', keep);
    n.proc = proc;
  }

  async function stopProc(n: NodeProc, signal: NodeJS.Signals): Promise<void> {
    const proc = n.proc;
    n.proc = null;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
    proc.kill(signal);
    await exited;
  }

  const endpoints = () => nodes.map((n) => `http://${n.http}`).join(',');

  // The CLI runs asynchronously: a spawnSync would block this test's event loop for seconds,
  // and a pooled keep-alive connection (from the status polling) closed by the server in that
  // time would make the next fetch fail with "other side closed".
  const cli = (...args: string[]) => run([...args, '--endpoints', endpoints()]);

  async function statusOf(n: NodeProc): Promise<{ role: string; term: number; leader: string | null; lastApplied: number } | undefined> {
    try {
      const res = await fetch(`http://${n.http}/status`, { signal: AbortSignal.timeout(2000) });
      return res.ok ? ((await res.json()) as { role: string; term: number; leader: string | null; lastApplied: number }) : undefined;
    } catch {
      return undefined;
    }
  }

  async function leaderAmong(live: NodeProc[]): Promise<NodeProc> {
    return waitFor(`a leader among ${live.map((n) => n.id).join(',')}`, async () => {
      const statuses = await Promise.all(live.map(statusOf));
      const leaders = statuses.filter((s) => s?.role === 'leader');
      if (leaders.length !== 1) return undefined;
      return live[statuses.indexOf(leaders[0])];
    }, 30_000);
  }

  async function put(key: string, value: string): Promise<void> {
    const r = await cli('put', key, value);
    expect(r.code, `put ${key}: ${r.err}\n${nodes.flatMap((n) => n.output.slice(-5)).join('\n')}`).to.equal(0);
  }

  async function get(key: string): Promise<string> {
    const r = await cli('get', key);
    expect(r.code, `get ${key}: ${r.err}`).to.equal(0);
    return r.out;
  }

  it('form a cluster, survive kill -9 of the leader, catch the killed node up, and restart with their data', async () => {
    start(nodes[0]!, ['--bootstrap']);
    start(nodes[1]!);
    start(nodes[2]!);
    const first = await leaderAmong(nodes);
    for (let i = 0; i < 20; i++) await put(`k${i}`, `v${i}`);
    // A follower answers a write with 307 to the leader's HTTP address (its leader is in
    // another process); clients that follow redirects repeat it there.
    const follower = nodes.find((n) => n !== first)!;
    const redirect = await fetch(`http://${follower.http}/kv/r`, { method: 'PUT', body: 'x', redirect: 'manual' });
    expect(redirect.status).to.equal(307);
    expect(redirect.headers.get('location')).to.equal(`http://${first.http}/kv/r`);
    const followed = await fetch(`http://${follower.http}/kv/r`, { method: 'PUT', body: 'x' });
    expect(followed.status).to.equal(204);
    expect(await get('k7')).to.equal('v7');
    expect((await cli('status')).code).to.equal(0);

    // kill -9 the leader's process: the others elect a new leader; nothing acknowledged is lost.
    await stopProc(first, 'SIGKILL');
    const rest = nodes.filter((n) => n !== first);
    const second = await leaderAmong(rest);
    expect(second.id).to.not.equal(first.id);
    for (let i = 0; i < 20; i++) expect(await get(`k${i}`)).to.equal(`v${i}`);
    for (let i = 20; i < 30; i++) await put(`k${i}`, `v${i}`);

    // The killed process comes back and catches up.
    start(first);
    const target = await waitFor(`${second.id}'s status`, async () => (await statusOf(second))?.lastApplied);
    await waitFor(`${first.id} to catch up`, async () => ((await statusOf(first))?.lastApplied ?? 0) >= target || undefined, 30_000);

    // Everything stopped (cleanly) and started again: the data is all there.
    await Promise.all(nodes.map((n) => stopProc(n, 'SIGTERM')));
    for (const n of nodes) start(n);
    await leaderAmong(nodes);
    for (let i = 0; i < 30; i++) expect(await get(`k${i}`)).to.equal(`v${i}`);
  });

  it('bad arguments (2) and an unreachable cluster (3) exit non-zero with a message', async () => {
    const bad = await run(['node', '--id', 'x']);
    expect(bad.code).to.equal(2);
    expect(bad.err).to.match(/--listen is required/);
    const unknown = await run(['frobnicate']);
    expect(unknown.code).to.equal(2);
    const unreachable = await cli('get', 'k');
    expect(unreachable.code).to.equal(3); // unreachable, no leader or timeout (see actor-raft --help)
    expect(unreachable.err).to.match(/no endpoint answered/);
  });
});
