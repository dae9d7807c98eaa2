/**
 * The kv store as a model for the checker: `kvModel` is a `Model` like any other (a Map from
 * key to value, partitioned by key), and it also has a hand-compiled form for the search, used
 * whenever `kvModel` is the model checked: each key a register over interned values, with
 * kv-only reductions (an open op never directly followed by one that hides its effect, a
 * pre-check for results no state can produce, and shrinking that keeps a writer for every
 * read). Both give the same verdicts (test/models.spec.ts checks it).
 *
 * Same semantics as `KvStateMachine.apply` (`src/state-machines/kv.ts`): set answers null;
 * get the value, or null for a missing key; delete whether the key existed; cas swaps when
 * the current value (null for a missing key) deep-equals `expected`, and answers whether it did.
 */
import { deepEqual, validateKvCommand, type KvCommand } from '../state-machines/kv.js';
import { kvRenderers, renderCommand, renderKey, renderValue } from './format.js';
import type { Op } from './history.js';
import { UNKNOWN_OUTPUT, type Model } from './model.js';
import { REJECT, ValueTable, realTimeOrder, type PartAdapter, type SearchProblem, type TimedOp } from './search.js';

// ---------------------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------------------

/** A kv state: key to value (a key holding null is present, unlike a missing one). */
export type KvState = ReadonlyMap<string, unknown>;

function withKey(state: KvState, key: string, value: unknown): KvState {
  const next = new Map(state);
  next.set(key, value);
  return next;
}

function withoutKey(state: KvState, key: string): KvState {
  const next = new Map(state);
  next.delete(key);
  return next;
}

/**
 * The kv store of this package as a `Model`: `checkHistory(history, kvModel)` is what
 * `checkKv(history)` runs. States are Maps; the history is partitioned by key. A command that
 * is not a kv command is refused by the state machine, so an op with one is dropped unless it
 * is recorded `ok`, which is a TypeError.
 */
export const kvModel: Model<KvState, KvCommand, unknown> = {
  name: 'kv',
  source: { module: import.meta.url, export: 'kvModel' },
  init: () => new Map(),
  step(state, cmd, out) {
    const any = out === UNKNOWN_OUTPUT;
    const current = state.has(cmd.key) ? state.get(cmd.key) : null;
    switch (cmd.type) {
      case 'set':
        return { ok: any || deepEqual(out, null), state: withKey(state, cmd.key, cmd.value) };
      case 'get':
        return { ok: any || deepEqual(out, current), state };
      case 'delete':
        return { ok: any || out === state.has(cmd.key), state: withoutKey(state, cmd.key) };
      case 'cas': {
        const swapped = deepEqual(current, cmd.expected);
        return { ok: any || out === swapped, state: swapped ? withKey(state, cmd.key, cmd.value) : state };
      }
    }
  },
  partition(ops) {
    const byKey = new Map<string, Op<KvCommand>[]>();
    for (const op of ops) {
      let command: KvCommand;
      try {
        command = validateKvCommand(op.command);
      } catch (e) {
        // A refused command has no effect; only a successful one is a contradiction.
        if (op.status !== 'ok') continue;
        throw new TypeError(`op ${op.id} is recorded ok but is not a kv command: ${(e as Error).message}`);
      }
      let list = byKey.get(command.key);
      if (list === undefined) byKey.set(command.key, (list = []));
      list.push({ ...op, command });
    }
    return byKey;
  },
  describeInput: renderCommand,
  describeOutput: renderValue,
  describeState(state) {
    if (state.size === 0) return 'empty';
    return [...state].map(([k, v]) => `${renderKey(k)} = ${renderValue(v)}`).join(', ');
  },
};

// ---------------------------------------------------------------------------------------
// The compiled form: one key as a register over interned values
// ---------------------------------------------------------------------------------------

/** Model state: the id of the stored value in the key's ValueTable, or MISSING. */
const MISSING = -1;

const SET = 0;
const GET = 1;
const DEL = 2;
const CAS = 3;
const KINDS: Record<KvCommand['type'], number> = { set: SET, get: GET, delete: DEL, cas: CAS };

/** A key's sub-history compiled for the search: ops sorted by call, the model as int arrays. */
interface KvProblem extends SearchProblem {
  table: ValueTable;
  nullId: number;
  kind: Uint8Array;
  /** set: value id; cas: expected id. */
  a: Int32Array;
  /** cas: new value id. */
  b: Int32Array;
  /** get: result id; delete/cas: 1 for true, 0 for false. */
  res: Int32Array;
  /** 1 when the recorded result can never be right (a set returning non-null, ...). */
  never: Uint8Array;
}

