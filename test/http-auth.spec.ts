/**
 * Client roles of the HTTP interface (src/http/auth.ts, issue 14 item 4): the token file,
 * each role allowed and refused where it should be, 401 and 403 answers, open metrics,
 * client certificates mapped to roles (when `openssl` is installed), the warning for a server
 * open to other machines, the CLI's token commands, and a seeded fuzz test with a token file.
 */
import { expect } from 'chai';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { op, read, setConfig } from '../src/api/index.js';
import { NotLeaderError } from '../src/errors.js';
import { createToken, parseTokenFile, requiredRole, ROLES, TokenFileError, type Role } from '../src/http/auth.js';
import { startHttpServer, type HttpServer, type HttpServerOptions } from '../src/http/server.js';
import { startPeers, stopAll, tempDir, waitFor, waitForConverged, waitForLeader } from './helpers/cluster.js';
import { prng, request, splitAddr, type Reply } from './helpers/http-client.js';
import { freePorts, haveOpenssl, makePki } from './helpers/net.js';

const IDS = ['auth-a', 'auth-b', 'auth-c'];
const JSON_TYPE = { 'Content-Type': 'application/json' };
const bearer = (token: string) => ({ Authorization: `Bearer ${token}` });

/** Every request a role is checked on, with the role it needs. */
const MATRIX: { what: string; method: string; target: string; body?: string; headers?: Record<string, string>; needs: Role }[] = [
  { what: 'GET a key', method: 'GET', target: '/kv/m', needs: 'read' },
  { what: 'HEAD a key', method: 'HEAD', target: '/kv/m', needs: 'read' },
  { what: 'GET /status', method: 'GET', target: '/status', needs: 'read' },
  { what: 'GET /metrics', method: 'GET', target: '/metrics', needs: 'read' },
  { what: 'PUT a key', method: 'PUT', target: '/kv/m', body: 'v', needs: 'write' },
  { what: 'cas a key', method: 'POST', target: '/kv/m/cas', body: '{"expected":"v","value":"w"}', headers: JSON_TYPE, needs: 'write' },
  { what: 'DELETE a key', method: 'DELETE', target: '/kv/m', needs: 'write' },
  { what: 'GET under /admin', method: 'GET', target: '/admin/members', needs: 'admin' },
  { what: 'POST under /admin', method: 'POST', target: '/admin/leader', body: '{}', headers: JSON_TYPE, needs: 'admin' },
  { what: '/admin spelled %61dmin', method: 'GET', target: '/%61dmin/members', needs: 'admin' },
  { what: '/admin behind a dot segment', method: 'POST', target: '/kv/../admin/leader', body: '{}', headers: JSON_TYPE, needs: 'admin' },
  { what: '/ADMIN upper-cased', method: 'GET', target: '/ADMIN/members', needs: 'admin' },
];

const rank = (r: Role) => ROLES.indexOf(r);

