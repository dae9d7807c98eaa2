/**
 * The HTTP kv interface: one server in front of one peer of this process (`node`), on
 * `node:http` or, with `tls`, `node:https` (optionally mutual TLS).
 *
 *   const http = await startHttpServer({ node: 'n1', listen: '127.0.0.1:8001' });
 *   // curl -X PUT --data-binary hello http://127.0.0.1:8001/kv/greeting
 *   await http.close();
 *
 * ## Routes
 *
 * | request                    | answer                                                        |
 * |----------------------------|---------------------------------------------------------------|
 * | `PUT /kv/:key`             | 204; body = the value (see "Values")                          |
 * | `GET /kv/:key`             | 200 with the value (linearizable read), 404 when missing      |
 * | `DELETE /kv/:key`          | 200 `{"deleted":true}`, 404 `{"error":..,"deleted":false}`    |
 * | `POST /kv/:key/cas`        | JSON `{"expected":..,"value":..}` → 200 `{"swapped":bool}`     |
 * | `GET /status`              | 200, JSON of `status(node)`                                   |
 * | `/admin/...`               | membership and leadership: see src/http/admin.ts              |
 * | `GET /metrics`             | 200, Prometheus text format 0.0.4 (src/http/metrics.ts)       |
 * | `GET /health`, `GET /ready`| liveness and readiness, 200 or 503 JSON (src/http/health.ts)  |
 *
 * HEAD is answered like GET (without a body). `:key` is one path segment, percent-decoded
 * (`a%2Fb` is the key `a/b`), 1 to 1024 UTF-8 bytes; the query string is ignored.
 *
 * ## Values
 *
 * - `PUT` with `Content-Type: application/json` (or any `+json` type): the body is parsed as
 *   JSON and the parsed value is stored (a number stays a number, an object an object).
 * - `PUT` with `Content-Type: application/octet-stream`: the raw bytes are stored (a Uint8Array).
 * - Any other or no content type: a body that is valid UTF-8 is stored as a string, anything
 *   else as raw bytes.
 * - `null` cannot be stored over HTTP (it would read back as "missing"): use DELETE.
 * - `GET` answers a string as `text/plain; charset=utf-8` (the string itself), bytes as
 *   `application/octet-stream`, anything else JSON-encoded as `application/json` (bigints as
 *   decimal strings, Maps as objects). The header `X-Raft-Value-Type` says which
 *   (`string`, `bytes`, `json`).
 * - `cas` compares and stores JSON values: `"expected": null` matches a missing key; a string
 *   stored by a text PUT is the JSON string. `value` must not be null. Its body must be sent
 *   as `Content-Type: application/json` (or `+json`); anything else is 415.
 * - JSON bodies may nest arrays and objects at most MAX_JSON_DEPTH (64) levels deep, checked
 *   before parsing; deeper is 400 (as is a value the log cannot carry).
 *
 * ## Web pages (see docs/security.md)
 *
 * A browser lets any page send requests to this server; these rules keep them harmless:
 * - **Host.** The `Host` header must be one of the server's names: its listen address (any of
 *   the machine's IP addresses when it listens on a wildcard address), `localhost`,
 *   `127.0.0.1` or `[::1]` with the server's port, the host of `peerHttp[node]`, or one of
 *   `allowedHosts`; else 421 `HOST_NOT_ALLOWED` (this stops DNS rebinding, where a page's own
 *   name is made to resolve to this machine). Requests without `Host` (HTTP/1.0) are served.
 * - **Origin.** A request whose `Origin` is listed in `allowedOrigins` gets a CORS grant
 *   (`Access-Control-Allow-Origin`, and preflights a 204 with the methods and `Content-Type`).
 *   Any other origin but the server's own gets no grant (its page cannot read the answer), and
 *   403 `ORIGIN_NOT_ALLOWED` for anything but GET and HEAD (preflights included). Requests
 *   without `Origin` (curl, the CLI, other programs) are not affected.
 * - A cross-origin "simple" request (no preflight) can only be a GET, HEAD or POST with a form
 *   or `text/plain` body: POST (cas) requires JSON (415), PUT and DELETE always preflight.
 * - **Bounds.** At most `maxConnections` connections (more are closed at once) and
 *   `maxInFlightRequests` requests being answered (more get 503 `OVERLOADED`, `Retry-After: 1`).
 *
 * ## Followers, leaders, errors
 *
 * Every error is JSON `{"error": message, "code": CODE}` (plus fields named below).
 *
 * - A write on a follower is forwarded to the leader by `op()` when the leader is a peer of
 *   this process. When it is not (peers in other processes), the answer is
 *   `307 Temporary Redirect` with `Location` = the leader's HTTP base URL from `peerHttp` +
 *   the same path and query; 307 keeps the method and body, so clients that follow
 *   redirects (`curl -L`) simply repeat the request there. Reads are served by any peer
 *   (ReadIndex); if one still fails with "not the leader" it is answered the same way.
 * - No known leader (or a leader without an entry in `peerHttp`): 503 `{"error":"no leader"}`
 *   with `Retry-After: 1`.
 * - Every error from the library carries `"outcome": "not-applied" | "unknown"` in its JSON
 *   body: whether the request can be retried as new, or may have been applied (docs/api.md).
 * - 400 bad request (bad JSON, bad path encoding, empty or too long key, invalid command),
 *   404 missing key or unknown route, 405 wrong method (with `Allow`), 413 body larger than
 *   `maxBodyBytes` (answered at once; the body is not kept: the rest is read and discarded so
 *   the client sees the answer, and the connection is cut after 5 s or 16 MiB more; with
 *   `Expect: 100-continue` the body is refused before it is sent), 503 node stopped or not
 *   started (`NODE_STOPPED` / `UNKNOWN_NODE`; `"outcome":"unknown"` for a write in flight when it stopped), 503 leadership lost or actor restarted while
 *   the op was in flight (`"outcome":"unknown"`), 504 timeout (`"outcome":"unknown"`: the
 *   write may still be applied), 409 the client session expired while the write was in doubt
 *   (`SESSION_EXPIRED`, `"outcome":"unknown"`; it will not be applied any more), 403/415/421 and
 *   503 `OVERLOADED` as in "Web pages", 401 `UNAUTHORIZED` / 403 `FORBIDDEN` from client roles
 *   (`tokenFile`, `clientCertRoles`: src/http/auth.ts, checked before any route), 500 anything
 *   else (`{"error":"internal error"}` with the error's code: its text goes to
 *   `onInternalError`, never to the client). Unparseable
 *   requests get a 400 (431 for headers too large) and their connection closed; nothing a
 *   client sends stops the server.
 *
 * ## Metrics, health, readiness
 *
 * `GET /metrics`, `/health` and `/ready` are answered by src/http/metrics.ts and
 * src/http/health.ts; their names and meanings are in docs/network.md.
 */