/** A kv command of a TimedOp (the partition validated it). */
const command = (t: TimedOp): KvCommand => t.op.command as KvCommand;

function compile(input: readonly TimedOp[]): KvProblem {
  // Open gets have no effect and an unknown result: they constrain nothing.
  const order = realTimeOrder(input.filter((t) => !(t.ret === Infinity && command(t).type === 'get')));
  const { n, ops } = order;
  const table = new ValueTable();
  const nullId = table.intern(null);
  const c: KvProblem = {
    ...order,
    initial: MISSING, // every key starts missing
    step: (i, s) => step(c, i, s),
    hidesOpen: (i, before, after) => hidesOpen(c, i, before, after),
    table,
    nullId,
    kind: new Uint8Array(n),
    a: new Int32Array(n),
    b: new Int32Array(n),
    res: new Int32Array(n),
    never: new Uint8Array(n),
  };
  const bool = (i: number, r: unknown): void => {
    if (r === true || r === false) c.res[i] = r ? 1 : 0;
    else c.never[i] = 1;
  };
  ops.forEach((t, i) => {
    const cmd = command(t);
    const op = t.op;
    c.kind[i] = KINDS[cmd.type];
    const open = t.ret === Infinity;
    switch (cmd.type) {
      case 'set':
        c.a[i] = table.intern(cmd.value);
        if (!open && !deepEqual(op.result, null)) c.never[i] = 1;
        break;
      case 'get':
        c.res[i] = table.intern(op.result);
        break;
      case 'delete':
        if (!open) bool(i, op.result);
        break;
      case 'cas':
        c.a[i] = table.intern(cmd.expected);
        c.b[i] = table.intern(cmd.value);
        if (!open) bool(i, op.result);
        break;
    }
  });
  return c;
}

/**
 * The kv register model (same semantics as `KvStateMachine.apply`): op `i` applied in state
 * `s`, returning the new state, or REJECT when the op's recorded result differs from what
 * the model answers. Open ops accept any result.
 */
function step(c: KvProblem, i: number, s: number): number {
  if (c.never[i] === 1) return REJECT;
  const open = c.open[i] === 1;
  switch (c.kind[i]) {
    case SET:
      return c.a[i]!;
    case GET: {
      const current = s === MISSING ? c.nullId : s; // get answers null for a missing key
      return current === c.res[i] ? s : REJECT;
    }
    case DEL:
      if (!open && (s === MISSING ? 0 : 1) !== c.res[i]) return REJECT;
      return MISSING;
    default: {
      // cas: a missing key compares equal to expected === null only.
      const current = s === MISSING ? c.nullId : s;
      const swapped = current === c.a[i];
      if (!open && (swapped ? 1 : 0) !== c.res[i]) return REJECT;
      return swapped ? c.b[i]! : s;
    }
  }
}

/** What the model answers for op `i` in state `s` (for explanations). */
function modelAnswer(c: KvProblem, i: number, s: number): unknown {
  const current = s === MISSING ? null : c.table.values[s];
  switch (c.kind[i]) {
    case SET:
      return null;
    case GET:
      return current;
    case DEL:
      return s !== MISSING;
    default:
      return (s === MISSING ? c.nullId : s) === c.a[i];
  }
}

/**
 * Right after an open op, an op that makes its effect invisible: a set (any), or an open
 * delete, overwrite it whatever it was, and an open cas that does not swap changes nothing.
 * Sound because every kv command applies in every state (see `SearchProblem.hidesOpen`).
 */
function hidesOpen(c: KvProblem, i: number, before: number, after: number): boolean {
  const k = c.kind[i];
  return k === SET || (c.open[i] === 1 && (k === DEL || (k === CAS && after === before)));
}

/**
 * The first completed op (by completion) whose result cannot be right in any order: a set
 * that returned something other than null, a delete or cas that returned a non-boolean, or
 * an op that observed a write (see `Observation`) when no op that could make it was invoked
 * before it completed — a read of a value never written. Null when there is none.
 */
