/**
 * The linearizability search for ONE part of a history against a model: the engine that the
 * in-thread checks and the piscina workers (`lin-worker.ts`) run, whatever the model. A
 * model reaches it as a `PartAdapter`: the kv store's hand-compiled one (`kv-model.ts`) or
 * the one made from any user `Model` (`state-model.ts`).
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
 *   incrementally maintained Zobrist hash; states are interned to integers (`ValueTable`).
 *   Added here: subsumption for open ops (`Cache`).
 *
 * Open ops (`info` or never completed) have their return at +∞ and accept any result: they
 * may take effect anywhere after their call, or not at all. The search succeeds once every
 * completed op is linearized; open ops not linearized by then are the ones that never took
 * effect. Open ops are what makes refutation expensive (each one doubles the
 * configurations), so two sound reductions apply to them (see `search`, `Cache`): completed
 * candidates go first, and configurations that differ from a finished one only by extra open
 * ops are skipped. A model may add its own (the kv: an open op is never followed directly by
 * an op that hides its effect, `SearchProblem.hidesOpen`).
 *
 * The search is exponential in the worst case (checking linearizability is NP-complete,
 * Gibbons & Korach 1997), so it runs under a step and time budget and answers 'unknown' when
 * the budget runs out.
 */
import { deepEqual } from '../state-machines/kv.js';
import { renderClient, renderOps, type OpRenderers } from './format.js';
import type { Op } from './history.js';

/**
 * An op placed in the history's real-time order: `call` and `ret` are ranks (positions of its
 * invocation and completion events); `ret` is `Infinity` for an open op. Ranks are distinct.
 */
export interface TimedOp {
  op: Op<unknown>;
  call: number;
  ret: number;
}

