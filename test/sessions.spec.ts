/**
 * Client sessions (thesis §6.3, exactly-once commands), as plain units with no peers or threads:
 *
 *  - `SessionTable` (src/sessions.ts): dedupe by (client, seq), results forgotten by the client's
 *    ack, refusals (unknown/expired sessions, stale copies, bad entries, state machine errors),
 *    expiry by the log's own clock, determinism (equal logs give equal tables, also for a table
 *    restored from a snapshot midway), and the snapshot format (`packSnapshot`/`unpackSnapshot`,
 *    src/state-machines/replicated.ts);
 *  - `ClientSession` (src/client-session.ts): one registration per session however many ops
 *    begin at once, the ack sent with each op, and a new session after an expiry.
 *
 * The state machine is a counting fake: every command it applies is counted, so "applied once"
 * is checked, not assumed.
 */
import { expect } from 'chai';
import { ClientSession, type Register, type Ticket } from '../src/client-session.js';
import { Rng } from '../src/rng.js';
import { InvalidCommandError } from '../src/errors.js';
import { codec, encodeCommand, encodeLogCommand } from '../src/codec.js';
import { type WireError } from '../src/messages.js';
import { SessionTable, type Outcome } from '../src/sessions.js';
import { packSnapshot, unpackSnapshot } from '../src/state-machines/replicated.js';

// ---------------------------------------------------------------------------------------------
// Helpers

/** A seeded PRNG (the project's own), so a failing run can be replayed from its seed. */
function seeded(seed: number): () => number {
  const rng = new Rng(seed);
  return () => rng.next();
}

const randomInt = (rand: () => number, n: number) => Math.floor(rand() * n);

function randomBytes(rand: () => number, maxLength: number): Uint8Array {
  const bytes = new Uint8Array(1 + randomInt(rand, maxLength));
  for (let i = 0; i < bytes.length; i++) bytes[i] = randomInt(rand, 256);
  return bytes;
}

const reg = (client: string, timeoutMs = 10_000) => encodeLogCommand({ type: 'register', client, timeoutMs });
const op = (client: string, seq: number, command: unknown = `cmd ${seq}`, ack = 1) =>
  encodeLogCommand({ type: 'op', client, seq, ack, command });
const idem = (command: unknown = 'idempotent') => encodeLogCommand({ type: 'idempotent', command });

/** A counting state machine: each applied command bumps `applied`; the result is a fresh object. */
class CountingMachine {
  applied = 0;
  readonly commands: unknown[] = [];
  readonly run = (command: unknown): unknown => {
    this.applied++;
    this.commands.push(command);
    return { applied: this.applied, command, nested: { list: [1, 'two', null] } };
  };
}

/** A table fed entries at consecutive indexes, with its own counting machine. */
class Feed {
  index = 0;
  readonly machine = new CountingMachine();
  constructor(readonly table = new SessionTable()) {}

  apply(time: number | undefined, data: Uint8Array, run: (command: unknown) => unknown = this.machine.run): Outcome {
    return this.table.apply(++this.index, time, data, run);
  }

  get active(): number {
    return this.table.status().active;
  }
}

function resultOf(outcome: Outcome): unknown {
  if (!outcome.ok) throw new Error(`expected a result, got ${outcome.error.code}: ${outcome.error.message}`);
  return outcome.result;
}

function errorOf(outcome: Outcome, code: string, label = ''): WireError {
  if (outcome.ok) throw new Error(`${label} expected ${code}, got the result ${JSON.stringify(outcome.result)}`);
  expect(outcome.error.code, `${label} ${outcome.error.message}`).to.equal(code);
  expect(outcome.error.leader).to.equal(null);
  return outcome.error;
}

// ---------------------------------------------------------------------------------------------
// SessionTable: dedupe and ack

describe('SessionTable: each (client, seq) is applied once (§6.3)', () => {
  it('applies an op once and answers a duplicate with the saved result, without running it again', () => {
    const f = new Feed();
    expect(resultOf(f.apply(0, reg('c')))).to.equal(null);

    const command = { type: 'set', key: 'k', value: [1, 2, 3] };
    const first = resultOf(f.apply(10, op('c', 1, command)));
    expect(first).to.deep.equal({ applied: 1, command, nested: { list: [1, 'two', null] } });
    expect(f.machine.applied).to.equal(1);

    for (let i = 0; i < 3; i++) expect(resultOf(f.apply(20, op('c', 1, command)))).to.deep.equal(first);
    expect(f.machine.applied).to.equal(1);

    expect(resultOf(f.apply(30, op('c', 2, command)))).to.deep.include({ applied: 2 });
    expect(f.machine.applied).to.equal(2);
    expect(f.machine.commands).to.deep.equal([command, command]);
  });

  it('saves a copy of the result: changing the object the state machine returned does not change a duplicate’s answer', () => {
    const f = new Feed();
    f.apply(0, reg('c'));
    const live = { count: 1, items: ['a'] };
    f.apply(1, op('c', 1), () => live);
    live.count = 99;
    live.items.push('b');
    expect(resultOf(f.apply(2, op('c', 1)))).to.deep.equal({ count: 1, items: ['a'] });
  });

  it('answers a duplicate by (client, seq), whatever command the copy carries', () => {
    const f = new Feed();
    f.apply(0, reg('c'));
    const first = resultOf(f.apply(1, op('c', 1, 'original')));
    expect(resultOf(f.apply(2, op('c', 1, 'something else')))).to.deep.equal(first);
    expect(f.machine.commands).to.deep.equal(['original']);
  });

  it('keeps the sessions of different clients apart: the same seq of another client is a new command', () => {
    const f = new Feed();
    f.apply(0, reg('a'));
    f.apply(0, reg('b'));
    const a1 = resultOf(f.apply(1, op('a', 1, 'from a')));
    const b1 = resultOf(f.apply(2, op('b', 1, 'from b')));
    expect(a1).to.deep.include({ applied: 1, command: 'from a' });
    expect(b1).to.deep.include({ applied: 2, command: 'from b' });
    expect(resultOf(f.apply(3, op('a', 1)))).to.deep.equal(a1);
    expect(resultOf(f.apply(4, op('b', 1)))).to.deep.equal(b1);
    expect(f.machine.applied).to.equal(2);
  });

  it('applies pipelined seqs that arrive out of order once each, and answers each duplicate with its own result', () => {
    const f = new Feed();
    f.apply(0, reg('c'));
    const r3 = resultOf(f.apply(1, op('c', 3, 'third')));
    const r2 = resultOf(f.apply(2, op('c', 2, 'second')));
    expect(r3).to.deep.include({ applied: 1, command: 'third' });
    expect(r2).to.deep.include({ applied: 2, command: 'second' });

    expect(resultOf(f.apply(3, op('c', 3)))).to.deep.equal(r3);
    expect(resultOf(f.apply(4, op('c', 2)))).to.deep.equal(r2);
    expect(f.machine.applied).to.equal(2);

    // Seq 1 never arrived, and ack 1 still waits for it: it is applied when it does.
    expect(resultOf(f.apply(5, op('c', 1, 'first')))).to.deep.include({ applied: 3, command: 'first' });
    expect(f.machine.applied).to.equal(3);
  });
});

