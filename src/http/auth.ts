/**
 * Client roles for the HTTP interface (see docs/security.md, "Client roles"): who the client
 * is (a bearer token, or a client certificate) and what it may do.
 *
 * | role    | may                                                                       |
 * |---------|---------------------------------------------------------------------------|
 * | `read`  | GET and HEAD of every route but `/admin/...` (kv reads, status, metrics)   |
 * | `write` | what `read` may, and every other method outside `/admin/...` (kv writes)   |
 * | `admin` | what `write` may, and everything under `/admin/...` (membership, leaders) |
 *
 * ## The token file (`tokenFile`, `actor-raft node --token-file`)
 *
 * One token a line: `ROLE NAME sha256:HEX`, where HEX is the SHA-256 of the token (64 hex
 * digits); `#` starts a comment, blank lines are skipped. NAME (letters, digits, `._@-`) says
 * whose token it is in answers and logs; each name once. The file holds no secret: a token
 * cannot be recovered from its hash, and tokens are random (256 bits, `createToken`), so a
 * plain hash (no salt, no slow hash) is what a guess is up against. A line that is not of this
 * form — a token written in plain, say — refuses the start, with its line number (never its
 * text).
 *
 *   read    grafana  sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae
 *   write   ci       sha256:...
 *
 * `Authorizer.reloadTokens` (the CLI: SIGHUP) reads the file again; a bad file keeps the old
 * tokens.
 *
 * A client sends `Authorization: Bearer TOKEN`. The server hashes what was sent and compares
 * the hash with every stored one with `crypto.timingSafeEqual`, so the time taken does not
 * say how much of a guess was right.
 *
 * ## Client certificates (`clientCertRoles`, with HTTPS and `requestCert`)
 *
 * A map from a name in the client certificate to a role: the subject's CN or any value of its
 * subject alternative names (DNS, URI, email, IP). The TLS handshake has already checked the
 * certificate against the CA; the map says what its holder may do. A certificate matching
 * several names gets the strongest of their roles; a token sent along with a certificate
 * adds its role (the stronger one counts), and an invalid token is refused even then.
 *
 * ## Answers
 *
 * Missing or invalid token: 401 `UNAUTHORIZED` with `WWW-Authenticate: Bearer`. A role too
 * weak: 403 `FORBIDDEN` with the role needed. With `openMetrics`, GET and HEAD of `/metrics`,
 * `/health` and `/ready` need no role. CORS preflights are answered before this check (they
 * carry no credentials and change nothing).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs/promises';
import type http from 'node:http';
import type { TLSSocket } from 'node:tls';

export const ROLES = ['read', 'write', 'admin'] as const;
export type Role = (typeof ROLES)[number];

/** How to authenticate HTTP clients; `null` from `loadAuth` when none is configured. */
export interface AuthOptions {
  /** Path of the token file (see "The token file"). */
  tokenFile?: string;
  /** Client certificate name (CN or SAN value) → role; needs `tls.requestCert`. */
  clientCertRoles?: Record<string, Role>;
  /** Leave GET/HEAD of `/metrics`, `/health` and `/ready` open to anyone (for scrapers, probes). */
  openMetrics?: boolean;
}

/** A refusal: the status, JSON error fields and headers of the answer. */
export interface Denial {
  status: 401 | 403;
  error: string;
  code: 'UNAUTHORIZED' | 'FORBIDDEN';
  extra: Record<string, unknown>;
  headers: Record<string, string>;
}

/** A token file that cannot be used; the message names the file and line, never a token. */
export class TokenFileError extends Error {
  readonly code = 'TOKEN_FILE_INVALID';
  constructor(readonly file: string, message: string) {
    super(`token file ${file}: ${message}`);
    this.name = 'TokenFileError';
  }
}

interface StoredToken {
  role: Role;
  name: string;
  hash: Buffer;
}

const HASH_PREFIX = 'sha256:';
const TOKEN_PREFIX = 'art_';
/** Longer bearer values are not tokens this server made; they are refused unhashed. */
const MAX_TOKEN_LENGTH = 512;
const OPEN_PATHS = new Set(['metrics', 'health', 'ready']);
const READ_METHODS = new Set(['GET', 'HEAD']);
const REALM = 'Bearer realm="actor-raft"';

function rank(role: Role): number {
  return ROLES.indexOf(role);
}

function stronger(a: Role | null, b: Role | null): Role | null {
  if (a === null) return b;
  if (b === null) return a;
  return rank(a) >= rank(b) ? a : b;
}

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

function sha256(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest();
}

