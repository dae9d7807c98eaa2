/**
 * Backups: a node's snapshot (§7) as a file an operator keeps (`actor-raft snapshot save`),
 * and a data directory seeded from such a file for a member of a new cluster
 * (`actor-raft snapshot restore`), in the manner of etcd's `snapshot save` / `restore`.
 *
 * ## The file (format 1)
 *
 * | bytes           | what                                                                  |
 * |-----------------|-----------------------------------------------------------------------|
 * | 7               | the magic `ARSNAP1` (ASCII)                                           |
 * | 1               | the format version, 1                                                 |
 * | 4               | the header's length H, unsigned big-endian                            |
 * | H               | the header, JSON (UTF-8): `BackupHeader`                              |
 * | header.size     | the snapshot's bytes (the replicated state machine's, sessions included) |
 * | 32              | SHA-256 of every byte before it                                       |
 *
 * The header is JSON so that `head -c` shows an operator what a file holds. A file whose
 * length, magic, version, header or checksum is wrong is refused whole (`BackupFileError`):
 * a truncated download or a flipped bit never seeds a cluster.
 *
 * ## Restoring: the new cluster's first configuration
 *
 * Every member of the new cluster is restored from the same file with the same `peers`, so
 * every one starts with the same durable state: the snapshot at the file's index and term,
 * its configuration replaced by `peers` (a stable configuration: no joint half, §4.3), no
 * entry after it, and the hard state at the snapshot's term with no vote. Then:
 *
 * - the index and term are the file's, not new ones: the state machine's bytes are the state
 *   after exactly that index (the applied digest and the session table, thesis §6.3, are
 *   counted in log positions and log time), and a log that ends at (index, term) with the
 *   same configuration on every member is a log on which they all agree (§5.3 Log Matching);
 * - no member has a log longer than another's, so any of them may win the first election,
 *   which is at a term above the file's (§5.2), and every later entry follows the snapshot;
 * - the members start without `--bootstrap`: they are configured already (from the
 *   snapshot's meta), and bootstrapping one would be refused by the others' logs anyway.
 *
 * The old cluster's members must not be pointed at the new one (give it another
 * `--cluster-id`): they could hold entries at the same index and term that the new cluster
 * never had.
 */
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import type { AddressBook, Snapshot, SnapshotMeta } from './messages.js';

export const BACKUP_MAGIC = 'ARSNAP1';
export const BACKUP_FORMAT_VERSION = 1;
const PREFIX_BYTES = BACKUP_MAGIC.length + 1 + 4;
const CHECKSUM_BYTES = 32;
/** A header is a few hundred bytes per member; more than this is not a header of ours. */
const MAX_HEADER_BYTES = 16 * 1024 * 1024;

/** What a backup file says about the snapshot it holds. */
export interface BackupHeader {
  /** The node the snapshot was taken on. */
  node: string;
  /** When, ISO 8601. */
  created: string;
  /** The last log index the snapshot covers, and that entry's term. */
  index: number;
  term: number;
  /** The configuration at `index`: its voters, the old half of a joint one, the addresses. */
  peers: string[];
  old: string[] | null;
  addresses: AddressBook;
  /** The applied digest at `index` (equal on peers that applied the same log). */
  digest: number;
  /** Bytes of snapshot data that follow the header. */
  size: number;
}

/** A backup file that cannot be used: truncated, corrupt, or not a backup at all. */
export class BackupFileError extends Error {
  override name = 'BackupFileError';
}

/** A data directory a backup cannot be restored into, or peers it cannot be restored with. */
export class RestoreError extends Error {
  override name = 'RestoreError';
}