describe('SessionTable: the client’s ack forgets the results below it (pipelined §6.3)', () => {
  /** The seqs whose results `client`'s session still holds, as its snapshot carries them. */
  function savedSeqs(table: SessionTable, client: string): number[] {
    const image = codec.decode(table.snapshot()) as { sessions: [string, number, number, number, [number, unknown][]][] };
    const session = image.sessions.find((s) => s[0] === client);
    if (!session) throw new Error(`no session ${client} in the snapshot`);
    return session[4].map(([seq]) => seq);
  }

  /** A session `c` with seqs 1..n applied under ack 1; returns the feed and the results by seq. */
  function withResults(n: number): { f: Feed; results: Map<number, unknown> } {
    const f = new Feed();
    f.apply(0, reg('c'));
    const results = new Map<number, unknown>();
    for (let seq = 1; seq <= n; seq++) results.set(seq, resultOf(f.apply(seq, op('c', seq))));
    return { f, results };
  }

  it('refuses a later copy of a seq below the ack with STALE_REQUEST and does not apply it', () => {
    const { f, results } = withResults(3);
    // Seq 4 says: the answers to 1 and 2 have arrived.
    results.set(4, resultOf(f.apply(10, op('c', 4, 'cmd 4', 3))));
    expect(f.machine.applied).to.equal(4);
    expect(savedSeqs(f.table, 'c'), 'results kept').to.deep.equal([3, 4]);

    for (const seq of [1, 2]) expect(errorOf(f.apply(11, op('c', seq)), 'STALE_REQUEST').message).to.match(/answered already/);
    expect(f.machine.applied).to.equal(4);

    // Seqs at and above the ack keep their results.
    for (const seq of [3, 4]) expect(resultOf(f.apply(12, op('c', seq)))).to.deep.equal(results.get(seq));
    expect(f.machine.applied).to.equal(4);
  });

  it('never takes an ack back: a copy carrying an older ack does not bring forgotten results back', () => {
    const { f } = withResults(3);
    f.apply(10, op('c', 3, 'cmd 3', 3));
    // A late copy of seq 3 with ack 1 (sent before the client's ack moved on).
    f.apply(11, op('c', 3, 'cmd 3', 1));
    errorOf(f.apply(12, op('c', 2, 'cmd 2', 1)), 'STALE_REQUEST');
    expect(f.machine.applied).to.equal(3);
  });

  it('forgets correctly when the ack jumps far past the saved results', () => {
    const { f, results } = withResults(5);
    // A jump of 49 over five saved results (the other way through forget()).
    const r50 = resultOf(f.apply(10, op('c', 50, 'cmd 50', 50)));
    expect(savedSeqs(f.table, 'c'), 'results kept').to.deep.equal([50]);
    for (const seq of results.keys()) errorOf(f.apply(11, op('c', seq)), 'STALE_REQUEST');
    errorOf(f.apply(12, op('c', 49)), 'STALE_REQUEST');
    expect(resultOf(f.apply(13, op('c', 50)))).to.deep.equal(r50);
    expect(f.machine.applied).to.equal(6);
  });

  it('refuses an op whose own seq is below the ack it carries (it says it was answered already)', () => {
    const f = new Feed();
    f.apply(0, reg('c'));
    errorOf(f.apply(1, op('c', 1, 'x', 2)), 'STALE_REQUEST');
    expect(f.machine.applied).to.equal(0);
  });
});

describe('SessionTable: registration and unknown sessions', () => {
  it('refuses an op of a client that never registered with SESSION_EXPIRED, not applying it', () => {
    const f = new Feed();
    const error = errorOf(f.apply(0, op('stranger', 1)), 'SESSION_EXPIRED');
    expect(error.message).to.include('stranger');
    expect(f.machine.applied).to.equal(0);
    expect(f.table.status()).to.deep.include({ active: 0, expired: 0 });
  });

  it('keeps the session as it is when a client registers twice: a duplicate after the second registration is still caught', () => {
    const f = new Feed();
    f.apply(0, reg('c'));
    const first = resultOf(f.apply(1, op('c', 1)));
    f.apply(2, reg('c'));
    expect(f.active).to.equal(1);
    expect(resultOf(f.apply(3, op('c', 1)))).to.deep.equal(first);
    expect(f.machine.applied).to.equal(1);
  });

  it('counts a repeated registration as activity: it moves the session’s expiry later', () => {
    const f = new Feed();
    f.apply(0, reg('c', 1000));
    f.apply(800, reg('c', 1000));
    f.apply(1500, idem());
    expect(f.active).to.equal(1);
    f.apply(1801, idem());
    expect(f.active).to.equal(0);
  });
});