/** A new random token (256 bits) and the token file line that admits it with `role`. */
export function createToken(role: Role, name: string): { token: string; line: string } {
  if (!isRole(role)) throw new TypeError(`role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}`);
  if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name)) throw new TypeError(`a token's name is 1 to 64 letters, digits or ._@-, got ${JSON.stringify(name)}`);
  const token = TOKEN_PREFIX + randomBytes(32).toString('base64url');
  return { token, line: `${role} ${name} ${HASH_PREFIX}${sha256(token).toString('hex')}` };
}

/** The tokens of a token file's text (see "The token file"); throws TokenFileError. */
export function parseTokenFile(file: string, text: string): StoredToken[] {
  const tokens: StoredToken[] = [];
  const names = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (line === '') return;
    const where = `line ${i + 1}`;
    const fields = line.split(/\s+/);
    if (fields.length !== 3) {
      throw new TokenFileError(file, `${where}: expected 'ROLE NAME sha256:HEX' (tokens are stored hashed; make one with 'actor-raft token create')`);
    }
    const [role, name, hash] = fields as [string, string, string];
    if (!isRole(role)) throw new TokenFileError(file, `${where}: the role must be one of ${ROLES.join(', ')}`);
    if (!/^[A-Za-z0-9._@-]{1,64}$/.test(name)) throw new TokenFileError(file, `${where}: a name is 1 to 64 letters, digits or ._@-`);
    if (names.has(name)) throw new TokenFileError(file, `${where}: the name '${name}' is used twice`);
    if (!hash.startsWith(HASH_PREFIX) || !/^[0-9a-f]{64}$/i.test(hash.slice(HASH_PREFIX.length))) {
      throw new TokenFileError(file, `${where}: the token must be stored as sha256: and 64 hex digits of its hash, not in plain`);
    }
    names.add(name);
    tokens.push({ role, name, hash: Buffer.from(hash.slice(HASH_PREFIX.length), 'hex') });
  });
  return tokens;
}

/**
 * The candidate paths a request may be routed by, as decoded segments: the path as sent, and
 * the path with dot segments and backslashes resolved as `new URL` does. A route check must
 * hold for every one of them, whichever way a route is parsed.
 */
