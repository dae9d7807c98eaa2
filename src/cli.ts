#!/usr/bin/env node
/**
 * The `actor-raft` command: run one networked peer, or talk to a cluster over HTTP.
 *
 *   actor-raft node --id n1 --listen 127.0.0.1:7001 \
 *       --peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 \
 *       --data ./data/n1 --http 127.0.0.1:8001 [--http-peers n2=127.0.0.1:8002,...] \
 *       [--cluster-id ID] [--bootstrap] [--log text|json] [--tls-ca F --tls-cert F --tls-key F]
 *       [--http-tls-cert F --http-tls-key F [--http-tls-ca F]]
 *       [--http-allowed-hosts NAME[:PORT],...] [--http-allowed-origins URL,...]
 *       [--http-max-connections N] [--http-max-inflight N]
 *       [--token-file F] [--http-cert-roles NAME=ROLE,...] [--http-open-metrics]
 *   actor-raft put KEY VALUE   --endpoints http://127.0.0.1:8001,http://127.0.0.1:8002
 *   actor-raft get KEY         --endpoints ...
 *   actor-raft del KEY         --endpoints ...
 *   actor-raft status          --endpoints ...
 *   actor-raft token create --role read|write|admin --name NAME
 *
 * Client commands send the token in `--token-file F` (the token itself) or in the environment
 * variable ACTOR_RAFT_TOKEN; the node's `--token-file` holds tokens hashed (src/http/auth.ts).
 *
 * Exit codes: 0 done; 1 the cluster answered with an error (no leader, not found, timeout) or
 * no endpoint could be reached; 2 bad arguments.
 */
import { readFileSync } from 'node:fs';
import { events, setConfig, startNode, status, stopNode } from './api/index.js';
import { createToken, isRole, type Role } from './http/auth.js';
import { startHttpServer } from './http/server.js';

class UsageError extends Error {}

const USAGE = `usage:
  actor-raft node --id ID --listen HOST:PORT --peers ID=HOST:PORT,... --data DIR --http HOST:PORT
                  [--http-peers ID=HOST:PORT,...] [--cluster-id ID] [--bootstrap] [--log text|json]
                  [--tls-ca FILE --tls-cert FILE --tls-key FILE]
                  [--http-tls-cert FILE --http-tls-key FILE [--http-tls-ca FILE]]
                  [--http-allowed-hosts NAME[:PORT],...] [--http-allowed-origins URL,...]
                  [--http-max-connections N] [--http-max-inflight N]
                  [--token-file FILE] [--http-cert-roles NAME=ROLE,...] [--http-open-metrics]
  actor-raft put KEY VALUE --endpoints URL,... [--token-file FILE]
  actor-raft get KEY       --endpoints URL,... [--token-file FILE]
  actor-raft del KEY       --endpoints URL,... [--token-file FILE]
  actor-raft status        --endpoints URL,... [--token-file FILE]
  actor-raft token create --role read|write|admin --name NAME
(client commands also take the token from ACTOR_RAFT_TOKEN)`;

/** `--name value` pairs and bare `--flag`s after the positional arguments. */
function parseArgs(argv: string[]): { positional: string[]; flags: Map<string, string | true> } {
  const positional: string[] = [];
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const name = a.slice(2);
    const next = argv[i + 1];
    if (next === undefined || next.startsWith('--')) flags.set(name, true);
    else {
      flags.set(name, next);
      i++;
    }
  }
  return { positional, flags };
}

function flag(flags: Map<string, string | true>, name: string, required: true): string;
function flag(flags: Map<string, string | true>, name: string, required?: false): string | undefined;
function flag(flags: Map<string, string | true>, name: string, required = false): string | undefined {
  const v = flags.get(name);
  if (v === true) throw new UsageError(`--${name} needs a value`);
  if (v === undefined && required) throw new UsageError(`--${name} is required`);
  return v;
}

/** `a=host:port,b=host:port` → { a: 'host:port', b: 'host:port' }. */
function parseMap(value: string, what: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of value.split(',').filter((s) => s !== '')) {
    const eq = item.indexOf('=');
    if (eq <= 0 || eq === item.length - 1) throw new UsageError(`${what}: expected ID=HOST:PORT, got '${item}'`);
    const id = item.slice(0, eq);
    if (id in out) throw new UsageError(`${what}: '${id}' is listed twice`);
    out[id] = item.slice(eq + 1);
  }
  if (Object.keys(out).length === 0) throw new UsageError(`${what} is empty`);
  return out;
}