// ---------------------------------------------------------------------------------------------
// SessionTable: expiry by the log's clock

describe('SessionTable: sessions expire by the log’s clock (§6.3)', () => {
  it('keeps a session until an entry’s time is past lastActive + timeoutMs, then refuses its ops with SESSION_EXPIRED', () => {
    const f = new Feed();
    f.apply(0, reg('c', 1000));
    f.apply(999, idem());
    f.apply(1000, idem());
    expect(f.table.status()).to.deep.include({ active: 1, expired: 0 });

    f.apply(1001, idem());
    expect(f.table.status()).to.deep.include({ active: 0, expired: 1 });
    const ran = f.machine.applied;
    errorOf(f.apply(1002, op('c', 1)), 'SESSION_EXPIRED');
    expect(f.machine.applied).to.equal(ran);
  });

  it('serves an op stamped exactly at the deadline, and refuses one stamped past it (the clock moves before the op is looked at)', () => {
    const atDeadline = new Feed();
    atDeadline.apply(0, reg('c', 1000));
    resultOf(atDeadline.apply(1000, op('c', 1)));

    const late = new Feed();
    late.apply(0, reg('c', 1000));
    errorOf(late.apply(1001, op('c', 1)), 'SESSION_EXPIRED');
    expect(late.machine.applied).to.equal(0);
    expect(late.table.status().expired).to.equal(1);
  });

  it('counts an op as activity: the session lives timeoutMs past its latest op', () => {
    const f = new Feed();
    f.apply(0, reg('c', 1000));
    resultOf(f.apply(900, op('c', 1)));
    f.apply(1900, idem());
    expect(f.active).to.equal(1);
    f.apply(1901, idem());
    expect(f.active).to.equal(0);
  });

  it('counts a duplicate and a refused stale copy as activity too', () => {
    const f = new Feed();
    f.apply(0, reg('c', 1000));
    f.apply(100, op('c', 1));
    f.apply(200, op('c', 2, 'cmd 2', 2));
    f.apply(900, op('c', 2)); // a duplicate
    f.apply(1800, op('c', 1)); // a stale copy
    f.apply(2800, idem());
    expect(f.active).to.equal(1);
    f.apply(2801, idem());
    expect(f.active).to.equal(0);
  });

  it('never lets the clock go back: an earlier-stamped entry neither revives a session nor moves the clock', () => {
    const f = new Feed();
    f.apply(0, reg('a', 1000));
    f.apply(5000, idem());
    expect(f.table.status()).to.deep.include({ active: 0, expired: 1 });

    const before = f.table.status();
    f.apply(100, idem());
    expect(f.table.status(), 'an older time changed the table').to.deep.equal(before);
    errorOf(f.apply(500, op('a', 1)), 'SESSION_EXPIRED');

    // Registered by an entry stamped 100, but the clock is 5000: it lives until 6000.
    f.apply(100, reg('b', 1000));
    f.apply(6000, idem());
    expect(f.active).to.equal(1);
    f.apply(6001, idem());
    expect(f.table.status()).to.deep.include({ active: 0, expired: 2 });
  });

  it('does not move the clock for an entry without a time', () => {
    const f = new Feed();
    f.apply(0, reg('a', 1000));
    f.apply(900, idem());
    const before = f.table.status();
    for (let i = 0; i < 5; i++) f.apply(undefined, idem());
    expect(f.table.status()).to.deep.equal(before);

    // Registered at the clock (900), not at some later time.
    f.apply(undefined, reg('b', 1000));
    f.apply(1900, idem());
    expect(f.table.status()).to.deep.include({ active: 1, expired: 1 });
    f.apply(1901, idem());
    expect(f.table.status()).to.deep.include({ active: 0, expired: 2 });
  });

  it('expires every idle session at the same entry when the clock jumps past several deadlines', () => {
    const f = new Feed();
    for (const [client, timeoutMs] of [['x', 100], ['y', 200], ['z', 5000]] as const) f.apply(0, reg(client, timeoutMs));
    f.apply(1000, idem());
    expect(f.table.status()).to.deep.include({ active: 1, expired: 2 });
    errorOf(f.apply(1000, op('x', 1)), 'SESSION_EXPIRED');
    errorOf(f.apply(1000, op('y', 1)), 'SESSION_EXPIRED');
    resultOf(f.apply(1000, op('z', 1)));
  });

  it('lets an expired client id register again as a fresh session (seqs start over)', () => {
    const f = new Feed();
    f.apply(0, reg('c', 100));
    resultOf(f.apply(10, op('c', 1)));
    f.apply(500, idem(), () => null);
    expect(f.table.status()).to.deep.include({ active: 0, expired: 1 });
    f.apply(600, reg('c', 100));
    // A new session: seq 1 is not a duplicate of the old session's seq 1.
    expect(resultOf(f.apply(610, op('c', 1)))).to.deep.include({ applied: 2 });
  });
});

// ---------------------------------------------------------------------------------------------
// SessionTable: refusals that count as applied

