/**
 * The command line, declared as data: each command is a `CommandSpec` (its words, positional
 * arguments, options and what it runs), and `parseCommandLine` turns argv into one of them with
 * `node:util` `parseArgs` in strict mode. Adding a command or a flag is one entry in a table
 * (src/cli/commands.ts); usage and per-command help are generated from the same entries.
 */
import { parseArgs } from 'node:util';
import { parseHostPort } from '../transport/tcp.js';
import { isPeerId } from '../validate.js';

/** Exit codes (documented in the usage and docs/network.md). */
export const EXIT = {
  /** Done. */
  ok: 0,
  /** The cluster said no: missing key, refused request, bad value, not allowed. */
  refused: 1,
  /** Bad command line. */
  usage: 2,
  /** No endpoint reachable, no leader known, or a timeout (a write's outcome unknown). */
  unavailable: 3,
} as const;

/** A bad command line: exit 2 with a one-line message and a pointer to `--help`. */
export class UsageError extends Error {
  /** The command whose help the message points to (none: the top-level usage). */
  command: string | undefined;
  constructor(message: string, command?: string) {
    super(message);
    this.command = command;
  }
}

export interface OptionSpec {
  /** Long name, without `--`. */
  name: string;
  /** One-letter alias, without `-`. */
  short?: string;
  /** `boolean` for a bare flag; `string` takes a value (`--name value` or `--name=value`). */
  type: 'string' | 'boolean';
  /** Placeholder of the value in the help (`FILE`, `URL,...`). */
  value?: string;
  /** One line of help. */
  help: string;
  required?: boolean;
}

export interface ArgSpec {
  /** Placeholder in the usage (`KEY`). */
  name: string;
  optional?: boolean;
}

/** What a command's `run` receives: its option values and its positional arguments by name. */
export interface Invocation {
  command: CommandSpec;
  options: Record<string, string | boolean | undefined>;
  args: Record<string, string | undefined>;
}

export interface CommandSpec {
  /** The words that name it: `get`, or `member add`. */
  name: string;
  /** One line for the command list. */
  summary: string;
  args: ArgSpec[];
  options: OptionSpec[];
  /** More lines for the command's own help. */
  details?: string[];
  /** Runs the command; resolves to the exit code. */
  run(inv: Invocation): Promise<number>;
}

export type ParsedLine =
  | { kind: 'run'; invocation: Invocation }
  | { kind: 'help'; command: CommandSpec | undefined }
  | { kind: 'version' };

const HELP: OptionSpec = { name: 'help', short: 'h', type: 'boolean', help: 'print this help and exit' };

/**
 * The command named by argv's leading words (the longest match: `member add` before
 * `member`), its options parsed strictly. Throws UsageError for an unknown command or option,
 * a missing or extra argument, an option without its value, or a missing required option.
 */