/** `a,b,c` → ['a', 'b', 'c'] (empty items dropped). */
function parseList(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

function positiveFlag(flags: Map<string, string | true>, name: string): number | undefined {
  const v = flag(flags, name);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < 1 || !Number.isSafeInteger(Number(v))) throw new UsageError(`--${name} must be a positive integer, got '${v}'`);
  return Number(v);
}

// ---------------------------------------------------------------------------------------------
// actor-raft node

async function runNode(flags: Map<string, string | true>): Promise<void> {
  const id = flag(flags, 'id', true);
  const listen = flag(flags, 'listen', true);
  const allPeers = parseMap(flag(flags, 'peers', true), '--peers');
  if (!(id in allPeers)) throw new UsageError(`--peers must include this node (${id})`);
  const dataDir = flag(flags, 'data', true);
  const httpListen = flag(flags, 'http', true);
  const httpPeers = flags.has('http-peers') ? parseMap(flag(flags, 'http-peers', true), '--http-peers') : {};
  const clusterId = flag(flags, 'cluster-id') ?? 'actor-raft';
  const json = flag(flags, 'log') === 'json';
  if (flags.has('log') && !['json', 'text'].includes(flag(flags, 'log')!)) throw new UsageError('--log is text or json');
  const tlsFiles = ['tls-ca', 'tls-cert', 'tls-key'].map((n) => flag(flags, n));
  if (tlsFiles.some((f) => f !== undefined) && tlsFiles.some((f) => f === undefined)) {
    throw new UsageError('--tls-ca, --tls-cert and --tls-key go together');
  }
  const tls = tlsFiles[0] ? { ca: tlsFiles[0], cert: tlsFiles[1]!, key: tlsFiles[2]! } : undefined;
  // HTTPS for clients; with a CA, clients must present a certificate it signed.
  const httpCert = flag(flags, 'http-tls-cert');
  const httpKey = flag(flags, 'http-tls-key');
  const httpCa = flag(flags, 'http-tls-ca');
  if ((httpCert === undefined) !== (httpKey === undefined) || (httpCa !== undefined && httpCert === undefined)) {
    throw new UsageError('--http-tls-cert and --http-tls-key go together (and --http-tls-ca needs them)');
  }
  const httpTls = httpCert ? { cert: httpCert, key: httpKey!, ...(httpCa ? { ca: httpCa, requestCert: true } : {}) } : undefined;
  // What web pages may do (src/http/server.ts, "Web pages"), and the server's bounds.
  const httpAllowedHosts = flags.has('http-allowed-hosts') ? parseList(flag(flags, 'http-allowed-hosts', true)) : undefined;
  const httpAllowedOrigins = flags.has('http-allowed-origins') ? parseList(flag(flags, 'http-allowed-origins', true)) : undefined;
  const httpMaxConnections = positiveFlag(flags, 'http-max-connections');
  const httpMaxInFlight = positiveFlag(flags, 'http-max-inflight');
  // Client roles (src/http/auth.ts): a file of hashed tokens, certificate names, open metrics.
  const tokenFile = flag(flags, 'token-file');
  const clientCertRoles = flags.has('http-cert-roles') ? parseCertRoles(flag(flags, 'http-cert-roles', true)) : undefined;
  if (clientCertRoles && httpCa === undefined) throw new UsageError('--http-cert-roles needs client certificates (--http-tls-ca)');

  const log = (event: string, fields: Record<string, unknown>, text: string) => {
    if (json) console.log(JSON.stringify({ time: new Date().toISOString(), node: id, event, ...fields }));
    else console.log(`${new Date().toISOString()}  ${id}  ${text}`);
  };
  events.on('role', (n) => {
    if (n.id !== id) return;
    log('role', n, `${n.role} in term ${n.term}${n.leader ? `, leader ${n.leader}` : ', no leader known'}`);
  });
  events.on('restart', (n) => log('restart', n, `restarted: ${n.reason}`));
  events.on('failed', (n) => {
    log('failed', n, `stopped by its supervisor: ${n.reason}`);
    process.exitCode = 1;
  });

  const peers = Object.fromEntries(Object.entries(allPeers).filter(([p]) => p !== id));
  await startNode(id, { stateMachine: 'kv', dataDir, network: { listen, peers, clusterId, ...(tls ? { tls } : {}) } });
  const http = await startHttpServer({
    node: id,
    listen: httpListen,
    peerHttp: httpUrls(httpPeers, httpTls !== undefined),
    ...(httpTls ? { tls: httpTls } : {}),
    ...(httpAllowedHosts ? { allowedHosts: httpAllowedHosts } : {}),
    ...(httpAllowedOrigins ? { allowedOrigins: httpAllowedOrigins } : {}),
    ...(httpMaxConnections ? { maxConnections: httpMaxConnections } : {}),
    ...(httpMaxInFlight ? { maxInFlightRequests: httpMaxInFlight } : {}),
    ...(tokenFile !== undefined ? { tokenFile } : {}),
    ...(clientCertRoles ? { clientCertRoles } : {}),
    ...(flags.has('http-open-metrics') ? { openMetrics: true } : {}),
    onInternalError: (err) => log('http-error', { error: String(err) }, `http: internal error: ${String(err)}`),
    onWarning: (message) => log('warning', { message }, `warning: ${message}`),
  });
  log('up', { listen, http: http.address(), dataDir }, `up: peers on ${listen}, http on ${http.address()}, data in ${dataDir}`);

  if (flags.has('bootstrap')) {
    const s = await status(id);
    if (s.peers.length === 0 && s.lastIndex === 0) {
      await setConfig(id, Object.keys(allPeers));
      log('bootstrap', { peers: Object.keys(allPeers) }, `bootstrapped a cluster of ${Object.keys(allPeers).join(', ')}`);
    }
  }

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log('stop', { signal }, `stopping (${signal})`);
    await http.close();
    await stopNode(id).catch(() => undefined);
    log('stopped', {}, 'stopped; the data stays in the data directory');
  };
  // SIGHUP: read the token file again (tokens added or revoked); a bad file keeps the old tokens.
  process.on('SIGHUP', () => {
    http.reloadTokens().then(
      () => log('tokens', { tokenFile }, `token file ${tokenFile ?? '(none)'} read again`),
      (err: unknown) => log('warning', { message: String(err) }, `warning: ${(err as Error).message}; the tokens read before stay in force`),
    );
  });
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