import fs from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import * as api from '../api/index.js';
import { handleAdmin, isAdminPath } from './admin.js';
import { isRaftError, NotLeaderError, type RaftError } from '../errors.js';
import { checkCommand } from '../codec.js';
import { healthProbe, readyMaxLag, type HealthOptions } from './health.js';
import { renderMetrics, type TransportCounters } from './metrics.js';
import { positiveInt } from '../validate.js';
import { checkAuthOptions, loadAuth, openServerWarning, type Authorizer, type AuthOptions } from './auth.js';

export interface HttpTlsOptions {
  /** Path of the CA certificate(s) (PEM) client certificates are checked against. */
  ca?: string;
  /** Path of the server's certificate (PEM). */
  cert: string;
  /** Path of the server's private key (PEM). */
  key: string;
  /** Mutual TLS: ask every client for a certificate and refuse clients without a valid one. */
  requestCert?: boolean;
}

/** The functions of the API the server calls; replaceable for tests and embedding. */
export interface HttpBackend {
  op(id: string, command: unknown, options?: { timeoutMs?: number }): Promise<unknown>;
  read(id: string, query: unknown, options?: { timeoutMs?: number }): Promise<unknown>;
  status(id: string): Promise<unknown>;
  /** Transport counters of a networked peer (null otherwise); metrics leave them out when absent. */
  transportStats?(id: string): Partial<TransportCounters> | null | Promise<Partial<TransportCounters> | null>;
}

export type { TransportCounters } from './metrics.js';

/** Client roles (`tokenFile`, `clientCertRoles`, `openMetrics`): see src/http/auth.ts. */
export interface HttpServerOptions extends HealthOptions, AuthOptions {
  /** The local peer (started in this process with `startNode`) this server fronts. */
  node: string;
  /** `host:port` to listen on (`[::1]:8001` for IPv6); port 0 picks a free port. */
  listen: string;
  /** Serve HTTPS (file paths), optionally with client certificates required. */
  tls?: HttpTlsOptions;
  /** Peer id → base URL (`http(s)://host:port`) of that peer's HTTP server, for 307 redirects. */
  peerHttp?: Record<string, string>;
  /** Largest request body accepted (default 1 MiB); larger ones get 413. */
  maxBodyBytes?: number;
  /** Timeout of each op and read (default 10 s); on expiry 504 (outcome unknown). */
  opTimeoutMs?: number;
  /** The API functions to call (default: this process's `op`, `read`, `status`). */
  backend?: HttpBackend;
  /**
   * Further names clients may use in the `Host` header, besides the listen address,
   * `localhost`, `127.0.0.1`, `[::1]` and the host of `peerHttp[node]`: `name` (any port) or
   * `name:port` (`[v6]:port`). Any other Host gets 421 (see "Web pages" above).
   */
  allowedHosts?: string[];
  /** Origins (`scheme://host[:port]`) whose web pages may call this server (CORS). Default: none. */
  allowedOrigins?: string[];
  /** Most client connections open at once (`server.maxConnections`, default 1024); more are closed at once. */
  maxConnections?: number;
  /** Most requests being answered at once (default 256); more get 503 with `Retry-After`. */
  maxInFlightRequests?: number;
  /** Called with the error behind every 500 (whose answer says only "internal error"). */
  onInternalError?: (err: unknown) => void;
  /** Called at start with what an operator should know (e.g. HTTP open to other machines with no authentication). */
  onWarning?: (message: string) => void;
}