function pathViews(rawUrl: string): string[][] {
  const pathname = rawUrl.split(/[?#]/, 1)[0]!;
  const decode = (p: string) =>
    p.split('/').slice(1).map((seg) => {
      try {
        return decodeURIComponent(seg).toLowerCase();
      } catch {
        return seg.toLowerCase();
      }
    });
  const views = [decode(pathname)];
  try {
    views.push(decode(new URL(pathname, 'http://x').pathname));
  } catch {
    // Not a URL path at all: the router answers 400.
  }
  return views;
}

/** The role a request needs, or null when it needs none (open metrics/health). */
export function requiredRole(method: string, rawUrl: string, openMetrics: boolean): Role | null {
  const views = pathViews(rawUrl);
  if (views.some((segs) => segs[0] === 'admin')) return 'admin';
  if (!READ_METHODS.has(method)) return 'write';
  const open = openMetrics && views.every((segs) => segs.length === 1 && OPEN_PATHS.has(segs[0]!));
  return open ? null : 'read';
}

/** The names a client certificate carries: subject CN and subject alternative name values. */
function certificateNames(req: http.IncomingMessage): string[] {
  const socket = req.socket as Partial<TLSSocket>;
  if (typeof socket.getPeerCertificate !== 'function' || socket.authorized !== true) return [];
  const cert = socket.getPeerCertificate();
  if (!cert || Object.keys(cert).length === 0) return [];
  const names: string[] = [];
  const cn = cert.subject?.CN;
  for (const v of Array.isArray(cn) ? cn : cn === undefined ? [] : [cn]) names.push(v);
  for (const entry of (cert.subjectaltname ?? '').split(/,\s*/)) {
    const colon = entry.indexOf(':');
    if (colon > 0) names.push(entry.slice(colon + 1));
  }
  return names;
}

/** Checks requests against the token file and certificate roles. */
export class Authorizer {
  constructor(
    private tokens: StoredToken[],
    private readonly tokenFile: string | undefined,
    private readonly certRoles: Map<string, Role>,
    private readonly openMetrics: boolean,
  ) {}

  /**
   * Read the token file again (to add or revoke tokens without a restart). A file that cannot
   * be used throws TokenFileError and changes nothing: the tokens read before stay in force.
   */
  async reloadTokens(): Promise<void> {
    if (this.tokenFile !== undefined) this.tokens = await readTokenFile(this.tokenFile);
  }

  /** The token whose hash is the hash of `presented`, comparing every one in constant time. */
  private tokenFor(presented: string): StoredToken | null {
    const hash = sha256(presented);
    let found: StoredToken | null = null;
    for (const t of this.tokens) if (timingSafeEqual(hash, t.hash) && found === null) found = t;
    return found;
  }

  private certRole(req: http.IncomingMessage): Role | null {
    let role: Role | null = null;
    for (const name of certificateNames(req)) role = stronger(role, this.certRoles.get(name) ?? null);
    return role;
  }

  /** null when the request may go on; else how to refuse it. */
  check(req: http.IncomingMessage): Denial | null {
    const needed = requiredRole(req.method ?? '', req.url ?? '', this.openMetrics);
    if (needed === null) return null;
    const certRole = this.certRole(req);
    const header = req.headers.authorization;
    let tokenRole: Role | null = null;
    let who = certRole === null ? 'this client' : 'this client certificate';
    if (header !== undefined) {
      const m = /^Bearer +([A-Za-z0-9._~+/-]+=*) *$/i.exec(header);
      const token = m && m[1]!.length <= MAX_TOKEN_LENGTH ? this.tokenFor(m[1]!) : null;
      if (token === null) {
        return unauthorized('invalid bearer token', `${REALM}, error="invalid_token"`);
      }
      tokenRole = token.role;
      who = `the token '${token.name}'`;
    }
    const role = stronger(certRole, tokenRole);
    if (role === null) {
      return unauthorized(`authentication required: send Authorization: Bearer TOKEN (the ${needed} role is needed here)`, REALM);
    }
    if (rank(role) >= rank(needed)) return null;
    return {
      status: 403,
      error: `this needs the ${needed} role; ${who} has ${role}`,
      code: 'FORBIDDEN',
      extra: { role: needed },
      headers: tokenRole === null ? {} : { 'WWW-Authenticate': `${REALM}, error="insufficient_scope"` },
    };
  }
}

function unauthorized(error: string, challenge: string): Denial {
  return { status: 401, error, code: 'UNAUTHORIZED', extra: {}, headers: { 'WWW-Authenticate': challenge } };
}

/** Checks the options (TypeError); `certificatesRequested`: the server asks clients for certificates. */
export function checkAuthOptions(o: AuthOptions, certificatesRequested: boolean): void {
  if (o.tokenFile !== undefined && (typeof o.tokenFile !== 'string' || o.tokenFile === '')) throw new TypeError('options.tokenFile must be a file path');
  if (o.openMetrics !== undefined && typeof o.openMetrics !== 'boolean') throw new TypeError('options.openMetrics must be a boolean');
  if (o.clientCertRoles === undefined) return;
  if (typeof o.clientCertRoles !== 'object' || o.clientCertRoles === null) throw new TypeError('options.clientCertRoles must map certificate names to roles');
  for (const [name, role] of Object.entries(o.clientCertRoles)) {
    if (!isRole(role)) throw new TypeError(`options.clientCertRoles.${name}: the role must be one of ${ROLES.join(', ')}, got ${JSON.stringify(role)}`);
  }
  if (!certificatesRequested) throw new TypeError('options.clientCertRoles needs HTTPS with client certificates (tls.ca and tls.requestCert)');
}

async function readTokenFile(file: string): Promise<StoredToken[]> {
  let text: string;
  try {
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    throw new TokenFileError(file, `cannot be read (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  return parseTokenFile(file, text);
}

/** The authorizer the options ask for (reads the token file), or null: no authentication. */
export async function loadAuth(o: AuthOptions): Promise<Authorizer | null> {
  if (o.tokenFile === undefined && o.clientCertRoles === undefined) return null;
  const tokens = o.tokenFile === undefined ? [] : await readTokenFile(o.tokenFile);
  return new Authorizer(tokens, o.tokenFile, new Map(Object.entries(o.clientCertRoles ?? {})), o.openMetrics ?? false);
}

/** Loopback addresses: a server there is reachable from this machine only. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return h === 'localhost' || h === '::1' || /^127\.\d+\.\d+\.\d+$/.test(h) || /^::ffff:127\./.test(h);
}

/**
 * The warning due at start when the server is reachable from other machines with no client
 * authentication at all (no token file, no client certificates); null otherwise.
 */
export function openServerWarning(host: string, address: string, auth: Authorizer | null, certificatesRequested: boolean): string | null {
  if (auth !== null || certificatesRequested || isLoopback(host)) return null;
  return `HTTP on ${address} is open to anyone who can reach it: every client may read and write every key (add --token-file or client certificates, or listen on loopback)`;
}
