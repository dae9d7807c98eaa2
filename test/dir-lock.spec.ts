/**
 * Issue 14, item 1: one owner per data directory (src/log/dir-lock.ts). A second owner, in
 * another process or in this one, is refused at once with DataDirLockedError naming the
 * holder's pid, and changes nothing on disk; a lock left by a process killed with SIGKILL, or
 * whose pid was reused, does not block the next owner; racing takers of a stale lock: one wins.
 */
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { read, startNode, stopNode } from '../src/api/index.js';
import { DataDirLockedError } from '../src/errors.js';
import { heldDataDirs, LOCK_FILE, lockDataDir } from '../src/log/dir-lock.js';
import { TEST_TIMING, tempDir, waitFor } from './helpers/cluster.js';

const DIST_SRC = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'src');
const API = JSON.stringify(path.join(DIST_SRC, 'api', 'index.js'));
const DIR_LOCK = JSON.stringify(path.join(DIST_SRC, 'log', 'dir-lock.js'));

/** Names, sizes and modification times of everything under `dir` (and `dir` itself). */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (p: string) => {
    const st = fs.statSync(p);
    out.push(`${path.relative(dir, p)} ${st.isDirectory() ? 'dir' : st.size} ${st.mtimeMs}`);
    if (st.isDirectory()) for (const name of fs.readdirSync(p).sort()) walk(path.join(p, name));
  };
  walk(dir);
  return out;
}

function lockedError(err: unknown): DataDirLockedError {
  expect(err).to.be.instanceOf(DataDirLockedError);
  const e = err as DataDirLockedError;
  expect(e.code).to.equal('DATA_DIR_LOCKED');
  return e;
}

async function refusal(p: Promise<unknown>): Promise<DataDirLockedError> {
  try {
    await p;
  } catch (err) {
    return lockedError(err);
  }
  throw new Error('expected DataDirLockedError, but it succeeded');
}

function refusalSync(fn: () => unknown): DataDirLockedError {
  try {
    fn();
  } catch (err) {
    return lockedError(err);
  }
  throw new Error('expected DataDirLockedError, but it succeeded');
}

/**
 * A child `node` running `code` (an ES module, from a file: worker threads would inherit an
 * `--input-type` flag); its stdout lines are collected.
 */
let scripts = 0;
function child(code: string): { proc: ChildProcess; lines: string[]; exited: Promise<void> } {
  const script = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'actor-raft-dirlock-child-')), `child-${scripts++}.mjs`);
  fs.writeFileSync(script, code);
  const proc = spawn(process.execPath, [script], { stdio: ['pipe', 'pipe', 'inherit'] });
  proc.once('exit', () => fs.rmSync(path.dirname(script), { recursive: true, force: true }));
  const lines: string[] = [];
  let buffered = '';
  proc.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString();
    const parts = buffered.split('\n');
    buffered = parts.pop()!;
    lines.push(...parts.filter((l) => l !== ''));
  });
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  return { proc, lines, exited };
}

function writeLock(dir: string, record: unknown): void {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, LOCK_FILE), typeof record === 'string' ? record : JSON.stringify(record));
}

function lockHolder(dir: string): number | null {
  const file = path.join(dir, LOCK_FILE);
  return fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as { pid: number }).pid : null;
}

const onLinux = fs.existsSync('/proc/self/stat');