export function parseCommandLine(commands: CommandSpec[], argv: string[]): ParsedLine {
  const first = argv[0];
  if (first === undefined) throw new UsageError('no command given');
  if (first === '-h' || first === '--help') {
    if (argv.length > 1) throw new UsageError(`unexpected argument '${argv[1]}' after ${first}`);
    return { kind: 'help', command: undefined };
  }
  if (first === '--version') {
    if (argv.length > 1) throw new UsageError(`unexpected argument '${argv[1]}' after --version`);
    return { kind: 'version' };
  }
  const command = findCommand(commands, argv);
  if (command === undefined) {
    const words = argv.filter((a) => !a.startsWith('-')).slice(0, 2).join(' ');
    throw new UsageError(first.startsWith('-') ? `a command comes first, got '${first}'` : `unknown command '${words || first}'`);
  }
  const rest = argv.slice(command.name.split(' ').length);
  const specs = [...command.options, HELP];
  // Help wins over everything else on the line, so `actor-raft node --id x -h` still helps.
  const beforeDashes = rest.indexOf('--') === -1 ? rest : rest.slice(0, rest.indexOf('--'));
  if (beforeDashes.includes('-h') || beforeDashes.includes('--help')) return { kind: 'help', command };

  let parsed: { values: Record<string, string | boolean | undefined>; positionals: string[]; tokens: Array<{ kind: string; name?: string }> };
  try {
    parsed = parseArgs({
      args: rest,
      strict: true,
      allowPositionals: true,
      tokens: true,
      options: Object.fromEntries(specs.map((o) => [o.name, { type: o.type, ...(o.short ? { short: o.short } : {}) }])),
    }) as typeof parsed;
  } catch (err) {
    throw new UsageError(parseArgsMessage(err, specs), command.name);
  }
  // parseArgs keeps the last of a repeated option; a script that says it twice means something else.
  const seen = new Set<string>();
  for (const t of parsed.tokens) {
    if (t.kind !== 'option' || t.name === undefined) continue;
    if (seen.has(t.name)) throw new UsageError(`--${t.name} is given more than once`, command.name);
    seen.add(t.name);
  }
  for (const o of command.options) {
    if (o.required && parsed.values[o.name] === undefined) throw new UsageError(`--${o.name} is required`, command.name);
  }
  const args = matchArgs(command, parsed.positionals);
  return { kind: 'run', invocation: { command, options: parsed.values, args } };
}

function findCommand(commands: CommandSpec[], argv: string[]): CommandSpec | undefined {
  let best: CommandSpec | undefined;
  for (const c of commands) {
    const words = c.name.split(' ');
    if (words.every((w, i) => argv[i] === w) && (best === undefined || words.length > best.name.split(' ').length)) best = c;
  }
  return best;
}

function matchArgs(command: CommandSpec, positionals: string[]): Record<string, string | undefined> {
  const required = command.args.filter((a) => !a.optional).length;
  if (positionals.length < required) {
    const missing = command.args.slice(positionals.length).filter((a) => !a.optional).map((a) => a.name);
    throw new UsageError(`${command.name} needs ${missing.join(' ')}`, command.name);
  }
  if (positionals.length > command.args.length) {
    const extra = positionals[command.args.length]!;
    const takes = command.args.length === 0 ? 'no arguments' : command.args.map(argUsage).join(' ');
    throw new UsageError(`unexpected argument '${extra}' (${command.name} takes ${takes})`, command.name);
  }
  return Object.fromEntries(command.args.map((a, i) => [a.name, positionals[i]]));
}

/** parseArgs' errors, in one line each. */
function parseArgsMessage(err: unknown, specs: OptionSpec[]): string {
  const message = err instanceof Error ? err.message : String(err);
  const code = (err as { code?: string }).code;
  let m: RegExpExecArray | null;
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && (m = /Unknown option '([^']+)'/.exec(message))) {
    const given = m[1]!;
    if (/^-\d/.test(given)) return `unknown option '${given}' (a value starting with '-' goes after '--')`;
    const name = given.replace(/^--?/, '').split('=')[0]!;
    const near = name.length > 1 ? specs.find((o) => o.name.startsWith(name) || name.startsWith(o.name)) : undefined;
    return `unknown option '${given}'${near ? ` (did you mean --${near.name}?)` : ''}`;
  }
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE') {
    if ((m = /Option '(-[^ ']+)(?: <value>)?' argument missing/.exec(message))) return `${longName(m[1]!)} needs a value`;
    if ((m = /Option '(-[^ ']+)(?: <value>)?' argument is ambiguous/.exec(message))) {
      return `${longName(m[1]!)} needs a value (one that starts with '-' is written ${longName(m[1]!)}=VALUE)`;
    }
    if ((m = /Option '(-[^ ']+)' does not take an argument/.exec(message))) return `${m[1]} takes no value`;
  }
  return message.split('\n')[0]!;
}

/** `-o, --output` as parseArgs names it → `--output`. */
function longName(flag: string): string {
  const parts = flag.split(', ');
  return parts[parts.length - 1]!;
}

