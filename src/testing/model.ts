/**
 * The model interface of the linearizability checker: a sequential specification of a state
 * machine, in the form Porcupine (github.com/anishathalye/porcupine, `Model`) made popular.
 * `checkHistory(history, model)` decides whether a recorded concurrent history could have come
 * from that state machine run one op at a time (Herlihy & Wing 1990). The kv store of this
 * package is one such model (`kvModel`); users write their own for their own state machines.
 *
 * ```ts
 * import { UNKNOWN_OUTPUT, type Model } from 'actor-raft/testing';
 *
 * type Cmd = { type: 'add'; by: number } | { type: 'read' };
 * export const counterModel: Model<number, Cmd, number | null> = {
 *   name: 'counter',
 *   source: { module: import.meta.url, export: 'counterModel' }, // lets worker threads load it
 *   init: () => 0,
 *   step: (n, cmd, out) =>
 *     cmd.type === 'add'
 *       ? { ok: out === UNKNOWN_OUTPUT || out === null, state: n + cmd.by }
 *       : { ok: out === UNKNOWN_OUTPUT || out === n, state: n },
 * };
 * ```
 */
import { pathToFileURL } from 'node:url';
import type { Op } from './history.js';

/**
 * What `step` receives as the output of an op whose outcome the client never learned (`info`,
 * or never completed): the op may have taken effect with any output. A registered symbol
 * (`Symbol.for`), so it is the same value in every thread and every copy of this module.
 */
export const UNKNOWN_OUTPUT: unique symbol = Symbol.for('actor-raft.testing.unknown-output');
export type UnknownOutput = typeof UNKNOWN_OUTPUT;

/** What `Model.step` answers: whether the op fits, and the state after it when it does. */
export interface StepResult<State> {
  /** True iff the op, applied in the given state, can return the given output. */
  ok: boolean;
  /** The state after the op. Read only when `ok` is true. */
  state: State;
}

/**
 * Where a worker thread can import a model from: `module` is a file URL or absolute path of
 * an ES module (usually the model's own `import.meta.url`), `export` the name it is exported
 * under (default `'default'`). The module must be importable without side effects beyond
 * defining the model (a test file that calls `describe` is not).
 */
export interface ModelSource {
  module: string | URL;
  export?: string;
}

/**
 * A sequential specification of a state machine, for `checkHistory`.
 *
 * `Input` is what clients submit (the `command` of a recorded op), `Output` what they get
 * back (its `result`). States are values: `step` must not change the state it is given, and
 * must be deterministic (the same state, input and output always give the same answer), since
 * the search memoizes it.
 *
 * Parallelism: the search runs on worker threads when the model has a `source` a worker can
 * import; without one (a model built in a closure, a test file), it runs in the calling thread.
 * Either way the answer is the same.
 *
 * @typeParam State - a model state; plain data compared with `equal` (default: deep equality).
 * @typeParam Input - the command of an op.
 * @typeParam Output - the result of an op.
 */