describe('SessionTable: commands the state machine refuses', () => {
  it('answers INVALID_COMMAND when run throws an InvalidCommandError, and the duplicate gets the same error without a second run', () => {
    const f = new Feed();
    f.apply(0, reg('c'));
    let runs = 0;
    const refuse = () => {
      runs++;
      throw new InvalidCommandError('bad');
    };
    const error = errorOf(f.apply(1, op('c', 1), refuse), 'INVALID_COMMAND');
    expect(error.message).to.equal('bad');
    expect(f.apply(2, op('c', 1), refuse)).to.deep.equal({ ok: false, error });
    // Even a machine that would now accept it is not asked: the refusal was the answer.
    expect(f.apply(3, op('c', 1))).to.deep.equal({ ok: false, error });
    expect(runs).to.equal(1);
    expect(f.machine.applied).to.equal(0);
  });

  it('answers STATE_MACHINE_ERROR, keeping the message, when run throws a plain Error', () => {
    const f = new Feed();
    f.apply(0, reg('c'));
    const error = errorOf(
      f.apply(1, op('c', 1), () => {
        throw new Error('boom');
      }),
      'STATE_MACHINE_ERROR',
    );
    expect(error.message).to.equal('boom');
    expect(f.apply(2, op('c', 1))).to.deep.equal({ ok: false, error });
    expect(f.machine.applied).to.equal(0);
  });

  it('answers STATE_MACHINE_ERROR ("not encodable") for a result msgpack cannot carry, for the duplicate too, and still snapshots', () => {
    const f = new Feed();
    f.apply(0, reg('c'));
    let runs = 0;
    const unencodable = (kind: 'symbol' | 'bigint') => () => {
      runs++;
      return kind === 'symbol' ? { ok: 1, tag: Symbol('s') } : { big: 2n ** 70n };
    };
    for (const [seq, kind] of [[1, 'symbol'], [2, 'bigint']] as const) {
      const error = errorOf(f.apply(seq, op('c', seq), unencodable(kind)), 'STATE_MACHINE_ERROR');
      expect(error.message, kind).to.match(/not encodable/);
      expect(f.apply(10 + seq, op('c', seq))).to.deep.equal({ ok: false, error });
    }
    expect(runs).to.equal(2);
    expect(f.machine.applied).to.equal(0);

    const restored = SessionTable.restore(f.table.snapshot());
    expect(restored.status()).to.deep.equal(f.table.status());
    errorOf(restored.apply(f.index + 1, 20, op('c', 1), f.machine.run), 'STATE_MACHINE_ERROR');
  });

  it('answers null for a command whose run returns undefined, and the duplicate too', () => {
    const f = new Feed();
    f.apply(0, reg('c'));
    expect(f.apply(1, op('c', 1), () => undefined)).to.deep.equal({ ok: true, result: null });
    expect(f.apply(2, op('c', 1))).to.deep.equal({ ok: true, result: null });
  });
});

describe('SessionTable: entries that hold no session command', () => {
  it('refuses bytes that do not decode with INVALID_COMMAND and never runs them (seeded)', () => {
    const SEED = 6_3_2024;
    const rand = seeded(SEED);
    const f = new Feed();
    f.apply(0, reg('c'));
    let undecodable = 0;
    for (let i = 0; i < 2000; i++) {
      const bytes = randomBytes(rand, 32);
      try {
        codec.decode(bytes);
        continue;
      } catch {
        undecodable++;
      }
      errorOf(f.apply(1, bytes), 'INVALID_COMMAND');
    }
    errorOf(f.apply(1, new Uint8Array(0)), 'INVALID_COMMAND');
    expect(undecodable, `SEED=${SEED}`).to.be.greaterThan(100);
    expect(f.machine.applied, `SEED=${SEED}`).to.equal(0);
  });

  it('refuses malformed log commands with INVALID_COMMAND', () => {
    const f = new Feed();
    f.apply(0, reg('c'));
    const bad: [string, Uint8Array][] = [
      ['seq 0', codec.encode({ type: 'op', client: 'c', seq: 0, ack: 1, command: 1 })],
      ['a numeric client', codec.encode({ type: 'op', client: 7, seq: 1, ack: 1, command: 1 })],
      ['an op without its command', codec.encode({ type: 'op', client: 'c', seq: 1, ack: 1 })],
      ['a negative ack', codec.encode({ type: 'op', client: 'c', seq: 1, ack: -1, command: 1 })],
      ['an idempotent without its command', codec.encode({ type: 'idempotent' })],
      ['a registration with timeout 0', codec.encode({ type: 'register', client: 'd', timeoutMs: 0 })],
    ];
    for (const [label, data] of bad) errorOf(f.apply(1, data), 'INVALID_COMMAND', label);
    expect(f.machine.applied).to.equal(0);
    expect(f.active, 'the bad registration opened a session').to.equal(1);
  });

  it('applies a plain command, as entries written before client sessions hold, once per copy and without a session', () => {
    const f = new Feed();
    const plain: [string, unknown][] = [
      ['a kv command', { type: 'set', key: 'k', value: 1 }],
      ['a string', 'op'],
      ['null', null],
      ['an unknown type', { type: 'unregister', client: 'c' }],
    ];
    for (const [label, command] of plain) {
      const data = encodeCommand(command);
      const first = resultOf(f.apply(1, data)) as { command: unknown };
      expect(first.command, label).to.deep.equal(command);
      resultOf(f.apply(2, data));
    }
    expect(f.machine.applied).to.equal(2 * plain.length);
    expect(f.table.status().active).to.equal(0);
  });

  it('runs an idempotent command every time it appears: no session, no dedupe, nothing saved', () => {
    const f = new Feed();
    const data = idem({ type: 'get', key: 'k' });
    const results = [1, 2, 3].map((t) => resultOf(f.apply(t, data)));
    expect(results.map((r) => (r as { applied: number }).applied)).to.deep.equal([1, 2, 3]);
    expect(f.machine.applied).to.equal(3);

    // A refusal is not saved either: the next copy runs again.
    let runs = 0;
    const refuseOnce = (command: unknown) => {
      if (runs++ === 0) throw new InvalidCommandError('not yet');
      return command;
    };
    errorOf(f.apply(4, data, refuseOnce), 'INVALID_COMMAND');
    expect(resultOf(f.apply(5, data, refuseOnce))).to.deep.equal({ type: 'get', key: 'k' });
    expect(f.table.status().active).to.equal(0);
  });
});

// ---------------------------------------------------------------------------------------------
// Determinism: equal logs give equal tables (the table is replicated state)

