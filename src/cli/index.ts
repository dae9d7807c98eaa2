/**
 * `actor-raft`'s entry: parse the command line against the command table, run the command,
 * and turn what went wrong into a one-line message and an exit code (see EXIT).
 */
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { commandHelp, EXIT, parseCommandLine, synopsis, UsageError, type CommandSpec } from './args.js';
import { ClusterError, DEFAULT_ENDPOINT, ENDPOINTS_ENV, TOKEN_ENV } from './client.js';
import { COMMANDS } from './commands.js';

/** The usage: every command, the environment, the exit codes. */
export function usage(commands: CommandSpec[] = COMMANDS): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  return [
    'usage: actor-raft COMMAND [ARGS] [options]     actor-raft COMMAND -h   for a command\'s options',
    '       actor-raft --version',
    '',
    'commands:',
    ...commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    ...commands.map((c) => `  ${synopsis(c)}`),
    '',
    'client commands take --endpoints URL,... (default $' + ENDPOINTS_ENV + `, else ${DEFAULT_ENDPOINT}),`,
    `  -o plain|json|table, --token-file FILE (default $${TOKEN_ENV}), --cacert/--cert/--key FILE, --timeout SECONDS`,
    '',
    'exit codes:',
    '  0  done (cas prints false and exits 0 when the value did not match)',
    '  1  the cluster said no: missing key (get, del), request refused (4xx), not allowed; a membership',
    '     change refused (another one in progress, a new member that did not catch up, a failed transfer);',
    '     snapshot: a backup file that is corrupt or truncated, a data directory in use',
    '  2  bad command line',
    '  3  no endpoint reachable, no leader, or a timeout (a write\'s outcome is then unknown)',
  ].join('\n');
}

/** This package's version, from the package.json above this module. */
export function version(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = path.join(dir, 'package.json');
    if (fs.existsSync(file)) {
      const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'actor-raft' && pkg.version) return pkg.version;
    }
    const up = path.dirname(dir);
    if (up === dir) return 'unknown';
    dir = up;
  }
}

/** Runs the command line; resolves to the exit code (a node keeps running after it resolves). */
export async function main(argv: string[]): Promise<number> {
  if (argv.length === 0) {
    console.error(usage());
    return EXIT.usage;
  }
  try {
    const line = parseCommandLine(COMMANDS, argv);
    switch (line.kind) {
      case 'help':
        console.log(line.command ? commandHelp(line.command) : usage());
        return EXIT.ok;
      case 'version':
        console.log(version());
        return EXIT.ok;
      case 'run':
        try {
          return await line.invocation.command.run(line.invocation);
        } catch (err) {
          if (err instanceof UsageError) err.command ??= line.invocation.command.name;
          throw err;
        }
    }
  } catch (err) {
    if (err instanceof UsageError) {
      const help = err.command ? `actor-raft ${err.command} --help` : 'actor-raft --help';
      console.error(`actor-raft: ${err.message}; see '${help}'`);
      return EXIT.usage;
    }
    if (err instanceof ClusterError) {
      console.error(`actor-raft: ${err.message}`);
      return err.exit;
    }
    console.error(`actor-raft: ${err instanceof Error ? err.message : String(err)}`);
    return EXIT.refused;
  }
}
