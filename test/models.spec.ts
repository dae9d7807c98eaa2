/**
 * The checker with models other than the kv: a FIFO queue partitioned by queue name
 * (test/fixtures/queue-model.ts, loadable by worker threads through its `source`) and a
 * counter built in this file (no `source`: checked in the calling thread). Good histories
 * pass, bad ones are caught with a minimal failing sub-history; the pool agrees with the
 * calling thread; the kv model run through the generic engine agrees with its compiled form.
 */
import { expect } from 'chai';
import { KvStateMachine, type KvCommand } from '../src/state-machines/kv.js';
import {
  Checker,
  checkHistory,
  checkHistorySync,
  checkKvSync,
  formatResult,
  History,
  kvModel,
  UNKNOWN_OUTPUT,
  type Model,
  type ModelCheckResult,
  type Op,
  type OpStatus,
} from '../src/testing/index.js';
import { queueModel, type QueueCommand } from './fixtures/queue-model.js';

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/** An op from a compact description: `[id, client, command, invokedAt, completedAt, status, result]`. */
function op<C>(id: number, client: number, command: C, invokedAt: number, completedAt: number | null, status: OpStatus, result?: unknown): Op<C> {
  const o: Op<C> = { id, client, command, invokedAt, completedAt, status };
  if (status === 'ok') o.result = result;
  return o;
}
const enq = (queue: string, value: unknown): QueueCommand => ({ type: 'enqueue', queue, value });
const deq = (queue: string): QueueCommand => ({ type: 'dequeue', queue });

function onlyViolation<C>(r: ModelCheckResult<C>): ModelCheckResult<C>['violations'][number] {
  expect(r.ok, formatResult(r)).to.equal(false);
  expect(r.violations, formatResult(r)).to.have.length(1);
  return r.violations[0]!;
}

const ids = (ops: readonly Op<unknown>[]): number[] => ops.map((o) => o.id).sort((a, b) => a - b);

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

/**
 * A linearizable queue history by construction: each client issues ops one after another,
 * every op takes effect at a point inside its window (an info op: anywhere after its
 * invocation, or never), applied to real arrays in that order for the results. Values are
 * unique.
 */
function queueHistory(seed: number, n: number, queues: readonly string[]): Op<QueueCommand>[] {
  const rand = prng(seed);
  const clock = [0, 0, 0, 0];
  const slots: { op: Op<QueueCommand>; at: number; applies: boolean }[] = [];
  for (let id = 0; id < n; id++) {
    const client = Math.floor(rand() * clock.length);
    const invokedAt = clock[client]! + rand() * 2;
    const completedAt = invokedAt + 0.1 + rand() * 5;
    clock[client] = completedAt;
    const status: OpStatus = rand() < 0.04 ? 'info' : 'ok';
    const at = invokedAt + rand() * (completedAt - invokedAt + (status === 'info' ? 10 : 0));
    slots.push({ op: op(id, client, deq(''), invokedAt, completedAt, status), at, applies: status === 'ok' || rand() < 0.5 });
  }
  const items = new Map(queues.map((q) => [q, [] as number[]]));
  let next = 1;
  for (const s of [...slots].sort((a, b) => a.at - b.at)) {
    const queue = queues[Math.floor(rand() * queues.length)]!;
    const q = items.get(queue)!;
    s.op.command = rand() < 0.55 ? enq(queue, next++) : deq(queue);
    if (!s.applies) continue;
    const result = s.op.command.type === 'enqueue' ? (q.push(s.op.command.value as number), null) : (q.shift() ?? null);
    if (s.op.status === 'ok') s.op.result = result;
  }
  return slots.map((s) => s.op);
}

// ---------------------------------------------------------------------------------------
// A FIFO queue
// ---------------------------------------------------------------------------------------

