/**
 * The kv checker: linearizability of recorded kv histories, i.e. `checkHistory` with
 * `kvModel` (`checker.ts`, `kv-model.ts`), with results named by key. Keys are checked in
 * parallel on a piscina pool (`KvChecker`, `checkKv`) or in this thread (`checkKvSync`);
 * both run the same engine.
 */
import type { KvCommand } from '../state-machines/kv.js';
import {
  Checker,
  checkHistorySync,
  type CheckerOptions,
  type CheckOptions,
  type HistoryInput,
  type ModelCheckResult,
} from './checker.js';
import type { Op } from './history.js';
import { kvModel } from './kv-model.js';

export type { CheckOptions, HistoryInput } from './checker.js';

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

/** A model check of `kvModel` in the kv's words: parts are keys. */
function byKey(r: ModelCheckResult<KvCommand>): CheckResult {
  return {
    ok: r.ok,
    keys: r.parts,
    ops: r.ops,
    violations: r.violations.map((v) => ({ key: v.part, ops: v.ops, text: v.text })),
    unknown: r.unknown,
  };
}

/**
 * Check `history` in this thread. Fine for small histories and tests; for big ones use
 * `checkKv` or a `KvChecker`, which spread keys over worker threads. Throws TypeError for a
 * malformed history (an op recorded ok whose command is not a kv command, a completion
 * without invocation, ...) and RangeError for a bad option.
 */
export function checkKvSync(history: HistoryInput, options: CheckOptions = {}): CheckResult {
  return byKey(checkHistorySync(history, kvModel, options));
}

export type KvCheckerOptions = CheckerOptions;

/**
 * A kv linearizability checker that owns a piscina pool, for checking many histories without
 * starting threads each time. Threads start on the first `check`; `close()` ends them (a
 * process with an open checker does not exit on its own). A `Checker` checking `kvModel`.
 *
 * ```ts
 * const checker = new KvChecker();
 * try { for (const h of histories) report(await checker.check(h)); }
 * finally { await checker.close(); }
 * ```
 */
export class KvChecker {
  private readonly checker: Checker;
  private closed = false;

  constructor(options: KvCheckerOptions = {}) {
    this.checker = new Checker(options);
  }

  /** Check `history`: the same answer as `checkKvSync`, with keys spread over the pool. */
  async check(history: HistoryInput, options: CheckOptions = {}): Promise<CheckResult> {
    if (this.closed) throw new Error('this KvChecker is closed');
    return byKey(await this.checker.check(history, kvModel, options));
  }

  /** Terminate the pool's threads. Idempotent; `check` after `close` throws. */
  async close(): Promise<void> {
    this.closed = true;
    await this.checker.close();
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

/**
 * A short report of a result: the counts, each violation's text, the unknown keys (or
 * parts, for a `checkHistory` result).
 */
export function formatResult(result: CheckResult | ModelCheckResult<unknown>): string {
  const [count, what] = 'keys' in result ? [result.keys, 'key'] : [result.parts, 'part'];
  const head = result.ok
    ? `linearizable: ${result.ops} ops over ${count} ${what}s`
    : `NOT verified: ${result.violations.length} violation(s), ${result.unknown.length} unknown ${what}(s), ` +
      `${result.ops} ops over ${count} ${what}s`;
  const parts = [head, ...result.violations.map((v) => v.text)];
  if (result.unknown.length > 0) parts.push(`unknown (budget exhausted): ${result.unknown.join(', ')}`);
  return parts.join('\n\n');
}
