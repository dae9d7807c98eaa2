/**
 * The linearizability search for ONE key's sub-history against the kv register model: the
 * engine both `checkKvSync` (in this thread) and the piscina workers (`lin-worker.ts`) run.
 *
 * Algorithm (Wing & Gong, "Testing and verifying concurrent objects", JPDC 1993, with the
 * memoization of Lowe, "Testing for linearizability", CCPE 2017, in the form Porcupine
 * (github.com/anishathalye/porcupine, `checkSingle`) uses):
 *
 * - The history is a doubly linked list of call and return entries in real-time order.
 * - Walking from the head, a call entry is a candidate to take effect next (it is in the
 *   "minimal-call frontier": no return precedes it). If the model accepts it from the current
 *   state with its recorded result, it is linearized: its call and return entries are lifted
 *   out of the list, pushed on a stack with the prior state, and the walk restarts at the head.
 * - Reaching a return entry means that op must have taken effect before everything after it,
 *   but no candidate worked: pop the last linearized op, restore its entries and state, and
 *   try the next candidate after it. An empty stack there means no linearization exists.
 * - Lowe's cache: a (set of linearized ops, model state) pair reached once is never explored
 *   again, since what can follow depends only on that pair. The set is a bitset with an
 *   incrementally maintained Zobrist hash. Added here: subsumption for open ops (`Cache`).
 *
 * Open ops (`info` or never completed) have their return at +∞ and accept any result: they
 * may take effect anywhere after their call. Leaving one out is the same as linearizing it
 * last (every kv command applies in every state), so "or not at all" needs no extra case,
 * and the search succeeds once every completed op is linearized. Open `get`s constrain
 * nothing and are dropped up front. Open ops are what makes refutation expensive (each one
 * doubles the configurations), so three sound reductions apply to them (see `search`,
 * `Cache`): completed candidates go first, configurations that differ from a finished one
 * only by extra open ops are skipped, and an open op is never followed directly by an op
 * that hides its effect.
 *
 * Before searching, `impossible` looks for a result no state can produce (a read of a value
 * no op writes, a set answering non-null): that is a violation on its own, found in O(n).
 *
 * The search is exponential in the worst case (checking linearizability is NP-complete,
 * Gibbons & Korach 1997), so it runs under a step and time budget and answers 'unknown' when
 * the budget runs out.
 */
import { deepEqual } from '../state-machines/kv.js';
import { renderClient, renderCommand, renderKey, renderOps, renderValue } from './format.js';
import type { Op } from './history.js';

/**
 * An op placed in the history's real-time order: `call` and `ret` are ranks (positions of its
 * invocation and completion events); `ret` is `Infinity` for an open op. Ranks are distinct.
 */
export interface TimedOp {
  op: Op;
  call: number;
  ret: number;
}

/** One unit of work: a key's sub-history and the budgets for it. Plain data, for a worker. */
export interface KeyTask {
  key: string;
  ops: TimedOp[];
  /** Search budget per check: steps (call attempts + backtracks) and wall-clock ms. */
  maxSteps: number;
  timeoutMs: number;
  /** Shrink a violation to a minimal failing sub-history, within `shrinkTimeoutMs`. */
  shrink: boolean;
  shrinkTimeoutMs: number;
  /** Time origin for rendering (ms). */
  base: number;
}

export interface KeyViolation {
  /** The failing sub-history, sorted by invocation. */
  ops: Op[];
  /** Readable rendering and explanation. */
  text: string;
  /** True when every single op was shown necessary (shrinking finished within budget). */
  minimal: boolean;
}

export interface KeyOutcome {
  key: string;
  verdict: 'ok' | 'violation' | 'unknown';
  /** Search steps of the main check (shrinking not included). */
  steps: number;
  /** Wall-clock ms for this key, shrinking included. */
  ms: number;
  /** For 'unknown': which budget ran out. */
  reason?: string;
  violation?: KeyViolation;
}

// ---------------------------------------------------------------------------------------
// The model: one kv key as a register over interned values
// ---------------------------------------------------------------------------------------

/** Model state: the id of the stored value in the key's ValueTable, or MISSING. */
const MISSING = -1;
/** `step` result when the model refuses the op's recorded result. */
const REJECT = -2;