describe('models: a FIFO queue (partitioned by queue, loaded by worker threads)', () => {
  it('accepts concurrent ops in either order, an empty dequeue, and info ops seen or never seen', () => {
    const ops = [
      op(0, 1, enq('q', 1), 0, 4, 'ok', null),
      op(1, 2, enq('q', 2), 1, 3, 'ok', null), // overlaps #0: either may be first
      op(2, 3, deq('q'), 5, 6, 'ok', 2),
      op(3, 3, deq('q'), 7, 8, 'ok', 1),
      op(4, 3, deq('q'), 9, 10, 'ok', null), // empty
      op(5, 1, enq('q', 3), 11, 12, 'info'), // timed out, then seen
      op(6, 2, enq('q', 4), 11.5, 12.5, 'info'), // timed out, never seen
      op(7, 3, deq('q'), 20, 21, 'ok', 3),
      op(8, 3, deq('r'), 20, 21, 'fail'), // definitely did not happen
    ];
    const r = checkHistorySync(ops, queueModel);
    expect(r, formatResult(r)).to.deep.equal({ ok: true, parts: 1, ops: 9, violations: [], unknown: [] });
    expect(formatResult(r)).to.equal('linearizable: 9 ops over 1 parts');
  });

  it('a FIFO violation: the minimal failing sub-history is the two enqueues and the dequeue', () => {
    const ops = [
      op(0, 1, enq('q', 1), 0, 1, 'ok', null),
      op(1, 1, enq('q', 2), 2, 3, 'ok', null),
      op(2, 2, enq('other', 9), 2, 3, 'ok', null),
      op(3, 2, deq('q'), 4, 5, 'ok', 2), // 1 was enqueued first
      op(4, 2, deq('q'), 6, 7, 'ok', 1),
      op(5, 3, deq('other'), 6, 7, 'ok', 9),
    ];
    const r = checkHistorySync(ops, queueModel);
    expect(r.parts).to.equal(2);
    const v = onlyViolation(r);
    expect(v.part).to.equal('q');
    expect(v.minimal).to.equal(true);
    expect(ids(v.ops)).to.deep.equal([0, 1, 3]);
    expect(v.text).to.contain('part q: not linearizable. Minimal failing sub-history: 3 ops of the part\'s 4');
    expect(v.text).to.contain('c2  [4.0ms → 5.0ms]  dequeue(q) → 2');
    expect(v.text).to.contain('The longest order consistent with real time and the queue model is c1 enqueue(q, 1) → null; c1 enqueue(q, 2) → null');
    expect(v.text).to.contain('the state is [1, 2]');
    expect(v.text).to.contain('c2 dequeue(q) → 2 does not fit');
  });

  it('a value dequeued twice, and a value never enqueued', () => {
    const twice = onlyViolation(
      checkHistorySync(
        [
          op(0, 1, enq('q', 1), 0, 1, 'ok', null),
          op(1, 2, deq('q'), 2, 6, 'ok', 1),
          op(2, 3, deq('q'), 3, 5, 'ok', 1),
        ],
        queueModel,
      ),
    );
    expect(ids(twice.ops)).to.deep.equal([0, 1, 2]);
    const never = onlyViolation(
      checkHistorySync(
        [op(0, 1, enq('q', 1), 0, 1, 'ok', null), op(1, 1, enq('q', 2), 2, 3, 'ok', null), op(2, 2, deq('q'), 4, 5, 'ok', 7)],
        queueModel,
      ),
    );
    expect(ids(never.ops)).to.deep.equal([2]);
    expect(never.text).to.contain('(wrong on its own)');
  });

  it('records through History<QueueCommand> and checks the events', () => {
    let t = 0;
    const history = new History<QueueCommand>({ clock: () => t++ });
    history.invoke('a', enq('q', 'x')).ok(null);
    const late = history.invoke('b', enq('q', 'y'));
    history.invoke('c', deq('q')).ok('x');
    late.info();
    history.invoke('c', deq('q')).ok('y'); // the info enqueue took effect
    expect(checkHistorySync(history, queueModel).ok).to.equal(true);
    history.invoke('c', deq('q')).ok('y'); // y again
    expect(onlyViolation(checkHistorySync(history, queueModel)).part).to.equal('q');
  });

  it('random histories: the worker pool agrees with the calling thread, good and corrupted', async function () {
    this.timeout(30_000);
    const checker = new Checker({ maxThreads: 2 });
    try {
      let bad = 0;
      for (let seed = 1; seed <= 30; seed++) {
        const ops = queueHistory(seed, 60 + seed * 2, ['q1', 'q2', 'q3']);
        if (seed % 2 === 0) {
          // Swap the results of two dequeues of q1 that saw values: often a FIFO violation.
          const seen = ops.filter((o) => o.status === 'ok' && o.command.type === 'dequeue' && o.command.queue === 'q1' && o.result !== null);
          const [a, b] = [seen[seed % seen.length]!, seen[(seed * 7) % seen.length]!];
          [a.result, b.result] = [b.result, a.result];
        }
        const sync = checkHistorySync(ops, queueModel);
        const pooled = await checker.check(ops, queueModel);
        expect(pooled, `seed ${seed}`).to.deep.equal(sync);
        if (seed % 2 === 1) expect(sync.ok, formatResult(sync)).to.equal(true);
        if (!sync.ok) bad++;
        for (const v of sync.violations) expect(checkHistorySync(v.ops, queueModel).ok, v.text).to.equal(false);
      }
      expect(bad, 'some corrupted histories are violations').to.be.greaterThan(3);
    } finally {
      await checker.close();
    }
  });
});

