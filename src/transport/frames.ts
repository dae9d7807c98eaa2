/**
 * Frames on a peer connection: a 4-byte big-endian length followed by that many bytes of
 * msgpack (src/codec.ts), exactly the bytes the actor posted (one message or a bundle), or
 * one handshake frame (handshake.ts) before the connection is open.
 */
import { codec } from '../codec.js';
import { isPeerMessage, type Bundle } from '../messages.js';

const HEADER_BYTES = 4;

/** `payload` with its length header, ready for the socket. */
export function frame(payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  out.writeUInt32BE(payload.length, 0);
  out.set(payload, HEADER_BYTES);
  return out;
}

/**
 * Reassembles frames from socket chunks. `push` returns complete payloads (each owning its
 * ArrayBuffer, so it can be transferred), or throws FrameError on an oversized header.
 */
export class FrameReader {
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

/** The messages of an encoded bundle, each encoded alone; null if `payload` is not a bundle. */
export function splitBundle(payload: Uint8Array): Uint8Array[] | null {
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
export function validPeerFrame(payload: Uint8Array, from: string, to: string): boolean {
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
