/**
 * src/codec.ts, the one codec (round trips, owned buffers, wire format of the shared records,
 * decode errors), and src/messages.ts, the shape guards for bytes that arrive from ports.
 */
import { expect } from 'chai';
import { Rng } from '../src/rng.js';
import { MessageChannel } from 'node:worker_threads';
import {
  Codec,
  codec,
  decodeAll,
  decodeCommand,
  decodeEntryBytes,
  DecodeError,
  ENTRY_EXT,
  entryBytes,
  encodeCommand,
  encodeLogCommand,
  postEncoded,
} from '../src/codec.js';
import {
  isClientRequest,
  isEntry,
  isLogCommand,
  isPeerMessage,
  type AnyMessage,
  type AppendEntries,
  type AppendEntriesReply,
  type Bundle,
  type ClientChangeConfig,
  type ClientOps,
  type ClientTransferLeadership,
  type InstallSnapshot,
  type InstallSnapshotReply,
  type PreVote,
  type PreVoteReply,
  type SnapshotMeta,
  type TimeoutNow,
  type ClientReads,
  type ClientResults,
  type CommandEntry,
  type ConfigEntry,
  type Entry,
  type LogFailure,
  type LogReady,
  type NoopEntry,
  type PeerMessage,
  type PersistRequest,
  type Persisted,
  type ReadIndexReply,
  type ReadIndexRequest,
  type ReadRequest,
  type ReadResult,
  type RequestVote,
  type RequestVoteReply,
} from '../src/messages.js';

