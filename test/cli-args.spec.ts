/**
 * The `actor-raft` command line as a script sees it: strict parsing and its exit codes
 * (0 done, 1 the cluster said no, 2 usage, 3 unreachable / no leader / timeout), `-h` per
 * command, `--version`, endpoints from `--endpoints=URL` and `ACTOR_RAFT_ENDPOINTS`, `-o json`,
 * `cas`, `put KEY -` from stdin, `--json` values, the bearer token, the TLS client flags
 * against the node's own HTTPS with client certificates, `--bootstrap` with a bad `--peers`
 * list, and a node that was never given a configuration saying so.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir, waitFor } from './helpers/cluster.js';
import { freePorts, haveOpenssl, makePki } from './helpers/net.js';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const CLI = path.join(ROOT, 'dist', 'src', 'cli.js');
const VERSION = (JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;

interface Run {
  code: number | null;
  out: string;
  err: string;
}

/** Runs the CLI as a child process (asynchronously), with `stdin` written to it and closed. */
function run(args: string[], options: { env?: Record<string, string>; stdin?: string | Buffer } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ACTOR_RAFT_ENDPOINTS: '', ACTOR_RAFT_TOKEN: '', ...options.env };
    const proc = spawn(process.execPath, [CLI, ...args], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (c: Buffer) => (out += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
    proc.on('error', reject);
    proc.on('close', (code) => resolve({ code, out: out.trim(), err: err.trim() }));
    proc.stdin.end(options.stdin);
  });
}

interface NodeProc {
  proc: ChildProcess;
  output: string[];
}

