/**
 * Health, readiness and metrics an operator can alert on (src/http/health.ts,
 * src/http/metrics.ts, src/histogram.ts): `/health` and `/ready` through a leader loss on an
 * in-process cluster, a blank node not ready, Prometheus histograms whose counts grow with
 * ops, snapshot counters, and wired vs live peers on a cluster over TCP.
 */
import { expect } from 'chai';
import http from 'node:http';
import path from 'node:path';
import { op, read, setConfig, startNode, status, stopNode, type NodeOptions } from '../src/api/index.js';
import { Histogram } from '../src/histogram.js';
import { startHttpServer, type HttpServer } from '../src/http/server.js';
import { realCluster, TEST_TIMING, waitFor, waitForLeader } from './helpers/cluster.js';
import { freePorts } from './helpers/net.js';

interface Reply {
  status: number;
  text: string;
  json(): Record<string, unknown>;
}

function get(addr: string, target: string, method = 'GET'): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request(`http://${addr}${target}`, { method, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        resolve({ status: res.statusCode!, text, json: () => JSON.parse(text) as Record<string, unknown> });
      });
    });
    req.on('error', reject);
    req.end();
  });
}

/** A Prometheus text exposition: every sample line `name{labels} value` parsed, and every `# TYPE`. */
function parseExposition(text: string): { samples: Map<string, number>; types: Map<string, string> } {
  const samples = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const type = /^# TYPE (\S+) (counter|gauge|histogram)$/.exec(line);
    if (type) {
      types.set(type[1]!, type[2]!);
      continue;
    }
    if (line.startsWith('# HELP ')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`not a Prometheus sample line: ${JSON.stringify(line)}`);
    const value = Number(m[3]);
    if (Number.isNaN(value)) throw new Error(`not a number: ${JSON.stringify(line)}`);
    samples.set(`${m[1]}${m[2] ?? ''}`, value);
  }
  return { samples, types };
}

/** The buckets of histogram `name` for `node`: `le` → count, in the order exposed. */
function buckets(samples: Map<string, number>, name: string, node: string): [string, number][] {
  const prefix = `${name}_bucket{node="${node}",le="`;
  return [...samples].filter(([k]) => k.startsWith(prefix)).map(([k, v]) => [k.slice(prefix.length, -2), v]);
}

describe('histogram', function () {
  it('counts each observation in the first bucket whose bound holds it, cumulatively, with sum and count', function () {
    const h = new Histogram([0.001, 0.01, 0.1]);
    for (const v of [0.0005, 0.001, 0.005, 0.05, 3]) h.observe(v);
    const s = h.snapshot();
    expect(s.bounds).to.deep.equal([0.001, 0.01, 0.1]);
    expect(s.cumulative).to.deep.equal([2, 3, 4]);
    expect(s.count).to.equal(5);
    expect(s.sum).to.be.closeTo(3.0565, 1e-9);
  });
});