/** `name=role,...` → { name: role }. */
function parseCertRoles(value: string): Record<string, Role> {
  const out: Record<string, Role> = {};
  for (const item of parseList(value)) {
    const eq = item.lastIndexOf('=');
    const role = item.slice(eq + 1);
    if (eq <= 0 || !isRole(role)) throw new UsageError(`--http-cert-roles: expected NAME=read|write|admin, got '${item}'`);
    out[item.slice(0, eq)] = role;
  }
  return out;
}

function httpUrls(peers: Record<string, string>, tls: boolean): Record<string, string> {
  return Object.fromEntries(Object.entries(peers).map(([p, a]) => [p, a.includes('://') ? a : `${tls ? 'https' : 'http'}://${a}`]));
}

// ---------------------------------------------------------------------------------------------
// actor-raft token create: a new token, shown once, and the line that admits it

function runTokenCreate(args: string[], flags: Map<string, string | true>): void {
  if (args[0] !== 'create' || args.length !== 1) throw new UsageError('usage: actor-raft token create --role read|write|admin --name NAME');
  const role = flag(flags, 'role', true);
  if (!isRole(role)) throw new UsageError('--role is read, write or admin');
  const name = flag(flags, 'name', true);
  let made: { token: string; line: string };
  try {
    made = createToken(role, name);
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  // stdout: the token, then its line (for scripts); stderr: what each is.
  console.error('the token (shown only now: give it to the client, e.g. in a file for --token-file):');
  console.log(made.token);
  console.error("the line that admits it (add it to the node's --token-file):");
  console.log(made.line);
}

// ---------------------------------------------------------------------------------------------
// Client commands, over HTTP

/** Redirects (307 to the leader) followed at most this many times; the token goes along. */
const MAX_REDIRECTS = 5;

/** `fetch`, following redirects itself: fetch drops `Authorization` on a redirect to another origin (the leader's). */
async function fetchFollowing(url: URL, init: RequestInit): Promise<Response> {
  for (let hop = 0; ; hop++) {
    const res = await fetch(url, { ...init, redirect: 'manual' });
    const location = res.headers.get('location');
    // 307 and 308 repeat the request as it was (the server sends 307 to the leader).
    if ((res.status !== 307 && res.status !== 308) || location === null || hop === MAX_REDIRECTS) return res;
    await res.body?.cancel();
    url = new URL(location, url);
  }
}

/** The bearer token client commands send: `--token-file` (the token itself) or ACTOR_RAFT_TOKEN. */
function clientToken(flags: Map<string, string | true>): string | undefined {
  const file = flag(flags, 'token-file');
  if (file === undefined) return process.env.ACTOR_RAFT_TOKEN || undefined;
  const token = readFileSync(file, 'utf8').trim();
  if (token === '' || /\s/.test(token)) throw new UsageError(`--token-file ${file} must hold one token`);
  return token;
}

async function request(endpoints: string[], method: string, path: string, body?: string, token?: string): Promise<{ status: number; text: string }> {
  let last: unknown = null;
  const headers: Record<string, string> = {};
  if (body !== undefined) headers['content-type'] = 'text/plain; charset=utf-8';
  if (token !== undefined) headers.authorization = `Bearer ${token}`;
  for (const base of endpoints) {
    try {
      const res = await fetchFollowing(new URL(path, base.includes('://') ? base : `http://${base}`), {
        method,
        headers,
        ...(body === undefined ? {} : { body }),
        signal: AbortSignal.timeout(15_000),
      });
      const text = await res.text();
      // No leader known there: another endpoint may know better.
      if (res.status === 503) {
        last = new Error(`${base}: ${text}`);
        continue;
      }
      return { status: res.status, text };
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`no endpoint answered (${endpoints.join(', ')}): ${last instanceof Error ? last.message : String(last)}`);
}

async function runClient(command: string, args: string[], flags: Map<string, string | true>): Promise<void> {
  const endpoints = (flag(flags, 'endpoints') ?? 'http://127.0.0.1:8001').split(',').filter((e) => e !== '');
  const token = clientToken(flags);
  const key = (n: number) => {
    const k = args[n];
    if (k === undefined || k === '') throw new UsageError(`${command} needs a KEY`);
    return encodeURIComponent(k);
  };
  let r: { status: number; text: string };
  switch (command) {
    case 'put': {
      const value = args[1];
      if (value === undefined) throw new UsageError('put needs a KEY and a VALUE');
      r = await request(endpoints, 'PUT', `/kv/${key(0)}`, value, token);
      break;
    }
    case 'get':
      r = await request(endpoints, 'GET', `/kv/${key(0)}`, undefined, token);
      break;
    case 'del':
      r = await request(endpoints, 'DELETE', `/kv/${key(0)}`, undefined, token);
      break;
    case 'status':
      r = await request(endpoints, 'GET', '/status', undefined, token);
      break;
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
  if (r.status >= 200 && r.status < 300) {
    if (r.text !== '') console.log(r.text);
    return;
  }
  console.error(`error ${r.status}: ${r.text}`);
  process.exitCode = 1;
}

async function main(argv: string[]): Promise<void> {
  const { positional, flags } = parseArgs(argv);
  const [command, ...args] = positional;
  if (command === undefined || flags.has('help')) {
    console.log(USAGE);
    if (command === undefined && !flags.has('help')) process.exitCode = 2;
    return;
  }
  if (command === 'node') return runNode(flags);
  if (command === 'token') return runTokenCreate(args, flags);
  return runClient(command, args, flags);
}

main(process.argv.slice(2)).catch((err: unknown) => {
  if (err instanceof UsageError) {
    console.error(`actor-raft: ${err.message}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  console.error(`actor-raft: ${err instanceof Error ? err.message : String(err)}`);
  process.exitCode = 1;
  // A node that failed to start leaves nothing worth keeping alive.
  setTimeout(() => process.exit(1), 100).unref();
});
