/**
 * Linearizability checking of recorded histories against a model (Herlihy & Wing,
 * "Linearizability: a correctness condition for concurrent objects", TOPLAS 1990).
 *
 * A history is linearizable when every op can be given a single instant between its
 * invocation and its completion such that, applied in that order, the model returns exactly
 * the recorded results. Ops recorded as `fail` never happened and are dropped; `info` and
 * never-completed ops may take effect at any instant after their invocation, or not at all,
 * with any result.
 *
 * Linearizability is local (Herlihy & Wing, Theorem 1: a history is linearizable iff each
 * object's sub-history is), so a model may split the history into parts (`Model.partition`;
 * the kv: one part per key), each searched on its own (`search.ts`: Wing & Gong 1993 with
 * Lowe's 2017 cache, as in Porcupine).
 *
 * Where the search runs:
 *
 * - `checkHistorySync`: in the calling thread.
 * - `checkHistory`, `Checker`: parts spread over a piscina pool of worker threads when the
 *   model has a `source` (a module and export a worker can import it from: `kvModel` has
 *   one, a user model sets `source: { module: import.meta.url, export: 'myModel' }`). A model
 *   cannot be posted to a thread (it has functions), so each worker imports it from there,
 *   once per thread, and checks that the model it found has the same `name`. A model
 *   without `source` is checked in the calling thread, with the same answer. Ops are posted
 *   to the workers, so their commands and results must be structured-clonable (plain data,
 *   Map, Set, Date, typed arrays, bigint), as everything a `History` records from a cluster is.
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import type { KvCommand } from '../state-machines/kv.js';
import { History, toOps, type HistoryEvent, type Op } from './history.js';
import { sourceOf, validateModel, type Model } from './model.js';
import { checkPart, type PartOutcome, type PartTask, type TimedOp } from './search.js';
import { adapterFor } from './state-model.js';

/** What a checker accepts: a recorder, its events (in real-time order), or paired ops. */
export type HistoryInput<C = KvCommand> = History<C> | readonly HistoryEvent<C>[] | readonly Op<C>[];

/** Budgets and shrinking of a check. */
export interface CheckOptions {
  /**
   * Search steps allowed per part (one step = one attempt to linearize an op, or one
   * backtrack). Past it the part is reported in `unknown`. Default 5 000 000: about 1-2 s and
   * at most a few hundred MB per part (the cache grows with the configurations explored).
   */
  maxSteps?: number;
  /** Wall-clock ms allowed per part for the search. Default 10 000. */
  timeoutMs?: number;
  /** Shrink each violation to a minimal failing sub-history. Default true. */
  shrink?: boolean;
  /** Wall-clock ms allowed per violation for shrinking; past it the best so far is reported. Default 10 000. */
  shrinkTimeoutMs?: number;
}

/** Options of a `Checker` (its thread pool). */
export interface CheckerOptions {
  /** Worker threads at most. Default `os.availableParallelism()`. */
  maxThreads?: number;
}

/** A part of the history that is not linearizable, shrunk to a small failing sub-history. */
export interface ModelViolation<C = unknown> {
  /** The part's name, as `Model.partition` gave it ('' for an unpartitioned history). */
  part: string;
  /**
   * A failing sub-history of the part, sorted by invocation: 1-minimal when `minimal`
   * (dropping any one op makes the rest linearizable, or fail differently), else the
   * smallest found within the shrinking budget.
   */
  ops: Op<C>[];
  /** True when shrinking finished and every op of `ops` was shown necessary. */
  minimal: boolean;
  /** One line per op (`c3  [12.1ms → 14.0ms]  enqueue(1) → null`) and why no order works. */
  text: string;
}

/** The verdict of `checkHistory`. */
export interface ModelCheckResult<C = unknown> {
  /** True iff every part was checked and found linearizable (no violations, nothing unknown). */
  ok: boolean;
  /** Parts checked (those with at least one op that was not `fail`). */
  parts: number;
  /** Ops in the history, `fail` ones included. */
  ops: number;
  /** One per non-linearizable part, sorted by part name. */
  violations: ModelViolation<C>[];
  /** Parts whose search ran out of budget (neither proven nor refuted), sorted. */
  unknown: string[];
}

type FilledOptions = Required<CheckOptions>;

/** A positive number option, or `fallback`; RangeError naming it otherwise. */
export function positive(value: unknown, name: string, fallback: number, integer: boolean): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value > 0) || (integer && !Number.isInteger(value))) {
    throw new RangeError(`options.${name} must be a positive ${integer ? 'integer' : 'number'}, got ${String(value)}`);
  }
  return value;
}

function fill(options: CheckOptions): FilledOptions {
  if (typeof options !== 'object' || options === null) throw new TypeError('options must be an object');
  if (options.shrink !== undefined && typeof options.shrink !== 'boolean') {
    throw new TypeError('options.shrink must be a boolean');
  }
  return {
    maxSteps: positive(options.maxSteps, 'maxSteps', 5_000_000, true),
    timeoutMs: positive(options.timeoutMs, 'timeoutMs', 10_000, false),
    shrink: options.shrink ?? true,
    shrinkTimeoutMs: positive(options.shrinkTimeoutMs, 'shrinkTimeoutMs', 10_000, false),
  };
}

