/**
 * Every `actor-raft` command, one entry each: its words, arguments, options and what it runs.
 * A new command (or a new flag of one) is an entry here; parsing, `-h` and the usage follow.
 */
import { EXIT, UsageError, type CommandSpec, type Invocation, type OptionSpec } from './args.js';
import { CLIENT_OPTIONS, ClusterError, clientFrom, expectOk, send, type Answer, type Client } from './client.js';
import { cell, print } from './output.js';

/** `actor-raft node`'s options (read in node.ts). */
export const NODE_OPTIONS: OptionSpec[] = [
  { name: 'id', type: 'string', value: 'ID', help: 'this peer\'s id', required: true },
  { name: 'listen', type: 'string', value: 'HOST:PORT', help: 'address for the other peers (TCP)', required: true },
  { name: 'peers', type: 'string', value: 'ID=HOST:PORT,...', help: 'peers\' TCP addresses (commas, no spaces): with --bootstrap every member, this one included; otherwise first contacts (a blank node waiting to be added needs none)' },
  { name: 'data', type: 'string', value: 'DIR', help: 'data directory (one owner at a time)', required: true },
  { name: 'http', type: 'string', value: 'HOST:PORT', help: 'address for clients (HTTP)', required: true },
  { name: 'http-peers', type: 'string', value: 'ID=HOST:PORT,...', help: 'the peers\' HTTP addresses, for redirects to the leader' },
  { name: 'cluster-id', type: 'string', value: 'ID', help: 'nodes of different cluster ids refuse each other (default actor-raft)' },
  { name: 'bootstrap', type: 'boolean', help: 'form the cluster of --peers (once, on one node; a no-op with a configuration)' },
  { name: 'log', type: 'string', value: 'FORMAT', help: 'text (default) or json, one object per line' },
  { name: 'tls-ca', type: 'string', value: 'FILE', help: 'mutual TLS between peers: the cluster CA (PEM)' },
  { name: 'tls-cert', type: 'string', value: 'FILE', help: 'mutual TLS between peers: this node\'s certificate' },
  { name: 'tls-key', type: 'string', value: 'FILE', help: 'mutual TLS between peers: this node\'s key' },
  { name: 'tls-peer-names', type: 'string', value: 'ID=NAME,...', help: 'with TLS: the certificate names that stand for each peer (default: its id in the SAN or CN)' },
  { name: 'cluster-secret-file', type: 'string', value: 'FILE', help: 'peers prove who they are by HMAC over fresh nonces with this secret (16+ bytes, not world-readable)' },
  { name: 'insecure-peers', type: 'boolean', help: 'allow a non-loopback --listen with neither TLS nor a cluster secret (warns)' },
  { name: 'http-tls-cert', type: 'string', value: 'FILE', help: 'HTTPS for clients: the server certificate' },
  { name: 'http-tls-key', type: 'string', value: 'FILE', help: 'HTTPS for clients: the server key' },
  { name: 'http-tls-ca', type: 'string', value: 'FILE', help: 'HTTPS for clients: require client certificates signed by this CA' },
  { name: 'http-allowed-hosts', type: 'string', value: 'NAME[:PORT],...', help: 'more names clients may use in the Host header' },
  { name: 'http-allowed-origins', type: 'string', value: 'URL,...', help: 'origins whose web pages may call the HTTP interface (CORS)' },
  { name: 'http-max-connections', type: 'string', value: 'N', help: 'most client connections open at once (default 1024)' },
  { name: 'http-max-inflight', type: 'string', value: 'N', help: 'most requests answered at once (default 256)' },
  { name: 'ready-max-lag', type: 'string', value: 'N', help: 'GET /ready fails while more than N committed entries are not applied yet (default 1000)' },
  { name: 'token-file', type: 'string', value: 'FILE', help: 'client roles: the file of hashed tokens (lines "ROLE NAME sha256:HEX"; see token create); SIGHUP reads it again' },
  { name: 'http-cert-roles', type: 'string', value: 'NAME=ROLE,...', help: 'client roles by client certificate CN or SAN (needs --http-tls-ca); ROLE is read, write or admin' },
  { name: 'http-open-metrics', type: 'boolean', help: 'with client roles: leave GET /metrics, /health and /ready open' },
];

