/**
 * src/http/server.ts: the HTTP kv interface in front of peers of an in-process cluster, on
 * loopback only: routes, values, error codes, redirects (with a stubbed backend, since every
 * leader of an in-process cluster is local and op() forwards to it), metrics, TLS (when
 * `openssl` is installed) and a seeded fuzz test with well-formed, malformed, oversized and
 * aborted requests.
 */
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { op, read, setConfig, stopNode } from '../src/api/index.js';
import { LeadershipLostError, NotLeaderError, SessionExpiredError, StorageError, TimeoutError } from '../src/errors.js';
import { startHttpServer, type HttpBackend, type HttpServer, type HttpServerOptions } from '../src/http/server.js';
import { startPeers, stopAll, tempDir, waitFor, waitForConverged, waitForLeader } from './helpers/cluster.js';
import { prng, request, splitAddr, type Reply } from './helpers/http-client.js';

const bytes5000 = () => Buffer.alloc(5000, 0xab);
/** The content type a cas body must be sent with. */
const JSON_TYPE = { 'Content-Type': 'application/json' };

/** The samples of a Prometheus text exposition: `name{labels}` → value. */
function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.lastIndexOf(' ');
    out.set(line.slice(0, i), Number(line.slice(i + 1)));
  }
  return out;
}

const IDS = ['http-a', 'http-b', 'http-c'];