/** A state machine that counts applications per command id and snapshots to bytes. */
class IdMachine {
  applied = 0;
  counts = new Map<string, number>();
  readonly run = (command: unknown): unknown => {
    const { id, n } = (command ?? {}) as { id: string; n: number };
    this.applied++;
    // Garbage that decodes is applied as a plain command (as before sessions): it has no id.
    if (typeof id === 'string') this.counts.set(id, (this.counts.get(id) ?? 0) + 1);
    if (n % 11 === 0) throw new InvalidCommandError(`${n} is a multiple of 11`);
    return { id, applied: this.applied, n };
  };
  snapshot(): Uint8Array {
    return codec.encode([this.applied, [...this.counts]]);
  }
  static restore(bytes: Uint8Array): IdMachine {
    const [applied, counts] = codec.decode(bytes) as [number, [string, number][]];
    const m = new IdMachine();
    m.applied = applied;
    m.counts = new Map(counts);
    return m;
  }
}

interface Step {
  index: number;
  time: number | undefined;
  data: Uint8Array;
}

/**
 * A random log (seeded): registrations (each retried once, right away), ops of current and
 * expired clients with new seqs, duplicates and random acks, idempotent commands, garbage, and
 * a clock that creeps, stalls, goes back, and now and then jumps past several deadlines.
 * A client whose session may have expired registers under a new id, as ClientSession does, so
 * no (client, seq) may ever be applied twice.
 */
function randomLog(seed: number, length: number): Step[] {
  const rand = seeded(seed);
  // Not in sorted order, so a table's Map order differs from a restored (sorted) one's.
  const names = ['zeta', 'alpha', 'mu', 'beta', 'omega', 'kappa'];
  const clients = names.map((name) => ({ name, gen: 0, id: '', nextSeq: 1, ack: 1 }));
  const steps: Step[] = [];
  let now = 1_700_000_000_000;
  const push = (time: number | undefined, data: Uint8Array) => steps.push({ index: steps.length + 1, time, data });
  while (steps.length < length) {
    const r = rand();
    let time: number | undefined;
    if (r < 0.08) time = undefined;
    else if (r < 0.13) time = now - randomInt(rand, 3000);
    else if (r < 0.17) time = now += 1500 + randomInt(rand, 2000);
    else time = now += randomInt(rand, 80);

    const c = clients[randomInt(rand, clients.length)]!;
    const kind = rand();
    if (kind < 0.12 || c.id === '') {
      c.gen++;
      c.id = `${c.name}.${c.gen}`;
      c.nextSeq = 1;
      c.ack = 1;
      const data = reg(c.id, [300, 700, 1400][randomInt(rand, 3)]!);
      push(time, data);
      push(time, data); // the retried registration
    } else if (kind < 0.82) {
      const duplicate = c.nextSeq > 1 && rand() < 0.3;
      const seq = duplicate ? 1 + randomInt(rand, c.nextSeq - 1) : c.nextSeq++;
      if (rand() < 0.25) c.ack = Math.max(c.ack, 1 + randomInt(rand, seq));
      const ack = rand() < 0.1 ? 1 : c.ack; // now and then a copy sent before the ack moved
      push(time, op(c.id, seq, { id: `${c.id}/${seq}`, n: randomInt(rand, 1000) }, ack));
    } else if (kind < 0.95) {
      push(time, idem({ id: `idem/${steps.length}`, n: randomInt(rand, 1000) }));
    } else {
      push(time, randomBytes(rand, 16));
    }
  }
  return steps.slice(0, length);
}

/** Feed `steps` to a table and machine; the outcomes, and how many sessions expired at each step. */
function replay(table: SessionTable, machine: IdMachine, steps: Step[]): { outcomes: Outcome[]; expiredAt: number[] } {
  const outcomes: Outcome[] = [];
  const expiredAt: number[] = [];
  for (const s of steps) {
    const before = table.status().expired;
    outcomes.push(table.apply(s.index, s.time, s.data, machine.run));
    expiredAt.push(table.status().expired - before);
  }
  return { outcomes, expiredAt };
}

