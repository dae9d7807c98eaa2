/**
 * A bare HTTP(S) client for tests of src/http: one request, sent as given (no normalization
 * of the path, no redirects followed), answered with status, headers and body.
 */
import http from 'node:http';
import https from 'node:https';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  text: string;
  json(): any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

export interface RequestOptions {
  body?: string | Buffer;
  headers?: Record<string, string | number>;
  /** The connection's agent (default: a connection of its own). */
  agent?: http.Agent | false;
  /** Send the body in chunks without a Content-Length (chunked encoding). */
  chunked?: boolean;
  tls?: Pick<https.RequestOptions, 'ca' | 'cert' | 'key'>;
}

export function splitAddr(addr: string): [string, number] {
  const i = addr.lastIndexOf(':');
  return [addr.slice(0, i), Number(addr.slice(i + 1))];
}

/** One request to `addr` (host:port); the path is sent as given. */
export function request(addr: string, method: string, target: string, o: RequestOptions = {}): Promise<Reply> {
  const [host, port] = splitAddr(addr);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...o.headers };
    if (o.body !== undefined && !o.chunked) headers['Content-Length'] = Buffer.byteLength(o.body);
    // Node frames a body of GET, HEAD, DELETE, OPTIONS as chunked only when told to.
    if (o.body !== undefined && o.chunked) headers['Transfer-Encoding'] = 'chunked';
    const options = { host, port, method, path: target, headers, agent: o.agent ?? false };
    const req = o.tls ? https.request({ ...options, ...o.tls }) : http.request(options);
    req.on('error', reject);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('error', reject);
      res.on('end', () => {
        const body = Buffer.concat(chunks);
        const text = body.toString('utf8');
        resolve({ status: res.statusCode!, headers: res.headers, body, text, json: () => JSON.parse(text) });
      });
    });
    if (o.body !== undefined && o.chunked) {
      const b = Buffer.from(o.body);
      const step = Math.max(1, Math.ceil(b.length / 4));
      for (let i = 0; i < b.length; i += step) req.write(b.subarray(i, i + step));
      req.end();
    } else {
      req.end(o.body);
    }
  });
}

/** mulberry32: a small seeded PRNG, so a failing fuzz run can be replayed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
