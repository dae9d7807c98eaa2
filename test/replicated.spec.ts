/**
 * The apply side of a peer as a pure unit (src/state-machines/replicated.ts): committed entries
 * through the client session table (thesis §6.3) to the built-in kv, the applied digest, the
 * snapshot of machine and table together (§7), and read-only queries. No peers, no threads.
 */
import { expect } from 'chai';
import { Rng } from '../src/rng.js';
import { FNV_OFFSET } from '../src/hash.js';
import { codec, encodeLogCommand } from '../src/codec.js';
import { type Entry, type LogCommand, type Snapshot } from '../src/messages.js';
import { SessionTable } from '../src/sessions.js';
import { KvStateMachine } from '../src/state-machines/kv.js';
import { digestEntry, packSnapshot, ReplicatedStateMachine, type Outcome } from '../src/state-machines/replicated.js';
import type { StateMachine } from '../src/state-machines/types.js';

/** Builds a log of consecutive entries (term 1), command entries stamped with a log time. */
class Log {
  readonly entries: Entry[] = [];
  time = 1_000;

  command(c: LogCommand): Entry {
    return this.push({ type: 'command', index: this.entries.length + 1, term: 1, data: encodeLogCommand(c), time: this.time });
  }

  raw(data: Uint8Array): Entry {
    return this.push({ type: 'command', index: this.entries.length + 1, term: 1, data, time: this.time });
  }

  noop(): Entry {
    return this.push({ type: 'noop', index: this.entries.length + 1, term: 1 });
  }

  private push(e: Entry): Entry {
    this.entries.push(e);
    return e;
  }
}

const set = (key: string, value: unknown) => ({ type: 'idempotent', command: { type: 'set', key, value } }) as const;
const op = (client: string, seq: number, command: unknown, ack = 1) => ({ type: 'op', client, seq, ack, command }) as const;
const register = (client: string, timeoutMs = 10_000) => ({ type: 'register', client, timeoutMs }) as const;
const ok = (result: unknown): Outcome => ({ ok: true, result });

/** A snapshot of `rsm` as the core would store it: its bytes and its digest at its index. */
function snapshotOf(rsm: ReplicatedStateMachine): Snapshot {
  const data = rsm.snapshot();
  return { meta: { index: rsm.appliedIndex, term: 1, peers: ['p1'], old: null, digest: rsm.appliedDigest, size: data.length }, data };
}

/** A kv that counts the commands it applies, so "applied once" is checked, not assumed. */
class CountingKv extends KvStateMachine {
  applied = 0;
  override apply(command: unknown): unknown {
    this.applied++;
    return super.apply(command);
  }
}

describe('ReplicatedStateMachine: apply', () => {
  it('applies entries in log order and answers each command entry, null for entries the machine never sees', () => {
    const log = new Log();
    log.noop();
    log.command(set('a', 1));
    log.command({ type: 'idempotent', command: { type: 'get', key: 'a' } });
    log.command({ type: 'idempotent', command: { type: 'cas', key: 'a', expected: 1, value: 2 } });
    log.command({ type: 'idempotent', command: { type: 'cas', key: 'a', expected: 1, value: 3 } });
    log.command({ type: 'idempotent', command: { type: 'get', key: 'a' } });
    const rsm = new ReplicatedStateMachine(new KvStateMachine());
    expect(rsm.apply(log.entries)).to.deep.equal([null, ok(null), ok(1), ok(true), ok(false), ok(2)]);
    expect(rsm.appliedIndex).to.equal(6);
  });

  it('gives the same outcomes and digest whether the entries come in one batch or one at a time', () => {
    const log = new Log();
    log.noop();
    for (let i = 0; i < 20; i++) log.command(set(`k${i % 3}`, i));
    const batch = new ReplicatedStateMachine(new KvStateMachine());
    const single = new ReplicatedStateMachine(new KvStateMachine());
    const batched = batch.apply(log.entries);
    const oneByOne = log.entries.flatMap((e) => single.apply([e]));
    expect(oneByOne).to.deep.equal(batched);
    expect(single.appliedDigest).to.equal(batch.appliedDigest);
  });

  it('hashes every entry applied into the digest (index, term, command bytes), refused commands and no-ops too', () => {
    const log = new Log();
    log.noop();
    log.command(set('a', 1));
    log.raw(new Uint8Array([0xc1])); // no msgpack value: refused
    log.command({ type: 'idempotent', command: { type: 'nope' } }); // the kv refuses it
    const rsm = new ReplicatedStateMachine(new KvStateMachine());
    expect(rsm.appliedDigest).to.equal(FNV_OFFSET);
    const outcomes = rsm.apply(log.entries);
    expect(outcomes[2]).to.deep.include({ ok: false });
    expect((outcomes[2] as { error: { code: string } }).error.code).to.equal('INVALID_COMMAND');
    expect((outcomes[3] as { error: { code: string } }).error.code).to.equal('INVALID_COMMAND');
    expect(rsm.appliedDigest).to.equal(log.entries.reduce(digestEntry, FNV_OFFSET));
    // Another term at the same index is another log: another digest.
    const other = new ReplicatedStateMachine(new KvStateMachine());
    other.apply([{ ...log.entries[0]!, term: 2 }, ...log.entries.slice(1)]);
    expect(other.appliedDigest).to.not.equal(rsm.appliedDigest);
  });

  it('applies a retried session command once and answers the retry with the first result (§6.3)', () => {
    const kv = new CountingKv();
    const rsm = new ReplicatedStateMachine(kv);
    const log = new Log();
    log.command(register('c1'));
    log.command(op('c1', 1, { type: 'cas', key: 'x', expected: null, value: 'first' }));
    log.command(op('c1', 1, { type: 'cas', key: 'x', expected: null, value: 'first' })); // the retry
    log.command(op('c1', 2, { type: 'cas', key: 'x', expected: null, value: 'second' }));
    log.command(op('c9', 1, { type: 'set', key: 'y', value: 1 })); // never registered
    const outcomes = rsm.apply(log.entries);
    expect(outcomes.slice(0, 4)).to.deep.equal([ok(null), ok(true), ok(true), ok(false)]);
    expect((outcomes[4] as { error: { code: string } }).error.code).to.equal('SESSION_EXPIRED');
    expect(kv.applied, 'the retry never reached the machine').to.equal(2);
    expect(rsm.sessionsStatus()).to.deep.include({ active: 1, expired: 0 });
  });
});

