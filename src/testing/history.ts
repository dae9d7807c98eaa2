/**
 * Recording what clients of a cluster saw, for a linearizability check afterwards (Jepsen's
 * history model: every op is an invocation followed by at most one completion). Commands are
 * kv commands by default (`History<C = KvCommand>`); with a `Model` of your own they are
 * whatever it takes as input.
 *
 * An op completes in one of three ways:
 *
 * - `ok(result)`: it took effect, exactly once, somewhere between its invocation and its
 *   completion, and returned `result`.
 * - `fail()`: it definitely did not take effect: its error's `outcome` is `'not-applied'`
 *   (`NotLeaderError`: the command was never appended; `InvalidCommandError`: the state
 *   machine refused it and changed nothing; a `NodeStoppedError` before it was sent). The
 *   checker drops it, and `notAppliedSeen` checks that no read ever saw its value.
 * - `info()`: the outcome is unknown (`'unknown'`: a `TimeoutError` after a try was sent,
 *   `LeadershipLostError`, ...): the op may take effect at any time after its invocation, even
 *   long after the client gave up, or never. It stays open forever, like Jepsen's `:info`.
 *
 * An op never completed at all (the test stopped first) is open in the same way.
 *
 * Everything recorded is plain data (`HistoryEvent`): it can be posted to a worker, kept as
 * JSON, or written in the line format of `formatHistory`/`parseHistory`.
 */
import { isRaftError, type ErrorOutcome } from '../errors.js';
import type { KvCommand } from '../state-machines/kv.js';
import { commandArgs, commandFromArgs, decodeValue, encodeValue, type Json } from './format.js';

/** Who issued an op: a client name or number (a Jepsen "process"). */
export type ClientId = string | number;

interface EventBase {
  /** The op this event belongs to: the invocation and its completion share it. */
  id: number;
  client: ClientId;
  /** Clock reading in milliseconds (monotonic; `performance.now()` by default). */
  time: number;
}
export interface InvokeEvent<C = KvCommand> extends EventBase {
  type: 'invoke';
  command: C;
}
export interface OkEvent extends EventBase {
  type: 'ok';
  result: unknown;
}
export interface FailEvent extends EventBase {
  type: 'fail';
  /** Why, for the reader (`NOT_LEADER: not the leader; try n2`). */
  error?: string;
  /** The `outcome` the error reported, when it was a RaftError. */
  outcome?: ErrorOutcome;
}
export interface InfoEvent extends EventBase {
  type: 'info';
  error?: string;
  outcome?: ErrorOutcome;
}
/**
 * One entry of a history. The order of events in a history is the real-time order the
 * checker uses: op A precedes op B iff A's completion comes before B's invocation.
 */
export type HistoryEvent<C = KvCommand> = InvokeEvent<C> | OkEvent | FailEvent | InfoEvent;

/**
 * How an op ended: `ok` and `fail` as recorded, `info` for an indeterminate completion, and
 * `open` for an op never completed. The checker treats `info` and `open` alike.
 */
export type OpStatus = 'ok' | 'fail' | 'info' | 'open';

/**
 * An op: an invocation paired with its completion, if any. `C` is the command type: a kv
 * command by default, anything a `Model` takes as input otherwise.
 */
export interface Op<C = KvCommand> {
  id: number;
  client: ClientId;
  command: C;
  /** Clock reading at the invocation. */
  invokedAt: number;
  /** Clock reading at the completion; null when open. For `info` it is when the client gave up. */
  completedAt: number | null;
  status: OpStatus;
  /** The result, for `ok` ops only. */
  result?: unknown;
  /** The error text of a `fail` or `info` completion, if one was given. */
  error?: string;
  /** The `outcome` its error reported (a RaftError's), if any. */
  outcome?: ErrorOutcome;
}

/** What `History.invoke` returns: complete the op exactly once. */
export interface OpHandle {
  readonly id: number;
  /** Whether a completion has been recorded. */
  readonly done: boolean;
  /** The op took effect and returned `result`. */
  ok(result: unknown): void;
  /** The op definitely did not take effect. */
  fail(error?: unknown): void;
  /** The outcome is unknown; the op stays open. */
  info(error?: unknown): void;
  /** Record `error` as `fail` or `info`, as `classifyError` decides. */
  error(error: unknown): void;
}