interface Prepared {
  tasks: PartTask[];
  ops: number;
}

/**
 * Rank every op in real time. With events, ranks are event positions (exact real-time
 * order). With bare ops, ranks come from sorting times; at equal times invocations rank
 * before completions, so such ops count as concurrent (never a false alarm).
 */
function rank(input: HistoryInput<unknown>): { ops: Op<unknown>[]; call: Map<number, number>; ret: Map<number, number> } {
  let ops: Op<unknown>[];
  const call = new Map<number, number>();
  const ret = new Map<number, number>();
  if (input instanceof History) input = input.events;
  if (!Array.isArray(input)) throw new TypeError('history must be a History, an array of HistoryEvent, or an array of Op');
  const list = input as readonly (HistoryEvent<unknown> | Op<unknown>)[];
  const kind = list.length === 0 ? 'events' : 'status' in list[0]! ? 'ops' : 'events';
  if (kind === 'events') {
    const events = list as readonly HistoryEvent<unknown>[];
    for (const e of events) {
      if (typeof e !== 'object' || e === null || !('type' in e)) throw new TypeError('history: mixed events and ops');
    }
    ops = toOps(events);
    events.forEach((e, i) => {
      if (e.type === 'invoke') call.set(e.id, i);
      else if (e.type === 'ok' || e.type === 'fail') ret.set(e.id, i);
    });
    return { ops, call, ret };
  }
  ops = list.map((o) => {
    if (typeof o !== 'object' || o === null || !('status' in o)) throw new TypeError('history: mixed events and ops');
    return o;
  });
  const points: { op: Op<unknown>; t: number; isCall: boolean }[] = [];
  const ids = new Set<number>();
  for (const op of ops) {
    if (ids.has(op.id)) throw new TypeError(`history: op id ${op.id} appears twice`);
    ids.add(op.id);
    if (typeof op.invokedAt !== 'number') throw new TypeError(`op ${op.id}: invokedAt must be a number`);
    points.push({ op, t: op.invokedAt, isCall: true });
    if (op.status === 'ok' || op.status === 'fail') {
      if (typeof op.completedAt !== 'number' || op.completedAt < op.invokedAt) {
        throw new TypeError(`op ${op.id}: a completed op needs completedAt >= invokedAt`);
      }
      points.push({ op, t: op.completedAt, isCall: false });
    }
  }
  points.sort((x, y) => x.t - y.t || (x.isCall === y.isCall ? 0 : x.isCall ? -1 : 1));
  points.forEach((p, i) => (p.isCall ? call : ret).set(p.op.id, i));
  return { ops, call, ret };
}

/**
 * Turn any input into ranked ops per part, as the model partitions them. Throws TypeError
 * for a malformed history or a partition that loses an `ok` op or repeats one.
 */
function prepare(input: HistoryInput<unknown>, model: Model<unknown, unknown, unknown>, options: FilledOptions): Prepared {
  const { ops, call, ret } = rank(input);
  const base = ops.reduce((m, op) => Math.min(m, op.invokedAt), Infinity);
  const live = ops.filter((op) => op.status !== 'fail'); // definitely did not happen
  const parts = model.partition === undefined ? [['', live] as const] : model.partition(live);
  const where = `${model.name ?? 'model'}.partition`;
  if (parts === null || typeof parts !== 'object' || !(Symbol.iterator in parts)) {
    throw new TypeError(`${where} must return a Map or an array of [name, ops] pairs`);
  }
  const names = new Set<string>();
  const placed = new Set<number>();
  const tasks: PartTask[] = [];
  for (const part of parts) {
    if (!Array.isArray(part) || part.length !== 2 || typeof part[0] !== 'string' || !Array.isArray(part[1])) {
      throw new TypeError(`${where} must return [name, ops] pairs with a string name and an array of ops`);
    }
    const [name, partOps] = part as readonly [string, readonly Op<unknown>[]];
    if (names.has(name)) throw new TypeError(`${where} returned the part ${JSON.stringify(name)} twice`);
    names.add(name);
    const timed: TimedOp[] = partOps.map((op) => {
      const at = typeof op === 'object' && op !== null ? call.get(op.id) : undefined;
      if (at === undefined) throw new TypeError(`${where} returned an op that is not in the history`);
      if (placed.has(op.id)) throw new TypeError(`${where} put op ${op.id} in two parts`);
      placed.add(op.id);
      return { op, call: at, ret: ret.get(op.id) ?? Infinity };
    });
    if (timed.length > 0) tasks.push({ key: name, ops: timed, base: Number.isFinite(base) ? base : 0, ...options });
  }
  const lost = live.find((op) => op.status === 'ok' && !placed.has(op.id));
  if (lost !== undefined) throw new TypeError(`${where} left out op ${lost.id}, which is recorded ok`);
  return { tasks, ops: ops.length };
}

