/**
 * Packaging: what `npm pack` ships is what a user gets. The tarball is installed into a fresh
 * directory like any dependency (its dependencies from the registry or npm's cache), and then:
 * both entry points load by `import` and by `require()`, a one-peer cluster runs from the
 * installed copy (so the worker entry files are in it), the public types compile, nothing of
 * test/ or bench/ ships, and every source map points at a file in the package.
 *
 * Skipped, saying why, only when the install fails and `npm ping` cannot reach the registry.
 */
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { tempDir } from './helpers/cluster.js';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * The environment for child processes without what `npm test` exports about this repository
 * (above all `npm_config_local_prefix`, which would point an install back at the repo).
 */
function childEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (/^npm_(config_local_prefix|package_|lifecycle_)/i.test(key)) continue;
    env[key] = value;
  }
  return env;
}

/** Runs a command to its end without blocking the event loop; never throws on a non-zero exit. */
function run(command: string, args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function describeRun(what: string, r: Run): string {
  return `${what} exited ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`;
}

/** Every file under `dir`, as paths relative to it. */
function filesUnder(dir: string, base = dir): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    return entry.isDirectory() ? filesUnder(full, base) : [path.relative(base, full)];
  });
}

/** Paths a shipped package must never hold. */
function isTestOrBench(file: string): boolean {
  return /^(dist\/)?(test|bench)\//.test(file.split(path.sep).join('/'));
}

const ESM_CHECK = `
import { startNode, setConfig, op, read, stopNode, RaftError } from 'actor-raft';
import { History } from 'actor-raft/testing';
if (typeof History !== 'function') throw new Error('actor-raft/testing has no History');
if (typeof RaftError !== 'function') throw new Error('actor-raft has no RaftError');
const dataDir = process.argv[2];
await startNode('p1', { stateMachine: 'kv', dataDir });
await setConfig('p1', ['p1']);
await op('p1', { type: 'set', key: 'greeting', value: 'hello from the tarball' });
const value = await read('p1', { type: 'get', key: 'greeting' });
await stopNode('p1');
console.log(JSON.stringify({ value }));
`;

const CJS_CHECK = `
const raft = require('actor-raft');
const testing = require('actor-raft/testing');
console.log(JSON.stringify({ startNode: typeof raft.startNode, op: typeof raft.op, History: typeof testing.History }));
`;

const TYPES_CHECK = `
import { startNode, op, type NodeOptions } from 'actor-raft';
import { History } from 'actor-raft/testing';
const options: NodeOptions = { stateMachine: 'kv', dataDir: './data/a' };
export async function main(): Promise<History> {
  await startNode('a', options);
  await op('a', { type: 'set', key: 'k', value: 1 });
  return new History();
}
`;

describe('packaging: the npm tarball installed into a fresh directory', function () {
  this.timeout(60_000);
  let root: string;
  let app: string;
  let installed: string;
  let packed: string[];

  before(async function () {
    this.timeout(300_000);
    root = tempDir('actor-raft-pack-');
    app = path.join(root, 'app');
    fs.mkdirSync(app);

    const pack = await run(NPM, ['pack', '--json', '--ignore-scripts', '--pack-destination', root], REPO);
    if (pack.code !== 0) throw new Error(describeRun('npm pack', pack));
    const [report] = JSON.parse(pack.stdout) as Array<{ filename: string; files: Array<{ path: string }> }>;
    packed = report.files.map((f) => f.path);
    const tarball = path.join(root, report.filename);

    fs.writeFileSync(path.join(app, 'package.json'), JSON.stringify({ name: 'pack-check', private: true, type: 'module' }));
    const install = await run(NPM, ['install', '--prefix', app, '--prefer-offline', '--no-audit', '--no-fund', tarball], app);
    if (install.code !== 0) {
      const ping = await run(NPM, ['ping'], app);
      if (ping.code !== 0) {
        const why = ping.stderr.split('\n').find((line) => /error (code|errno)|ENOTFOUND|ECONNREFUSED|ETIMEDOUT|EAI_AGAIN/.test(line)) ?? `npm ping exited ${ping.code}`;
        console.log(`      (npm cannot reach the registry, so the tarball's dependencies cannot be installed: skipping the packaging test; ${why.trim()})`);
        this.skip();
      }
      throw new Error(describeRun('npm install of the tarball', install));
    }
    installed = path.join(app, 'node_modules', 'actor-raft');
  });

  after(() => {
    if (root) fs.rmSync(root, { recursive: true, force: true });
  });

  it('ships the built library, its sources, LICENSE and README, and no test/ or bench/', () => {
    expect(packed.filter(isTestOrBench)).to.deep.equal([]);
    expect(filesUnder(installed).filter(isTestOrBench)).to.deep.equal([]);
    for (const file of ['LICENSE', 'README.md', 'package.json', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/testing/index.js', 'dist/src/cli.js', 'dist/actors/consensus-actor.js', 'dist/actors/log-actor.js', 'dist/supervisors/worker-child.js']) {
      expect(packed, file).to.include(file);
    }
  });

  it("import: 'actor-raft' runs a one-peer cluster and 'actor-raft/testing' loads", async () => {
    fs.writeFileSync(path.join(app, 'check.mjs'), ESM_CHECK);
    const r = await run(process.execPath, ['check.mjs', path.join(root, 'data')], app);
    expect(r.code, describeRun('check.mjs', r)).to.equal(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).to.deep.equal({ value: 'hello from the tarball' });
  });

  it("require(): both 'actor-raft' and 'actor-raft/testing' load from CommonJS", async () => {
    fs.writeFileSync(path.join(app, 'check.cjs'), CJS_CHECK);
    const r = await run(process.execPath, ['check.cjs'], app);
    expect(r.code, describeRun('check.cjs', r)).to.equal(0);
    expect(JSON.parse(r.stdout.trim().split('\n').pop()!)).to.deep.equal({ startNode: 'function', op: 'function', History: 'function' });
  });

  it('the public types of both entry points compile (with @types/node, the optional peer)', async () => {
    fs.writeFileSync(path.join(app, 'check.ts'), TYPES_CHECK);
    const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    const typeRoots = path.join(REPO, 'node_modules', '@types');
    const args = [tsc, '--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext', '--target', 'es2022', '--typeRoots', typeRoots, '--types', 'node', 'check.ts'];
    const r = await run(process.execPath, args, app);
    expect(r.code, describeRun('tsc', r)).to.equal(0);
  });

  it('every source map names sources that are in the package', () => {
    const files = filesUnder(installed);
    const maps = files.filter((f) => f.endsWith('.map'));
    expect(maps.length, 'source maps in the package').to.be.greaterThan(0);
    const missing: string[] = [];
    for (const map of maps) {
      const { sources, sourceRoot } = JSON.parse(fs.readFileSync(path.join(installed, map), 'utf8')) as { sources: string[]; sourceRoot?: string };
      for (const source of sources) {
        const file = path.resolve(installed, path.dirname(map), sourceRoot ?? '', source);
        if (!file.startsWith(installed + path.sep) || !fs.existsSync(file)) missing.push(`${map} → ${source}`);
      }
    }
    for (const file of files.filter((f) => /\.(js|d\.ts)$/.test(f))) {
      const link = /\/\/# sourceMappingURL=(\S+)\s*$/.exec(fs.readFileSync(path.join(installed, file), 'utf8'));
      if (link && !fs.existsSync(path.join(installed, path.dirname(file), link[1]))) missing.push(`${file} → ${link[1]}`);
    }
    expect(missing).to.deep.equal([]);
  });
});
