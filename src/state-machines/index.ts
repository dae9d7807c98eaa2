/**
 * Loading a state machine from a node's options: the built-in kv, or a module of the user's.
 */
import { isAbsolute } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createStateMachine as createKv } from './kv.js';
import type { StateMachine, StateMachineFactory } from './types.js';

export type { StateMachine, StateMachineFactory } from './types.js';
export { KvStateMachine, validateKvCommand } from './kv.js';
export type { KvCommand } from './kv.js';

export type StateMachineSpec = 'kv' | { module: string };

/**
 * Build the state machine `spec` names.
 *
 * - `'kv'`: the built-in key-value store (`./kv.ts`).
 * - `{ module }`: `await import(module)`, then call its `createStateMachine` export, or its
 *   default export when that is a function (or a default object with a `createStateMachine`,
 *   as a CommonJS module gives). An absolute file path is turned into a `file:` URL first;
 *   anything else (a package name, a `file:` URL) goes to `import()` unchanged, and a
 *   relative path would resolve against this file, so pass absolute paths.
 *
 * Throws TypeError when `spec` is neither, when the module exports no factory, or when the
 * factory's result has no `apply` function. Errors from `import()` itself (module not found,
 * syntax error) and from the factory propagate unchanged.
 */
export async function loadStateMachine(spec: StateMachineSpec): Promise<StateMachine> {
  if (spec === 'kv') return createKv();
  if (typeof spec !== 'object' || spec === null || typeof spec.module !== 'string' || spec.module === '') {
    throw new TypeError(`stateMachine must be 'kv' or { module: string }, got ${JSON.stringify(spec)}`);
  }
  const specifier = isAbsolute(spec.module) ? pathToFileURL(spec.module).href : spec.module;
  const mod = (await import(specifier)) as Record<string, unknown>;
  const factory = findFactory(mod);
  if (factory === undefined) {
    const names = Object.keys(mod);
    throw new TypeError(
      `state machine module '${spec.module}' exports neither a createStateMachine function nor a default ` +
        `factory function (it exports: ${names.length > 0 ? names.join(', ') : 'nothing'})`,
    );
  }
  const machine: unknown = await factory();
  if (typeof machine !== 'object' || machine === null || typeof (machine as StateMachine).apply !== 'function') {
    throw new TypeError(
      `the factory of state machine module '${spec.module}' returned ${
        machine === null ? 'null' : typeof machine
      } without an apply(command) function`,
    );
  }
  return machine as StateMachine;
}

function findFactory(mod: Record<string, unknown>): StateMachineFactory | undefined {
  if (typeof mod.createStateMachine === 'function') return mod.createStateMachine as StateMachineFactory;
  const def = mod.default;
  if (typeof def === 'function') return def as StateMachineFactory;
  if (typeof def === 'object' && def !== null) {
    const inner = (def as Record<string, unknown>).createStateMachine;
    if (typeof inner === 'function') return inner as StateMachineFactory;
  }
  return undefined;
}
