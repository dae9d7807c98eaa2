/**
 * The built-in key-value state machine (`stateMachine: 'kv'`).
 *
 * Commands (anything else throws `InvalidCommandError` and leaves the state unchanged):
 *
 * | command                               | result                                   |
 * |---------------------------------------|------------------------------------------|
 * | `{ type: 'set', key, value }`         | `null`                                   |
 * | `{ type: 'get', key }`                | the stored value, or `null` when missing |
 * | `{ type: 'delete', key }`             | `true` if the key existed, else `false`  |
 * | `{ type: 'cas', key, expected, value }` | `true` if swapped, else `false`        |
 *
 * Keys are strings. Values are anything msgpack carries (the codec in `src/codec.ts`):
 * null, booleans, numbers, bigints, strings, arrays, plain objects, Map, Date, Uint8Array.
 * `undefined` is not a value (msgpack has none, and `get` answers `null` for "missing"), so a
 * `value` or `expected` field that is absent or `undefined` is a malformed command.
 *
 * `cas` compares `expected` with the stored value by deep structural equality (see
 * `deepEqual`), and a missing key compares equal to `expected === null` only. A key that
 * holds `null` and a missing key are therefore alike for `get` and `cas`; only `delete`
 * (true vs false) tells them apart.
 *
 * Fields other than the ones above are ignored. Values are stored as given (no copy): in a
 * consensus actor each command is freshly decoded, so nothing else holds a reference to it.
 *
 * Snapshots (`snapshot()`/`restore()`, for log compaction): the state packed with the codec
 * as an array of `[key, value]` pairs in ascending key order (UTF-16 code unit order, as
 * `Array.prototype.sort` compares strings), so the bytes depend only on the state, not on the
 * order the keys were written in, and a restored kv snapshots to the same bytes.
 */
import { InvalidCommandError } from '../errors.js';
import { codec } from '../codec.js';
import type { StateMachine } from './types.js';

export interface KvSet {
  type: 'set';
  key: string;
  value: unknown;
}
export interface KvGet {
  type: 'get';
  key: string;
}
export interface KvDelete {
  type: 'delete';
  key: string;
}
export interface KvCas {
  type: 'cas';
  key: string;
  expected: unknown;
  value: unknown;
}
export type KvCommand = KvSet | KvGet | KvDelete | KvCas;

const KV_TYPES: readonly KvCommand['type'][] = ['set', 'get', 'delete', 'cas'];