function collect<C>(prepared: Prepared, outcomes: readonly PartOutcome[]): ModelCheckResult<C> {
  const violations: ModelViolation<C>[] = [];
  const unknown: string[] = [];
  for (const o of outcomes) {
    if (o.verdict === 'violation') {
      const v = o.violation!;
      violations.push({ part: o.key, ops: v.ops as Op<C>[], minimal: v.minimal, text: v.text });
    } else if (o.verdict === 'unknown') unknown.push(o.key);
  }
  violations.sort((x, y) => (x.part < y.part ? -1 : x.part > y.part ? 1 : 0));
  unknown.sort();
  return { ok: violations.length === 0 && unknown.length === 0, parts: prepared.tasks.length, ops: prepared.ops, violations, unknown };
}

/**
 * Check `history` against `model` in this thread. Fine for small histories and tests; for
 * big ones use `checkHistory` or a `Checker`, which spread parts over worker threads. Throws
 * TypeError for a malformed history or model, RangeError for a bad option, and whatever the
 * model's functions throw.
 */
export function checkHistorySync<S, I, O>(history: HistoryInput<I>, model: Model<S, I, O>, options: CheckOptions = {}): ModelCheckResult<I> {
  const m = validateModel(model);
  const prepared = prepare(history as HistoryInput<unknown>, m, fill(options));
  const adapter = adapterFor(m);
  return collect(prepared, prepared.tasks.map((t) => checkPart(t, adapter)));
}

/** Batches of parts per worker task: small parts are grouped to save thread hops. */
function batches(tasks: readonly PartTask[], maxOps = 2_000): PartTask[][] {
  const out: PartTask[][] = [];
  let current: PartTask[] = [];
  let size = 0;
  for (const t of [...tasks].sort((x, y) => y.ops.length - x.ops.length)) {
    if (current.length > 0 && size + t.ops.length > maxOps) {
      out.push(current);
      current = [];
      size = 0;
    }
    current.push(t);
    size += t.ops.length;
  }
  if (current.length > 0) out.push(current);
  return out;
}

/** One task of `lin-worker.ts`: where to import the model from, and the parts to check. */
export interface WorkerTask {
  source: { module: string; export: string };
  /** The model's name, which the imported one must have. */
  name: string | undefined;
  parts: PartTask[];
}

const WORKER = new URL('./lin-worker.js', import.meta.url).href;

/**
 * A linearizability checker that owns a piscina pool, for checking many histories without
 * starting threads each time. Threads start on the first `check` of a model with a `source`;
 * `close()` ends them (a process with an open checker does not exit on its own).
 *
 * ```ts
 * const checker = new Checker();
 * try { for (const h of histories) report(await checker.check(h, queueModel)); }
 * finally { await checker.close(); }
 * ```
 */
export class Checker {
  private readonly maxThreads: number;
  private pool: Piscina<WorkerTask, PartOutcome[]> | null = null;
  private closed = false;

  constructor(options: CheckerOptions = {}) {
    this.maxThreads = positive(options.maxThreads, 'maxThreads', availableParallelism(), true);
  }

  /**
   * Check `history` against `model`: the same answer as `checkHistorySync`, with parts spread
   * over the pool when the model has a `source`, else computed in this thread.
   */
  async check<S, I, O>(history: HistoryInput<I>, model: Model<S, I, O>, options: CheckOptions = {}): Promise<ModelCheckResult<I>> {
    if (this.closed) throw new Error('this Checker is closed');
    const m = validateModel(model);
    const source = sourceOf(m);
    if (source === null) return checkHistorySync(history, model, options);
    const prepared = prepare(history as HistoryInput<unknown>, m, fill(options));
    if (prepared.tasks.length === 0) return collect(prepared, []);
    this.pool ??= new Piscina<WorkerTask, PartOutcome[]>({
      filename: WORKER,
      maxThreads: this.maxThreads,
      minThreads: Math.min(1, this.maxThreads),
    });
    const pool = this.pool;
    const outcomes = await Promise.all(batches(prepared.tasks).map((parts) => pool.run({ source, name: m.name, parts })));
    return collect(prepared, outcomes.flat());
  }

  /** Terminate the pool's threads. Idempotent; `check` after `close` throws. */
  async close(): Promise<void> {
    this.closed = true;
    const pool = this.pool;
    this.pool = null;
    if (pool !== null) await pool.destroy();
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/**
 * Check `history` against `model`, on a piscina pool made for this call and destroyed before
 * returning (so no thread outlives the call) when the model has a `source`, else in this
 * thread. To check many histories, keep one `Checker` instead.
 */
export async function checkHistory<S, I, O>(
  history: HistoryInput<I>,
  model: Model<S, I, O>,
  options: CheckOptions & CheckerOptions = {},
): Promise<ModelCheckResult<I>> {
  const checker = new Checker({ maxThreads: options.maxThreads });
  try {
    return await checker.check(history, model, options);
  } finally {
    await checker.close();
  }
}