describe('ReplicatedStateMachine: snapshot and restore', () => {
  /** A seeded log of kv commands under a few sessions, with retries, expiries and refusals. */
  function randomLog(seed: number, length: number): Entry[] {
    const rng = new Rng(seed);
    const log = new Log();
    const seqs = new Map<string, number>();
    for (let i = 0; i < length; i++) {
      log.time += rng.int(0, 400);
      const client = `c${rng.int(0, 3)}`;
      const r = rng.next();
      if (r < 0.1) log.command(register(client, 2_000));
      else if (r < 0.15) log.noop();
      else if (r < 0.25) log.command(set(`k${rng.int(0, 4)}`, i));
      else {
        const retry = rng.chance(0.3) && seqs.has(client);
        const seq = retry ? seqs.get(client)! : (seqs.get(client) ?? 0) + 1;
        seqs.set(client, seq);
        const key = `k${rng.int(0, 4)}`;
        const command = rng.chance(0.5) ? { type: 'cas', key, expected: null, value: i } : { type: 'delete', key };
        log.command(op(client, seq, command, Math.max(1, seq - 2)));
      }
    }
    return log.entries;
  }

  it('a machine restored from a snapshot midway gives the same outcomes, digest, table and bytes as the original (seeded)', () => {
    for (const seed of [1, 2, 3, 4, 5]) {
      const entries = randomLog(seed, 300);
      const original = new ReplicatedStateMachine(new KvStateMachine());
      const cut = 150;
      original.apply(entries.slice(0, cut));
      const snapshot = snapshotOf(original);
      const restored = new ReplicatedStateMachine(new KvStateMachine());
      restored.restore(snapshot);
      expect(restored.appliedIndex).to.equal(cut);
      expect(restored.appliedDigest).to.equal(original.appliedDigest);
      expect(restored.snapshot(), 'a restored machine snapshots to the same bytes').to.deep.equal(snapshot.data);
      const rest = entries.slice(cut);
      expect(restored.apply(rest), `SEED=${seed}`).to.deep.equal(original.apply(rest));
      expect(restored.appliedDigest).to.equal(original.appliedDigest);
      expect(restored.sessionsStatus()).to.deep.equal(original.sessionsStatus());
      expect(restored.snapshot()).to.deep.equal(original.snapshot());
      // The log really went through the table: sessions expired (and saved answers were kept).
      expect(original.sessionsStatus().expired, `SEED=${seed}: sessions expired`).to.be.greaterThan(0);
    }
  });

  it('packs the machine’s bytes and the session table’s into one envelope', () => {
    const rsm = new ReplicatedStateMachine(new KvStateMachine());
    const log = new Log();
    log.command(register('c1'));
    log.command(op('c1', 1, { type: 'set', key: 'a', value: 1 }));
    rsm.apply(log.entries);
    const kv = new KvStateMachine();
    kv.apply({ type: 'set', key: 'a', value: 1 });
    const parts = codec.decode(rsm.snapshot()) as { machine: Uint8Array; sessions: Uint8Array };
    expect(parts.machine).to.deep.equal(kv.snapshot());
    expect(SessionTable.restore(parts.sessions).status()).to.deep.equal(rsm.sessionsStatus());
  });

  it('restores a snapshot from before client sessions (the machine’s bytes alone) with an empty table', () => {
    const kv = new KvStateMachine();
    kv.apply({ type: 'set', key: 'a', value: 'old' });
    const data = kv.snapshot();
    const rsm = new ReplicatedStateMachine(new KvStateMachine());
    rsm.restore({ meta: { index: 7, term: 2, peers: ['p1'], old: null, digest: 1234, size: data.length }, data });
    expect(rsm.query({ type: 'get', key: 'a' })).to.deep.equal(ok('old'));
    expect(rsm.sessionsStatus()).to.deep.include({ active: 0, expired: 0 });
    expect(rsm.appliedDigest).to.equal(1234);
    expect(rsm.appliedIndex).to.equal(7);
  });

  it('changes nothing when a snapshot does not restore: a bad envelope, or bytes the machine refuses', () => {
    const rsm = new ReplicatedStateMachine(new KvStateMachine());
    const log = new Log();
    log.command(set('a', 1));
    rsm.apply(log.entries);
    const before = { digest: rsm.appliedDigest, bytes: rsm.snapshot() };
    const meta = { index: 9, term: 1, peers: ['p1'], old: null, digest: 99, size: 0 };
    expect(() => rsm.restore({ meta, data: codec.encode({ machine: 'not bytes', sessions: 1 }) })).to.throw(TypeError);
    expect(() => rsm.restore({ meta, data: packSnapshot(codec.encode('no pairs'), new SessionTable()) })).to.throw(/not a kv snapshot/);
    expect(rsm.appliedDigest).to.equal(before.digest);
    expect(rsm.appliedIndex).to.equal(1);
    expect(rsm.snapshot()).to.deep.equal(before.bytes);
  });

  it('a machine without snapshot() and restore() cannot be compacted: it says so and refuses both', () => {
    const rsm = new ReplicatedStateMachine({ apply: () => null });
    expect(rsm.canSnapshot).to.equal(false);
    expect(new ReplicatedStateMachine(new KvStateMachine()).canSnapshot).to.equal(true);
    expect(() => rsm.snapshot()).to.throw(/no snapshot/);
    const data = new Uint8Array([1]);
    expect(() => rsm.restore({ meta: { index: 1, term: 1, peers: [], old: null, digest: 5, size: 1 }, data })).to.throw(/no restore/);
    expect(rsm.appliedDigest).to.equal(FNV_OFFSET);
  });
});

