/** The machine, where results go, and the optional ../shared/ceiling (outside this repo) for comparison. */
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { trackChild } from './cleanup.js';

export interface Machine {
  cpus: number;
  model: string;
  node: string;
  platform: string;
  memGiB: number;
}

export function machine(): Machine {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    model: cpus[0]?.model.trim() ?? 'unknown cpu',
    node: process.version,
    platform: `${os.type()} ${os.release()} ${os.arch()}`,
    memGiB: Math.round(os.totalmem() / 2 ** 30),
  };
}

export function describeMachine(m: Machine): string {
  return `machine: ${m.cpus} × ${m.model}, ${m.memGiB} GiB, node ${m.node}, ${m.platform}`;
}

/** The project root: the nearest directory above this file whose package.json is actor-raft's. */
export function projectRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = path.join(dir, 'package.json');
    if (fs.existsSync(pkg)) {
      try {
        if ((JSON.parse(fs.readFileSync(pkg, 'utf8')) as { name?: string }).name === 'actor-raft') return dir;
      } catch {
        // keep looking
      }
    }
    const up = path.dirname(dir);
    if (up === dir) return process.cwd();
    dir = up;
  }
}

export function resultsDir(): string {
  const dir = path.join(projectRoot(), 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export const CEILING_CASES = ['enc=msgpack durable batch=64 window=1', 'enc=msgpack durable batch=1024 window=1'] as const;

export function ceilingDir(): string | null {
  const dir = path.resolve(projectRoot(), '..', 'shared', 'ceiling');
  return fs.existsSync(path.join(dir, 'bench-pipeline.mjs')) ? dir : null;
}

export function ceilingHint(dir: string): string {
  const rel = path.relative(process.cwd(), dir) || '.';
  return [
    `for comparison, the data-path ceiling (no Raft logic) is in ${rel}; run it in the same sitting:`,
    `  cd ${rel} && npm install --no-save && node bench-pipeline.mjs "${CEILING_CASES[0]}"`,
    `  node bench-pipeline.mjs "${CEILING_CASES[1]}"`,
    `  (or add --ceiling here to run both and print our ratio to them)`,
  ].join('\n');
}

export interface CeilingResult {
  case: string;
  opsPerSec: number;
  commitP50ms?: number;
  commitP99ms?: number;
}

/** Run the two ceiling cases (installing its dependencies first if node_modules is missing). */
export async function runCeiling(dir: string, log: (line: string) => void): Promise<CeilingResult[]> {
  if (!fs.existsSync(path.join(dir, 'node_modules'))) {
    log(`ceiling: npm install --no-save in ${dir}`);
    const r = spawnSync('npm', ['install', '--no-save'], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    if (r.status !== 0) throw new Error(`npm install in ${dir} failed: ${(r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ')}`);
  }
  const results: CeilingResult[] = [];
  for (const c of CEILING_CASES) {
    log(`ceiling: node bench-pipeline.mjs "${c}"`);
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(process.execPath, ['bench-pipeline.mjs', c], { cwd: dir, stdio: ['ignore', 'pipe', 'inherit'] });
      trackChild(child);
      let text = '';
      child.stdout.on('data', (d: Buffer) => (text += d.toString()));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`bench-pipeline.mjs exited ${code}`))));
    });
    const line = out
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l.startsWith('{'));
    if (!line) throw new Error(`no JSON line from the ceiling for "${c}": ${out.slice(0, 200)}`);
    const j = JSON.parse(line) as CeilingResult;
    results.push({ case: c, opsPerSec: j.opsPerSec, commitP50ms: j.commitP50ms, commitP99ms: j.commitP99ms });
  }
  return results;
}