/** The backup file of `snapshot`, taken on `node` at `created`. */
export function encodeBackup(snapshot: Snapshot, node: string, created = new Date()): Buffer {
  const m = snapshot.meta;
  const header: BackupHeader = {
    node,
    created: created.toISOString(),
    index: m.index,
    term: m.term,
    peers: [...m.peers],
    old: m.old === null ? null : [...m.old],
    addresses: m.addresses ?? {},
    digest: m.digest,
    size: m.size,
  };
  const headerBytes = Buffer.from(JSON.stringify(header), 'utf8');
  const prefix = Buffer.alloc(PREFIX_BYTES);
  prefix.write(BACKUP_MAGIC, 0, 'ascii');
  prefix.writeUInt8(BACKUP_FORMAT_VERSION, BACKUP_MAGIC.length);
  prefix.writeUInt32BE(headerBytes.length, BACKUP_MAGIC.length + 1);
  const data = Buffer.from(snapshot.data.buffer, snapshot.data.byteOffset, snapshot.data.byteLength);
  const checksum = createHash('sha256').update(prefix).update(headerBytes).update(data).digest();
  return Buffer.concat([prefix, headerBytes, data, checksum]);
}

/** The header and snapshot of a backup file, checked whole; throws BackupFileError. */
export function decodeBackup(file: Uint8Array): { header: BackupHeader; snapshot: Snapshot } {
  const bytes = Buffer.from(file.buffer, file.byteOffset, file.byteLength);
  if (bytes.length < PREFIX_BYTES || bytes.subarray(0, BACKUP_MAGIC.length).toString('latin1') !== BACKUP_MAGIC) {
    throw new BackupFileError(`not an actor-raft backup (it does not start with ${BACKUP_MAGIC})`);
  }
  const version = bytes.readUInt8(BACKUP_MAGIC.length);
  if (version !== BACKUP_FORMAT_VERSION) throw new BackupFileError(`backup format ${version} is not known here (this version reads ${BACKUP_FORMAT_VERSION})`);
  const headerLength = bytes.readUInt32BE(BACKUP_MAGIC.length + 1);
  if (headerLength > MAX_HEADER_BYTES) throw new BackupFileError(`the header length ${headerLength} is not plausible: the file is corrupt`);
  const dataStart = PREFIX_BYTES + headerLength;
  if (bytes.length < dataStart + CHECKSUM_BYTES) throw new BackupFileError(`the file is truncated (${bytes.length} bytes, its header alone needs ${dataStart})`);
  // The checksum first: nothing read from a corrupt header is trusted, not even its size.
  const body = bytes.subarray(0, bytes.length - CHECKSUM_BYTES);
  const expected = bytes.subarray(bytes.length - CHECKSUM_BYTES);
  const actual = createHash('sha256').update(body).digest();
  let header: BackupHeader;
  try {
    header = JSON.parse(bytes.subarray(PREFIX_BYTES, dataStart).toString('utf8')) as BackupHeader;
  } catch {
    header = null as unknown as BackupHeader;
  }
  const size = isHeader(header) ? header.size : null;
  if (size !== null && bytes.length < dataStart + size + CHECKSUM_BYTES) {
    throw new BackupFileError(`the file is truncated: ${bytes.length} bytes, where its header announces ${dataStart + size + CHECKSUM_BYTES}`);
  }
  if (!actual.equals(expected)) throw new BackupFileError('the checksum does not match: the file is corrupt or truncated');
  if (size === null) throw new BackupFileError('the header is not a valid backup header');
  if (bytes.length !== dataStart + size + CHECKSUM_BYTES) throw new BackupFileError(`the file is ${bytes.length} bytes, not the ${dataStart + size + CHECKSUM_BYTES} its header announces`);
  const data = new Uint8Array(bytes.subarray(dataStart, dataStart + size)); // a copy of its own
  const meta: SnapshotMeta = { index: header.index, term: header.term, peers: header.peers, old: header.old, digest: header.digest, size, addresses: header.addresses };
  return { header, snapshot: { meta, data } };
}

