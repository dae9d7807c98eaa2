/**
 * Linearizability checking of recorded kv histories (Herlihy & Wing, "Linearizability: a
 * correctness condition for concurrent objects", TOPLAS 1990).
 *
 * A history is linearizable when every op can be given a single instant between its
 * invocation and its completion such that, applied in that order, the kv state machine
 * returns exactly the recorded results. Ops recorded as `fail` never happened and are
 * dropped; `info` and never-completed ops may take effect at any instant after their
 * invocation, or not at all, with any result.
 *
 * Every kv command touches one key, and linearizability is local (Herlihy & Wing, Theorem 1:
 * a history is linearizable iff each object's sub-history is), so the history is split per
 * key and each key is searched on its own (`search.ts`: Wing & Gong 1993 with Lowe's 2017
 * cache, as in Porcupine). Keys are checked in parallel on a piscina pool (`KvChecker`,
 * `checkKv`) or in this thread (`checkKvSync`); both run the same engine.
 */
import { availableParallelism } from 'node:os';
import { Piscina } from 'piscina';
import { validateKvCommand, type KvCommand } from '../state-machines/kv.js';
import { History, toOps, type HistoryEvent, type Op } from './history.js';
import { checkKey, type KeyOutcome, type KeyTask, type TimedOp } from './search.js';

/** What a checker accepts: a recorder, its events (in real-time order), or paired ops. */
export type HistoryInput = History | readonly HistoryEvent[] | readonly Op[];

export interface CheckOptions {
  /**
   * Search steps allowed per key (one step = one attempt to linearize an op, or one
   * backtrack). Past it the key is reported in `unknown`. Default 5 000 000: about 1-2 s and
   * at most a few hundred MB per key (the cache grows with the configurations explored).
   */
  maxSteps?: number;
  /** Wall-clock ms allowed per key for the search. Default 10 000. */
  timeoutMs?: number;
  /** Shrink each violation to a minimal failing sub-history. Default true. */
  shrink?: boolean;
  /** Wall-clock ms allowed per violation for shrinking; past it the best so far is reported. Default 10 000. */
  shrinkTimeoutMs?: number;
}

export interface Violation {
  key: string;
  /**
   * A failing sub-history of the key, sorted by invocation: 1-minimal when shrinking
   * finished (dropping any one op makes the rest linearizable), else the smallest found.
   */
  ops: Op[];
  /** One line per op (`c3  [12.1ms → 14.0ms]  cas(k, expected=1, value=2) → true`) and why it fails. */
  text: string;
}

export interface CheckResult {
  /** True iff every key was checked and found linearizable (no violations, nothing unknown). */
  ok: boolean;
  /** Keys checked (those with at least one op that was not `fail`). */
  keys: number;
  /** Ops in the history, `fail` ones included. */
  ops: number;
  /** One per non-linearizable key, sorted by key. */
  violations: Violation[];
  /** Keys whose search ran out of budget (neither proven nor refuted), sorted. */
  unknown: string[];
}

interface FilledOptions {
  maxSteps: number;
  timeoutMs: number;
  shrink: boolean;
  shrinkTimeoutMs: number;
}

function positive(value: unknown, name: string, fallback: number, integer: boolean): number {
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
  tasks: KeyTask[];
  keys: number;
  ops: number;
}

/**
 * Turn any input into ranked ops per key. With events, ranks are event positions (exact real
 * time order). With bare ops, ranks come from sorting times; at equal times invocations rank
 * before completions, so such ops count as concurrent (never a false alarm).
 */