describe('http: client roles (tokens, client certificates)', function () {
  let root: string;
  let leader: string;
  const tokens = {} as Record<Role, string>;
  let tokenFile: string;
  const servers: HttpServer[] = [];

  async function serve(options: Omit<HttpServerOptions, 'listen'> & { listen?: string }): Promise<HttpServer> {
    const s = await startHttpServer({ listen: '127.0.0.1:0', ...options });
    servers.push(s);
    return s;
  }

  before(async function () {
    root = tempDir('actor-raft-http-auth-');
    const lines = ['# tokens of the http-auth spec', ''];
    for (const role of ROLES) {
      const made = createToken(role, `${role}-client`);
      tokens[role] = made.token;
      lines.push(made.line);
    }
    tokenFile = path.join(root, 'tokens');
    fs.writeFileSync(tokenFile, lines.join('\n') + '\n');
    await startPeers(IDS, root);
    await setConfig(IDS[0]!, IDS);
    ({ leader } = await waitForLeader(IDS));
  });

  after(async function () {
    await Promise.all(servers.map((s) => s.close()));
    await stopAll();
    fs.rmSync(root, { recursive: true, force: true });
  });

  describe('the token file', function () {
    it('createToken makes a random token and the line that admits it; the line holds its hash only', function () {
      const a = createToken('write', 'ci');
      const b = createToken('write', 'ci');
      expect(a.token).to.not.equal(b.token);
      expect(a.token).to.match(/^art_[A-Za-z0-9_-]{43}$/);
      expect(a.line).to.match(/^write ci sha256:[0-9a-f]{64}$/);
      expect(a.line).to.not.include(a.token.slice(4));
      const [t] = parseTokenFile('f', `  # a comment\n\n${a.line}   # the CI\n`);
      expect(t!.role).to.equal('write');
      expect(t!.name).to.equal('ci');
      expect(() => createToken('root' as Role, 'x')).to.throw(TypeError);
      expect(() => createToken('read', 'has space')).to.throw(TypeError);
    });

    it('refuses a token written in plain, a bad role, a duplicate name, and says which line (never its text)', function () {
      const good = createToken('read', 'r').line;
      const cases: [string, RegExp][] = [
        ['write ci art_s3cr3t-plaintext-token', /line 2: the token must be stored as sha256:/],
        ['art_s3cr3t-plaintext-token', /line 2: expected 'ROLE NAME sha256:HEX'/],
        ['write ci sha256:abcd', /line 2: the token must be stored as sha256:/],
        ['root ci sha256:' + 'a'.repeat(64), /line 2: the role must be one of read, write, admin/],
        [good, /line 2: the name 'r' is used twice/],
      ];
      for (const [line, message] of cases) {
        let err: unknown;
        try {
          parseTokenFile('tokens.txt', `${good}\n${line}\n`);
        } catch (e) {
          err = e;
        }
        expect(err, line).to.be.instanceOf(TokenFileError);
        expect((err as TokenFileError).code).to.equal('TOKEN_FILE_INVALID');
        expect((err as Error).message, line).to.match(message).and.include('tokens.txt');
        expect((err as Error).message, line).to.not.include('s3cr3t');
      }
    });

    it('a server does not start on a token file with a plaintext token, or one it cannot read', async function () {
      const plain = path.join(root, 'plain-tokens');
      fs.writeFileSync(plain, 'admin ops art_not-hashed\n');
      for (const file of [plain, path.join(root, 'no-such-file')]) {
        let err: unknown;
        await serve({ node: leader, tokenFile: file }).catch((e) => (err = e));
        expect(err, file).to.be.instanceOf(TokenFileError);
        expect((err as Error).message).to.include(file).and.not.include('not-hashed');
      }
    });

    it('refuses bad options: a role that is none, certificate roles without client certificates', async function () {
      for (const bad of [{ clientCertRoles: { x: 'root' } }, { clientCertRoles: { x: 'read' } }, { openMetrics: 'yes' }, { tokenFile: '' }]) {
        let err: unknown;
        await startHttpServer({ node: leader, listen: '127.0.0.1:0', ...bad } as unknown as HttpServerOptions).catch((e) => (err = e));
        expect(err, JSON.stringify(bad)).to.be.instanceOf(TypeError);
      }
    });

    it('requiredRole: /admin in any spelling needs admin; open paths are open only exactly', function () {
      expect(requiredRole('GET', '/kv/admin', false)).to.equal('read');
      expect(requiredRole('PUT', '/kv/admin', false)).to.equal('write');
      expect(requiredRole('GET', '/admin', false)).to.equal('admin');
      expect(requiredRole('GET', '/kv\\..\\admin\\x', false)).to.equal('admin');
      expect(requiredRole('GET', '/%2e%2e/admin/x', false)).to.equal('admin');
      expect(requiredRole('GET', '/metrics?x=1', true)).to.equal(null);
      expect(requiredRole('HEAD', '/health', true)).to.equal(null);
      expect(requiredRole('GET', '/ready', true)).to.equal(null);
      expect(requiredRole('GET', '/metrics', false)).to.equal('read');
      expect(requiredRole('POST', '/metrics', true)).to.equal('write');
      expect(requiredRole('GET', '/metrics/x', true)).to.equal('read');
      expect(requiredRole('GET', '/x/../metrics', true)).to.equal('read');
    });
  });

  describe('bearer tokens', function () {
    let a: string;

    before(async function () {
      a = (await serve({ node: leader, tokenFile })).address();
    });

    /** Sends one row of MATRIX with `token` (none: undefined), after setting the key to 'v'. */
    async function attempt(row: (typeof MATRIX)[number], token: string | undefined): Promise<Reply> {
      await op(leader, { type: 'set', key: 'm', value: 'v' });
      return request(a, row.method, row.target, { ...(row.body === undefined ? {} : { body: row.body }), headers: { ...row.headers, ...(token ? bearer(token) : {}) } });
    }

    for (const role of ROLES) {
      it(`the ${role} role is allowed what ${role} may, and refused (403, nothing changed) the rest`, async function () {
        for (const row of MATRIX) {
          const r = await attempt(row, tokens[role]);
          const what = `${role}: ${row.what} → ${r.status} ${r.text}`;
          if (rank(role) >= rank(row.needs)) {
            expect(r.status, what).to.not.be.oneOf([401, 403]);
            expect(r.status, what).to.be.below(row.needs === 'admin' ? 500 : 300); // /admin routes may not exist yet: 404
          } else {
            expect(r.status, what).to.equal(403);
            expect(r.json(), what).to.deep.include({ code: 'FORBIDDEN', role: row.needs });
            expect(r.json().error, what).to.include(`needs the ${row.needs} role`).and.include(`'${role}-client'`);
            expect(r.headers['www-authenticate'], what).to.match(/^Bearer .*error="insufficient_scope"/);
            expect(await read(leader, { type: 'get', key: 'm' }), what).to.equal('v');
          }
        }
      });
    }

    it('without a token: 401 with WWW-Authenticate: Bearer, for every route, and nothing changes', async function () {
      for (const row of MATRIX) {
        const r = await attempt(row, undefined);
        expect(r.status, row.what).to.equal(401);
        expect(r.headers['www-authenticate'], row.what).to.match(/^Bearer realm="actor-raft"$/);
        if (row.method !== 'HEAD') expect(r.json(), row.what).to.deep.include({ code: 'UNAUTHORIZED' });
        expect(await read(leader, { type: 'get', key: 'm' }), row.what).to.equal('v');
      }
      // Unknown routes too: a client without a token learns nothing about what exists.
      expect((await request(a, 'GET', '/no/such/route')).status).to.equal(401);
    });

    it('a wrong, malformed or oversized token is 401 invalid_token, even for reads', async function () {
      const wrong = createToken('admin', 'not-in-the-file').token;
      const headers = [
        bearer(wrong),
        bearer(tokens.admin + 'x'),
        bearer(tokens.admin.slice(0, -1)),
        { Authorization: `Basic ${Buffer.from(`admin:${tokens.admin}`).toString('base64')}` },
        { Authorization: `${tokens.admin}` },
        { Authorization: 'Bearer' },
        { Authorization: `Bearer ${tokens.admin} ${tokens.admin}` },
        { Authorization: `Bearer ${'a'.repeat(5000)}` },
        { Authorization: 'Bearer \u00ff\u00fe' },
      ];
      for (const h of headers) {
        const r = await request(a, 'GET', '/kv/m', { headers: h });
        expect(r.status, h.Authorization.slice(0, 40)).to.equal(401);
        expect(r.json().code).to.equal('UNAUTHORIZED');
        // No credential was recognised; the message says so without echoing it.
        expect(r.text).to.not.include(tokens.admin.slice(4));
      }
      const r = await request(a, 'PUT', '/kv/m', { body: 'x', headers: bearer(wrong) });
      expect(r.headers['www-authenticate']).to.match(/^Bearer realm="actor-raft", error="invalid_token"$/);
      expect((await request(a, 'GET', '/kv/m', { headers: { Authorization: `bearer ${tokens.read}` } })).status).to.equal(200);
    });

    it('/metrics, /health and /ready are open only with openMetrics; the rest still needs a role', async function () {
      const open = (await serve({ node: leader, tokenFile, openMetrics: true })).address();
      expect((await request(a, 'GET', '/metrics')).status).to.equal(401);
      const m = await request(open, 'GET', '/metrics');
      expect(m.status).to.equal(200);
      expect(m.text).to.include('raft_node_up');
      expect((await request(open, 'HEAD', '/metrics')).status).to.equal(200);
      // /health and /ready pass the role check (404 until their routes exist, never 401).
      for (const p of ['/health', '/ready']) expect((await request(open, 'GET', p)).status, p).to.not.be.oneOf([401, 403]);
      for (const [method, target] of [['GET', '/status'], ['GET', '/kv/m'], ['POST', '/metrics'], ['GET', '/metrics/x'], ['GET', '/admin/members']]) {
        expect((await request(open, method!, target!)).status, `${method} ${target}`).to.equal(401);
      }
    });

    it('reloadTokens reads the file again: a token removed is refused, one added admitted; a bad file keeps the old tokens', async function () {
      const file = path.join(root, 'reloaded-tokens');
      const first = createToken('write', 'first');
      const second = createToken('write', 'second');
      fs.writeFileSync(file, first.line + '\n');
      const s = await serve({ node: leader, tokenFile: file });
      const put = (token: string) => request(s.address(), 'PUT', '/kv/reload', { body: 'r', headers: bearer(token) });
      expect((await put(first.token)).status).to.equal(204);
      expect((await put(second.token)).status).to.equal(401);
      fs.writeFileSync(file, second.line + '\n');
      await s.reloadTokens();
      expect((await put(first.token)).status).to.equal(401);
      expect((await put(second.token)).status).to.equal(204);
      fs.writeFileSync(file, `write third ${second.token}\n`);
      let err: unknown;
      await s.reloadTokens().catch((e) => (err = e));
      expect(err).to.be.instanceOf(TokenFileError);
      expect((await put(second.token)).status).to.equal(204);
    });

    it('a CORS preflight of a listed origin needs no token and grants the Authorization header', async function () {
      const s = (await serve({ node: leader, tokenFile, allowedOrigins: ['https://app.example'] })).address();
      const r = await request(s, 'OPTIONS', '/kv/m', { headers: { Origin: 'https://app.example', 'Access-Control-Request-Method': 'PUT' } });
      expect(r.status).to.equal(204);
      expect(r.headers['access-control-allow-headers']).to.include('Authorization');
      const put = await request(s, 'PUT', '/kv/cors', { body: 'c', headers: { Origin: 'https://app.example', ...bearer(tokens.write) } });
      expect(put.status).to.equal(204);
      expect((await request(s, 'PUT', '/kv/cors', { body: 'c', headers: { Origin: 'https://app.example' } })).status).to.equal(401);
    });
  });

  describe('open servers', function () {
    it('warns at start when serving other machines with no authentication, not on loopback or with tokens', async function () {
      const warnings: string[] = [];
      const onWarning = (w: string) => warnings.push(w);
      await serve({ node: leader, listen: '0.0.0.0:0', onWarning });
      expect(warnings).to.have.length(1);
      expect(warnings[0]).to.match(/^HTTP on 0\.0\.0\.0:\d+ is open to anyone/).and.include('--token-file');
      await serve({ node: leader, listen: '0.0.0.0:0', tokenFile, onWarning });
      await serve({ node: leader, listen: '127.0.0.1:0', onWarning });
      await serve({ node: leader, listen: 'localhost:0', onWarning });
      expect(warnings).to.have.length(1);
    });

    it('without a token file the interface stays open (on loopback)', async function () {
      const s = (await serve({ node: leader })).address();
      expect((await request(s, 'PUT', '/kv/open', { body: 'o' })).status).to.equal(204);
      expect((await request(s, 'GET', '/kv/open')).text).to.equal('o');
    });
  });

  describe('client certificates', function () {
    let pki: ReturnType<typeof makePki>;
    let a: string;
    const tlsOf = (name: string) => ({ ca: fs.readFileSync(pki.ca), cert: fs.readFileSync(pki.certs[name]!.cert), key: fs.readFileSync(pki.certs[name]!.key) });

    before(async function () {
      this.timeout(120_000);
      if (!haveOpenssl()) {
        console.log('      (openssl not installed: skipping the client certificate tests)');
        this.skip();
      }
      pki = makePki(path.join(root, 'pki'), ['server', 'reader', 'writer', 'operator', 'stranger']);
      const s = await serve({
        node: leader,
        tls: { ca: pki.ca, cert: pki.certs.server!.cert, key: pki.certs.server!.key, requestCert: true },
        tokenFile,
        clientCertRoles: { reader: 'read', writer: 'write', operator: 'admin' },
      });
      a = s.address();
    });

    it('a certificate\'s name gives its role; a name without a role needs a token', async function () {
      const status = async (cert: string, method: string, target: string, headers: Record<string, string> = {}) =>
        (await request(a, method, target, { tls: tlsOf(cert), headers, ...(method === 'PUT' ? { body: 'c' } : {}) })).status;
      expect(await status('reader', 'GET', '/status')).to.equal(200);
      expect(await status('reader', 'PUT', '/kv/cert')).to.equal(403);
      expect(await status('writer', 'PUT', '/kv/cert')).to.equal(204);
      expect(await status('writer', 'GET', '/admin/members')).to.equal(403);
      expect(await status('operator', 'GET', '/admin/members')).to.not.be.oneOf([401, 403]);
      expect(await status('stranger', 'GET', '/status')).to.equal(401);
      // A token adds its role; an invalid one is refused even with a good certificate.
      expect(await status('stranger', 'PUT', '/kv/cert', bearer(tokens.write))).to.equal(204);
      expect(await status('reader', 'PUT', '/kv/cert', bearer(tokens.write))).to.equal(204);
      expect(await status('writer', 'GET', '/admin/members', bearer(tokens.read))).to.equal(403);
      expect(await status('operator', 'GET', '/status', bearer('art_wrong'))).to.equal(401);
    });
  });

  describe('the CLI', function () {
    const CLI = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli.js');
    let proc: ChildProcess | null = null;
    const output: string[] = [];

    const run = (args: string[], env: Record<string, string> = {}) =>
      new Promise<{ code: number; out: string; err: string }>((resolve) => {
        execFile(process.execPath, [CLI, ...args], { encoding: 'utf8', timeout: 30_000, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
          resolve({ code: error === null ? 0 : typeof error.code === 'number' ? error.code : -1, out: stdout.trim(), err: stderr.trim() });
        });
      });

    /** `actor-raft node`, a cluster of one on loopback; resolves once it has bootstrapped. */
    async function startCliNode(http: string, extra: string[]): Promise<void> {
      const [raft] = await freePorts(1);
      output.length = 0;
      const dir = fs.mkdtempSync(path.join(root, 'cli-'));
      proc = spawn(process.execPath, [CLI, 'node', '--id', 'c1', '--listen', `127.0.0.1:${raft}`, '--peers', `c1=127.0.0.1:${raft}`, '--data', dir, '--http', http, '--bootstrap', ...extra], {
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      const keep = (chunk: Buffer) => output.push(...chunk.toString().split('\n').filter((l) => l !== ''));
      proc.stdout!.on('data', keep);
      proc.stderr!.on('data', keep);
      await waitFor('the CLI node to bootstrap', async () => (output.some((l) => l.includes('bootstrapped')) ? true : undefined), 30_000);
    }

    async function stopCliNode(): Promise<void> {
      const p = proc;
      proc = null;
      if (p === null || p.exitCode !== null) return;
      await new Promise<void>((resolve) => {
        // A node that does not stop on SIGTERM in time is killed: the test must end on its own.
        const kill = setTimeout(() => p.kill('SIGKILL'), 15_000);
        p.once('exit', () => {
          clearTimeout(kill);
          resolve();
        });
        p.kill('SIGTERM');
      });
    }

    afterEach(stopCliNode);

    it('token create prints a token and its line; put/get send it (--token-file or ACTOR_RAFT_TOKEN)', async function () {
      this.timeout(60_000);
      const made = await run(['token', 'create', '--role', 'read', '--name', 'cli-reader']);
      expect(made.code).to.equal(0);
      const [readToken, readLine] = made.out.split('\n');
      expect(readLine).to.match(/^read cli-reader sha256:[0-9a-f]{64}$/);
      expect((await run(['token', 'create', '--role', 'root', '--name', 'x'])).code).to.equal(2);
      const w = createToken('write', 'cli-writer');
      const file = path.join(root, 'cli-tokens');
      fs.writeFileSync(file, `${readLine}\n${w.line}\n`);
      const readTokenFile = path.join(root, 'cli-read-token');
      fs.writeFileSync(readTokenFile, `${readToken}\n`);
      const [port] = await freePorts(1);
      const endpoints = ['--endpoints', `http://127.0.0.1:${port}`];
      await startCliNode(`127.0.0.1:${port}`, ['--token-file', file, '--http-open-metrics']);
      expect(output.some((l) => l.includes('warning'))).to.equal(false);

      const put = await run(['put', 'k', 'v', ...endpoints], { ACTOR_RAFT_TOKEN: w.token });
      expect(put.code, put.err).to.equal(0);
      const get = await run(['get', 'k', ...endpoints, '--token-file', readTokenFile]);
      expect(get.out).to.equal('v');
      const refused = await run(['put', 'k', 'x', ...endpoints, '--token-file', readTokenFile]);
      expect(refused.code).to.equal(1);
      expect(refused.err).to.match(/^actor-raft: 403 FORBIDDEN/);
      const anonymous = await run(['get', 'k', ...endpoints], { ACTOR_RAFT_TOKEN: '' });
      expect(anonymous.code).to.equal(1);
      expect(anonymous.err).to.match(/^actor-raft: 401 UNAUTHORIZED/);
      expect((await request(`127.0.0.1:${port}`, 'GET', '/metrics')).status).to.equal(200);

      // SIGHUP reads the token file again: the writer's token, removed, is refused.
      fs.writeFileSync(file, `${readLine}\n`);
      proc!.kill('SIGHUP');
      await waitFor('the token file to be read again', async () => (output.some((l) => l.includes('read again')) ? true : undefined));
      const revoked = await run(['put', 'k', 'y', ...endpoints], { ACTOR_RAFT_TOKEN: w.token });
      expect(revoked.err).to.match(/^actor-raft: 401 /);
    });

    it('a client command follows a follower\'s 307 to the leader with its token', async function () {
      this.timeout(60_000);
      const w = createToken('write', 'redirected');
      const file = path.join(root, 'redirect-tokens');
      fs.writeFileSync(file, w.line + '\n');
      const atLeader = await serve({ node: leader, tokenFile: file });
      // A follower whose leader is in another process: it answers writes with 307.
      const follower = await serve({
        node: 'f',
        tokenFile: file,
        peerHttp: { [leader]: `http://${atLeader.address()}` },
        backend: {
          op: () => Promise.reject(new NotLeaderError(leader)),
          read: () => Promise.reject(new NotLeaderError(leader)),
          status: () => Promise.resolve({}),
        },
      });
      const put = await run(['put', 'redirected', 'yes', '--endpoints', `http://${follower.address()}`], { ACTOR_RAFT_TOKEN: w.token });
      expect(put.code, put.err).to.equal(0);
      expect(await read(leader, { type: 'get', key: 'redirected' })).to.equal('yes');
    });

    it('a node serving HTTP beyond loopback without authentication logs a warning at start', async function () {
      this.timeout(60_000);
      const [port] = await freePorts(1);
      await startCliNode(`0.0.0.0:${port}`, []);
      expect(output.some((l) => /warning: HTTP on 0\.0\.0\.0:\d+ is open to anyone/.test(l)), output.join('\n')).to.equal(true);
    });
  });

  describe('fuzz with a token file', function () {
    const seed = Number(process.env.HTTP_FUZZ_SEED ?? 0xa7e5);
    const ALLOWED = new Set([200, 204, 307, 400, 401, 403, 404, 405, 408, 413, 415, 421, 431, 503]);

    it(`every answer agrees with the role sent, through a few hundred random requests (seed ${seed})`, async function () {
      this.timeout(120_000);
      const rnd = prng(seed);
      const int = (n: number) => Math.floor(rnd() * n);
      const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
      const bytes = (n: number) => Buffer.from(Array.from({ length: n }, () => int(256)));
      const targets = [
        await serve({ node: leader, tokenFile, maxBodyBytes: 2048, opTimeoutMs: 5_000 }),
        await serve({ node: IDS.find((id) => id !== leader)!, tokenFile, openMetrics: true, maxBodyBytes: 2048, opTimeoutMs: 5_000 }),
      ].map((s, i) => ({ addr: s.address(), openMetrics: i === 1 }));
      const paths = [
        () => `/kv/fz${int(8)}`,
        () => `/kv/fz${int(8)}/cas`,
        () => '/status',
        () => '/metrics',
        () => pick(['/health', '/ready', '/admin', '/admin/members', '/admin/leader', '/%61dmin/x', '/kv/../admin/x', '/Admin/x', '/metrics/x', '/kv/%', '/', '//metrics']),
      ];
      const credentials: { role: Role | null; valid: boolean; header: () => string | undefined }[] = [
        { role: null, valid: true, header: () => undefined },
        ...ROLES.map((role) => ({ role, valid: true, header: () => `Bearer ${tokens[role]}` })),
        { role: null, valid: false, header: () => `Bearer ${createToken('admin', 'x').token}` },
        { role: null, valid: false, header: () => pick(['Bearer ', 'Basic YWRtaW46YWRtaW4=', `Bearer ${tokens.admin}=`, `Bearer ${bytes(int(30)).toString('latin1').replace(/[^\x20-\x7e]/g, '')}`]) },
      ];
      const bodies = [() => undefined, () => 'text', () => '{"expected":null,"value":1}', () => bytes(int(300)), () => bytes(2049 + int(3000))];
      const failures: string[] = [];
      const counts = new Map<string, number>();
      const tally = (k: string) => counts.set(k, (counts.get(k) ?? 0) + 1);

      const structured = async (t: (typeof targets)[number]) => {
        const target = pick(paths)();
        const method = pick(['GET', 'GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS']);
        const body = pick(bodies)();
        const cred = pick(credentials);
        const headers: Record<string, string> = {};
        const auth = cred.header();
        if (auth !== undefined && auth.trim() !== '') headers.Authorization = auth;
        if (int(3) === 0) headers['Content-Type'] = pick(['application/json', 'text/plain', 'application/octet-stream']);
        if (int(10) === 0) headers.Expect = '100-continue';
        const what = `${method} ${target} as ${cred.valid ? cred.role ?? 'nobody' : 'a bad credential'}`;
        let r: Reply;
        try {
          r = await request(t.addr, method, target, { body, headers, chunked: int(3) === 0 });
        } catch (err) {
          failures.push(`${what} → ${String(err)}`);
          return;
        }
        tally(String(r.status));
        if (!ALLOWED.has(r.status)) failures.push(`${what} → ${r.status} ${r.text.slice(0, 200)}`);
        if (r.status === 413) return; // a body declared too large is refused before the role check
        const needs = requiredRole(method, target, t.openMetrics);
        const enough = needs === null || (cred.valid && cred.role !== null && rank(cred.role) >= rank(needs));
        const expected = enough ? null : cred.valid && cred.role !== null ? 403 : 401;
        const refusedByRole = r.status === 401 || (r.status === 403 && method !== 'HEAD' && r.json().code === 'FORBIDDEN') || (r.status === 403 && method === 'HEAD');
        if (expected === null && refusedByRole) failures.push(`${what} → ${r.status}, although the role suffices`);
        if (expected !== null && r.status !== expected) failures.push(`${what} → ${r.status}, expected ${expected}`);
      };

      /** Bytes on a raw socket, cut short at some point; resolves once the socket is closed. */
      const raw = (a: string, payload: Buffer) =>
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
            if (int(2) === 0) sock.end();
            else setTimeout(() => sock.destroy(), int(30));
          });
        });
      const rawCases = [
        () => Buffer.from(`PUT /kv/fz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tokens.write}\r\nContent-Length: 100\r\n\r\n0123`),
        () => Buffer.from(`GET /kv/fz HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${'x'.repeat(20_000)}\r\n\r\n`),
        () => Buffer.from(`GET /admin/x HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer\r\nAuthorization: Bearer ${tokens.admin}\r\n\r\n`),
        () => Buffer.from(`POST /kv/fz/cas HTTP/1.1\r\nHost: x\r\nAuthorization: Bear`),
        () => bytes(1 + int(300)),
      ];

      const jobs: (() => Promise<void>)[] = [];
      for (let i = 0; i < 300; i++) {
        const t = pick(targets);
        if (int(10) < 8) jobs.push(() => structured(t));
        else {
          const payload = pick(rawCases)();
          jobs.push(() => raw(t.addr, payload));
        }
      }
      let next = 0;
      await Promise.all(
        Array.from({ length: 8 }, async () => {
          while (next < jobs.length) await jobs[next++]!();
        }),
      );
      expect(failures, `seed ${seed}: ${failures.join('\n')}`).to.deep.equal([]);
      if (process.env.HTTP_FUZZ_VERBOSE) console.log(JSON.stringify([...counts]));
      expect(counts.get('401') ?? 0).to.be.greaterThan(10);
      expect((counts.get('200') ?? 0) + (counts.get('204') ?? 0)).to.be.greaterThan(10);

      // Every server still answers, and the cluster still commits writes that read back.
      for (const t of targets) expect((await request(t.addr, 'GET', '/status', { headers: bearer(tokens.read) })).status).to.equal(200);
      expect((await request(targets[0]!.addr, 'PUT', '/kv/after-fuzz', { body: 'still here', headers: bearer(tokens.write) })).status).to.equal(204);
      expect(await read(leader, { type: 'get', key: 'after-fuzz' })).to.equal('still here');
      await waitForConverged(IDS);
    });
  });
});
