/**
 * The TCP transport: each peer in its own process (or host). The consensus actor is wired
 * exactly as in-process (a MessagePort per other peer, handed over with its `ConnectPeer`); here
 * the other end of each port stays on the main thread and is bridged to one TCP (or mutual
 * TLS) connection per peer pair.
 *
 * Wire format: frames of a 4-byte big-endian length followed by that many bytes of msgpack
 * (src/messages.ts `codec`), exactly the bytes the actor posted (one message or a bundle).
 * The dialer's first frame is a hello `{ clusterId, from, to }`; the acceptor checks it (same
 * cluster, `from` a peer it links to, `to` itself) and answers with its own hello. After that
 * the connection carries frames both ways.
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
 *   cluster or an unknown peer (or, with TLS, a failed TLS handshake) counts in `refused`.
 */
import fs from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import { codec, isPeerMessage, type AddressBook, type Bundle } from '../messages.js';
import { isPeerId, positiveInt } from '../validate.js';
import type { ConnectPeer, Switchboard } from './switchboard.js';

export interface TcpTlsOptions {
  /** Paths to PEM files: the cluster's CA, this node's certificate and its private key. */
  ca: string;
  cert: string;
  key: string;
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
  /** A connection that has not completed its hello within this time is closed (default 5 s). */
  handshakeTimeoutMs?: number;
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
  /** Connections refused: another cluster, an unknown peer, a bad hello, a failed TLS handshake. */
  refused: number;
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

interface Hello {
  clusterId: string;
  from: string;
  to: string;
}

const HEADER_BYTES = 4;
const DEFAULT_MAX_FRAME_BYTES = 64 << 20;
const DEFAULT_MAX_QUEUED_BYTES = 64 << 20;
const MAX_HELLO_BYTES = 4096;
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

function isHello(v: unknown): v is Hello {
  if (typeof v !== 'object' || v === null) return false;
  const h = v as Record<string, unknown>;
  return typeof h.clusterId === 'string' && typeof h.from === 'string' && typeof h.to === 'string';
}

function frame(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, HEADER_BYTES);
  return out;
}

/**
 * Reassembles frames from socket chunks. `push` returns complete payloads (each owning its
 * ArrayBuffer, so it can be transferred), or throws FrameError on an oversized header.
 */
class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;
  constructor(public maxFrameBytes: number) {}

  get pending(): number {
    return this.buffered;
  }

  push(chunk: Buffer): Uint8Array[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: Uint8Array[] = [];
    for (;;) {
      if (this.buffered < HEADER_BYTES) return out;
      const length = this.peekLength();
      if (length > this.maxFrameBytes) throw new FrameError(`frame of ${length} bytes exceeds the maximum of ${this.maxFrameBytes}`);
      if (length === 0) throw new FrameError('empty frame');
      if (this.buffered < HEADER_BYTES + length) return out;
      this.take(HEADER_BYTES);
      out.push(this.take(length));
    }
  }

  private peekLength(): number {
    const first = this.chunks[0]!;
    if (first.length >= HEADER_BYTES) return first.readUInt32BE(0);
    const head = Buffer.concat(this.chunks, HEADER_BYTES);
    this.chunks = [Buffer.concat(this.chunks)];
    return head.readUInt32BE(0);
  }

  /** Remove `n` buffered bytes into a fresh Uint8Array of its own. */
  private take(n: number): Uint8Array {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.chunks[0]!;
      const use = Math.min(c.length, n - filled);
      out.set(use === c.length ? c : c.subarray(0, use), filled);
      filled += use;
      if (use === c.length) this.chunks.shift();
      else this.chunks[0] = c.subarray(use);
    }
    this.buffered -= n;
    return out;
  }
}

class FrameError extends Error {}

/** One socket to one peer (dialed or accepted), with its handshake state. */
interface Conn {
  socket: net.Socket;
  /** Who dialed it. */
  dialer: string;
  /** The peer, once known (the dialer knows it from the start). */
  peer: string | null;
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

