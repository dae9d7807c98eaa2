/**
 * Every `actor-raft` command, one entry each: its words, arguments, options and what it runs.
 * A new command (or a new flag of one) is an entry here; parsing, `-h` and the usage follow.
 */
import fs from 'node:fs/promises';
import { BackupFileError, decodeBackup, restoreBackup, RestoreError, type BackupHeader } from '../backup.js';
import { isPeerId } from '../validate.js';
import { EXIT, hostPort, parsePeerMap, stringOption, UsageError, type CommandSpec, type Invocation, type OptionSpec } from './args.js';
import {
  CLIENT_OPTIONS,
  ClusterError,
  clientFrom,
  errorText,
  expectOk,
  OUTPUT_FORMATS,
  send,
  type Answer,
  type Client,
  type OutputFormat,
} from './client.js';
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

/** A membership change waits for the cluster (up to 60 s there): the client waits longer by default. */
const ADMIN_TIMEOUT_S = 75;
const ADMIN_OPTIONS: OptionSpec[] = CLIENT_OPTIONS.map((o) =>
  o.name === 'timeout' ? { ...o, help: `give up after this long (default ${ADMIN_TIMEOUT_S}; the outcome is then unknown)` } : o,
);
const MEMBER_LIST_OPTIONS: OptionSpec[] = CLIENT_OPTIONS.map((o) => (o.name === 'output' ? { ...o, help: 'table (default), json or plain' } : o));
const LEARNER: OptionSpec = { name: 'learner', type: 'boolean', help: 'not supported yet: a new member is a learner only while it catches up' };

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
  // Membership and leadership of a running cluster (the /admin routes, src/http/admin.ts).
  {
    name: 'member list',
    summary: 'List the members: id, peer address, HTTP address, voter or learner, match index, leader.',
    args: [],
    options: MEMBER_LIST_OPTIONS,
    details: [
      'Asked of the first endpoint that answers, then of the leader it names (match indexes are',
      'the leader\'s knowledge: "-" when no leader could be asked).',
    ],
    run: client(memberListCommand),
  },
  {
    name: 'member add',
    summary: 'Add ID, reached by its peers at PEER_ADDR (HOST:PORT), as a voter once it has caught up.',
    args: [{ name: 'ID' }, { name: 'PEER_ADDR' }],
    options: [...ADMIN_OPTIONS, { name: 'http', type: 'string', value: 'HTTP_ADDR', help: 'its client HTTP address (HOST:PORT or URL), for redirects to it' }, LEARNER],
    details: [
      'Start the new node first, blank (--id --listen --http --data, no --bootstrap), then add it.',
      'Running it again once done changes nothing; after exit 3 (outcome unknown) it may be run again.',
    ],
    run: client(memberAddCommand),
  },
  {
    name: 'member remove',
    summary: 'Remove ID from the cluster (the leader too: it steps down and hands over).',
    args: [{ name: 'ID' }],
    options: ADMIN_OPTIONS,
    details: ['Removing a node that is not a member changes nothing; after exit 3 it may be run again.'],
    run: client(memberRemoveCommand),
  },
  {
    name: 'leader transfer',
    summary: 'Hand leadership to voter ID (default: the most up-to-date voter); prints the new leader.',
    args: [{ name: 'ID', optional: true }],
    options: ADMIN_OPTIONS,
    run: client(leaderTransferCommand),
  },
  // --- Backups (src/backup.ts): snapshot save / restore ---------------------------------------
  {
    name: 'snapshot save',
    summary: 'Write a backup of the leader\'s applied state (a snapshot, its metadata, a checksum) to FILE.',
    args: [{ name: 'FILE' }],
    options: [...CLIENT_OPTIONS, { name: 'node-endpoint', type: 'string', value: 'URL', help: 'back up this node\'s own state, whatever its role, instead of the leader\'s' }],
    details: ['The file is checked before it is written (under FILE.tmp, then renamed): a file that is there is whole.'],
    run: client(snapshotSaveCommand),
  },
  {
    name: 'snapshot restore',
    summary: 'Make DIR the data directory of member ID of a new cluster from the backup FILE.',
    args: [{ name: 'FILE' }],
    options: [
      { name: 'data', type: 'string', value: 'DIR', help: 'the new data directory (absent or empty)', required: true },
      { name: 'id', type: 'string', value: 'ID', help: 'this member\'s id (one of --peers)', required: true },
      { name: 'peers', type: 'string', value: 'ID=HOST:PORT,...', help: 'every member of the new cluster, with its TCP address (the same list on every member)', required: true },
      { name: 'http-peers', type: 'string', value: 'ID=URL,...', help: 'their HTTP base URLs (HOST:PORT means http://), for redirects to the leader' },
      { name: 'output', short: 'o', type: 'string', value: 'FORMAT', help: 'plain (default), json or table' },
    ],
    details: [
      'Restore every member of the new cluster from the same FILE with the same --peers, then',
      'start each with `actor-raft node` without --bootstrap. A corrupt or truncated FILE, or a',
      'DIR that is not empty, is refused (exit 1). See docs/operations.md, "Backups".',
    ],
    run: snapshotRestoreCommand,
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

// ---------------------------------------------------------------------------------------------
// Membership and leadership

interface MemberInfo {
  id: string;
  peer: string | null;
  http: string | null;
  role: 'voter' | 'learner';
  matchIndex: number | null;
  leader: boolean;
}

/** `GET /admin/members`'s answer (MembersView, src/api/members.ts). */
interface MembersView {
  node: string;
  leader: string | null;
  term: number;
  joint: boolean;
  members: MemberInfo[];
}

/** The client of a membership command: `--timeout` defaults to ADMIN_TIMEOUT_S. */
function adminClient(c: Client, inv: Invocation): Client {
  return stringOption(inv, 'timeout') === undefined ? { ...c, timeoutMs: ADMIN_TIMEOUT_S * 1000 } : c;
}

function memberId(id: string): string {
  if (!isPeerId(id)) throw new UsageError(`'${id}' is not a member id (letters, digits, '_', '.', '-')`);
  return id;
}

/**
 * An admin answer: 2xx as it is; otherwise the cluster's error as a clear message and the exit
 * code docs/network.md gives it (1 the cluster said no, 2 a request it could not take, 3 the
 * outcome unknown). `what` names the change for the messages.
 */
function adminOk(a: Answer, what: string): Answer {
  if (a.status >= 200 && a.status < 300) return a;
  const code = errorCode(a);
  const said = errorText(a);
  switch (code) {
    case 'CONFIG_IN_PROGRESS':
      throw new ClusterError(`${what}: another membership change is in progress; nothing changed, try again once it is done (${said})`, EXIT.refused);
    case 'CATCH_UP_TIMEOUT':
      throw new ClusterError(`${what}: the new member did not catch up in time (is it running, and reachable by the leader at the address given?); the configuration is unchanged (${said})`, EXIT.refused);
    case 'TRANSFER_FAILED':
      throw new ClusterError(`${what}: ${said}`, EXIT.refused);
    case 'CONFIG_INVALID':
      throw new ClusterError(`${what}: refused: ${said}`, EXIT.refused);
  }
  if (a.status === 504 || a.status === 503) throw new ClusterError(`${what}: ${said}`, EXIT.unavailable);
  // A request the server could not take (bad id or address, unknown route or method): a usage error.
  if (a.status === 400 || a.status === 404 || a.status === 405 || a.status === 415) {
    throw new ClusterError(`${what}: the node refused the request: ${said}`, EXIT.usage);
  }
  throw new ClusterError(`${what}: ${said}`, EXIT.refused);
}

function errorCode(a: Answer): string | undefined {
  try {
    const code = (JSON.parse(a.body.toString('utf8')) as { code?: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  } catch {
    return undefined;
  }
}

function jsonBody(value: unknown): { bytes: Buffer; type: string } {
  return { bytes: Buffer.from(JSON.stringify(value), 'utf8'), type: 'application/json' };
}

function membersOf(a: Answer): MembersView {
  return JSON.parse(a.body.toString('utf8')) as MembersView;
}

/** The members in the format asked for (plain: one line per member, fields separated by spaces, '-' for none). */
function printMembers(c: Client, view: MembersView): void {
  const row = (m: MemberInfo) => [m.id, m.peer ?? '-', m.http ?? '-', m.role, m.matchIndex === null ? '-' : String(m.matchIndex), m.leader ? '*' : ''];
  print(c.output, {
    json: view,
    plain: view.members.map((m) => row(m).slice(0, 5).concat(m.leader ? ['leader'] : []).join(' ')).join('\n'),
    table: { head: ['ID', 'PEER', 'HTTP', 'ROLE', 'MATCH', 'LEADER'], rows: view.members.map(row) },
  });
}

async function memberListCommand(c: Client, inv: Invocation): Promise<number> {
  const client = stringOption(inv, 'output') === undefined ? { ...c, output: 'table' as const } : c;
  let view = membersOf(adminOk(await send(client, 'GET', '/admin/members'), 'member list'));
  // A follower knows no match indexes: ask the leader it names, when it knows where that is.
  const leaderHttp = view.leader !== view.node ? view.members.find((m) => m.id === view.leader)?.http : undefined;
  if (leaderHttp) {
    try {
      const a = await send({ ...client, endpoints: [leaderHttp] }, 'GET', '/admin/members');
      if (a.status === 200) view = membersOf(a);
    } catch {
      // the follower's view stands
    }
  }
  printMembers(client, view);
  return EXIT.ok;
}

async function memberAddCommand(c: Client, inv: Invocation): Promise<number> {
  if (inv.options.learner === true) {
    throw new UsageError('--learner is not supported yet: a new member is a learner only while it catches up, then it votes');
  }
  const id = memberId(inv.args.ID!);
  const peer = hostPort(inv.args.PEER_ADDR!, 'PEER_ADDR');
  const httpAddress = stringOption(inv, 'http');
  if (httpAddress !== undefined) httpUrl(httpAddress);
  const body = jsonBody({ id, peer, ...(httpAddress === undefined ? {} : { http: httpAddress }) });
  const client = adminClient(c, inv);
  const view = membersOf(adminOk(await send(client, 'POST', '/admin/members', body), `member add ${id}`));
  printChange(client, view);
  return EXIT.ok;
}

async function memberRemoveCommand(c: Client, inv: Invocation): Promise<number> {
  const id = memberId(inv.args.ID!);
  const client = adminClient(c, inv);
  const view = membersOf(adminOk(await send(client, 'DELETE', `/admin/members/${encodeURIComponent(id)}`), `member remove ${id}`));
  printChange(client, view);
  return EXIT.ok;
}

/** After a change: nothing in plain (as for put), the members otherwise. */
function printChange(c: Client, view: MembersView): void {
  if (c.output !== 'plain') printMembers(c, view);
}

async function leaderTransferCommand(c: Client, inv: Invocation): Promise<number> {
  const target = inv.args.ID === undefined ? undefined : memberId(inv.args.ID);
  const client = adminClient(c, inv);
  const what = `leader transfer${target === undefined ? '' : ` ${target}`}`;
  const a = adminOk(await send(client, 'POST', '/admin/leader', target === undefined ? undefined : jsonBody({ target })), what);
  const leader = String((JSON.parse(a.body.toString('utf8')) as { leader: unknown }).leader);
  print(client.output, { json: { leader }, plain: leader, table: { head: ['LEADER'], rows: [[leader]] } });
  return EXIT.ok;
}

/** `--http`: `host:port` or an http(s) base URL, or UsageError. */
function httpUrl(value: string): void {
  if (!value.includes('://')) {
    hostPort(value, '--http');
    return;
  }
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`--http: '${value}' is not HOST:PORT or an http(s) URL`);
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.pathname !== '/' || url.search !== '' || url.hash !== '') {
    throw new UsageError(`--http: '${value}' is not HOST:PORT or an http(s)://HOST:PORT URL`);
  }
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

// --- Backups (src/backup.ts): snapshot save / restore ----------------------------------------

async function snapshotSaveCommand(c: Client, inv: Invocation): Promise<number> {
  const file = inv.args.FILE!;
  const node = stringOption(inv, 'node-endpoint');
  const from = node === undefined ? c : clientFrom({ ...inv, options: { ...inv.options, endpoints: node } });
  const a = expectOk(await send(from, 'GET', node === undefined ? '/admin/snapshot' : '/admin/snapshot?local=1'));
  const { header } = backupFile(a.body, 'the node sent a backup that');
  const tmp = `${file}.tmp`;
  try {
    await fs.writeFile(tmp, a.body, { flush: true });
    await fs.rename(tmp, file);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw new ClusterError(`cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, EXIT.refused);
  }
  printBackup(c.output, `saved ${file}`, file, a.body.length, header);
  return EXIT.ok;
}

async function snapshotRestoreCommand(inv: Invocation): Promise<number> {
  const output = stringOption(inv, 'output') ?? 'plain';
  if (!(OUTPUT_FORMATS as readonly string[]).includes(output)) throw new UsageError(`--output is one of ${OUTPUT_FORMATS.join(', ')}; got '${output}'`);
  const file = inv.args.FILE!;
  const peers = parsePeerMap(stringOption(inv, 'peers')!, '--peers');
  const httpFlag = stringOption(inv, 'http-peers');
  // HTTP base URLs, as the configuration holds them (HOST:PORT means http://HOST:PORT).
  const http =
    httpFlag === undefined
      ? undefined
      : Object.fromEntries(Object.entries(parsePeerMap(httpFlag, '--http-peers', true)).map(([p, a]) => [p, a.includes('://') ? a : `http://${a}`]));
  let bytes: Buffer;
  try {
    bytes = await fs.readFile(file);
  } catch (err) {
    throw new ClusterError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, EXIT.refused);
  }
  let header: BackupHeader;
  try {
    header = await restoreBackup(bytes, { dataDir: stringOption(inv, 'data')!, id: stringOption(inv, 'id')!, peers, ...(http ? { http } : {}) });
  } catch (err) {
    if (err instanceof BackupFileError) throw new ClusterError(`${file} refused: ${err.message}`, EXIT.refused);
    if (err instanceof RestoreError) throw new ClusterError(err.message, EXIT.refused);
    throw err;
  }
  printBackup(output as OutputFormat, `restored ${file} into ${stringOption(inv, 'data')!}`, file, bytes.length, header);
  return EXIT.ok;
}

/** The backup in `bytes`, checked whole; a bad one is refused (exit 1). */
function backupFile(bytes: Buffer, what: string): { header: BackupHeader } {
  try {
    return decodeBackup(bytes);
  } catch (err) {
    if (err instanceof BackupFileError) throw new ClusterError(`${what} is refused: ${err.message}`, EXIT.refused);
    throw err;
  }
}

function printBackup(output: OutputFormat, done: string, file: string, bytes: number, h: BackupHeader): void {
  const peers = h.peers.join(',');
  print(output, {
    json: { file, bytes, ...h },
    plain: `${done}: index ${h.index}, term ${h.term}, ${h.size} bytes of state from ${h.node} at ${h.created}, members ${peers}`,
    table: { head: ['FILE', 'INDEX', 'TERM', 'NODE', 'CREATED', 'MEMBERS'], rows: [[file, h.index, h.term, h.node, h.created, peers].map(cell)] },
  });
}
