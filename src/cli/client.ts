/**
 * The client side of the CLI: which endpoints, which credentials, and one request sent to the
 * cluster over `node:http` / `node:https` (an https Agent carries the CA and the client
 * certificate, which `fetch` cannot without undici). Endpoints are tried in order; a follower's
 * 307 is followed to the leader.
 */
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { EXIT, stringOption, UsageError, type Invocation, type OptionSpec } from './args.js';

export const DEFAULT_ENDPOINT = 'http://127.0.0.1:8001';
export const ENDPOINTS_ENV = 'ACTOR_RAFT_ENDPOINTS';
export const TOKEN_ENV = 'ACTOR_RAFT_TOKEN';
const DEFAULT_TIMEOUT_S = 15;
const MAX_REDIRECTS = 5;
export const OUTPUT_FORMATS = ['plain', 'json', 'table'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** The options every client command takes. */
export const CLIENT_OPTIONS: OptionSpec[] = [
  { name: 'endpoints', type: 'string', value: 'URL,...', help: `HTTP(S) addresses of nodes, tried in order (default: $${ENDPOINTS_ENV}, else ${DEFAULT_ENDPOINT})` },
  { name: 'output', short: 'o', type: 'string', value: 'FORMAT', help: 'plain (default), json or table' },
  { name: 'token-file', type: 'string', value: 'FILE', help: `send the bearer token in FILE (default: $${TOKEN_ENV})` },
  { name: 'cacert', type: 'string', value: 'FILE', help: 'CA certificate (PEM) to check the HTTPS server against' },
  { name: 'cert', type: 'string', value: 'FILE', help: 'client certificate (PEM), for a server that requires one' },
  { name: 'key', type: 'string', value: 'FILE', help: 'the client certificate\'s private key (PEM)' },
  { name: 'timeout', type: 'string', value: 'SECONDS', help: `give up on a request after this long (default ${DEFAULT_TIMEOUT_S})` },
];

/** The cluster said no (exit 1), or could not be reached / had no leader / timed out (exit 3). */
export class ClusterError extends Error {
  readonly exit: number;
  constructor(message: string, exit: number) {
    super(message);
    this.exit = exit;
  }
}

export interface Client {
  endpoints: string[];
  output: OutputFormat;
  token: string | undefined;
  timeoutMs: number;
  tls: https.AgentOptions | undefined;
}

export interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A client from a command's options and the environment. */
export function clientFrom(inv: Invocation, env: NodeJS.ProcessEnv = process.env): Client {
  const output = stringOption(inv, 'output') ?? 'plain';
  if (!(OUTPUT_FORMATS as readonly string[]).includes(output)) throw new UsageError(`--output is one of ${OUTPUT_FORMATS.join(', ')}; got '${output}'`);
  const tls = tlsOptions(inv);
  const list = stringOption(inv, 'endpoints') ?? (env[ENDPOINTS_ENV] || DEFAULT_ENDPOINT);
  const endpoints = list.split(',').map((e) => e.trim()).filter((e) => e !== '').map((e) => endpointUrl(e, tls !== undefined));
  if (endpoints.length === 0) throw new UsageError('--endpoints is empty');
  const timeout = stringOption(inv, 'timeout');
  const seconds = timeout === undefined ? DEFAULT_TIMEOUT_S : Number(timeout);
  if (!(seconds > 0) || !Number.isFinite(seconds)) throw new UsageError(`--timeout must be a positive number of seconds, got '${timeout}'`);
  return { endpoints, output: output as OutputFormat, token: token(inv, env), timeoutMs: seconds * 1000, tls };
}

/** `host:port` → a URL (https when TLS flags were given); a URL stays as it is. */
function endpointUrl(endpoint: string, tls: boolean): string {
  const url = endpoint.includes('://') ? endpoint : `${tls ? 'https' : 'http'}://${endpoint}`;
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new UsageError(`--endpoints: '${endpoint}' is not a URL or HOST:PORT`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new UsageError(`--endpoints: '${endpoint}' is not http or https`);
  return parsed.origin;
}

function token(inv: Invocation, env: NodeJS.ProcessEnv): string | undefined {
  const file = stringOption(inv, 'token-file');
  const value = file === undefined ? env[TOKEN_ENV] : readOptionFile(file, 'token-file').toString('utf8');
  const t = value?.trim();
  if (file !== undefined && !t) throw new UsageError(`--token-file ${file} is empty`);
  if (t && /[\r\n]/.test(t)) throw new UsageError('the token must be one line');
  return t || undefined;
}

function tlsOptions(inv: Invocation): https.AgentOptions | undefined {
  const [ca, cert, key] = (['cacert', 'cert', 'key'] as const).map((n) => stringOption(inv, n));
  if ((cert === undefined) !== (key === undefined)) throw new UsageError('--cert and --key go together');
  if (ca === undefined && cert === undefined) return undefined;
  return {
    ...(ca !== undefined ? { ca: readOptionFile(ca, 'cacert') } : {}),
    ...(cert !== undefined ? { cert: readOptionFile(cert, 'cert'), key: readOptionFile(key!, 'key') } : {}),
  };
}

function readOptionFile(file: string, option: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new UsageError(`--${option}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

/**
 * Send `method path` to the first endpoint that answers with something other than 503 (no
 * leader there, or overloaded: another endpoint may do better), following redirects to the
 * leader. A request that may have reached a node is not sent again elsewhere unless it reads.
 */
export async function send(c: Client, method: string, path: string, body?: { bytes: Buffer; type: string }): Promise<Answer> {
  const failures: string[] = [];
  let noLeader = false;
  for (const base of c.endpoints) {
    let url = new URL(path, base);
    for (let hop = 0; ; hop++) {
      let answer: Answer;
      try {
        answer = await requestOnce(c, method, url, body);
      } catch (err) {
        const e = err as RequestFailure;
        if (e.reachedServer && method !== 'GET') {
          throw new ClusterError(`${url.origin}: ${e.message} (the outcome is unknown: the write may still be applied)`, EXIT.unavailable);
        }
        failures.push(`${url.origin}: ${e.message}`);
        break;
      }
      const location = answer.headers.location;
      if (answer.status >= 300 && answer.status < 400 && location !== undefined) {
        if (hop === MAX_REDIRECTS) throw new ClusterError(`too many redirects (last to ${location})`, EXIT.unavailable);
        url = new URL(location, url);
        continue;
      }
      if (answer.status === 503 && method !== 'GET' && outcomeOf(answer) === 'unknown') {
        // Leadership lost (or an actor restarted) under this write: sending it again elsewhere
        // could apply it twice.
        throw new ClusterError(`${url.origin}: ${errorText(answer)} (the outcome is unknown: the write may still be applied)`, EXIT.unavailable);
      }
      if (answer.status === 503) {
        noLeader = true;
        failures.push(`${url.origin}: ${errorText(answer)}`);
        break;
      }
      // A 504 whose outcome is known to be "nothing changed" (a new member that did not catch
      // up) is the cluster saying no: the caller reads it.
      if (answer.status === 504 && outcomeOf(answer) !== 'unchanged') {
        throw new ClusterError(`${url.origin}: ${errorText(answer)}`, EXIT.unavailable);
      }
      return answer;
    }
  }
  const what = noLeader ? 'no endpoint could serve the request' : 'no endpoint answered';
  throw new ClusterError(`${what} (${failures.join('; ')})`, EXIT.unavailable);
}

interface RequestFailure extends Error {
  /** The connection was made, so the request may have been received. */
  reachedServer: boolean;
}

function requestOnce(c: Client, method: string, url: URL, body: { bytes: Buffer; type: string } | undefined): Promise<Answer> {
  const secure = url.protocol === 'https:';
  const headers: http.OutgoingHttpHeaders = { accept: '*/*' };
  if (c.token !== undefined) headers.authorization = `Bearer ${c.token}`;
  if (body !== undefined) {
    headers['content-type'] = body.type;
    headers['content-length'] = body.bytes.length;
  }
  return new Promise((resolve, reject) => {
    let connected = false;
    const fail = (err: Error) => reject(Object.assign(err, { reachedServer: connected }));
    const options: https.RequestOptions = { method, headers, agent: false, ...(secure ? (c.tls ?? {}) : {}) };
    const req = (secure ? https : http).request(url, options, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) });
      });
      res.on('error', fail);
    });
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${c.timeoutMs / 1000} s`)), c.timeoutMs);
    req.on('socket', (socket) => socket.once(secure ? 'secureConnect' : 'connect', () => (connected = true)));
    req.on('error', (err) => {
      clearTimeout(timer);
      fail(err);
    });
    req.end(body?.bytes);
  });
}

/** The `outcome` of an error answer (`unknown`: the write may still be applied; `unchanged`: it was not). */
function outcomeOf(a: Answer): string | undefined {
  try {
    const outcome = (JSON.parse(a.body.toString('utf8')) as { outcome?: unknown }).outcome;
    return typeof outcome === 'string' ? outcome : undefined;
  } catch {
    return undefined;
  }
}

/** The message of an error answer (`{"error": ..., "code": ...}`), or its text. */
export function errorText(a: Answer): string {
  const text = a.body.toString('utf8');
  try {
    const e = JSON.parse(text) as { error?: unknown; code?: unknown };
    if (typeof e.error === 'string') return `${a.status} ${typeof e.code === 'string' ? `${e.code} ` : ''}${e.error}`;
  } catch {
    // not JSON: the text itself
  }
  return `${a.status} ${text.trim() || (http.STATUS_CODES[a.status] ?? '')}`.trim();
}

/** A 2xx answer as it is; anything else the cluster said no to, as exit 1. */
export function expectOk(a: Answer): Answer {
  if (a.status >= 200 && a.status < 300) return a;
  throw new ClusterError(errorText(a), EXIT.refused);
}
