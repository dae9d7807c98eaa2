/**
 * Testing tools for actor-raft clusters: record what concurrent clients saw (`History`) and
 * check that it is linearizable against the built-in kv state machine (`checkKv`).
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
export { decodeValue, encodeValue, renderCommand, renderOps, renderValue, type Json } from './format.js';
export { runJepsen, type JepsenOptions, type JepsenResult } from './jepsen.js';