describe('SessionTable: equal logs give equal tables', () => {
  const SEED = 20_240_603;
  const LENGTH = 3000;
  const steps = randomLog(SEED, LENGTH);

  it('gives two tables fed the same random log the same outcomes and the same status (seeded)', () => {
    const [a, b] = [new SessionTable(), new SessionTable()];
    const [ma, mb] = [new IdMachine(), new IdMachine()];
    const ra = replay(a, ma, steps);
    const rb = replay(b, mb, steps);
    expect(rb.outcomes, `SEED=${SEED}`).to.deep.equal(ra.outcomes);
    expect(b.status()).to.deep.equal(a.status());
    expect(mb.snapshot()).to.deep.equal(ma.snapshot());

    // The log exercised what it is meant to: dedupe, stale copies, expiries (several at once),
    // refusals by the machine, and garbage.
    const codes = new Map<string, number>();
    for (const o of ra.outcomes) if (!o.ok) codes.set(o.error.code, (codes.get(o.error.code) ?? 0) + 1);
    for (const code of ['SESSION_EXPIRED', 'STALE_REQUEST', 'INVALID_COMMAND']) {
      expect(codes.get(code) ?? 0, `${code} in SEED=${SEED}`).to.be.greaterThan(5);
    }
    expect(a.status().expired, `SEED=${SEED}`).to.be.greaterThan(20);
    expect(Math.max(...ra.expiredAt), `no entry expired several sessions, SEED=${SEED}`).to.be.at.least(2);
  });

  it('applies no (client, seq) twice, and answers every copy with the first answer (seeded)', () => {
    const table = new SessionTable();
    const machine = new IdMachine();
    const { outcomes } = replay(table, machine, steps);
    for (const [id, count] of machine.counts) expect(count, `${id} applied ${count} times, SEED=${SEED}`).to.equal(1);

    const first = new Map<string, Outcome>();
    let duplicates = 0;
    steps.forEach((s, i) => {
      const cmd = decodeOp(s.data);
      const o = outcomes[i]!;
      if (!cmd || (!o.ok && (o.error.code === 'SESSION_EXPIRED' || o.error.code === 'STALE_REQUEST'))) return;
      const seen = first.get(cmd);
      if (!seen) first.set(cmd, o);
      else {
        duplicates++;
        expect(o, `${cmd} at index ${s.index}, SEED=${SEED}`).to.deep.equal(seen);
      }
    });
    expect(duplicates, `SEED=${SEED}`).to.be.greaterThan(50);
  });

  it('gives a table restored from a snapshot midway the same outcomes and final status as the original (seeded)', () => {
    const original = new SessionTable();
    const machine = new IdMachine();
    const full = replay(original, machine, steps);

    for (let cut = 0; cut <= LENGTH; cut += 300) {
      const table = new SessionTable();
      const head = new IdMachine();
      replay(table, head, steps.slice(0, cut));
      const parts = unpackSnapshot(packSnapshot(head.snapshot(), table));
      const restored = parts.table;
      const restoredMachine = IdMachine.restore(parts.machine);

      const tail = replay(restored, restoredMachine, steps.slice(cut));
      expect(tail.outcomes, `restored after ${cut} entries, SEED=${SEED}`).to.deep.equal(full.outcomes.slice(cut));
      expect(restored.status(), `restored after ${cut} entries`).to.deep.equal(original.status());
      expect(restoredMachine.snapshot()).to.deep.equal(machine.snapshot());
    }
  });

  it('hashes expiries in client id order: same expiryDigest whatever a table’s Map order (a restored one is sorted)', () => {
    /** Register `clients` in this order (timeout 1000 at time 0), optionally restore, then expire them all at `expireAt`. */
    const expireAll = (clients: string[], restore: boolean, expireAt = 10) => {
      let table = new SessionTable();
      clients.forEach((client, i) => table.apply(i + 1, 0, reg(client, 1000), () => null));
      if (restore) table = SessionTable.restore(table.snapshot());
      for (let index = clients.length + 1; index <= expireAt; index++) table.apply(index, index === expireAt ? 5000 : 0, idem(), () => null);
      return table.status();
    };
    const original = expireAll(['zeta', 'alpha'], false);
    expect(original).to.deep.include({ active: 0, expired: 2 });
    expect(expireAll(['zeta', 'alpha'], true)).to.deep.equal(original);
    expect(expireAll(['alpha', 'zeta'], false)).to.deep.equal(original);
    // The digest does see where the expiries happened.
    expect(expireAll(['zeta', 'alpha'], false, 11).expiryDigest).to.not.equal(original.expiryDigest);
  });
});