describe('health, readiness and metrics: in-process cluster', function () {
  this.timeout(120_000);
  const ids = ['h1', 'h2', 'h3'];
  const fixture = realCluster('suite');
  const servers = new Map<string, HttpServer>();
  const addr = (id: string) => servers.get(id)!.address();
  const options = (id: string): NodeOptions => ({ stateMachine: 'kv', dataDir: path.join(fixture.root, id), ...TEST_TIMING, snapshotThreshold: 20 });
  const readyOf = async (id: string) => (await get(addr(id), '/ready')).status;
  const metricsOf = async (id: string) => parseExposition((await get(addr(id), '/metrics')).text).samples;

  before(async () => {
    await Promise.all(ids.map((id) => startNode(id, options(id))));
    for (const id of ids) servers.set(id, await startHttpServer({ node: id, listen: '127.0.0.1:0' }));
  });

  after(async () => {
    await Promise.all([...servers.values()].map((s) => s.close()));
  });

  it('a blank node is healthy but not ready: no configuration, no leader', async () => {
    const health = await get(addr('h1'), '/health');
    expect(health.status).to.equal(200);
    expect(health.json()).to.include({ status: 'up', node: 'h1', role: 'follower' });
    const ready = await get(addr('h1'), '/ready');
    expect(ready.status).to.equal(503);
    expect(ready.json()).to.include({ ready: false, node: 'h1' });
    expect(ready.json().failing).to.deep.equal(['member', 'leader']);
    expect(ready.json().error).to.match(/not a voter/);
    expect((await metricsOf('h1')).get('raft_ready{node="h1"}')).to.equal(0);
    // HEAD answers alike, without a body; other methods are refused.
    expect((await get(addr('h1'), '/ready', 'HEAD')).status).to.equal(503);
    expect((await get(addr('h1'), '/health', 'POST')).status).to.equal(405);
  });

  it('every member is ready once the cluster has a leader', async () => {
    await setConfig('h1', ids);
    await waitForLeader(ids);
    for (const id of ids) await waitFor(`${id} ready`, async () => ((await readyOf(id)) === 200 ? true : undefined));
    const body = (await get(addr('h2'), '/ready')).json();
    expect(body).to.include({ ready: true, node: 'h2' });
    expect(body.failing).to.deep.equal([]);
    const checks = body.checks as Record<string, Record<string, unknown>>;
    expect(checks.member!.ok).to.equal(true);
    expect(checks.applied).to.include({ ok: true, maxLag: 1000 });
  });

  it('metrics parse as Prometheus text, with histograms whose counts grow with ops', async () => {
    const { leader } = await waitForLeader(ids);
    const l = `node="${leader}"`;
    const before = await metricsOf(leader);
    for (const name of ['raft_op_duration_seconds', 'raft_log_persist_duration_seconds', 'raft_apply_duration_seconds']) {
      const b = buckets(before, name, leader);
      expect(b.length, name).to.be.greaterThan(1);
      expect(b[b.length - 1]![0], name).to.equal('+Inf');
      // Cumulative: never decreasing, the +Inf bucket equal to the count.
      for (let i = 1; i < b.length; i++) expect(b[i]![1], `${name} le=${b[i]![0]}`).to.be.at.least(b[i - 1]![1]);
      expect(b[b.length - 1]![1], name).to.equal(before.get(`${name}_count{${l}}`));
    }
    const n = 10;
    for (let i = 0; i < n; i++) await op(leader, { type: 'set', key: `m${i}`, value: i });
    const after = await metricsOf(leader);
    expect(after.get(`raft_op_duration_seconds_count{${l}}`)).to.equal(before.get(`raft_op_duration_seconds_count{${l}}`)! + n);
    expect(after.get(`raft_op_duration_seconds_sum{${l}}`)).to.be.greaterThan(before.get(`raft_op_duration_seconds_sum{${l}}`)!);
    expect(after.get(`raft_apply_duration_seconds_count{${l}}`)).to.be.greaterThan(before.get(`raft_apply_duration_seconds_count{${l}}`)!);
    // The log actor reports its histogram a few times a second, after writes.
    const persisted = before.get(`raft_log_persist_duration_seconds_count{${l}}`)!;
    await waitFor('persist histogram to grow', async () => ((await metricsOf(leader)).get(`raft_log_persist_duration_seconds_count{${l}}`)! >= persisted + n ? true : undefined));
    const { samples, types } = parseExposition((await get(addr(leader), '/metrics')).text);
    expect(types.get('raft_op_duration_seconds')).to.equal('histogram');
    expect(types.get('raft_leader_changes_total')).to.equal('counter');
    expect(samples.get(`raft_ready{${l}}`)).to.equal(1);
    expect(samples.get(`raft_has_leader{${l}}`)).to.equal(1);
    expect(samples.get(`raft_live_peers{${l}}`)).to.equal(2);
    expect(samples.get(`raft_snapshots_taken_total{${l}}`)).to.be.a('number');
    // This process: CPU, memory, open files, event-loop lag.
    expect(samples.get(`process_resident_memory_bytes{${l}}`)).to.be.greaterThan(0);
    expect(samples.get(`process_cpu_seconds_total{${l}}`)).to.be.greaterThan(0);
    expect(samples.get(`nodejs_heap_size_used_bytes{${l}}`)).to.be.greaterThan(0);
    expect(samples.get(`nodejs_eventloop_lag_seconds{${l}}`)).to.be.at.least(0);
    if (process.platform === 'linux') expect(samples.get(`process_open_fds{${l}}`)).to.be.greaterThan(0);
  });

  it('ready goes 503 on a node that lost its leader, and back to 200 once there is one again; a stopped node is not healthy', async () => {
    const { leader } = await waitForLeader(ids);
    const [other, survivor] = ids.filter((id) => id !== leader) as [string, string];
    const changesBefore = (await status(survivor)).metrics.leaderChanges;
    await stopNode(leader);
    await stopNode(other);
    // The stopped leader's server is still up: not healthy, not ready.
    const health = await get(addr(leader), '/health');
    expect(health.status).to.equal(503);
    expect(health.json()).to.include({ status: 'down', code: 'NODE_STOPPED' });
    const down = await get(addr(leader), '/ready');
    expect(down.status).to.equal(503);
    expect(down.json().failing).to.deep.equal(['up']);
    // The survivor alone cannot elect anyone: once it stops hearing its leader it is not ready.
    const lost = await waitFor(`${survivor} to notice it lost its leader`, async () => {
      const r = await get(addr(survivor), '/ready');
      return r.status === 503 ? r.json() : undefined;
    });
    expect(lost.failing).to.deep.equal(['leader']);
    expect((await get(addr(survivor), '/health')).status).to.equal(200);
    expect((await metricsOf(survivor)).get(`raft_ready{node="${survivor}"}`)).to.equal(0);
    // A second voter back: a leader again, ready again.
    await startNode(other, options(other));
    await waitFor(`${survivor} ready again`, async () => ((await readyOf(survivor)) === 200 ? true : undefined));
    await waitFor(`${other} ready`, async () => ((await readyOf(other)) === 200 ? true : undefined));
    const { leader: newLeader } = await waitForLeader([other, survivor]);
    expect(newLeader).to.not.equal(leader);
    expect((await status(survivor)).metrics.leaderChanges).to.be.greaterThan(changesBefore);

    // Enough ops for the new leader to compact its log past the old leader's, which then
    // catches up by InstallSnapshot (§7) when it comes back.
    for (let i = 0; i < 60; i++) await op(newLeader, { type: 'set', key: `s${i}`, value: i });
    await waitFor('a snapshot taken', async () => ((await status(newLeader)).metrics.snapshotsTaken > 0 ? true : undefined));
    await startNode(leader, options(leader));
    await waitFor(`${leader} ready again`, async () => ((await readyOf(leader)) === 200 ? true : undefined));
    await waitFor(`${leader} installed a snapshot`, async () => ((await status(leader)).metrics.snapshotsInstalled > 0 ? true : undefined));
    expect(await read(leader, { type: 'get', key: 's59' })).to.equal(59);
    const m = await metricsOf(leader);
    expect(m.get(`raft_snapshots_installed_total{node="${leader}"}`)).to.be.at.least(1);
    expect((await metricsOf(newLeader)).get(`raft_snapshots_taken_total{node="${newLeader}"}`)).to.be.at.least(1);
  });

  it('counts refused proposals by code', async () => {
    const { leader } = await waitForLeader(ids);
    const follower = ids.find((id) => id !== leader)!;
    // A follower's core refuses an op with NOT_LEADER (the API then retries on the leader).
    const before = (await status(follower)).metrics.proposalsRefused.NOT_LEADER ?? 0;
    // Sent to the follower's core directly, as a client that does not know the leader would.
    await op(follower, { type: 'set', key: 'via-follower', value: 1 });
    const after = (await status(follower)).metrics.proposalsRefused.NOT_LEADER ?? 0;
    expect(after).to.be.greaterThan(before);
    expect((await metricsOf(follower)).get(`raft_proposals_refused_total{node="${follower}",code="NOT_LEADER"}`)).to.equal(after);
  });

  it('refuses a bad readyMaxLag', async () => {
    for (const bad of [-1, 1.5, 'x']) {
      let err: unknown;
      await startHttpServer({ node: 'h1', listen: '127.0.0.1:0', readyMaxLag: bad as number }).catch((e) => (err = e));
      expect(err, String(bad)).to.be.instanceOf(TypeError);
    }
  });
});