export interface HttpServer {
  /** `host:port` the server listens on (the actual port when `listen` asked for 0). */
  address(): string;
  /** Stop listening and close every connection, idle keep-alive ones included. */
  close(): Promise<void>;
  /** Read `tokenFile` again (see src/http/auth.ts); a bad file throws and the old tokens stay. */
  reloadTokens(): Promise<void>;
}

const DEFAULT_MAX_BODY = 1 << 20;
const DEFAULT_OP_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_CONNECTIONS = 1024;
const DEFAULT_MAX_IN_FLIGHT = 256;
/** Deepest nesting of arrays and objects accepted in a JSON body (checked before parsing). */
export const MAX_JSON_DEPTH = 64;
/** Methods that change nothing: a page of a foreign origin may send them (it gets no CORS grant to read the answer). */
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);
/** The names of this machine's loopback interface, always allowed in `Host` (with the server's port). */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '[::1]'];
export const MAX_KEY_BYTES = 1024;
/** How long, and how much, a client whose request body was refused may go on sending before it is cut. */
const DRAIN_GRACE_MS = 5_000;
const DRAIN_MAX_BYTES = 16 << 20;
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE', 'PATCH', 'OPTIONS']);

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
  }
}

function parseListen(listen: string): { host: string; port: number } {
  if (typeof listen !== 'string') throw new TypeError(`listen must be a 'host:port' string, got ${String(listen)}`);
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(listen);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) throw new TypeError(`listen must be 'host:port' with a port 0-65535, got ${JSON.stringify(listen)}`);
  return { host: (m[1] ?? m[2])!, port };
}

function checkOptions(o: HttpServerOptions): void {
  if (typeof o !== 'object' || o === null) throw new TypeError('options must be an object');
  if (typeof o.node !== 'string' || o.node === '') throw new TypeError('options.node must be a peer id');
  positiveInt(o.maxBodyBytes, 'options.maxBodyBytes');
  positiveInt(o.opTimeoutMs, 'options.opTimeoutMs');
  positiveInt(o.maxConnections, 'options.maxConnections');
  positiveInt(o.maxInFlightRequests, 'options.maxInFlightRequests');
  for (const h of o.allowedHosts ?? []) {
    if (typeof h !== 'string' || parseHost(h) === null) throw new TypeError(`options.allowedHosts: expected a host name or host:port, got ${JSON.stringify(h)}`);
  }
  for (const origin of o.allowedOrigins ?? []) {
    if (typeof origin !== 'string' || normalOrigin(origin) === null) {
      throw new TypeError(`options.allowedOrigins: expected an origin like https://app.example:8443, got ${JSON.stringify(origin)}`);
    }
  }
  if (o.onInternalError !== undefined && typeof o.onInternalError !== 'function') throw new TypeError('options.onInternalError must be a function');
  if (o.onWarning !== undefined && typeof o.onWarning !== 'function') throw new TypeError('options.onWarning must be a function');
  checkAuthOptions(o, o.tls?.requestCert === true);
  for (const [peer, url] of Object.entries(o.peerHttp ?? {})) {
    let ok = false;
    try {
      const u = new URL(url);
      ok = u.protocol === 'http:' || u.protocol === 'https:';
    } catch {
      ok = false;
    }
    if (!ok) throw new TypeError(`options.peerHttp.${peer} must be an http(s)://host:port URL, got ${JSON.stringify(url)}`);
  }
  if (o.tls !== undefined && (typeof o.tls.cert !== 'string' || typeof o.tls.key !== 'string')) {
    throw new TypeError('options.tls needs cert and key file paths');
  }
}

