/**
 * Text for histories: a readable rendering of values, commands and ops for humans, and a
 * lossless JSON encoding of kv values for the line format of `history.ts`.
 *
 * kv values are whatever msgpack carries (see `src/state-machines/kv.ts`): null, booleans,
 * numbers, bigints, strings, arrays, plain objects, Map, Set, Date and typed arrays. JSON has
 * only the first few, so the encoding tags the rest with a one-key object whose key starts
 * with `$` (`{"$bigint":"12"}`, `{"$map":[[k,v]]}`, ...); a plain object that has a key
 * starting with `$` is wrapped in `{"$object":{...}}` so that it cannot be mistaken for a tag.
 * Plain JSON values encode as themselves, so the common case stays readable.
 */
import type { KvCommand } from '../state-machines/kv.js';

/** JSON as `JSON.parse` returns it. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

const TYPED_ARRAYS = {
  Int8Array,
  Uint8Array,
  Uint8ClampedArray,
  Int16Array,
  Uint16Array,
  Int32Array,
  Uint32Array,
  Float32Array,
  Float64Array,
  BigInt64Array,
  BigUint64Array,
} as const;
type TypedArrayName = keyof typeof TYPED_ARRAYS;

function typedArrayName(v: ArrayBufferView): TypedArrayName | null {
  // Object.prototype.toString sees through subclasses: a Buffer reports Uint8Array, as in
  // kv's deepEqual.
  const tag = Object.prototype.toString.call(v).slice(8, -1);
  return Object.prototype.hasOwnProperty.call(TYPED_ARRAYS, tag) ? (tag as TypedArrayName) : null;
}

/**
 * Encode a kv value as JSON without loss (see the module comment). Throws TypeError for what
 * no kv value can be (functions, symbols, class instances other than the ones listed).
 */
export function encodeValue(v: unknown): Json {
  if (v === null || typeof v === 'boolean' || typeof v === 'string') return v;
  if (v === undefined) return { $undefined: true };
  if (typeof v === 'number') {
    if (Number.isNaN(v) || !Number.isFinite(v) || Object.is(v, -0)) return { $number: String(v === 0 ? '-0' : v) };
    return v;
  }
  if (typeof v === 'bigint') return { $bigint: v.toString() };
  if (Array.isArray(v)) return v.map(encodeValue);
  if (v instanceof Map) return { $map: [...v].map(([k, x]) => [encodeValue(k), encodeValue(x)]) };
  if (v instanceof Set) return { $set: [...v].map(encodeValue) };
  if (v instanceof Date) return { $date: Number.isNaN(v.getTime()) ? 'NaN' : v.toISOString() };
  if (v instanceof DataView) return { $DataView: [...new Uint8Array(v.buffer, v.byteOffset, v.byteLength)] };
  if (ArrayBuffer.isView(v)) {
    const name = typedArrayName(v);
    if (name === null) throw new TypeError(`cannot encode a ${Object.prototype.toString.call(v)} as a kv value`);
    const items = [...(v as unknown as Iterable<number | bigint>)];
    return { [`$${name}`]: items.map((x) => (typeof x === 'bigint' ? x.toString() : encodeValue(x))) };
  }
  if (typeof v === 'object') {
    const out: { [key: string]: Json } = {};
    let dollar = false;
    for (const [k, x] of Object.entries(v)) {
      if (k.startsWith('$')) dollar = true;
      out[k] = encodeValue(x);
    }
    return dollar ? { $object: out } : out;
  }
  throw new TypeError(`cannot encode a ${typeof v} as a kv value`);
}

