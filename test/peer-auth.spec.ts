/**
 * Peers prove who they are (src/transport/handshake.ts, docs/peer-security.md): the cluster
 * secret's challenge and response both ways, a wrong or missing secret, a replayed handshake,
 * frames before the handshake is done, certificates bound to peer ids (both directions, an
 * allow-list), the refusal of an unauthenticated port beyond loopback (library and CLI), and
 * a cluster with a secret under the forged-hello-then-TimeoutNow attack and the fuzzer.
 */
import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { op, read, setConfig, startNode, status, transportStats, type NetworkOptions } from '../src/api/index.js';
import { InsecurePeersError } from '../src/errors.js';
import { codec } from '../src/codec.js';
import { certificateNames, handshakeProof } from '../src/transport/handshake.js';
import { TcpSwitchboard, type TcpSwitchboardOptions } from '../src/transport/tcp.js';
import { realCluster, tempDir, waitFor, waitForLeader } from './helpers/cluster.js';
import {
  fakeActor,
  vote,
  closed,
  frameReader,
  freePorts,
  fuzzPeerPorts,
  haveOpenssl,
  makePeerCert,
  makePki,
  rawConnect,
  rawFrame,
  rawHandshake,
  writeSecret,
  type TestPki,
} from './helpers/net.js';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const CLI = path.join(HERE, '..', 'src', 'cli.js');
const PEER_SECURITY_DOC = path.join(HERE, '..', '..', 'docs', 'peer-security.md');
const never = new Promise<void>(() => undefined);

