/**
 * Helpers for tests of the TCP transport: free loopback ports, raw frames, a raw peer
 * handshake, cluster secrets, test certificates bound to peer ids, a fuzzer of peer ports.
 */
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import type { MessagePort } from 'node:worker_threads';
import { codec } from '../../src/codec.js';
import type { PeerMessage } from '../../src/messages.js';
import { Rng } from '../../src/rng.js';
import { handshakeProof } from '../../src/transport/handshake.js';
import type { ConnectPeer } from '../../src/transport/switchboard.js';

/**
 * `n` distinct free ports on 127.0.0.1: each bound on port 0, read, and released. (A port can
 * in principle be taken by someone else in between; on a test machine that is rare.)
 */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    const ports: number[] = [];
    for (let i = 0; i < n; i++) {
      const server = net.createServer();
      servers.push(server);
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      ports.push((server.address() as net.AddressInfo).port);
    }
    return ports;
  } finally {
    await Promise.all(servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
  }
}

/** A length-prefixed frame (4-byte big-endian length + payload). */
export function rawFrame(payload: Uint8Array, declaredLength = payload.length): Buffer {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(declaredLength, 0);
  return Buffer.concat([header, Buffer.from(payload)]);
}

/** Connect a raw socket to `port` on loopback; resolves once connected. */
export function rawConnect(port: number): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves when `socket` has closed (with what it received). */
export function closed(socket: net.Socket): Promise<Buffer> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  socket.on('error', () => undefined);
  return new Promise((resolve) => {
    if (socket.destroyed) resolve(Buffer.concat(chunks));
    else socket.once('close', () => resolve(Buffer.concat(chunks)));
  });
}

/** Frames read from a socket, one at a time (`next` resolves null once the socket closed). */
export function frameReader(socket: net.Socket): { next(): Promise<unknown | null> } {
  let buffered = Buffer.alloc(0);
  let ended = false;
  let wake: (() => void) | null = null;
  socket.on('data', (c: Buffer) => {
    buffered = Buffer.concat([buffered, c]);
    wake?.();
  });
  socket.on('close', () => {
    ended = true;
    wake?.();
  });
  socket.on('error', () => undefined);
  return {
    async next() {
      for (;;) {
        if (buffered.length >= 4 && buffered.length >= 4 + buffered.readUInt32BE(0)) {
          const n = buffered.readUInt32BE(0);
          const payload = buffered.subarray(4, 4 + n);
          buffered = buffered.subarray(4 + n);
          return codec.decode(payload);
        }
        if (ended) return null;
        await new Promise<void>((resolve) => (wake = resolve));
        wake = null;
      }
    },
  };
}

export interface RawHandshake {
  socket: net.Socket;
  /** Resolves once the socket closed. */
  gone: Promise<void>;
  /** Whether the node welcomed us (the handshake is done). */
  welcomed: boolean;
  /** The frames we sent, byte for byte (what a recording of the connection would hold). */
  sent: Buffer[];
  /** The node's challenge, if it sent one. */
  challenge: { nonce: Uint8Array; proof: Uint8Array } | null;
}

/**
 * Play a dialing peer's side of the handshake over a raw socket (src/transport/handshake.ts): hello,
 * then, given a challenge, a proof under `secret` (empty without one), then wait for the
 * welcome. `replay` sends those frames instead, byte for byte, without looking at the
 * challenge (a recorded handshake played back). Resolves once welcomed or closed.
 */
export async function rawHandshake(
  port: number,
  hello: { clusterId: string; from: string; to: string },
  options: { secret?: Uint8Array; replay?: Buffer[] } = {},
): Promise<RawHandshake> {
  const socket = await rawConnect(port);
  const gone = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  const frames = frameReader(socket);
  const result: RawHandshake = { socket, gone, welcomed: false, sent: [], challenge: null };
  const send = (b: Buffer) => {
    result.sent.push(b);
    socket.write(b);
  };
  const nonce = crypto.randomBytes(32);
  if (options.replay) {
    send(options.replay[0]!);
  } else {
    send(rawFrame(codec.encode({ hs: 'hello', ...hello, nonce })));
  }
  const challenge = (await frames.next()) as { hs?: string; nonce: Uint8Array; proof: Uint8Array } | null;
  if (!challenge || challenge.hs !== 'challenge') return result;
  result.challenge = { nonce: challenge.nonce, proof: challenge.proof };
  if (options.replay) {
    send(options.replay[1]!);
  } else {
    const proof = options.secret
      ? handshakeProof(options.secret, 'dialer', hello.clusterId, hello.from, hello.to, nonce, challenge.nonce)
      : new Uint8Array(0);
    send(rawFrame(codec.encode({ hs: 'proof', proof })));
  }
  const welcome = (await frames.next()) as { hs?: string } | null;
  result.welcomed = welcome?.hs === 'welcome';
  return result;
}

/** Write a cluster secret file (mode 600) under `dir`; returns its path and the secret. */
export function writeSecret(dir: string, name = 'cluster.secret', secret = crypto.randomBytes(32).toString('hex')): { file: string; secret: Buffer } {
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, name);
  fs.writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  fs.chmodSync(file, 0o600);
  return { file, secret: Buffer.from(secret) };
}