function prepare(input: HistoryInput, options: FilledOptions): Prepared {
  let ops: Op[];
  const call = new Map<Op, number>();
  const ret = new Map<Op, number>();
  if (input instanceof History) input = input.events;
  if (!Array.isArray(input)) throw new TypeError('history must be a History, an array of HistoryEvent, or an array of Op');
  const list = input as readonly (HistoryEvent | Op)[];
  const kind = list.length === 0 ? 'events' : 'status' in list[0]! ? 'ops' : 'events';
  if (kind === 'events') {
    const events = list as readonly HistoryEvent[];
    for (const e of events) {
      if (typeof e !== 'object' || e === null || !('type' in e)) throw new TypeError('history: mixed events and ops');
    }
    ops = toOps(events);
    const byId = new Map(ops.map((op) => [op.id, op]));
    events.forEach((e, i) => {
      const op = byId.get(e.id)!;
      if (e.type === 'invoke') call.set(op, i);
      else if (e.type === 'ok' || e.type === 'fail') ret.set(op, i);
    });
  } else {
    ops = list.map((o) => {
      if (typeof o !== 'object' || o === null || !('status' in o)) throw new TypeError('history: mixed events and ops');
      return o;
    });
    const points: { op: Op; t: number; isCall: boolean }[] = [];
    for (const op of ops) {
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
    points.forEach((p, i) => (p.isCall ? call : ret).set(p.op, i));
  }

  const base = ops.reduce((m, op) => Math.min(m, op.invokedAt), Infinity);
  const byKey = new Map<string, TimedOp[]>();
  for (const op of ops) {
    if (op.status === 'fail') continue; // definitely did not happen
    let command: KvCommand;
    try {
      command = validateKvCommand(op.command);
    } catch (e) {
      // A refused command has no effect; only a successful one is a contradiction.
      if (op.status !== 'ok') continue;
      throw new TypeError(`op ${op.id} is recorded ok but is not a kv command: ${(e as Error).message}`);
    }
    const timed: TimedOp = { op: { ...op, command }, call: call.get(op)!, ret: ret.get(op) ?? Infinity };
    let list = byKey.get(command.key);
    if (list === undefined) byKey.set(command.key, (list = []));
    list.push(timed);
  }
  const tasks = [...byKey].map(([key, timed]) => ({ key, ops: timed, base: Number.isFinite(base) ? base : 0, ...options }));
  return { tasks, keys: byKey.size, ops: ops.length };
}

function collect(prepared: Prepared, outcomes: readonly KeyOutcome[]): CheckResult {
  const violations: Violation[] = [];
  const unknown: string[] = [];
  for (const o of outcomes) {
    if (o.verdict === 'violation') violations.push({ key: o.key, ops: o.violation!.ops, text: o.violation!.text });
    else if (o.verdict === 'unknown') unknown.push(o.key);
  }
  violations.sort((x, y) => (x.key < y.key ? -1 : x.key > y.key ? 1 : 0));
  unknown.sort();
  return { ok: violations.length === 0 && unknown.length === 0, keys: prepared.keys, ops: prepared.ops, violations, unknown };
}

/**
 * Check `history` in this thread. Fine for small histories and tests; for big ones use
 * `checkKv` or a `KvChecker`, which spread keys over worker threads. Throws TypeError for a
 * malformed history (an op recorded ok whose command is not a kv command, a completion
 * without invocation, ...) and RangeError for a bad option.
 */
export function checkKvSync(history: HistoryInput, options: CheckOptions = {}): CheckResult {
  const prepared = prepare(history, fill(options));
  return collect(prepared, prepared.tasks.map(checkKey));
}

/** Batches of keys per worker task: small keys are grouped to save thread hops. */
function batches(tasks: readonly KeyTask[], maxOps = 2_000): KeyTask[][] {
  const out: KeyTask[][] = [];
  let current: KeyTask[] = [];
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

export interface KvCheckerOptions {
  /** Worker threads at most. Default `os.availableParallelism()`. */
  maxThreads?: number;
}

const WORKER = new URL('./lin-worker.js', import.meta.url).href;

/**
 * A linearizability checker that owns a piscina pool, for checking many histories without
 * starting threads each time. Threads start on the first `check`; `close()` ends them (a
 * process with an open checker does not exit on its own).
 *
 * ```ts
 * const checker = new KvChecker();
 * try { for (const h of histories) report(await checker.check(h)); }
 * finally { await checker.close(); }
 * ```
 */
export class KvChecker {
  private readonly maxThreads: number;
  private pool: Piscina<KeyTask[], KeyOutcome[]> | null = null;
  private closed = false;

  constructor(options: KvCheckerOptions = {}) {
    this.maxThreads = positive(options.maxThreads, 'maxThreads', availableParallelism(), true);
  }

  /** Check `history`: the same answer as `checkKvSync`, with keys spread over the pool. */
  async check(history: HistoryInput, options: CheckOptions = {}): Promise<CheckResult> {
    if (this.closed) throw new Error('this KvChecker is closed');
    const prepared = prepare(history, fill(options));
    if (prepared.tasks.length === 0) return collect(prepared, []);
    this.pool ??= new Piscina<KeyTask[], KeyOutcome[]>({
      filename: WORKER,
      maxThreads: this.maxThreads,
      minThreads: Math.min(1, this.maxThreads),
    });
    const pool = this.pool;
    const outcomes = await Promise.all(batches(prepared.tasks).map((b) => pool.run(b)));
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
 * Check `history` on a piscina pool made for this call and destroyed before returning (so
 * no thread outlives the call). To check many histories, keep one `KvChecker` instead.
 */
export async function checkKv(history: HistoryInput, options: CheckOptions & KvCheckerOptions = {}): Promise<CheckResult> {
  const checker = new KvChecker({ maxThreads: options.maxThreads });
  try {
    return await checker.check(history, options);
  } finally {
    await checker.close();
  }
}

/** A short report of a result: the counts, each violation's text, the unknown keys. */
export function formatResult(result: CheckResult): string {
  const head = result.ok
    ? `linearizable: ${result.ops} ops over ${result.keys} keys`
    : `NOT verified: ${result.violations.length} violation(s), ${result.unknown.length} unknown key(s), ` +
      `${result.ops} ops over ${result.keys} keys`;
  const parts = [head, ...result.violations.map((v) => v.text)];
  if (result.unknown.length > 0) parts.push(`unknown (budget exhausted): ${result.unknown.join(', ')}`);
  return parts.join('\n\n');
}
