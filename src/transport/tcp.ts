/**
 * The TCP transport: each peer in its own process (or host). The consensus actor is wired
 * exactly as in-process (a MessagePort per other peer, handed over with its `ConnectPeer`); here
 * the other end of each port stays on the main thread and is bridged to one TCP (or mutual
 * TLS) connection per peer pair.
 *
 * Frames (length-prefixed msgpack) are `frames.ts`'s; the handshake that opens every
 * connection (cluster id, ids, HMAC proofs under the cluster secret, certificate names under
 * TLS) is `handshake.ts`'s: this file is the switchboard that runs them. Until the handshake is
 * done, any other frame closes the connection (`badFrames`); it must be done within
 * `handshakeTimeoutMs`, in frames of at most MAX_HANDSHAKE_BYTES. After it the connection
 * carries peer messages both ways.
 *
 * A node without a configuration also accepts a handshake from a peer it does not know yet
 * (the leader adding it; at most MAX_STRANGERS at once): it learns the others' addresses from
 * the log, and the stranger's link is made only once its handshake has succeeded.
 *
 * - Peers: the first contacts of `options.peers`, then the configuration in force (`follow`,
 *   told by the consensus actor): members added to it are dialed at the address the log
 *   carries, members removed from it dropped. A node without a configuration also takes a
 *   hello from a peer it does not know (at most MAX_STRANGERS at once): the leader adding it.
 *
 * - Lazy: a peer is dialed when the first frame for it is sent; a failed or lost connection is
 *   dialed again after a capped exponential backoff (50 ms → 2 s) while frames wait.
 * - One connection per pair: both sides may dial at once. Of two connections between the same
 *   pair, the one dialed by the lower id (string order) wins and both sides close the other; a
 *   newer connection from the same dialer replaces the older one (the dialer restarted).
 * - Backpressure: socket.write's return value and 'drain' are respected; frames wait in a
 *   per-peer queue bounded by `maxQueuedBytes` (with the socket's own buffer); beyond it
 *   frames are dropped and counted (`dropped`): Raft tolerates lost messages.
 * - Robustness: a frame that does not decode as peer messages from that peer to this node,
 *   a frame longer than `maxFrameBytes` (judged from its header) or a connection closed in the
 *   middle of a frame closes that connection only and counts in `badFrames`; a hello of another
 *   cluster or an unknown peer (or, with TLS, a failed TLS handshake) counts in `refused`, and
 *   a peer that fails to prove its id (certificate of another name, wrong proof) in
 *   `refused` and `authFailures`.
 * - Safe defaults: a node that would listen beyond loopback with neither TLS nor a cluster
 *   secret does not start (InsecurePeersError), unless `insecurePeers` says so.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { InsecurePeersError } from '../errors.js';
import { codec } from '../codec.js';
import type { AddressBook } from '../messages.js';
import { isPeerId, positiveInt } from '../validate.js';
import { frame, FrameReader, splitBundle, validPeerFrame } from './frames.js';
import {
  certificateBoundTo,
  freshNonce,
  handshakeProof,
  isHandshake,
  MAX_HANDSHAKE_BYTES,
  proofMatches,
  readClusterSecret,
  type Challenge,
  type Handshake,
  type Hello,
  type Proof,
} from './handshake.js';
import type { ConnectPeer, Switchboard } from './switchboard.js';

export interface TcpTlsOptions {
  /** Paths to PEM files: the cluster's CA, this node's certificate and its private key. */
  ca: string;
  cert: string;
  key: string;
  /**
   * Which certificate names stand for which peer id (an allow-list per peer). A peer listed
   * here is accepted only with a certificate carrying one of its names; any other peer only
   * with a certificate carrying its own id. A name counts when it is a DNS or URI subject
   * alternative name of the certificate, or its subject's CN.
   */
  peerNames?: Record<string, string[]>;
}

