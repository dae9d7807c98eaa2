/**
 * `actor-raft node`: one networked peer in this process (its supervised actors, TCP between
 * peers, HTTP for clients), logging what an operator needs to see, until SIGINT or SIGTERM.
 * Its options are declared in commands.ts (NODE_OPTIONS); the client commands do not load
 * this module (nor the actors and LMDB it starts).
 */
import { events, setConfig, startNode, status, stopNode } from '../api/index.js';
import { isRole, type Role } from '../http/auth.js';
import { startHttpServer } from '../http/server.js';
import type { TcpTlsOptions } from '../transport/tcp.js';
import { choiceOption, EXIT, hostPort, parseList, parsePeerMap, positiveOption, stringOption, UsageError, type Invocation } from './args.js';

/** How often a node without a configuration says so. */
const ALARM_POLL_MS = 1000;
const WAITING_LOG_MS = 5_000;

export async function runNode(inv: Invocation): Promise<number> {
  const id = stringOption(inv, 'id')!;
  const listen = hostPort(stringOption(inv, 'listen')!, '--listen', true);
  // Without --bootstrap, --peers only names first contacts: the configuration in the log
  // carries every member's addresses (a blank node waiting to be added needs none).
  const peersFlag = stringOption(inv, 'peers');
  const allPeers = peersFlag === undefined ? {} : parsePeerMap(peersFlag, '--peers');
  if (inv.options.bootstrap === true && !(id in allPeers)) throw new UsageError(`--bootstrap needs --peers including this node (${id})`);
  const dataDir = stringOption(inv, 'data')!;
  const httpListen = hostPort(stringOption(inv, 'http')!, '--http', true);
  const httpPeersFlag = stringOption(inv, 'http-peers');
  const httpPeers = httpPeersFlag === undefined ? {} : parsePeerMap(httpPeersFlag, '--http-peers', true);
  const clusterId = stringOption(inv, 'cluster-id') ?? 'actor-raft';
  const json = choiceOption(stringOption(inv, 'log'), 'log', ['text', 'json'], 'text') === 'json';
  const tls = peerTls(inv);
  const httpTls = clientTls(inv);
  // What web pages may do (src/http/server.ts, "Web pages"), and the server's bounds.
  const allowedHosts = stringOption(inv, 'http-allowed-hosts');
  const allowedOrigins = stringOption(inv, 'http-allowed-origins');
  const maxConnections = positiveOption(stringOption(inv, 'http-max-connections'), 'http-max-connections');
  const maxInFlight = positiveOption(stringOption(inv, 'http-max-inflight'), 'http-max-inflight');
  const readyMaxLag = positiveOption(stringOption(inv, 'ready-max-lag'), 'ready-max-lag');
  // Client roles (src/http/auth.ts): a file of hashed tokens, certificate names, open metrics.
  const tokenFile = stringOption(inv, 'token-file');
  const certRoles = stringOption(inv, 'http-cert-roles');
  const clientCertRoles = certRoles === undefined ? undefined : parseCertRoles(certRoles);
  if (clientCertRoles && stringOption(inv, 'http-tls-ca') === undefined) throw new UsageError('--http-cert-roles needs client certificates (--http-tls-ca)');

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
  // Peers prove who they are: with TLS, or with a shared secret; beyond loopback one of them
  // is required unless --insecure-peers (docs/peer-security.md).
  const clusterSecretFile = stringOption(inv, 'cluster-secret-file');
  const insecurePeers = inv.options['insecure-peers'] === true;
  const peerSecurity = { ...(tls ? { tls } : {}), ...(clusterSecretFile ? { clusterSecretFile } : {}), ...(insecurePeers ? { insecurePeers } : {}) };
  const peerHttp = httpUrls({ ...httpPeers, [id]: httpListen }, httpTls !== undefined);
  const advertiseHttp = peerHttp[id]!;
  await startNode(id, { stateMachine: 'kv', dataDir, network: { listen, peers, clusterId, advertiseHttp, ...peerSecurity } });
  const http = await startHttpServer({
    node: id,
    listen: httpListen,
    peerHttp,
    ...(httpTls ? { tls: httpTls } : {}),
    ...(allowedHosts !== undefined ? { allowedHosts: parseList(allowedHosts) } : {}),
    ...(allowedOrigins !== undefined ? { allowedOrigins: parseList(allowedOrigins) } : {}),
    ...(maxConnections ? { maxConnections } : {}),
    ...(maxInFlight ? { maxInFlightRequests: maxInFlight } : {}),
    ...(readyMaxLag ? { readyMaxLag } : {}),
    ...(tokenFile !== undefined ? { tokenFile } : {}),
    ...(clientCertRoles ? { clientCertRoles } : {}),
    ...(inv.options['http-open-metrics'] === true ? { openMetrics: true } : {}),
    onWarning: (message) => log('warning', { message }, `warning: ${message}`),
    onInternalError: (err) => log('http-error', { error: String(err) }, `http: internal error: ${String(err)}`),
  });
  log('up', { listen, http: http.address(), dataDir }, `up: peers on ${listen}, http on ${http.address()}, data in ${dataDir}`);

  if (inv.options.bootstrap === true) await bootstrap(id, allPeers, peerHttp, log);
  const waiting = reportWhileUnconfigured(id, log);
  const alarms = reportAlarms(id, log);

  let stopping = false;
  const shutdown = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    clearInterval(waiting);
    clearInterval(alarms);
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
  return EXIT.ok;
}