/** The inverse of `encodeValue`. Throws TypeError on a malformed tag. */
export function decodeValue(j: Json): unknown {
  if (j === null || typeof j !== 'object') return j;
  if (Array.isArray(j)) return j.map(decodeValue);
  const keys = Object.keys(j);
  if (keys.length !== 1 || !keys[0]!.startsWith('$')) {
    const out: Record<string, unknown> = {};
    for (const k of keys) out[k] = decodeValue(j[k]!);
    return out;
  }
  const tag = keys[0]!.slice(1);
  const body = j[keys[0]!]!;
  const bad = (): never => {
    throw new TypeError(`malformed tagged value ${JSON.stringify(j)}`);
  };
  switch (tag) {
    case 'undefined':
      return undefined;
    case 'number':
      return typeof body === 'string' ? Number(body) : bad();
    case 'bigint':
      return typeof body === 'string' ? BigInt(body) : bad();
    case 'map':
      if (!Array.isArray(body)) return bad();
      return new Map(
        body.map((pair) => (Array.isArray(pair) && pair.length === 2 ? [decodeValue(pair[0]!), decodeValue(pair[1]!)] : bad())),
      );
    case 'set':
      return Array.isArray(body) ? new Set(body.map(decodeValue)) : bad();
    case 'date':
      return typeof body === 'string' ? new Date(body === 'NaN' ? NaN : body) : bad();
    case 'object': {
      if (typeof body !== 'object' || body === null || Array.isArray(body)) return bad();
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(body)) out[k] = decodeValue(x);
      return out;
    }
    case 'DataView':
      return Array.isArray(body) ? new DataView(new Uint8Array(body as number[]).buffer) : bad();
    default: {
      if (!Object.prototype.hasOwnProperty.call(TYPED_ARRAYS, tag) || !Array.isArray(body)) return bad();
      const name = tag as TypedArrayName;
      if (name === 'BigInt64Array' || name === 'BigUint64Array') {
        return TYPED_ARRAYS[name].from(body.map((x) => BigInt(x as string)));
      }
      return TYPED_ARRAYS[name].from(body.map((x) => decodeValue(x) as number));
    }
  }
}

/** The arguments of a command after its key, in the order the line format writes them. */
export function commandArgs(c: KvCommand): unknown[] {
  switch (c.type) {
    case 'set':
      return [c.key, c.value];
    case 'get':
    case 'delete':
      return [c.key];
    case 'cas':
      return [c.key, c.expected, c.value];
  }
}

/** Rebuild a command from its type and `commandArgs`; the checker validates it later. */
export function commandFromArgs(type: string, args: readonly unknown[]): KvCommand {
  const [key, a, b] = args;
  // The cast is deliberate: a malformed line becomes a malformed command, which the checker
  // refuses with a message naming the op, exactly as for a recorded one.
  switch (type) {
    case 'set':
      return { type, key, value: a } as KvCommand;
    case 'get':
    case 'delete':
      return { type, key } as KvCommand;
    case 'cas':
      return { type, key, expected: a, value: b } as KvCommand;
    default:
      return { type, key } as unknown as KvCommand;
  }
}

const MAX_RENDERED = 60;

/**
 * A short human rendering of a value: JSON-like for plain data, `12n` for bigints,
 * `Map{k => v}`, `Set{..}`, `Date(iso)`, `Uint8Array[1,2]`; long renderings are cut with `…`.
 */
export function renderValue(v: unknown): string {
  const s = render(v, 0);
  return s.length > MAX_RENDERED ? `${s.slice(0, MAX_RENDERED - 1)}…` : s;
}

function render(v: unknown, depth: number): string {
  if (v === undefined) return 'undefined';
  if (v === null || typeof v === 'boolean') return String(v);
  if (typeof v === 'number') return Object.is(v, -0) ? '-0' : String(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v !== 'object') return String(v);
  if (depth > 3) return '…';
  if (Array.isArray(v)) return `[${v.map((x) => render(x, depth + 1)).join(', ')}]`;
  if (v instanceof Map) return `Map{${[...v].map(([k, x]) => `${render(k, depth + 1)} => ${render(x, depth + 1)}`).join(', ')}}`;
  if (v instanceof Set) return `Set{${[...v].map((x) => render(x, depth + 1)).join(', ')}}`;
  if (v instanceof Date) return `Date(${Number.isNaN(v.getTime()) ? 'invalid' : v.toISOString()})`;
  if (v instanceof DataView) return `DataView[${new Uint8Array(v.buffer, v.byteOffset, v.byteLength).join(',')}]`;
  if (ArrayBuffer.isView(v)) {
    const items = [...(v as unknown as Iterable<number | bigint>)].map((x) => String(x));
    return `${typedArrayName(v) ?? 'TypedArray'}[${items.join(',')}]`;
  }
  const entries = Object.entries(v).map(([k, x]) => `${/^[A-Za-z_$][\w$]*$/.test(k) ? k : JSON.stringify(k)}: ${render(x, depth + 1)}`);
  return `{${entries.join(', ')}}`;
}