const SET = 0;
const GET = 1;
const DEL = 2;
const CAS = 3;
const KINDS: Record<Op['command']['type'], number> = { set: SET, get: GET, delete: DEL, cas: CAS };

/**
 * A coarse structural hash, consistent with kv's `deepEqual` (deep-equal values hash alike;
 * unequal ones may collide): it buckets values so interning compares few candidates.
 */
function valueHash(v: unknown, depth: number): string {
  switch (typeof v) {
    case 'number':
      return Number.isNaN(v) ? 'nNaN' : `n${v === 0 ? 0 : v}`;
    case 'string':
      return `s${v}`;
    case 'bigint':
      return `i${v}`;
    case 'boolean':
      return v ? 't' : 'f';
    case 'object':
      break;
    default:
      return typeof v;
  }
  if (v === null) return 'z';
  if (Array.isArray(v)) {
    return depth > 2 ? `a${v.length}` : `a[${v.map((x) => valueHash(x, depth + 1)).join(',')}]`;
  }
  if (ArrayBuffer.isView(v)) return `v${Object.prototype.toString.call(v)}${v.byteLength}`;
  if (v instanceof Date) return `d${v.getTime()}`;
  if (v instanceof Map) return `M${v.size}`;
  if (v instanceof Set) return `S${v.size}`;
  const keys = Object.keys(v).sort();
  if (depth > 2) return `o${keys.length}`;
  return `o{${keys.map((k) => `${k}:${valueHash((v as Record<string, unknown>)[k], depth + 1)}`).join(',')}}`;
}

/** Values interned up to `deepEqual`: equal values get one id, so states compare as ints. */
class ValueTable {
  readonly values: unknown[] = [];
  private readonly buckets = new Map<string, number[]>();

  intern(v: unknown): number {
    const h = valueHash(v, 0);
    let bucket = this.buckets.get(h);
    if (bucket === undefined) {
      bucket = [];
      this.buckets.set(h, bucket);
    }
    for (const id of bucket) if (deepEqual(this.values[id], v)) return id;
    const id = this.values.length;
    this.values.push(v);
    bucket.push(id);
    return id;
  }
}

/** A key's sub-history compiled for the search: ops sorted by call, the model as int arrays. */
interface Compiled {
  n: number;
  ops: TimedOp[];
  table: ValueTable;
  nullId: number;
  kind: Uint8Array;
  /** set: value id; cas: expected id. */
  a: Int32Array;
  /** cas: new value id. */
  b: Int32Array;
  /** get: result id; delete/cas: 1 for true, 0 for false. */
  res: Int32Array;
  open: Uint8Array;
  /** 1 when the recorded result can never be right (a set returning non-null, ...). */
  never: Uint8Array;
  /** Entries in real-time order: 2i is op i's call, 2i+1 its return. */
  order: Int32Array;
}