export interface HistoryOptions {
  /**
   * Monotonic clock in milliseconds. Default `performance.now`. Inject one in tests to get
   * exact timestamps; it must never go backwards.
   */
  clock?: () => number;
}

/**
 * Whether an op that threw `error` definitely did not happen (`'fail'`: a RaftError whose
 * `outcome` is `'not-applied'`) or may have (`'info'`). Errors that are not RaftErrors are
 * `'info'`: claiming `'fail'` wrongly could hide a bug, while claiming `'info'` wrongly only
 * weakens the check. (The check of the outcomes themselves: `notAppliedSeen`.)
 */
export function classifyError(error: unknown): 'fail' | 'info' {
  return isRaftError(error) && error.outcome === 'not-applied' ? 'fail' : 'info';
}

/** The outcome a RaftError reported, if `error` is one (one from another realm included). */
function outcomeOf(error: unknown): ErrorOutcome | undefined {
  if (!isRaftError(error)) return undefined;
  const o = (error as { outcome?: unknown }).outcome;
  return o === 'not-applied' || o === 'unknown' ? o : undefined;
}

function errorText(error: unknown): string | undefined {
  if (error === undefined) return undefined;
  if (isRaftError(error)) return `${error.code}: ${error.message}`;
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

/**
 * A history recorder. Call `invoke` just before sending an op and complete its handle as
 * soon as the answer arrives; concurrent clients share one `History`.
 *
 * ```ts
 * const h = new History();
 * const op = h.invoke('c1', { type: 'cas', key: 'x', expected: 1, value: 2 });
 * try { op.ok(await raft.op(leader, cmd)); } catch (e) { op.error(e); }
 * // or: await h.run('c1', cmd, () => raft.op(leader, cmd));
 * const result = await checkKv(h);
 * ```
 */
export class History<C = KvCommand> {
  private readonly clock: () => number;
  private readonly log: HistoryEvent<C>[] = [];
  private readonly open = new Map<number, ClientId>();
  private lastTime = -Infinity;
  private nextId = 0;

  constructor(options: HistoryOptions = {}) {
    if (options.clock !== undefined && typeof options.clock !== 'function') {
      throw new TypeError('options.clock must be a function returning milliseconds');
    }
    this.clock = options.clock ?? (() => performance.now());
  }

  /** Record the invocation of `command` by `client`. */
  invoke(client: ClientId, command: C): OpHandle {
    if (typeof client !== 'string' && typeof client !== 'number') {
      throw new TypeError(`client must be a string or a number, got ${typeof client}`);
    }
    const id = this.nextId++;
    this.push({ type: 'invoke', id, client, time: this.now(), command: shallowCopy(command) });
    this.open.set(id, client);
    const open = this.open;
    const complete = (event: HistoryEvent<C>): void => {
      if (!this.open.delete(id)) throw new Error(`op #${id} of client ${String(client)} is already completed`);
      this.push(event);
    };
    return {
      id,
      get done() {
        return !open.has(id);
      },
      ok: (result) => complete({ type: 'ok', id, client, time: this.now(), result }),
      fail: (error) => complete(withError({ type: 'fail', id, client, time: this.now() }, error)),
      info: (error) => complete(withError({ type: 'info', id, client, time: this.now() }, error)),
      error: (error) => complete(withError({ type: classifyError(error), id, client, time: this.now() }, error)),
    };
  }

  /**
   * Invoke, await `fn`, and record its outcome: a result is `ok`, a thrown error `fail` or
   * `info` by `classifyError`. Returns or rethrows what `fn` did.
   */
  async run<T>(client: ClientId, command: C, fn: () => Promise<T>): Promise<T> {
    const op = this.invoke(client, command);
    let result: T;
    try {
      result = await fn();
    } catch (e) {
      op.error(e);
      throw e;
    }
    op.ok(result);
    return result;
  }

  /** The events so far, in order (a copy: plain data, safe to post or serialize). */
  get events(): HistoryEvent<C>[] {
    return this.log.slice();
  }

  /** The ops so far, in invocation order; ops still in flight are `open`. */
  ops(): Op<C>[] {
    return toOps(this.log);
  }

  /** Ids of ops invoked and not completed. */
  pending(): number[] {
    return [...this.open.keys()];
  }

  toJSON(): HistoryEvent<C>[] {
    return this.events;
  }

  /** The line format of `formatHistory` (kv commands only). */
  toText(): string {
    return formatHistory(this.log as unknown as readonly HistoryEvent[]);
  }

  private now(): number {
    const t = this.clock();
    if (typeof t !== 'number' || Number.isNaN(t)) throw new TypeError(`the history clock returned ${String(t)}, not a number`);
    if (t < this.lastTime) throw new RangeError(`the history clock went backwards: ${t} after ${this.lastTime}`);
    this.lastTime = t;
    return t;
  }

  private push(e: HistoryEvent<C>): void {
    this.log.push(e);
  }
}

/**
 * A copy of a command's top level, so a caller reusing its object does not rewrite history:
 * plain objects and arrays are copied, anything else (numbers, strings, ...) kept as is.
 */
function shallowCopy<C>(command: C): C {
  if (Array.isArray(command)) return command.slice() as C;
  const proto: unknown = typeof command === 'object' && command !== null ? Object.getPrototypeOf(command) : undefined;
  if (proto === Object.prototype || proto === null) {
    return { ...command };
  }
  return command;
}

/** A fail or info event with `error`'s text and reported outcome, when there are. */
function withError<E extends FailEvent | InfoEvent>(e: E, error: unknown): E {
  const text = errorText(error);
  if (text !== undefined) e.error = text;
  const outcome = outcomeOf(error);
  if (outcome !== undefined) e.outcome = outcome;
  return e;
}

/**
 * Pair the invocations and completions of `events` into ops, in invocation order. Throws
 * TypeError for a completion without an earlier invocation, a second completion, or a
 * reused id.
 */
export function toOps<C = KvCommand>(events: readonly HistoryEvent<C>[]): Op<C>[] {
  const ops: Op<C>[] = [];
  const byId = new Map<number, Op<C>>();
  events.forEach((e, i) => {
    if (e.type === 'invoke') {
      if (byId.has(e.id)) throw new TypeError(`history event ${i}: op id ${e.id} is invoked twice`);
      const op: Op<C> = { id: e.id, client: e.client, command: e.command, invokedAt: e.time, completedAt: null, status: 'open' };
      byId.set(e.id, op);
      ops.push(op);
      return;
    }
    const op = byId.get(e.id);
    if (op === undefined) throw new TypeError(`history event ${i}: '${e.type}' for op ${e.id}, which was not invoked before`);
    if (op.status !== 'open') throw new TypeError(`history event ${i}: op ${e.id} is completed twice`);
    op.status = e.type;
    op.completedAt = e.time;
    if (e.type === 'ok') op.result = e.result;
    else {
      if (e.error !== undefined) op.error = e.error;
      if (e.outcome !== undefined) op.outcome = e.outcome;
    }
  });
  return ops;
}

/**
 * The outcome check of a kv history whose writes are unique (each `set` and `cas` writes a
 * value no other op writes, as the Jepsen runs do): a write reported not applied (`fail`, or
 * an error whose outcome is `'not-applied'`) must never be seen, so no acknowledged `get`
 * returns its value. Returns one line per read that saw one (empty when none did). The
 * linearizability check would usually fail on such a read too; this names the cause.
 */
export function notAppliedSeen(ops: readonly Op[]): string[] {
  const slot = (key: string, value: unknown) => `${key}\u0000${JSON.stringify(encodeValue(value))}`;
  const notApplied = new Map<string, Op>();
  for (const o of ops) {
    if (o.status !== 'fail' && o.outcome !== 'not-applied') continue;
    const c = o.command;
    if (c.type === 'set' || c.type === 'cas') notApplied.set(slot(c.key, c.value), o);
  }
  const seen: string[] = [];
  for (const o of ops) {
    if (o.status !== 'ok' || o.command.type !== 'get' || o.result === null || o.result === undefined) continue;
    const w = notApplied.get(slot(o.command.key, o.result));
    if (w === undefined) continue;
    seen.push(
      `op #${o.id} (client ${String(o.client)}) read ${o.command.key} = ${JSON.stringify(encodeValue(o.result))}, ` +
        `written by op #${w.id} (client ${String(w.client)}), which was reported not applied (${w.error ?? 'fail'})`,
    );
  }
  return seen;
}

// ---------------------------------------------------------------------------------------
// The line format
// ---------------------------------------------------------------------------------------

const HEADER = '# actor-raft kv history v1';

function formatClient(c: ClientId): string {
  if (typeof c === 'number') return String(c);
  return /^[A-Za-z_][\w.-]*$/.test(c) ? c : JSON.stringify(c);
}

/**
 * One line per event, in order:
 *
 * ```
 * # actor-raft kv history v1
 * 0.000 c1 invoke #0 set ["x",1]
 * 0.420 c1 ok #0 null
 * 0.500 c2 invoke #1 cas ["x",1,2]
 * 9.000 c2 info #1 "TIMEOUT: no answer within 8 ms" unknown
 * ```
 *
 * Fields: time (ms, 3 decimals), client (a number, a bare name, or a JSON string), event
 * type, `#id`, then for `invoke` the command type and its arguments as a JSON array
 * (key first), for `ok` the result, for `fail`/`info` an optional JSON string (the error) and
 * then the error's outcome (`not-applied` or `unknown`) when it reported one. Values use
 * `encodeValue`, so Maps, bigints, Dates etc. survive. Lines starting with `#` and blank
 * lines are comments. The format is stable: new fields will only be appended.
 */
export function formatHistory(events: readonly HistoryEvent[]): string {
  const lines = [HEADER];
  for (const e of events) {
    const head = `${e.time.toFixed(3)} ${formatClient(e.client)} ${e.type} #${e.id}`;
    switch (e.type) {
      case 'invoke':
        lines.push(`${head} ${e.command.type} ${JSON.stringify(commandArgs(e.command).map(encodeValue))}`);
        break;
      case 'ok':
        lines.push(`${head} ${JSON.stringify(encodeValue(e.result))}`);
        break;
      case 'fail':
      case 'info':
        lines.push([head, ...(e.error === undefined ? [] : [JSON.stringify(e.error)]), ...(e.outcome === undefined ? [] : [e.outcome])].join(' '));
        break;
    }
  }
  return `${lines.join('\n')}\n`;
}

const LINE = /^(\S+)\s+("(?:[^"\\]|\\.)*"|\S+)\s+(invoke|ok|fail|info)\s+#(\d+)(?:\s+(.*))?$/;