function describe(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Map) return 'a Map';
  if (v instanceof Uint8Array) return 'a Uint8Array';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(String(v))}`;
}

function requireField(c: Record<string, unknown>, type: string, field: string): unknown {
  const v = c[field];
  if (v === undefined) {
    throw new InvalidCommandError(`kv ${type} command is missing its '${field}' field (use null for "no value")`);
  }
  return v;
}

/**
 * Check that `c` is a kv command and return it as one, keeping only the known fields.
 * Throws `InvalidCommandError` naming the problem.
 */
export function validateKvCommand(c: unknown): KvCommand {
  if (typeof c !== 'object' || c === null || Array.isArray(c) || c instanceof Map || c instanceof Uint8Array) {
    throw new InvalidCommandError(`kv command must be an object with a 'type' field, got ${describe(c)}`);
  }
  const cmd = c as Record<string, unknown>;
  const type = cmd.type;
  if (typeof type !== 'string' || !(KV_TYPES as readonly string[]).includes(type)) {
    const got = type === undefined ? 'no type' : `type ${describe(type)}`;
    throw new InvalidCommandError(`kv command has ${got}; expected one of ${KV_TYPES.join(', ')}`);
  }
  const key = cmd.key;
  if (typeof key !== 'string') {
    const got = key === undefined ? 'no key' : describe(key);
    throw new InvalidCommandError(`kv ${type} command needs a string 'key', got ${got}`);
  }
  switch (type as KvCommand['type']) {
    case 'set':
      return { type: 'set', key, value: requireField(cmd, type, 'value') };
    case 'get':
      return { type: 'get', key };
    case 'delete':
      return { type: 'delete', key };
    case 'cas':
      return {
        type: 'cas',
        key,
        expected: requireField(cmd, type, 'expected'),
        value: requireField(cmd, type, 'value'),
      };
  }
}

/**
 * Deep structural equality over the values msgpack decodes to: primitives (NaN equals NaN,
 * 0 equals -0 since msgpack does not keep the sign of zero), arrays, plain objects (same own
 * enumerable keys, in any order), Map (same size, each key matched by deep equality), Set,
 * Date (same time), and typed arrays (same kind, same elements). Different kinds are unequal:
 * an array never equals an object or a Uint8Array, 1 never equals 1n.
 */
export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a === 'number' && typeof b === 'number') return Number.isNaN(a) && Number.isNaN(b);
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;

  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!deepEqual(a[i], b[i])) return false;
    return true;
  }
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    if (!ArrayBuffer.isView(a) || !ArrayBuffer.isView(b)) return false;
    if (a instanceof DataView || b instanceof DataView) {
      if (!(a instanceof DataView && b instanceof DataView) || a.byteLength !== b.byteLength) return false;
      for (let i = 0; i < a.byteLength; i++) if (a.getUint8(i) !== b.getUint8(i)) return false;
      return true;
    }
    // Buffer is a Uint8Array: compare by element kind, not by exact class.
    if (typedKind(a) !== typedKind(b)) return false;
    const x = a as unknown as ArrayLike<number | bigint>;
    const y = b as unknown as ArrayLike<number | bigint>;
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (!Object.is(x[i], y[i]) && x[i] !== y[i]) return false;
    return true;
  }
  if (a instanceof Date || b instanceof Date) {
    if (!(a instanceof Date && b instanceof Date)) return false;
    const ta = a.getTime();
    const tb = b.getTime();
    return ta === tb || (Number.isNaN(ta) && Number.isNaN(tb));
  }
  if (a instanceof Map || b instanceof Map) {
    if (!(a instanceof Map && b instanceof Map) || a.size !== b.size) return false;
    for (const [k, va] of a) {
      if (b.has(k)) {
        if (!deepEqual(va, b.get(k))) return false;
        continue;
      }
      // A key that is not identical (an object, NaN's twin) may still be structurally equal.
      let found = false;
      for (const [kb, vb] of b) {
        if (deepEqual(k, kb) && deepEqual(va, vb)) {
          found = true;
          break;
        }
      }
      if (!found) return false;
    }
    return true;
  }
  if (a instanceof Set || b instanceof Set) {
    if (!(a instanceof Set && b instanceof Set) || a.size !== b.size) return false;
    for (const x of a) {
      if (b.has(x)) continue;
      let found = false;
      for (const y of b) {
        if (deepEqual(x, y)) {
          found = true;
          break;
        }
      }
      if (!found) return false;
    }
    return true;
  }
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (const k of ka) {
    if (!Object.prototype.hasOwnProperty.call(b, k)) return false;
    if (!deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

function typedKind(v: ArrayBufferView): string {
  // Buffer reports 'Uint8Array' here, so a decoded Buffer equals a Uint8Array with the same bytes.
  return Object.prototype.toString.call(v);
}

export class KvStateMachine implements StateMachine {
  private data = new Map<string, unknown>();

  /** Number of keys held. */
  get size(): number {
    return this.data.size;
  }

  apply(command: unknown): unknown {
    const c = validateKvCommand(command);
    switch (c.type) {
      case 'set':
        this.data.set(c.key, c.value);
        return null;
      case 'get':
        return this.data.has(c.key) ? this.data.get(c.key) : null;
      case 'delete':
        return this.data.delete(c.key);
      case 'cas': {
        const current = this.data.has(c.key) ? this.data.get(c.key) : null;
        if (!deepEqual(current, c.expected)) return false;
        this.data.set(c.key, c.value);
        return true;
      }
    }
  }

  /** Read-only: `{ type: 'get', key }` against the applied state. */
  query(query: unknown): unknown {
    const q = validateKvCommand(query);
    if (q.type !== 'get') throw new InvalidCommandError(`kv query must be a get, got ${q.type}`);
    return this.data.has(q.key) ? this.data.get(q.key) : null;
  }

  /** The whole state: `[key, value]` pairs in ascending key order, packed with the codec. */
  snapshot(): Uint8Array {
    const keys = [...this.data.keys()].sort();
    return codec.encode(keys.map((key) => [key, this.data.get(key)]));
  }

  /**
   * Replace the whole state with the one `data` holds (bytes from `snapshot()`). Throws an
   * Error saying what is wrong, and changes nothing, when `data` is not a kv snapshot.
   */
  restore(data: Uint8Array): void {
    if (!(data instanceof Uint8Array)) throw new TypeError('kv restore: the snapshot must be a Uint8Array');
    const notASnapshot = (why: string, cause?: unknown) =>
      new Error(`kv restore: not a kv snapshot (${why})`, cause === undefined ? undefined : { cause });
    let pairs: unknown;
    try {
      pairs = codec.decode(data);
    } catch (e) {
      throw notASnapshot((e as Error).message, e);
    }
    if (!Array.isArray(pairs)) throw notASnapshot(`${describe(pairs)}, not an array of pairs`);
    // Validated in full before anything changes.
    const next = new Map<string, unknown>();
    pairs.forEach((pair: unknown, i) => {
      if (!Array.isArray(pair) || pair.length !== 2 || typeof pair[0] !== 'string') {
        throw notASnapshot(`item ${i} is not a [key, value] pair with a string key`);
      }
      const [key, value] = pair as [string, unknown];
      if (value === undefined) throw notASnapshot(`key ${JSON.stringify(key)} has no value`);
      if (next.has(key)) throw notASnapshot(`key ${JSON.stringify(key)} appears twice`);
      next.set(key, value);
    });
    this.data = next;
  }
}

export function createStateMachine(): KvStateMachine {
  return new KvStateMachine();
}