// ---------------------------------------------------------------------------------------
// A counter without `source`
// ---------------------------------------------------------------------------------------

type CounterCommand = { type: 'add'; by: number } | { type: 'read' };

/** A counter that only this file can see: no `source`, so checks run in the calling thread. */
const counterModel: Model<number, CounterCommand, number | null> = {
  name: 'counter',
  init: () => 0,
  step: (n, cmd, out) =>
    cmd.type === 'add'
      ? { ok: out === UNKNOWN_OUTPUT || out === null, state: n + cmd.by }
      : { ok: out === UNKNOWN_OUTPUT || out === n, state: n },
  describeInput: (cmd) => (cmd.type === 'add' ? `add(${cmd.by})` : 'read()'),
};

describe('models: a counter built in the test (checked in the calling thread)', () => {
  const add = (by: number): CounterCommand => ({ type: 'add', by });
  const read: CounterCommand = { type: 'read' };

  it('accepts reads of any sum that real time allows, and rejects one it does not', async () => {
    const ops = [
      op(0, 1, add(1), 0, 4, 'ok', null),
      op(1, 2, add(10), 1, 5, 'info'), // may have been applied
      op(2, 3, read, 2, 3, 'ok', 10), // saw the info add only
      op(3, 3, read, 6, 7, 'ok', 11),
    ];
    const good = await checkHistory(ops, counterModel);
    expect(good, formatResult(good)).to.deep.include({ ok: true, parts: 1 });
    ops.push(op(4, 3, read, 8, 9, 'ok', 1)); // the info add cannot be undone
    const v = onlyViolation(await checkHistory(ops, counterModel));
    expect(v.part).to.equal('');
    // The read of 11 needs both adds, and the read of 1 comes after it: the first read goes.
    expect(ids(v.ops)).to.deep.equal([0, 1, 3, 4]);
    expect(v.text).to.contain("counter: not linearizable. Minimal failing sub-history: 4 ops of the history's 5");
    expect(v.text).to.contain('c3  [8.0ms → 9.0ms]  read() → 1');
  });
});

// ---------------------------------------------------------------------------------------
// The kv through the generic engine
// ---------------------------------------------------------------------------------------