describe('http: kv interface over an in-process cluster', function () {
  let root: string;
  let leader: string;
  let follower: string;
  const servers = new Map<string, HttpServer>();
  const extra: HttpServer[] = [];
  const addr = (id: string) => servers.get(id)!.address();

  async function serve(options: HttpServerOptions): Promise<HttpServer> {
    const s = await startHttpServer(options);
    extra.push(s);
    return s;
  }

  before(async function () {
    root = tempDir('actor-raft-http-');
    await startPeers(IDS, root);
    await setConfig(IDS[0]!, IDS);
    ({ leader } = await waitForLeader(IDS));
    follower = IDS.find((id) => id !== leader)!;
    for (const id of IDS) servers.set(id, await startHttpServer({ node: id, listen: '127.0.0.1:0' }));
  });

  after(async function () {
    await Promise.all([...servers.values(), ...extra].map((s) => s.close()));
    await stopAll();
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('listens on the port asked for, or a free one for port 0', function () {
    const [host, port] = splitAddr(addr(leader));
    expect(host).to.equal('127.0.0.1');
    expect(port).to.be.greaterThan(0);
  });

  it('refuses bad options', async function () {
    for (const bad of [
      { node: 'x', listen: 'nope' },
      { node: 'x', listen: '127.0.0.1:70000' },
      { node: '', listen: '127.0.0.1:0' },
      { node: 'x', listen: '127.0.0.1:0', maxBodyBytes: 0 },
      { node: 'x', listen: '127.0.0.1:0', peerHttp: { y: 'ftp://z' } },
    ]) {
      let err: unknown;
      await startHttpServer(bad).catch((e) => (err = e));
      expect(err, JSON.stringify(bad)).to.be.instanceOf(Error);
    }
  });

  it('PUT a text value through the leader, GET it through every peer (linearizable)', async function () {
    const put = await request(addr(leader), 'PUT', '/kv/greeting', { body: 'hello, wörld' });
    expect(put.status).to.equal(204);
    for (const id of IDS) {
      const got = await request(addr(id), 'GET', '/kv/greeting');
      expect(got.status, id).to.equal(200);
      expect(got.text).to.equal('hello, wörld');
      expect(got.headers['content-type']).to.match(/^text\/plain/);
      expect(got.headers['x-raft-value-type']).to.equal('string');
    }
    expect(await read(leader, { type: 'get', key: 'greeting' })).to.equal('hello, wörld');
  });

  it('PUT through a follower is forwarded to the leader (in-process)', async function () {
    const put = await request(addr(follower), 'PUT', '/kv/via-follower', { body: 'f' });
    expect(put.status).to.equal(204);
    expect(await read(leader, { type: 'get', key: 'via-follower' })).to.equal('f');
  });

  it('PUT with Content-Type: application/json stores the parsed value; GET answers JSON', async function () {
    const value = { a: [1, 2, { b: 'c' }], n: 3.5, t: true };
    const put = await request(addr(follower), 'PUT', '/kv/obj', {
      body: JSON.stringify(value),
      headers: { 'Content-Type': 'application/json; charset=utf-8' },
    });
    expect(put.status).to.equal(204);
    expect(await read(leader, { type: 'get', key: 'obj' })).to.deep.equal(value);
    const got = await request(addr(leader), 'GET', '/kv/obj');
    expect(got.status).to.equal(200);
    expect(got.headers['content-type']).to.match(/^application\/json/);
    expect(got.headers['x-raft-value-type']).to.equal('json');
    expect(got.json()).to.deep.equal(value);
    // A JSON number stays a number.
    await request(addr(leader), 'PUT', '/kv/num', { body: '42', headers: { 'Content-Type': 'application/json' } });
    expect(await read(leader, { type: 'get', key: 'num' })).to.equal(42);
    expect((await request(addr(follower), 'GET', '/kv/num')).json()).to.equal(42);
  });

  it('stores binary bodies as bytes (octet-stream, or not valid UTF-8) and answers them as octet-stream', async function () {
    const bytes = Buffer.from([0, 1, 2, 0xff, 0xfe, 0x80, 10]);
    for (const [key, headers] of [
      ['bin1', { 'Content-Type': 'application/octet-stream' }],
      ['bin2', {}],
    ] as const) {
      expect((await request(addr(leader), 'PUT', `/kv/${key}`, { body: bytes, headers })).status).to.equal(204);
      const got = await request(addr(follower), 'GET', `/kv/${key}`);
      expect(got.status).to.equal(200);
      expect(got.headers['content-type']).to.equal('application/octet-stream');
      expect(got.headers['x-raft-value-type']).to.equal('bytes');
      expect(got.body.equals(bytes)).to.equal(true);
    }
    // Text declared as bytes stays bytes.
    await request(addr(leader), 'PUT', '/kv/bin3', { body: 'abc', headers: { 'Content-Type': 'application/octet-stream' } });
    expect(Buffer.from((await read(leader, { type: 'get', key: 'bin3' })) as Uint8Array).toString()).to.equal('abc');
  });

  it('an empty text body stores the empty string', async function () {
    expect((await request(addr(leader), 'PUT', '/kv/empty', { body: '' })).status).to.equal(204);
    const got = await request(addr(leader), 'GET', '/kv/empty');
    expect(got.status).to.equal(200);
    expect(got.text).to.equal('');
  });

  it('percent-decodes the key (one path segment)', async function () {
    expect((await request(addr(leader), 'PUT', '/kv/a%2Fb%20c%C3%A9', { body: 'x' })).status).to.equal(204);
    expect(await read(leader, { type: 'get', key: 'a/b cé' })).to.equal('x');
    expect((await request(addr(follower), 'GET', '/kv/a%2Fb%20c%C3%A9?ignored=1')).text).to.equal('x');
    // No normalization: '..' is a key like any other.
    expect((await request(addr(leader), 'PUT', '/kv/..', { body: 'dots' })).status).to.equal(204);
    expect(await read(leader, { type: 'get', key: '..' })).to.equal('dots');
  });

  it('DELETE answers {"deleted":true}, then 404 once the key is gone; GET of a missing key is 404', async function () {
    await op(leader, { type: 'set', key: 'doomed', value: 1 });
    const del = await request(addr(follower), 'DELETE', '/kv/doomed');
    expect(del.status).to.equal(200);
    expect(del.json()).to.deep.equal({ deleted: true });
    const again = await request(addr(leader), 'DELETE', '/kv/doomed');
    expect(again.status).to.equal(404);
    expect(again.json()).to.include({ deleted: false });
    expect(again.json().error).to.be.a('string');
    const get = await request(addr(follower), 'GET', '/kv/doomed');
    expect(get.status).to.equal(404);
    expect(get.headers['content-type']).to.match(/^application\/json/);
    expect(get.json()).to.deep.equal({ error: 'key not found', code: 'NOT_FOUND' });
  });

  it('POST /kv/:key/cas swaps only on the expected value (null: missing key)', async function () {
    const cas = (id: string, expected: unknown, value: unknown) =>
      request(addr(id), 'POST', '/kv/counter/cas', { body: JSON.stringify({ expected, value }), headers: { 'Content-Type': 'application/json' } });
    let r = await cas(follower, null, 1);
    expect(r.status).to.equal(200);
    expect(r.json()).to.deep.equal({ swapped: true });
    r = await cas(leader, 5, 6);
    expect(r.json()).to.deep.equal({ swapped: false });
    r = await cas(follower, 1, { n: 2 });
    expect(r.json()).to.deep.equal({ swapped: true });
    r = await cas(leader, { n: 2 }, 'three');
    expect(r.json()).to.deep.equal({ swapped: true });
    expect((await request(addr(follower), 'GET', '/kv/counter')).text).to.equal('three');
    // A string stored by a text PUT is the JSON string for cas.
    await request(addr(leader), 'PUT', '/kv/s', { body: 'plain' });
    r = await request(addr(leader), 'POST', '/kv/s/cas', { body: '{"expected":"plain","value":"next"}', headers: JSON_TYPE });
    expect(r.json()).to.deep.equal({ swapped: true });
  });

  it('GET /status answers the status of the fronted peer', async function () {
    const r = await request(addr(follower), 'GET', '/status');
    expect(r.status).to.equal(200);
    const s = r.json();
    expect(s).to.include({ id: follower, role: 'follower', leader });
    expect(s.term).to.be.a('number');
    expect(s.commitIndex).to.be.a('number');
    expect(s.restarts).to.deep.equal({ log: 0, consensus: 0 });
    expect((await request(addr(leader), 'GET', '/status')).json().role).to.equal('leader');
  });

  it('GET /metrics answers Prometheus text with term, indexes, role, restarts and op counters', async function () {
    const r = await request(addr(leader), 'GET', '/metrics');
    expect(r.status).to.equal(200);
    expect(r.headers['content-type']).to.equal('text/plain; version=0.0.4; charset=utf-8');
    expect(r.text).to.match(/^# HELP raft_term /m);
    expect(r.text).to.match(/^# TYPE raft_ops_total counter$/m);
    const m = parseMetrics(r.text);
    const l = `node="${leader}"`;
    const st = (await request(addr(leader), 'GET', '/status')).json();
    expect(m.get(`raft_node_up{${l}}`)).to.equal(1);
    expect(m.get(`raft_term{${l}}`)).to.equal(st.term);
    expect(m.get(`raft_commit_index{${l}}`)).to.be.at.least(1);
    expect(m.get(`raft_applied_index{${l}}`)).to.be.at.least(1);
    expect(m.get(`raft_role{${l},role="leader"}`)).to.equal(1);
    expect(m.get(`raft_role{${l},role="follower"}`)).to.equal(0);
    expect(m.get(`raft_is_leader{${l}}`)).to.equal(1);
    expect(m.get(`raft_restarts_total{${l},actor="consensus"}`)).to.equal(0);
    expect(m.get(`raft_restarts_total{${l},actor="log"}`)).to.equal(0);
    expect(m.get(`raft_ops_total{${l},method="PUT",code="204"}`)).to.be.at.least(5);
    expect(m.get(`raft_ops_total{${l},method="GET",code="200"}`)).to.be.at.least(1);
    expect(m.get(`raft_http_requests_total{${l},method="GET",code="200"}`)).to.be.at.least(1);
    // In-process peers have no TCP transport: no byte counters.
    expect([...m.keys()].some((k) => k.startsWith('raft_bytes_sent_total'))).to.equal(false);
    const fm = parseMetrics((await request(addr(follower), 'GET', '/metrics')).text);
    expect(fm.get(`raft_role{node="${follower}",role="follower"}`)).to.equal(1);
    expect(fm.get(`raft_ops_total{node="${follower}",method="DELETE",code="200"}`)).to.equal(1);
  });

  it('answers JSON errors: 404 unknown route, 400 bad path/key/body, 405 wrong method', async function () {
    const a = addr(follower);
    const expectError = async (r: Promise<Reply>, status: number, match?: RegExp) => {
      const reply = await r;
      expect(reply.status, reply.text).to.equal(status);
      expect(reply.headers['content-type']).to.match(/^application\/json/);
      const body = reply.json();
      expect(body.error).to.be.a('string');
      expect(body.code).to.be.a('string');
      if (match) expect(body.error).to.match(match);
      return reply;
    };
    await expectError(request(a, 'GET', '/nope'), 404, /no such route/);
    await expectError(request(a, 'GET', '/'), 404);
    await expectError(request(a, 'GET', '/kv/a/b'), 404);
    await expectError(request(a, 'GET', '/kv/a/cas/x'), 404);
    await expectError(request(a, 'GET', '/kv/'), 400, /empty key/);
    await expectError(request(a, 'GET', '/kv'), 400, /empty key/);
    await expectError(request(a, 'PUT', '/kv/%E0%A4%A', { body: 'x' }), 400, /percent/);
    await expectError(request(a, 'GET', `/kv/${'k'.repeat(1025)}`), 400, /key too long/);
    expect((await request(a, 'PUT', `/kv/${'k'.repeat(1024)}`, { body: 'max' })).status).to.equal(204);
    await expectError(request(a, 'PUT', '/kv/j', { body: '{"a":', headers: { 'Content-Type': 'application/json' } }), 400, /bad JSON/);
    await expectError(request(a, 'PUT', '/kv/j', { body: 'null', headers: { 'Content-Type': 'application/json' } }), 400, /null/);
    await expectError(request(a, 'POST', '/kv/j/cas', { body: 'not json', headers: JSON_TYPE }), 400, /bad JSON/);
    await expectError(request(a, 'POST', '/kv/j/cas', { body: '[1,2]', headers: JSON_TYPE }), 400);
    await expectError(request(a, 'POST', '/kv/j/cas', { body: '{"value":1}', headers: JSON_TYPE }), 400, /expected/);
    await expectError(request(a, 'POST', '/kv/j/cas', { body: '{"expected":1,"value":null}', headers: JSON_TYPE }), 400, /null/);
    const r405 = await expectError(request(a, 'POST', '/kv/j', { body: 'x' }), 405);
    expect(r405.headers.allow).to.equal('GET, HEAD, PUT, DELETE');
    expect((await expectError(request(a, 'GET', '/kv/j/cas'), 405)).headers.allow).to.equal('POST');
    await expectError(request(a, 'PUT', '/status', { body: 'x' }), 405);
    await expectError(request(a, 'DELETE', '/metrics'), 405);
    // HEAD works like GET, without a body.
    const head = await request(a, 'HEAD', '/kv/greeting');
    expect(head.status).to.equal(200);
    expect(head.body.length).to.equal(0);
    // Nothing was written by the refused requests.
    expect(await read(leader, { type: 'get', key: 'j' })).to.equal(null);
  });

  it('413 for a body over maxBodyBytes (declared, chunked, or with Expect: 100-continue); the limit itself is fine', async function () {
    const small = await serve({ node: follower, listen: '127.0.0.1:0', maxBodyBytes: 1024 });
    const a = small.address();
    const ok = await request(a, 'PUT', '/kv/limit', { body: 'x'.repeat(1024) });
    expect(ok.status).to.equal(204);
    for (const chunked of [false, true]) {
      const r = await request(a, 'PUT', '/kv/limit', { body: 'y'.repeat(5000), chunked });
      expect(r.status, `chunked ${chunked}`).to.equal(413);
      expect(r.json()).to.include({ code: 'TOO_LARGE', maxBodyBytes: 1024 });
    }
    // The refused body is discarded, not kept, and the connection stays usable.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const big = await request(a, 'PUT', '/kv/limit', { body: bytes5000(), agent });
      expect(big.status).to.equal(413);
      const after = await request(a, 'GET', '/kv/limit', { agent });
      expect(after.status).to.equal(200);
      expect(after.text).to.equal('x'.repeat(1024));
    } finally {
      agent.destroy();
    }
    const cas = await request(a, 'POST', '/kv/limit/cas', { body: JSON.stringify({ expected: null, value: 'z'.repeat(2000) }), headers: JSON_TYPE });
    expect(cas.status).to.equal(413);
    // A client that waits for 100 Continue is refused before it sends the body.
    const refused = await new Promise<number>((resolve, reject) => {
      const [host, port] = splitAddr(a);
      const req = http.request({ host, port, method: 'PUT', path: '/kv/limit', agent: false, headers: { 'Content-Length': 1 << 20, Expect: '100-continue' } });
      req.on('continue', () => reject(new Error('got 100 Continue')));
      req.on('response', (res) => {
        res.resume();
        resolve(res.statusCode!);
        req.destroy();
      });
      req.on('error', () => undefined);
      req.flushHeaders();
    });
    expect(refused).to.equal(413);
    expect(await read(leader, { type: 'get', key: 'limit' })).to.equal('x'.repeat(1024));
    // A small body with Expect: 100-continue goes through.
    const cont = await request(a, 'PUT', '/kv/limit2', { body: 'fine', headers: { Expect: '100-continue' } });
    expect(cont.status).to.equal(204);
  });

  it('redirects with 307 to the leader\'s HTTP server when the leader is not in this process (stubbed backend)', async function () {
    const leaderUrl = `http://${addr(leader)}`;
    let next: Error | null = null;
    const backend: HttpBackend = {
      op: async () => {
        if (next) throw next;
        return null;
      },
      read: async () => {
        if (next) throw next;
        return 'v';
      },
      status: async () => ({ role: 'follower', term: 7 }),
      transportStats: () => ({ bytesOut: 1234, bytesIn: 567, framesOut: 8, framesIn: 9, dropped: 0, badFrames: 2, refused: 1, connects: 3, reconnects: 1, connectedPeers: ['x', 'y'] }),
    };
    const s = await serve({ node: 'remote-follower', listen: '127.0.0.1:0', backend, peerHttp: { 'remote-leader': `${leaderUrl}/` } });
    const a = s.address();
    next = new NotLeaderError('remote-leader');
    const put = await request(a, 'PUT', '/kv/redirected?x=1', { body: 'moved' });
    expect(put.status).to.equal(307);
    expect(put.headers.location).to.equal(`${leaderUrl}/kv/redirected?x=1`);
    expect(put.json()).to.include({ code: 'NOT_LEADER', leader: 'remote-leader' });
    // Following it (same method and body, as 307 requires) writes through the real leader.
    const loc = new URL(put.headers.location!);
    const followed = await request(loc.host, 'PUT', loc.pathname + loc.search, { body: 'moved' });
    expect(followed.status).to.equal(204);
    expect(await read(leader, { type: 'get', key: 'redirected' })).to.equal('moved');
    // Reads, deletes and cas redirect the same way.
    for (const [method, target, body] of [
      ['GET', '/kv/redirected', undefined],
      ['DELETE', '/kv/redirected', undefined],
      ['POST', '/kv/redirected/cas', '{"expected":null,"value":1}'],
    ] as const) {
      const r = await request(a, method, target, body === undefined ? {} : { body, headers: method === 'POST' ? JSON_TYPE : {} });
      expect(r.status, method).to.equal(307);
      expect(r.headers.location).to.equal(`${leaderUrl}${target}`);
    }
    // No leader known: 503 with Retry-After.
    next = new NotLeaderError(null);
    const none = await request(a, 'PUT', '/kv/x', { body: 'v' });
    expect(none.status).to.equal(503);
    expect(none.headers['retry-after']).to.equal('1');
    expect(none.json()).to.include({ error: 'no leader', code: 'NOT_LEADER' });
    // A leader without a known HTTP address: 503 too, naming it.
    next = new NotLeaderError('elsewhere');
    const unknown = await request(a, 'GET', '/kv/x');
    expect(unknown.status).to.equal(503);
    expect(unknown.json()).to.include({ leader: 'elsewhere' });
    // A timeout: 504, outcome unknown.
    next = new TimeoutError(100);
    const timeout = await request(a, 'PUT', '/kv/x', { body: 'v' });
    expect(timeout.status).to.equal(504);
    expect(timeout.json()).to.include({ code: 'TIMEOUT', outcome: 'unknown' });
    expect(timeout.json().error).to.match(/outcome is unknown/);
    // Leadership lost in flight: 503, outcome unknown.
    next = new LeadershipLostError();
    const lost = await request(a, 'DELETE', '/kv/x');
    expect(lost.status).to.equal(503);
    expect(lost.json()).to.include({ code: 'LEADERSHIP_LOST', outcome: 'unknown' });
    // The client session expired with the write in doubt: 409, outcome unknown.
    next = new SessionExpiredError();
    const expired = await request(a, 'PUT', '/kv/x', { body: 'v' });
    expect(expired.status).to.equal(409);
    expect(expired.json()).to.include({ code: 'SESSION_EXPIRED', outcome: 'unknown' });
    // Anything else: 500, and the server goes on.
    next = new Error('boom');
    expect((await request(a, 'PUT', '/kv/x', { body: 'v' })).status).to.equal(500);
    next = null;
    expect((await request(a, 'GET', '/kv/x')).text).to.equal('v');
    // Transport counters of a networked peer show in the metrics.
    const m = parseMetrics((await request(a, 'GET', '/metrics')).text);
    const l = 'node="remote-follower"';
    expect(m.get(`raft_term{${l}}`)).to.equal(7);
    expect(m.get(`raft_bytes_sent_total{${l}}`)).to.equal(1234);
    expect(m.get(`raft_bytes_received_total{${l}}`)).to.equal(567);
    expect(m.get(`raft_transport_bad_frames_total{${l}}`)).to.equal(2);
    expect(m.get(`raft_connected_peers{${l}}`)).to.equal(2);
  });

  it('keeps connections alive, and close() ends idle keep-alive connections too', async function () {
    const s = await startHttpServer({ node: leader, listen: '127.0.0.1:0' });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<net.Socket>();
    try {
      for (let i = 0; i < 5; i++) {
        const [host, port] = splitAddr(s.address());
        await new Promise<void>((resolve, reject) => {
          const req = http.request({ host, port, path: '/kv/greeting', agent }, (res) => {
            res.resume();
            res.on('end', resolve);
          });
          req.on('socket', (sock: net.Socket) => sockets.add(sock));
          req.on('error', reject);
          req.end();
        });
      }
      // An error answer that read the whole request keeps the connection too.
      await request(s.address(), 'GET', '/nope', { agent });
      expect(sockets.size).to.equal(1);
      const [sock] = sockets;
      const closed = new Promise<void>((resolve) => sock!.once('close', () => resolve()));
      const t0 = Date.now();
      await s.close();
      await closed;
      expect(Date.now() - t0).to.be.below(2_000);
      await s.close(); // idempotent
    } finally {
      agent.destroy();
      await s.close();
    }
  });

  describe('web pages and bounds: Host, Origin, content types, limits', function () {
    const EVIL = 'http://evil.example';
    const nested = (depth: number) => '['.repeat(depth) + '1' + ']'.repeat(depth);

    /** A raw HTTP/1.0 request without a Host header; resolves with the status line's code. */
    const withoutHost = (a: string, target: string) =>
      new Promise<number>((resolve, reject) => {
        const [host, port] = splitAddr(a);
        const sock = net.connect({ host, port }, () => sock.write(`GET ${target} HTTP/1.0\r\n\r\n`));
        let got = '';
        sock.on('data', (c: Buffer) => (got += c.toString('latin1')));
        sock.on('error', reject);
        sock.on('close', () => resolve(Number(/^HTTP\/1\.[01] (\d{3})/.exec(got)?.[1] ?? 0)));
      });

    it('answers only to its own names in Host (421 otherwise, and nothing is written)', async function () {
      const s = await serve({
        node: leader,
        listen: '127.0.0.1:0',
        allowedHosts: ['raft.internal', 'api.example:9000'],
        peerHttp: { [leader]: 'http://raft-a.internal:8123' },
      });
      const a = s.address();
      const port = splitAddr(a)[1];
      const status = async (host: string) => (await request(a, 'GET', '/status', { headers: { Host: host } })).status;
      for (const host of [`127.0.0.1:${port}`, `localhost:${port}`, `LOCALHOST.:${port}`, `[::1]:${port}`, 'raft.internal', 'raft.internal:1234', 'api.example:9000', 'raft-a.internal:8123']) {
        expect(await status(host), host).to.equal(200);
      }
      for (const host of [`evil.example:${port}`, 'evil.example', `localhost:${port + 1}`, 'localhost', `10.1.2.3:${port}`, 'api.example:9001', 'raft-a.internal:8124', 'a b']) {
        const r = await request(a, 'GET', '/status', { headers: { Host: host } });
        expect(r.status, host).to.equal(421);
        expect(r.json(), host).to.include({ code: 'HOST_NOT_ALLOWED' });
      }
      // DNS rebinding: a page at evil.example:<port>, its name now resolving to 127.0.0.1.
      const put = await request(a, 'PUT', '/kv/rebound', { body: 'pwned', headers: { Host: `evil.example:${port}` } });
      expect(put.status).to.equal(421);
      expect(await read(leader, { type: 'get', key: 'rebound' })).to.equal(null);
      // No Host at all (HTTP/1.0): not a browser.
      expect(await withoutHost(a, '/status')).to.equal(200);
    });

    it('listening on a wildcard address, any IP address of the machine is one of its names', async function () {
      const s = await serve({ node: leader, listen: '0.0.0.0:0' });
      const port = splitAddr(s.address())[1];
      const a = `127.0.0.1:${port}`;
      for (const host of [`10.1.2.3:${port}`, `[fe80::1]:${port}`, `localhost:${port}`]) {
        expect((await request(a, 'GET', '/status', { headers: { Host: host } })).status, host).to.equal(200);
      }
      for (const host of [`evil.example:${port}`, `10.1.2.3:${port + 1}`]) {
        expect((await request(a, 'GET', '/status', { headers: { Host: host } })).status, host).to.equal(421);
      }
    });

    it('refuses writes from a foreign Origin (403) and grants CORS only to listed origins', async function () {
      const app = 'http://app.example:3000';
      const s = await serve({ node: leader, listen: '127.0.0.1:0', allowedOrigins: [`${app}/`] });
      const a = s.address();
      // The attack of issue 14: a page of evil.example posts a cas with text/plain.
      const casBody = JSON.stringify({ expected: null, value: 'pwned' });
      const attack = await request(a, 'POST', '/kv/origin-cas/cas', { body: casBody, headers: { Origin: EVIL, 'Content-Type': 'text/plain' } });
      expect(attack.status).to.equal(403);
      expect(attack.json()).to.include({ code: 'ORIGIN_NOT_ALLOWED' });
      expect(attack.headers['access-control-allow-origin']).to.equal(undefined);
      for (const [method, target, body] of [
        ['PUT', '/kv/origin-put', 'pwned'],
        ['DELETE', '/kv/origin-put', undefined],
        ['POST', '/kv/origin-cas/cas', casBody],
      ] as const) {
        for (const origin of [EVIL, 'null', `http://localhost:${splitAddr(a)[1]}`]) {
          const r = await request(a, method, target, { body, headers: { Origin: origin, ...(method === 'POST' ? JSON_TYPE : {}) } });
          expect(r.status, `${method} from ${origin}`).to.equal(403);
        }
      }
      expect(await read(leader, { type: 'get', key: 'origin-cas' })).to.equal(null);
      expect(await read(leader, { type: 'get', key: 'origin-put' })).to.equal(null);
      // A preflight from a foreign origin gets no grant.
      const foreignPreflight = await request(a, 'OPTIONS', '/kv/x', { headers: { Origin: EVIL, 'Access-Control-Request-Method': 'PUT' } });
      expect(foreignPreflight.status).to.equal(403);
      expect(foreignPreflight.headers['access-control-allow-origin']).to.equal(undefined);
      // A GET from a foreign origin is answered, with no grant: the page cannot read it.
      const get = await request(a, 'GET', '/status', { headers: { Origin: EVIL } });
      expect(get.status).to.equal(200);
      expect(get.headers['access-control-allow-origin']).to.equal(undefined);

      // A listed origin: preflight answered, writes granted.
      const preflight = await request(a, 'OPTIONS', '/kv/origin-app', {
        headers: { Origin: app, 'Access-Control-Request-Method': 'PUT', 'Access-Control-Request-Headers': 'content-type' },
      });
      expect(preflight.status).to.equal(204);
      expect(preflight.headers['access-control-allow-origin']).to.equal(app);
      expect(preflight.headers['access-control-allow-methods']).to.include('PUT');
      expect(preflight.headers['access-control-allow-headers']).to.match(/content-type/i);
      const put = await request(a, 'PUT', '/kv/origin-app', { body: 'from the app', headers: { Origin: app } });
      expect(put.status).to.equal(204);
      expect(put.headers['access-control-allow-origin']).to.equal(app);
      expect((await request(a, 'GET', '/kv/origin-app', { headers: { Origin: app } })).headers['access-control-allow-origin']).to.equal(app);
      // The server's own origin is not foreign.
      const own = await request(a, 'PUT', '/kv/origin-own', { body: 'same origin', headers: { Origin: `http://${a}` } });
      expect(own.status).to.equal(204);
      expect(own.headers['access-control-allow-origin']).to.equal(undefined);
    });

    it('cas takes only Content-Type: application/json (415 otherwise); text PUT still works', async function () {
      const a = addr(leader);
      const body = JSON.stringify({ expected: null, value: 1 });
      for (const type of [undefined, 'text/plain', 'text/plain; charset=utf-8', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x']) {
        const r = await request(a, 'POST', '/kv/ct/cas', { body, headers: type === undefined ? {} : { 'Content-Type': type } });
        expect(r.status, String(type)).to.equal(415);
        expect(r.json(), String(type)).to.include({ code: 'UNSUPPORTED_MEDIA_TYPE' });
      }
      expect(await read(leader, { type: 'get', key: 'ct' })).to.equal(null);
      const ok = await request(a, 'POST', '/kv/ct/cas', { body, headers: { 'Content-Type': 'application/json; charset=utf-8' } });
      expect(ok.json()).to.deep.equal({ swapped: true });
      expect((await request(a, 'PUT', '/kv/ct-text', { body: 'plain', headers: { 'Content-Type': 'text/plain' } })).status).to.equal(204);
      expect((await request(a, 'GET', '/kv/ct-text')).text).to.equal('plain');
    });

    it('JSON nested too deeply is a 400 with a plain message, never a 500; brackets in strings do not count', async function () {
      const a = addr(leader);
      for (const [what, target, body] of [
        ['PUT 65 deep', '/kv/deep', nested(65)],
        ['PUT 100000 deep', '/kv/deep', nested(100_000)],
        ['PUT 64 deep (the value in its command is deeper)', '/kv/deep', nested(64)],
        ['cas value 64 deep', '/kv/deep/cas', `{"expected":null,"value":${nested(64)}}`],
        ['cas expected 65 deep', '/kv/deep/cas', `{"expected":${nested(65)},"value":1}`],
      ] as const) {
        const r = await request(a, target.endsWith('/cas') ? 'POST' : 'PUT', target, { body, headers: JSON_TYPE });
        expect(r.status, what).to.equal(400);
        expect(r.json().code, what).to.equal('BAD_REQUEST');
        expect(r.json().error, what).to.match(/nested/).and.not.match(/TypeError|at .*\.js/);
      }
      expect(await read(leader, { type: 'get', key: 'deep' })).to.equal(null);
      const shallow = nested(20);
      expect((await request(a, 'PUT', '/kv/deep', { body: shallow, headers: JSON_TYPE })).status).to.equal(204);
      expect((await request(a, 'GET', '/kv/deep')).text).to.equal(shallow);
      const bracketsInString = JSON.stringify('['.repeat(200) + '\\"{');
      expect((await request(a, 'PUT', '/kv/deep-string', { body: bracketsInString, headers: JSON_TYPE })).status).to.equal(204);
      expect(await read(leader, { type: 'get', key: 'deep-string' })).to.equal(JSON.parse(bracketsInString));
    });

    it('a 500 says "internal error" and its code, never the error\'s text (which goes to onInternalError)', async function () {
      const seen: unknown[] = [];
      let next: Error = new Error('secret detail in /srv/raft/internal.js');
      const backend: HttpBackend = {
        op: async () => {
          throw next;
        },
        read: async () => 'v',
        status: async () => ({ role: 'leader', term: 1 }),
      };
      const s = await serve({ node: 'stub', listen: '127.0.0.1:0', backend, onInternalError: (err) => seen.push(err) });
      const plain = await request(s.address(), 'PUT', '/kv/x', { body: 'v' });
      expect(plain.status).to.equal(500);
      expect(plain.json()).to.deep.equal({ error: 'internal error', code: 'INTERNAL' });
      next = new StorageError('MDB_PANIC in /srv/raft/data.mdb');
      const storage = await request(s.address(), 'DELETE', '/kv/x');
      expect(storage.status).to.equal(500);
      expect(storage.json()).to.deep.equal({ error: 'internal error', code: 'STORAGE_ERROR', outcome: 'unknown' });
      expect(seen.map((e) => (e as Error).message)).to.deep.equal(['secret detail in /srv/raft/internal.js', 'MDB_PANIC in /srv/raft/data.mdb']);
    });

    it('bounds the requests in flight: one more gets 503 with Retry-After, and is served once they are done', async function () {
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      let reads = 0;
      const backend: HttpBackend = {
        op: async () => null,
        read: async () => {
          reads++;
          await gate;
          return 'v';
        },
        status: async () => ({ role: 'leader', term: 1 }),
      };
      const s = await serve({ node: 'stub', listen: '127.0.0.1:0', backend, maxInFlightRequests: 2 });
      const a = s.address();
      const held = [request(a, 'GET', '/kv/a'), request(a, 'GET', '/kv/b')];
      await waitFor('two reads in flight', async () => (reads === 2 ? true : undefined));
      const refused = await request(a, 'GET', '/kv/c');
      expect(refused.status).to.equal(503);
      expect(refused.headers['retry-after']).to.equal('1');
      expect(refused.json()).to.include({ code: 'OVERLOADED' });
      expect((await request(a, 'PUT', '/kv/c', { body: 'x' })).status).to.equal(503);
      release();
      for (const r of await Promise.all(held)) expect(r.text).to.equal('v');
      expect((await request(a, 'GET', '/kv/c')).status).to.equal(200);
    });

    it('bounds the connections: one more is closed at once, and a freed slot is usable again', async function () {
      const backend: HttpBackend = { op: async () => null, read: async () => 'v', status: async () => ({ role: 'leader', term: 1 }) };
      const s = await serve({ node: 'stub', listen: '127.0.0.1:0', backend, maxConnections: 2 });
      const a = s.address();
      const agents = [0, 1].map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
      try {
        // Two keep-alive connections, each answered once (so the server has counted both).
        for (const agent of agents) expect((await request(a, 'GET', '/status', { agent })).status).to.equal(200);
        const [host, port] = splitAddr(a);
        const third = await new Promise<string>((resolve) => {
          const sock = net.connect({ host, port }, () => sock.write(`GET /status HTTP/1.1\r\nHost: ${a}\r\n\r\n`));
          let got = '';
          sock.on('data', (c: Buffer) => (got += c.toString()));
          sock.on('error', () => undefined);
          sock.on('close', () => resolve(got));
        });
        expect(third).to.equal('');
        agents[0]!.destroy();
        await waitFor('a freed connection slot', async () => ((await request(a, 'GET', '/status')).status === 200 ? true : undefined));
      } finally {
        for (const agent of agents) agent.destroy();
      }
    });

    it('refuses bad security options', async function () {
      for (const bad of [
        { allowedHosts: ['http://x'] },
        { allowedHosts: ['a:99999'] },
        { allowedOrigins: ['null'] },
        { allowedOrigins: ['app.example'] },
        { maxConnections: 0 },
        { maxInFlightRequests: 1.5 },
      ]) {
        let err: unknown;
        await startHttpServer({ node: 'x', listen: '127.0.0.1:0', ...bad } as HttpServerOptions).catch((e) => (err = e));
        expect(err instanceof TypeError || err instanceof RangeError, JSON.stringify(bad)).to.equal(true);
      }
    });
  });

  describe('TLS', function () {
    let certDir: string;
    const f = (name: string) => path.join(certDir, name);
    const file = (name: string) => fs.readFileSync(f(name));

    before(function () {
      try {
        execFileSync('openssl', ['version'], { stdio: 'ignore' });
      } catch {
        console.log('      (openssl not installed: skipping the TLS tests)');
        this.skip();
      }
      certDir = tempDir('actor-raft-http-tls-');
      const ossl = (...args: string[]) => execFileSync('openssl', args, { cwd: certDir, stdio: ['ignore', 'ignore', 'pipe'] });
      const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
      for (const ca of ['ca', 'rogue-ca']) {
        ossl('req', '-x509', ...ec, '-keyout', `${ca}.key`, '-out', `${ca}.crt`, '-days', '2', '-subj', `/CN=actor-raft ${ca}`);
      }
      const leaf = (name: string, ca: string, ext: string) => {
        fs.writeFileSync(f(`${name}.ext`), ext);
        ossl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
        ossl('x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.crt`, '-days', '2', '-extfile', `${name}.ext`);
      };
      leaf('server', 'ca', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
      leaf('client', 'ca', 'extendedKeyUsage=clientAuth\n');
      leaf('rogue', 'rogue-ca', 'extendedKeyUsage=clientAuth\n');
    });

    after(function () {
      if (certDir) fs.rmSync(certDir, { recursive: true, force: true });
    });

    it('serves HTTPS with a server certificate', async function () {
      const s = await serve({ node: follower, listen: '127.0.0.1:0', tls: { cert: f('server.crt'), key: f('server.key') } });
      const put = await request(s.address(), 'PUT', '/kv/tls', { body: 'secret', tls: { ca: file('ca.crt') } });
      expect(put.status).to.equal(204);
      const got = await request(s.address(), 'GET', '/kv/tls', { tls: { ca: file('ca.crt') } });
      expect(got.text).to.equal('secret');
      // A client that does not trust the server's CA refuses the server.
      let err: NodeJS.ErrnoException | undefined;
      await request(s.address(), 'GET', '/status', { tls: {} }).catch((e) => (err = e));
      expect(err?.code).to.match(/UNABLE_TO_VERIFY_LEAF_SIGNATURE|SELF_SIGNED|UNABLE_TO_GET_ISSUER/);
      // Plain HTTP on the TLS port gets nowhere, and the server goes on.
      await request(s.address(), 'GET', '/status').then(
        (r) => expect(r.status).to.not.equal(200),
        () => undefined,
      );
      expect((await request(s.address(), 'GET', '/status', { tls: { ca: file('ca.crt') } })).status).to.equal(200);
    });

    it('with requestCert, refuses clients without a certificate or with one from another CA', async function () {
      const s = await serve({
        node: leader,
        listen: '127.0.0.1:0',
        tls: { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key'), requestCert: true },
      });
      const a = s.address();
      const good = { ca: file('ca.crt'), cert: file('client.crt'), key: file('client.key') };
      expect((await request(a, 'PUT', '/kv/mtls', { body: 'ok', tls: good })).status).to.equal(204);
      expect((await request(a, 'GET', '/kv/mtls', { tls: good })).text).to.equal('ok');
      for (const [what, tls] of [
        ['no certificate', { ca: file('ca.crt') }],
        ['a certificate of another CA', { ca: file('ca.crt'), cert: file('rogue.crt'), key: file('rogue.key') }],
      ] as const) {
        let answered: number | null = null;
        let err: unknown;
        await request(a, 'PUT', '/kv/mtls', { body: 'intruder', tls }).then(
          (r) => (answered = r.status),
          (e) => (err = e),
        );
        expect(answered, what).to.equal(null);
        expect(err, what).to.be.instanceOf(Error);
      }
      expect(await read(leader, { type: 'get', key: 'mtls' })).to.equal('ok');
      expect((await request(a, 'GET', '/status', { tls: good })).status).to.equal(200);
    });
  });

  describe('fuzz', function () {
    const seed = Number(process.env.HTTP_FUZZ_SEED ?? 0x5eed1);
    const ALLOWED = new Set([200, 204, 307, 400, 403, 404, 405, 408, 413, 415, 421, 431, 503]);

    it(`survives a few hundred random, malformed, oversized and aborted requests (seed ${seed})`, async function () {
      this.timeout(120_000);
      const rnd = prng(seed);
      const int = (n: number) => Math.floor(rnd() * n);
      const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
      const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
      const targets = [
        await serve({ node: leader, listen: '127.0.0.1:0', maxBodyBytes: 2048, opTimeoutMs: 5_000 }),
        await serve({ node: follower, listen: '127.0.0.1:0', maxBodyBytes: 2048, opTimeoutMs: 5_000 }),
      ].map((s) => s.address());
      const KEY_CHARS = 'abcxyz019-_.~ /%?#é☃😀';
      const key = () => encodeURIComponent(Array.from({ length: 1 + int(12) }, () => pick([...KEY_CHARS])).join(''));
      const paths = [
        () => `/kv/${key()}`,
        () => `/kv/fz${int(8)}`,
        () => `/kv/fz${int(8)}/cas`,
        () => `/kv/${key()}/cas`,
        () => '/status',
        () => '/metrics',
        () => pick(['/', '/kv', '/kv/', '/kv/a/b/c', '//kv//x', '/status?x=1', '/kv/%', '/kv/%zz', '/kv/%E0%A4', '/metrics/x', '/kv/x/CAS']),
        () => `/kv/${'k'.repeat(1000 + int(100))}`,
      ];
      const contentTypes = [undefined, 'application/json', 'application/octet-stream', 'text/plain', 'application/merge-patch+json', 'x/y;;;=', ''];
      const randomJson = (depth = 0): unknown => {
        switch (int(depth > 2 ? 4 : 6)) {
          case 0:
            return int(1000) - 500;
          case 1:
            return pick(['', 'a', 'é☃', 'x'.repeat(int(50))]);
          case 2:
            return pick([true, false, null]);
          case 3:
            return rnd();
          case 4:
            return Array.from({ length: int(4) }, () => randomJson(depth + 1));
          default:
            return Object.fromEntries(Array.from({ length: int(4) }, (_, i) => [pick(['expected', 'value', `k${i}`]), randomJson(depth + 1)]));
        }
      };
      const bodies = [
        () => undefined,
        () => bytes(int(300)),
        () => bytes(2049 + int(4000)), // over the limit
        () => JSON.stringify(randomJson()),
        () => JSON.stringify({ expected: pick([null, 'a', 1]), value: randomJson() }),
        () => '{"expected":',
        () => 'plain text ' + int(1000),
      ];

      const counts = new Map<string, number>();
      const tally = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);
      const failures: string[] = [];

      const structured = async (a: string) => {
        const target = pick(paths)();
        // Mostly a method the route takes, so that many requests reach the cluster.
        const fitting = target.endsWith('/cas') ? ['POST'] : target.startsWith('/kv/') ? ['GET', 'PUT', 'DELETE', 'HEAD'] : ['GET'];
        const method = int(10) < 6 ? pick(fitting) : pick(['GET', 'PUT', 'POST', 'DELETE', 'HEAD', 'PATCH', 'OPTIONS']);
        const body = method === 'GET' && int(2) === 0 ? undefined : pick(bodies)();
        const ct = pick(contentTypes);
        const headers: Record<string, string> = {};
        if (ct !== undefined) headers['Content-Type'] = ct;
        if (int(4) === 0) headers['X-Fuzz'] = bytes(int(40)).toString('base64');
        if (int(10) === 0) headers.Expect = '100-continue';
        if (int(12) === 0) headers.Host = pick(['evil.example', `localhost:${splitAddr(a)[1]}`, 'x', '[::1]:1']);
        if (int(12) === 0) headers.Origin = pick(['http://evil.example', 'null', `http://${a}`, '%%%']);
        const what = `${method} ${target.slice(0, 60)} (${body === undefined ? 'no body' : `${Buffer.byteLength(body)} bytes`})`;
        try {
          const r = await request(a, method, target, { body, headers, chunked: int(3) === 0 });
          tally(String(r.status));
          if (!ALLOWED.has(r.status)) failures.push(`${what} → ${r.status} ${r.text.slice(0, 200)}`);
          if (r.status >= 400 && method !== 'HEAD') {
            try {
              const j = r.json();
              if (typeof j.error !== 'string') failures.push(`${what} → ${r.status} without an error field`);
            } catch {
              failures.push(`${what} → ${r.status} with a body that is not JSON: ${r.text.slice(0, 100)}`);
            }
          }
        } catch (err) {
          // Every well-formed request gets an answer, even one with a body over the limit.
          failures.push(`${what} → ${String(err)}`);
        }
      };

      /** Bytes on a raw socket, maybe cut short; resolves once the socket is closed. */
      const raw = (a: string, payload: Buffer, how: 'end' | 'destroy' | 'destroy-later') =>
        new Promise<void>((resolve) => {
          const [host, port] = splitAddr(a);
          const sock = net.connect({ host, port });
          const cap = setTimeout(() => sock.destroy(), 1_500);
          sock.on('error', () => undefined);
          sock.on('data', () => undefined);
          sock.on('close', () => {
            clearTimeout(cap);
            resolve();
          });
          sock.on('connect', () => {
            sock.write(payload);
            if (how === 'end') sock.end();
            else if (how === 'destroy') sock.destroy();
            else setTimeout(() => sock.destroy(), int(30));
          });
        });
      const rawCases = [
        () => bytes(1 + int(500)),
        () => Buffer.from(`PUT /kv/fz${int(8)} HTTP/1.1\r\nHost: x\r\nContent-Le`),
        () => Buffer.from(`PUT /kv/fz${int(8)} HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789`),
        () => Buffer.from(`PUT /kv/fz${int(8)} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n`),
        () => Buffer.from(`PUT /kv/fz${int(8)} HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc`),
        () => Buffer.from(`GET /kv/fz${int(8)} HTTP/1.1\r\nHost: x\r\n\r\nGET /status HTTP/1.1\r\nHost: x\r\n\r\nGET /metrics HTTP/1.1\r\nHost: x\r\n\r\n`),
        () => Buffer.from(`GET /kv/fz HTTP/1.1\r\nHost: x\r\nX-Big: ${'h'.repeat(20_000)}\r\n\r\n`),
        () => Buffer.from(`PUT /kv/fz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\nContent-Length: 20\r\n\r\n`),
        () => Buffer.from(`GET /kv/\u0000\u00ff HTTP/1.1\r\nHost: x\r\n\r\n`, 'latin1'),
        () => Buffer.concat([Buffer.from(`PUT /kv/fz${int(8)} HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n`), bytes(int(5000))]),
        () => Buffer.from(`BREW /kv/x HTTP/1.1\r\nHost: x\r\n\r\n`),
        () => Buffer.from(`GET /kv/x HTTP/9.9\r\n\r\n`),
      ];

      const N = 320;
      const jobs: (() => Promise<void>)[] = [];
      for (let i = 0; i < N; i++) {
        const a = pick(targets);
        if (int(10) < 7) jobs.push(() => structured(a));
        else {
          const payload = pick(rawCases)();
          const how = pick(['end', 'destroy', 'destroy-later'] as const);
          jobs.push(async () => {
            tally(`raw ${how}`);
            await raw(a, payload, how);
          });
        }
      }
      // A few at a time, as concurrent clients would.
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < jobs.length) await jobs[next++]!();
        }),
      );
      expect(failures, `seed ${seed}: ${failures.join('\n')}`).to.deep.equal([]);
      if (process.env.HTTP_FUZZ_VERBOSE) console.log(JSON.stringify([...counts]));
      expect(counts.get('200') ?? 0, JSON.stringify([...counts])).to.be.greaterThan(10);

      // Every server still answers, and the cluster still commits writes that read back.
      for (const a of [...targets, ...IDS.map(addr)]) {
        expect((await request(a, 'GET', '/status')).status).to.equal(200);
      }
      expect((await request(targets[1]!, 'PUT', '/kv/after-fuzz', { body: 'still here' })).status).to.equal(204);
      expect((await request(addr(leader), 'GET', '/kv/after-fuzz')).text).to.equal('still here');
      await op(follower, { type: 'set', key: 'after-fuzz-op', value: 1 });
      expect(await read(leader, { type: 'get', key: 'after-fuzz-op' })).to.equal(1);
      await waitForConverged(IDS);
      const m = parseMetrics((await request(targets[0]!, 'GET', '/metrics')).text);
      const total = [...m].filter(([k]) => k.startsWith('raft_http_requests_total')).reduce((n, [, v]) => n + v, 0);
      expect(total).to.be.greaterThan(50);
    });
  });

  describe('stopped peers', function () {
  it('503 when the fronted peer is not running (never started, or stopped); metrics say raft_node_up 0', async function () {
    const ghost = await serve({ node: 'http-ghost', listen: '127.0.0.1:0' });
    for (const [method, target, body] of [
      ['GET', '/kv/x', undefined],
      ['PUT', '/kv/x', 'v'],
      ['DELETE', '/kv/x', undefined],
      ['POST', '/kv/x/cas', '{"expected":null,"value":1}'],
      ['GET', '/status', undefined],
    ] as const) {
      const r = await request(ghost.address(), method, target, body === undefined ? {} : { body, headers: method === 'POST' ? JSON_TYPE : {} });
      expect(r.status, `${method} ${target}`).to.equal(503);
      expect(r.json().code).to.equal('UNKNOWN_NODE');
      expect(r.headers['retry-after']).to.equal('1');
    }
    const m = parseMetrics((await request(ghost.address(), 'GET', '/metrics')).text);
    expect(m.get('raft_node_up{node="http-ghost"}')).to.equal(0);

    // Stop a follower: its server answers 503, the others go on.
    const victim = IDS.find((id) => id !== leader && id !== follower)!;
    await stopNode(victim);
    const r = await request(addr(victim), 'PUT', '/kv/x', { body: 'v' });
    expect(r.status).to.equal(503);
    expect(r.json().code).to.equal('NODE_STOPPED');
    expect((await request(addr(victim), 'GET', '/status')).status).to.equal(503);
    expect(parseMetrics((await request(addr(victim), 'GET', '/metrics')).text).get(`raft_node_up{node="${victim}"}`)).to.equal(0);
    expect((await request(addr(follower), 'PUT', '/kv/after-stop', { body: 'two of three' })).status).to.equal(204);
    expect((await request(addr(leader), 'GET', '/kv/after-stop')).text).to.equal('two of three');
  });
  });
});