describe('peer authentication: switchboards', function () {
  this.timeout(60_000);
  const boards: TcpSwitchboard[] = [];
  const actors: ReturnType<typeof fakeActor>[] = [];
  let dir: string;

  beforeEach(() => {
    dir = tempDir('actor-raft-peer-auth-');
  });
  afterEach(async () => {
    await Promise.all(boards.splice(0).map((b) => b.close()));
    for (const a of actors.splice(0)) a.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  async function board(options: TcpSwitchboardOptions) {
    const b = await TcpSwitchboard.start(options);
    boards.push(b);
    const actor = fakeActor();
    actors.push(actor);
    await b.join(options.id, actor.connect, never);
    return { board: b, actor };
  }

  /** Switchboards 'a' and 'b' on loopback, each with its own extra options. */
  async function pair(extraA: Partial<TcpSwitchboardOptions>, extraB: Partial<TcpSwitchboardOptions>) {
    const [pa, pb] = await freePorts(2);
    const a = await board({ id: 'a', listen: `127.0.0.1:${pa}`, peers: { b: `127.0.0.1:${pb}` }, clusterId: 'c1', ...extraA });
    const b = await board({ id: 'b', listen: `127.0.0.1:${pb}`, peers: { a: `127.0.0.1:${pa}` }, clusterId: 'c1', ...extraB });
    return { a, b, portA: pa!, portB: pb! };
  }

  describe('cluster secret', () => {
    it('both sides prove the secret, and frames flow both ways', async () => {
      const { file } = writeSecret(dir);
      const { a, b } = await pair({ clusterSecretFile: file }, { clusterSecretFile: file });
      a.actor.send('b', vote('a', 'b'));
      b.actor.send('a', vote('b', 'a', 2));
      await waitFor('frames both ways', async () => (a.actor.received.length >= 1 && b.actor.received.length >= 1 ? true : undefined));
      expect(b.actor.received[0]!.message).to.deep.equal(vote('a', 'b'));
      expect(a.actor.received[0]!.message).to.deep.equal(vote('b', 'a', 2));
      for (const s of [a.board.stats(), b.board.stats()]) {
        expect(s.authFailures + s.refused + s.badFrames).to.equal(0);
        expect(s.connects).to.be.greaterThan(0);
      }
    });

    it('the acceptor proves the secret to the dialer: a raw client checks its proof and is welcomed with its own', async () => {
      const { file, secret } = writeSecret(dir);
      const { b, portB } = await pair({}, { clusterSecretFile: file });
      const hello = { clusterId: 'c1', from: 'a', to: 'b' };
      const socket = await rawConnect(portB);
      const frames = frameReader(socket);
      const nonce = crypto.randomBytes(32);
      socket.write(rawFrame(codec.encode({ hs: 'hello', ...hello, nonce })));
      const challenge = (await frames.next()) as { hs: string; nonce: Uint8Array; proof: Uint8Array };
      expect(challenge.hs).to.equal('challenge');
      const expected = handshakeProof(secret, 'acceptor', 'c1', 'a', 'b', nonce, challenge.nonce);
      expect(Buffer.from(challenge.proof).equals(expected)).to.equal(true);
      // The dialer's proof is another value (its role is in the HMAC): no reflection.
      const mine = handshakeProof(secret, 'dialer', 'c1', 'a', 'b', nonce, challenge.nonce);
      expect(mine.equals(expected)).to.equal(false);
      socket.write(rawFrame(codec.encode({ hs: 'proof', proof: mine })));
      expect(((await frames.next()) as { hs: string }).hs).to.equal('welcome');
      socket.write(rawFrame(codec.encode(vote('a', 'b', 7))));
      await waitFor('the vote delivered', async () => (b.actor.received.length === 1 ? true : undefined));
      socket.destroy();
    });

    it('the dialer refuses an acceptor that cannot prove the secret, and sends it no proof', async () => {
      const { file } = writeSecret(dir);
      const [pa] = await freePorts(1);
      // A fake acceptor answering every hello with a challenge under a wrong secret.
      const received: unknown[] = [];
      const fake = net.createServer((socket) => {
        const frames = frameReader(socket);
        void (async () => {
          const hello = (await frames.next()) as { nonce: Uint8Array } | null;
          if (!hello) return;
          received.push(hello);
          const nonce = crypto.randomBytes(32);
          const proof = handshakeProof(Buffer.from('not the cluster secret at all'), 'acceptor', 'c1', 'a', 'b', hello.nonce, nonce);
          socket.write(rawFrame(codec.encode({ hs: 'challenge', clusterId: 'c1', from: 'b', to: 'a', nonce, proof })));
          for (let m = await frames.next(); m !== null; m = await frames.next()) received.push(m);
        })();
      });
      await new Promise<void>((resolve) => fake.listen(0, '127.0.0.1', () => resolve()));
      try {
        const fakePort = (fake.address() as net.AddressInfo).port;
        const a = await board({ id: 'a', listen: `127.0.0.1:${pa}`, peers: { b: `127.0.0.1:${fakePort}` }, clusterId: 'c1', clusterSecretFile: file });
        a.actor.send('b', vote('a', 'b'));
        await waitFor('the dialer refuses', async () => (a.board.stats().authFailures >= 1 ? true : undefined));
        expect(a.board.stats().connects).to.equal(0);
        expect(received.length).to.be.greaterThan(0);
        // Only hellos reached the fake acceptor: no proof, no frame.
        for (const m of received) expect((m as { hs: string }).hs).to.equal('hello');
      } finally {
        fake.close();
      }
    });

    it('refuses a wrong secret, and a secret on one side only, counting them', async () => {
      const one = writeSecret(dir, 'one.secret');
      const two = writeSecret(dir, 'two.secret');
      for (const [extraA, extraB] of [
        [{ clusterSecretFile: one.file }, { clusterSecretFile: two.file }],
        [{ clusterSecretFile: one.file }, {}],
        [{}, { clusterSecretFile: two.file }],
      ] as const) {
        const { a, b } = await pair(extraA, extraB);
        a.actor.send('b', vote('a', 'b'));
        b.actor.send('a', vote('b', 'a'));
        await waitFor('refusals', async () => (a.board.stats().authFailures >= 1 && b.board.stats().authFailures >= 1 ? true : undefined));
        expect(a.board.stats().connects + b.board.stats().connects).to.equal(0);
        expect(a.actor.received.length + b.actor.received.length).to.equal(0);
        await Promise.all(boards.splice(0).map((x) => x.close()));
      }
    });

    it('refuses a recorded handshake replayed on a new connection', async () => {
      const { file, secret } = writeSecret(dir);
      const { b, portB } = await pair({}, { clusterSecretFile: file });
      const hello = { clusterId: 'c1', from: 'a', to: 'b' };
      const recorded = await rawHandshake(portB, hello, { secret });
      expect(recorded.welcomed, 'the recorded handshake was a good one').to.equal(true);
      recorded.socket.destroy();
      await recorded.gone;
      const before = b.board.stats().authFailures;
      const replayed = await rawHandshake(portB, hello, { replay: recorded.sent });
      expect(replayed.challenge, 'a fresh challenge').to.not.equal(null);
      await replayed.gone;
      expect(replayed.welcomed).to.equal(false);
      expect(b.board.stats().authFailures).to.equal(before + 1);
      expect(b.actor.received).to.have.length(0);
    });

    it('closes a connection that sends anything but the handshake before it is done, or takes too long, or too many bytes', async () => {
      const { file } = writeSecret(dir);
      const { b, portB } = await pair({}, { clusterSecretFile: file, handshakeTimeoutMs: 300 });
      const nonce = () => crypto.randomBytes(32);
      // A peer message instead of a hello; a peer message after the hello instead of a proof.
      for (const first of [[], [{ hs: 'hello', clusterId: 'c1', from: 'a', to: 'b', nonce: nonce() }]]) {
        const bad = b.board.stats().badFrames;
        const socket = await rawConnect(portB);
        const gone = closed(socket);
        for (const m of [...first, vote('a', 'b', 99)]) socket.write(rawFrame(codec.encode(m)));
        await gone;
        expect(b.board.stats().badFrames).to.equal(bad + 1);
      }
      // A handshake frame above 4 KiB.
      {
        const bad = b.board.stats().badFrames;
        const socket = await rawConnect(portB);
        const gone = closed(socket);
        socket.write(rawFrame(codec.encode({ hs: 'hello', clusterId: 'x'.repeat(5000), from: 'a', to: 'b', nonce: nonce() })));
        await gone;
        expect(b.board.stats().badFrames).to.equal(bad + 1);
      }
      // Silence: closed by the node when handshakeTimeoutMs runs out.
      {
        const socket = await rawConnect(portB);
        await closed(socket);
      }
      expect(b.actor.received).to.have.length(0);
      expect(b.board.stats().connects).to.equal(0);
    });
  });

  describe('beyond loopback', () => {
    it('refuses to listen beyond loopback without TLS or a secret, saying what to add', async () => {
      let thrown: unknown;
      try {
        await board({ id: 'a', listen: '0.0.0.0:0', peers: { b: '127.0.0.1:1' }, clusterId: 'c1' });
      } catch (err) {
        thrown = err;
      }
      expect(thrown).to.be.instanceOf(InsecurePeersError);
      const e = thrown as InsecurePeersError;
      expect(e.code).to.equal('INSECURE_PEERS');
      for (const hint of ['clusterSecretFile', '--cluster-secret-file', '--tls-ca', 'insecurePeers', '--insecure-peers']) {
        expect(e.message).to.contain(hint);
      }
      // Through startNode too (options.network), before anything is started.
      let viaNode: unknown;
      try {
        await startNode('wide', {
          stateMachine: 'kv',
          dataDir: path.join(dir, 'wide'),
          network: { listen: '0.0.0.0:0', peers: { b: '127.0.0.1:1' }, clusterId: 'c1' },
        });
      } catch (err) {
        viaNode = err;
      }
      expect(viaNode).to.be.instanceOf(InsecurePeersError);
      expect(transportStats('wide')).to.equal(null);
    });

    it('starts beyond loopback with insecurePeers (warning at start), or with a secret (no warning)', async () => {
      const warnings: Error[] = [];
      const onWarning = (w: Error) => warnings.push(w);
      process.on('warning', onWarning);
      try {
        const insecure = await board({ id: 'a', listen: '0.0.0.0:0', peers: { b: '127.0.0.1:1' }, clusterId: 'c1', insecurePeers: true });
        expect(insecure.board.address()).to.match(/^0\.0\.0\.0:\d+$/);
        await waitFor('the warning', async () => (warnings.length > 0 ? true : undefined));
        expect((warnings[0] as Error & { code?: string }).code).to.equal('ACTOR_RAFT_INSECURE_PEERS');
        const { file } = writeSecret(dir);
        await board({ id: 'a', listen: '0.0.0.0:0', peers: { b: '127.0.0.1:1' }, clusterId: 'c1', clusterSecretFile: file });
        await new Promise((r) => setImmediate(r));
        expect(warnings).to.have.length(1);
      } finally {
        process.off('warning', onWarning);
      }
    });

    it('refuses a secret that is too short or readable by every user', async () => {
      const short = writeSecret(dir, 'short.secret', 'fifteen-bytes!!');
      const open = writeSecret(dir, 'open.secret');
      fs.chmodSync(open.file, 0o644);
      const cases: [string, string][] = [[short.file, 'at least 16']];
      if (process.platform !== 'win32') cases.push([open.file, 'chmod 600']);
      for (const [file, hint] of cases) {
        let thrown: unknown;
        try {
          await board({ id: 'a', listen: '127.0.0.1:0', peers: { b: '127.0.0.1:1' }, clusterId: 'c1', clusterSecretFile: file });
        } catch (err) {
          thrown = err;
        }
        expect(thrown, file).to.be.instanceOf(InsecurePeersError);
        expect((thrown as Error).message).to.contain(hint);
      }
      // Sixteen bytes (and a final newline) are enough.
      const enough = writeSecret(dir, 'enough.secret', 'sixteen-bytes!!!');
      await board({ id: 'a', listen: '127.0.0.1:0', peers: { b: '127.0.0.1:1' }, clusterId: 'c1', clusterSecretFile: enough.file });
    });
  });

  it('reads the names of a certificate: CN, DNS and URI alternative names, quoted values whole', () => {
    const cert = {
      subject: { CN: 'someone' },
      subjectaltname: 'DNS:n1, IP Address:127.0.0.1, URI:spiffe://example.org/raft/n2, DNS:"x, DNS:n3", email:a@b',
    } as unknown as import('node:tls').PeerCertificate;
    // A value with a comma cannot smuggle in a second name.
    expect(certificateNames(cert)).to.deep.equal(['someone', 'n1', 'spiffe://example.org/raft/n2', 'x, DNS:n3']);
    expect(certificateNames({ subject: { CN: ['a', 'b'] } } as unknown as import('node:tls').PeerCertificate)).to.deep.equal(['a', 'b']);
  });

  describe('certificates bound to peer ids', function () {
    let pki: TestPki;

    before(function () {
      if (!haveOpenssl()) {
        console.log('    (skipped: the openssl command is not installed; it makes the test certificates)');
        this.skip();
      }
    });
    beforeEach(() => {
      pki = makePki(path.join(dir, 'pki'), ['a', 'b', 'x']);
    });

    const tlsOf = (name: string, extra: object = {}) => ({ tls: { ca: pki.ca, ...pki.certs[name]!, ...extra } });

    it('refuses a valid certificate of another name in both directions, counting it', async () => {
      // 'b' holds the certificate of 'x': of the cluster's CA, but not bound to 'b'.
      const { a, b } = await pair(tlsOf('a'), tlsOf('x'));
      a.actor.send('b', vote('a', 'b')); // a dials b and finds x's certificate: refused by the dialer
      b.actor.send('a', vote('b', 'a')); // b dials a with x's certificate claiming 'b': refused by the acceptor
      await waitFor('refusals both ways', async () => (a.board.stats().authFailures >= 2 ? true : undefined));
      expect(a.board.stats().refused).to.be.at.least(2);
      expect(a.board.stats().connects + b.board.stats().connects).to.equal(0);
      expect(a.actor.received.length + b.actor.received.length).to.equal(0);
    });

    it('accepts a certificate bound by a DNS alternative name, by its CN, or by an allow-list', async () => {
      // Bound by its DNS name only (another CN), and by its CN only (no DNS name 'b').
      makePeerCert(pki, 'b-by-dns', { cn: 'someone-else', dns: ['b'] });
      makePeerCert(pki, 'b-by-cn', { cn: 'b', dns: [] });
      for (const [certA, certB, extraA] of [
        ['a', 'b-by-dns', {}],
        ['a', 'b-by-cn', {}],
        ['a', 'x', { peerNames: { b: ['x'] } }], // 'x' allowed as 'b'
      ] as const) {
        const { a, b } = await pair(tlsOf(certA, extraA), tlsOf(certB));
        a.actor.send('b', vote('a', 'b'));
        b.actor.send('a', vote('b', 'a'));
        await waitFor(`frames both ways with ${certB}`, async () =>
          a.actor.received.length >= 1 && b.actor.received.length >= 1 ? true : undefined,
        );
        expect(a.board.stats().authFailures + b.board.stats().authFailures).to.equal(0);
        await Promise.all(boards.splice(0).map((x) => x.close()));
      }
      // With an allow-list for 'b', its own id no longer suffices.
      const { a, b } = await pair(tlsOf('a', { peerNames: { b: ['x'] } }), tlsOf('b'));
      b.actor.send('a', vote('b', 'a'));
      await waitFor('refused', async () => (a.board.stats().authFailures >= 1 ? true : undefined));
      expect(a.actor.received).to.have.length(0);
      expect(b.board.stats().connects).to.equal(0);
    });

    it("the openssl recipe of docs/peer-security.md makes certificates bound to ids, as it stands", async () => {
      const doc = fs.readFileSync(PEER_SECURITY_DOC, 'utf8');
      const m = /<!-- recipe:begin -->\s*```sh\n([\s\S]*?)```\s*<!-- recipe:end -->/.exec(doc);
      expect(m, 'the recipe block').to.not.equal(null);
      const out = path.join(dir, 'recipe');
      fs.mkdirSync(out);
      execFileSync('sh', ['-e', '-c', m![1]!], { cwd: out, stdio: 'pipe' });
      const files = (n: string) => ({ tls: { ca: path.join(out, 'ca.pem'), cert: path.join(out, `${n}.pem`), key: path.join(out, `${n}.key`) } });
      const [pa, pb] = await freePorts(2);
      const n1 = await board({ id: 'n1', listen: `127.0.0.1:${pa}`, peers: { n2: `127.0.0.1:${pb}` }, clusterId: 'c1', ...files('n1') });
      const n2 = await board({ id: 'n2', listen: `127.0.0.1:${pb}`, peers: { n1: `127.0.0.1:${pa}` }, clusterId: 'c1', ...files('n2') });
      n1.actor.send('n2', vote('n1', 'n2'));
      n2.actor.send('n1', vote('n2', 'n1'));
      await waitFor('frames both ways', async () => (n1.actor.received.length >= 1 && n2.actor.received.length >= 1 ? true : undefined));
      // And n3's certificate, valid, is not n2's.
      await Promise.all(boards.splice(0).map((x) => x.close()));
      const impostor = await board({ id: 'n2', listen: `127.0.0.1:${pb}`, peers: { n1: `127.0.0.1:${pa}` }, clusterId: 'c1', ...files('n3') });
      const n1again = await board({ id: 'n1', listen: `127.0.0.1:${pa}`, peers: { n2: `127.0.0.1:${pb}` }, clusterId: 'c1', ...files('n1') });
      impostor.actor.send('n1', vote('n2', 'n1'));
      await waitFor('refused', async () => (n1again.board.stats().authFailures >= 1 ? true : undefined));
      expect(n1again.actor.received).to.have.length(0);
    });
  });
});

describe('peer authentication: a cluster with a secret', function () {
  this.timeout(120_000);
  const ids = ['p1', 'p2', 'p3'];
  const fixture = realCluster('suite');
  const MAX_FRAME = 1_200_000;
  let addresses: Record<string, string>;
  let secret: Buffer;
  // Elections only when we cause them.
  const timing = { heartbeatMs: 50, electionTimeoutMs: 2000 };

  before(async () => {
    const ports = await freePorts(3);
    addresses = Object.fromEntries(ids.map((id, i) => [id, `127.0.0.1:${ports[i]}`]));
    const written = writeSecret(path.join(fixture.root, 'secret'));
    secret = written.secret;
    const networkOf = (id: string): NetworkOptions => ({
      listen: addresses[id]!,
      peers: Object.fromEntries(ids.filter((p) => p !== id).map((p) => [p, addresses[p]!])),
      clusterId: 'secret-cluster',
      clusterSecretFile: written.file,
      maxFrameBytes: MAX_FRAME,
    });
    await Promise.all(ids.map((id) => startNode(id, { stateMachine: 'kv', dataDir: path.join(fixture.root, id), ...timing, network: networkOf(id) })));
    await setConfig('p1', ids);
    await waitForLeader(ids);
  });

  const portOf = (id: string) => Number(addresses[id]!.split(':')[1]);

  it('commits with every peer authenticated by the secret', async () => {
    for (const via of ids) {
      await op(via, { type: 'set', key: `s-${via}`, value: via });
      expect(await read(via, { type: 'get', key: `s-${via}` })).to.equal(via);
    }
    const { leader } = await waitForLeader(ids);
    expect(transportStats(leader)!.connectedPeers.sort()).to.deep.equal(ids.filter((p) => p !== leader));
    for (const id of ids) expect(transportStats(id)!.authFailures, id).to.equal(0);
  });

  it('a forged hello, then TimeoutNow, does not make a follower campaign (without the secret)', async () => {
    const { leader } = await waitForLeader(ids);
    // The follower of the highest id, attacked by a socket claiming the lowest other id (the
    // issue's "n1 to n3"): a TimeoutNow of the current term from any peer makes a follower
    // campaign (§3.10), and the control below then wins the tie-break of connections.
    const target = ids.filter((id) => id !== leader).sort().at(-1)!;
    const claimed = ids.filter((id) => id !== target).sort()[0]!;
    const before = await status(target);
    expect(before.role).to.equal('follower');
    const forged = { type: 'timeoutNow', term: before.term, from: claimed, to: target };
    const hello = () => ({ hs: 'hello', clusterId: 'secret-cluster', from: claimed, to: target, nonce: crypto.randomBytes(32) });
    const failuresBefore = transportStats(target)!;
    // 1. The attack: a hello, then TimeoutNow at once.
    {
      const socket = await rawConnect(portOf(target));
      const gone = closed(socket);
      socket.write(rawFrame(codec.encode(hello())));
      socket.write(rawFrame(codec.encode(forged)));
      await gone;
    }
    // 2. Waiting for the challenge, then a made-up proof (empty, or random), then TimeoutNow.
    for (const proof of [new Uint8Array(0), crypto.randomBytes(32)]) {
      const socket = await rawConnect(portOf(target));
      const frames = frameReader(socket);
      socket.write(rawFrame(codec.encode(hello())));
      expect(((await frames.next()) as { hs: string }).hs).to.equal('challenge');
      socket.write(rawFrame(codec.encode({ hs: 'proof', proof })));
      socket.write(rawFrame(codec.encode(forged)));
      expect(await frames.next(), 'no welcome, closed').to.equal(null);
    }
    const after = transportStats(target)!;
    expect(after.badFrames).to.equal(failuresBefore.badFrames + 1);
    expect(after.authFailures).to.equal(failuresBefore.authFailures + 2);
    // A committed op later (a full round of the leader's), nothing has changed.
    await op(leader, { type: 'set', key: 'after-forgery', value: 1 });
    const now = await status(target);
    expect(now.term).to.equal(before.term);
    expect(now.role).to.equal('follower');
    expect((await waitForLeader(ids)).leader).to.equal(leader);

    // Control: the same TimeoutNow after a handshake with the real secret does make it campaign.
    const real = await rawHandshake(portOf(target), { clusterId: 'secret-cluster', from: claimed, to: target }, { secret });
    expect(real.welcomed).to.equal(true);
    real.socket.write(rawFrame(codec.encode(forged)));
    await waitFor('the target campaigns', async () => ((await status(target)).term > before.term ? true : undefined));
    real.socket.destroy();
    await waitForLeader(ids);
  });

  it('fuzz with authentication on: random bytes, frames, hellos and bad proofs; the cluster stays correct and up', async () => {
    const seed = Number(process.env.TCP_FUZZ_SEED ?? 7);
    const totalsBefore = ids.map((id) => transportStats(id)!).reduce((n, s) => n + s.badFrames + s.refused, 0);
    await fuzzPeerPorts(ids.map(portOf), { clusterId: 'secret-cluster', from: 'p2', to: 'p1' }, { seed, maxFrameBytes: MAX_FRAME });
    const { leader } = await waitForLeader(ids);
    await waitFor('the real peers connected', async () => (transportStats(leader)!.connectedPeers.length === ids.length - 1 ? true : undefined));
    for (const via of ids) {
      await op(via, { type: 'set', key: `fuzz-${seed}-${via}`, value: via });
      expect(await read(via, { type: 'get', key: `fuzz-${seed}-${via}` })).to.equal(via);
    }
    const totals = ids.map((id) => transportStats(id)!).reduce((n, s) => n + s.badFrames + s.refused, 0);
    expect(totals, 'the bad connections were counted').to.be.greaterThan(totalsBefore);
  });
});

describe('peer authentication: the CLI', function () {
  this.timeout(60_000);
  let root: string;
  beforeEach(() => {
    root = tempDir('actor-raft-peer-cli-');
  });
  afterEach(() => fs.rmSync(root, { recursive: true, force: true }));

  /**
   * Start `actor-raft node` listening on all interfaces with `extra` flags; resolves with its
   * exit code and output, after it exits or, once it logged 'up', after a SIGTERM.
   */
  async function wideNode(extra: string[]): Promise<{ code: number | null; up: boolean; output: string }> {
    const [raft, http] = await freePorts(2);
    const args = [CLI, 'node', '--id', 'n1', '--listen', `0.0.0.0:${raft}`, '--peers', `n1=127.0.0.1:${raft},n2=127.0.0.1:1`];
    args.push('--data', path.join(root, 'n1'), '--http', `127.0.0.1:${http}`, ...extra);
    const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    let up = false;
    const onOutput = (chunk: Buffer) => {
      output += chunk.toString();
      if (!up && /\bup: /.test(output)) {
        up = true;
        proc.kill('SIGTERM');
      }
    };
    proc.stdout!.on('data', onOutput);
    proc.stderr!.on('data', onOutput);
    const code = await new Promise<number | null>((resolve) => proc.once('exit', (c) => resolve(c)));
    return { code, up, output };
  }

  it('refuses to start beyond loopback without TLS or a secret, saying what to add', async () => {
    const r = await wideNode([]);
    expect(r.up).to.equal(false);
    expect(r.code).to.equal(1);
    expect(r.output).to.contain('--cluster-secret-file');
    expect(r.output).to.contain('--insecure-peers');
  });

  it('starts beyond loopback with --cluster-secret-file, or with --insecure-peers and a warning', async () => {
    const { file } = writeSecret(root);
    const withSecret = await wideNode(['--cluster-secret-file', file]);
    expect(withSecret.up, withSecret.output).to.equal(true);
    expect(withSecret.output).to.not.contain('ACTOR_RAFT_INSECURE_PEERS');
    const insecure = await wideNode(['--insecure-peers']);
    expect(insecure.up, insecure.output).to.equal(true);
    expect(insecure.output).to.contain('ACTOR_RAFT_INSECURE_PEERS');
  });
});