const JSON_VALUES: OptionSpec = { name: 'json', type: 'boolean', help: 'the values are JSON (a number stays a number, an object an object)' };

export const COMMANDS: CommandSpec[] = [
  {
    name: 'node',
    summary: 'Run one networked peer: TCP to the other peers, HTTP for clients, until SIGINT/SIGTERM.',
    args: [],
    options: NODE_OPTIONS,
    details: [
      'Bootstrap once, on one node, with the full --peers list; the others start without',
      '--bootstrap and are brought in by the leader. A node without a configuration says so',
      'in its log every few seconds.',
    ],
    // Loaded only here: the client commands need none of the actors, workers and LMDB.
    run: async (inv) => (await import('./node.js')).runNode(inv),
  },
  {
    name: 'get',
    summary: 'Print the value of KEY (a linearizable read). A missing key exits 1.',
    args: [{ name: 'KEY' }],
    options: CLIENT_OPTIONS,
    run: client(getCommand),
  },
  {
    name: 'put',
    summary: 'Store VALUE under KEY; VALUE "-" reads it from standard input (its bytes as they are).',
    args: [{ name: 'KEY' }, { name: 'VALUE' }],
    options: [...CLIENT_OPTIONS, JSON_VALUES],
    details: ['Text is stored as a string; with --json, the parsed JSON value; bytes from stdin that are not UTF-8 as bytes.'],
    run: client(putCommand),
  },
  {
    name: 'del',
    summary: 'Delete KEY. A missing key exits 1.',
    args: [{ name: 'KEY' }],
    options: CLIENT_OPTIONS,
    run: client(delCommand),
  },
  {
    name: 'cas',
    summary: 'Set KEY to NEW if its value is EXPECTED; prints true or false (both exit 0).',
    args: [{ name: 'KEY' }, { name: 'EXPECTED' }, { name: 'NEW' }],
    options: [...CLIENT_OPTIONS, JSON_VALUES],
    details: [
      'EXPECTED and NEW are strings; with --json, JSON values (EXPECTED null: the key is missing).',
      'Values starting with "-" go after "--": actor-raft cas k -- -1 -2',
    ],
    run: client(casCommand),
  },
  {
    name: 'token create',
    summary: 'Make a client token: prints the token (give it to the client) and the line that admits it (add it to the node\'s --token-file).',
    args: [],
    options: [
      { name: 'role', type: 'string', value: 'ROLE', help: 'read (GET routes), write (+ kv writes) or admin (+ /admin/)', required: true },
      { name: 'name', type: 'string', value: 'NAME', help: 'a name for the token (shown in refusals and logs, never the token)', required: true },
    ],
    run: async (inv) => {
      const { createToken, isRole } = await import('../http/auth.js');
      const role = inv.options.role as string;
      if (!isRole(role)) throw new UsageError('--role is read, write or admin');
      let made: { token: string; line: string };
      try {
        made = createToken(role, inv.options.name as string);
      } catch (err) {
        throw new UsageError((err as Error).message);
      }
      // stdout: the token, then its line (for scripts); stderr: what each is.
      console.error('the token (shown only now: give it to the client, e.g. in a file for --token-file):');
      console.log(made.token);
      console.error("the line that admits it (add it to the node's --token-file):");
      console.log(made.line);
      return EXIT.ok;
    },
  },
  {
    name: 'status',
    summary: 'Print the status of the first endpoint that answers (role, term, leader, indexes, peers).',
    args: [],
    options: CLIENT_OPTIONS,
    run: client(statusCommand),
  },
];

/** A client command: its options read, its result printed in the format asked for. */
function client(command: (c: Client, inv: Invocation) => Promise<number>): (inv: Invocation) => Promise<number> {
  return (inv) => command(clientFrom(inv), inv);
}

function kvPath(key: string): string {
  if (key === '') throw new UsageError('KEY is empty');
  return `/kv/${encodeURIComponent(key)}`;
}

function notFound(a: Answer, key: string): never {
  if (a.status === 404) throw new ClusterError(`key not found: ${key}`, EXIT.refused);
  expectOk(a);
  throw new ClusterError(`unexpected answer ${a.status}`, EXIT.refused);
}