function compile(input: readonly TimedOp[]): Compiled {
  // Open gets have no effect and an unknown result: they constrain nothing.
  const ops = input
    .filter((t) => !(t.ret === Infinity && t.op.command.type === 'get'))
    .sort((x, y) => x.call - y.call);
  const n = ops.length;
  const table = new ValueTable();
  const nullId = table.intern(null);
  const c: Compiled = {
    n,
    ops,
    table,
    nullId,
    kind: new Uint8Array(n),
    a: new Int32Array(n),
    b: new Int32Array(n),
    res: new Int32Array(n),
    open: new Uint8Array(n),
    never: new Uint8Array(n),
    order: new Int32Array(2 * n),
  };
  const bool = (i: number, r: unknown): void => {
    if (r === true || r === false) c.res[i] = r ? 1 : 0;
    else c.never[i] = 1;
  };
  ops.forEach(({ op, ret }, i) => {
    const cmd = op.command;
    c.kind[i] = KINDS[cmd.type];
    const open = ret === Infinity;
    c.open[i] = open ? 1 : 0;
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
  const entries: { e: number; rank: number }[] = [];
  ops.forEach((t, i) => entries.push({ e: 2 * i, rank: t.call }, { e: 2 * i + 1, rank: t.ret }));
  // Ranks are distinct except the +∞ of open ops, which stay in op order after everything.
  entries.sort((x, y) => x.rank - y.rank || x.e - y.e);
  entries.forEach((x, j) => (c.order[j] = x.e));
  return c;
}

/**
 * The kv register model (same semantics as `KvStateMachine.apply`): op `i` applied in state
 * `s`, returning the new state, or REJECT when the op's recorded result differs from what
 * the model answers. Open ops accept any result.
 */
function step(c: Compiled, i: number, s: number): number {
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
function modelAnswer(c: Compiled, i: number, s: number): unknown {
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

// ---------------------------------------------------------------------------------------
// The search
// ---------------------------------------------------------------------------------------

interface Budget {
  maxSteps: number;
  /** performance.now() deadline. */
  deadline: number;
}

type SearchResult =
  | { verdict: 'ok'; steps: number }
  | { verdict: 'violation'; steps: number; deepest: { order: number[]; state: number } | null }
  | { verdict: 'unknown'; steps: number; reason: string };

/** mulberry32: deterministic Zobrist keys, so runs repeat exactly. */
function zobristKeys(n: number): Int32Array {
  const keys = new Int32Array(n);
  let seed = 0x2545f491;
  for (let i = 0; i < n; i++) {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = seed;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    keys[i] = t ^ (t >>> 14);
  }
  return keys;
}

/**
 * Lowe's cache of explored configurations (set of linearized ops, model state), with one
 * addition for open ops: a configuration is also skipped when a FINISHED one (explored to
 * the end without success) has the same state, the same completed ops, and a subset of its
 * open ops. That is sound: whatever can follow the bigger configuration can follow the
 * smaller one too, with the extra open ops taking effect last (an open op accepts any
 * result and every kv command applies in every state). Without it every subset of pending
 * open ops is a separate configuration, and refuting a history with k open ops costs 2^k.
 *
 * Sets are bitsets stored compressed: the leading all-ones and trailing all-zero words are
 * dropped (the linearized set is mostly "every op up to some point"). The bucket hash is a
 * Zobrist hash of the completed ops only, so configurations differing in open ops meet.
 */
class Cache {
  private readonly buckets = new Map<number, number[]>();
  private readonly states: number[] = [];
  private readonly los: number[] = [];
  private readonly words: Uint32Array[] = [];
  private readonly finished: number[] = [];

  constructor(private readonly openMask: Uint32Array) {}

  /** Add the configuration and return its id, or -1 when it is visited or subsumed. */
  add(bits: Uint32Array, hash: number, state: number): number {
    const key = (hash ^ Math.imul(state + 2, 0x9e3779b1)) | 0;
    let lo = 0;
    while (lo < bits.length && bits[lo] === 0xffffffff) lo++;
    let hi = bits.length;
    while (hi > lo && bits[hi - 1] === 0) hi--;
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      bucket = [];
      this.buckets.set(key, bucket);
    } else {
      for (const k of bucket) {
        if (this.states[k] === state && this.covers(k, bits)) return -1;
      }
    }
    const id = this.states.length;
    bucket.push(id);
    this.states.push(state);
    this.los.push(lo);
    this.words.push(bits.slice(lo, hi));
    this.finished.push(0);
    return id;
  }

  /** Configuration `id` was explored to the end without success. */
  finish(id: number): void {
    this.finished[id] = 1;
  }

  /** Whether entry k equals `bits`, or is finished with `bits` = its set plus open ops. */
  private covers(k: number, bits: Uint32Array): boolean {
    const lo = this.los[k]!;
    const w = this.words[k]!;
    const hi = lo + w.length;
    let equal = true;
    for (let j = 0; j < bits.length; j++) {
      const e = j < lo ? 0xffffffff : j < hi ? w[j - lo]! : 0;
      const x = bits[j]!;
      if (e === x) continue;
      equal = false;
      // Subsumed needs: entry ⊆ bits, and every extra op of bits open.
      if ((e & ~x) !== 0 || (x & ~e & ~this.openMask[j]!) !== 0) return false;
    }
    return equal || this.finished[k] === 1;
  }
}

const NIL = -1;

/**
 * Wing & Gong's search with Lowe's cache over `c` (see the module comment). With `explain`,
 * a violation carries the deepest partial linearization reached, for the explanation.
 *
 * Open ops are kept out of the linked list: at each configuration the completed ops of the
 * frontier are tried first, in list order, and only when none works are the open ops
 * invoked before the first remaining return tried, in call order. Any order of candidates is
 * correct; this one explores "leave the open op out" first, so those configurations are
 * finished when their variants with open ops arrive and get subsumed (see `Cache`).
 */
function search(c: Compiled, budget: Budget, explain = false): SearchResult {
  const n = c.n;
  const HEAD = 2 * n;
  const next = new Int32Array(2 * n + 1);
  const prev = new Int32Array(2 * n + 1);
  const rank = (e: number): number => (e & 1 ? c.ops[e >> 1]!.ret : c.ops[e >> 1]!.call);
  let last = HEAD;
  const opens: number[] = []; // open ops in call order
  for (let j = 0; j < 2 * n; j++) {
    const e = c.order[j]!;
    if (c.open[e >> 1] === 1) {
      if ((e & 1) === 0) opens.push(e >> 1);
      continue;
    }
    next[last] = e;
    prev[e] = last;
    last = e;
  }
  next[last] = NIL;
  const openSlot = new Int32Array(n).fill(-1);
  opens.forEach((i, k) => (openSlot[i] = k));

  // Remove op i's call and return entries; `unlift` undoes it (strictly LIFO, as Porcupine).
  const lift = (i: number): void => {
    for (const e of [2 * i, 2 * i + 1]) {
      next[prev[e]!] = next[e]!;
      if (next[e] !== NIL) prev[next[e]!] = prev[e]!;
    }
  };
  const unlift = (i: number): void => {
    for (const e of [2 * i + 1, 2 * i]) {
      next[prev[e]!] = e;
      if (next[e] !== NIL) prev[next[e]!] = e;
    }
  };

  const zobrist = zobristKeys(n);
  const bits = new Uint32Array(Math.ceil(n / 32));
  const openMask = new Uint32Array(bits.length);
  for (const i of opens) {
    openMask[i >> 5]! |= 1 << (i & 31);
    zobrist[i] = 0; // the bucket hash covers completed ops only
  }
  const isSet = (i: number): boolean => (bits[i >> 5]! & (1 << (i & 31))) !== 0;
  const cache = new Cache(openMask);
  const stackOps = new Int32Array(n);
  const stackStates = new Int32Array(n);
  const stackIds = new Int32Array(n);
  const stackLimits = new Float64Array(n);
  let depth = 0;
  let hash = 0;
  let state = MISSING; // every key starts missing
  let steps = 0;
  let deepest: { order: number[]; state: number } | null = explain ? { order: [], state } : null;

  // The cursor: a list entry, or (entry === NIL) the next open op to try, `slot`, among
  // those invoked before `limit` (the rank of the first remaining return).
  let entry = next[HEAD]!;
  let slot = 0;
  let limit = 0;
  /** Linearize op i if the model and the cache allow; true when it was pushed. */
  const tryOp = (i: number): boolean => {
    const s = step(c, i, state);
    if (s === REJECT) return false;
    if (depth > 0 && c.open[stackOps[depth - 1]!] === 1) {
      // Right after an open op p, an op that makes p's effect invisible is pointless: a set
      // (any), or an open delete, overwrite it whatever it was, and an open cas that does
      // not swap changes nothing. The same op is tried without p from p's own parent (it is
      // in the same frontier, since open ops do not change it), and p can still go last.
      const k = c.kind[i];
      if (k === SET || (c.open[i] === 1 && (k === DEL || (k === CAS && s === state)))) return false;
    }
    bits[i >> 5]! ^= 1 << (i & 31);
    const id = cache.add(bits, hash ^ zobrist[i]!, s);
    if (id < 0) {
      bits[i >> 5]! ^= 1 << (i & 31); // explored or subsumed: undo
      return false;
    }
    stackOps[depth] = i;
    stackStates[depth] = state;
    stackIds[depth] = id;
    stackLimits[depth] = limit;
    depth++;
    hash ^= zobrist[i]!;
    state = s;
    if (c.open[i] === 0) lift(i);
    if (deepest !== null && depth > deepest.order.length) {
      deepest = { order: Array.from(stackOps.subarray(0, depth)), state };
    }
    return true;
  };

  while (next[HEAD] !== NIL) {
    // Every completed op is linearized when the list is empty; the open ops left over take
    // effect last, which always works.
    if (++steps > budget.maxSteps) return { verdict: 'unknown', steps, reason: `step budget of ${budget.maxSteps} exhausted` };
    if ((steps & 1023) === 0 && performance.now() > budget.deadline) {
      return { verdict: 'unknown', steps, reason: 'time budget exhausted' };
    }
    if (entry !== NIL && (entry & 1) === 0) {
      // A completed op's call in the frontier: try to linearize it now.
      if (tryOp(entry >> 1)) entry = next[HEAD]!;
      else entry = next[entry]!;
      continue;
    }
    if (entry !== NIL) {
      // The first remaining return: no completed candidate is left; the open ones follow.
      limit = rank(entry);
      slot = 0;
      entry = NIL;
    }
    while (slot < opens.length && (isSet(opens[slot]!) || c.ops[opens[slot]!]!.call >= limit)) {
      if (c.ops[opens[slot]!]!.call >= limit) slot = opens.length;
      else slot++;
    }
    if (slot < opens.length) {
      if (tryOp(opens[slot]!)) entry = next[HEAD]!;
      else slot++;
      continue;
    }
    // Nothing can go next: the return's op had to be linearized by now. Backtrack.
    if (depth === 0) return { verdict: 'violation', steps, deepest };
    depth--;
    cache.finish(stackIds[depth]!);
    const i = stackOps[depth]!;
    state = stackStates[depth]!;
    bits[i >> 5]! ^= 1 << (i & 31);
    hash ^= zobrist[i]!;
    if (c.open[i] === 0) {
      unlift(i);
      entry = next[2 * i]!;
    } else {
      entry = NIL;
      slot = openSlot[i]! + 1;
      limit = stackLimits[depth]!;
    }
  }
  return { verdict: 'ok', steps };
}

// ---------------------------------------------------------------------------------------
// One key: check, shrink, explain
// ---------------------------------------------------------------------------------------

/** Check one key (what a worker task runs). Never throws for a well-formed task. */
export function checkKey(task: KeyTask): KeyOutcome {
  const started = performance.now();
  const ms = (): number => performance.now() - started;
  const budget = (until = Infinity): Budget => ({
    maxSteps: task.maxSteps,
    deadline: Math.min(performance.now() + task.timeoutMs, until),
  });
  const report = (steps: number, shrunk: { ops: readonly TimedOp[]; minimal: boolean; note?: string }, why?: string): KeyOutcome => {
    const text = describe(task, shrunk.ops, shrunk.minimal, shrunk.note, why);
    const ops = [...shrunk.ops].sort((x, y) => x.call - y.call).map((t) => t.op);
    return { key: task.key, verdict: 'violation', steps, ms: ms(), violation: { ops, text, minimal: shrunk.minimal } };
  };

  // A result no state can produce needs no search, and is its own minimal counterexample.
  const bad = impossible(task.ops);
  if (bad !== null) return report(0, { ops: [bad.op], minimal: true }, bad.why);

  const first = search(compile(task.ops), budget());
  if (first.verdict === 'ok') return { key: task.key, verdict: 'ok', steps: first.steps, ms: ms() };
  if (first.verdict === 'unknown') {
    return { key: task.key, verdict: 'unknown', steps: first.steps, ms: ms(), reason: first.reason };
  }
  const shrunk = task.shrink
    ? shrink(task.ops, (until) => budget(until), performance.now() + task.shrinkTimeoutMs)
    : { ops: task.ops, minimal: false, note: 'not shrunk' };
  return report(first.steps, shrunk);
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
    const c = t.op.command;
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
    const { command: c, result } = t.op;
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

/** Step budget of each check while shrinking: a candidate too costly to decide is kept. */
const SHRINK_STEPS = 200_000;

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
  const { command: c, result } = t.op;
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
    const c = t.op.command;
    if (c.type === 'set' || (c.type === 'cas' && (t.ret === Infinity || t.op.result === true))) return table.intern(c.value);
    return null;
  });
  return ops.map((x, i) => {
    const seen = observation(x);
    if (seen === null) return [];
    const want = typeof seen === 'object' ? table.intern(seen.value) : null;
    const explains = (j: number): boolean => {
      if (seen === 'nothing') return ops[j]!.op.command.type === 'delete' || writes[j] === nullId;
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

/**
 * Shrink a non-linearizable sub-history to a small one that shows the SAME violation.
 *
 * Plain deletion drifts: delete the writes before a stale read and what is left is a read of
 * a value never written, a different and misleading failure. So the violation is pinned
 * first, and a deletion is accepted only if it keeps that violation:
 *
 * 1. Pin the violation: cut the history right after its k-th completion (ops completed by
 *    then keep their results, ops still in flight become open, later ops vanish). Every such
 *    prefix of a linearizable history is linearizable (Herlihy & Wing 1990), so failure is
 *    monotone in k and a binary search finds the first failing cut. The op F completing
 *    there is the one whose result no order can explain; the cut is the working history.
 * 2. Delta debugging (Zeller & Hildebrandt 2002): delete chunks of halving size, then single
 *    ops until none can go, accepting a deletion only if the rest (a) still fails, (b) stops
 *    failing when F's outcome is unknown (F stays the op that cannot be explained), and
 *    (c) still holds, for each op that observed a write, some op that could have made it
 *    (`explainers`). Ops open in the working history (`info`, or in flight at the cut)
 *    stay only when these rules need them: "info ops kept if needed".
 *
 * A check that runs out of budget counts against the deletion (the ops stay), and running
 * past `deadline` stops shrinking early; either way `minimal` is then false.
 */
function shrink(
  all: readonly TimedOp[],
  budget: (until: number) => Budget,
  deadline: number,
): { ops: TimedOp[]; minimal: boolean; note?: string } {
  let certain = true;
  const verdict = (ops: readonly TimedOp[], maxSteps = Infinity): SearchResult['verdict'] => {
    const b = budget(deadline);
    b.maxSteps = Math.min(b.maxSteps, maxSteps);
    const r = search(compile(ops), b).verdict;
    if (r === 'unknown') certain = false;
    return r;
  };
  const open = (t: TimedOp): TimedOp => (t.ret === Infinity ? t : { ...t, ret: Infinity });

  // 1. The first failing cut, and the op F completing there.
  const rets = all
    .filter((t) => t.ret !== Infinity)
    .map((t) => t.ret)
    .sort((x, y) => x - y);
  const cut = (r: number): TimedOp[] => all.filter((t) => t.call < r).map((t) => (t.ret <= r ? t : open(t)));
  let lo = 0;
  let hi = rets.length - 1; // the whole history fails, so the last cut does
  while (lo < hi && performance.now() < deadline) {
    const mid = (lo + hi) >> 1;
    if (verdict(cut(rets[mid]!)) === 'violation') hi = mid;
    else lo = mid + 1;
  }
  if (lo !== hi) {
    // Out of time: the smallest failing cut found so far still beats the whole history.
    const known = all.filter((t) => t.call < rets[hi]!);
    return { ops: known, minimal: false, note: 'shrinking ran out of time; showing a failing prefix' };
  }
  let ops = cut(rets[hi]!);
  const pinned = ops.find((t) => t.ret === rets[hi])!;
  if (verdict(ops) !== 'violation') return { ops: [...all], minimal: false, note: 'not shrunk: checks ran out of budget' };

  // 2. ddmin under rules (a)-(c).
  const explained = explainers(ops);
  const index = new Map(ops.map((t, i) => [t, i]));
  const present = new Uint8Array(ops.length);
  const keepsExplanations = (candidate: readonly TimedOp[]): boolean => {
    present.fill(0);
    for (const t of candidate) present[index.get(t)!] = 1;
    return candidate.every((t) => {
      const ws = explained[index.get(t)!]!;
      return ws.length === 0 || ws.some((j) => present[j] === 1);
    });
  };
  const sameViolation = (candidate: readonly TimedOp[]): boolean =>
    candidate.includes(pinned) &&
    keepsExplanations(candidate) &&
    verdict(candidate, SHRINK_STEPS) === 'violation' &&
    verdict(
      candidate.map((t) => (t === pinned ? open(t) : t)),
      SHRINK_STEPS,
    ) === 'ok';

  // Open ops make every check costly (see `Cache`); try dropping them all first, keeping
  // those that are the only explanation of some observation.
  const completed = ops.filter((t) => t.ret !== Infinity);
  const kept = new Set(completed);
  for (const t of completed) {
    const ws = explained[index.get(t)!]!;
    if (ws.length > 0 && !ws.some((j) => kept.has(ops[j]!))) for (const j of ws) kept.add(ops[j]!);
  }
  if (kept.size < ops.length) {
    const candidate = ops.filter((t) => kept.has(t));
    if (sameViolation(candidate)) ops = candidate;
  }

  let chunk = Math.max(1, ops.length >> 1);
  for (;;) {
    let changed = false;
    for (let i = 0; i < ops.length && performance.now() < deadline; ) {
      const candidate = [...ops.slice(0, i), ...ops.slice(i + chunk)];
      if (sameViolation(candidate)) {
        ops = candidate;
        changed = true;
      } else {
        i += chunk;
      }
    }
    if (performance.now() >= deadline) return { ops, minimal: false, note: 'shrinking ran out of time' };
    if (chunk > 1) chunk = Math.max(1, chunk >> 1);
    else if (!changed) break;
  }
  return certain ? { ops, minimal: true } : { ops, minimal: false, note: 'some smaller candidates ran out of budget' };
}

/** The violation's text: the ops, then why no order works, from the deepest partial order. */
function describe(task: KeyTask, ops: readonly TimedOp[], minimal: boolean, note?: string, why?: string): string {
  const k = renderKey(task.key);
  const sorted = [...ops].sort((x, y) => x.call - y.call);
  const count = `${ops.length} op${ops.length === 1 ? '' : 's'}`;
  const lines = [
    `key ${k}: not linearizable. ${minimal ? 'Minimal failing sub-history' : 'Failing sub-history'}: ` +
      `${count} of the key's ${task.ops.length}` +
      (!minimal
        ? ` (${note ?? 'may not be minimal'})`
        : ops.length === 1
          ? ' (wrong on its own)'
          : ' (each one is needed: without it the violation disappears or becomes a different one)') +
      ':',
    ...renderOps(
      sorted.map((t) => t.op),
      task.base,
    ).map((l) => `  ${l}`),
  ];
  const inFlight = sorted.filter((t) => t.ret === Infinity && (t.op.status === 'ok' || t.op.status === 'fail'));
  if (inFlight.length > 0) {
    lines.push(
      `(${inFlight.map((t) => `${renderClient(t.op.client)} ${renderCommand(t.op.command)}`).join(', ')} ` +
        `completed only after the violation was certain; taken as open, its result is not used.)`,
    );
  }

  if (why !== undefined) return [...lines, `Why: ${why}`].join('\n');
  // Explain from the deepest partial linearization of the failing ops.
  const c = compile(sorted);
  const r = search(c, { maxSteps: task.maxSteps, deadline: performance.now() + task.timeoutMs }, true);
  if (r.verdict !== 'violation' || r.deepest === null) return lines.join('\n');
  const { order, state } = r.deepest;
  const name = (i: number): string => {
    const op = c.ops[i]!.op;
    const result = c.open[i] === 1 ? '?' : renderValue(op.result);
    return `${renderClient(op.client)} ${renderCommand(op.command)} → ${result}`;
  };
  const where = state === MISSING ? `${k} is missing` : `${k} = ${renderValue(c.table.values[state])}`;
  const done = new Set(order);
  let firstRet = Infinity;
  for (let i = 0; i < c.n; i++) if (!done.has(i)) firstRet = Math.min(firstRet, c.ops[i]!.ret);
  const reasons: string[] = [];
  for (let i = 0; i < c.n; i++) {
    if (done.has(i) || c.ops[i]!.call > firstRet) continue;
    const s = step(c, i, state);
    if (s !== REJECT) reasons.push(`${name(i)} fits, but then no order of the rest works`);
    else if (c.never[i] === 1 && c.kind[i] === SET) reasons.push(`${name(i)}: a set always returns null`);
    else if (c.never[i] === 1) reasons.push(`${name(i)}: ${c.ops[i]!.op.command.type} returns true or false`);
    else reasons.push(`${name(i)} would return ${renderValue(modelAnswer(c, i, state))}`);
  }
  const prefix =
    order.length === 0
      ? `No op can take effect first (${where} initially)`
      : `The longest order consistent with real time and the kv model is ${order.map(name).join('; ')}. ` +
        `After it ${where}, and no remaining op can take effect next`;
  lines.push(`Why: ${prefix}: ${reasons.join('; ')}.`);
  return lines.join('\n');
}
