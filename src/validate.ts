/**
 * The small checks every room repeats: a peer id, a positive or non-negative integer option,
 * and the exhaustiveness guard of a `switch` over a union. Pure, no imports, so any room
 * (the core included) can use them without pulling anything else in.
 */

/**
 * What may name a peer: 1 to 64 letters, digits, `_`, `.` or `-`, and not `.` or `..`. A peer
 * id names a directory under the node's data directory, travels in every message and in the
 * TCP hello, so it is kept to characters that are safe in all three.
 */
export const ID_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

export function isPeerId(value: unknown): value is string {
  return typeof value === 'string' && ID_PATTERN.test(value) && value !== '.' && value !== '..';
}

/**
 * `value` if it is a positive safe integer, `fallback` if it is undefined; otherwise a
 * RangeError naming `name` (the caller's full name for it, e.g. `options.heartbeatMs`).
 */
export function positiveInt(value: unknown, name: string, fallback: number): number;
export function positiveInt(value: unknown, name: string): number | undefined;
export function positiveInt(value: unknown, name: string, fallback?: number): number | undefined {
  return integerAtLeast(1, 'a positive', value, name, fallback);
}

/** As `positiveInt`, with 0 allowed. */
export function nonNegativeInt(value: unknown, name: string, fallback: number): number;
export function nonNegativeInt(value: unknown, name: string): number | undefined;
export function nonNegativeInt(value: unknown, name: string, fallback?: number): number | undefined {
  return integerAtLeast(0, 'a non-negative', value, name, fallback);
}

function integerAtLeast(min: number, what: string, value: unknown, name: string, fallback: number | undefined): number | undefined {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) {
    throw new RangeError(`${name} must be ${what} integer, got ${String(value)}`);
  }
  return value;
}

/** The `default` of a `switch` that handles every member of a union: unreachable when it type-checks. */
export function assertNever(value: never, what = 'value'): never {
  throw new Error(`unhandled ${what} ${JSON.stringify(value)}`);
}
