/**
 * Helpers for tests of the TCP transport: free loopback ports, raw frames, test certificates.
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

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

export function haveOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

export interface TestPki {
  ca: string;
  /** Per name: certificate and key paths, signed by `ca`, valid for 127.0.0.1 and localhost. */
  certs: Record<string, { cert: string; key: string }>;
}

/** A CA and one certificate per name, made with openssl under `dir`. */
export function makePki(dir: string, names: string[], caName = 'actor-raft test CA'): TestPki {
  fs.mkdirSync(dir, { recursive: true });
  const run = (args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ca = path.join(dir, 'ca.pem');
  const caKey = path.join(dir, 'ca.key');
  run(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', caKey, '-out', ca, '-days', '2', '-subj', `/CN=${caName}`]);
  const ext = path.join(dir, 'ext.cnf');
  fs.writeFileSync(
    ext,
    'basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n',
  );
  const certs: TestPki['certs'] = {};
  for (const name of names) {
    const key = path.join(dir, `${name}.key`);
    const csr = path.join(dir, `${name}.csr`);
    const cert = path.join(dir, `${name}.pem`);
    run(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr, '-subj', `/CN=${name}`]);
    run(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', ext]);
    certs[name] = { cert, key };
  }
  return { ca, certs };
}