/** Parse the line format of `formatHistory` back into events. Throws SyntaxError naming the line. */
export function parseHistory(text: string): HistoryEvent[] {
  const events: HistoryEvent[] = [];
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    const fail = (why: string): never => {
      throw new SyntaxError(`history line ${i + 1}: ${why}: ${line}`);
    };
    const m = LINE.exec(line);
    if (m === null) return fail('expected "<time> <client> <invoke|ok|fail|info> #<id> ..."');
    const [, timeText, clientText, type, idText, rest = ''] = m as unknown as [string, string, string, string, string, string?];
    const time = Number(timeText);
    if (Number.isNaN(time)) fail(`bad time '${timeText}'`);
    let client: ClientId;
    if (clientText.startsWith('"')) client = JSON.parse(clientText) as string;
    else if (/^-?\d+(\.\d+)?$/.test(clientText)) client = Number(clientText);
    else client = clientText;
    const base = { id: Number(idText), client, time };
    const json = (s: string): Json => {
      try {
        return JSON.parse(s) as Json;
      } catch {
        return fail(`bad JSON '${s}'`);
      }
    };
    switch (type as HistoryEvent['type']) {
      case 'invoke': {
        const sp = /^(\S+)\s+(.*)$/.exec(rest);
        if (sp === null) return fail('an invoke needs a command type and a JSON array of arguments');
        const args = json(sp[2]!);
        if (!Array.isArray(args)) return fail('command arguments must be a JSON array');
        events.push({ ...base, type: 'invoke', command: commandFromArgs(sp[1]!, args.map(decodeValue)) });
        return;
      }
      case 'ok':
        if (rest === '') return fail('an ok needs a result (null for none)');
        events.push({ ...base, type: 'ok', result: decodeValue(json(rest)) });
        return;
      case 'fail':
      case 'info': {
        const e: FailEvent | InfoEvent = { ...base, type: type as 'fail' | 'info' };
        const m = /^(.*?)\s*\b(not-applied|unknown)$/.exec(rest);
        const errorText = m ? m[1]! : rest;
        if (errorText !== '') {
          const err = json(errorText);
          if (typeof err !== 'string') return fail('an error must be a JSON string');
          e.error = err;
        }
        if (m) e.outcome = m[2] as ErrorOutcome;
        events.push(e);
        return;
      }
    }
  });
  return events;
}