function impossible(ops: readonly TimedOp[]): { op: TimedOp; why: string } | null {
  const table = new ValueTable();
  const writers = new Map<number, TimedOp[]>(); // by value, in call order
  const anyWriters: TimedOp[] = [];
  for (const t of [...ops].sort((x, y) => x.call - y.call)) {
    const c = command(t);
    if (c.type === 'set' || (c.type === 'cas' && (t.ret === Infinity || t.op.result === true))) {
      const id = table.intern(c.value);
      if (!writers.has(id)) writers.set(id, []);
      writers.get(id)!.push(t);
      anyWriters.push(t);
    }
  }
  // The first writer in `list` other than t invoked before t completed.
  const writerFor = (list: readonly TimedOp[] | undefined, t: TimedOp): boolean =>
    (list ?? []).some((w, k) => k < 2 && w !== t && w.call < t.ret) ||
    (list ?? []).slice(2).some((w) => w.call < t.ret);
  for (const t of ops.filter((x) => x.ret !== Infinity).sort((x, y) => x.ret - y.ret)) {
    const c = command(t);
    const result = t.op.result;
    const what = `${renderCommand(c)} → ${renderValue(result)}`;
    if (c.type === 'set' && !deepEqual(result, null)) return { op: t, why: `${what}: a set always returns null.` };
    if ((c.type === 'delete' || c.type === 'cas') && typeof result !== 'boolean') {
      return { op: t, why: `${what}: a ${c.type} returns true or false.` };
    }
    const seen = observation(t);
    if (typeof seen === 'object' && seen !== null && !writerFor(writers.get(table.intern(seen.value)), t)) {
      return { op: t, why: `${what}: no op writes ${renderValue(seen.value)} to ${renderKey(c.key)} before it completes.` };
    }
    if (seen === 'something' && !writerFor(anyWriters, t)) {
      return { op: t, why: `${what}: no op writes ${renderKey(c.key)} before it completes.` };
    }
  }
  return null;
}

/**
 * What op `t`'s recorded result says the key held just before it, when some other op must
 * have made it so:
 *
 * - `{ value: v }`: a get returned v, or a cas from v swapped (v not null): a write of v;
 * - `'nothing'`: a get returned null, a cas from null swapped, a delete returned false: a
 *   delete or a write of null (or the initial state);
 * - `'something'`: a delete returned true, or a cas from null failed: some write.
 *
 * Null when the result says nothing about the prior state (sets, open ops, a cas from a
 * non-null value that failed).
 */
type Observation = { value: unknown } | 'nothing' | 'something';

function observation(t: TimedOp): Observation | null {
  if (t.ret === Infinity) return null;
  const c = command(t);
  const result = t.op.result;
  switch (c.type) {
    case 'get':
      return deepEqual(result, null) ? 'nothing' : { value: result };
    case 'cas':
      if (result === true) return deepEqual(c.expected, null) ? 'nothing' : { value: c.expected };
      return result === false && deepEqual(c.expected, null) ? 'something' : null;
    case 'delete':
      return result === true ? 'something' : result === false ? 'nothing' : null;
    case 'set':
      return null;
  }
}

/**
 * For each op of `ops`, the other ops that could have produced what it observed (see
 * `Observation`) and were invoked before it completed. Empty when it observed nothing, or
 * when no op explains it (a read of a value never written, or of the initial state).
 */
function explainers(ops: readonly TimedOp[]): number[][] {
  const table = new ValueTable();
  const nullId = table.intern(null);
  // The value an op may leave: sets, and cas ops unless they certainly did not swap.
  const writes = ops.map((t) => {
    const c = command(t);
    if (c.type === 'set' || (c.type === 'cas' && (t.ret === Infinity || t.op.result === true))) return table.intern(c.value);
    return null;
  });
  return ops.map((x, i) => {
    const seen = observation(x);
    if (seen === null) return [];
    const want = typeof seen === 'object' ? table.intern(seen.value) : null;
    const explains = (j: number): boolean => {
      if (seen === 'nothing') return command(ops[j]!).type === 'delete' || writes[j] === nullId;
      if (seen === 'something') return writes[j] !== null;
      return writes[j] === want;
    };
    const found: number[] = [];
    ops.forEach((e, j) => {
      if (j !== i && e.call < x.ret && explains(j)) found.push(j);
    });
    return found;
  });
}

// ---------------------------------------------------------------------------------------
// The adapter the search runs
// ---------------------------------------------------------------------------------------

/** `kvModel` for the search: the compiled register per key, and the kv's own texts. */
export const kvAdapter: PartAdapter<KvProblem> = {
  modelName: 'kv',
  label: (key) => `key ${renderKey(key)}`,
  whole: () => "the key's",
  render: kvRenderers as PartAdapter['render'],
  compile,
  renderState(c, s) {
    const k = renderKey(c.ops.length === 0 ? '' : command(c.ops[0]!).key);
    return s === MISSING ? `${k} is missing` : `${k} = ${renderValue(c.table.values[s])}`;
  },
  refusal(c, i, s) {
    if (c.never[i] === 1 && c.kind[i] === SET) return ': a set always returns null';
    if (c.never[i] === 1) return `: ${command(c.ops[i]!).type} returns true or false`;
    return ` would return ${renderValue(modelAnswer(c, i, s))}`;
  },
  impossible,
  explainers,
};
