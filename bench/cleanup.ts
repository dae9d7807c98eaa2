/**
 * Everything the bench starts is registered here so it is stopped and removed on every way
 * out: normal end, an error, SIGINT/SIGTERM. Child processes are killed and temp dirs removed
 * synchronously in an 'exit' handler as a last resort; async cleanups (stopping our peers)
 * run on a signal before exiting.
 */
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';

const children = new Set<ChildProcess>();
const dirs = new Set<string>();
const asyncCleanups = new Set<() => Promise<void>>();
let installed = false;
let interrupted = false;

/** True once SIGINT/SIGTERM arrived: load drivers stop issuing ops. */
export function isInterrupted(): boolean {
  return interrupted;
}

function install(): void {
  if (installed) return;
  installed = true;
  process.on('exit', () => {
    for (const c of children) killNow(c);
    for (const d of dirs) rmNow(d);
  });
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted = true;
    process.stdout.write(`\n${signal}: stopping everything the bench started...\n`);
    // Children get SIGTERM and a moment to clean up after themselves (an --rss phase stops
    // its peers and removes its temp dir); whatever is left gets SIGKILL in the exit handler.
    const exited = [...children].map(
      (c) =>
        new Promise<void>((resolve) => {
          if (c.exitCode !== null || c.signalCode !== null) return resolve();
          c.once('exit', () => resolve());
          try {
            c.kill('SIGTERM');
          } catch {
            resolve();
          }
        }),
    );
    const all = [...asyncCleanups].map((f) => f().catch(() => undefined));
    const grace = new Promise((r) => setTimeout(r, 5000).unref());
    void Promise.race([Promise.all([...exited, ...all]), grace]).finally(() => process.exit(signal === 'SIGINT' ? 130 : 143));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
}

function killNow(c: ChildProcess): void {
  if (c.exitCode === null && c.signalCode === null) {
    try {
      c.kill('SIGKILL');
    } catch {
      // already gone
    }
  }
}

function rmNow(d: string): void {
  try {
    // Retried: a worker thread that has not stopped yet may still be adding files (ENOTEMPTY).
    fs.rmSync(d, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
  } catch {
    // best effort
  }
}

export function trackChild(c: ChildProcess): void {
  install();
  children.add(c);
  c.once('exit', () => children.delete(c));
}

export function trackDir(d: string): void {
  install();
  dirs.add(d);
}

export function removeDir(d: string): void {
  rmNow(d);
  dirs.delete(d);
}

/** Register an async cleanup; returns a function that unregisters it. */
export function onInterrupt(f: () => Promise<void>): () => void {
  install();
  asyncCleanups.add(f);
  return () => asyncCleanups.delete(f);
}
