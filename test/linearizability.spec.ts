/**
 * src/testing/: the history recorder, its line format, and the kv linearizability checker
 * (sync path and piscina path). Known-bad histories must be caught with a small, readable
 * counterexample; known-good ones (concurrency, info ops) must pass; random histories made by
 * running the real kv state machine must pass, and fail once a read is corrupted.
 */
import { expect } from 'chai';
import { readFileSync } from 'node:fs';
import { InvalidCommandError, LeadershipLostError, NotLeaderError, TimeoutError, ActorRestartedError } from '../src/errors.js';
import { deepEqual, KvStateMachine, type KvCommand } from '../src/state-machines/kv.js';
import {
  checkKv,
  checkKvSync,
  classifyError,
  formatHistory,
  formatResult,
  History,
  KvChecker,
  parseHistory,
  renderOps,
  toOps,
  type CheckResult,
  type HistoryEvent,
  type Op,
} from '../src/testing/index.js';

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/** Parse a history written in the line format (header optional, indentation ignored). */
const h = (text: string): HistoryEvent[] => parseHistory(text);

const fixture = (name: string): string =>
  readFileSync(new URL(`../../test/fixtures/${name}`, import.meta.url), 'utf8');

/** The one violation of a result, after checking there is exactly one. */
function onlyViolation(r: CheckResult): CheckResult['violations'][number] {
  expect(r.ok, formatResult(r)).to.equal(false);
  expect(r.violations, formatResult(r)).to.have.length(1);
  return r.violations[0]!;
}

const ids = (ops: readonly Op[]): number[] => ops.map((o) => o.id).sort((a, b) => a - b);