describe('data directory lock: one owner per data directory', function () {
  this.timeout(60_000);
  let root: string;
  const children: ChildProcess[] = [];

  beforeEach(() => {
    root = tempDir('actor-raft-dirlock-');
  });

  afterEach(async () => {
    for (const c of children.splice(0)) {
      if (c.exitCode === null && c.signalCode === null) {
        const gone = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await gone;
      }
    }
    expect(heldDataDirs(), 'directories still locked after the test').to.deep.equal([]);
    fs.rmSync(root, { recursive: true, force: true });
  });

  it('refuses a second startNode on the same directory in this process (also through a symlink), changing nothing', async () => {
    const dir = path.join(root, 'n1');
    await startNode('n1', { stateMachine: 'kv', dataDir: dir, ...TEST_TIMING });
    try {
      fs.symlinkSync(dir, path.join(root, 'alias'));
      const before = snapshot(root);
      for (const other of [dir, path.join(root, 'alias'), path.join(root, 'alias', '..', 'n1')]) {
        const e = await refusal(startNode('n2', { stateMachine: 'kv', dataDir: other, ...TEST_TIMING }));
        expect(e.holderPid).to.equal(process.pid);
        expect(e.dir).to.equal(fs.realpathSync(dir));
        expect(e.message).to.include(fs.realpathSync(dir)).and.include(`pid ${process.pid}`).and.include("node 'n1'");
      }
      expect(snapshot(root)).to.deep.equal(before);
      expect(lockHolder(dir)).to.equal(process.pid);
    } finally {
      await stopNode('n1');
    }
    expect(lockHolder(dir)).to.equal(null);
    // Once n1 stopped, the directory is free for another node.
    await startNode('n2', { stateMachine: 'kv', dataDir: dir, ...TEST_TIMING });
    await stopNode('n2');
  });

  it('releases the lock when startNode fails after taking it', async () => {
    const dir = path.join(root, 'n1');
    const e = await startNode('n1', { stateMachine: { module: path.join(root, 'no-such-module.js') }, dataDir: dir, ...TEST_TIMING }).then(
      () => null,
      (err: unknown) => err,
    );
    expect(e).to.be.instanceOf(Error);
    expect(lockHolder(dir)).to.equal(null);
    await startNode('n1', { stateMachine: 'kv', dataDir: dir, ...TEST_TIMING });
    await stopNode('n1');
  });

  it('refuses a directory owned by another process, naming its pid; after kill -9 the lock is taken over and the data is there', async () => {
    const dir = path.join(root, 'c1');
    const owner = child(`
      import { op, setConfig, startNode, status } from ${API};
      const timing = { heartbeatMs: ${TEST_TIMING.heartbeatMs}, electionTimeoutMs: ${TEST_TIMING.electionTimeoutMs} };
      await startNode('c1', { stateMachine: 'kv', dataDir: ${JSON.stringify(dir)}, ...timing });
      await setConfig('c1', ['c1']);
      while ((await status('c1')).role !== 'leader') await new Promise((r) => setTimeout(r, 20));
      await op('c1', { type: 'set', key: 'k', value: 'written by the first owner' });
      console.log('ready');
    `);
    children.push(owner.proc);
    await waitFor('the child to own the directory', async () => (owner.lines.includes('ready') ? true : undefined), 30_000);
    expect(lockHolder(dir)).to.equal(owner.proc.pid);

    const before = snapshot(dir);
    const e = await refusal(startNode('c1', { stateMachine: 'kv', dataDir: dir, ...TEST_TIMING }));
    expect(e.holderPid).to.equal(owner.proc.pid);
    expect(e.message).to.include(`process ${owner.proc.pid}`).and.include(fs.realpathSync(dir));
    expect(snapshot(dir)).to.deep.equal(before);

    owner.proc.kill('SIGKILL');
    await owner.exited;
    expect(lockHolder(dir)).to.equal(owner.proc.pid); // left behind by the killed process
    await startNode('c1', { stateMachine: 'kv', dataDir: dir, ...TEST_TIMING });
    try {
      expect(lockHolder(dir)).to.equal(process.pid);
      const value = await waitFor('the restarted peer to serve the read', async () => (await read('c1', { type: 'get', key: 'k' })) as string);
      expect(value).to.equal('written by the first owner');
    } finally {
      await stopNode('c1');
    }
    expect(lockHolder(dir)).to.equal(null);
  });

  it('takes over stale locks: a reused pid, another boot, an unreadable record, a guard left by a dead taker', function () {
    if (!onLinux) this.skip(); // start times and boot ids come from /proc
    const self = fs.readFileSync('/proc/self/stat', 'utf8');
    const start = self.slice(self.lastIndexOf(')') + 2).split(' ')[19]!;
    const boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    const stale: [string, string | object][] = [
      ['pid reused (a live pid, another start time)', { pid: process.pid, start: `${start}1`, boot, host: 'h', token: 'a' }],
      ['another boot', { pid: process.pid, start, boot: 'another-boot-id', host: 'h', token: 'b' }],
      ['unreadable record', '{"pid": 12'],
    ];
    for (const [what, record] of stale) {
      const dir = path.join(root, what.replace(/\W+/g, '-'));
      writeLock(dir, record);
      const lock = lockDataDir(dir);
      expect(lockHolder(dir), what).to.equal(process.pid);
      lock.release();
      expect(lockHolder(dir), what).to.equal(null);
      expect(fs.readdirSync(dir), what).to.deep.equal([]);
    }
    // A live record of this process that this module does not hold (another thread's copy
    // of the module) counts as held.
    const dir = path.join(root, 'other-thread');
    writeLock(dir, { pid: process.pid, start, boot, host: 'h', token: 'c' });
    expect(refusalSync(() => lockDataDir(dir)).holderPid).to.equal(process.pid);

    // A taker that died holding the takeover guard of a stale lock does not block anyone.
    const guarded = path.join(root, 'guarded');
    const staleRecord = JSON.stringify({ pid: process.pid, start: `${start}1`, boot, host: 'h', token: 'd' });
    writeLock(guarded, staleRecord);
    const guard = path.join(guarded, `${LOCK_FILE}.takeover-${createHash('sha256').update(staleRecord).digest('hex').slice(0, 32)}`);
    fs.writeFileSync(guard, JSON.stringify({ pid: process.pid, start: `${start}2`, boot, host: 'h', token: 'e' }));
    const lock = lockDataDir(guarded);
    expect(lockHolder(guarded)).to.equal(process.pid);
    lock.release();
    expect(fs.readdirSync(guarded)).to.deep.equal([]);
  });

  it('of four processes racing for a stale lock exactly one wins; the others are refused naming it', async () => {
    const dir = path.join(root, 'raced');
    // A process that has exited: its pid is free (ESRCH), its record stale.
    const dead = child('process.exit(0)');
    await dead.exited;
    writeLock(dir, { pid: dead.proc.pid, start: null, boot: null, host: 'h', token: 'dead' });
    const takers = [0, 1, 2, 3].map(() =>
      child(`
        import { lockDataDir } from ${DIR_LOCK};
        try {
          lockDataDir(${JSON.stringify(dir)});
          console.log(JSON.stringify({ won: true }));
        } catch (err) {
          console.log(JSON.stringify({ won: false, code: err.code, holderPid: err.holderPid }));
        }
        process.stdin.resume();
        process.stdin.on('end', () => process.exit(0)); // the exit hook releases a held lock
      `),
    );
    children.push(...takers.map((t) => t.proc));
    await waitFor('every taker to answer', async () => (takers.every((t) => t.lines.length > 0) ? true : undefined), 30_000);
    const answers = takers.map((t) => JSON.parse(t.lines[0]!) as { won: boolean; code?: string; holderPid?: number });
    const winners = takers.filter((_, i) => answers[i]!.won);
    expect(winners, JSON.stringify(answers)).to.have.length(1);
    const winner = winners[0]!.proc.pid;
    for (const a of answers.filter((x) => !x.won)) expect(a).to.deep.equal({ won: false, code: 'DATA_DIR_LOCKED', holderPid: winner });
    expect(lockHolder(dir)).to.equal(winner);
    for (const t of takers) t.proc.stdin!.end();
    await Promise.all(takers.map((t) => t.exited));
    // The winner released the lock on its way out; no temporary or guard files are left.
    expect(fs.readdirSync(dir)).to.deep.equal([]);
  });
});