export interface Model<State, Input, Output> {
  /** For reports ("not linearizable against the queue model"). */
  name?: string;
  /**
   * Where worker threads can import this very model from. Without it, checks run in the
   * calling thread. The object found there must be a model too (its `name` must match).
   */
  source?: ModelSource;
  /** The state before any op. */
  init(): State;
  /**
   * Apply one op: `input` in `state`, which returned `output`. Answer `{ ok: false }` when the
   * model cannot return `output` for `input` in `state`, else `{ ok: true, state: next }`.
   *
   * `output` is `UNKNOWN_OUTPUT` for an op whose outcome is unknown (`info` or never
   * completed): answer the state the op leads to, whatever it returned (`ok: false` only if
   * the op cannot take effect in `state` at all). Such an op may also not have taken effect
   * at all; the checker covers that case itself.
   */
  step(state: State, input: Input, output: Output | UnknownOutput): StepResult<State>;
  /**
   * Split the ops into independent parts checked on their own (linearizability is local:
   * Herlihy & Wing 1990, Theorem 1), e.g. by key. Each part has a name, used in reports:
   * return a `Map<string, Op[]>` or an array of `[name, ops]` pairs. It receives every op not
   * recorded `fail`; each op may appear in at most one part (ops may be returned as copies
   * with the same `id`), and every `ok` op must appear in one. An `info` or open op left out
   * is taken to have had no effect. Throw a TypeError for a malformed op. Default: one part.
   */
  partition?(ops: readonly Op<Input>[]): Iterable<readonly [string, readonly Op<Input>[]]>;
  /**
   * Whether two states are the same, for memoizing the search (Lowe 2017). Default: deep
   * equality over plain data, Map, Set, Date and typed arrays. A coarser `equal` is only
   * sound if equal states answer every later op alike.
   */
  equal?(a: State, b: State): boolean;
  /**
   * A hash consistent with `equal` (equal states hash alike), to find equal states fast.
   * Default: a structural hash consistent with the default `equal`; give one with a custom
   * `equal` (an inconsistent hash only costs memoization, never a wrong answer).
   */
  hash?(state: State): string | number;
  /** Render an input for failure output. Default: a JSON-like rendering. */
  describeInput?(input: Input): string;
  /** Render an output for failure output. Default: a JSON-like rendering. */
  describeOutput?(output: Output): string;
  /** Render a state for failure output. Default: a JSON-like rendering. */
  describeState?(state: State): string;
}

/** A model of any types, as the checker handles it internally. */
export type AnyModel = Model<any, any, any>;

/** Throw a TypeError naming what is wrong when `model` is not a `Model`. */
export function validateModel(model: unknown, where = 'model'): AnyModel {
  if (typeof model !== 'object' || model === null) throw new TypeError(`${where} must be an object with init() and step()`);
  const m = model as Record<string, unknown>;
  for (const f of ['init', 'step'] as const) {
    if (typeof m[f] !== 'function') throw new TypeError(`${where}.${f} must be a function`);
  }
  for (const f of ['partition', 'equal', 'hash', 'describeInput', 'describeOutput', 'describeState'] as const) {
    if (m[f] !== undefined && typeof m[f] !== 'function') throw new TypeError(`${where}.${f} must be a function when given`);
  }
  if (m.name !== undefined && typeof m.name !== 'string') throw new TypeError(`${where}.name must be a string when given`);
  if (m.source !== undefined) sourceOf(m as unknown as AnyModel, where);
  return m as unknown as AnyModel;
}

/** The model's `source` as plain data a worker can receive, or null when it has none. */
export function sourceOf(model: AnyModel, where = 'model'): { module: string; export: string } | null {
  const s = model.source;
  if (s === undefined) return null;
  if (typeof s !== 'object' || s === null) throw new TypeError(`${where}.source must be { module, export? }`);
  const module = s.module instanceof URL ? s.module.href : s.module;
  if (typeof module !== 'string' || module === '') throw new TypeError(`${where}.source.module must be a file URL or a path`);
  if (s.export !== undefined && typeof s.export !== 'string') throw new TypeError(`${where}.source.export must be a string`);
  return { module, export: s.export ?? 'default' };
}

const loaded = new Map<string, Promise<AnyModel>>();

/**
 * Import the model a `source` names (once per thread). Rejects with a TypeError when the
 * module has no such export, the export is not a model, or its name is not `name`.
 */
export function loadModel(source: { module: string; export: string }, name: string | undefined): Promise<AnyModel> {
  const id = `${source.export}@${source.module}`;
  let model = loaded.get(id);
  if (model === undefined) {
    const url = /^[a-z][a-z0-9+.-]+:/i.test(source.module) ? source.module : pathToFileURL(source.module).href;
    model = import(url).then((mod: Record<string, unknown>) => {
      if (!(source.export in mod)) throw new TypeError(`model source ${source.module} has no export '${source.export}'`);
      return validateModel(mod[source.export], `export '${source.export}' of ${source.module}`);
    });
    loaded.set(id, model);
  }
  return model.then((m) => {
    if (m.name !== name) {
      throw new TypeError(`export '${source.export}' of ${source.module} is the model '${String(m.name)}', not '${String(name)}'`);
    }
    return m;
  });
}