/** mulberry32: the tests' only randomness. */
function prng(seed: number): () => number {
  let s = seed | 0;
  return () => {
    s = (s + 0x6d2b79f5) | 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

interface GenOptions {
  seed: number;
  ops: number;
  clients: number;
  keys: readonly string[];
  /** Probability that an op ends 'info' (then it takes effect, late or not, or never). */
  pInfo?: number;
  /** Probability that an op ends 'fail' (and never takes effect). */
  pFail?: number;
}

/**
 * A linearizable history by construction: each client issues ops one after another with
 * random gaps and durations, every op gets a linearization point inside its window (an info
 * op: anywhere after its invocation, even after the client gave up, or never), and the
 * commands are applied to the real KvStateMachine in that order to get the results. Values
 * written are unique, so a read's value names the write it saw.
 */
function generate(o: GenOptions): Op[] {
  const rand = prng(o.seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  type Slot = { op: Op; at: number; applies: boolean };
  const slots: Slot[] = [];
  const clock = Array.from({ length: o.clients }, () => rand() * 2);
  for (let id = 0; id < o.ops; id++) {
    const client = Math.floor(rand() * o.clients);
    const invokedAt = clock[client]! + rand() * 2;
    const end = invokedAt + 0.05 + rand() * 6; // windows overlap across clients
    clock[client] = end;
    const r = rand();
    const status = r < (o.pFail ?? 0) ? 'fail' : r < (o.pFail ?? 0) + (o.pInfo ?? 0) ? 'info' : 'ok';
    const at = status === 'info' ? invokedAt + rand() * (end - invokedAt + 20) : invokedAt + rand() * (end - invokedAt);
    const applies = status === 'ok' || (status === 'info' && rand() < 0.5);
    const op: Op = { id, client, command: { type: 'get', key: '' }, invokedAt, completedAt: end, status };
    slots.push({ op, at, applies });
  }
  // Commands are chosen at the linearization point so cas often matches.
  const kv = new KvStateMachine();
  const written: unknown[] = [null];
  let next = 1;
  for (const s of [...slots].sort((a, b) => a.at - b.at)) {
    const key = pick(o.keys);
    const current = kv.apply({ type: 'get', key });
    const r = rand();
    let command: KvCommand;
    if (r < 0.4) command = { type: 'get', key };
    else if (r < 0.65) command = { type: 'set', key, value: next++ };
    else if (r < 0.9) command = { type: 'cas', key, expected: rand() < 0.6 ? current : pick(written), value: next++ };
    else command = { type: 'delete', key };
    if (command.type === 'set' || command.type === 'cas') written.push(command.value);
    s.op.command = command;
    if (s.applies) {
      const result = kv.apply(command);
      if (s.op.status === 'ok') s.op.result = result;
    }
  }
  return slots.map((s) => s.op);
}

/** The same history as events in real-time order (ties: invocations first). */
function toEvents(ops: readonly Op[]): HistoryEvent[] {
  const points: { t: number; call: boolean; e: HistoryEvent }[] = [];
  for (const op of ops) {
    points.push({ t: op.invokedAt, call: true, e: { type: 'invoke', id: op.id, client: op.client, time: op.invokedAt, command: op.command } });
    if (op.completedAt === null || op.status === 'open') continue;
    const base = { id: op.id, client: op.client, time: op.completedAt };
    const e: HistoryEvent = op.status === 'ok' ? { ...base, type: 'ok', result: op.result } : { ...base, type: op.status };
    points.push({ t: op.completedAt, call: false, e });
  }
  return points.sort((a, b) => a.t - b.t || Number(b.call) - Number(a.call)).map((p) => p.e);
}

/**
 * Make a generated history non-linearizable by corrupting one read: a get G that saw the
 * value of a later write is made to return the value of a write W that was overwritten by a
 * write W2 entirely between W and G (W ends before W2 starts, W2 ends before G starts).
 * Values are unique, so only W wrote that value, and G cannot have seen it.
 */
function corruptStaleRead(ops: Op[], rand: () => number): { read: Op; staleWrite: Op } {
  const isSet = (o: Op): boolean => o.status === 'ok' && o.command.type === 'set';
  const overwrites = (o: Op): boolean =>
    o.status === 'ok' && (o.command.type === 'set' || o.command.type === 'delete' || (o.command.type === 'cas' && o.result === true));
  const candidates: { read: Op; staleWrite: Op }[] = [];
  for (const g of ops) {
    if (g.status !== 'ok' || g.command.type !== 'get') continue;
    const key = g.command.key;
    const before = ops.filter((o) => o.command.key === key && o.completedAt! < g.invokedAt);
    for (const w2 of before.filter(overwrites)) {
      const w = before.find((o) => isSet(o) && o.completedAt! < w2.invokedAt && o.command.type === 'set' && !deepEqual(o.command.value, g.result));
      if (w !== undefined) {
        candidates.push({ read: g, staleWrite: w });
        break;
      }
    }
  }
  expect(candidates.length, 'no read could be corrupted').to.be.greaterThan(0);
  const chosen = candidates[Math.floor(rand() * candidates.length)]!;
  chosen.read.result = (chosen.staleWrite.command as { value: unknown }).value;
  return chosen;
}

// ---------------------------------------------------------------------------------------
// The recorder and its formats
// ---------------------------------------------------------------------------------------

describe('testing: History recorder', () => {
  it('records invocations and completions with the injected clock, and pairs them into ops', () => {
    let t = 10;
    const history = new History({ clock: () => t++ });
    const a = history.invoke('alice', { type: 'set', key: 'x', value: 1 });
    const b = history.invoke(2, { type: 'get', key: 'x' });
    a.ok(null);
    b.info(new TimeoutError(5));
    const c = history.invoke(3, { type: 'delete', key: 'x' });
    expect(a.done).to.equal(true);
    expect(c.done).to.equal(false);
    expect(history.pending()).to.deep.equal([c.id]);
    expect(history.events.map((e) => [e.type, e.id, e.time])).to.deep.equal([
      ['invoke', 0, 10],
      ['invoke', 1, 11],
      ['ok', 0, 12],
      ['info', 1, 13],
      ['invoke', 2, 14],
    ]);
    const ops = history.ops();
    expect(ops.map((o) => o.status)).to.deep.equal(['ok', 'info', 'open']);
    expect(ops[1]!.error).to.equal('TIMEOUT: no answer within 5 ms');
    expect(ops[2]!.completedAt).to.equal(null);
    // Plain data: survives a structured clone unchanged (what piscina posts).
    expect(structuredClone(history.events)).to.deep.equal(history.events);
    expect(() => a.fail()).to.throw(/already completed/);
  });

  it('classifies errors: refused before taking effect is fail, anything uncertain is info', () => {
    expect(classifyError(new NotLeaderError('n2'))).to.equal('fail');
    expect(classifyError(new InvalidCommandError('bad'))).to.equal('fail');
    expect(classifyError(new TimeoutError(100))).to.equal('info');
    expect(classifyError(new LeadershipLostError())).to.equal('info');
    expect(classifyError(new ActorRestartedError())).to.equal('info');
    expect(classifyError(new Error('socket hang up'))).to.equal('info');
  });

  it('run() records the outcome of a call and passes it through', async () => {
    let t = 0;
    const history = new History({ clock: () => t++ });
    expect(await history.run('c1', { type: 'get', key: 'k' }, async () => 7)).to.equal(7);
    let thrown: unknown;
    await history.run('c1', { type: 'get', key: 'k' }, () => Promise.reject(new NotLeaderError(null))).catch((e) => (thrown = e));
    expect(thrown).to.be.instanceOf(NotLeaderError);
    await history.run('c1', { type: 'get', key: 'k' }, () => Promise.reject(new LeadershipLostError())).catch(() => {});
    expect(history.ops().map((o) => [o.status, o.result])).to.deep.equal([
      ['ok', 7],
      ['fail', undefined],
      ['info', undefined],
    ]);
  });

  it('refuses a clock that goes backwards', () => {
    const times = [5, 4];
    const history = new History({ clock: () => times.shift()! });
    history.invoke(1, { type: 'get', key: 'x' });
    expect(() => history.invoke(1, { type: 'get', key: 'x' })).to.throw(RangeError, /backwards/);
  });

  it('writes and parses the line format without loss, msgpack-only values included', () => {
    let t = 0;
    const history = new History({ clock: () => (t += 0.25) });
    const values: unknown[] = [
      new Map<unknown, unknown>([['a', 1n], [2, [null, true]]]),
      new Set([1, 'two']),
      new Date(86_400_000),
      Uint8Array.from([1, 2, 255]),
      { $tag: 'not a tag', nested: { x: [1.5, -0, NaN, Infinity] } },
      12345678901234567890n,
    ];
    values.forEach((v, i) => history.invoke(i % 2 === 0 ? i : `client "${i}"`, { type: 'cas', key: `k ${i}`, expected: v, value: v }).ok(v));
    history.invoke('c9', { type: 'set', key: 'x', value: 'y' }).fail(new NotLeaderError('n3'));
    history.invoke('c9', { type: 'get', key: 'x' });
    const text = history.toText();
    expect(text.split('\n')[0]).to.equal('# actor-raft kv history v1');
    expect(text).to.contain('0.250 0 invoke #0 cas ["k 0",{"$map":[["a",{"$bigint":"1"}],[2,[null,true]]]}');
    const parsed = parseHistory(text);
    expect(parsed).to.have.length(history.events.length);
    parsed.forEach((e, i) => expect(deepEqual(e, history.events[i]), `event ${i}`).to.equal(true));
    expect(formatHistory(parsed)).to.equal(text);
    expect(() => parseHistory('0.0 c1 invoke #0 set ["x",')).to.throw(SyntaxError, /line 1/);
  });

  it('renders ops one per line, sorted by invocation, open ones as → ?', () => {
    const lines = renderOps(
      toOps(parseHistory(`
        12.1 c3 invoke #0 cas ["k",1,2]
        12.5 c4 invoke #1 set ["k",3]
        14.0 c3 ok #0 true
        20.0 c4 info #1 "TIMEOUT: no answer within 5 ms"`)),
    );
    expect(lines).to.deep.equal([
      'c3  [12.1ms → 14.0ms]  cas(k, expected=1, value=2) → true',
      'c4  [12.5ms → ?]       set(k, 3) → ?   (info at 20.0ms: TIMEOUT: no answer within 5 ms)',
    ]);
  });
});

// ---------------------------------------------------------------------------------------
// Known-bad histories
// ---------------------------------------------------------------------------------------

describe('testing: checkKvSync catches known-bad histories', () => {
  it('a stale read: a get returns the old value after a newer set completed', () => {
    const r = checkKvSync(
      h(`
        0 c1 invoke #0 set ["x",1]
        1 c1 ok #0 null
        2 c1 invoke #1 set ["x",2]
        3 c1 ok #1 null
        4 c2 invoke #2 get ["x"]
        5 c2 ok #2 2
        6 c3 invoke #3 get ["x"]
        7 c3 ok #3 1`),
    );
    const v = onlyViolation(r);
    expect(v.key).to.equal('x');
    expect(ids(v.ops)).to.deep.equal([0, 1, 3]);
    expect(v.text).to.contain('c3  [6.0ms → 7.0ms]  get(x) → 1');
    expect(v.text).to.contain('get(x) → 1 would return 2');
  });

  it('a lost write (fixture lin-lost-write.history): later reads all see the prior value', () => {
    const v = onlyViolation(checkKvSync(parseHistory(fixture('lin-lost-write.history'))));
    expect(v.ops).to.have.length(3);
    expect(ids(v.ops).slice(0, 2)).to.deep.equal([0, 1]);
  });

  it('a cas that applied twice: two cas with the same expected both return true', () => {
    const v = onlyViolation(
      checkKvSync(
        h(`
          0 c1 invoke #0 set ["x",0]
          1 c1 ok #0 null
          2 c1 invoke #1 cas ["x",0,1]
          3 c2 invoke #2 cas ["x",0,2]
          4 c1 ok #1 true
          5 c2 ok #2 true`),
      ),
    );
    expect(ids(v.ops)).to.deep.equal([0, 1, 2]);
  });

  it('a read of a value never written: the counterexample is that one read', () => {
    const v = onlyViolation(
      checkKvSync(
        h(`
          0 c1 invoke #0 set ["x",1]
          1 c2 invoke #1 get ["x"]
          2 c1 ok #0 null
          3 c2 ok #1 7
          4 c1 invoke #2 get ["x"]
          5 c1 ok #2 1`),
      ),
    );
    expect(ids(v.ops)).to.deep.equal([1]);
    expect(v.text).to.contain('Why: get(x) → 7: no op writes 7 to x before it completes.');
  });

  it('delete returning true on a missing key', () => {
    const fresh = onlyViolation(checkKvSync(h('0 c1 invoke #0 delete ["x"]\n1 c1 ok #0 true')));
    expect(fresh.text).to.contain('no op writes x before it completes');
    const twice = onlyViolation(
      checkKvSync(
        h(`
          0 c1 invoke #0 set ["x",1]
          1 c1 ok #0 null
          2 c1 invoke #1 delete ["x"]
          3 c1 ok #1 true
          4 c2 invoke #2 delete ["x"]
          5 c2 ok #2 true`),
      ),
    );
    expect(ids(twice.ops)).to.deep.equal([0, 1, 2]);
    expect(twice.text).to.contain('c2 delete(x) → true would return false');
  });

  it('an info write seen and then unseen, with no other write between', () => {
    const v = onlyViolation(
      checkKvSync(
        h(`
          0 c1 invoke #0 set ["x",1]
          1 c1 info #0 "TIMEOUT: no answer within 1 ms"
          2 c2 invoke #1 get ["x"]
          3 c2 ok #1 1
          4 c2 invoke #2 get ["x"]
          5 c2 ok #2 null`),
      ),
    );
    // The info op stays: it is the only write that explains the first read.
    expect(ids(v.ops)).to.deep.equal([0, 1, 2]);
    expect(v.text).to.contain('set(x, 1) → ?   (info at 1.0ms: TIMEOUT: no answer within 1 ms)');
  });

  it('a failed write is never visible', () => {
    const events = h(`
      0 c1 invoke #0 set ["x",1]
      1 c1 fail #0 "NOT_LEADER: not the leader; try n2"
      2 c2 invoke #1 get ["x"]
      3 c2 ok #1 null`);
    expect(checkKvSync(events).ok).to.equal(true);
    events[3] = { ...events[3]!, type: 'ok', result: 1 } as HistoryEvent;
    expect(ids(onlyViolation(checkKvSync(events)).ops)).to.deep.equal([1]);
  });
});

// ---------------------------------------------------------------------------------------
// Known-good histories
// ---------------------------------------------------------------------------------------

describe('testing: checkKvSync accepts known-good histories', () => {
  it('concurrent overlapping ops where either order is valid', () => {
    // Two overlapping sets: a later read may see either.
    for (const seen of [1, 2]) {
      const r = checkKvSync(
        h(`
          0 c1 invoke #0 set ["x",1]
          1 c2 invoke #1 set ["x",2]
          2 c3 invoke #2 get ["x"]
          3 c1 ok #0 null
          4 c2 ok #1 null
          5 c3 ok #2 ${seen}
          6 c3 invoke #3 get ["x"]
          7 c3 ok #3 ${seen}`),
      );
      expect(r.ok, formatResult(r)).to.equal(true);
    }
    // Reads overlapping a set may return the old or the new value, in real-time order.
    const r = checkKvSync(
      h(`
        0 c1 invoke #0 set ["x",1]
        1 c2 invoke #1 get ["x"]
        2 c3 invoke #2 get ["x"]
        3 c2 ok #1 null
        4 c4 invoke #3 cas ["x",1,5]
        5 c3 ok #2 1
        6 c1 ok #0 null
        7 c4 ok #3 true
        8 c2 invoke #4 get ["x"]
        9 c2 ok #4 5`),
    );
    expect(r.ok, formatResult(r)).to.equal(true);
    expect(r).to.deep.include({ keys: 1, ops: 5, unknown: [], violations: [] });
  });

  it('info ops whose effect is visible, even long after the client gave up', () => {
    const r = checkKvSync(
      h(`
        0 c1 invoke #0 cas ["x",null,1]
        1 c1 info #0 "LEADERSHIP_LOST: leadership lost before the op was applied"
        2 c2 invoke #1 get ["x"]
        3 c2 ok #1 null
        4 c2 invoke #2 get ["x"]
        5 c2 ok #2 1
        6 c3 invoke #3 delete ["x"]
        7 c3 info #3
        8 c2 invoke #4 get ["x"]
        9 c2 ok #4 null`),
    );
    expect(r.ok, formatResult(r)).to.equal(true);
  });

  it('info and never-completed ops whose effect is never visible', () => {
    const r = checkKvSync(
      h(`
        0 c1 invoke #0 set ["x",1]
        1 c1 info #0 "ACTOR_RESTARTED: the consensus actor restarted"
        2 c3 invoke #2 delete ["x"]
        3 c2 invoke #1 get ["x"]
        4 c2 ok #1 null
        5 c2 invoke #3 cas ["x",null,2]
        6 c2 ok #3 true
        7 c2 invoke #4 get ["x"]
        8 c2 ok #4 2`),
    );
    expect(r.ok, formatResult(r)).to.equal(true);
  });

  it('a large random history from the real kv state machine, with info and fail ops', function () {
    this.timeout(20_000);
    const ops = generate({ seed: 11, ops: 10_000, clients: 6, keys: ['a', 'b', 'c', 'd'], pInfo: 0.01, pFail: 0.03 });
    const started = performance.now();
    const r = checkKvSync(toEvents(ops));
    expect(r.ok, formatResult(r)).to.equal(true);
    expect(r).to.deep.include({ keys: 4, ops: 10_000 });
    expect(checkKvSync(ops).ok, 'the same history given as ops').to.equal(true);
    this.test!.title += ` (${(performance.now() - started).toFixed(0)} ms)`;
  });
});

// ---------------------------------------------------------------------------------------
// Against a brute-force oracle
// ---------------------------------------------------------------------------------------

/**
 * Linearizability by enumeration, straight from the definition: some order of the ops that
 * were not 'fail', containing every completed op and any subset of the open ones, respects
 * real time (a completed op precedes every op invoked after it completed) and gives each
 * completed op its recorded result on the real KvStateMachine.
 */
function bruteForce(ops: readonly Op[]): boolean {
  const live = ops.filter((o) => o.status !== 'fail');
  const done = (o: Op): boolean => o.status === 'ok';
  const mustFollow = live.map((b) => live.filter((a) => done(a) && a.completedAt! < b.invokedAt));
  const used = new Set<Op>();
  const seq: Op[] = [];
  const search = (): boolean => {
    if (live.every((o) => !done(o) || used.has(o))) return true;
    for (const [i, o] of live.entries()) {
      if (used.has(o) || !mustFollow[i]!.every((a) => used.has(a))) continue;
      const kv = new KvStateMachine();
      for (const p of seq) kv.apply(p.command);
      if (done(o) && !deepEqual(kv.apply(o.command), o.result)) continue;
      used.add(o);
      seq.push(o);
      if (search()) return true;
      seq.pop();
      used.delete(o);
    }
    return false;
  };
  return search();
}

/** Tiny random histories over one key and two values, with ties, info, open and fail ops. */
function tiny(rand: () => number, id0: number): Op[] {
  const n = 2 + Math.floor(rand() * 6);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  return Array.from({ length: n }, (_, i): Op => {
    const invokedAt = Math.floor(rand() * 8);
    const completedAt = invokedAt + Math.floor(rand() * 4);
    const type = pick(['get', 'get', 'set', 'cas', 'delete'] as const);
    const v = (): number | null => pick([1, 2, null]);
    const command: KvCommand =
      type === 'set' ? { type, key: 'k', value: pick([1, 2]) } : type === 'cas' ? { type, key: 'k', expected: v(), value: pick([1, 2]) } : { type, key: 'k' };
    const r = rand();
    const status = r < 0.75 ? 'ok' : r < 0.85 ? 'info' : r < 0.93 ? 'open' : 'fail';
    const op: Op = { id: id0 + i, client: i, command, invokedAt, completedAt: status === 'open' ? null : completedAt, status };
    if (status === 'ok') op.result = type === 'get' ? v() : type === 'set' ? null : rand() < 0.5;
    return op;
  });
}

describe('testing: against a brute-force oracle', () => {
  it('gives the verdict of exhaustive enumeration on 3000 tiny random histories', () => {
    const rand = prng(2024);
    let bad = 0;
    for (let k = 0; k < 3000; k++) {
      const ops = tiny(rand, 0);
      const expected = bruteForce(ops);
      const r = checkKvSync(ops);
      expect(r.ok, `history ${k}:\n${renderOps(ops).join('\n')}\n${formatResult(r)}`).to.equal(expected);
      if (!expected) {
        bad++;
        // The counterexample is a real one: its ops alone are not linearizable either.
        const v = onlyViolation(r);
        expect(bruteForce(v.ops), v.text).to.equal(false);
      }
    }
    expect(bad).to.be.within(300, 2700);
  });

  it('and on 2000 small model-made histories, a third with one result changed', () => {
    const rand = prng(77);
    let bad = 0;
    for (let seed = 0; seed < 2000; seed++) {
      const ops = generate({ seed, ops: 4 + (seed % 5), clients: 2 + (seed % 3), keys: ['k'], pInfo: 0.3, pFail: 0.1 });
      const o = ops[Math.floor(rand() * ops.length)]!;
      if (seed % 3 === 0 && o.status === 'ok') {
        o.result = o.command.type === 'get' ? [null, 1, 2, 3][Math.floor(rand() * 4)] : o.command.type === 'set' ? null : rand() < 0.5;
      }
      const expected = bruteForce(ops);
      const r = checkKvSync(ops);
      expect(r.ok, `seed ${seed}:\n${renderOps(ops).join('\n')}\n${formatResult(r)}`).to.equal(expected);
      if (!expected) {
        bad++;
        expect(bruteForce(onlyViolation(r).ops)).to.equal(false);
      }
    }
    expect(bad).to.be.within(50, 700);
  });
});

// ---------------------------------------------------------------------------------------
// Corrupted random histories, partitioning, pool, budget
// ---------------------------------------------------------------------------------------

describe('testing: counterexamples from corrupted random histories', () => {
  it('one stale read in a large history: caught, shrunk to a handful of ops around it', function () {
    this.timeout(20_000);
    const ops = generate({ seed: 11, ops: 10_000, clients: 6, keys: ['a', 'b', 'c', 'd'], pInfo: 0.01, pFail: 0.03 });
    const { read, staleWrite } = corruptStaleRead(ops, prng(3));
    const started = performance.now();
    const v = onlyViolation(checkKvSync(toEvents(ops)));
    this.test!.title += ` (${(performance.now() - started).toFixed(0)} ms)`;
    expect(v.key).to.equal(read.command.key);
    expect(v.ops.length, v.text).to.be.within(2, 5);
    expect(ids(v.ops), v.text).to.include(read.id);
    expect(ids(v.ops), v.text).to.include(staleWrite.id);
    expect(v.text).to.contain('Minimal failing sub-history');
  });

  it('one read of a value never written: the counterexample is exactly that read', () => {
    const ops = generate({ seed: 12, ops: 2000, clients: 5, keys: ['a', 'b', 'c'], pInfo: 0.05 });
    const read = ops.find((o, i) => i > 1000 && o.status === 'ok' && o.command.type === 'get')!;
    read.result = 'never written';
    const v = onlyViolation(checkKvSync(ops));
    expect(ids(v.ops), v.text).to.deep.equal([read.id]);
  });

  it('multi-key histories are partitioned: a violation is reported for its key only', () => {
    const ops = generate({ seed: 5, ops: 1500, clients: 5, keys: ['k1', 'k2', 'k3', 'k4', 'k5'], pInfo: 0.05 });
    const { read } = corruptStaleRead(
      ops.filter((o) => o.command.key === 'k3'),
      prng(9),
    );
    const r = checkKvSync(ops);
    expect(r.keys).to.equal(5);
    const v = onlyViolation(r);
    expect(v.key).to.equal('k3');
    expect(v.ops.every((o) => o.command.key === 'k3')).to.equal(true);
    expect(ids(v.ops), v.text).to.include(read.id);
  });
});

describe('testing: the piscina path', () => {
  let checker: KvChecker;
  before(() => {
    checker = new KvChecker();
  });
  after(async () => {
    await checker.close();
  });

  it('agrees with the sync path on many random histories, good and corrupted', async function () {
    this.timeout(20_000);
    const started = performance.now();
    let bad = 0;
    for (let seed = 100; seed < 140; seed++) {
      const ops = generate({ seed, ops: 150 + (seed % 7) * 40, clients: 2 + (seed % 5), keys: ['a', 'b', 'c'], pInfo: 0.08, pFail: 0.05 });
      if (seed % 2 === 0) {
        // Corrupt a random read to a random value written somewhere (may or may not break it).
        const rand = prng(seed);
        const reads = ops.filter((o) => o.status === 'ok' && o.command.type === 'get');
        const sets = ops.filter((o) => o.command.type === 'set');
        reads[Math.floor(rand() * reads.length)]!.result = (sets[Math.floor(rand() * sets.length)]!.command as { value: unknown }).value;
      }
      const events = toEvents(ops);
      const [sync, pooled] = [checkKvSync(events), await checker.check(events)];
      const summary = (r: CheckResult): unknown => ({ ...r, violations: r.violations.map((v) => ({ key: v.key, ids: ids(v.ops), text: v.text })) });
      expect(summary(pooled), `seed ${seed}`).to.deep.equal(summary(sync));
      if (!sync.ok) bad++;
    }
    expect(bad, 'some corrupted histories are violations').to.be.greaterThan(5);
    this.test!.title += ` (40 histories, ${bad} bad, ${(performance.now() - started).toFixed(0)} ms)`;
  });

  it('checkKv makes and destroys its own pool per call', async () => {
    const ops = generate({ seed: 21, ops: 600, clients: 4, keys: ['a', 'b'], pInfo: 0.05 });
    expect((await checkKv(ops, { maxThreads: 2 })).ok).to.equal(true);
    corruptStaleRead(ops, prng(1));
    const r = await checkKv(ops);
    expect(r.violations).to.have.length(1);
    expect(r.violations[0]!.ops.length).to.be.within(2, 5);
    expect(await checkKv([])).to.deep.equal({ ok: true, keys: 0, ops: 0, violations: [], unknown: [] });
  });
});

describe('testing: budgets and input checks', () => {
  /**
   * 40 concurrent sets of distinct values, then two reads in a row that see different ones:
   * refuting it means trying every order of the sets (2^40 cache entries), so only a budget
   * ends it.
   */
  function pathological(): Op[] {
    const ops: Op[] = Array.from({ length: 40 }, (_, i) => ({
      id: i,
      client: i,
      command: { type: 'set', key: 'hot', value: i },
      invokedAt: i * 0.01,
      completedAt: 100 + i * 0.01,
      status: 'ok',
      result: null,
    }));
    ops.push({ id: 40, client: 40, command: { type: 'get', key: 'hot' }, invokedAt: 200, completedAt: 201, status: 'ok', result: 0 });
    ops.push({ id: 42, client: 40, command: { type: 'get', key: 'hot' }, invokedAt: 202, completedAt: 203, status: 'ok', result: 1 });
    ops.push({ id: 41, client: 41, command: { type: 'set', key: 'cold', value: 1 }, invokedAt: 0, completedAt: 1, status: 'ok', result: null });
    return ops;
  }

  it('a pathological key is reported unknown by the step budget, not left hanging', async () => {
    const started = performance.now();
    const r = checkKvSync(pathological(), { maxSteps: 50_000 });
    expect(r).to.deep.equal({ ok: false, keys: 2, ops: 43, violations: [], unknown: ['hot'] });
    expect((await checkKv(pathological(), { maxSteps: 50_000 })).unknown).to.deep.equal(['hot']);
    expect(performance.now() - started).to.be.below(5_000);
  });

  it('and by the time budget', () => {
    const started = performance.now();
    const r = checkKvSync(pathological(), { maxSteps: Number.MAX_SAFE_INTEGER, timeoutMs: 200 });
    expect(r.unknown).to.deep.equal(['hot']);
    expect(performance.now() - started).to.be.below(2_000);
  });

  it('refuses bad options and malformed histories with errors naming the problem', () => {
    expect(() => checkKvSync([], { maxSteps: 0 })).to.throw(RangeError, /options\.maxSteps/);
    expect(() => checkKvSync([], { timeoutMs: -1 })).to.throw(RangeError, /options\.timeoutMs/);
    expect(() => new KvChecker({ maxThreads: 1.5 })).to.throw(RangeError, /options\.maxThreads/);
    expect(() => checkKvSync(h('0 c1 ok #0 null'))).to.throw(TypeError, /not invoked/);
    expect(() => checkKvSync(h('0 c1 invoke #0 frob ["x"]\n1 c1 ok #0 null'))).to.throw(TypeError, /not a kv command/);
    // A refused command recorded as fail (or left open) is simply dropped.
    expect(checkKvSync(h('0 c1 invoke #0 frob ["x"]\n1 c1 fail #0 "INVALID_COMMAND: no"')).ok).to.equal(true);
  });
});