export interface TcpSwitchboardOptions {
  /** This node's peer id. */
  id: string;
  /** `host:port` to listen on (port 0: any free port; see `address()`). */
  listen: string;
  /** Every other peer: id → `host:port`. */
  peers: Record<string, string>;
  /** Checked on every connection: a node of another cluster is refused. */
  clusterId: string;
  /** Largest frame accepted (default 64 MiB); a longer one closes its connection. */
  maxFrameBytes?: number;
  /** Bytes waiting to be sent per peer (default 64 MiB); beyond it frames are dropped. */
  maxQueuedBytes?: number;
  /** Mutual TLS: both sides present a certificate signed by `ca`. */
  tls?: TcpTlsOptions;
  /** A connection that has not completed its handshake within this time is closed (default 5 s). */
  handshakeTimeoutMs?: number;
  /**
   * A file holding the cluster's shared secret (at least 16 bytes; trailing whitespace is
   * ignored; not readable by other users): every peer must prove it knows it in the
   * handshake. Authenticates peers without TLS; does not encrypt or protect the stream.
   */
  clusterSecretFile?: string;
  /**
   * Listen beyond loopback with neither TLS nor a cluster secret: anyone who reaches the port
   * can pose as any peer. Refused unless this is true, and then warned about at start.
   */
  insecurePeers?: boolean;
}

export interface TcpStats {
  /** Data frames received from / sent to peers (hellos not included). */
  framesIn: number;
  framesOut: number;
  /** Bytes read from / written to peer connections, headers and hellos included (TLS overhead not). */
  bytesIn: number;
  bytesOut: number;
  /** Frames dropped: queue full, or arriving while this node's actor was down. */
  dropped: number;
  /** Connections closed for a bad frame: undecodable, not a peer message, oversized, truncated. */
  badFrames: number;
  /** Connections refused: another cluster, an unknown peer, a failed TLS handshake or proof of id. */
  refused: number;
  /**
   * Of those, peers that failed to prove the id they claim (or the dialed peer failed to
   * prove its): a certificate not bound to that id, a wrong or missing cluster-secret proof.
   */
  authFailures: number;
  /** Connections established (hello exchanged), either direction. */
  connects: number;
  /** Of those, connections to a peer that had been connected before and had none then. */
  reconnects: number;
  /** Peers with an established connection now. */
  connectedPeers: string[];
}

interface TlsFiles {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
}

type Counter = Exclude<keyof TcpStats, 'connectedPeers'>;

const DEFAULT_MAX_FRAME_BYTES = 64 << 20;
const DEFAULT_MAX_QUEUED_BYTES = 64 << 20;
const BACKOFF_MIN_MS = 50;
const BACKOFF_MAX_MS = 2_000;
const DEFAULT_HANDSHAKE_TIMEOUT_MS = 5_000;
const RETIRE_GRACE_MS = 2_000;
/** Peers a blank node takes a hello from without knowing them, at once (whoever adds it is one). */
const MAX_STRANGERS = 16;

