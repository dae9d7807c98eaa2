#!/usr/bin/env node
/**
 * The `actor-raft` command: run one networked peer, or talk to a cluster over HTTP.
 *
 *   actor-raft node --id n1 --listen 127.0.0.1:7001 \
 *       --peers n1=127.0.0.1:7001,n2=127.0.0.1:7002,n3=127.0.0.1:7003 \
 *       --data ./data/n1 --http 127.0.0.1:8001 [--http-peers n2=127.0.0.1:8002,...] \
 *       [--cluster-id ID] [--bootstrap] [--log text|json] [--tls-ca F --tls-cert F --tls-key F]
 *       [--http-tls-cert F --http-tls-key F [--http-tls-ca F]]
 *   actor-raft put KEY VALUE   --endpoints http://127.0.0.1:8001,http://127.0.0.1:8002
 *   actor-raft get KEY         --endpoints ...
 *   actor-raft del KEY         --endpoints ...
 *   actor-raft status          --endpoints ...
 *
 * Exit codes: 0 done; 1 the cluster answered with an error (no leader, not found, timeout) or
 * no endpoint could be reached; 2 bad arguments.
 */
import { events, setConfig, startNode, status, stopNode } from './api/index.js';
import { startHttpServer } from './http/server.js';

class UsageError extends Error {}

/** How often a node with no configuration says it waits to be added. */
const WAITING_LOG_MS = 5_000;

const USAGE = `usage:
  actor-raft node --id ID --listen HOST:PORT --peers ID=HOST:PORT,... --data DIR --http HOST:PORT
                  [--http-peers ID=HOST:PORT,...] [--cluster-id ID] [--bootstrap] [--log text|json]
                  [--tls-ca FILE --tls-cert FILE --tls-key FILE]
                  [--http-tls-cert FILE --http-tls-key FILE [--http-tls-ca FILE]]
  actor-raft put KEY VALUE --endpoints URL,...
  actor-raft get KEY       --endpoints URL,...
  actor-raft del KEY       --endpoints URL,...
  actor-raft status        --endpoints URL,...`;

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

// ---------------------------------------------------------------------------------------------
// actor-raft node

async function runNode(flags: Map<string, string | true>): Promise<void> {
  const id = flag(flags, 'id', true);
  const listen = flag(flags, 'listen', true);
  // Without --bootstrap, --peers only names first contacts (a blank node waiting to be added needs none).
  const allPeers = flags.has('peers') ? parseMap(flag(flags, 'peers', true), '--peers') : {};
  if (flags.has('bootstrap') && !(id in allPeers)) throw new UsageError(`--bootstrap needs --peers including this node (${id})`);
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
  const peerHttp = httpUrls({ ...httpPeers, [id]: httpListen }, httpTls !== undefined);
  const advertiseHttp = peerHttp[id]!;
  await startNode(id, { stateMachine: 'kv', dataDir, network: { listen, peers, clusterId, advertiseHttp, ...(tls ? { tls } : {}) } });
  const http = await startHttpServer({
    node: id,
    listen: httpListen,
    peerHttp,
    ...(httpTls ? { tls: httpTls } : {}),
  });
  log('up', { listen, http: http.address(), dataDir }, `up: peers on ${listen}, http on ${http.address()}, data in ${dataDir}`);

  if (flags.has('bootstrap')) {
    const s = await status(id);
    if (s.peers.length === 0 && s.lastIndex === 0) {
      // The configuration carries every member's addresses (and HTTP address where known).
      const addresses = Object.fromEntries(Object.entries(allPeers).map(([p, a]) => [p, { peer: a, ...(peerHttp[p] ? { http: peerHttp[p] } : {}) }]));
      await setConfig(id, Object.keys(allPeers), { addresses });
      log('bootstrap', { peers: Object.keys(allPeers) }, `bootstrapped a cluster of ${Object.keys(allPeers).join(', ')}`);
    }
  }

  // A blank node says, every few seconds until it has a configuration, that it waits to be added.
  const sayIfWaiting = () => status(id).then((s) => (s.waiting ? log('waiting', { message: s.waiting }, s.waiting) : clearInterval(waiting)), () => undefined);
  const waiting = setInterval(() => void sayIfWaiting(), WAITING_LOG_MS);
  void sayIfWaiting();

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    clearInterval(waiting);
    log('stop', { signal }, `stopping (${signal})`);
    await http.close();
    await stopNode(id).catch(() => undefined);
    log('stopped', {}, 'stopped; the data stays in the data directory');
  };
  process.on('SIGINT', () => void shutdown('SIGINT'));
  process.on('SIGTERM', () => void shutdown('SIGTERM'));
}

function httpUrls(peers: Record<string, string>, tls: boolean): Record<string, string> {
  return Object.fromEntries(Object.entries(peers).map(([p, a]) => [p, a.includes('://') ? a : `${tls ? 'https' : 'http'}://${a}`]));
}

// ---------------------------------------------------------------------------------------------
// Client commands, over HTTP

async function request(endpoints: string[], method: string, path: string, body?: string): Promise<{ status: number; text: string }> {
  let last: unknown = null;
  for (const base of endpoints) {
    try {
      const res = await fetch(new URL(path, base.includes('://') ? base : `http://${base}`), {
        method,
        ...(body === undefined ? {} : { body, headers: { 'content-type': 'text/plain; charset=utf-8' } }),
        redirect: 'follow',
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
      r = await request(endpoints, 'PUT', `/kv/${key(0)}`, value);
      break;
    }
    case 'get':
      r = await request(endpoints, 'GET', `/kv/${key(0)}`);
      break;
    case 'del':
      r = await request(endpoints, 'DELETE', `/kv/${key(0)}`);
      break;
    case 'status':
      r = await request(endpoints, 'GET', '/status');
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
