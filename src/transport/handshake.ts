/**
 * The peer handshake (docs/peer-security.md), four frames before anything else on a peer
 * connection:
 *   1. dialer → acceptor  hello     `{ hs, clusterId, from, to, nonce }`
 *   2. acceptor → dialer  challenge `{ hs, clusterId, from, to, nonce, proof }`
 *   3. dialer → acceptor  proof     `{ hs, proof }`
 *   4. acceptor → dialer  welcome   `{ hs }`
 * Each side checks the cluster id and the ids (`from` a configured peer, `to` itself). With a
 * cluster secret, each proof is an HMAC-SHA256 under the secret over both ids, the cluster id
 * and both fresh nonces (`handshakeProof`): each side proves it knows the secret without
 * sending it, and a recorded handshake replayed on a new connection fails (the other side's
 * nonce is new). Without a secret the proofs are empty. With TLS, the acceptor checks that the
 * dialer's client certificate is bound to the id its hello claims, and the dialer that the
 * server's certificate is bound to the peer it dialed (`certificateBoundTo`).
 *
 * Pure but for reading the secret file (`readClusterSecret`) and drawing nonces
 * (`freshNonce`); `tcp.ts` runs it on each connection.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import type tls from 'node:tls';
import { InsecurePeersError } from '../errors.js';

/** Largest handshake frame. */
export const MAX_HANDSHAKE_BYTES = 4096;
const NONCE_BYTES = 32;
export const MIN_CLUSTER_SECRET_BYTES = 16;

/** The handshake's frames, in order (see the top of this file). */
export interface Hello {
  hs: 'hello';
  clusterId: string;
  from: string;
  to: string;
  nonce: Uint8Array;
}
export interface Challenge {
  hs: 'challenge';
  clusterId: string;
  from: string;
  to: string;
  nonce: Uint8Array;
  proof: Uint8Array;
}
export interface Proof {
  hs: 'proof';
  proof: Uint8Array;
}
export interface Welcome {
  hs: 'welcome';
}
export type Handshake = Hello | Challenge | Proof | Welcome;


/** A fresh random nonce for this side of one handshake. */
export function freshNonce(): Buffer {
  return crypto.randomBytes(NONCE_BYTES);
}

/** Whether `v` is a well-formed handshake frame of kind `hs`. */
export function isHandshake<K extends Handshake['hs']>(v: unknown, hs: K): v is Extract<Handshake, { hs: K }> {
  if (typeof v !== 'object' || v === null) return false;
  const h = v as Record<string, unknown>;
  if (h.hs !== hs) return false;
  const ids = typeof h.clusterId === 'string' && typeof h.from === 'string' && typeof h.to === 'string';
  const nonce = h.nonce instanceof Uint8Array && h.nonce.length === NONCE_BYTES;
  const proof = h.proof instanceof Uint8Array;
  switch (hs) {
    case 'hello':
      return ids && nonce;
    case 'challenge':
      return ids && nonce && proof;
    case 'proof':
      return proof;
    default:
      return true;
  }
}

/**
 * One side's proof in the handshake: HMAC-SHA256 under the cluster secret over the role (so
 * one side's proof never serves as the other's), the cluster id, both ids and both nonces,
 * each field length-prefixed.
 */
export function handshakeProof(
  secret: Uint8Array,
  role: 'dialer' | 'acceptor',
  clusterId: string,
  dialer: string,
  acceptor: string,
  dialerNonce: Uint8Array,
  acceptorNonce: Uint8Array,
): Buffer {
  const hmac = crypto.createHmac('sha256', secret);
  const fields = [`actor-raft peer handshake v1 ${role}`, clusterId, dialer, acceptor, dialerNonce, acceptorNonce];
  for (const f of fields) {
    const bytes = typeof f === 'string' ? Buffer.from(f, 'utf8') : f;
    const length = Buffer.allocUnsafe(4);
    length.writeUInt32BE(bytes.length, 0);
    hmac.update(length).update(bytes);
  }
  return hmac.digest();
}

/** Constant-time comparison of a received proof with the expected one. */
export function proofMatches(expected: Uint8Array, received: Uint8Array): boolean {
  return expected.length === received.length && crypto.timingSafeEqual(expected, received);
}

/**
 * Read a cluster secret file: at least MIN_CLUSTER_SECRET_BYTES bytes once trailing whitespace
 * (a final newline) is cut, and not readable or writable by every user.
 */
export function readClusterSecret(file: string): Buffer {
  const mode = fs.statSync(file).mode;
  if (process.platform !== 'win32' && (mode & 0o006) !== 0) {
    throw new InsecurePeersError(
      `the cluster secret file ${file} can be read or written by every user (mode ${(mode & 0o777).toString(8)}): make it private, e.g. chmod 600 ${file}`,
    );
  }
  const raw = fs.readFileSync(file);
  let end = raw.length;
  while (end > 0 && [0x20, 0x09, 0x0a, 0x0d].includes(raw[end - 1]!)) end--;
  if (end < MIN_CLUSTER_SECRET_BYTES) {
    throw new InsecurePeersError(
      `the cluster secret in ${file} has ${end} bytes; it needs at least ${MIN_CLUSTER_SECRET_BYTES} (e.g. openssl rand -hex 32 > ${file})`,
    );
  }
  return raw.subarray(0, end);
}

/**
 * The names a certificate carries that can bind it to a peer id: its DNS and URI subject
 * alternative names and its subject's CN(s). Node writes the alternative names as
 * `DNS:a, URI:b, IP Address:c`, with a value holding special characters as a JSON string.
 */
export function certificateNames(cert: tls.PeerCertificate): string[] {
  const names: string[] = [];
  const cn = cert.subject?.CN as string | string[] | undefined;
  if (typeof cn === 'string') names.push(cn);
  else if (Array.isArray(cn)) names.push(...cn.filter((n) => typeof n === 'string'));
  const san = cert.subjectaltname ?? '';
  let i = 0;
  while (i < san.length) {
    const colon = san.indexOf(':', i);
    if (colon < 0) break;
    const type = san.slice(i, colon);
    let value: string;
    let end: number;
    if (san[colon + 1] === '"') {
      let j = colon + 2;
      while (j < san.length && san[j] !== '"') j += san[j] === '\\' ? 2 : 1;
      end = j + 1;
      try {
        value = JSON.parse(san.slice(colon + 1, end)) as string;
      } catch {
        break;
      }
    } else {
      const comma = san.indexOf(', ', colon);
      end = comma < 0 ? san.length : comma;
      value = san.slice(colon + 1, end);
    }
    if (type === 'DNS' || type === 'URI') names.push(value);
    i = end + 2;
  }
  return names;
}

/**
 * Whether a peer certificate carries a name that stands for `peer`: one of its `peerNames`
 * if it has any (see TcpTlsOptions.peerNames), else its own id.
 */
export function certificateBoundTo(cert: tls.PeerCertificate, peer: string, peerNames?: Record<string, string[]>): boolean {
  const allowed = peerNames?.[peer] ?? [peer];
  return certificateNames(cert).some((name) => allowed.includes(name));
}