type Log = (event: string, fields: Record<string, unknown>, text: string) => void;

/** Form the cluster of `allPeers` on a blank node (§4.1's first configuration), and say which. */
async function bootstrap(id: string, allPeers: Record<string, string>, peerHttp: Record<string, string>, log: Log): Promise<void> {
  const s = await status(id);
  if (s.peers.length > 0 || s.lastIndex > 0) {
    log('bootstrap-skipped', { peers: s.peers }, `--bootstrap: this node already has a configuration (${s.peers.join(', ') || 'in its log'}); nothing to do`);
    return;
  }
  const ids = Object.keys(allPeers);
  // The configuration carries every member's addresses (and HTTP address where known).
  const addresses = Object.fromEntries(ids.map((p) => [p, { peer: allPeers[p]!, ...(peerHttp[p] ? { http: peerHttp[p] } : {}) }]));
  await setConfig(id, ids, { addresses });
  const members = ids.map((p) => `${p} at ${allPeers[p]}`).join(', ');
  log('bootstrap', { peers: allPeers }, `bootstrapped a cluster of ${ids.length}: ${members}`);
}

/**
 * Every few seconds while this node has no configuration, say so and what to do: otherwise a
 * cluster that was never bootstrapped looks the same as one that is merely slow.
 */
function reportWhileUnconfigured(id: string, log: Log): NodeJS.Timeout {
  const timer = setInterval(() => {
    status(id).then(
      (s) => {
        if (s.config !== null) {
          clearInterval(timer);
          return;
        }
        const message =
          s.waiting ??
          'no cluster configuration yet: waiting to be added by a running cluster\'s leader; to form a new cluster, start one node (once) with --bootstrap and the full --peers list';
        log('waiting', { config: null, message }, message);
      },
      () => undefined,
    );
  }, WAITING_LOG_MS);
  timer.unref();
  return timer;
}

/**
 * Say when this node raises or clears an alarm (a full disk: `alarm: disk full at DIR: N bytes
 * free; new writes are refused`, then `alarm cleared`), checking its status every second.
 */
function reportAlarms(id: string, log: Log): NodeJS.Timeout {
  let current: string | null = null;
  const timer = setInterval(() => {
    status(id).then(
      (s) => {
        const message = s.alarm?.message ?? null;
        if (message === current) return;
        if (message !== null) log('alarm', { kind: s.alarm!.kind, message }, `alarm: ${message}; new writes are refused until space returns`);
        else log('alarm-cleared', { kind: 'nospace' }, 'alarm cleared: writes are durable again');
        current = message;
      },
      () => undefined,
    );
  }, ALARM_POLL_MS);
  timer.unref();
  return timer;
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

function peerTls(inv: Invocation): TcpTlsOptions | undefined {
  const [ca, cert, key] = ['tls-ca', 'tls-cert', 'tls-key'].map((n) => stringOption(inv, n));
  if ([ca, cert, key].some((f) => f !== undefined) && [ca, cert, key].some((f) => f === undefined)) {
    throw new UsageError('--tls-ca, --tls-cert and --tls-key go together');
  }
  const names = stringOption(inv, 'tls-peer-names');
  const peerNames = names !== undefined ? parseNames(names) : undefined;
  if (peerNames && ca === undefined) throw new UsageError('--tls-peer-names needs --tls-ca, --tls-cert and --tls-key');
  return ca !== undefined ? { ca, cert: cert!, key: key!, ...(peerNames ? { peerNames } : {}) } : undefined;
}

/** `n1=a.example.org,n1=spiffe://x/n1,n2=b` → { n1: ['a.example.org', 'spiffe://x/n1'], n2: ['b'] }. */
function parseNames(value: string): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const item of value.split(',').filter((s) => s !== '')) {
    const eq = item.indexOf('=');
    if (eq <= 0 || eq === item.length - 1) throw new UsageError(`--tls-peer-names: expected ID=NAME, got '${item}'`);
    (out[item.slice(0, eq)] ??= []).push(item.slice(eq + 1));
  }
  return out;
}

/** HTTPS for clients; with a CA, clients must present a certificate it signed. */
function clientTls(inv: Invocation): { cert: string; key: string; ca?: string; requestCert?: boolean } | undefined {
  const cert = stringOption(inv, 'http-tls-cert');
  const key = stringOption(inv, 'http-tls-key');
  const ca = stringOption(inv, 'http-tls-ca');
  if ((cert === undefined) !== (key === undefined) || (ca !== undefined && cert === undefined)) {
    throw new UsageError('--http-tls-cert and --http-tls-key go together (and --http-tls-ca needs them)');
  }
  return cert !== undefined ? { cert, key: key!, ...(ca !== undefined ? { ca, requestCert: true } : {}) } : undefined;
}

function httpUrls(peers: Record<string, string>, tls: boolean): Record<string, string> {
  return Object.fromEntries(Object.entries(peers).map(([p, a]) => [p, a.includes('://') ? a : `${tls ? 'https' : 'http'}://${a}`]));
}