function startNodeProc(args: string[]): NodeProc {
  const proc = spawn(process.execPath, [CLI, 'node', '--log', 'json', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const n: NodeProc = { proc, output: [] };
  const keep = (chunk: Buffer) => n.output.push(...chunk.toString().split('\n').filter((l) => l !== ''));
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  return n;
}

async function stopNodeProc(n: NodeProc | undefined): Promise<void> {
  if (!n || n.proc.exitCode !== null || n.proc.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => n.proc.once('exit', () => resolve()));
  n.proc.kill('SIGKILL');
  await exited;
}

function logged(n: NodeProc, event: string): Record<string, unknown> | undefined {
  for (const line of n.output) {
    try {
      const o = JSON.parse(line) as Record<string, unknown>;
      if (o.event === event) return o;
    } catch {
      // a line that is not JSON (a warning of node itself)
    }
  }
  return undefined;
}

/** A one-node cluster (bootstrapped) in its own process; resolves once it leads. */
async function singleNode(root: string, extra: string[] = [], scheme = 'http'): Promise<{ node: NodeProc; url: string; raft: string }> {
  const [raftPort, httpPort] = await freePorts(2);
  const raft = `127.0.0.1:${raftPort}`;
  const node = startNodeProc(['--id', 'n1', '--listen', raft, '--peers', `n1=${raft}`, '--data', path.join(root, 'n1'), '--http', `127.0.0.1:${httpPort}`, '--bootstrap', ...extra]);
  await waitFor('n1 to lead', async () => {
    if (node.proc.exitCode !== null) throw new Error(`the node exited: ${node.output.join('\n')}`);
    return node.output.some((l) => l.includes('"event":"role"') && l.includes('"role":"leader"')) ? true : undefined;
  }, 30_000);
  return { node, url: `${scheme}://127.0.0.1:${httpPort}`, raft };
}

describe('actor-raft command line: parsing and exit codes', function () {
  this.timeout(120_000); // a CLI process per line: slow on a loaded machine

  it('an unknown option, an extra argument or a missing value is exit 2 with one line pointing to --help', async () => {
    const typo = await run(['get', 'k', '--endpoint', 'http://127.0.0.1:1']);
    expect(typo.code).to.equal(2);
    expect(typo.err).to.equal("actor-raft: unknown option '--endpoint' (did you mean --endpoints?); see 'actor-raft get --help'");
    const extra = await run(['get', 'k', 'surplus']);
    expect(extra.code).to.equal(2);
    expect(extra.err).to.match(/unexpected argument 'surplus'.*see 'actor-raft get --help'/);
    expect(extra.err.split('\n')).to.have.length(1);
    const missing = await run(['put', 'k', 'v', '--endpoints']);
    expect(missing.code).to.equal(2);
    expect(missing.err).to.match(/--endpoints needs a value/);
    const ambiguous = await run(['node', '--id', '--listen', '127.0.0.1:1']);
    expect(ambiguous.code).to.equal(2);
    expect(ambiguous.err).to.match(/--id needs a value/);
    const twice = await run(['get', 'k', '-o', 'json', '--output', 'table']);
    expect(twice.code).to.equal(2);
    expect(twice.err).to.match(/--output is given more than once/);
    const format = await run(['status', '-o', 'yaml']);
    expect(format.code).to.equal(2);
    expect(format.err).to.match(/--output is one of plain, json, table/);
    const none = await run([]);
    expect(none.code).to.equal(2);
    expect(none.err).to.match(/^usage: actor-raft/);
    const unknownCommand = await run(['frobnicate']);
    expect(unknownCommand.code).to.equal(2);
    expect(unknownCommand.err).to.match(/unknown command 'frobnicate'; see 'actor-raft --help'/);
    const flagFirst = await run(['--endpoints', 'x', 'get', 'k']);
    expect(flagFirst.code).to.equal(2);
  });

  it('--version prints the package version; -h and --help print the usage, per command too, and exit 0', async () => {
    const v = await run(['--version']);
    expect(v).to.deep.include({ code: 0, out: VERSION });
    for (const h of ['-h', '--help']) {
      const top = await run([h]);
      expect(top.code).to.equal(0);
      expect(top.out).to.match(/^usage: actor-raft COMMAND/);
      expect(top.out).to.include('http://127.0.0.1:8001'); // the default endpoint
      expect(top.out).to.match(/3 {2}no endpoint reachable, no leader, or a timeout/);
    }
    for (const command of ['node', 'get', 'put', 'del', 'cas', 'status']) {
      const h = await run([command, '-h']);
      expect(h.code, command).to.equal(0);
      expect(h.out, command).to.match(new RegExp(`^usage: actor-raft ${command}\\b`));
      expect(h.out, command).to.include('-h, --help');
    }
    // Help wins over the rest of the line, even a line that would not parse.
    const nodeHelp = await run(['node', '--id', 'x', '--help']);
    expect(nodeHelp.code).to.equal(0);
    expect(nodeHelp.out).to.include('--http-max-inflight N');
    expect((await run(['cas', '-h'])).out).to.match(/usage: actor-raft cas KEY EXPECTED NEW/);
  });

  it('an unreachable endpoint is exit 3, whether named by --endpoints=URL, --endpoints URL or ACTOR_RAFT_ENDPOINTS', async () => {
    const [closed] = await freePorts(1);
    const url = `http://127.0.0.1:${closed}`;
    for (const r of [
      await run(['get', 'k', `--endpoints=${url}`]),
      await run(['put', 'k', 'v', '--endpoints', url]),
      await run(['status'], { env: { ACTOR_RAFT_ENDPOINTS: url } }),
    ]) {
      expect(r.code).to.equal(3);
      expect(r.err).to.match(new RegExp(`no endpoint answered \\(http://127\\.0\\.0\\.1:${closed}: .*ECONNREFUSED`));
    }
  });

  it('--bootstrap refuses a --peers list that is not ID=HOST:PORT,... (a space-separated list was a one-node cluster)', async () => {
    const root = tempDir('actor-raft-cli-args-');
    try {
      const [a, b, h] = await freePorts(3);
      const common = ['node', '--id', 'n1', '--listen', `127.0.0.1:${a}`, '--data', path.join(root, 'n1'), '--http', `127.0.0.1:${h}`, '--bootstrap'];
      const spaced = await run([...common, '--peers', `n1=127.0.0.1:${a} n2=127.0.0.1:${b}`]);
      expect(spaced.code).to.equal(2);
      expect(spaced.err).to.match(/--peers: separate the peers with commas, not spaces/);
      const split = await run([...common, '--peers', `n1=127.0.0.1:${a}`, `n2=127.0.0.1:${b}`]);
      expect(split.code).to.equal(2);
      expect(split.err).to.match(/unexpected argument 'n2=127\.0\.0\.1:\d+' \(node takes no arguments\)/);
      const badAddress = await run([...common, '--peers', `n1=127.0.0.1:${a},n2=127.0.0.1`]);
      expect(badAddress.code).to.equal(2);
      expect(badAddress.err).to.match(/--peers: the address of 'n2' must be 'host:port'/);
      expect(fs.existsSync(path.join(root, 'n1')), 'nothing written for a refused command line').to.equal(false);
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('actor-raft command line: client commands against a node', function () {
  this.timeout(90_000);
  let root: string;
  let node: NodeProc | undefined;
  let url: string;

  before(async () => {
    root = tempDir('actor-raft-cli-args-');
    ({ node, url } = await singleNode(root));
    expect(logged(node, 'bootstrap')?.peers, 'the bootstrap names the cluster it formed').to.deep.equal({ n1: (logged(node, 'up') as { listen: string }).listen });
  });

  after(async () => {
    await stopNodeProc(node);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('--endpoints=URL and ACTOR_RAFT_ENDPOINTS are honoured; a missing key is exit 1', async () => {
    expect(await run(['put', 'e1', 'one', `--endpoints=${url}`])).to.deep.include({ code: 0, out: '' });
    expect(await run(['get', 'e1'], { env: { ACTOR_RAFT_ENDPOINTS: url } })).to.deep.include({ code: 0, out: 'one' });
    // The flag wins over the environment.
    const [closed] = await freePorts(1);
    expect(await run(['get', 'e1', '--endpoints', url], { env: { ACTOR_RAFT_ENDPOINTS: `http://127.0.0.1:${closed}` } })).to.deep.include({ code: 0, out: 'one' });
    // An endpoint that cannot be reached is skipped for the next one.
    expect(await run(['get', 'e1', '--endpoints', `http://127.0.0.1:${closed},${url}`])).to.deep.include({ code: 0, out: 'one' });
    const missing = await run(['get', 'nope', '--endpoints', url]);
    expect(missing.code).to.equal(1);
    expect(missing.err).to.equal('actor-raft: key not found: nope');
    expect((await run(['del', 'nope', '--endpoints', url])).code).to.equal(1);
    expect(await run(['del', 'e1', '--endpoints', url])).to.deep.include({ code: 0 });
  });

  it('cas prints true when it swapped and false when it did not, both exit 0; --json compares JSON values', async () => {
    const e = ['--endpoints', url];
    expect((await run(['put', 'c', 'a', ...e])).code).to.equal(0);
    expect(await run(['cas', 'c', 'a', 'b', ...e])).to.deep.include({ code: 0, out: 'true' });
    expect(await run(['cas', 'c', 'a', 'z', ...e])).to.deep.include({ code: 0, out: 'false' });
    expect(await run(['get', 'c', ...e])).to.deep.include({ code: 0, out: 'b' });
    // null expects the key to be missing; values are JSON.
    expect(await run(['cas', 'cj', 'null', '{"n":1}', '--json', ...e])).to.deep.include({ code: 0, out: 'true' });
    expect(await run(['cas', 'cj', '{"n":2}', '3', '--json', '-o', 'json', ...e])).to.deep.include({ code: 0, out: '{"key":"cj","swapped":false}' });
    expect(await run(['cas', 'cj', '--json', ...e, '--', '{"n":1}', '-1'])).to.deep.include({ code: 0, out: 'true' });
    expect(JSON.parse((await run(['get', 'cj', '-o', 'json', ...e])).out)).to.deep.equal({ key: 'cj', type: 'json', value: -1 });
    const notJson = await run(['cas', 'cj', '1', 'nope', '--json', ...e]);
    expect(notJson.code).to.equal(2);
    expect(notJson.err).to.match(/--json: NEW is not JSON/);
  });

  it('put KEY - stores standard input as it is (text, or bytes that are not UTF-8); --json stores the parsed value', async () => {
    const e = ['--endpoints', url];
    expect((await run(['put', 'in', '-', ...e], { stdin: 'line one\nline two\n' })).code).to.equal(0);
    expect(JSON.parse((await run(['get', 'in', '-o', 'json', ...e])).out)).to.deep.equal({ key: 'in', type: 'string', value: 'line one\nline two\n' });
    expect((await run(['put', 'bin', '-', ...e], { stdin: Buffer.from([0, 0xff, 1]) })).code).to.equal(0);
    expect(JSON.parse((await run(['get', 'bin', '-o', 'json', ...e])).out)).to.deep.equal({ key: 'bin', type: 'bytes', value: Buffer.from([0, 0xff, 1]).toString('base64') });
    expect((await run(['put', 'doc', '-', '--json', ...e], { stdin: '{"a":[1,2,{"b":true}]}' })).code).to.equal(0);
    expect((await run(['put', 'num', '42', '--json', ...e])).code).to.equal(0);
    expect(JSON.parse((await run(['get', 'doc', '-o', 'json', ...e])).out)).to.deep.equal({ key: 'doc', type: 'json', value: { a: [1, 2, { b: true }] } });
    expect(JSON.parse((await run(['get', 'num', '-o', 'json', ...e])).out)).to.deep.equal({ key: 'num', type: 'json', value: 42 });
    expect(await run(['get', 'doc', ...e])).to.deep.include({ code: 0, out: '{"a":[1,2,{"b":true}]}' });
  });

  it('-o json prints one JSON document on every client command; -o table prints a header and rows', async () => {
    const e = ['--endpoints', url, '-o', 'json'];
    expect(JSON.parse((await run(['put', 'o', 'v', ...e])).out)).to.deep.equal({ key: 'o', stored: true });
    expect(JSON.parse((await run(['get', 'o', ...e])).out)).to.deep.equal({ key: 'o', type: 'string', value: 'v' });
    expect(JSON.parse((await run(['cas', 'o', 'v', 'w', ...e])).out)).to.deep.equal({ key: 'o', swapped: true });
    expect(JSON.parse((await run(['del', 'o', ...e])).out)).to.deep.equal({ key: 'o', deleted: true });
    const status = JSON.parse((await run(['status', ...e])).out) as { id: string; role: string };
    expect(status).to.include({ id: 'n1', role: 'leader' });
    const table = (await run(['status', '--endpoints', url, '-o', 'table'])).out.split('\n');
    expect(table[0]).to.match(/^ID\s+ROLE\s+TERM\s+LEADER/);
    expect(table[1]).to.match(/^n1\s+leader\s+\d+\s+n1/);
  });
});

describe('actor-raft command line: credentials', function () {
  this.timeout(90_000);

  it('sends ACTOR_RAFT_TOKEN, or the token in --token-file, as Authorization: Bearer', async () => {
    const seen: Array<string | undefined> = [];
    const server = http.createServer((req, res) => {
      seen.push(req.headers.authorization);
      res.setHeader('X-Raft-Value-Type', 'string');
      res.end('v');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
    const root = tempDir('actor-raft-cli-args-');
    try {
      const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
      const tokenFile = path.join(root, 'token');
      fs.writeFileSync(tokenFile, 'from-the-file\n');
      expect((await run(['get', 'k', '--endpoints', url])).code).to.equal(0);
      expect((await run(['get', 'k', '--endpoints', url], { env: { ACTOR_RAFT_TOKEN: 'from-the-env' } })).code).to.equal(0);
      expect((await run(['get', 'k', '--endpoints', url, '--token-file', tokenFile], { env: { ACTOR_RAFT_TOKEN: 'from-the-env' } })).code).to.equal(0);
      expect(seen).to.deep.equal([undefined, 'Bearer from-the-env', 'Bearer from-the-file']);
      const unreadable = await run(['get', 'k', '--endpoints', url, '--token-file', path.join(root, 'absent')]);
      expect(unreadable.code).to.equal(2);
      expect(unreadable.err).to.match(/--token-file: cannot read .*absent: ENOENT/);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  it('--cacert, --cert and --key talk to the node\'s own HTTPS that requires client certificates', async function () {
    if (!haveOpenssl()) this.skip(); // makePki needs the openssl command
    const root = tempDir('actor-raft-cli-args-');
    let node: NodeProc | undefined;
    try {
      const pki = makePki(path.join(root, 'pki'), ['n1', 'client']);
      const server = pki.certs.n1!;
      const client = pki.certs.client!;
      let url: string;
      ({ node, url } = await singleNode(root, ['--http-tls-cert', server.cert, '--http-tls-key', server.key, '--http-tls-ca', pki.ca], 'https'));
      const tls = ['--cacert', pki.ca, '--cert', client.cert, '--key', client.key];
      expect((await run(['put', 'secure', 'yes', '--endpoints', url, ...tls])).code).to.equal(0);
      expect(await run(['get', 'secure', '--endpoints', url, ...tls])).to.deep.include({ code: 0, out: 'yes' });
      // A bare HOST:PORT means https when TLS flags are given.
      expect(await run(['get', 'secure', '--endpoints', url.replace('https://', ''), ...tls])).to.deep.include({ code: 0, out: 'yes' });
      // Without a client certificate the server refuses the handshake; without the CA the
      // client refuses the server's certificate: neither reaches the cluster.
      expect((await run(['get', 'secure', '--endpoints', url, '--cacert', pki.ca])).code).to.equal(3);
      const unknownCa = await run(['get', 'secure', '--endpoints', url, '--cert', client.cert, '--key', client.key]);
      expect(unknownCa.code).to.equal(3);
      expect(unknownCa.err).to.match(/certificate/);
      const half = await run(['get', 'secure', '--endpoints', url, '--cert', client.cert]);
      expect(half.code).to.equal(2);
      expect(half.err).to.match(/--cert and --key go together/);
    } finally {
      await stopNodeProc(node);
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});

describe('actor-raft node without a configuration', function () {
  this.timeout(60_000);

  it('says every few seconds that it has no configuration and how to get one', async () => {
    const root = tempDir('actor-raft-cli-args-');
    let node: NodeProc | undefined;
    try {
      const [a, b, h] = await freePorts(3);
      node = startNodeProc(['--id', 'n1', '--listen', `127.0.0.1:${a}`, '--peers', `n1=127.0.0.1:${a},n2=127.0.0.1:${b}`, '--data', path.join(root, 'n1'), '--http', `127.0.0.1:${h}`]);
      const waiting = await waitFor('the waiting message', async () => logged(node!, 'waiting'), 30_000);
      expect(waiting.message).to.match(/has no configuration and is waiting to be added.*--bootstrap/);
    } finally {
      await stopNodeProc(node);
      fs.rmSync(root, { recursive: true, force: true });
    }
  });
});
