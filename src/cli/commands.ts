/**
 * Every `actor-raft` command, one entry each: its words, arguments, options and what it runs.
 * A new command (or a new flag of one) is an entry here; parsing, `-h` and the usage follow.
 */
import fs from 'node:fs/promises';
import { BackupFileError, decodeBackup, restoreBackup, RestoreError, type BackupHeader } from '../backup.js';
import { EXIT, parsePeerMap, stringOption, UsageError, type CommandSpec, type Invocation, type OptionSpec } from './args.js';
import { CLIENT_OPTIONS, ClusterError, clientFrom, expectOk, OUTPUT_FORMATS, send, type Answer, type Client, type OutputFormat } from './client.js';
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
    name: 'status',
    summary: 'Print the status of the first endpoint that answers (role, term, leader, indexes, peers).',
    args: [],
    options: CLIENT_OPTIONS,
    run: client(statusCommand),
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