function mulberry32(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

// ---------------------------------------------------------------------------------------------
// Samples: one of each variant, keys in the declared order (the order the shared records use).

const noop: NoopEntry = { type: 'noop', index: 1, term: 1 };
const command: CommandEntry = { type: 'command', index: 2, term: 1, data: new Uint8Array([0, 1, 127, 128, 255]) };
const emptyCommand: CommandEntry = { type: 'command', index: 3, term: 2, data: new Uint8Array(0) };
const config: ConfigEntry = { type: 'config', index: 4, term: 2, peers: ['n1', 'n2', 'ñødé-3', '節点'] };
const ENTRIES: Entry[] = [noop, command, emptyCommand, config];

const requestVote: RequestVote = {
  type: 'requestVote',
  term: 7,
  from: 'n1',
  to: 'n2',
  lastLogIndex: 41,
  lastLogTerm: 6,
};
const requestVoteReply: RequestVoteReply = { type: 'requestVoteReply', term: 7, from: 'n2', to: 'n1', granted: true };
const appendEntries: AppendEntries = {
  type: 'appendEntries',
  term: 7,
  from: 'n1',
  to: 'n3',
  prevLogIndex: 0,
  prevLogTerm: 0,
  entries: ENTRIES,
  leaderCommit: 0,
  readSeq: 3,
};
const heartbeat: AppendEntries = { ...appendEntries, entries: [], prevLogIndex: 4, prevLogTerm: 2, leaderCommit: 4 };
const appendOk: AppendEntriesReply = {
  type: 'appendEntriesReply',
  term: 7,
  from: 'n3',
  to: 'n1',
  success: true,
  matchIndex: 4,
  rejectedIndex: 0,
  conflictIndex: 0,
  conflictTerm: 0,
  readSeq: 3,
};
const appendRejected: AppendEntriesReply = {
  ...appendOk,
  success: false,
  matchIndex: 0,
  rejectedIndex: 9,
  conflictIndex: 5,
  conflictTerm: 3,
};
const persist: PersistRequest = { type: 'persist', seq: 1, term: 7, votedFor: 'n1', truncateFrom: 3, entries: ENTRIES };
const persistNoVote: PersistRequest = { type: 'persist', seq: 2, term: 8, votedFor: null, truncateFrom: 0, entries: [] };
const read: ReadRequest = { type: 'read', id: 5, from: 1, to: 100 };
const logReady: LogReady = { type: 'logReady', term: 7, votedFor: null, firstIndex: 1, lastIndex: 4, lastTerm: 2 };
const logReadyVoted: LogReady = { ...logReady, votedFor: 'n2' };
const persisted: Persisted = { type: 'persisted', seq: 2 };
const readResult: ReadResult = { type: 'readResult', id: 5, entries: ENTRIES };
const readResultEmpty: ReadResult = { type: 'readResult', id: 6, entries: [] };
const logFailure: LogFailure = { type: 'logFailure', message: 'MDB_MAP_FULL — ディスクがいっぱい 💥' };
const ops: ClientOps = {
  type: 'ops',
  ops: [
    { id: 1, command: encodeCommand({ type: 'set', key: 'k', value: 'v' }) },
    { id: 2, command: new Uint8Array([0xc0]) },
  ],
};
const noOps: ClientOps = { type: 'ops', ops: [] };
const results: ClientResults = {
  type: 'results',
  results: [
    { id: 1, ok: true, result: null, error: null },
    { id: 2, ok: true, result: { nested: ['x', 1, true], bytes: new Uint8Array([9]) }, error: null },
    { id: 3, ok: false, result: null, error: { code: 'NOT_LEADER', message: 'not the leader; try n2', leader: 'n2' } },
    { id: 4, ok: false, result: null, error: { code: 'TIMEOUT', message: 'no answer within 5 ms', leader: null } },
  ],
};

const readIndex: ReadIndexRequest = { type: 'readIndex', term: 7, from: 'n2', to: 'n1', id: 2 ** 40 + 17 };
const readIndexOk: ReadIndexReply = { type: 'readIndexReply', term: 7, from: 'n1', to: 'n2', id: 2 ** 40 + 17, readIndex: 41, ok: true };
const readIndexRefused: ReadIndexReply = { ...readIndexOk, readIndex: 0, ok: false };
const reads: ClientReads = { type: 'reads', reads: [{ id: 9, query: encodeCommand({ type: 'get', key: 'k' }) }] };
const bundle: Bundle = { type: 'bundle', messages: [appendOk, readIndexOk, persisted] };

// Issue 5: membership, pre-vote, transfer, snapshots (not shared records: keys inline).
const jointConfigEntry: ConfigEntry = { type: 'config', index: 9, term: 4, peers: ['n1', 'n4'], old: ['n1', 'n2', 'n3'] };
const transferVote: RequestVote = { ...requestVote, transfer: true };
const preVote: PreVote = { type: 'preVote', term: 8, from: 'n2', to: 'n1', lastLogIndex: 12, lastLogTerm: 7 };
const preVoteReply: PreVoteReply = { type: 'preVoteReply', term: 8, from: 'n1', to: 'n2', granted: true };
const timeoutNow: TimeoutNow = { type: 'timeoutNow', term: 7, from: 'n1', to: 'n3' };
const snapshotMeta: SnapshotMeta = { index: 40, term: 6, peers: ['n1', 'n2'], old: ['n1', 'n2', 'n3'], digest: 0xdeadbeef, size: 5 };
const installSnapshot: InstallSnapshot = {
  type: 'installSnapshot',
  term: 7,
  from: 'n1',
  to: 'n3',
  meta: snapshotMeta,
  offset: 2,
  data: Uint8Array.of(3, 4, 5),
  done: true,
  readSeq: 11,
};
const installSnapshotReply: InstallSnapshotReply = {
  type: 'installSnapshotReply',
  term: 7,
  from: 'n3',
  to: 'n1',
  index: 40,
  snapshotTerm: 6,
  offset: 5,
  done: true,
  readSeq: 11,
};
const persistSnapshot: PersistRequest = {
  ...persistNoVote,
  seq: 3,
  snapshot: { meta: snapshotMeta, data: Uint8Array.of(1, 2, 3, 4, 5), discardLog: true },
};
const logReadySnapshot: LogReady = { ...logReady, firstIndex: 41, lastIndex: 40, lastTerm: 6, snapshot: { meta: snapshotMeta, data: Uint8Array.of(1, 2, 3, 4, 5) } };
const changeConfig: ClientChangeConfig = { type: 'changeConfig', id: 12, peers: ['n1', 'n2', 'n4'] };
const transfer: ClientTransferLeadership = { type: 'transferLeadership', id: 13, target: null };

const SAMPLES: Record<string, AnyMessage> = {
  requestVote,
  requestVoteReply,
  appendEntries,
  heartbeat,
  appendOk,
  appendRejected,
  persist,
  persistNoVote,
  read,
  logReady,
  logReadyVoted,
  persisted,
  readResult,
  readResultEmpty,
  logFailure,
  ops,
  noOps,
  results,
  readIndex,
  readIndexOk,
  readIndexRefused,
  reads,
  bundle,
  transferVote,
  preVote,
  preVoteReply,
  timeoutNow,
  installSnapshot,
  installSnapshotReply,
  persistSnapshot,
  logReadySnapshot,
  changeConfig,
  transfer,
};
const PEER_SAMPLES: Record<string, PeerMessage> = {
  transferVote,
  preVote,
  preVoteReply,
  timeoutNow,
  installSnapshot,
  installSnapshotReply,
  requestVote,
  requestVoteReply,
  appendEntries,
  heartbeat,
  appendOk,
  appendRejected,
  readIndex,
  readIndexOk,
  readIndexRefused,
};

function bigBatch(n: number): Entry[] {
  const entries: Entry[] = [];
  for (let i = 1; i <= n; i++) {
    if (i % 100 === 0) entries.push({ type: 'config', index: i, term: 3, peers: ['a', 'b', `c${i}`] });
    else if (i % 10 === 0) entries.push({ type: 'noop', index: i, term: 3 });
    else entries.push({ type: 'command', index: i, term: 3, data: Uint8Array.of(i & 0xff, (i >> 8) & 0xff, 7) });
  }
  return entries;
}

const roundTrip = <T>(v: T, c: Codec = codec): unknown => c.decode(c.encode(v));

// ---------------------------------------------------------------------------------------------

describe('codec: round trips', () => {
  for (const [name, message] of Object.entries(SAMPLES)) {
    it(`${name}`, () => {
      const back = roundTrip(message);
      expect(back).to.deep.equal(message);
      expect(back).to.not.equal(message);
    });
  }

  it('a joint configuration entry (C_old,new) round-trips and passes the guard; a bad `old` does not', () => {
    expect(roundTrip(jointConfigEntry)).to.deep.equal(jointConfigEntry);
    expect(isEntry(roundTrip(jointConfigEntry))).to.equal(true);
    expect(isEntry({ ...jointConfigEntry, old: 'n1' })).to.equal(false);
    expect(isEntry({ ...jointConfigEntry, old: [1] })).to.equal(false);
  });

  it('an InstallSnapshot chunk must lie within the snapshot, and its meta must be whole', () => {
    expect(isPeerMessage({ ...installSnapshot, offset: 3 })).to.equal(false);
    expect(isPeerMessage({ ...installSnapshot, meta: { ...snapshotMeta, size: -1 } })).to.equal(false);
    expect(isPeerMessage({ ...installSnapshot, meta: { ...snapshotMeta, old: 'n1' } })).to.equal(false);
    expect(isPeerMessage({ ...installSnapshot, data: [3, 4, 5] })).to.equal(false);
    expect(isPeerMessage({ ...transferVote, transfer: 'yes' })).to.equal(false);
  });

  it('every entry type, alone', () => {
    for (const e of ENTRIES) {
      const back = roundTrip(e) as Entry;
      expect(back).to.deep.equal(e);
      if (e.type === 'command') {
        expect((back as CommandEntry).data).to.be.instanceOf(Uint8Array);
        expect([...(back as CommandEntry).data]).to.deep.equal([...e.data]);
      }
    }
  });

  it('keeps null votedFor as null (not undefined, not missing)', () => {
    const back = roundTrip(persistNoVote) as PersistRequest;
    expect(back).to.have.property('votedFor', null);
    const ready = roundTrip(logReady) as LogReady;
    expect(ready).to.have.property('votedFor', null);
  });

  it('carries unicode strings exactly (BMP, astral, combining, empty)', () => {
    const peers = ['', '\u00e9', 'e\u0301', '𝔘𝔫𝔦𝔠𝔬𝔡𝔢', '👩‍👩‍👧', 'Ω≈ç√', '\u0000nul'];
    const back = roundTrip({ type: 'config', index: 1, term: 1, peers }) as ConfigEntry;
    expect(back.peers).to.deep.equal(peers);
    expect(back.peers[1]).to.not.equal(back.peers[2]); // precomposed vs combining: not normalised
  });

  it('a batch of 10 000 entries in one AppendEntries and one persist', () => {
    const entries = bigBatch(10_000);
    const ae: AppendEntries = { ...appendEntries, entries };
    const bytes = codec.encode(ae);
    const back = codec.decode(bytes) as AppendEntries;
    expect(back.entries).to.have.length(10_000);
    expect(back).to.deep.equal(ae);
    expect(isPeerMessage(back)).to.equal(true);
    // Shared records: no key names on the wire, so an entry costs under 23 bytes (its
    // 'command' tag alone is 8, its ENTRY_EXT header 3), against over 40 with keys written out.
    expect(bytes.length).to.be.lessThan(10_000 * 23);
    const p: PersistRequest = { ...persist, entries };
    expect(roundTrip(p)).to.deep.equal(p);
  });

  it('every shared record is written as its agreed one-byte id (the wire format is pinned)', () => {
    // Index in SHARED_STRUCTURES; msgpackr writes shared record i as the byte 0x40 + i.
    const expected: [AnyMessage | Entry, number][] = [
      [noop, 0],
      [command, 1],
      [config, 2],
      [requestVote, 3],
      [requestVoteReply, 4],
      [appendEntries, 5],
      [appendOk, 6],
      [persist, 7],
      [read, 8],
      [logReady, 9],
      [persisted, 10],
      [readResult, 11],
      [logFailure, 12],
      [ops, 14],
      [results, 17],
      [readIndex, 18],
      [readIndexOk, 19],
      [reads, 21],
      [bundle, 22],
    ];
    for (const [message, id] of expected) {
      expect(codec.encode(message)[0], (message as { type: string }).type).to.equal(0x40 + id);
    }
    expect(codec.encode(ops.ops[0])[0], 'OpRequest').to.equal(0x40 + 13);
    expect(codec.encode(results.results[2]!.error)[0], 'WireError').to.equal(0x40 + 15);
    expect(codec.encode(results.results[0])[0], 'OpOutcome').to.equal(0x40 + 16);
    expect(codec.encode(reads.reads[0])[0], 'ReadQuery').to.equal(0x40 + 20);
    expect(codec.encode({ type: 'set', key: 'k', value: 1 })[0], 'kv set').to.equal(0x40 + 23);
    expect(codec.encode({ type: 'get', key: 'k' })[0], 'kv get').to.equal(0x40 + 24);
    expect(codec.encode({ type: 'cas', key: 'k', expected: 1, value: 2 })[0], 'kv cas').to.equal(0x40 + 25);
  });

  it('decodeAll unpacks a bundle in order and drops (and counts) what fails the guard', () => {
    const mixed: Bundle = { type: 'bundle', messages: [appendOk, persisted, readIndex] };
    const { messages, dropped } = decodeAll(codec.encode(mixed), isPeerMessage);
    expect(messages).to.deep.equal([appendOk, readIndex]);
    expect(dropped).to.equal(1);
    expect(decodeAll(codec.encode(appendOk), isPeerMessage)).to.deep.equal({ messages: [appendOk], dropped: 0 });
    expect(decodeAll(new Uint8Array([0xc1]), isPeerMessage)).to.deep.equal({ messages: [], dropped: 1 });
    expect(decodeAll('not bytes', isPeerMessage)).to.deep.equal({ messages: [], dropped: 1 });
  });
});

describe('codec: entries packed once (ENTRY_EXT)', () => {
  /** Where `payload` starts inside `bytes`, or -1. */
  const find = (bytes: Uint8Array, payload: Uint8Array): number => {
    outer: for (let i = 0; i + payload.length <= bytes.length; i++) {
      for (let j = 0; j < payload.length; j++) if (bytes[i + j] !== payload[j]) continue outer;
      return i;
    }
    return -1;
  };
  /** The extension header msgpack puts before an n-byte payload (fixext for 1, 2, 4, 8, 16 bytes). */
  const header = (n: number): number[] => {
    const fixext: Record<number, number> = { 1: 0xd4, 2: 0xd5, 4: 0xd6, 8: 0xd7, 16: 0xd8 };
    return fixext[n] !== undefined ? [fixext[n]!, ENTRY_EXT] : [0xc7, n, ENTRY_EXT];
  };
  /** `bytes` with the entry `e` (header and payload) replaced by `replacement`. */
  const replaceEntry = (bytes: Uint8Array, e: Entry, replacement: number[]): Uint8Array => {
    const payload = codec.encode(e);
    const at = find(bytes, payload);
    const start = at - header(payload.length).length;
    return Uint8Array.of(...bytes.subarray(0, start), ...replacement, ...bytes.subarray(at + payload.length));
  };

  it('an entry inside a message is one extension whose payload is the entry packed alone (the wire format is pinned)', () => {
    // The payload is also what the log store keeps under the entry's index.
    expect(entryBytes(command)).to.deep.equal(codec.encode(command));
    expect(codec.encode(command)[0], 'a command entry alone is its shared record').to.equal(0x40 + 1);
    for (const message of [appendEntries, persist, readResult] as AnyMessage[]) {
      const bytes = codec.encode(message);
      for (const e of ENTRIES) {
        const payload = codec.encode(e);
        const at = find(bytes, payload);
        expect(at, `${message.type}: ${e.type}`).to.be.greaterThan(2);
        const h = header(payload.length);
        expect([...bytes.subarray(at - h.length, at)], `${message.type}: ${e.type}`).to.deep.equal(h);
      }
    }
  });

  it('packs an entry once: the same bytes for every message it goes in', () => {
    const e: Entry = { type: 'command', index: 9, term: 2, data: Uint8Array.of(1, 2, 3), time: 1_700_000_000_000 };
    const first = entryBytes(e);
    expect(entryBytes(e)).to.equal(first);
    codec.encode({ ...appendEntries, entries: [e] });
    codec.encode({ ...persist, entries: [e] });
    expect(entryBytes(e)).to.equal(first);
  });

  it('a decoded entry keeps the bytes it arrived in, and sending it on copies them unchanged', () => {
    const received = codec.decode(codec.encode(appendEntries)) as AppendEntries;
    expect(received).to.deep.equal(appendEntries);
    const onward = codec.encode({ ...persist, entries: received.entries });
    for (const e of received.entries) {
      const bytes = entryBytes(e);
      // Kept, not packed again: a view into the message it came in.
      expect(bytes.byteOffset > 0 || bytes.length < bytes.buffer.byteLength, e.type).to.equal(true);
      expect(bytes).to.deep.equal(codec.encode(e));
      expect(find(onward, bytes), e.type).to.be.greaterThan(0);
    }
  });

  it('a copy of a decoded entry does not carry its bytes: it is packed anew', () => {
    const [received] = (codec.decode(codec.encode({ ...appendEntries, entries: [command] })) as AppendEntries).entries;
    const copy = { ...received!, index: 99 } as Entry;
    expect(codec.decode(entryBytes(copy))).to.deep.equal({ ...command, index: 99 });
    expect(codec.decode(entryBytes(received!))).to.deep.equal(command);
  });

  it('decodeEntryBytes keeps the stored bytes as the entry\'s packed form', () => {
    const stored = codec.encode(command);
    const e = decodeEntryBytes(stored) as Entry;
    expect(e).to.deep.equal(command);
    expect(entryBytes(e)).to.equal(stored);
  });

  it('a message whose entry payload is not one whole value does not decode', () => {
    const bytes = codec.encode({ ...appendEntries, entries: [command] });
    const payload = [...codec.encode(command)];
    expect(codec.decode(replaceEntry(bytes, command, [...header(payload.length), ...payload]))).to.deep.equal({ ...appendEntries, entries: [command] });
    // A byte msgpack never uses, at the payload's start.
    expect(() => codec.decode(replaceEntry(bytes, command, [...header(payload.length), 0xc1, ...payload.slice(1)]))).to.throw(DecodeError);
    // A nil too many at the payload's end: the entry, then bytes that are not part of it.
    expect(() => codec.decode(replaceEntry(bytes, command, [...header(payload.length + 1), ...payload, 0xc0]))).to.throw(DecodeError);
  });

  it('an entry payload that is not an entry leaves an object the guard refuses', () => {
    const bytes = codec.encode({ ...appendEntries, entries: [noop] });
    expect(isPeerMessage(codec.decode(bytes))).to.equal(true);
    // fixext 1 whose payload is the number 7.
    const decoded = codec.decode(replaceEntry(bytes, noop, [0xd4, ENTRY_EXT, 7])) as AppendEntries;
    expect(decoded.entries).to.deep.equal([7]);
    expect(isPeerMessage(decoded)).to.equal(false);
  });
});

describe('codec: owned, exact-size buffers', () => {
  it('every encode owns an exact-size ArrayBuffer at offset 0', () => {
    for (const [name, message] of Object.entries(SAMPLES)) {
      const bytes = codec.encode(message);
      expect(bytes.byteOffset, name).to.equal(0);
      expect(bytes.buffer.byteLength, name).to.equal(bytes.length);
    }
    const big = codec.encode({ ...appendEntries, entries: bigBatch(10_000) });
    expect(big.byteOffset).to.equal(0);
    expect(big.buffer.byteLength).to.equal(big.length);
  });

  it('two consecutive encodes do not share a buffer, and the first stays intact', () => {
    const a = codec.encode(requestVote);
    const snapshot = Uint8Array.from(a);
    const b = codec.encode(requestVote);
    expect(a.buffer).to.not.equal(b.buffer);
    expect([...a]).to.deep.equal([...b]);
    // Encoding more (which reuses msgpackr's arena) must not touch an earlier result.
    for (let i = 0; i < 100; i++) codec.encode({ ...appendOk, matchIndex: i, from: `peer-${i}` });
    expect([...a]).to.deep.equal([...snapshot]);
    b.fill(0);
    expect(codec.decode(a)).to.deep.equal(requestVote);
  });

  it('postEncoded transfers the owned buffer and the receiver decodes the message', async () => {
    const { port1, port2 } = new MessageChannel();
    try {
      const received = new Promise<unknown>((resolve) => port2.once('message', resolve));
      let sentBytes: Uint8Array | undefined;
      postEncoded(
        {
          postMessage(value: unknown, transfer: ArrayBuffer[]) {
            sentBytes = value as Uint8Array;
            expect(transfer).to.have.length(1);
            expect(transfer[0]).to.equal(sentBytes.buffer);
            port1.postMessage(value, transfer);
          },
        },
        appendEntries,
      );
      expect(sentBytes!.buffer.byteLength, 'detached after transfer').to.equal(0);
      const bytes = (await received) as Uint8Array;
      expect(codec.decode(bytes)).to.deep.equal(appendEntries);
    } finally {
      port1.close();
      port2.close();
    }
  });
});

describe('codec: decode errors', () => {
  const expectDecodeError = (bytes: Uint8Array, label: string): void => {
    let thrown: unknown;
    try {
      codec.decode(bytes);
    } catch (err) {
      thrown = err;
    }
    expect(thrown, label).to.be.instanceOf(DecodeError);
    expect((thrown as Error).name).to.equal('DecodeError');
    expect((thrown as Error).message).to.contain(`(${bytes.length} bytes)`);
  };

  it('throws DecodeError for empty input', () => {
    expectDecodeError(new Uint8Array(0), 'empty');
  });

  it('throws DecodeError for malformed bytes', () => {
    const cases: [string, number[]][] = [
      ['array of 3 with one element', [0x93, 0x01]],
      ['str8 claiming 16 bytes, holding 1', [0xd9, 0x10, 0x61]],
      ['bin8 claiming 5 bytes, holding 2', [0xc4, 0x05, 0x01, 0x02]],
      ['map of 1 without its value', [0x81, 0xa1, 0x61]],
      ['two values where one is expected', [0x01, 0x02]],
      ['record id of a shared structure with no values', [0x43]],
      ['float64 cut short', [0xcb, 0x40, 0x09]],
    ];
    for (const [label, bytes] of cases) expectDecodeError(Uint8Array.from(bytes), label);
  });

  it('throws DecodeError for trailing garbage after a valid message', () => {
    const bytes = codec.encode(requestVote);
    const longer = new Uint8Array(bytes.length + 3);
    longer.set(bytes);
    longer.set([0x01, 0x02, 0x03], bytes.length);
    expectDecodeError(longer, 'trailing');
  });

  it('throws DecodeError for every truncation of every sample', () => {
    let checked = 0;
    for (const [name, message] of Object.entries(SAMPLES)) {
      const bytes = codec.encode(message);
      for (let len = 0; len < bytes.length; len++) {
        expectDecodeError(bytes.subarray(0, len), `${name} cut to ${len} of ${bytes.length}`);
        checked++;
      }
    }
    expect(checked).to.be.greaterThan(500);
  });

  it('throws DecodeError for a truncated 10 000-entry batch', () => {
    const bytes = codec.encode({ ...appendEntries, entries: bigBatch(10_000) });
    for (const len of [1, 100, bytes.length >> 1, bytes.length - 1]) {
      expectDecodeError(bytes.subarray(0, len), `cut to ${len}`);
    }
  });

  it('random bytes either decode to some value or throw DecodeError, never anything else (seeded)', () => {
    const SEED = 1234567;
    const rand = mulberry32(SEED);
    let threw = 0;
    for (let i = 0; i < 3000; i++) {
      const bytes = new Uint8Array(1 + Math.floor(rand() * 40));
      for (let j = 0; j < bytes.length; j++) bytes[j] = Math.floor(rand() * 256);
      let v: unknown;
      try {
        v = codec.decode(bytes);
      } catch (err) {
        expect(err, `SEED=${SEED} case=${i}`).to.be.instanceOf(DecodeError);
        threw++;
        continue;
      }
      // Whatever decodes is still not trusted: random bytes are never a peer message.
      expect(isPeerMessage(v), `SEED=${SEED} case=${i}`).to.equal(false);
    }
    expect(threw).to.be.greaterThan(1000);
  });

  it('well-formed msgpack that is not a message decodes, and the guards reject it', () => {
    // The codec checks bytes, not shapes: this is why every port handler runs a guard.
    for (const bytes of [[0x01], [0xc0], [0xc1], [0x90], [0x80], [0xa3, 0x61, 0x62, 0x63]]) {
      const v = codec.decode(Uint8Array.from(bytes));
      expect(isPeerMessage(v), JSON.stringify(bytes)).to.equal(false);
      expect(isClientRequest(v), JSON.stringify(bytes)).to.equal(false);
      expect(isEntry(v), JSON.stringify(bytes)).to.equal(false);
    }
  });
});

describe('codec: structures not in the shared list', () => {
  it('round-trip across two independent Codec instances', () => {
    const writer = new Codec();
    const reader = new Codec();
    const values: unknown[] = [
      { alpha: 1, beta: 'two', gamma: [3, { delta: null }] },
      { alpha: 2, beta: 'again', gamma: [] },
      { zeta: new Uint8Array([1, 2]), eta: new Date(86_400_000) },
      // A known message's keys in another order: not the shared record, still decodes.
      { to: 'n2', from: 'n1', term: 3, type: 'requestVote', lastLogTerm: 1, lastLogIndex: 2 },
      // Known records nested inside an unknown one.
      { wrapper: true, inner: requestVote, list: [noop, command] },
    ];
    for (const v of values) expect(reader.decode(writer.encode(v))).to.deep.equal(v);
  });

  it('one reader decodes interleaved messages of two writers whose own structures differ', () => {
    const w1 = new Codec();
    const w2 = new Codec();
    const reader = new Codec();
    const rand = mulberry32(42);
    // More distinct shapes than msgpackr has record slots, to force slot reuse in the writers.
    for (let i = 0; i < 200; i++) {
      const writer = rand() < 0.5 ? w1 : w2;
      const key = `k${Math.floor(rand() * 80)}`;
      const v = { [key]: i, [`${key}x`]: [i, key], shape: writer === w1 ? 'one' : 'two' };
      expect(reader.decode(writer.encode(v)), `message ${i}`).to.deep.equal(v);
    }
  });

  it('a fresh reader decodes messages of a long-lived writer, each message on its own', () => {
    const writer = new Codec();
    const encoded: [unknown, Uint8Array][] = [];
    for (let i = 0; i < 50; i++) {
      const v = { [`field${i % 7}`]: i, common: 'c' };
      encoded.push([v, writer.encode(v)]);
    }
    for (const [v, bytes] of encoded.reverse()) expect(new Codec().decode(bytes)).to.deep.equal(v);
  });
});

describe('codec: encodeCommand / decodeCommand', () => {
  it('round-trips nested values including Map, Date, Uint8Array, bigint, unicode', () => {
    const value = {
      type: 'set',
      key: 'ключ-🔑',
      value: {
        map: new Map<unknown, unknown>([
          ['s', 1],
          [2, 'two'],
          ['inner', new Map([['deep', [1, 2, 3]]])],
        ]),
        when: new Date('2024-02-29T12:34:56.789Z'),
        bytes: new Uint8Array([0, 255, 10]),
        list: [null, true, false, -1, 1.5, 2 ** 53 - 1, 'x'],
        big: 2n ** 60n,
        empty: {},
      },
    };
    const back = decodeCommand(encodeCommand(value)) as typeof value;
    expect(back).to.deep.equal(value);
    expect(back.value.map).to.be.instanceOf(Map);
    expect(back.value.map.get('inner')).to.be.instanceOf(Map);
    expect(back.value.when).to.be.instanceOf(Date);
    expect(back.value.when.getTime()).to.equal(value.value.when.getTime());
    expect(back.value.bytes).to.be.instanceOf(Uint8Array);
    expect(back.value.big).to.equal(2n ** 60n);
  });

  it('round-trips primitives at the top level', () => {
    for (const v of [null, true, false, 0, -7, 3.25, 'text', '']) expect(decodeCommand(encodeCommand(v))).to.equal(v);
  });

  it('returns an owned exact-size buffer', () => {
    const a = encodeCommand({ type: 'get', key: 'a' });
    const b = encodeCommand({ type: 'get', key: 'b' });
    expect(a.byteOffset).to.equal(0);
    expect(a.buffer.byteLength).to.equal(a.length);
    expect(a.buffer).to.not.equal(b.buffer);
  });

  it('rejects functions and symbols with TypeError, at any depth', () => {
    const fn = (): number => 1;
    const sym = Symbol('s');
    const bad: [string, unknown, RegExp][] = [
      ['function', fn, /command is a function/],
      ['symbol', sym, /command is a symbol/],
      ['nested function', { type: 'set', key: 'k', value: { f: fn } }, /command\.value\.f is a function/],
      ['symbol in array', [1, [2, sym]], /command\.1\.1 is a symbol/],
      ['function as Map value', new Map([['m', fn]]), /command\.m is a function/],
      ['symbol as Map key', new Map([[sym, 1]]), /command key is a symbol/],
    ];
    for (const [label, value, message] of bad) {
      expect(() => encodeCommand(value), label).to.throw(TypeError, message);
    }
  });

  it('rejects a cyclic value with TypeError instead of overflowing the stack', () => {
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    expect(() => encodeCommand(cyclic)).to.throw(TypeError, /nested too deeply \(or cyclic\)/);
  });

  it('accepts deep but finite nesting', () => {
    let v: unknown = 'leaf';
    for (let i = 0; i < 60; i++) v = { v };
    expect(decodeCommand(encodeCommand(v))).to.deep.equal(v);
  });
});

describe('log commands and stamped entries (client sessions, thesis §6.3)', () => {
  const user = { type: 'set', key: 'k', value: 1 };
  const SAMPLES = [
    { type: 'op', client: 'c1', seq: 1, ack: 1, command: user },
    { type: 'idempotent', command: user },
    { type: 'register', client: 'c1', timeoutMs: 60_000 },
  ] as const;

  it('round-trips every log command and accepts it', () => {
    for (const c of SAMPLES) {
      const back = codec.decode(encodeLogCommand(c));
      expect(back, c.type).to.deep.equal(c);
      expect(isLogCommand(back), c.type).to.equal(true);
    }
  });

  it('rejects wrong shapes: a bare user command, seq 0, a numeric client, no command, timeout 0', () => {
    for (const bad of [
      user,
      null,
      { type: 'op', client: 'c1', seq: 0, ack: 1, command: user },
      { type: 'op', client: 7, seq: 1, ack: 1, command: user },
      { type: 'op', client: 'c1', seq: 1, ack: -1, command: user },
      { type: 'op', client: 'c1', seq: 1, ack: 1 },
      { type: 'idempotent' },
      { type: 'register', client: 'c1', timeoutMs: 0 },
    ]) {
      expect(isLogCommand(bad), JSON.stringify(bad)).to.equal(false);
    }
  });

  it('encodeLogCommand refuses a user command msgpack cannot carry', () => {
    expect(() => encodeLogCommand({ type: 'op', client: 'c', seq: 1, ack: 1, command: { f: () => 1 } })).to.throw(TypeError, /function/);
  });

  it("a command entry keeps the leader's time through the codec; a time that is not a finite number is refused", () => {
    const stamped: CommandEntry = { ...command, time: 1_795_000_000_123 };
    expect(roundTrip(stamped)).to.deep.equal(stamped);
    expect(isEntry(roundTrip(stamped))).to.equal(true);
    for (const bad of ['1', null, Number.NaN, Number.POSITIVE_INFINITY]) expect(isEntry({ ...command, time: bad }), String(bad)).to.equal(false);
  });
});

describe('guards: isEntry', () => {
  it('accepts every entry type, before and after a round trip', () => {
    for (const e of ENTRIES) {
      expect(isEntry(e), e.type).to.equal(true);
      expect(isEntry(roundTrip(e)), e.type).to.equal(true);
    }
  });

  it('rejects non-objects and an unknown type tag', () => {
    for (const v of [null, undefined, 1, 'noop', [], [noop]]) expect(isEntry(v), String(v)).to.equal(false);
    expect(isEntry({ ...noop, type: 'snapshot' })).to.equal(false);
    expect(isEntry({ ...noop, type: 'Noop' })).to.equal(false);
  });

  it('rejects an entry missing any field', () => {
    for (const e of ENTRIES) {
      for (const key of Object.keys(e)) {
        const broken: Record<string, unknown> = { ...e };
        delete broken[key];
        expect(isEntry(broken), `${e.type} without ${key}`).to.equal(false);
      }
    }
  });

  it('rejects negative, fractional, non-finite and non-number index/term', () => {
    for (const bad of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY, 2 ** 53, '1', null]) {
      expect(isEntry({ ...noop, index: bad }), `index ${String(bad)}`).to.equal(false);
      expect(isEntry({ ...command, term: bad }), `term ${String(bad)}`).to.equal(false);
    }
  });

  it('rejects an entry with a field of another shape (its bytes are stored as they arrive)', () => {
    for (const e of [...ENTRIES, jointConfigEntry, { ...command, time: 5 }]) {
      expect(isEntry(e), e.type).to.equal(true);
      expect(isEntry({ ...e, extra: 1 }), `${e.type} with an extra field`).to.equal(false);
    }
    expect(isEntry({ ...noop, time: 5 })).to.equal(false);
    expect(isEntry({ ...command, time: undefined }), 'an undefined field is no field').to.equal(true);
  });

  it('rejects command data that is not a Uint8Array, and peers that are not strings', () => {
    expect(isEntry({ ...command, data: [1, 2] })).to.equal(false);
    expect(isEntry({ ...command, data: 'bytes' })).to.equal(false);
    expect(isEntry({ ...command, data: new ArrayBuffer(2) })).to.equal(false);
    expect(isEntry({ ...config, peers: 'n1' })).to.equal(false);
    expect(isEntry({ ...config, peers: ['n1', 2] })).to.equal(false);
  });
});