/**
 * Seeded fuzzing of peer ports: `connections` raw connections, each to a random port, some
 * with a hello claiming `hello` (of this or another cluster), some also trying a proof under
 * a wrong secret, then random bytes, a random frame, an oversized header or a cut frame.
 */
export async function fuzzPeerPorts(
  ports: number[],
  hello: { clusterId: string; from: string; to: string },
  options: { seed: number; maxFrameBytes: number; connections?: number },
): Promise<void> {
  const rng = new Rng(options.seed);
  const randomBytes = (n: number) => Uint8Array.from({ length: n }, () => rng.int(0, 255));
  for (let k = 0; k < (options.connections ?? 60); k++) {
    const socket = await rawConnect(rng.pick(ports));
    const gone = closed(socket);
    socket.on('error', () => undefined);
    if (rng.chance(0.5)) {
      const clusterId = rng.chance(0.8) ? hello.clusterId : 'other';
      socket.write(rawFrame(codec.encode({ hs: 'hello', ...hello, clusterId, nonce: randomBytes(32) })));
      if (rng.chance(0.5)) socket.write(rawFrame(codec.encode({ hs: 'proof', proof: randomBytes(rng.pick([0, 32])) })));
    }
    switch (rng.int(0, 3)) {
      case 0: // raw garbage, no framing
        socket.write(randomBytes(rng.int(1, 4096)));
        break;
      case 1: // a well-framed random payload
        socket.write(rawFrame(randomBytes(rng.int(0, 2048))));
        break;
      case 2: // a header promising far too much
        socket.write(rawFrame(randomBytes(8), rng.int(options.maxFrameBytes + 1, 0xffffffff)));
        break;
      default: // a frame cut short
        socket.write(rawFrame(randomBytes(rng.int(1, 64)), rng.int(100, 1000)));
    }
    socket.end();
    await Promise.race([gone, new Promise((r) => setTimeout(r, 2000))]);
    socket.destroy();
  }
}

export function haveOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface TestPki {
  /** The CA's certificate; its key is `caKey` (in `dir`). */
  ca: string;
  caKey: string;
  dir: string;
  /** Per name: certificate and key paths, signed by `ca` (see `makePeerCert`). */
  certs: Record<string, { cert: string; key: string }>;
}

/**
 * A CA and one certificate per peer id, made with openssl under `dir`: the commands of
 * docs/peer-security.md ("Mutual TLS bound to peer ids"), word for word but for file names.
 */
export function makePki(dir: string, names: string[], caName = 'actor-raft test CA'): TestPki {
  fs.mkdirSync(dir, { recursive: true });
  const ca = path.join(dir, 'ca.pem');
  const caKey = path.join(dir, 'ca.key');
  openssl(dir, ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', ca, '-days', '365', '-subj', `/CN=${caName}`]);
  const pki: TestPki = { ca, caKey, dir, certs: {} };
  for (const name of names) makePeerCert(pki, name);
  return pki;
}

/**
 * A certificate signed by `pki`'s CA, stored as `<file>.pem` and `<file>.key`: its subject
 * is CN=`cn`, its alternative names DNS:`id` for each of `dns` (by default the file name: the
 * certificate is bound to that peer id), plus the loopback names HTTPS clients check.
 */
export function makePeerCert(pki: TestPki, file: string, { cn = file, dns = [file] }: { cn?: string; dns?: string[] } = {}): { cert: string; key: string } {
  const key = path.join(pki.dir, `${file}.key`);
  const csr = path.join(pki.dir, `${file}.csr`);
  const cert = path.join(pki.dir, `${file}.pem`);
  const ext = path.join(pki.dir, `${file}.cnf`);
  const altNames = [...dns.map((d) => `DNS:${d}`), 'IP:127.0.0.1', 'DNS:localhost'].join(',');
  fs.writeFileSync(
    ext,
    `basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=${altNames}\n`,
  );
  openssl(pki.dir, ['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${cn}`]);
  openssl(pki.dir, ['x509', '-req', '-in', csr, '-CA', pki.ca, '-CAkey', pki.caKey, '-CAcreateserial', '-out', cert, '-days', '365', '-extfile', ext]);
  pki.certs[file] = { cert, key };
  return { cert, key };
}

function openssl(cwd: string, args: string[]): void {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

/** A stand-in for a consensus actor: the ports it is given per peer, and what arrives on them. */
export function fakeActor() {
  const ports = new Map<string, MessagePort>();
  const received: { peer: string; message: unknown }[] = [];
  const connect: ConnectPeer = async (peer, port) => {
    ports.get(peer)?.close();
    ports.set(peer, port);
    port.on('message', (bytes: Uint8Array) => received.push({ peer, message: codec.decode(bytes) }));
  };
  return {
    connect,
    ports,
    received,
    send(peer: string, message: unknown) {
      ports.get(peer)!.postMessage(codec.encode(message));
    },
    close() {
      for (const p of ports.values()) p.close();
    },
  };
}

/** A RequestVote, the simplest peer message. */
export function vote(from: string, to: string, term = 1): PeerMessage {
  return { type: 'requestVote', term, from, to, lastLogIndex: 0, lastLogTerm: 0 };
}
