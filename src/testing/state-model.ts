/**
 * Any `Model` compiled for the search (`search.ts`): its states interned to integers with the
 * model's `hash`/`equal` (default: a structural hash and deep equality), its `step` memoized
 * per (op, state), and its `describe*` functions used for the failure text. `adapterFor`
 * picks the hand-compiled kv form for `kvModel` and this one for every other model.
 */
import { renderValue } from './format.js';
import { kvAdapter, kvModel } from './kv-model.js';
import { UNKNOWN_OUTPUT, type AnyModel } from './model.js';
import { REJECT, ValueTable, realTimeOrder, type PartAdapter, type SearchProblem, type TimedOp } from './search.js';

interface ModelProblem extends SearchProblem {
  states: ValueTable;
}

function compile(model: AnyModel, input: readonly TimedOp[]): ModelProblem {
  const order = realTimeOrder(input);
  const { n, ops, open } = order;
  const states = new ValueTable(model.hash?.bind(model), model.equal?.bind(model));
  const memo = new Map<number, number>();
  const step = (i: number, s: number): number => {
    const key = s * n + i;
    const known = memo.get(key);
    if (known !== undefined) return known;
    const op = ops[i]!.op;
    const r: unknown = model.step(states.values[s], op.command, open[i] === 1 ? UNKNOWN_OUTPUT : op.result);
    if (typeof r !== 'object' || r === null || typeof (r as { ok?: unknown }).ok !== 'boolean') {
      throw new TypeError(`${model.name ?? 'model'}.step must return { ok: boolean, state }, got ${renderValue(r)}`);
    }
    const next = (r as { ok: boolean }).ok ? states.intern((r as { state: unknown }).state) : REJECT;
    memo.set(key, next);
    return next;
  };
  return { ...order, initial: states.intern(model.init()), step, states };
}

/** `model` for the search, with its own texts (JSON-like renderings where it gives none). */
export function modelAdapter(model: AnyModel): PartAdapter<ModelProblem> {
  const input = model.describeInput?.bind(model) ?? renderValue;
  const output = model.describeOutput?.bind(model) ?? renderValue;
  const state = model.describeState?.bind(model) ?? renderValue;
  return {
    modelName: model.name ?? 'given',
    label: (part) => (part === '' ? (model.name ?? 'history') : `part ${part}`),
    whole: (part) => (part === '' ? "the history's" : "the part's"),
    render: { input, output },
    compile: (ops) => compile(model, ops),
    renderState: (c, s) => `the state is ${state(c.states.values[s])}`,
    refusal: () => ' does not fit',
  };
}

/** The adapter the search runs for `model`: the compiled kv for `kvModel`, else `modelAdapter`. */
export function adapterFor(model: AnyModel): PartAdapter {
  return model === kvModel ? kvAdapter : modelAdapter(model);
}