/** Start an HTTP(S) server in front of peer `options.node`; resolves once it listens. */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServer> {
  checkOptions(options);
  const { host, port } = parseListen(options.listen);
  const state: ServerState = {
    node: options.node,
    backend: options.backend ?? { op: api.op, read: api.read, status: api.status, transportStats: api.transportStats },
    peerHttp: options.peerHttp ?? {},
    maxBody: options.maxBodyBytes ?? DEFAULT_MAX_BODY,
    timeoutMs: options.opTimeoutMs ?? DEFAULT_OP_TIMEOUT_MS,
    ops: new Map(),
    requests: new Map(),
    scheme: options.tls ? 'https' : 'http',
    port: 0, // set once listening
    allowedHosts: new Set(),
    allowIpLiterals: isWildcard(host),
    allowedOrigins: new Set((options.allowedOrigins ?? []).map((o) => normalOrigin(o)!)),
    maxInFlight: options.maxInFlightRequests ?? DEFAULT_MAX_IN_FLIGHT,
    inFlight: 0,
    onInternalError: options.onInternalError ?? (() => undefined),
    readyMaxLag: readyMaxLag(options),
    auth: await loadAuth(options),
  };

  let server: http.Server | https.Server;
  if (options.tls) {
    const t = options.tls;
    const [cert, key, ca] = await Promise.all([
      fs.readFile(t.cert),
      fs.readFile(t.key),
      t.ca === undefined ? Promise.resolve(undefined) : fs.readFile(t.ca),
    ]);
    server = https.createServer({ cert, key, ca, requestCert: t.requestCert ?? false, rejectUnauthorized: t.requestCert ?? false });
    // A failed handshake (no or a bad client certificate, garbage) concerns that socket only.
    server.on('tlsClientError', (_err: Error, socket: import('node:tls').TLSSocket) => socket.destroy());
  } else {
    server = http.createServer();
  }
  server.maxConnections = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
  server.keepAliveTimeout = 5_000;
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;

  const onRequest = (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(state, req, res).catch((err) => {
      // handle() answers every error itself; this is a last resort that must never throw.
      try {
        state.onInternalError(err);
        send(state, req, res, 500, { error: 'internal error', code: 'INTERNAL' });
      } catch {
        res.destroy();
      }
    });
  };
  server.on('request', onRequest);
  // `Expect: 100-continue`: refuse a body declared too large before the client sends it.
  server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
    if (declaredLength(req) > state.maxBody) {
      // The client has not sent the body and may never: end the connection after the answer.
      send(state, req, res, 413, tooLargeBody(state.maxBody), { Connection: 'close' }, true);
      return;
    }
    res.writeContinue();
    onRequest(req, res);
  });
  // Unparseable requests (garbage, bad headers, too large headers): answer if the socket
  // still can, and drop that connection only.
  server.on('clientError', (err: NodeJS.ErrnoException, socket: import('node:stream').Duplex) => {
    if (socket.writable && !(socket as { _httpMessage?: unknown })._httpMessage) {
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const body = JSON.stringify({ error: status === 431 ? 'request headers too large' : status === 408 ? 'request timeout' : 'bad request', code: 'BAD_REQUEST' });
      const reason = http.STATUS_CODES[status] ?? 'Bad Request';
      socket.end(
        `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
      setTimeout(() => socket.destroy(), DRAIN_GRACE_MS).unref();
    } else {
      socket.destroy();
    }
  });

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  // After listening, a server error (rare: EMFILE on accept) must not crash the process.
  server.on('error', () => undefined);
  state.port = (server.address() as AddressInfo).port;
  state.allowedHosts = allowedHostSet(host, state.port, options);
  const warning = openServerWarning(host, `${bracketed(host)}:${state.port}`, state.auth, options.tls?.requestCert === true);
  if (warning !== null) options.onWarning?.(warning);

  let closing: Promise<void> | null = null;
  return {
    address() {
      const a = server.address() as AddressInfo;
      return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
    },
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
    reloadTokens: async () => state.auth?.reloadTokens(),
  };
}

interface ServerState {
  node: string;
  backend: HttpBackend;
  peerHttp: Record<string, string>;
  maxBody: number;
  timeoutMs: number;
  /** `method code` → count, kv requests. */
  ops: Map<string, number>;
  /** `method code` → count, every request. */
  requests: Map<string, number>;
  scheme: 'http' | 'https';
  /** The port the server listens on. */
  port: number;
  /** Allowed `Host` values, normalized: `name:port`, or `name` for any port. */
  allowedHosts: Set<string>;
  /** Listening on a wildcard address: every IP address of the machine is one of its names. */
  allowIpLiterals: boolean;
  /** Origins granted CORS, normalized (`URL.origin`). */
  allowedOrigins: Set<string>;
  maxInFlight: number;
  /** Requests being answered now. */
  inFlight: number;
  onInternalError: (err: unknown) => void;
  readyMaxLag: number;
  /** Client roles; null: every client may do everything. */
  auth: Authorizer | null;
}

// ---------------------------------------------------------------------------------------------
// Web pages: Host, Origin, in-flight bound

/** `name` or `name:port` (`[v6]` or `[v6]:port`), lower-cased, without a trailing dot; null if malformed. */
function parseHost(value: string): { name: string; port: number | null } | null {
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9_.-]+)(?::(\d{1,5}))?$/i.exec(value.trim());
  if (!m) return null;
  const port = m[2] === undefined ? null : Number(m[2]);
  if (port !== null && port > 65535) return null;
  const name = m[1]!.toLowerCase().replace(/\.$/, '');
  return name === '' ? null : { name, port };
}

function isWildcard(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '[::]' || host === '';
}

function bracketed(host: string): string {
  return net.isIPv6(host) ? `[${host.toLowerCase()}]` : host.toLowerCase();
}

/** The `Host` values this server answers to (see HttpServerOptions.allowedHosts). */
function allowedHostSet(listenHost: string, port: number, o: HttpServerOptions): Set<string> {
  const out = new Set(LOOPBACK_NAMES.map((n) => `${n}:${port}`));
  if (!isWildcard(listenHost)) out.add(`${bracketed(listenHost)}:${port}`);
  const advertised = o.peerHttp?.[o.node];
  if (advertised !== undefined) {
    // URL.hostname keeps an IPv6 address in brackets, as Host does.
    const u = new URL(advertised);
    out.add(`${u.hostname.toLowerCase()}:${u.port === '' ? (u.protocol === 'https:' ? 443 : 80) : u.port}`);
  }
  for (const h of o.allowedHosts ?? []) {
    const p = parseHost(h)!;
    out.add(p.port === null ? p.name : `${p.name}:${p.port}`);
  }
  return out;
}

/**
 * Whether the request's `Host` is one of this server's names. A page that got a name of its
 * own to resolve to this machine (DNS rebinding) sends that name: refused. A request without
 * `Host` (HTTP/1.0) does not come from a browser, which always sends one.
 */
function hostAllowed(s: ServerState, req: http.IncomingMessage): boolean {
  const value = req.headers.host;
  if (value === undefined) return true;
  const h = parseHost(value);
  if (h === null) return false;
  const port = h.port ?? (s.scheme === 'https' ? 443 : 80);
  if (s.allowedHosts.has(h.name) || s.allowedHosts.has(`${h.name}:${port}`)) return true;
  // An IP address cannot be rebound: a page whose origin it is is served from it.
  const ip = h.name.startsWith('[') ? h.name.slice(1, -1) : h.name;
  return s.allowIpLiterals && net.isIP(ip) !== 0 && port === s.port;
}

/** `scheme://host[:port]` as `URL.origin` spells it; null for anything else (`null`, paths). */
function normalOrigin(value: string): string | null {
  try {
    const u = new URL(value);
    if ((u.protocol !== 'http:' && u.protocol !== 'https:') || u.origin === 'null') return null;
    return u.origin;
  } catch {
    return null;
  }
}

/** The request's origin is this server itself (scheme and Host). */
function sameOrigin(s: ServerState, req: http.IncomingMessage, origin: string): boolean {
  const host = req.headers.host;
  return host !== undefined && normalOrigin(`${s.scheme}://${host}`) === origin;
}

/**
 * The CORS and Origin rules (see "Web pages"): a listed origin gets its grant headers (and a
 * preflight its answer, 204: true); a foreign one none, and 403 for anything but GET/HEAD.
 */
function checkOrigin(s: ServerState, req: http.IncomingMessage, res: http.ServerResponse): boolean {
  const value = req.headers.origin;
  if (value === undefined) return false;
  const origin = normalOrigin(value);
  const method = req.method ?? '';
  if (origin !== null && s.allowedOrigins.has(origin)) {
    res.setHeader('Access-Control-Allow-Origin', origin);
    res.setHeader('Vary', 'Origin');
    res.setHeader('Access-Control-Expose-Headers', 'Location, Retry-After, X-Raft-Value-Type');
    if (method !== 'OPTIONS' || req.headers['access-control-request-method'] === undefined) return false;
    res.setHeader('Access-Control-Allow-Methods', 'GET, HEAD, PUT, POST, DELETE');
    res.setHeader('Access-Control-Allow-Headers', 'Authorization, Content-Type');
    res.setHeader('Access-Control-Max-Age', '600');
    return true;
  }
  if (origin !== null && sameOrigin(s, req, origin)) return false;
  if (!SAFE_METHODS.has(method) || req.headers['access-control-request-method'] !== undefined) {
    throw new HttpError(403, 'requests from this origin are not allowed (list it with --http-allowed-origins)', { code: 'ORIGIN_NOT_ALLOWED' });
  }
  return false;
}

/** How deeply arrays and objects nest in JSON text (brackets inside strings do not count). */
function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) max = Math.max(max, ++depth);
    else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

type Route = { kind: 'kv'; key: string } | { kind: 'cas'; key: string } | { kind: 'status' } | { kind: 'metrics' };

/** Parse the request target without normalizing it (`/kv/..` is the key `..`). */
function route(rawUrl: string | undefined): Route {
  const url = rawUrl ?? '';
  if (!url.startsWith('/')) throw new HttpError(400, 'the request target must be a path');
  const pathname = url.split(/[?#]/, 1)[0]!;
  const raw = pathname.split('/').slice(1);
  let parts: string[];
  try {
    parts = raw.map((s) => decodeURIComponent(s));
  } catch {
    throw new HttpError(400, 'malformed percent-encoding in the path');
  }
  if (parts.length === 1 && parts[0] === 'status') return { kind: 'status' };
  if (parts.length === 1 && parts[0] === 'metrics') return { kind: 'metrics' };
  if (parts[0] === 'kv') {
    if (parts.length === 1 || (parts.length === 2 && parts[1] === '')) throw new HttpError(400, 'empty key');
    if (parts.length === 2) return { kind: 'kv', key: checkKey(parts[1]!) };
    if (parts.length === 3 && parts[2] === 'cas') return { kind: 'cas', key: checkKey(parts[1]!) };
  }
  throw new HttpError(404, 'no such route', { code: 'NO_ROUTE' });
}

function checkKey(key: string): string {
  if (key === '') throw new HttpError(400, 'empty key');
  const bytes = Buffer.byteLength(key, 'utf8');
  if (bytes > MAX_KEY_BYTES) throw new HttpError(400, `key too long: ${bytes} bytes, at most ${MAX_KEY_BYTES}`);
  return key;
}

function allowed(r: Route): string[] {
  switch (r.kind) {
    case 'kv':
      return ['GET', 'HEAD', 'PUT', 'DELETE'];
    case 'cas':
      return ['POST'];
    default:
      return ['GET', 'HEAD'];
  }
}

function declaredLength(req: http.IncomingMessage): number {
  const h = req.headers['content-length'];
  if (h === undefined) return 0;
  const n = Number(h);
  return Number.isFinite(n) && n >= 0 ? n : 0;
}

function tooLargeBody(max: number): Record<string, unknown> {
  return { error: `request body larger than ${max} bytes`, code: 'TOO_LARGE', maxBodyBytes: max };
}

/** Read the body, at most `max` bytes: beyond that, stop keeping it and fail with 413. */
function readBody(req: http.IncomingMessage, max: number): Promise<Buffer> {
  if (declaredLength(req) > max) return Promise.reject(new HttpError(413, tooLargeBody(max).error as string, { maxBodyBytes: max }));
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const fail = (err: Error) => {
      if (settled) return;
      settled = true;
      chunks.length = 0;
      reject(err);
    };
    req.on('data', (chunk: Buffer) => {
      if (settled) return; // discarded (Node drains the rest after the answer)
      size += chunk.length;
      if (size > max) fail(new HttpError(413, tooLargeBody(max).error as string, { maxBodyBytes: max }));
      else chunks.push(chunk);
    });
    req.on('end', () => {
      if (settled) return;
      settled = true;
      resolve(Buffer.concat(chunks, size));
    });
    req.on('error', () => fail(new HttpError(400, 'the request was aborted', { code: 'ABORTED' })));
    req.on('close', () => fail(new HttpError(400, 'the request was aborted', { code: 'ABORTED' })));
  });
}

function isJsonType(req: http.IncomingMessage): boolean {
  const ct = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
  return ct === 'application/json' || (ct.startsWith('application/') && ct.endsWith('+json'));
}

function isBytesType(req: http.IncomingMessage): boolean {
  const ct = (req.headers['content-type'] ?? '').split(';', 1)[0]!.trim().toLowerCase();
  return ct === 'application/octet-stream';
}

function parseJson(body: Buffer): unknown {
  const text = body.toString('utf8');
  // Before parsing: nothing below (the parser, the command checks, msgpack) meets a deeper value.
  if (jsonDepth(text) > MAX_JSON_DEPTH) throw new HttpError(400, `JSON nested deeper than ${MAX_JSON_DEPTH} levels`);
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(400, err instanceof SyntaxError ? `bad JSON: ${err.message}` : 'bad JSON');
  }
}

/** A command the log could not carry (a value too deep for it) is the client's fault: 400. */
function storable<T>(command: T): T {
  try {
    checkCommand(command);
  } catch (err) {
    throw new HttpError(400, `the value cannot be stored: ${(err as Error).message}`);
  }
  return command;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** The value a PUT body stands for (see "Values" at the top). */
function putValue(req: http.IncomingMessage, body: Buffer): unknown {
  if (isJsonType(req)) {
    const v = parseJson(body);
    if (v === null) throw new HttpError(400, 'null cannot be stored (it reads back as missing); use DELETE');
    return v;
  }
  if (isBytesType(req)) return new Uint8Array(body);
  try {
    return utf8.decode(body);
  } catch {
    return new Uint8Array(body);
  }
}

/** JSON for values msgpack can carry but JSON cannot. */
function jsonReplacer(_key: string, v: unknown): unknown {
  if (typeof v === 'bigint') return v.toString();
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [String(k), x]));
  if (v instanceof Set) return [...v];
  if (v instanceof Uint8Array) return Buffer.from(v).toString('base64');
  return v;
}

async function handle(s: ServerState, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  // Let the parser finish a request without a body first (req.complete), so a quick answer
  // keeps the connection alive.
  await null;
  let r: Route | null = null;
  try {
    if (!hostAllowed(s, req)) {
      throw new HttpError(421, 'the Host header is not a name of this server (add it with --http-allowed-hosts)', { code: 'HOST_NOT_ALLOWED' });
    }
    if (checkOrigin(s, req, res)) return sendText(s, req, res, 204, '', undefined); // a granted CORS preflight
    const denied = s.auth?.check(req); // client roles, before any route
    if (denied) throw new HttpError(denied.status, denied.error, { code: denied.code, ...denied.extra }, denied.headers);
    if (s.inFlight >= s.maxInFlight) {
      throw new HttpError(503, `too many requests in flight (at most ${s.maxInFlight}); retry later`, { code: 'OVERLOADED' }, { 'Retry-After': '1' });
    }
    s.inFlight++;
    res.once('close', () => s.inFlight--);
    if (isAdminPath(req.url)) {
      const send_ = (status: number, body: unknown, headers?: Record<string, string>) => send(s, req, res, status, body, headers);
      const sendBytes = (status: number, body: Buffer, type: string, headers?: Record<string, string>) => sendText(s, req, res, status, body, type, headers);
      return await handleAdmin({ node: s.node, peerHttp: s.peerHttp, body: () => readBody(req, s.maxBody), send: send_, sendBytes }, req);
    }
    const probe = await healthProbe(req, s.node, (id) => s.backend.status(id), s.readyMaxLag);
    if (probe) return send(s, req, res, probe.status, probe.body, probe.headers);
    r = route(req.url);
    const method = req.method ?? '';
    if (!allowed(r).includes(method)) {
      const allow = allowed(r).join(', ');
      throw new HttpError(405, `method ${method} not allowed here; use ${allow}`, { code: 'METHOD_NOT_ALLOWED' }, { Allow: allow });
    }
    const isKv = r.kind === 'kv' || r.kind === 'cas';
    const ok = (status: number, body: unknown, headers: Record<string, string> = {}) =>
      send(s, req, res, status, body, headers, isKv);
    switch (r.kind) {
      case 'status':
        return ok(200, await s.backend.status(s.node));
      case 'metrics':
        return sendText(s, req, res, 200, await renderMetrics(s), 'text/plain; version=0.0.4; charset=utf-8');
      case 'cas': {
        if (!isJsonType(req)) {
          // Also what keeps an HTML form or a "simple" cross-origin POST (text/plain) out.
          throw new HttpError(415, 'cas takes a JSON body: send Content-Type: application/json', { code: 'UNSUPPORTED_MEDIA_TYPE' });
        }
        const body = parseJson(await readBody(req, s.maxBody));
        if (typeof body !== 'object' || body === null || Array.isArray(body)) {
          throw new HttpError(400, 'cas body must be a JSON object {"expected": ..., "value": ...}');
        }
        const b = body as Record<string, unknown>;
        if (!('expected' in b) || !('value' in b)) throw new HttpError(400, 'cas body needs both "expected" and "value" (expected null: the key is missing)');
        if (b.value === null) throw new HttpError(400, 'null cannot be stored (it reads back as missing); use DELETE');
        const swapped = await s.backend.op(s.node, storable({ type: 'cas', key: r.key, expected: b.expected, value: b.value }), { timeoutMs: s.timeoutMs });
        return ok(200, { swapped: swapped === true });
      }
      case 'kv':
        switch (method) {
          case 'PUT': {
            const value = putValue(req, await readBody(req, s.maxBody));
            await s.backend.op(s.node, storable({ type: 'set', key: r.key, value }), { timeoutMs: s.timeoutMs });
            return ok(204, null);
          }
          case 'DELETE': {
            const deleted = await s.backend.op(s.node, { type: 'delete', key: r.key }, { timeoutMs: s.timeoutMs });
            return deleted === true ? ok(200, { deleted: true }) : ok(404, { error: 'key not found', code: 'NOT_FOUND', deleted: false });
          }
          default: {
            const value = await s.backend.read(s.node, { type: 'get', key: r.key }, { timeoutMs: s.timeoutMs });
            if (value === null || value === undefined) return ok(404, { error: 'key not found', code: 'NOT_FOUND' });
            if (typeof value === 'string') return sendText(s, req, res, 200, value, 'text/plain; charset=utf-8', { 'X-Raft-Value-Type': 'string' }, true);
            if (value instanceof Uint8Array) return sendText(s, req, res, 200, Buffer.from(value.buffer, value.byteOffset, value.byteLength), 'application/octet-stream', { 'X-Raft-Value-Type': 'bytes' }, true);
            return ok(200, value, { 'X-Raft-Value-Type': 'json' });
          }
        }
    }
  } catch (err) {
    const { status, body, headers } = errorAnswer(s, req, err);
    send(s, req, res, status, body, headers, r !== null && (r.kind === 'kv' || r.kind === 'cas'));
  }
}

/** The HTTP answer for an error thrown while handling a request. */
function errorAnswer(s: ServerState, req: http.IncomingMessage, err: unknown): { status: number; body: Record<string, unknown>; headers: Record<string, string> } {
  if (err instanceof HttpError) {
    return { status: err.status, body: { error: err.message, code: httpCode(err.status), ...err.extra }, headers: err.headers };
  }
  if (!isRaftError(err)) {
    s.onInternalError(err);
    return { status: 500, body: { error: 'internal error', code: 'INTERNAL' }, headers: {} };
  }
  const e = err as RaftError;
  // Every Raft error says what became of the request (src/errors.ts, docs/api.md).
  const body = { error: e.message, code: e.code, outcome: e.outcome };
  switch (e.code) {
    case 'NOT_LEADER': {
      const leader = (e as NotLeaderError).leader;
      const base = leader === null ? undefined : s.peerHttp[leader];
      if (base !== undefined) {
        const location = base.replace(/\/+$/, '') + (req.url ?? '/');
        return { status: 307, body: { ...body, error: `not the leader; the leader is ${leader}`, leader, location }, headers: { Location: location } };
      }
      const error = leader === null ? 'no leader' : `no leader reachable here (the leader is ${leader}, whose HTTP address is unknown)`;
      return { status: 503, body: { ...body, error, leader }, headers: { 'Retry-After': '1' } };
    }
    case 'TIMEOUT':
      return {
        status: 504,
        body: { ...body, error: e.outcome === 'unknown' && !isRead(req) ? `${e.message} (the outcome is unknown: the write may still be applied)` : e.message },
        headers: {},
      };
    case 'LEADERSHIP_LOST':
    case 'ACTOR_RESTARTED':
      return { status: 503, body, headers: { 'Retry-After': '1' } };
    case 'SESSION_EXPIRED':
    case 'STALE_REQUEST':
      // The op was in doubt and will not be applied any more: a new request is a new op.
      return { status: 409, body, headers: {} };
    case 'NODE_STOPPED':
    case 'UNKNOWN_NODE':
      return { status: 503, body, headers: { 'Retry-After': '1' } };
    // The node's disk is full (its no-space alarm): 507 Insufficient Storage, reads still served.
    case 'NO_SPACE':
      return { status: 507, body, headers: {} };
    case 'INVALID_COMMAND':
      return { status: 400, body, headers: {} };
    default:
      // Storage and state machine failures: the code says which; the text stays in the log.
      s.onInternalError(err);
      return { status: 500, body: { error: 'internal error', code: e.code, outcome: e.outcome }, headers: {} };
  }
}

/** A request that changes nothing (a read has no outcome to be unsure of). */
function isRead(req: http.IncomingMessage): boolean {
  return req.method === 'GET' || req.method === 'HEAD';
}

function httpCode(status: number): string {
  switch (status) {
    case 400:
      return 'BAD_REQUEST';
    case 404:
      return 'NOT_FOUND';
    case 405:
      return 'METHOD_NOT_ALLOWED';
    case 413:
      return 'TOO_LARGE';
    default:
      return `HTTP_${status}`;
  }
}

function count(map: Map<string, number>, req: http.IncomingMessage, status: number): void {
  const method = KNOWN_METHODS.has(req.method ?? '') ? req.method! : 'OTHER';
  const k = `${method} ${status}`;
  map.set(k, (map.get(k) ?? 0) + 1);
}

/** JSON answer (204 has no body). */
function send(
  s: ServerState,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
  isKv = false,
): void {
  const text = status === 204 ? '' : JSON.stringify(body, jsonReplacer) ?? 'null';
  sendText(s, req, res, status, text, status === 204 ? undefined : 'application/json', headers, isKv);
}

function sendText(
  s: ServerState,
  req: http.IncomingMessage,
  res: http.ServerResponse,
  status: number,
  body: string | Buffer,
  contentType: string | undefined,
  headers: Record<string, string> = {},
  isKv = false,
): void {
  if (res.headersSent || res.destroyed || res.writableEnded) return; // client gone
  count(s.requests, req, status);
  if (isKv) count(s.ops, req, status);
  for (const [k, v] of Object.entries(headers)) res.setHeader(k, v);
  if (contentType) res.setHeader('Content-Type', contentType);
  const unread = !req.complete && !/close/i.test(String(res.getHeader('Connection') ?? ''));
  const payload = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  if (status !== 204) res.setHeader('Content-Length', payload.length);
  res.statusCode = status;
  res.end(status === 204 || req.method === 'HEAD' ? undefined : payload);
  if (unread) discardRest(req);
}

/**
 * Answered before the request body was read to its end (413, 405, ...): read and discard the
 * rest, so the client sees the answer (closing at once would reset the connection under a
 * client still sending, losing the answer) and the connection stays usable; but cut a client
 * that goes on sending for longer than DRAIN_GRACE_MS or more than DRAIN_MAX_BYTES.
 */
function discardRest(req: http.IncomingMessage): void {
  let discarded = 0;
  const cut = () => {
    if (!req.complete) req.socket.destroy();
  };
  const timer = setTimeout(cut, DRAIN_GRACE_MS);
  timer.unref();
  req.on('data', (chunk: Buffer) => {
    discarded += chunk.length;
    if (discarded > DRAIN_MAX_BYTES) cut();
  });
  req.once('end', () => clearTimeout(timer));
  req.resume();
}
