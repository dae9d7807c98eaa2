/**
 * Testing tools for actor-raft clusters: record what concurrent clients saw (`History`) and
 * check that it is linearizable against the built-in kv state machine (`checkKv`), or against
 * a model of your own state machine (`Model`, `checkHistory`; see docs/checker.md).
 *
 * ```ts
 * import { History, checkKv, formatResult } from './src/testing/index.js'; // in this repository
 *
 * const history = new History();
 * await Promise.all(clients.map(async (c) => {
 *   for (const cmd of workload(c)) await history.run(c, cmd, () => op(pick(), cmd)).catch(() => {});
 * }));
 * const result = await checkKv(history);
 * if (!result.ok) console.log(formatResult(result));
 * ```
 */
export {
  History,
  classifyError,
  formatHistory,
  notAppliedSeen,
  parseHistory,
  toOps,
  type ClientId,
  type FailEvent,
  type HistoryEvent,
  type HistoryOptions,
  type InfoEvent,
  type InvokeEvent,
  type OkEvent,
  type Op,
  type OpHandle,
  type OpStatus,
} from './history.js';
export {
  KvChecker,
  checkKv,
  checkKvSync,
  formatResult,
  type CheckOptions,
  type CheckResult,
  type HistoryInput,
  type KvCheckerOptions,
  type Violation,
} from './linearizability.js';
export {
  Checker,
  checkHistory,
  checkHistorySync,
  type CheckerOptions,
  type ModelCheckResult,
  type ModelViolation,
} from './checker.js';
export { UNKNOWN_OUTPUT, type Model, type ModelSource, type StepResult, type UnknownOutput } from './model.js';
export { kvModel, type KvState } from './kv-model.js';
export { decodeValue, encodeValue, renderCommand, renderOps, renderValue, type Json, type OpRenderers } from './format.js';
export { runJepsen, type JepsenOptions, type JepsenResult } from './jepsen.js';