  /** Validate `options`, read the TLS files, listen; resolves once listening. */
  static async start(options: TcpSwitchboardOptions): Promise<TcpSwitchboard> {
    validateOptions(options);
    const { host, port } = parseHostPort(options.listen, 'listen', true);
    const tlsFiles = options.tls
      ? { ca: fs.readFileSync(options.tls.ca), cert: fs.readFileSync(options.tls.cert), key: fs.readFileSync(options.tls.key) }
      : null;
    // The server's handler needs the instance: create it first, attach below.
    let self: TcpSwitchboard | null = null;
    const onSocket = (socket: net.Socket) => self?.accept(socket);
    const server = tlsFiles
      ? tls.createServer({ ...tlsFiles, requestCert: true, rejectUnauthorized: true }, onSocket)
      : net.createServer(onSocket);
    self = new TcpSwitchboard(options, server, tlsFiles);
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
    const host = link.host!;
    const socket = t
      ? tls.connect({ host, port: link.port, ca: t.ca, cert: t.cert, key: t.key, rejectUnauthorized: true })
      : net.connect({ host, port: link.port });
    const conn = this.track(socket, this.options.id, link.peer);
    link.dialing = conn;
    socket.once(t ? 'secureConnect' : 'connect', () => {
      if (conn.closing) return;
      const hello: Hello = { clusterId: this.options.clusterId, from: this.options.id, to: link.peer };
      this.writeRaw(conn, frame(codec.encode(hello)));
    });
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
      open: false,
      reader: new FrameReader(MAX_HELLO_BYTES),
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

  private writeRaw(conn: Conn, buf: Buffer): void {
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
      else this.onHello(conn, payload);
    }
  }

  private onHello(conn: Conn, payload: Uint8Array): void {
    let hello: unknown;
    try {
      hello = codec.decode(payload);
    } catch {
      return this.bad(conn);
    }
    if (!isHello(hello)) return this.bad(conn);
    const me = this.options.id;
    const dialed = conn.dialer === me;
    const expectedFrom = dialed ? conn.peer : hello.from;
    const valid = hello.clusterId === this.options.clusterId && hello.to === me && hello.from === expectedFrom && isPeerId(hello.from);
    let link = this.links.get(hello.from);
    // A node without a configuration takes a hello from a peer it does not know yet: the
    // leader adding it (it learns the others' addresses from the log). Reached only over
    // this connection until then.
    if (valid && !link && !dialed && !this.configured && hello.from !== me && this.strangers() < MAX_STRANGERS) link = this.addLink(hello.from, null);
    if (!valid || !link) {
      this.counters.refused++;
      return this.drop(conn);
    }
    if (!dialed) {
      conn.dialer = hello.from;
      conn.peer = hello.from;
    } else if (link.dialing === conn) {
      link.dialing = null;
    }
    this.establish(link, conn, !dialed);
  }

  /** `conn` has exchanged hellos: make it the link's connection unless a better one exists. */
  private establish(link: Link, conn: Conn, answerHello: boolean): void {
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
      } else if (answerHello) {
        // Accepted but losing: no hello goes back, so the dialer wrote nothing on it.
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
    if (answerHello) {
      const hello: Hello = { clusterId: this.options.clusterId, from: this.options.id, to: link.peer };
      this.writeRaw(conn, frame(codec.encode(hello)));
    }
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
   * A connection replaced by a better one: end it gracefully (what was written still reaches
   * the peer, and frames the peer wrote before noticing are still read), then destroy it.
   */
  private retire(conn: Conn): void {
    if (conn.timer) clearTimeout(conn.timer);
    conn.timer = setTimeout(() => this.drop(conn), RETIRE_GRACE_MS);
    conn.socket.end();
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

/** The messages of an encoded bundle, each encoded alone; null if `payload` is not a bundle. */
function splitBundle(payload: Uint8Array): Uint8Array[] | null {
  let decoded: unknown;
  try {
    decoded = codec.decode(payload);
  } catch {
    return null;
  }
  if (typeof decoded !== 'object' || decoded === null || (decoded as Bundle).type !== 'bundle') return null;
  const messages = (decoded as Bundle).messages;
  return Array.isArray(messages) ? messages.map((m) => codec.encode(m)) : null;
}

/** Whether `payload` decodes as peer messages (one, or a bundle) from `from` to `to`. */
function validPeerFrame(payload: Uint8Array, from: string, to: string): boolean {
  let decoded: unknown;
  try {
    decoded = codec.decode(payload);
  } catch {
    return false;
  }
  const ok = (m: unknown) => isPeerMessage(m) && m.from === from && m.to === to;
  if (typeof decoded === 'object' && decoded !== null && (decoded as Bundle).type === 'bundle') {
    const messages = (decoded as Bundle).messages;
    return Array.isArray(messages) && messages.every(ok);
  }
  return ok(decoded);
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
  }
}