function isHeader(v: unknown): v is BackupHeader {
  if (typeof v !== 'object' || v === null) return false;
  const h = v as Record<string, unknown>;
  const count = (x: unknown) => Number.isSafeInteger(x) && (x as number) >= 0;
  const ids = (x: unknown) => Array.isArray(x) && x.every((p) => typeof p === 'string');
  return (
    typeof h.node === 'string' &&
    typeof h.created === 'string' &&
    count(h.index) &&
    (h.index as number) > 0 &&
    count(h.term) &&
    ids(h.peers) &&
    (h.old === null || ids(h.old)) &&
    typeof h.addresses === 'object' &&
    h.addresses !== null &&
    Number.isFinite(h.digest) &&
    count(h.size)
  );
}

/** Where a restored member will find the others: peer (TCP) addresses, and HTTP ones where known. */
export interface RestoreTarget {
  dataDir: string;
  /** This member's id; one of `peers`. */
  id: string;
  /** Every member of the new cluster: id → TCP address. */
  peers: Record<string, string>;
  /** Their client HTTP base URLs, where given. */
  http?: Record<string, string>;
}

/**
 * Write a new data directory for member `target.id` of a new cluster from a backup file's
 * bytes (see "Restoring" above): the snapshot with its configuration replaced by the new
 * members, stored through the log store's own snapshot path (a write with `discardLog`, as a
 * follower stores a snapshot it was sent by InstallSnapshot), so the directory is exactly
 * what a node would have had. Refuses a corrupt file (BackupFileError), a data directory that
 * exists and is not empty, and an id that is not among the peers (RestoreError).
 */
export async function restoreBackup(file: Uint8Array, target: RestoreTarget): Promise<BackupHeader> {
  const { header, snapshot } = decodeBackup(file);
  const ids = Object.keys(target.peers);
  if (!ids.includes(target.id)) throw new RestoreError(`--id ${target.id} is not one of the peers (${ids.join(', ')})`);
  const unknownHttp = Object.keys(target.http ?? {}).filter((h) => !ids.includes(h));
  if (unknownHttp.length > 0) throw new RestoreError(`HTTP addresses for ${unknownHttp.join(', ')}, which are not among the peers`);
  await assertEmptyDir(target.dataDir);
  const addresses: AddressBook = Object.fromEntries(
    ids.map((p) => [p, { peer: target.peers[p]!, ...(target.http?.[p] === undefined ? {} : { http: target.http[p] }) }]),
  );
  const meta: SnapshotMeta = { ...snapshot.meta, peers: ids, old: null, addresses };
  // Loaded here only: saving and checking a file need no LMDB.
  const [{ LmdbLogStore }, { lockDataDir }] = await Promise.all([import('./log/lmdb-store.js'), import('./log/dir-lock.js')]);
  const existed = await fs.stat(target.dataDir).then(() => true, () => false);
  await fs.mkdir(target.dataDir, { recursive: true });
  try {
    const lock = lockDataDir(target.dataDir, target.id);
    try {
      const store = await LmdbLogStore.open(target.dataDir);
      try {
        await store.write({ snapshot: { meta, data: snapshot.data, discardLog: true }, term: meta.term, votedFor: null, truncateFrom: 0, entries: [] });
      } finally {
        await store.close();
      }
    } finally {
      lock.release();
    }
  } catch (err) {
    // Leave the directory as it was (absent or empty), never half restored.
    if (existed) for (const name of await fs.readdir(target.dataDir)) await fs.rm(path.join(target.dataDir, name), { recursive: true, force: true });
    else await fs.rm(target.dataDir, { recursive: true, force: true });
    throw err;
  }
  return { ...header, peers: ids, old: null, addresses };
}

async function assertEmptyDir(dir: string): Promise<void> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return;
    throw new RestoreError(`cannot use ${dir} as a data directory: ${code ?? String(err)}`);
  }
  if (names.length > 0) throw new RestoreError(`the data directory ${dir} is not empty (restore only into a new or empty directory)`);
}