/** The `client/seq` of an op entry, or null for any other entry. */
function decodeOp(data: Uint8Array): string | null {
  try {
    const v = codec.decode(data) as { type?: unknown; client?: unknown; seq?: unknown };
    return v !== null && typeof v === 'object' && v.type === 'op' ? `${String(v.client)}/${String(v.seq)}` : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

describe('SessionTable snapshots: packSnapshot / unpackSnapshot / restore', () => {
  /** A table with sessions, saved results and errors, an expired session and a forgotten result. */
  function busyTable(): SessionTable {
    const f = new Feed();
    f.apply(0, reg('gone', 100));
    f.apply(0, reg('c', 10_000));
    f.apply(0, reg('d', 10_000));
    f.apply(10, op('c', 1, { set: 1 }));
    f.apply(20, op('c', 2, { set: 2 }, 2));
    f.apply(30, op('d', 1), () => {
      throw new InvalidCommandError('nope');
    });
    f.apply(500, op('d', 2));
    return f.table;
  }

  it('round-trips the machine’s bytes exactly and the table as it was', () => {
    const table = busyTable();
    for (const machine of [new Uint8Array(0), Uint8Array.from({ length: 256 }, (_, i) => i), codec.encode({ big: 'x'.repeat(5000) })]) {
      const parts = unpackSnapshot(packSnapshot(machine, table));
      expect(parts.machine).to.be.instanceOf(Uint8Array);
      expect([...parts.machine]).to.deep.equal([...machine]);
      expect(parts.table.status()).to.deep.equal(table.status());
      expect([...parts.table.snapshot()]).to.deep.equal([...table.snapshot()]);
    }
    expect(table.status()).to.deep.include({ active: 2, expired: 1 });
  });

  it('restores a table that behaves as the original: saved answers, forgotten results, expired sessions', () => {
    const original = busyTable();
    const restored = SessionTable.restore(original.snapshot());
    const [m1, m2] = [new CountingMachine(), new CountingMachine()];
    const probes = [op('c', 1), op('c', 2), op('d', 1), op('d', 2), op('gone', 1), op('c', 3), op('c', 3)];
    probes.forEach((data, i) => {
      expect(restored.apply(100 + i, 600, data, m2.run), `probe ${i}`).to.deep.equal(original.apply(100 + i, 600, data, m1.run));
    });
    expect(m2.applied, 'only the new seq 3 ran').to.equal(1);
    errorOf(restored.apply(200, 600, op('c', 1), m2.run), 'STALE_REQUEST');
    errorOf(restored.apply(200, 600, op('gone', 1), m2.run), 'SESSION_EXPIRED');
    errorOf(original.apply(200, 600, op('c', 1), m1.run), 'STALE_REQUEST');
    errorOf(original.apply(200, 600, op('gone', 1), m1.run), 'SESSION_EXPIRED');
    expect(restored.status()).to.deep.equal(original.status());
  });

  it('restores an empty table as an empty table', () => {
    const restored = SessionTable.restore(new SessionTable().snapshot());
    expect(restored.status()).to.deep.equal(new SessionTable().status());
    errorOf(restored.apply(1, 0, op('c', 1), () => 1), 'SESSION_EXPIRED');
  });

  it('throws TypeError from restore for a value that is not a table image', () => {
    const bytes = codec.encode('result');
    const valid = { clock: 5, expired: 0, expiryDigest: 0, sessions: [['c', 1000, 0, 1, [[1, { ok: true, packed: bytes }], [2, { ok: true, result: 'plain' }]]]] };
    expect(SessionTable.restore(codec.encode(valid)).status().active, 'the template itself is valid').to.equal(1);

    const withSession = (s: unknown[]) => ({ ...valid, sessions: [s] });
    const bad: [string, unknown][] = [
      ['a number', 42],
      ['null', null],
      ['an array', []],
      ['an empty object', {}],
      ['a string clock', { ...valid, clock: 'now' }],
      ['an infinite clock', { ...valid, clock: Infinity }],
      ['a negative expired count', { ...valid, expired: -1 }],
      ['a fractional expiryDigest', { ...valid, expiryDigest: 0.5 }],
      ['sessions as an object', { ...valid, sessions: {} }],
      ['a session of 4 fields', withSession(['c', 1000, 0, 1])],
      ['a numeric client', withSession([7, 1000, 0, 1, []])],
      ['a negative timeout', withSession(['c', -1, 0, 1, []])],
      ['a string lastActive', withSession(['c', 1000, 'then', 1, []])],
      ['results as an object', withSession(['c', 1000, 0, 1, {}])],
      ['a packed result that is not bytes', withSession(['c', 1000, 0, 1, [[1, { ok: true, packed: 'plain' }]]])],
      ['an unpacked result that is not a primitive', withSession(['c', 1000, 0, 1, [[1, { ok: true, result: [1] }]]])],
      ['both packed and unpacked', withSession(['c', 1000, 0, 1, [[1, { ok: true, packed: bytes, result: 1 }]]])],
      ['an error without a message', withSession(['c', 1000, 0, 1, [[1, { ok: false, error: { code: 'X' } }]]])],
      ['an outcome without ok', withSession(['c', 1000, 0, 1, [[1, { packed: bytes }]]])],
      ['a negative seq', withSession(['c', 1000, 0, 1, [[-1, { ok: true, packed: bytes }]]])],
      ['a result pair of 3', withSession(['c', 1000, 0, 1, [[1, { ok: true, packed: bytes }, 0]]])],
    ];
    for (const [label, value] of bad) expect(() => SessionTable.restore(codec.encode(value)), label).to.throw(TypeError);
  });

  it('unpackSnapshot: bytes that are no envelope are a snapshot from before sessions, with an empty table', () => {
    for (const machine of [codec.encode([['k', 1]]), codec.encode(42), codec.encode(null), new Uint8Array([0xc1]), new Uint8Array(0)]) {
      const parts = unpackSnapshot(machine);
      expect(parts.machine).to.equal(machine);
      expect(parts.table.status()).to.deep.equal(new SessionTable().status());
    }
  });

  it('throws TypeError from unpackSnapshot for an envelope whose parts are wrong', () => {
    const machine = new Uint8Array([1, 2, 3]);
    const sessions = new SessionTable().snapshot();
    expect(unpackSnapshot(codec.encode({ machine, sessions })).machine).to.deep.equal(machine);
    const bad: [string, unknown][] = [
      ['a string machine', { machine: 'bytes', sessions }],
      ['no sessions', { machine }],
      ['no machine', { sessions }],
      ['sessions that are not a table', { machine, sessions: codec.encode(42) }],
      ['the table image inline, not as bytes', { machine, sessions: codec.decode(sessions) }],
    ];
    for (const [label, value] of bad) expect(() => unpackSnapshot(codec.encode(value)), label).to.throw(TypeError);
  });

  it('never makes a table of random bytes: restore throws TypeError (seeded)', () => {
    const SEED = 7_001;
    const rand = seeded(SEED);
    let decoded = 0;
    for (let i = 0; i < 1000; i++) {
      const bytes = randomBytes(rand, 1 + randomInt(rand, 24));
      let decodes = true;
      try {
        codec.decode(bytes);
      } catch {
        decodes = false;
      }
      if (decodes) decoded++;
      expect(() => SessionTable.restore(bytes), `restore, case ${i}, SEED=${SEED}`).to.throw(TypeError);
    }
    expect(decoded, `SEED=${SEED}`).to.be.greaterThan(100);
  });
});

// ---------------------------------------------------------------------------------------------
// ClientSession

/** A fake `register`: checks each registration's shape and records its client id. */
function fakeRegister(timeoutMs: number) {
  const clients: string[] = [];
  let gate: Promise<void> = Promise.resolve();
  let failNext: Error | null = null;
  const register: Register = async (data) => {
    const v = codec.decode(data) as Record<string, unknown>;
    expect(Object.keys(v).sort()).to.deep.equal(['client', 'timeoutMs', 'type']);
    expect(v.type).to.equal('register');
    expect(v.timeoutMs).to.equal(timeoutMs);
    expect(v.client).to.be.a('string').with.length.greaterThan(8);
    clients.push(v.client as string);
    await gate;
    if (failNext) {
      const err = failNext;
      failNext = null;
      throw err;
    }
    return null;
  };
  return {
    register,
    clients,
    /** The next registrations wait until the returned function is called. */
    hold(): () => void {
      let release!: () => void;
      gate = new Promise((resolve) => (release = resolve));
      return release;
    },
    failWith(err: Error) {
      failNext = err;
    },
  };
}

describe('ClientSession: the client side of a session (§6.3)', () => {
  it('opens one session for many ops begun at once: one registration, one client id, seqs 1..n', async () => {
    const session = new ClientSession(5000);
    const fake = fakeRegister(5000);
    const release = fake.hold();
    const pending = Array.from({ length: 8 }, () => session.begin(fake.register));
    expect(session.id, 'open before its registration was applied').to.equal(null);
    release();
    const tickets = await Promise.all(pending);

    expect(fake.clients).to.have.length(1);
    expect(session.id).to.equal(fake.clients[0]);
    expect(new Set(tickets.map((t) => t.client))).to.deep.equal(new Set([fake.clients[0]]));
    expect(tickets.map((t) => t.seq).sort((a, b) => a - b)).to.deep.equal([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(session.stats.opened).to.equal(1);

    // Later ops use the open session.
    const next = await session.begin(fake.register);
    expect(next).to.deep.equal({ client: fake.clients[0], seq: 9 });
    expect(fake.clients).to.have.length(1);
  });

  it('acks the lowest seq still awaited, and the next seq when none is', async () => {
    const session = new ClientSession(5000);
    const { register } = fakeRegister(5000);
    const t: Ticket[] = [];
    for (let i = 0; i < 4; i++) t.push(await session.begin(register));
    expect(session.ack()).to.equal(1);

    session.end(t[2]!); // seq 3 answered
    expect(session.ack()).to.equal(1);
    session.end(t[1]!); // seq 2
    expect(session.ack()).to.equal(1);
    session.end(t[0]!); // seq 1: 2 and 3 are done too
    expect(session.ack()).to.equal(4);
    session.end(t[0]!); // ending twice changes nothing
    expect(session.ack()).to.equal(4);
    session.end(t[3]!);
    expect(session.ack()).to.equal(5);

    const fifth = await session.begin(register);
    expect(fifth.seq).to.equal(5);
    expect(session.ack()).to.equal(5);
  });

  it('jumps the ack past every ended seq when the lowest one ends last', async () => {
    const session = new ClientSession(5000);
    const { register } = fakeRegister(5000);
    const [one, two] = [await session.begin(register), await session.begin(register)];
    session.end(two);
    expect(session.ack()).to.equal(1);
    session.end(one);
    expect(session.ack()).to.equal(3);
  });

  it('opens a new session with a new id after an expiry, and ignores what belongs to the old one', async () => {
    const session = new ClientSession(5000);
    const fake = fakeRegister(5000);
    const old1 = await session.begin(fake.register);
    await session.begin(fake.register);
    const oldId = old1.client;

    session.expired('some other client');
    expect(session.id).to.equal(oldId);
    expect(session.stats.expired).to.equal(0);

    session.expired(oldId);
    expect(session.id).to.equal(null);
    expect(session.stats.expired).to.equal(1);

    const fresh = await session.begin(fake.register);
    expect(fake.clients).to.deep.equal([oldId, fresh.client]);
    expect(fresh.client).to.not.equal(oldId);
    expect(fresh.seq).to.equal(1);
    expect(session.ack()).to.equal(1);
    expect(session.stats.opened).to.equal(2);

    // The old session's seq 1 is not the new session's seq 1.
    session.end(old1);
    expect(session.ack()).to.equal(1);
    // A late report of the old expiry does not end the new session.
    session.expired(oldId);
    expect(session.id).to.equal(fresh.client);
    expect(session.stats.expired).to.equal(1);

    session.end(fresh);
    expect(session.ack()).to.equal(2);
  });

  it('rejects begin when the registration fails, and registers again on the next begin', async () => {
    const session = new ClientSession(5000);
    const fake = fakeRegister(5000);
    fake.failWith(new Error('no leader'));
    const release = fake.hold();
    const failing = Promise.allSettled([session.begin(fake.register), session.begin(fake.register)]);
    release();
    for (const settled of await failing) {
      expect(settled.status).to.equal('rejected');
      expect(((settled as PromiseRejectedResult).reason as Error).message).to.equal('no leader');
    }
    expect(fake.clients, 'both begins shared the one failed registration').to.have.length(1);
    expect(session.id).to.equal(null);
    expect(session.stats.opened).to.equal(0);

    const ticket = await session.begin(fake.register);
    expect(fake.clients).to.have.length(2);
    expect(ticket).to.deep.equal({ client: fake.clients[1], seq: 1 });
    expect(session.stats.opened).to.equal(1);
  });

  it('gives each session a fresh random id', async () => {
    const ids = new Set<string>();
    for (let i = 0; i < 20; i++) {
      const session = new ClientSession(1000);
      ids.add((await session.begin(fakeRegister(1000).register)).client);
    }
    expect(ids.size).to.equal(20);
  });
});

// ---------------------------------------------------------------------------------------------
// Both halves together

describe('ClientSession with SessionTable: retries through the table', () => {
  it('applies each op once however often it is resubmitted, and starts over after the session expires', async () => {
    const table = new SessionTable();
    const machine = new CountingMachine();
    let index = 0;
    let now = 0;
    const submit = (data: Uint8Array) => table.apply(++index, now, data, machine.run);
    const register: Register = async (data) => resultOf(submit(data));
    const session = new ClientSession(1000);

    const send = (t: Ticket, command: unknown) => submit(op(t.client, t.seq, command, session.ack()));
    const a = await session.begin(register);
    const b = await session.begin(register);
    const ra = resultOf(send(a, 'a'));
    expect(resultOf(send(a, 'a'))).to.deep.equal(ra); // a retry of an op whose answer got lost
    expect(resultOf(send(b, 'b'))).to.deep.include({ command: 'b', applied: 2 });
    session.end(a);
    session.end(b);
    expect(machine.applied).to.equal(2);

    // With ack 3 on the next op, the table forgets a and b: a very late copy of a is stale.
    const c = await session.begin(register);
    resultOf(send(c, 'c'));
    errorOf(send(a, 'a'), 'STALE_REQUEST');
    expect(machine.applied).to.equal(3);

    // Idle past the timeout: the next op is refused, the client opens a new session.
    now = 5000;
    const d = await session.begin(register);
    const refused = send(d, 'd');
    errorOf(refused, 'SESSION_EXPIRED');
    session.expired(d.client);
    const d2 = await session.begin(register);
    expect(d2.client).to.not.equal(d.client);
    expect(resultOf(send(d2, 'd'))).to.deep.include({ command: 'd', applied: 4 });
    expect(table.status()).to.deep.include({ active: 1, expired: 1 });
  });
});