// ---------------------------------------------------------------------------------------------
// Help text

function argUsage(a: ArgSpec): string {
  return a.optional ? `[${a.name}]` : a.name;
}

function optionUsage(o: OptionSpec): string {
  const names = `${o.short ? `-${o.short}, ` : ''}--${o.name}`;
  return o.type === 'string' ? `${names} ${o.value ?? 'VALUE'}` : names;
}

/** `actor-raft get KEY [options]`. */
export function synopsis(c: CommandSpec): string {
  const required = c.options.filter((o) => o.required).map((o) => `--${o.name} ${o.value ?? 'VALUE'}`);
  return ['actor-raft', c.name, ...c.args.map(argUsage), ...required, '[options]'].join(' ');
}

/** The help of one command: synopsis, summary, details, options. */
export function commandHelp(c: CommandSpec): string {
  const options = [...c.options, HELP];
  const width = Math.max(...options.map((o) => optionUsage(o).length));
  return [
    `usage: ${synopsis(c)}`,
    '',
    c.summary,
    ...(c.details ? ['', ...c.details] : []),
    '',
    'options:',
    ...options.map((o) => `  ${optionUsage(o).padEnd(width)}  ${o.help}${o.required ? ' (required)' : ''}`),
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------
// Values of options

/**
 * `a=host:port,b=host:port` → { a: 'host:port', b: 'host:port' }, every id and address checked
 * (with `urls`, an address may also be an `http(s)://` URL).
 */
export function parsePeerMap(value: string, what: string, urls = false): Record<string, string> {
  const out: Record<string, string> = {};
  if (/\s/.test(value.trim())) throw new UsageError(`${what}: separate the peers with commas, not spaces (got '${value}')`);
  for (const item of value.split(',').filter((s) => s !== '')) {
    const eq = item.indexOf('=');
    if (eq <= 0 || eq === item.length - 1) throw new UsageError(`${what}: expected ID=HOST:PORT,..., got '${item}'`);
    const id = item.slice(0, eq);
    const address = item.slice(eq + 1);
    if (!isPeerId(id)) throw new UsageError(`${what}: '${id}' is not a peer id (letters, digits, '_', '.', '-')`);
    // A space-separated list reads as one item whose "address" holds the rest: refuse it.
    if (!(urls && isHttpUrl(address))) hostPort(address, `${what}: the address of '${id}'`);
    if (id in out) throw new UsageError(`${what}: '${id}' is listed twice`);
    out[id] = address;
  }
  if (Object.keys(out).length === 0) throw new UsageError(`${what} is empty`);
  return out;
}

function isHttpUrl(value: string): boolean {
  try {
    const u = new URL(value);
    return (u.protocol === 'http:' || u.protocol === 'https:') && u.host !== '';
  } catch {
    return false;
  }
}

/** A `host:port` (IPv6 in brackets), or UsageError. */
export function hostPort(value: string, what: string, allowZero = false): string {
  try {
    parseHostPort(value, what, allowZero);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message : String(err));
  }
  return value;
}

/** `a,b,c` → ['a', 'b', 'c'] (blanks dropped). */
export function parseList(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter((s) => s !== '');
}

/** A positive integer option, or UsageError. */
export function positiveOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value) || Number(value) < 1 || !Number.isSafeInteger(Number(value))) {
    throw new UsageError(`--${name} must be a positive integer, got '${value}'`);
  }
  return Number(value);
}

/** One of `choices`, or UsageError. */
export function choiceOption<T extends string>(value: string | undefined, name: string, choices: readonly T[], fallback: T): T {
  if (value === undefined) return fallback;
  if (!(choices as readonly string[]).includes(value)) throw new UsageError(`--${name} is one of ${choices.join(', ')}; got '${value}'`);
  return value as T;
}

/** A string option's value (options of type string are never booleans). */
export function stringOption(inv: Invocation, name: string): string | undefined {
  const v = inv.options[name];
  return typeof v === 'string' ? v : undefined;
}