/** A key as written inside a rendered command: bare when unambiguous, else quoted. */
export function renderKey(key: unknown): string {
  return typeof key === 'string' && /^[A-Za-z0-9_][\w.:/-]*$/.test(key) ? key : render(key, 0);
}

/** `set(k, 1)`, `get(k)`, `delete(k)`, `cas(k, expected=1, value=2)`. */
export function renderCommand(c: KvCommand): string {
  const k = renderKey(c.key);
  switch (c.type) {
    case 'set':
      return `set(${k}, ${renderValue(c.value)})`;
    case 'get':
      return `get(${k})`;
    case 'delete':
      return `delete(${k})`;
    case 'cas':
      return `cas(${k}, expected=${renderValue(c.expected)}, value=${renderValue(c.value)})`;
    default: {
      // Not a kv command (a refused one, recorded as 'fail'): show what there is.
      return renderValue(c);
    }
  }
}

/** `c3` for client 3, the name itself for a named client. */
export function renderClient(c: string | number): string {
  return typeof c === 'number' ? `c${c}` : c;
}

/** The shape of an op that `renderOps` needs (an `Op` from `history.ts`). */
export interface RenderableOp<C = KvCommand> {
  client: string | number;
  command: C;
  invokedAt: number;
  completedAt: number | null;
  status: 'ok' | 'fail' | 'info' | 'open';
  result?: unknown;
  error?: string;
}

/** How `renderOps` writes an op's command and its result. */
export interface OpRenderers<C = unknown> {
  input(command: C): string;
  output(result: unknown): string;
}

/** Kv commands and kv values: `cas(k, expected=1, value=2) → true`. */
export const kvRenderers: OpRenderers<KvCommand> = { input: renderCommand, output: renderValue };

/**
 * One aligned line per op, sorted by invocation, times in ms relative to `base`, commands and
 * results written by `render` (kv commands and values by default):
 *
 * ```
 * c3  [12.1ms → 14.0ms]  cas(k, expected=1, value=2) → true
 * c4  [12.5ms → ?]       set(k, 3) → ?   (info at 20.0ms: TIMEOUT: no answer within 5 ms)
 * ```
 *
 * Open and `info` ops end in `→ ?` (their effect and result are unknown), `fail` ops in
 * `→ fail`.
 */
export function renderOps<C = KvCommand>(
  ops: readonly RenderableOp<C>[],
  base = 0,
  render: OpRenderers<C> = kvRenderers as unknown as OpRenderers<C>,
): string[] {
  const ms = (t: number): string => `${(t - base).toFixed(1)}ms`;
  const rows = [...ops]
    .sort((a, b) => a.invokedAt - b.invokedAt)
    .map((op) => {
      const done = op.status === 'ok' || op.status === 'fail';
      const span = `[${ms(op.invokedAt)} → ${done && op.completedAt !== null ? ms(op.completedAt) : '?'}]`;
      let tail: string;
      if (op.status === 'ok') tail = `→ ${render.output(op.result)}`;
      else if (op.status === 'fail') tail = `→ fail${op.error === undefined ? '' : `   (${op.error})`}`;
      else if (op.status === 'info') {
        const at = op.completedAt === null ? '' : ` at ${ms(op.completedAt)}`;
        tail = `→ ?   (info${at}${op.error === undefined ? '' : `: ${op.error}`})`;
      } else tail = '→ ?   (never completed)';
      return { who: renderClient(op.client), span, what: `${render.input(op.command)} ${tail}` };
    });
  const w1 = Math.max(0, ...rows.map((r) => r.who.length));
  const w2 = Math.max(0, ...rows.map((r) => r.span.length));
  return rows.map((r) => `${r.who.padEnd(w1)}  ${r.span.padEnd(w2)}  ${r.what}`);
}
