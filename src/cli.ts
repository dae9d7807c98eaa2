#!/usr/bin/env node
/**
 * The `actor-raft` command (package.json `bin`): run one networked peer, or talk to a cluster
 * over HTTP(S). The commands are declared in src/cli/commands.ts; `actor-raft --help` lists
 * them with the exit codes (0 done, 1 the cluster said no, 2 bad command line, 3 unreachable,
 * no leader or timeout).
 */
import { main } from './cli/index.js';

const code = await main(process.argv.slice(2));
process.exitCode = code;
// A node that failed to start may leave workers behind: nothing there is worth waiting for.
if (code !== 0) setTimeout(() => process.exit(code), 100).unref();