describe('guards: isPeerMessage', () => {
  it('accepts every peer message sample, before and after a round trip', () => {
    for (const [name, m] of Object.entries(PEER_SAMPLES)) {
      expect(isPeerMessage(m), name).to.equal(true);
      expect(isPeerMessage(roundTrip(m)), name).to.equal(true);
    }
  });

  it('rejects the non-peer protocols and non-objects', () => {
    for (const [name, m] of Object.entries(SAMPLES)) {
      if (!(name in PEER_SAMPLES)) expect(isPeerMessage(m), name).to.equal(false);
    }
    for (const v of [null, undefined, 0, 'requestVote', [requestVote]]) expect(isPeerMessage(v)).to.equal(false);
  });

  it('rejects a wrong type tag', () => {
    expect(isPeerMessage({ ...requestVote, type: 'requestvote' })).to.equal(false);
    expect(isPeerMessage({ ...requestVote, type: 'appendEntries' })).to.equal(false);
    expect(isPeerMessage({ ...appendOk, type: 'requestVoteReply' })).to.equal(false);
  });

  it('rejects each sample with any one field missing', () => {
    for (const [name, m] of Object.entries(PEER_SAMPLES)) {
      for (const key of Object.keys(m)) {
        if (key === 'transfer') continue; // optional: absent means false
        const broken: Record<string, unknown> = { ...m };
        delete broken[key];
        expect(isPeerMessage(broken), `${name} without ${key}`).to.equal(false);
      }
    }
  });

  it('rejects each numeric field when negative, fractional, NaN or a string', () => {
    for (const [name, m] of Object.entries(PEER_SAMPLES)) {
      for (const [key, value] of Object.entries(m)) {
        if (typeof value !== 'number') continue;
        for (const bad of [-1, 0.5, Number.NaN, String(value)]) {
          expect(isPeerMessage({ ...m, [key]: bad }), `${name}.${key} = ${String(bad)}`).to.equal(false);
        }
      }
    }
  });

  it('rejects wrong types for the string and boolean fields', () => {
    for (const [name, m] of Object.entries(PEER_SAMPLES)) {
      for (const [key, value] of Object.entries(m)) {
        if (key === 'type') continue;
        if (typeof value === 'string') {
          expect(isPeerMessage({ ...m, [key]: 1 }), `${name}.${key}`).to.equal(false);
          expect(isPeerMessage({ ...m, [key]: null }), `${name}.${key}`).to.equal(false);
        }
        if (typeof value === 'boolean') {
          expect(isPeerMessage({ ...m, [key]: 1 }), `${name}.${key}`).to.equal(false);
          expect(isPeerMessage({ ...m, [key]: 'true' }), `${name}.${key}`).to.equal(false);
        }
      }
    }
  });

  it('rejects AppendEntries whose entries are not an array of valid entries', () => {
    expect(isPeerMessage({ ...appendEntries, entries: noop })).to.equal(false);
    expect(isPeerMessage({ ...appendEntries, entries: [noop, { ...command, data: null }] })).to.equal(false);
    expect(isPeerMessage({ ...appendEntries, entries: [noop, null] })).to.equal(false);
  });
});