async function getCommand(c: Client, inv: Invocation): Promise<number> {
  const key = inv.args.KEY!;
  const a = await send(c, 'GET', kvPath(key));
  if (a.status !== 200) notFound(a, key);
  const type = String(a.headers['x-raft-value-type'] ?? 'string');
  const value: unknown = type === 'json' ? JSON.parse(a.body.toString('utf8')) : type === 'bytes' ? a.body : a.body.toString('utf8');
  const shown = Buffer.isBuffer(value) ? value.toString('base64') : value;
  print(c.output, {
    json: { key, type, value: shown },
    plain: Buffer.isBuffer(value) ? value : cell(value),
    table: { head: ['KEY', 'TYPE', 'VALUE'], rows: [[key, type, cell(shown)]] },
  });
  return EXIT.ok;
}

async function putCommand(c: Client, inv: Invocation): Promise<number> {
  const key = inv.args.KEY!;
  const raw = inv.args.VALUE === '-' ? await readStdin() : Buffer.from(inv.args.VALUE!, 'utf8');
  let type = isUtf8(raw) ? 'text/plain; charset=utf-8' : 'application/octet-stream';
  if (inv.options.json === true) {
    if (parseJsonArg(raw.toString('utf8'), 'VALUE') === null) throw new UsageError('null cannot be stored (it reads back as missing); use del');
    type = 'application/json';
  }
  expectOk(await send(c, 'PUT', kvPath(key), { bytes: raw, type }));
  print(c.output, { json: { key, stored: true }, plain: null, table: { head: ['KEY', 'RESULT'], rows: [[key, 'stored']] } });
  return EXIT.ok;
}

async function delCommand(c: Client, inv: Invocation): Promise<number> {
  const key = inv.args.KEY!;
  const a = await send(c, 'DELETE', kvPath(key));
  if (a.status !== 200) notFound(a, key);
  print(c.output, { json: { key, deleted: true }, plain: null, table: { head: ['KEY', 'RESULT'], rows: [[key, 'deleted']] } });
  return EXIT.ok;
}

async function casCommand(c: Client, inv: Invocation): Promise<number> {
  const key = inv.args.KEY!;
  const asJson = inv.options.json === true;
  const expected = asJson ? parseJsonArg(inv.args.EXPECTED!, 'EXPECTED') : inv.args.EXPECTED!;
  const value = asJson ? parseJsonArg(inv.args.NEW!, 'NEW') : inv.args.NEW!;
  if (value === null) throw new UsageError('NEW cannot be null (it reads back as missing); use del');
  const body = Buffer.from(JSON.stringify({ expected, value }), 'utf8');
  const a = expectOk(await send(c, 'POST', `${kvPath(key)}/cas`, { bytes: body, type: 'application/json' }));
  const swapped = (JSON.parse(a.body.toString('utf8')) as { swapped: boolean }).swapped === true;
  print(c.output, { json: { key, swapped }, plain: String(swapped), table: { head: ['KEY', 'SWAPPED'], rows: [[key, String(swapped)]] } });
  return EXIT.ok;
}

async function statusCommand(c: Client): Promise<number> {
  const a = expectOk(await send(c, 'GET', '/status'));
  const s = JSON.parse(a.body.toString('utf8')) as Record<string, unknown>;
  print(c.output, {
    json: s,
    plain: Object.entries(s).map(([k, v]) => `${k} ${cell(v)}`).join('\n'),
    table: {
      head: ['ID', 'ROLE', 'TERM', 'LEADER', 'COMMIT', 'APPLIED', 'LAST', 'PEERS'],
      rows: [[s.id, s.role, s.term, s.leader ?? '-', s.commitIndex, s.lastApplied, s.lastIndex, (s.peers as string[] | undefined)?.join(',') ?? '']].map((r) => r.map(cell)),
    },
  });
  return EXIT.ok;
}

function parseJsonArg(text: string, name: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw new UsageError(`--json: ${name} is not JSON: ${text.length > 40 ? `${text.slice(0, 40)}...` : text}`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

function isUtf8(bytes: Buffer): boolean {
  try {
    utf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}