/** One unit of work: a part's sub-history and the budgets for it. Plain data, for a worker. */
export interface PartTask {
  /** The part's name (the kv: its key). */
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

export interface PartViolation {
  /** The failing sub-history, sorted by invocation. */
  ops: Op<unknown>[];
  /** Readable rendering and explanation. */
  text: string;
  /** True when every single op was shown necessary (shrinking finished within budget). */
  minimal: boolean;
}

export interface PartOutcome {
  key: string;
  verdict: 'ok' | 'violation' | 'unknown';
  /** Search steps of the main check (shrinking not included). */
  steps: number;
  /** Wall-clock ms for this part, shrinking included. */
  ms: number;
  /** For 'unknown': which budget ran out. */
  reason?: string;
  violation?: PartViolation;
}

// ---------------------------------------------------------------------------------------
// States and values as integers
// ---------------------------------------------------------------------------------------

/**
 * A coarse structural hash, consistent with kv's `deepEqual` (deep-equal values hash alike;
 * unequal ones may collide): it buckets values so interning compares few candidates.
 */
export function valueHash(v: unknown, depth = 0): string {
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

/**
 * Values interned up to an equality (default kv's `deepEqual`, with `valueHash` to bucket
 * them): equal values get one id, so states compare as integers.
 */
export class ValueTable<V = unknown> {
  readonly values: V[] = [];
  private readonly buckets = new Map<string | number, number[]>();

  constructor(
    private readonly hash: (v: V) => string | number = valueHash,
    private readonly equal: (a: V, b: V) => boolean = deepEqual,
  ) {}

  intern(v: V): number {
    const h = this.hash(v);
    let bucket = this.buckets.get(h);
    if (bucket === undefined) {
      bucket = [];
      this.buckets.set(h, bucket);
    }
    for (const id of bucket) if (this.equal(this.values[id]!, v)) return id;
    const id = this.values.length;
    this.values.push(v);
    bucket.push(id);
    return id;
  }
}

// ---------------------------------------------------------------------------------------
// What the search runs on
// ---------------------------------------------------------------------------------------

/** `SearchProblem.step` result when the model refuses the op's recorded result. */
export const REJECT = -2;

/**
 * A part compiled for the search: ops sorted by call, states as integers (>= -1), and the
 * model as a step function over them.
 */
export interface SearchProblem {
  n: number;
  ops: readonly TimedOp[];
  /** 1 for an open op (return at +∞, any result). */
  open: Uint8Array;
  /** Entries in real-time order: 2i is op i's call, 2i+1 its return. */
  order: Int32Array;
  /** The state before any op. */
  initial: number;
  /** Op `i` applied in state `s`: the next state, or REJECT when its recorded result cannot be. */
  step(i: number, s: number): number;
  /**
   * Optional pruning: true when op `i`, taken right after an open op in state `before` (and
   * leading to `after`), makes that open op's effect invisible, so the order is pointless
   * (the same op is tried without the open op from its parent, and the open op can go later).
   * Only sound for models where an open op applies in every state.
   */
  hidesOpen?(i: number, before: number, after: number): boolean;
}

/** The `ops`, `open` and `order` of a SearchProblem for ops in any order. */
export function realTimeOrder(input: readonly TimedOp[]): Pick<SearchProblem, 'n' | 'ops' | 'open' | 'order'> {
  const ops = [...input].sort((x, y) => x.call - y.call);
  const n = ops.length;
  const open = new Uint8Array(n);
  ops.forEach((t, i) => (open[i] = t.ret === Infinity ? 1 : 0));
  const entries: { e: number; rank: number }[] = [];
  ops.forEach((t, i) => entries.push({ e: 2 * i, rank: t.call }, { e: 2 * i + 1, rank: t.ret }));
  // Ranks are distinct except the +∞ of open ops, which stay in op order after everything.
  entries.sort((x, y) => x.rank - y.rank || x.e - y.e);
  const order = new Int32Array(2 * n);
  entries.forEach((x, j) => (order[j] = x.e));
  return { n, ops, open, order };
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
 * open ops. That is sound for any model: the smaller configuration has the same state and
 * the same list of completed ops left, and only more open candidates, so every order that
 * can follow the bigger one can follow it too; the success condition (every completed op
 * linearized) ignores open ops. Without it every subset of pending
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
export function search(c: SearchProblem, budget: Budget, explain = false): SearchResult {
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

  const hidesOpen = c.hidesOpen?.bind(c);
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
  let state = c.initial;
  let steps = 0;
  let deepest: { order: number[]; state: number } | null = explain ? { order: [], state } : null;

  // The cursor: a list entry, or (entry === NIL) the next open op to try, `slot`, among
  // those invoked before `limit` (the rank of the first remaining return).
  let entry = next[HEAD]!;
  let slot = 0;
  let limit = 0;
  /** Linearize op i if the model and the cache allow; true when it was pushed. */
  const tryOp = (i: number): boolean => {
    const s = c.step(i, state);
    if (s === REJECT) return false;
    // Right after an open op p, an op that makes p's effect invisible is pointless: the same
    // op is tried without p from p's own parent (it is in the same frontier, since open ops
    // do not change it), and p can still go later.
    if (hidesOpen !== undefined && depth > 0 && c.open[stackOps[depth - 1]!] === 1 && hidesOpen(i, state, s)) return false;
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
// One part: check, shrink, explain
// ---------------------------------------------------------------------------------------

/**
 * A model as the part driver sees it: how to compile a part for the search, and how to talk
 * about it. `kv-model.ts` and `state-model.ts` make these.
 */
export interface PartAdapter<P extends SearchProblem = SearchProblem> {
  /** For "consistent with real time and the kv model". */
  modelName: string;
  /** How a part is named in reports: `key x`, `part q1`. */
  label(part: string): string;
  /** "the key's", "the part's": whose ops a sub-history of part `part` is drawn from. */
  whole(part: string): string;
  /** Renderers for inputs and outputs of ops. */
  render: OpRenderers;
  compile(ops: readonly TimedOp[]): P;
  /** The state `s` of a compiled part, for the reader (`x = 1`, `x is missing`). */
  renderState(c: P, s: number): string;
  /** Why op `i` cannot take effect in state `s` (`step` rejected it), completing "<op> ...". */
  refusal(c: P, i: number, s: number): string;
  /**
   * Optional: a completed op whose result no order can explain, found without searching;
   * it is a minimal counterexample on its own.
   */
  impossible?(ops: readonly TimedOp[]): { op: TimedOp; why: string } | null;
  /**
   * Optional: for each op of `ops`, the other ops that could have produced what it observed
   * (empty when it observed nothing in particular). Shrinking keeps one of them for every
   * op it keeps, so a stale read does not shrink into a read of a value never written.
   */
  explainers?(ops: readonly TimedOp[]): number[][];
}

/** Check one part (what a worker task runs). Throws only if the model does. */
export function checkPart<P extends SearchProblem>(task: PartTask, adapter: PartAdapter<P>): PartOutcome {
  const started = performance.now();
  const ms = (): number => performance.now() - started;
  const budget = (until = Infinity): Budget => ({
    maxSteps: task.maxSteps,
    deadline: Math.min(performance.now() + task.timeoutMs, until),
  });
  const report = (steps: number, shrunk: { ops: readonly TimedOp[]; minimal: boolean; note?: string }, why?: string): PartOutcome => {
    const text = describe(task, adapter, shrunk.ops, shrunk.minimal, shrunk.note, why);
    const ops = [...shrunk.ops].sort((x, y) => x.call - y.call).map((t) => t.op);
    return { key: task.key, verdict: 'violation', steps, ms: ms(), violation: { ops, text, minimal: shrunk.minimal } };
  };

  // A result no state can produce needs no search, and is its own minimal counterexample.
  const bad = adapter.impossible?.(task.ops) ?? null;
  if (bad !== null) return report(0, { ops: [bad.op], minimal: true }, bad.why);

  const first = search(adapter.compile(task.ops), budget());
  if (first.verdict === 'ok') return { key: task.key, verdict: 'ok', steps: first.steps, ms: ms() };
  if (first.verdict === 'unknown') {
    return { key: task.key, verdict: 'unknown', steps: first.steps, ms: ms(), reason: first.reason };
  }
  const shrunk = task.shrink
    ? shrink(task.ops, adapter, (until) => budget(until), performance.now() + task.shrinkTimeoutMs)
    : { ops: task.ops, minimal: false, note: 'not shrunk' };
  return report(first.steps, shrunk);
}

/** Step budget of each check while shrinking: a candidate too costly to decide is kept. */
const SHRINK_STEPS = 200_000;
/** Step budget of each plausibility check while shrinking (rule (c) without explainers). */
const PLAUSIBLE_STEPS = 20_000;

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
 *    (c) when the model names them (`PartAdapter.explainers`), still holds, for each op
 *    that observed a write, some op that could have made it; for other models, F's result
 *    stays possible in some order of the rest, real time ignored (if it was to begin with).
 *    Ops open in the working history (`info`, or in flight at the cut) stay only when these
 *    rules need them.
 *
 * A check that runs out of budget counts against the deletion (the ops stay), and running
 * past `deadline` stops shrinking early; either way `minimal` is then false.
 */
function shrink<P extends SearchProblem>(
  all: readonly TimedOp[],
  adapter: PartAdapter<P>,
  budget: (until: number) => Budget,
  deadline: number,
): { ops: TimedOp[]; minimal: boolean; note?: string } {
  let certain = true;
  const verdict = (ops: readonly TimedOp[], maxSteps = Infinity): SearchResult['verdict'] => {
    const b = budget(deadline);
    b.maxSteps = Math.min(b.maxSteps, maxSteps);
    const r = search(adapter.compile(ops), b).verdict;
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
  const explained = adapter.explainers?.(ops) ?? ops.map((): number[] => []);
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
  // Without explainers, rule (c) in general terms: F's result stays possible in SOME order of
  // the other ops (each taking effect or not, real time ignored), if it was at the start.
  // Deleting the enqueue of the value a dequeue saw then counts as a different violation.
  // All the others open is a costly search when F is not plausible, hence a smaller budget.
  const plausible = (candidate: readonly TimedOp[]): boolean =>
    verdict(
      candidate.map((t) => (t === pinned ? t : open(t))),
      PLAUSIBLE_STEPS,
    ) === 'ok';
  const keepPlausible = adapter.explainers === undefined && plausible(ops);
  const sameViolation = (candidate: readonly TimedOp[]): boolean =>
    candidate.includes(pinned) &&
    keepsExplanations(candidate) &&
    verdict(candidate, SHRINK_STEPS) === 'violation' &&
    verdict(
      candidate.map((t) => (t === pinned ? open(t) : t)),
      SHRINK_STEPS,
    ) === 'ok' &&
    (!keepPlausible || plausible(candidate));

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
function describe<P extends SearchProblem>(
  task: PartTask,
  adapter: PartAdapter<P>,
  ops: readonly TimedOp[],
  minimal: boolean,
  note?: string,
  why?: string,
): string {
  const sorted = [...ops].sort((x, y) => x.call - y.call);
  const count = `${ops.length} op${ops.length === 1 ? '' : 's'}`;
  const lines = [
    `${adapter.label(task.key)}: not linearizable. ${minimal ? 'Minimal failing sub-history' : 'Failing sub-history'}: ` +
      `${count} of ${adapter.whole(task.key)} ${task.ops.length}` +
      (!minimal
        ? ` (${note ?? 'may not be minimal'})`
        : ops.length === 1
          ? ' (wrong on its own)'
          : ' (each one is needed: without it the violation disappears or becomes a different one)') +
      ':',
    ...renderOps(
      sorted.map((t) => t.op),
      task.base,
      adapter.render,
    ).map((l) => `  ${l}`),
  ];
  const inFlight = sorted.filter((t) => t.ret === Infinity && (t.op.status === 'ok' || t.op.status === 'fail'));
  if (inFlight.length > 0) {
    lines.push(
      `(${inFlight.map((t) => `${renderClient(t.op.client)} ${adapter.render.input(t.op.command)}`).join(', ')} ` +
        `completed only after the violation was certain; taken as open, its result is not used.)`,
    );
  }

  if (why !== undefined) return [...lines, `Why: ${why}`].join('\n');
  // Explain from the deepest partial linearization of the failing ops.
  const c = adapter.compile(sorted);
  const r = search(c, { maxSteps: task.maxSteps, deadline: performance.now() + task.timeoutMs }, true);
  if (r.verdict !== 'violation' || r.deepest === null) return lines.join('\n');
  const { order, state } = r.deepest;
  const name = (i: number): string => {
    const op = c.ops[i]!.op;
    const result = c.open[i] === 1 ? '?' : adapter.render.output(op.result);
    return `${renderClient(op.client)} ${adapter.render.input(op.command)} → ${result}`;
  };
  const where = adapter.renderState(c, state);
  const done = new Set(order);
  let firstRet = Infinity;
  for (let i = 0; i < c.n; i++) if (!done.has(i)) firstRet = Math.min(firstRet, c.ops[i]!.ret);
  const reasons: string[] = [];
  for (let i = 0; i < c.n; i++) {
    if (done.has(i) || c.ops[i]!.call > firstRet) continue;
    if (c.step(i, state) !== REJECT) reasons.push(`${name(i)} fits, but then no order of the rest works`);
    else reasons.push(`${name(i)}${adapter.refusal(c, i, state)}`);
  }
  const prefix =
    order.length === 0
      ? `No op can take effect first (${where} initially)`
      : `The longest order consistent with real time and the ${adapter.modelName} model is ${order.map(name).join('; ')}. ` +
        `After it ${where}, and no remaining op can take effect next`;
  lines.push(`Why: ${prefix}: ${reasons.join('; ')}.`);
  return lines.join('\n');
}