describe('guards: isClientRequest', () => {
  it('accepts ops and reads batches, empty or not, membership changes and transfers, before and after a round trip', () => {
    for (const m of [ops, noOps, reads, changeConfig, transfer, { ...transfer, target: 'n2' }]) {
      expect(isClientRequest(m)).to.equal(true);
      expect(isClientRequest(roundTrip(m))).to.equal(true);
    }
  });

  it('rejects other messages and wrong shapes', () => {
    for (const [name, m] of Object.entries(SAMPLES)) {
      if (!([ops, noOps, reads, changeConfig, transfer] as AnyMessage[]).includes(m)) expect(isClientRequest(m), name).to.equal(false);
    }
    expect(isClientRequest({ ...changeConfig, peers: 'n1' })).to.equal(false);
    expect(isClientRequest({ ...changeConfig, peers: [1] })).to.equal(false);
    expect(isClientRequest({ ...transfer, target: 7 })).to.equal(false);
    expect(isClientRequest({ ...transfer, id: -1 })).to.equal(false);
    const op = ops.ops[0]!;
    const bad: [string, unknown][] = [
      ['null', null],
      ['wrong tag', { ...ops, type: 'op' }],
      ['no ops', { type: 'ops' }],
      ['ops not an array', { type: 'ops', ops: op }],
      ['op null', { type: 'ops', ops: [op, null] }],
      ['read without query bytes', { type: 'reads', reads: [{ id: 1, query: 'get k' }] }],
      ['reads carrying ops', { type: 'reads', ops: [op] }],
      ['op without id', { type: 'ops', ops: [{ command: op.command }] }],
      ['negative id', { type: 'ops', ops: [{ id: -1, command: op.command }] }],
      ['fractional id', { type: 'ops', ops: [{ id: 1.5, command: op.command }] }],
      ['command as number[]', { type: 'ops', ops: [{ id: 1, command: [1, 2] }] }],
      ['command missing', { type: 'ops', ops: [{ id: 1 }] }],
    ];
    for (const [label, v] of bad) expect(isClientRequest(v), label).to.equal(false);
  });
});