describe('ReplicatedStateMachine: query', () => {
  it('answers from the applied state without changing it', () => {
    const rsm = new ReplicatedStateMachine(new KvStateMachine());
    expect(rsm.query({ type: 'get', key: 'a' })).to.deep.equal(ok(null));
    const log = new Log();
    log.command(set('a', [1, 2]));
    rsm.apply(log.entries);
    const digest = rsm.appliedDigest;
    expect(rsm.query({ type: 'get', key: 'a' })).to.deep.equal(ok([1, 2]));
    expect(rsm.appliedDigest).to.equal(digest);
  });

  it('answers a refused query with its error: INVALID_COMMAND (the kv’s, or no query()), STATE_MACHINE_ERROR for a plain Error', () => {
    const kv = new ReplicatedStateMachine(new KvStateMachine());
    const refused = kv.query({ type: 'set', key: 'a', value: 1 });
    expect(refused).to.deep.include({ ok: false });
    expect((refused as { error: { code: string } }).error.code).to.equal('INVALID_COMMAND');
    const none = new ReplicatedStateMachine({ apply: () => null }).query('anything');
    expect(none).to.deep.equal({
      ok: false,
      error: { code: 'INVALID_COMMAND', message: 'this state machine does not answer queries', leader: null },
    });
    const throwing: StateMachine = {
      apply: () => null,
      query: () => {
        throw new Error('boom');
      },
    };
    expect(new ReplicatedStateMachine(throwing).query(1)).to.deep.equal({
      ok: false,
      error: { code: 'STATE_MACHINE_ERROR', message: 'boom', leader: null },
    });
  });

  it('answers null for a query whose answer is undefined', () => {
    expect(new ReplicatedStateMachine({ apply: () => null, query: () => undefined }).query(1)).to.deep.equal(ok(null));
  });
});