/** Split `host:port` (IPv6 hosts in brackets); port 0 only if `allowZero`. */
export function parseHostPort(address: unknown, what: string, allowZero = false): { host: string; port: number } {
  if (typeof address !== 'string') throw new TypeError(`${what} must be a 'host:port' string, got ${JSON.stringify(address)}`);
  const m = /^(?:\[([^\]]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(address);
  if (!m) throw new TypeError(`${what} must be 'host:port' (IPv6 as '[::1]:port'), got ${JSON.stringify(address)}`);
  const host = (m[1] ?? m[2])!;
  const port = Number(m[3]);
  if (port > 65535 || (port === 0 && !allowZero)) {
    throw new RangeError(`${what} has port ${port}; it must be in ${allowZero ? 0 : 1}..65535`);
  }
  return { host, port };
}

function formatHostPort(host: string, port: number): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}

/** Whether `host` (as in a listen address) is a loopback address. */
export function isLoopbackHost(host: string): boolean {
  const h = host.toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

/** One socket to one peer (dialed or accepted), with its handshake state. */
interface Conn {
  socket: net.Socket;
  /** Who dialed it (for an accepted connection: known once the dialer has proved its id). */
  dialer: string;
  /** The peer, once known (the dialer knows it from the start; the acceptor once proved). */
  peer: string | null;
  /** The handshake frame expected next (the dialer starts at 'challenge', the acceptor at 'hello'). */
  expect: Handshake['hs'];
  /** This side's fresh nonce, and the other side's once received. */
  nonce: Uint8Array;
  theirNonce: Uint8Array | null;
  /** Acceptor: the id the dialer's hello claims, until its proof arrives. */
  claimed: string | null;
  open: boolean;
  reader: FrameReader;
  timer: NodeJS.Timeout | null;
  /** Set when closed by us for a reason already counted (no double counting of truncation). */
  closing: boolean;
}

/** Everything about one remote peer. */
interface Link {
  peer: string;
  /** Where to dial it; null for a peer known only by the connection it made to us. */
  host: string | null;
  port: number;
  /** The established connection, if any. */
  conn: Conn | null;
  /** A connection we are dialing (not yet open). */
  dialing: Conn | null;
  /** Frames waiting for a connection or for 'drain'. */
  queue: Buffer[];
  queuedBytes: number;
  writable: boolean;
  backoffMs: number;
  retry: NodeJS.Timeout | null;
  everConnected: boolean;
  /** The main-thread end of the port wired to the consensus actor. */
  actorPort: MessagePort | null;
}

export class TcpSwitchboard implements Switchboard {
  private readonly links = new Map<string, Link>();
  private readonly conns = new Set<Conn>();
  private readonly counters: Record<Counter, number> = {
    framesIn: 0,
    framesOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    dropped: 0,
    badFrames: 0,
    refused: 0,
    authFailures: 0,
    connects: 0,
    reconnects: 0,
  };
  private readonly maxFrameBytes: number;
  private readonly maxQueuedBytes: number;
  private readonly handshakeTimeoutMs: number;
  private closed = false;
  /**
   * Whether the configuration in force is known (a `follow` with one): until then a hello from
   * a peer not in `options.peers` is taken (a blank node learns its cluster from whoever adds
   * it); after, only the configuration's members are.
   */
  private configured = false;
  /** Peers that were members of a configuration followed here: once they leave it they are dropped. */
  private readonly formerMembers = new Set<string>();
  /** The members of the configuration followed last (empty while blank). */
  private currentMembers = new Set<string>();
  /** How the actor wired now (join) is reached, so a late leave of its predecessor is ignored. */
  private member: ConnectPeer | null = null;
  private bound = '';

  private constructor(
    private readonly options: TcpSwitchboardOptions,
    private readonly server: net.Server,
    private readonly tlsContext: TlsFiles | null,
    /** The cluster secret, if configured: both sides of every handshake prove they know it. */
    private readonly secret: Buffer | null,
  ) {
    this.maxFrameBytes = options.maxFrameBytes ?? DEFAULT_MAX_FRAME_BYTES;
    this.maxQueuedBytes = options.maxQueuedBytes ?? DEFAULT_MAX_QUEUED_BYTES;
    this.handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
    for (const [peer, address] of Object.entries(options.peers)) this.addLink(peer, address);
  }

  private addLink(peer: string, address: string | null): Link {
    const { host, port } = address === null ? { host: null, port: 0 } : parseHostPort(address, `address of peer '${peer}'`);
    const link: Link = {
      peer,
      host,
      port,
      conn: null,
      dialing: null,
      queue: [],
      queuedBytes: 0,
      writable: true,
      backoffMs: 0,
      retry: null,
      everConnected: false,
      actorPort: null,
    };
    this.links.set(peer, link);
    // A link added while an actor is wired gets its port now (join wired the others).
    const member = this.member;
    if (member !== null && !this.closed) {
      const { port1, port2 } = new MessageChannel();
      this.attachActorPort(link, port2);
      member(peer, port1).catch(() => undefined);
    }
    return link;
  }

  /**
   * Validate `options`, read the TLS files and the cluster secret, refuse an unauthenticated
   * port beyond loopback (InsecurePeersError), listen; resolves once listening.
   */
  static async start(options: TcpSwitchboardOptions): Promise<TcpSwitchboard> {
    validateOptions(options);
    const { host, port } = parseHostPort(options.listen, 'listen', true);
    const tlsFiles = options.tls
      ? { ca: fs.readFileSync(options.tls.ca), cert: fs.readFileSync(options.tls.cert), key: fs.readFileSync(options.tls.key) }
      : null;
    const secret = options.clusterSecretFile === undefined ? null : readClusterSecret(options.clusterSecretFile);
    if (!tlsFiles && !secret && !isLoopbackHost(host)) {
      if (options.insecurePeers !== true) {
        throw new InsecurePeersError(
          `peer port ${options.listen} is not on loopback and peers would not be authenticated: anyone reaching it could pose as any peer. ` +
            'Add a cluster secret (network.clusterSecretFile / --cluster-secret-file FILE) or mutual TLS ' +
            '(network.tls / --tls-ca, --tls-cert, --tls-key), or accept the risk with network.insecurePeers: true / --insecure-peers',
        );
      }
      process.emitWarning(
        `peer port ${options.listen} accepts unauthenticated peers (insecurePeers): anyone reaching it can pose as any peer and rewrite the log`,
        { type: 'SecurityWarning', code: 'ACTOR_RAFT_INSECURE_PEERS' },
      );
    }
    // The server's handler needs the instance: create it first, attach below.
    let self: TcpSwitchboard | null = null;
    const onSocket = (socket: net.Socket) => self?.accept(socket);
    const server = tlsFiles
      ? tls.createServer({ ...tlsFiles, requestCert: true, rejectUnauthorized: true }, onSocket)
      : net.createServer(onSocket);
    self = new TcpSwitchboard(options, server, tlsFiles, secret);
    const board = self;
    if (tlsFiles) {
      // A peer without a certificate of the cluster's CA fails here, before any frame.
      server.on('tlsClientError', (_err, socket) => {
        board.counters.refused++;
        socket.destroy();
      });
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    server.on('error', () => undefined);
    const a = server.address() as net.AddressInfo;
    self.bound = formatHostPort(a.address, a.port);
    return self;
  }

  /** The bound `host:port` (with the real port when listening on port 0). */
  address(): string {
    return this.bound;
  }

  stats(): TcpStats {
    return {
      ...this.counters,
      connectedPeers: [...this.links.values()].filter((l) => l.conn !== null).map((l) => l.peer),
    };
  }

  /**
   * Follow the configuration in force (§6, its addresses carried in the log): reach every peer
   * in `members` at its address in `addresses` (or, for entries written without addresses,
   * the one in `options.peers`, or only by the connection it makes to us), and drop the link
   * of every peer that left the configuration (or was never in one nor in `options.peers`).
   * The first contacts of `options.peers` stay until a configuration has held them: a link
   * is only dialed when the consensus actor sends on it, which it does to members only.
   */
  follow(configured: boolean, members: readonly string[], addresses: AddressBook): void {
    if (this.closed) return;
    this.configured = configured;
    if (!configured) return;
    const wanted = new Set(members.filter((m) => m !== this.options.id && isPeerId(m)));
    for (const link of [...this.links.values()]) {
      const firstContact = Object.hasOwn(this.options.peers, link.peer) && !this.formerMembers.has(link.peer);
      if (!wanted.has(link.peer) && !firstContact) this.removeLink(link);
    }
    for (const peer of wanted) this.formerMembers.add(peer);
    this.currentMembers = wanted;
    for (const peer of wanted) {
      const fromLog = Object.hasOwn(addresses, peer) ? validAddress(addresses[peer]!.peer) : undefined;
      const address = fromLog ?? (Object.hasOwn(this.options.peers, peer) ? this.options.peers[peer]! : null);
      const link = this.links.get(peer);
      if (link === undefined) {
        this.addLink(peer, address);
        continue;
      }
      if (address === null) continue;
      const { host, port } = parseHostPort(address, `address of peer '${peer}'`);
      if (link.host === host && link.port === port) continue;
      // Moved (or first learned): dial the new address from now on.
      link.host = host;
      link.port = port;
      if (link.queue.length > 0) this.ensureDialing(link);
    }
  }

  /** The peers this switchboard links to now, with the address it dials (null: inbound only). */
  peerAddresses(): Record<string, string | null> {
    const out: Record<string, string | null> = {};
    for (const l of this.links.values()) out[l.peer] = l.host === null ? null : formatHostPort(l.host, l.port);
    return out;
  }

  /** Links to peers known only by the connection they made (a blank node's, before its configuration). */
  private strangers(): number {
    let n = 0;
    for (const l of this.links.values()) if (l.host === null && !this.currentMembers.has(l.peer)) n++;
    return n;
  }

  /** A peer no longer in the configuration: close its port to the actor and its connections. */
  private removeLink(link: Link): void {
    this.links.delete(link.peer);
    if (link.retry) clearTimeout(link.retry);
    link.retry = null;
    link.queue = [];
    link.queuedBytes = 0;
    link.actorPort?.close();
    link.actorPort = null;
    if (link.conn) this.drop(link.conn);
    if (link.dialing) this.drop(link.dialing);
    link.conn = null;
    link.dialing = null;
  }

  // -------------------------------------------------------------------------------------------
  // Switchboard

  async join(id: string, connect: ConnectPeer, gone: Promise<void>): Promise<void> {
    if (id !== this.options.id) throw new Error(`this TCP switchboard serves peer '${this.options.id}', not '${id}'`);
    if (this.closed) return;
    this.member = connect;
    const wiring: Promise<unknown>[] = [];
    for (const link of this.links.values()) {
      const { port1, port2 } = new MessageChannel();
      this.attachActorPort(link, port2);
      wiring.push(Promise.race([connect(link.peer, port1).catch(() => undefined), gone]));
    }
    await Promise.all(wiring);
  }

  leave(id: string, connect: ConnectPeer): void {
    if (id !== this.options.id || this.member !== connect) return;
    this.member = null;
    for (const link of this.links.values()) {
      link.actorPort?.close();
      link.actorPort = null;
    }
  }

  /** Close the server, every connection and port; clears every timer. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    const serverClosed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const link of this.links.values()) {
      if (link.retry) clearTimeout(link.retry);
      link.retry = null;
      link.queue = [];
      link.queuedBytes = 0;
      link.actorPort?.close();
      link.actorPort = null;
    }
    for (const conn of [...this.conns]) this.drop(conn);
    await serverClosed;
  }

  // -------------------------------------------------------------------------------------------
  // Actor side

  private attachActorPort(link: Link, port: MessagePort): void {
    link.actorPort?.close();
    link.actorPort = port;
    port.on('message', (bytes: unknown) => {
      if (bytes instanceof Uint8Array && bytes.length > 0) this.send(link, bytes);
    });
    port.on('close', () => {
      if (link.actorPort === port) link.actorPort = null;
    });
  }

  /** A frame for `link`'s peer: write it, queue it, or drop it when too much is waiting. */
  private send(link: Link, payload: Uint8Array): void {
    if (this.closed) return;
    if (payload.length > this.maxFrameBytes) {
      // A bundle too big for one frame (several appends of one turn) goes as one frame per
      // message; a single message too big is dropped (the peer would refuse it anyway).
      const parts = splitBundle(payload);
      if (parts === null) {
        this.counters.dropped++;
        return;
      }
      for (const part of parts) this.send(link, part);
      return;
    }
    const buf = frame(payload);
    const waiting = link.queuedBytes + (link.conn?.socket.writableLength ?? 0);
    if (waiting + buf.length > this.maxQueuedBytes) {
      this.counters.dropped++;
      return;
    }
    this.counters.framesOut++;
    if (link.conn && link.writable && link.queue.length === 0) {
      this.write(link, link.conn, buf);
      return;
    }
    link.queue.push(buf);
    link.queuedBytes += buf.length;
    if (!link.conn) this.ensureDialing(link);
  }

  private write(link: Link, conn: Conn, buf: Buffer): void {
    this.counters.bytesOut += buf.length;
    if (!conn.socket.write(buf)) link.writable = false;
  }

  private flush(link: Link): void {
    const conn = link.conn;
    if (!conn) return;
    while (link.writable && link.queue.length > 0) {
      const buf = link.queue.shift()!;
      link.queuedBytes -= buf.length;
      this.write(link, conn, buf);
    }
  }

  // -------------------------------------------------------------------------------------------
  // Connections

  private ensureDialing(link: Link): void {
    if (this.closed || link.conn || link.dialing || link.retry || link.host === null) return;
    this.dial(link);
  }

  private dial(link: Link): void {
    const t = this.tlsContext;
    // With TLS, the server must hold a certificate bound to the peer we mean to reach (in
    // place of a check of the host name: the peer id is what the cluster trusts).
    const checkServerIdentity = (_host: string, cert: tls.PeerCertificate): Error | undefined => {
      if (certificateBoundTo(cert, link.peer, this.options.tls?.peerNames)) return undefined;
      this.counters.refused++;
      this.counters.authFailures++;
      return new Error(`the certificate of ${host}:${link.port} is not bound to peer '${link.peer}'`);
    };
    const host = link.host!;
    const socket = t
      ? tls.connect({ host, port: link.port, ca: t.ca, cert: t.cert, key: t.key, rejectUnauthorized: true, checkServerIdentity })
      : net.connect({ host, port: link.port });
    const conn = this.track(socket, this.options.id, link.peer);
    link.dialing = conn;
    socket.once(t ? 'secureConnect' : 'connect', () => {
      if (conn.closing) return;
      this.writeHandshake(conn, { hs: 'hello', clusterId: this.options.clusterId, from: this.options.id, to: link.peer, nonce: conn.nonce });
    });
  }

  /** This side's proof for a handshake (empty without a cluster secret). */
  private proof(role: 'dialer' | 'acceptor', dialer: string, acceptor: string, dialerNonce: Uint8Array, acceptorNonce: Uint8Array): Uint8Array {
    if (!this.secret) return new Uint8Array(0);
    return handshakeProof(this.secret, role, this.options.clusterId, dialer, acceptor, dialerNonce, acceptorNonce);
  }

  private accept(socket: net.Socket): void {
    if (this.closed) {
      socket.destroy();
      return;
    }
    this.track(socket, '', null);
  }

  private track(socket: net.Socket, dialer: string, peer: string | null): Conn {
    const conn: Conn = {
      socket,
      dialer,
      peer,
      expect: peer === null ? 'hello' : 'challenge',
      nonce: freshNonce(),
      theirNonce: null,
      claimed: null,
      open: false,
      reader: new FrameReader(MAX_HANDSHAKE_BYTES),
      timer: null,
      closing: false,
    };
    this.conns.add(conn);
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 10_000);
    conn.timer = setTimeout(() => {
      conn.timer = null;
      if (!conn.open) this.drop(conn);
    }, this.handshakeTimeoutMs);
    socket.on('data', (chunk: Buffer) => this.onData(conn, chunk));
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => this.onClose(conn));
    socket.on('drain', () => {
      const link = conn.peer === null ? undefined : this.links.get(conn.peer);
      if (link && link.conn === conn) {
        link.writable = true;
        this.flush(link);
      }
    });
    return conn;
  }

  private writeHandshake(conn: Conn, message: Handshake): void {
    const buf = frame(codec.encode(message));
    this.counters.bytesOut += buf.length;
    conn.socket.write(buf);
  }

  private onData(conn: Conn, chunk: Buffer): void {
    if (conn.closing) return;
    this.counters.bytesIn += chunk.length;
    let frames: Uint8Array[];
    try {
      frames = conn.reader.push(chunk);
    } catch {
      return this.bad(conn);
    }
    for (const payload of frames) {
      if (conn.closing) return;
      if (conn.open) this.onFrame(conn, payload);
      else this.onHandshake(conn, payload);
    }
  }

  /** A frame before the connection is open: only the handshake frame expected next is taken. */
  private onHandshake(conn: Conn, payload: Uint8Array): void {
    let message: unknown;
    try {
      message = codec.decode(payload);
    } catch {
      return this.bad(conn);
    }
    switch (conn.expect) {
      case 'hello':
        return isHandshake(message, 'hello') ? this.onHello(conn, message) : this.bad(conn);
      case 'challenge':
        return isHandshake(message, 'challenge') ? this.onChallenge(conn, message) : this.bad(conn);
      case 'proof':
        return isHandshake(message, 'proof') ? this.onProof(conn, message) : this.bad(conn);
      case 'welcome':
        return isHandshake(message, 'welcome') ? this.onWelcome(conn) : this.bad(conn);
    }
  }

  /** Acceptor, step 1: a dialer says who it is; check it and challenge it. */
  private onHello(conn: Conn, hello: Hello): void {
    const me = this.options.id;
    const known = this.links.has(hello.from) || this.mayAcceptStranger(hello.from);
    if (hello.clusterId !== this.options.clusterId || hello.to !== me || !known) return this.refuse(conn, false);
    if (this.tlsContext && !certificateBoundTo((conn.socket as tls.TLSSocket).getPeerCertificate(), hello.from, this.options.tls?.peerNames)) {
      return this.refuse(conn, true);
    }
    conn.claimed = hello.from;
    conn.theirNonce = hello.nonce;
    conn.expect = 'proof';
    const proof = this.proof('acceptor', hello.from, me, hello.nonce, conn.nonce);
    this.writeHandshake(conn, { hs: 'challenge', clusterId: this.options.clusterId, from: me, to: hello.from, nonce: conn.nonce, proof });
  }

  /** Dialer, step 2: the peer answers with its nonce and its proof; check it and prove ours. */
  private onChallenge(conn: Conn, challenge: Challenge): void {
    const me = this.options.id;
    const peer = conn.peer!;
    if (challenge.clusterId !== this.options.clusterId || challenge.from !== peer || challenge.to !== me) return this.refuse(conn, false);
    if (!proofMatches(this.proof('acceptor', me, peer, conn.nonce, challenge.nonce), challenge.proof)) return this.refuse(conn, true);
    conn.theirNonce = challenge.nonce;
    conn.expect = 'welcome';
    this.writeHandshake(conn, { hs: 'proof', proof: this.proof('dialer', me, peer, conn.nonce, challenge.nonce) });
  }

  /** Acceptor, step 3: the dialer's proof for the id it claimed; it is that peer now. */
  private onProof(conn: Conn, proof: Proof): void {
    const peer = conn.claimed!;
    if (!proofMatches(this.proof('dialer', peer, this.options.id, conn.theirNonce!, conn.nonce), proof.proof)) {
      return this.refuse(conn, true);
    }
    // A stranger (see mayAcceptStranger) gets its link only now that it proved who it is.
    const link = this.links.get(peer) ?? (this.mayAcceptStranger(peer) ? this.addLink(peer, null) : undefined);
    if (link === undefined) return this.refuse(conn, false);
    conn.dialer = peer;
    conn.peer = peer;
    this.establish(link, conn, true);
  }

  /**
   * A node without a configuration takes a handshake from a peer it does not know yet: the
   * leader adding it (it learns the others' addresses from the log). Reached only over that
   * connection until then; at most MAX_STRANGERS at once.
   */
  private mayAcceptStranger(peer: string): boolean {
    return !this.configured && peer !== this.options.id && isPeerId(peer) && this.strangers() < MAX_STRANGERS;
  }

  /** Dialer, step 4: welcomed, the connection is open. */
  private onWelcome(conn: Conn): void {
    const link = this.links.get(conn.peer!)!;
    if (link.dialing === conn) link.dialing = null;
    this.establish(link, conn, false);
  }

  /** A handshake that fails: another cluster or peer, or (`auth`) a failed proof of id. */
  private refuse(conn: Conn, auth: boolean): void {
    this.counters.refused++;
    if (auth) this.counters.authFailures++;
    this.drop(conn);
  }

  /** `conn` has done its handshake: make it the link's connection unless a better one exists. */
  private establish(link: Link, conn: Conn, welcome: boolean): void {
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = null;
    const current = link.conn;
    // Two connections for one pair: the one dialed by the lower id wins; a newer one from the
    // same dialer replaces the older (that dialer reconnected, e.g. after a restart).
    const lower = this.options.id < link.peer ? this.options.id : link.peer;
    const wins = conn.dialer === lower;
    // Open for reading either way: a dial of ours that loses may already carry frames.
    conn.open = true;
    conn.reader.maxFrameBytes = this.maxFrameBytes;
    if (current && current !== conn) {
      if (current.dialer === conn.dialer || wins) {
        link.conn = null;
        this.retire(current);
      } else if (welcome) {
        // Accepted but losing: no welcome goes back, so the dialer wrote nothing on it.
        this.drop(conn);
        return;
      } else {
        this.retire(conn);
        return;
      }
    }
    link.conn = conn;
    link.writable = true;
    link.backoffMs = 0;
    if (link.retry) clearTimeout(link.retry);
    link.retry = null;
    this.counters.connects++;
    if (link.everConnected && !current) this.counters.reconnects++;
    link.everConnected = true;
    if (welcome) this.writeHandshake(conn, { hs: 'welcome' });
    this.flush(link);
  }

  private onFrame(conn: Conn, payload: Uint8Array): void {
    const peer = conn.peer!;
    if (!validPeerFrame(payload, peer, this.options.id)) return this.bad(conn);
    const link = this.links.get(peer);
    // A peer removed from the configuration while a retired connection of its drains.
    if (link === undefined) return this.drop(conn);
    this.counters.framesIn++;
    const port = link.actorPort;
    if (!port) {
      this.counters.dropped++;
      return;
    }
    port.postMessage(payload, [payload.buffer as ArrayBuffer]);
  }

  private bad(conn: Conn): void {
    this.counters.badFrames++;
    this.drop(conn);
  }

  /**
   * A connection replaced by a better one: nothing more is written on it, what was written
   * still reaches the peer, and frames the peer wrote before it switched too (both sides pick
   * the same winner) are still read; destroyed after a grace period. It is not ended at once:
   * a TLS socket ended while the peer's last frames are in flight loses them.
   */
  private retire(conn: Conn): void {
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = setTimeout(() => this.drop(conn), RETIRE_GRACE_MS);
  }

  /** Close a connection at once (its link, if any, notices in onClose). */
  private drop(conn: Conn): void {
    conn.closing = true;
    conn.socket.destroy();
  }

  private onClose(conn: Conn): void {
    if (!this.conns.delete(conn)) return;
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = null;
    // Closed by the other side in the middle of a frame: a truncated frame.
    if (!conn.closing && conn.reader.pending > 0) this.counters.badFrames++;
    conn.closing = true;
    const link = conn.peer === null ? undefined : this.links.get(conn.peer);
    if (!link) return;
    if (link.dialing === conn) link.dialing = null;
    if (link.conn === conn) {
      link.conn = null;
      link.writable = true;
    }
    if (this.closed || link.conn || link.dialing) return;
    // A stranger that said hello to a blank node and left: forget it (nothing can dial it).
    if (link.host === null && !this.currentMembers.has(link.peer)) return this.removeLink(link);
    // Lost or failed: dial again after a backoff, if anything waits (else on the next frame).
    link.backoffMs = link.backoffMs === 0 ? BACKOFF_MIN_MS : Math.min(link.backoffMs * 2, BACKOFF_MAX_MS);
    if (link.retry) return;
    link.retry = setTimeout(() => {
      link.retry = null;
      if (link.queue.length > 0) this.ensureDialing(link);
    }, link.backoffMs);
  }
}

/** `address` if it is a valid `host:port`, else undefined (a bad address in the log is not dialed). */
function validAddress(address: string | undefined): string | undefined {
  if (address === undefined) return undefined;
  try {
    parseHostPort(address, 'address');
    return address;
  } catch {
    return undefined;
  }
}

/** Check a network configuration; throws TypeError/RangeError naming the bad field. */
export function validateOptions(o: TcpSwitchboardOptions, prefix = ''): void {
  if (typeof o !== 'object' || o === null) throw new TypeError(`${prefix || 'options'} must be an object`);
  if (!isPeerId(o.id)) throw new TypeError(`${prefix}id must be a peer id, got ${JSON.stringify(o.id)}`);
  parseHostPort(o.listen, `${prefix}listen`, true);
  if (typeof o.peers !== 'object' || o.peers === null || Array.isArray(o.peers)) {
    throw new TypeError(`${prefix}peers must be an object mapping peer ids to 'host:port'`);
  }
  for (const [peer, address] of Object.entries(o.peers)) {
    if (!isPeerId(peer)) throw new TypeError(`${prefix}peers has an invalid peer id ${JSON.stringify(peer)}`);
    if (peer === o.id) throw new RangeError(`${prefix}peers must not contain this node's own id '${o.id}'`);
    parseHostPort(address, `${prefix}peers.${peer}`);
  }
  if (typeof o.clusterId !== 'string' || o.clusterId === '') throw new TypeError(`${prefix}clusterId must be a non-empty string`);
  positiveInt(o.maxFrameBytes, `${prefix}maxFrameBytes`);
  positiveInt(o.maxQueuedBytes, `${prefix}maxQueuedBytes`);
  positiveInt(o.handshakeTimeoutMs, `${prefix}handshakeTimeoutMs`);
  if (o.tls !== undefined) {
    if (typeof o.tls !== 'object' || o.tls === null) throw new TypeError(`${prefix}tls must be { ca, cert, key } (file paths)`);
    for (const k of ['ca', 'cert', 'key'] as const) {
      if (typeof o.tls[k] !== 'string' || o.tls[k] === '') throw new TypeError(`${prefix}tls.${k} must be a file path`);
    }
    const names = o.tls.peerNames;
    if (names !== undefined) {
      if (typeof names !== 'object' || names === null || Array.isArray(names)) {
        throw new TypeError(`${prefix}tls.peerNames must map peer ids to lists of certificate names`);
      }
      for (const [peer, list] of Object.entries(names)) {
        // This node's own entry is allowed (one list for the whole cluster) and unused.
        if (!(peer in o.peers) && peer !== o.id) throw new RangeError(`${prefix}tls.peerNames names '${peer}', which is not one of the peers`);
        if (!Array.isArray(list) || list.length === 0 || !list.every((n) => typeof n === 'string' && n !== '')) {
          throw new TypeError(`${prefix}tls.peerNames.${peer} must be a non-empty list of certificate names`);
        }
      }
    }
  }
  if (o.clusterSecretFile !== undefined && (typeof o.clusterSecretFile !== 'string' || o.clusterSecretFile === '')) {
    throw new TypeError(`${prefix}clusterSecretFile must be a file path`);
  }
  if (o.insecurePeers !== undefined && typeof o.insecurePeers !== 'boolean') throw new TypeError(`${prefix}insecurePeers must be a boolean`);
}