describe('models: the kv model', () => {
  it('run as a plain model (a copy of kvModel) gives the verdicts of its compiled form', () => {
    const plain = { ...kvModel }; // not kvModel itself: the generic engine runs it
    const rand = prng(5);
    let bad = 0;
    for (let k = 0; k < 600; k++) {
      // Tiny random histories over two keys with open, info and fail ops.
      const n = 2 + Math.floor(rand() * 6);
      const ops = Array.from({ length: n }, (_, i): Op<KvCommand> => {
        const key = rand() < 0.7 ? 'k' : 'j';
        const t = Math.floor(rand() * 6);
        const r = rand();
        const command: KvCommand =
          r < 0.35 ? { type: 'get', key } : r < 0.65 ? { type: 'set', key, value: 1 + Math.floor(rand() * 2) } : r < 0.85 ? { type: 'cas', key, expected: rand() < 0.3 ? null : 1, value: 2 } : { type: 'delete', key };
        const s = rand();
        const status: OpStatus = s < 0.75 ? 'ok' : s < 0.85 ? 'info' : s < 0.93 ? 'open' : 'fail';
        const result = command.type === 'get' ? [null, 1, 2][Math.floor(rand() * 3)] : command.type === 'set' ? null : rand() < 0.5;
        return op(i, i, command, t, status === 'open' ? null : t + 1 + Math.floor(rand() * 3), status, result);
      });
      const compiled = checkKvSync(ops);
      const generic = checkHistorySync(ops, plain);
      expect(generic.ok, `history ${k}\n${formatResult(compiled)}\n${formatResult(generic)}`).to.equal(compiled.ok);
      expect(generic.violations.map((v) => v.part)).to.deep.equal(compiled.violations.map((v) => v.key));
      if (!compiled.ok) bad++;
    }
    expect(bad).to.be.within(60, 540);
  });

  it('kvModel follows KvStateMachine on a random sequence', () => {
    const rand = prng(9);
    const kv = new KvStateMachine();
    let state = kvModel.init();
    for (let i = 0; i < 500; i++) {
      const key = ['a', 'b'][Math.floor(rand() * 2)]!;
      const r = rand();
      const command: KvCommand =
        r < 0.3 ? { type: 'get', key } : r < 0.6 ? { type: 'set', key, value: Math.floor(rand() * 3) } : r < 0.85 ? { type: 'cas', key, expected: Math.floor(rand() * 3), value: 7 } : { type: 'delete', key };
      const out = kv.apply(command);
      const step = kvModel.step(state, command, out);
      expect(step.ok, `op ${i}`).to.equal(true);
      state = step.state;
    }
  });
});

// ---------------------------------------------------------------------------------------
// Misuse
// ---------------------------------------------------------------------------------------

describe('models: malformed models and partitions are refused with errors naming the problem', () => {
  const ops = [op(0, 1, add1(), 0, 1, 'ok', null)];
  function add1(): CounterCommand {
    return { type: 'add', by: 1 };
  }

  it('a model without step, a step answering garbage, a partition that loses an ok op or repeats one', () => {
    expect(() => checkHistorySync(ops, { init: () => 0 } as unknown as Model<number, CounterCommand, null>)).to.throw(TypeError, /model\.step must be a function/);
    const garbage = { ...counterModel, step: () => 'yes' } as unknown as Model<number, CounterCommand, null>;
    expect(() => checkHistorySync(ops, garbage)).to.throw(TypeError, /counter\.step must return \{ ok: boolean, state \}/);
    expect(() => checkHistorySync(ops, { ...counterModel, partition: () => new Map() })).to.throw(TypeError, /left out op 0, which is recorded ok/);
    expect(() => checkHistorySync(ops, { ...counterModel, partition: (o) => [['a', o], ['b', o]] as const })).to.throw(TypeError, /put op 0 in two parts/);
    expect(() => checkHistorySync(ops, { ...counterModel, partition: (o) => [['a', o], ['a', []]] as const })).to.throw(TypeError, /the part "a" twice/);
  });

  it('a source whose export is a different model is refused by the worker', async () => {
    const wrong = { ...counterModel, source: queueModel.source! };
    let error: unknown;
    await checkHistory(ops, wrong, { maxThreads: 1 }).catch((e: unknown) => (error = e));
    expect(String(error)).to.match(/is the model 'queue', not 'counter'/);
  });
});