describe('health: wired vs live peers over TCP', function () {
  this.timeout(120_000);
  const ids = ['w1', 'w2', 'w3'];
  const fixture = realCluster('suite');
  let addresses: Record<string, string>;

  const optionsOf = (id: string): NodeOptions => {
    const peers: Record<string, string> = {};
    for (const other of ids) if (other !== id) peers[other] = addresses[other]!;
    return { stateMachine: 'kv', dataDir: path.join(fixture.root, id), ...TEST_TIMING, network: { listen: addresses[id]!, peers, clusterId: 'health' } };
  };

  before(async () => {
    const ports = await freePorts(ids.length);
    addresses = Object.fromEntries(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
    await Promise.all(ids.map((id) => startNode(id, optionsOf(id))));
    await setConfig('w1', ids);
    await waitForLeader(ids);
  });

  it('wiredPeers lists every routed peer; livePeers only those connected now (connectedPeers is the old name of wiredPeers)', async () => {
    const { leader } = await waitForLeader(ids);
    await op(leader, { type: 'set', key: 'k', value: 1 });
    const followers = ids.filter((id) => id !== leader);
    const s = await waitFor('leader connected to every follower', async () => {
      const st = await status(leader);
      return st.livePeers.length === 2 ? st : undefined;
    });
    expect(s.wiredPeers.sort()).to.deep.equal(followers);
    expect(s.connectedPeers).to.deep.equal(s.wiredPeers);
    const gone = followers[0]!;
    await stopNode(gone);
    const after = await waitFor(`${gone} no longer live`, async () => {
      const st = await status(leader);
      return st.livePeers.includes(gone) ? undefined : st;
    });
    // Still wired (the switchboard keeps routing for it and redials), no longer live.
    expect(after.wiredPeers).to.include(gone);
    expect(after.livePeers).to.deep.equal([followers[1]]);
  });
});
